"""``netxray scan`` and ``netxray compare``: every lens over one model, or over several, as a report.

    netxray scan runs/cnn --data digits --out scan-cnn/
    netxray scan --model my_net.py:make_model --weights my_net.safetensors --data npz:data.npz --out r/
    netxray scan torchvision:resnet18 --data imagefolder:photos/ --image-size 64 --out r/
    netxray scan hf:my-bert/ --data text:reviews.csv --out r/
    netxray compare runs/mlp runs/cnn runs/vit --data digits --out cmp/

Exit status: 0 when every lens ran; 3 when the report was written but some lens failed (the
report and a ``warning:`` line say why; ``--allow-partial`` makes it 0); 1 on an error (one
``error:`` line, nothing written).

``DIR/index.html`` is one self-contained file (plots embedded, no network needed), next to it
``results.json`` (metadata and summary) and every table as CSV (and Parquet with pyarrow). The
CLI holds no science: it loads the model and the data, calls :func:`netxray.report.scan` or
:func:`netxray.report.compare_report`, and writes the files. The last line printed says where
the report is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from netxray.cli._common import (
    DATA_HELP,
    EXIT_PARTIAL,
    MODEL_SOURCES_HELP,
    SAMPLES,
    DataOptions,
    check_fits,
    check_out,
    cli_device,
    data_options,
    fail,
    load_checkpoint,
    set_threads,
    unique_names,
)

ALLOW_PARTIAL_HELP = (
    "Exit with status 0 even when some lens failed (default: status 3, after writing the report)."
)
LENSES_HELP = "Comma-separated lenses: nonlinearity,modularity,parameters,symmetry (default: all)."
MODEL_HELP = (
    "Your own model: PATH.py:FACTORY, a function in that file returning the nn.Module "
    "(the file is imported and run as Python). Use with --weights."
)
WEIGHTS_HELP = (
    "Weights for --model, torchvision:NAME or timm:NAME: a .safetensors or .pt/.pth state dict, "
    "read without executing code (torch.load weights_only=True); keys and shapes must match "
    "the model exactly."
)

# a weights file given with --model is named by its stem, like a .safetensors checkpoint
_WEIGHT_SUFFIXES = (".safetensors", ".pt", ".pth", ".bin")


def _lenses(text: str | None) -> list[str]:
    from netxray.report import LENSES

    if text is None:
        return list(LENSES)
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [n for n in names if n not in LENSES]
    if bad or not names:
        fail(f"--lenses {text!r}: unknown {bad or 'empty list'}; expected comma-separated names from {', '.join(LENSES)}")
    return names


def _layers(text: str | None) -> Any:
    if text is None:
        return "auto"
    names = [s.strip() for s in text.split(",") if s.strip()]
    return names or "auto"


def load_cli_model(
    checkpoint: Path | None, model_spec: str | None, weights: Path | None, task: str | None = None
) -> Any:
    """The model from a source string (checkpoint, ``torchvision:``, ``timm:``, ``hf:``,
    ``PATH.py:FACTORY``), or from ``--model FILE.py:FACTORY`` (+ weights)."""
    from netxray.models.user_model import UserModelError, load_user_model

    if model_spec is not None:
        if checkpoint is not None and weights is not None:
            fail(f"got both a positional weights file {checkpoint} and --weights {weights}; give one")
        w = weights if weights is not None else checkpoint
        if w is not None and w.is_dir():
            fail(f"{w} is a directory; with --model, give a weights file (.safetensors or .pt)")
        try:
            return load_user_model(model_spec, w)
        except UserModelError as exc:
            fail(str(exc))
    if weights is not None and str(checkpoint).partition(":")[0] not in ("torchvision", "timm") \
            and not str(checkpoint).rpartition(":")[0].endswith(".py"):
        fail("--weights needs --model PATH.py:FACTORY, torchvision:NAME or timm:NAME (a netxray "
             "checkpoint or an hf:DIR model carries its own weights)")  # fmt: skip
    if checkpoint is None:
        fail(f"nothing to scan: give a model: {MODEL_SOURCES_HELP}")
    return load_checkpoint(checkpoint, weights=weights, task=task)


def _label(source: Path) -> str:
    """A report name for a model source: a checkpoint's folder name, a source string as given."""
    from netxray.models.sources import parse_source

    return source.name if parse_source(str(source))[0] == "checkpoint" else str(source)


