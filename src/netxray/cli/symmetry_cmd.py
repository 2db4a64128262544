"""``netxray symmetry`` and ``netxray bounds``: lens 4 from the command line.

    netxray symmetry runs/mlp                       # permutable axes, group order, covering bound
    netxray symmetry runs/mlp --compare runs/mlp2   # distance before/after alignment, equivalence
    netxray symmetry runs/mlp --canonical-out runs/mlp-canon --out results/
    netxray bounds --widths 784,512,512,10 --eps 0.01
    netxray bounds --widths 784,512,512,10 --eps 0.1,0.01 --volume-plot volume.png

The CLI holds no science: it calls :mod:`netxray.lenses.symmetry`, prints tables, and reports bad
input as one clear line with exit code 1.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import typer

from netxray.cli._common import DEVICE, cli_device, fail, load_checkpoint
from netxray.measures.symmetry import format_power_of_ten


def _floats(text: str, option: str) -> list[float]:
    try:
        values = [float(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if not values:
        fail(f"{option} expects comma-separated numbers such as 0.1,0.01; got {text!r}")
    return values


def _check_eps(values: list[float], option: str = "--eps") -> list[float]:
    """Covering radii must be positive and finite; the same rule for ``symmetry`` and ``bounds``."""
    bad = [v for v in values if not (math.isfinite(v) and v > 0)]
    if bad:
        fail(f"{option} must be a positive finite number (a covering radius), got {bad[0]:g}")
    return values


def _check_out_dir(path: Path | None, option: str, names: tuple[str, ...] = ()) -> None:
    """A directory option naming an existing file, ``/``, the home directory or a system folder,
    or holding one of ``names`` that netxray did not write, is an error before any work."""
    if path is not None:
        from netxray.report import check_owned_files

        try:
            check_owned_files(path, names, option)
        except (PermissionError, FileExistsError) as exc:
            fail(str(exc))
    if path is not None and path.exists() and not path.is_dir():
        fail(f"{option} {path} exists and is not a directory")


def _checkpoint_dir(path: str) -> Path:
    """The directory that holds a checkpoint given as a directory, a .safetensors or config.json file."""
    p = Path(path).expanduser()
    return (p if p.is_dir() else p.parent).resolve()


def _check_canonical_out(canonical_out: Path, sources: dict[str, str], force: bool) -> None:
    """Never write the canonical form over an input checkpoint; never replace one without --force."""
    target = canonical_out.expanduser().resolve()
    for option, source in sources.items():
        if target == _checkpoint_dir(source):
            fail(f"--canonical-out {canonical_out} is the directory of the {option} checkpoint "
                 f"{source}; writing there would overwrite it: choose another directory")
    _check_out_dir(canonical_out, "--canonical-out")
    from netxray.models.checkpoint import CONFIG_FILE, WEIGHTS_FILE

    present = [f for f in (CONFIG_FILE, WEIGHTS_FILE) if (canonical_out / f).exists()]
    if present and not force:
        fail(f"--canonical-out {canonical_out} already holds a checkpoint ({', '.join(present)}); "
             f"pass --force to replace it")


def _ints(text: str, option: str) -> list[int]:
    try:
        values = [int(v) for v in text.replace(" ", "").split(",") if v]
    except ValueError:
        values = []
    if len(values) < 2:
        fail(f"{option} expects comma-separated integers d_0,...,d_L+1 such as 784,512,512,10; got {text!r}")
    return values


def _print_table(
    rows: list[dict[str, Any]], columns: dict[str, str], title: str, quiet: bool
) -> None:
    """``columns``: row key -> header."""
    if quiet:
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for header in columns.values():
        table.add_column(header, overflow="fold")
    for r in rows:
        table.add_row(*[f"{r[c]:.6g}" if isinstance(r[c], float) else str(r[c]) for c in columns])
    Console().print(table)


def register(app: typer.Typer) -> None:
    """Add the ``symmetry`` and ``bounds`` commands to the ``netxray`` app."""

    def _unit_changes(dropped: dict[str, int], merged: dict[str, int]) -> str:
        """'no unit dropped or merged', or counts per axis in words (never a raw dict)."""
        parts = []
        for verb, per_axis in (("dropped", dropped), ("merged", merged)):
            nonzero = {a: int(v) for a, v in (per_axis or {}).items() if int(v)}
            if nonzero:
                total = sum(nonzero.values())
                detail = ", ".join(f"{a}: {v}" for a, v in nonzero.items())
                parts.append(f"{verb} {total} unit{'s' if total != 1 else ''} ({detail})")
        return "; ".join(parts) if parts else "no unit dropped or merged"

    @app.command("symmetry")
    def symmetry_cmd(
        checkpoint: str = typer.Argument(..., help="Checkpoint directory or .safetensors file."),
        compare: str | None = typer.Option(
            None, "--compare", help="A second checkpoint of the same architecture: align it to the "
            "first (distance before/after) and test functional equivalence."),
        canonical_out: Path | None = typer.Option(
            None, "--canonical-out", help="Write the canonical form (float64) as a checkpoint here."),
        eps: float = typer.Option(0.01, "--eps", help="Covering radius for the bound (MLPs only)."),
        out: Path | None = typer.Option(None, "--out", help="Directory for group.csv and summary.json."),
        seed: int = typer.Option(0, "--seed", help="Seed of the equivalence probes."),
        force: bool = typer.Option(
            False, "--force", help="Let --canonical-out replace a checkpoint already in that directory "
            "(never the input checkpoint itself)."),
        quiet: bool = typer.Option(False, "--quiet", help="Print nothing but errors."),
        device: str | None = DEVICE,
    ) -> None:
        """Symmetry of a trained network: its permutable axes (hidden units, channels, heads,
        residual streams), each verified by a random permutation test, the order of its
        symmetry group in log10, the covering-number bound
        with and without permutations (fully connected nets), and optionally its canonical form
        or its distance to a second network once symmetry is factored out."""
        from netxray.lenses import symmetry as sym

        # every check on the input comes before any work or output
        _check_eps([eps])
        _check_out_dir(out, "--out", ("group.csv", "summary.json"))
        model = load_checkpoint(checkpoint)
        other = load_checkpoint(compare) if compare is not None else None
        if canonical_out is not None:
            sources = {"source": checkpoint, **({"--compare": compare} if compare is not None else {})}
            _check_canonical_out(canonical_out, sources, force)
        dev = cli_device(device)  # the verification copy and its forward passes run there
        group = sym.symmetry_group(model, device=dev)
        s = group.attrs["summary"]
        summary: dict[str, Any] = {k: v for k, v in s.items()}
        lines = [
            f"status: {s['status']}",
            f"group order: {format_power_of_ten(s['log10_order'])} (permutations "
            f"{format_power_of_ten(s['log10_permutations'])}); "
            f"continuous symmetries: {s['continuous_dims']} dimensions of {s['n_params']} parameters",
            s["statement"],
        ]
        lines += [f"claimed axis {r['axis']} failed verification: {r['reason']}" for r in s.get("rejected", [])]
        try:
            bounds = sym.covering_bounds(model, eps=eps)
            summary["covering_bound"] = {k: (float(v) if isinstance(v, (int, float)) else v)
                                         for k, v in bounds.iloc[0].to_dict().items()}
            lines.append(bounds.verdict[0])
        except ValueError as exc:
            lines.append(f"covering bound: not applicable ({exc})")
        if other is not None:
            try:
                al = sym.align(model, other)
            except ValueError as exc:
                fail(str(exc))
            eq = sym.functionally_equivalent(model, other, seed=seed)
            summary["alignment"] = {
                "distance_raw": al.distance_raw, "distance_before": al.distance_before,
                "distance_after": al.distance_after, "relative_before": al.relative_before,
                "relative_after": al.relative_after, "equivalence": eq.verdict, "reason": eq.reason,
            }
            lines.append(
                f"distance to {compare}: {al.distance_raw:.6g} raw, {al.distance_before:.6g} normalized, "
                f"{al.distance_after:.6g} aligned (relative {al.relative_before:.4g} → {al.relative_after:.4g}); "
                f"functionally {eq.verdict} ({eq.reason})"
            )
        if canonical_out is not None:
            from netxray.models import save_checkpoint

            canon = sym.canonicalize(model)
            try:
                save_checkpoint(canon, canonical_out)
            except (ValueError, OSError, KeyError) as exc:
                fail(f"cannot write the canonical form to {canonical_out}: {exc}")
            info = canon.netxray_canonical
            lines.append(f"canonical form written to {canonical_out} "
                         f"({_unit_changes(info.get('dropped', {}), info.get('merged', {}))})")
        if out is not None:
            from netxray.report import write_owned_files

            summary["meta"] = group.attrs["meta"]
            try:  # only files netxray wrote are replaced
                write_owned_files(out, {"group.csv": group.to_csv(index=False).encode(),
                                        "summary.json": json.dumps(summary, indent=2, default=str).encode()})  # fmt: skip
            except (FileExistsError, PermissionError) as exc:
                fail(str(exc))
            lines.append(f"wrote {out / 'group.csv'} and {out / 'summary.json'}")
        # printed last, so that a failure above leaves no half-printed analysis behind
        _print_table(group.to_dict("records"),
                     {"axis": "axis", "kind": "kind", "size": "size", "activation": "activation",
                      "log10_order": "log10 d!", "sign_flips": "±", "continuous_dims": "cont. dims",
                      "verified": "verified"},
                     f"symmetry of {checkpoint}", quiet)
        if not quiet:
            for line in lines:
                typer.echo(line)

    @app.command("bounds")
    def bounds_cmd(
        widths: str = typer.Option(..., "--widths", help="Layer widths d_0,...,d_L+1, e.g. 784,512,512,10."),
        eps: str = typer.Option("0.01", "--eps", help="Covering radius (comma-separated for several)."),
        B: float = typer.Option(1.0, "--B", help="Bound on every parameter's magnitude."),
        rho: float = typer.Option(1.0, "--rho", help="Lipschitz constant of the activation."),
        volume_plot: Path | None = typer.Option(
            None, "--volume-plot", help="Save a plot of the effective-volume ratio against width."),
        out: Path | None = typer.Option(None, "--out", help="Directory for bounds.csv."),
        quiet: bool = typer.Option(False, "--quiet", help="Print nothing but errors."),
    ) -> None:
        """Covering-number bounds of a fully connected network (Shen, ICML 2024), classical and
        with hidden-unit permutations factored out, in log10: how much does symmetry buy?"""
        from netxray.lenses import symmetry as sym

        ws = _ints(widths, "--widths")
        epss = _check_eps(_floats(eps, "--eps"))
        _check_out_dir(out, "--out", ("bounds.csv",))
        try:
            df = sym.covering_bounds(ws, eps=epss, B=B, rho=rho)
        except ValueError as exc:
            fail(str(exc))
        rows = [{**r, "pct": f"{100 * r['relative_reduction']:.3g}%"} for r in df.to_dict("records")]
        _print_table(rows, {"eps": "eps", "S": "S", "log10_Lambda": "log10 Λ",
                            "classical_log10": "classical", "sum_log10_factorials": "Σ log10 d!",
                            "reduced_log10": "reduced", "pct": "reduction"},
                     f"log10 covering numbers, widths {widths}", quiet)
        if not quiet:
            for v in df.verdict:
                typer.echo(v)
        if volume_plot is not None:
            hidden = ws[1:-1]
            vol = sym.effective_volume(depth=max(1, len(hidden)), d_in=ws[0], d_out=ws[-1])
            sym.plot_effective_volume(vol, path=str(volume_plot))
            if not quiet:
                typer.echo(f"effective-volume plot written to {volume_plot}")
        if out is not None:
            from netxray.report import write_owned_files

            try:  # only files netxray wrote are replaced
                write_owned_files(out, {"bounds.csv": df.to_csv(index=False).encode()})
            except (FileExistsError, PermissionError) as exc:
                fail(str(exc))