def _check_counts(*, k: int, repeats: int) -> None:
    if k < 1:
        fail(f"--k must be >= 1 (neighbours in the kNN graph), got {k}")
    if repeats < 1:
        fail(f"--repeats must be >= 1, got {repeats}")


def _claim_out(out: Path) -> Any:
    """Check ``--out`` is writable and take its lock before any work (the lock is held until the
    command ends, so a second writer of the same ``--out`` fails at once, with one line)."""
    from netxray.report import ReportLockedError, check_report_out, report_lock

    try:
        check_report_out(out)
        lock = report_lock(out)
        lock.__enter__()
    except (OSError, ReportLockedError) as exc:
        fail(str(exc) if str(exc).startswith("--out") else f"--out {out}: {exc}")
    # the caller releases it when the command ends (the kernel does if the process dies)
    return lock


def _finish(report: Any, out: Path, quiet: bool, allow_partial: bool = False) -> Path:
    """Write the report, print its summary; exit with status 3 when a lens failed (the report is
    written first) unless ``allow_partial``."""
    from netxray.report import ReportLockedError

    try:
        index = report.save(out)
    except (OSError, ReportLockedError) as exc:
        fail(str(exc) if str(exc).startswith("--out") else f"--out {out}: cannot write the report: {exc}")
    if not quiet:
        from rich.console import Console
        from rich.markup import escape

        console = Console(stderr=False, highlight=False, soft_wrap=True)
        for name, res in report.results.items():
            # escaped: a list prints as "[a,b]", which rich would otherwise take for a markup tag
            head = escape(", ".join(f"{k}={_short(v)}" for k, v in list(res.headline().items())[:5]))
            status = "[green]ok[/green]" if res.status == "ok" else f"[red]{res.status}[/red]: {escape(str(res.reason))}"
            console.print(f"  {name}: {status}  {head}")
    if report.failed:  # said on stderr even with --quiet: a lens that did not run is news
        for name, reason in report.failed.items():
            typer.secho(f"warning: {name}: {reason}", err=True, fg=typer.colors.YELLOW)
        typer.secho(f"{len(report.failed)} lens result(s) could not be computed; the report says why.",
                    err=True, fg=typer.colors.YELLOW)  # fmt: skip
    typer.echo(f"Report: {index.resolve()}")
    if report.failed and not allow_partial:
        raise typer.Exit(code=EXIT_PARTIAL)
    return index


def _short(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, list):
        return "[" + ",".join(map(str, v[:4])) + (",…]" if len(v) > 4 else "]")
    return str(v)


def _write_signature_files(report: Any, out: Path, meta_extra: dict[str, Any]) -> None:
    """The signature comparison as flat files (signatures.csv, distances.csv, clustering.csv,
    summary.csv, signatures.png, meta.json), as ``netxray compare-signatures`` writes them —
    added to the report's files, so they are saved atomically with it and in its manifest."""
    import io

    import pandas as pd

    from netxray._meta import metadata
    from netxray.lenses.nonlinearity import plot_signatures

    def atomic_write_text(path: Path, text: str) -> None:
        report.extra_files[path.name] = text.encode("utf-8")

    res = report.results.get("compare_nonlinearity")
    if res is None or res.status != "ok":
        return
    sigs = {n: c.results["nonlinearity"].tables["signature"] for n, c in report.children.items()
            if c.results.get("nonlinearity") and c.results["nonlinearity"].status == "ok"}  # fmt: skip
    long = pd.concat([t.assign(model=n) for n, t in sigs.items()], ignore_index=True)
    long = long[["model", *[c for c in long.columns if c != "model"]]]
    atomic_write_text(out / "signatures.csv", long.to_csv(index=False))
    atomic_write_text(out / "distances.csv", res.tables["distances"].to_csv(index_label="model"))
    atomic_write_text(out / "clustering.csv", res.tables["clustering"].to_csv(index=False))
    atomic_write_text(out / "summary.csv", res.tables["summary"].to_csv(index=False))
    meta = metadata(command="compare", **meta_extra,
                    model_hashes={n: c.meta.get("model_hash") for n, c in report.children.items()},
                    linkage=res.tables["clustering"].attrs.get("linkage"))  # fmt: skip
    atomic_write_text(out / "meta.json", json.dumps(meta, indent=2, default=str))
    fig = plot_signatures(sigs, x="relative", title=f"non-linearity signatures on {meta_extra.get('data')}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=130, bbox_inches="tight")
    report.extra_files["signatures.png"] = buf.getvalue()


def register(app: typer.Typer) -> None:
    """Add the ``scan`` and ``compare`` commands to the ``netxray`` app."""

    @app.command("scan")
    @data_options(weights=typer.Option(None, "--weights", help=WEIGHTS_HELP))
    def scan_cmd(
        checkpoint: Path | None = typer.Argument(None, metavar="MODEL", help=f"The model: {MODEL_SOURCES_HELP} (or, with --model, a weights file)."),
        data: str = typer.Option("digits", "--data", help=DATA_HELP),
        out: Path = typer.Option(Path("netxray-report"), "--out", help="Output directory for index.html, results.json and tables."),
        model: str | None = typer.Option(None, "--model", help=MODEL_HELP),
        opts: DataOptions = DataOptions(),  # --weights, --task, --device and the data-source options
        allow_partial: bool = typer.Option(False, "--allow-partial", help=ALLOW_PARTIAL_HELP),
        lenses: str | None = typer.Option(None, "--lenses", help=LENSES_HELP),
        n_samples: int = typer.Option(2048, "--n-samples", help="Samples per activation site (SPEC: 2048; all if fewer)."),
        samples: str = SAMPLES,
        modularity_n: int = typer.Option(500, "--modularity-n", help="Samples per modularity subset (N)."),
        k: int = typer.Option(3, "--k", help="Neighbours of the modularity kNN graph."),
        repeats: int = typer.Option(5, "--repeats", help="Modularity repeats (random stratified subsets)."),
        layers: str | None = typer.Option(None, "--layers", help="Comma-separated module paths probed by the modularity curve (default: natural probes)."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of every random choice (data split, sample subsets)."),
        title: str | None = typer.Option(None, "--title", help="Report title."),
        threads: int | None = typer.Option(None, "--threads", help="torch CPU threads (default: torch's; 1 is often fastest on a busy machine)."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars, only the last line."),
    ) -> None:  # fmt: skip
        """Scan one model with every lens and write an HTML report plus tables.

        The report has a summary card per lens, the non-linearity signature, the modularity curve with redundant layers and a pruning suggestion, weight histograms, statistics and node strengths, and the symmetry group with covering bounds — each with a sentence on how to read it. A lens that cannot run on the model is a note in the report; the others still run, and the exit status is then 3 (0 with --allow-partial).
        """
        from netxray.report import scan

        check_out(out, directory=True)
        lock = _claim_out(out)
        try:
            _check_counts(k=k, repeats=repeats)
            set_threads(threads)
            names = _lenses(lenses)
            net = load_cli_model(checkpoint, model, opts.weights, opts.task)
            if model is not None and opts.weights is None and checkpoint is None:
                typer.secho(f"warning: no --weights: scanning {model} as its factory initialises it "
                            "(untrained)", err=True, fg=typer.colors.YELLOW)  # fmt: skip
            dev = cli_device(opts.device, net)
            splits = opts.load_data(data, seed, net)
            check_fits(net, splits, data)
            layer_spec = _layers(layers)
            if layers is not None:
                from netxray.capture import resolve_layers

                try:
                    resolve_layers(net, layer_spec)
                except ValueError as exc:
                    fail(f"--layers {layers!r}: {exc}")
            label = model if model is not None else (_label(checkpoint) if checkpoint else None)
            try:
                report = scan(
                    net, splits, names, seed=seed, n_samples=n_samples, modularity_n=modularity_n, k=k,
                    repeats=repeats, layers=layer_spec, progress=not quiet, title=title, name=label,
                    device=dev, options={"nonlinearity": {"samples": samples}},
                )  # fmt: skip
            except ValueError as exc:
                fail(str(exc))
            report.meta["data_spec"] = data
            report.meta["checkpoint"] = str(checkpoint) if checkpoint else None
            _finish(report, out, quiet, allow_partial)
        finally:
            lock.__exit__(None, None, None)

    @app.command("compare")
    @data_options(weights=None)  # each positional is a model (or, with --model, its weights)
    def compare_cmd(
        checkpoints: list[Path] = typer.Argument(..., metavar="MODEL...", help=f"Two or more models: {MODEL_SOURCES_HELP} (or, with --model, weights files of that model)."),
        data: str = typer.Option("digits", "--data", help=DATA_HELP),
        out: Path = typer.Option(Path("compare"), "--out", help="Output directory."),
        model: str | None = typer.Option(None, "--model", help=MODEL_HELP + " Every positional is then a weights file for it."),
        opts: DataOptions = DataOptions(),  # --task, --device and the data-source options
        allow_partial: bool = typer.Option(False, "--allow-partial", help=ALLOW_PARTIAL_HELP),
        lenses: str | None = typer.Option(None, "--lenses", help=LENSES_HELP),
        method: str = typer.Option("dtw", "--method", help="Signature distance: dtw or resampled."),
        clusters: int | None = typer.Option(None, "--clusters", help="Cut the signature dendrogram into this many clusters."),
        n_samples: int = typer.Option(2048, "--n-samples", help="Samples per activation site."),
        modularity_n: int = typer.Option(500, "--modularity-n", help="Samples per modularity subset (N)."),
        k: int = typer.Option(3, "--k", help="Neighbours of the modularity kNN graph."),
        repeats: int = typer.Option(5, "--repeats", help="Modularity repeats."),
        seed: int = typer.Option(0, "--seed", min=0, help="Seed of every random choice."),
        tokens: str = typer.Option("mean", "--tokens", help="Token tensors (B, T, D): mean, reference or samples."),
        channel_axis: int | None = typer.Option(None, "--channel-axis", help="Feature axis of conv maps: default per site from the model graph; 1 (B, C, H, W) or -1 (channel-last) forces it."),
        title: str | None = typer.Option(None, "--title", help="Report title."),
        threads: int | None = typer.Option(None, "--threads", help="torch CPU threads (default: torch's; 1 is often fastest on a busy machine)."),
        quiet: bool = typer.Option(False, "--quiet", help="No progress bars."),
    ) -> None:  # fmt: skip
        """Compare several models in one report: every lens on each, then side by side.

        Signatures overlaid with their distance matrix (DTW) and clustering, modularity curves overlaid, weight statistics and densities side by side, and alignment distances between models of one architecture. Also writes the signature comparison as flat files: signatures.csv, distances.csv, clustering.csv, summary.csv, signatures.png, meta.json.
        """
        from netxray.report import compare_report

        if len(checkpoints) < 2:
            fail("compare needs at least two checkpoints (models)")
        check_out(out, directory=True)
        lock = _claim_out(out)
        try:
            _check_counts(k=k, repeats=repeats)
            set_threads(threads)
            if method not in ("dtw", "resampled"):
                fail(f"--method must be dtw or resampled, got {method!r}")
            if tokens not in ("mean", "reference", "samples"):
                fail(f"--tokens must be mean, reference or samples, got {tokens!r}")
            names = _lenses(lenses)
            models = {}
            splits = None
            for name, ck in zip(unique_names(checkpoints, _WEIGHT_SUFFIXES), checkpoints, strict=True):
                net = load_cli_model(ck if model is None else None, model,
                                     ck if model is not None else None, opts.task)  # fmt: skip
                dev = cli_device(opts.device, net)
                if splits is None:  # the first model supplies the defaults (image size, tokenizer)
                    splits = opts.load_data(data, seed, net)
                check_fits(net, splits, data, label=f"model {name}")
                models[name] = net
            try:
                report = compare_report(
                    models, splits, names, seed=seed, n_samples=n_samples, modularity_n=modularity_n,
                    k=k, repeats=repeats, progress=not quiet, title=title, signature_method=method,
                    clusters=clusters, device=dev,
                    options={"nonlinearity": {"tokens": tokens, "channel_axis": channel_axis}},
                )  # fmt: skip
            except ValueError as exc:
                fail(str(exc))
            report.meta["data_spec"] = data
            report.meta["checkpoints"] = [str(c) for c in checkpoints]
            _write_signature_files(report, out, {"method": method, "data": data, "seed": seed,
                                                 "n_samples": n_samples, "models": list(models),
                                                 "checkpoints": [str(c) for c in checkpoints]})  # fmt: skip
            if not quiet and "compare_nonlinearity" in report.results and report.results["compare_nonlinearity"].status == "ok":
                typer.echo(report.results["compare_nonlinearity"].tables["distances"].round(4).to_string())
            _finish(report, out, quiet, allow_partial)
        finally:
            lock.__exit__(None, None, None)

