"""``scan``: every lens over one model, gathered in a :class:`Report`; ``compare_report`` over several.

A :class:`Report` holds one :class:`LensResult` per lens (its tables, headline figures, plots,
how to read them, and a status), the metadata of the run, and for a comparison one child
report per model. ``Report.save(DIR)`` writes ``index.html`` (one self-contained file),
``results.json`` (metadata and summary) and every table as CSV (and Parquet when pyarrow is
installed). A lens that raises on this model is recorded as ``status="failed"`` with its reason
and shown as a note; the other lenses still run.

Example
-------
>>> import torch
>>> from netxray.report import scan
>>> model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 16), torch.nn.ReLU(),
...                             torch.nn.Linear(16, 10))
>>> x, y = torch.rand(200, 1, 8, 8), torch.arange(200) % 10
>>> rep = scan(model, (x, y), lenses=("parameters",), progress=False)
>>> rep.results["parameters"].status
'ok'
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from torch import nn

from netxray._files import (  # noqa: F401  (re-exported: netxray.report's public names)
    FLAT_MANIFEST,
    MANIFEST_GENERATOR,
    TEMP_MARKER,
    _file_sha256,
    _flat_owned,
    _is_flat_manifest,
    _owned,
    _sha256,
    check_owned_files,
    mark_temp_dir,
    own_temp_dir,
    owned_files,
    record_owned_files,
    report_files,
    write_owned_files,
)
from netxray._meta import (
    atomic_write_text,
    check_materialized,
    check_output_dir,
    metadata,
    model_hash,
    reused_model_hashes,
)
from netxray.report._saving import (  # noqa: F401  (re-exported: they lived here)
    _HELD,
    LOCK_MARK,
    MIN_FREE_BYTES,
    ReportLockedError,
    _all_files,
    _check_free_space,
    _fsync_dir,
    _install,
    _is_lock_file,
    _keep_index,
    _lock_path,
    _only_a_report,
    _remove_report_dir,
    _to_parquet,
    _write_tree,
    check_report_out,
    report_lock,
)
from netxray.report.html import render_html
from netxray.report.results import LensResult, ScanOptions

__all__ = [
    "LENSES", "LensResult", "Report", "ReportLockedError", "ScanOptions", "check_report_out",
    "compare_report", "report_files", "report_lock", "resolve_data", "scan", "write_owned_files",
    "check_owned_files", "record_owned_files",
]  # fmt: skip

LENSES: tuple[str, ...] = ("nonlinearity", "modularity", "parameters", "symmetry")
_DATA_LENSES = ("nonlinearity", "modularity")  # the lenses that run the model on data


def _jsonable(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        f = float(value)
        return f if math.isfinite(f) else None  # JSON has no NaN/inf
    if isinstance(value, np.ndarray):
        return _jsonable(value.tolist())
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return str(value)


def _safe_name(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name).strip("._") or "table"


@dataclass
class Report:
    """The result of :func:`scan` or :func:`compare_report`.

    ``results``: lens name -> :class:`LensResult`; ``meta``: how it was made; ``children``:
    for a comparison, one :class:`Report` per model.
    """

    title: str
    results: dict[str, LensResult]
    meta: dict[str, Any]
    children: dict[str, Report] = field(default_factory=dict)
    # further files saved with the report (relative path -> bytes), e.g. compare's flat tables
    extra_files: dict[str, bytes] = field(default_factory=dict)

    # ---- access
    @property
    def tables(self) -> dict[str, pd.DataFrame]:
        """Every table, keyed ``lens`` for a lens's main table and ``lens.part`` for the others;
        children's tables are prefixed ``model/``."""
        out: dict[str, pd.DataFrame] = {}
        for res in self.results.values():
            for i, (name, df) in enumerate(res.tables.items()):
                out[res.name if i == 0 else f"{res.name}.{name}"] = df
        for child_name, child in self.children.items():
            for name, df in child.tables.items():
                out[f"{child_name}/{name}"] = df
        return out

    @property
    def summary(self) -> dict[str, Any]:
        """Headline figures per lens (with n, d, k and seeds), plus status and reason."""
        out: dict[str, Any] = {}
        for name, res in self.results.items():
            out[name] = {"status": res.status, **({"reason": res.reason} if res.reason else {}),
                         **res.summary}  # fmt: skip
        for child_name, child in self.children.items():
            out[f"model:{child_name}"] = child.summary
        return out

    def __getitem__(self, lens: str) -> pd.DataFrame:
        res = self.results.get(lens)
        if res is None:
            raise KeyError(f"no lens {lens!r} in this report; it has {list(self.results)}")
        if res.table is None:
            raise KeyError(f"lens {lens!r} has no table ({res.status}: {res.reason})")
        return res.table

    @property
    def timings(self) -> dict[str, float]:
        """Wall seconds per lens (children as ``model/lens``): kept apart from the results, which
        are the same for the same seed while timings are not."""
        out = {name: round(res.seconds, 3) for name, res in self.results.items()}
        for c, child in self.children.items():
            out.update({f"{c}/{n}": t for n, t in child.timings.items()})
        return out

    @property
    def failed(self) -> dict[str, str]:
        """Lens name -> reason, for every lens that did not run (children included)."""
        out = {n: r.reason or r.status for n, r in self.results.items() if r.status != "ok"}
        for c, child in self.children.items():
            out.update({f"{c}/{n}": r for n, r in child.failed.items()})
        return out

    # ---- output
    def _repr_html_(self) -> str:
        """What a notebook shows for a Report: a compact summary (one card per lens with its
        headline numbers and status, failures, the plots as thumbnails) instead of the raw repr."""
        from netxray.report.html import render_summary_html

        return render_summary_html(self)

    def __repr__(self) -> str:
        lenses = ", ".join(f"{n}={r.status}" for n, r in self.results.items())
        return f"Report({self.title!r}, lenses: {lenses}; children: {len(self.children)})"

    def to_html(self, path: str | os.PathLike[str] | None = None) -> str:
        """The report as one self-contained HTML document (plots embedded, no script, opens
        offline); written atomically to ``path`` if given. ``report.save(DIR)`` writes it as
        ``DIR/index.html`` next to the tables; in a notebook, the Report itself shows a summary.

        Example:
            >>> html = report.to_html("report.html")  # doctest: +SKIP
        """
        text = render_html(self)
        if path is not None:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            atomic_write_text(path, text)
        return text

    def to_json(self, files: Sequence[str] | None = None) -> str:
        """``results.json``: metadata and summary (NaN/inf written as null); ``files`` is the
        manifest of what :meth:`save` wrote (paths relative to the report directory)."""
        record = {"title": self.title, "meta": self.meta, "summary": self.summary,
                  "tables": sorted(self.tables), "timings_s": self.timings}  # fmt: skip
        if files is not None:
            record["files"] = sorted(files)
        return json.dumps(_jsonable(record), indent=2) + "\n"

    def _manifest(self, files: Mapping[str, bytes]) -> bytes:
        """``results.json`` for the rendered ``files``: the record, plus the proof of ownership —
        ``generator: netxray`` and the SHA-256 of every file (results.json itself excepted)."""
        record = json.loads(self.to_json(list(files) + ["results.json"]))
        record["generator"] = MANIFEST_GENERATOR
        record["file_sha256"] = {rel: _sha256(data) for rel, data in sorted(files.items())}
        return (json.dumps(record, indent=2) + "\n").encode("utf-8")

    def _files(self, parquet: bool) -> dict[str, bytes]:
        """Every file of the report but results.json, rendered in memory: relative path -> bytes."""
        files: dict[str, bytes] = {}
        for name, df in self.tables.items():
            sub, _, leaf = name.rpartition("/")
            prefix = f"models/{_safe_name(sub)}/" if sub else ""
            stem = _safe_name(leaf)
            files[f"{prefix}{stem}.csv"] = df.to_csv(index=_keep_index(df)).encode("utf-8")
            if parquet:
                files[f"{prefix}{stem}.parquet"] = _to_parquet(df)
        for rel, data in self.extra_files.items():
            files[Path(rel).as_posix()] = data
        files["index.html"] = render_html(self).encode("utf-8")
        return files

    def save(self, directory: str | os.PathLike[str], *, parquet: bool | None = None) -> Path:
        """Write ``index.html``, ``results.json`` and every table (CSV, plus Parquet when pyarrow
        is installed, or when ``parquet=True``) into ``directory``; return the index.html path.

        A comparison's per-model tables go into ``directory/models/<name>/``.

        Safe to interrupt and to race:

        - *atomic*: the files are written into a temporary directory beside ``directory`` and
          moved into place, so a run killed at any moment leaves the previous complete report
          or none — never a mix (when ``directory`` also holds files of the user's, the new files
          are moved in one by one, ``results.json`` last: until it is there the report is
          incomplete by definition);
        - *owned*: ``results.json`` identifies netxray (``generator``) and records the SHA-256 of
          every file the report wrote (``file_sha256``); saving over an earlier report removes only
          the files it proves are its own (listed, and unchanged since). Anything else in
          ``directory`` — a file absent from the manifest, one whose hash differs, another tool's
          ``index.html`` or ``results.json`` — is the user's: it stays, and a report that would
          overwrite it is refused with one line (:class:`FileExistsError`);
        - *checked first*: ``directory`` may not be ``/``, the home directory or a system folder
          (:func:`netxray._meta.check_output_dir`), and the free space must hold the report;
        - *locked*: a second process saving to the same ``directory`` at the same time fails at
          once with :class:`ReportLockedError` (see :func:`report_lock`).
        """
        out = Path(directory)
        if parquet is None:
            try:
                import pyarrow  # noqa: F401

                parquet = True
            except ImportError:
                parquet = False
        check_output_dir(out)
        with report_lock(out):
            check_report_out(out)
            files = self._files(bool(parquet))
            files["results.json"] = self._manifest(files)
            _check_free_space(out, sum(len(v) for v in files.values()))
            _install(out, files)
        return out / "index.html"


# --------------------------------------------------------------------------- data


def resolve_data(data: Any, seed: int = 0) -> tuple[Any, str]:
    """(the samples every lens of a scan reads, a short description).

    ``data``: any container :func:`netxray.capture.inputs.resolve_samples` reads — a
    ``load_data`` spec, DataSplits (its test split), a Dataset, DataLoader, torch Dataset,
    tensors or numpy arrays, dict batches, an iterable of batches. It is resolved once, so
    every lens sees the same samples (a stream is read once, whole).
    """
    from netxray.capture.inputs import _Indexable, resolve_samples

    if isinstance(data, os.PathLike):
        data = str(data)
    samples = resolve_samples(data, seed=seed)
    kind = "" if isinstance(samples, _Indexable) else ", read lazily"
    return samples, f"{samples.name} ({len(samples)} samples{kind})"


def _check_k(chosen: Sequence[str], opts: ScanOptions, data: Any) -> None:
    """``k`` against the modularity subset size, before any lens runs (it failed after them)."""
    if "modularity" not in chosen:
        return
    try:
        n = min(opts.modularity_n, len(data))
    except TypeError:  # a stream of unknown length: the lens checks it
        return
    if opts.k >= n:
        raise ValueError(
            f"scan: k = {opts.k} neighbours needs more than k samples per modularity subset, but there are "
            f"{n} (modularity_n = {opts.modularity_n}, {len(data)} samples in the data); lower k (--k) "
            "or give more data"
        )


def _n_used(data: Any, n_samples: int) -> int | None:
    """Samples a data lens actually draws: n_samples, or all of them when the data has fewer."""
    return min(n_samples, len(data)) if hasattr(data, "__len__") else None


# --------------------------------------------------------------------------- progress


class _Progress:
    """A rich progress bar over lens steps (silent when disabled)."""

    def __init__(self, enabled: bool, total: int, label: str) -> None:
        self.bar = None
        if enabled and total:
            from rich.console import Console
            from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

            self.bar = Progress(
                TextColumn("[bold]{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                TimeElapsedColumn(), console=Console(stderr=True), transient=False,
            )  # fmt: skip
            self.bar.start()
            self.task = self.bar.add_task(label, total=total)

    def step(self, description: str) -> None:
        if self.bar is not None:
            self.bar.update(self.task, description=description)

    def advance(self) -> None:
        if self.bar is not None:
            self.bar.advance(self.task)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()


# --------------------------------------------------------------------------- scan


def _check_lenses(lenses: Sequence[str] | str) -> list[str]:
    if isinstance(lenses, str):
        lenses = [s.strip() for s in lenses.split(",") if s.strip()]
    lenses = list(lenses)
    bad = [name for name in lenses if name not in LENSES]
    if bad or not lenses:
        raise ValueError(f"lenses: unknown {bad or lenses!r}; expected some of {', '.join(LENSES)}")
    return list(dict.fromkeys(lenses))


def _model_description(model: nn.Module) -> dict[str, Any]:
    cfg = getattr(model, "netxray_config", None)
    return {
        "model": type(model).__name__,
        "arch": cfg.get("arch") if isinstance(cfg, dict) else None,
        "model_source": getattr(model, "netxray_source", None),
        "weights": getattr(model, "netxray_weights", None),
        "n_params": int(sum(p.numel() for p in model.parameters())),
        "model_hash": model_hash(model),
    }


def scan(
    model: nn.Module,
    data: Any,
    lenses: Sequence[str] | str = LENSES,
    *,
    seed: int = 0,
    n_samples: int = 2048,
    modularity_n: int = 500,
    k: int = 3,
    repeats: int = 5,
    layers: Any = "auto",
    batch_size: int = 256,
    device: Any = None,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    title: str | None = None,
    name: str | None = None,
) -> Report:
    """Run the lenses on ``model`` with ``data`` and gather the results in a :class:`Report`.

    Args:
        model: any ``nn.Module`` (never modified: weights and train/eval flags are checked
            unchanged afterwards).
        data: samples in any container: a ``load_data`` spec (``"digits"``, ``"npz:PATH"``,
            ``"imagefolder:DIR"``…), a DataSplits (the whole data set when the source has no split of its own, else its test split: :meth:`~netxray.data.DataSplits.measured`), a Dataset, a torch
            ``Dataset`` or ``DataLoader``, ``(x, y)`` tensors or numpy arrays, dict batches with
            a ``labels`` key, an iterable of batches (see
            :func:`netxray.capture.inputs.resolve_samples`). Labels are needed by the
            modularity lens only.
        device: None (where the model is), ``"cpu"``, ``"cuda"`` or ``"auto"``; the model is
            never moved (another device runs a copy).
        lenses: some of ``nonlinearity``, ``modularity``, ``parameters``, ``symmetry``.
        seed: one seed for every random choice (sample subsets); same seed, same numbers.
        n_samples: samples per activation site for the signature (SPEC: 2048; fewer if the
            data has fewer). ``modularity_n``, ``k``, ``repeats``: the modularity curve's N, k, R.
        layers: probed layers for the modularity curve: ``"auto"`` (natural probes: a built-in
            model's, or any model's stem, blocks and pre-head read from its graph) or module paths.
        options: per-lens keyword overrides, e.g. ``{"modularity": {"tol": 0.01}}``.
        progress: a progress bar on stderr.

    A lens that raises is recorded (``status="failed"``, ``reason``) and the others still run.

    Returns:
        :class:`Report` — ``report["nonlinearity"]`` is that lens's table, ``report.summary``
        the headline figures, ``report.save(DIR)`` writes the files.
    """
    from netxray.report import runners

    if not isinstance(model, nn.Module):
        raise TypeError(f"scan: model must be a torch.nn.Module, got {type(model).__name__}")
    from netxray.capture.graph import unwrap_model

    model = unwrap_model(model)  # DataParallel / DDP / torch.compile: the same report as the model
    chosen = _check_lenses(lenses)
    opts = ScanOptions(
        seed=int(seed), n_samples=int(n_samples), modularity_n=int(modularity_n), k=int(k),
        repeats=int(repeats), layers=layers, batch_size=int(batch_size), device=device,
        extra={str(key): dict(v) for key, v in (options or {}).items()},
    )  # fmt: skip
    if opts.n_samples < 2 or opts.modularity_n < 2:
        raise ValueError(f"scan: n_samples and modularity_n must be >= 2, got {n_samples}, {modularity_n}")
    check_materialized(model, f"scan: {type(model).__name__}")
    from netxray.capture.inputs import place_model

    data, data_desc = resolve_data(data, seed=opts.seed)
    _check_k(chosen, opts, data)
    flags_before = [m.training for m in model.modules()]
    results: dict[str, LensResult] = {}
    # every lens records the model's hash: computed once here and reused (the check below
    # hashes afresh, outside the cache, to verify the model came back unmodified)
    with reused_model_hashes():
        desc = _model_description(model)
        # the data lenses run on the chosen device (a copy of the model when it lives elsewhere,
        # made once for all lenses); the weight lenses read the model as given
        run_model, dev = place_model(model, device)
        opts.device = dev
        bar = _Progress(progress, len(chosen), f"scan {name or desc['model']}")
        try:
            for lens in chosen:
                bar.step(f"{name or desc['model']}: {lens}")
                target = run_model if lens in _DATA_LENSES else model
                results[lens] = runners.run_lens(lens, target, data, opts)
                bar.advance()
        finally:
            bar.close()
    # the promise "never modify what the user gave", checked rather than assumed
    changed = []
    if model_hash(model) != desc["model_hash"]:
        changed.append("weights or buffers")
    if [m.training for m in model.modules()] != flags_before:
        changed.append("train/eval flags")
    if changed:
        raise RuntimeError(
            f"scan: a lens modified the model's {' and '.join(changed)}; this is a netxray bug "
            f"(lenses run: {chosen})"
        )
    meta = metadata(
        kind="scan", name=name, **desc, data=data_desc, seed=opts.seed, n=_n_used(data, opts.n_samples),
        n_samples=opts.n_samples, modularity_n=opts.modularity_n, k=opts.k, repeats=opts.repeats, lenses=chosen,
        layers=opts.layers if isinstance(opts.layers, (str, list, tuple)) else str(opts.layers),
        statuses={n: r.status for n, r in results.items()}, device=str(dev),
    )  # fmt: skip
    return Report(title=title or f"netxray scan — {name or desc['model']}", results=results, meta=meta)


def compare_report(
    models: Mapping[str, nn.Module],
    data: Any,
    lenses: Sequence[str] | str = LENSES,
    *,
    seed: int = 0,
    n_samples: int = 2048,
    modularity_n: int = 500,
    k: int = 3,
    repeats: int = 5,
    options: Mapping[str, Mapping[str, Any]] | None = None,
    progress: bool = True,
    title: str | None = None,
    signature_method: str = "dtw",
    clusters: int | None = None,
    on_model: Callable[[str, Report], None] | None = None,
    batch_size: int = 256,
    device: Any = None,
) -> Report:
    """One report over several models: each model scanned with the same data, seed and n, then
    compared — signatures overlaid with their DTW distance matrix and clustering, modularity
    curves overlaid against relative depth, weight statistics side by side on shared histogram
    bins, and alignment distances between models of the same architecture.

    ``models``: name -> model (at least two). ``signature_method``: ``"dtw"`` or ``"resampled"``;
    ``clusters``: cut the signature dendrogram into this many clusters. ``on_model(name,
    report)`` is called after each model's scan. ``data``, ``batch_size`` and ``device`` as in
    :func:`scan`. Returns a :class:`Report` whose ``children``
    are the per-model scans.
    """
    from netxray.report import runners

    if not isinstance(models, Mapping) or len(models) < 2:
        raise ValueError("compare_report: models must be a mapping name -> nn.Module with at least two models")
    for mname, m in models.items():
        if not isinstance(m, nn.Module):
            raise TypeError(f"compare_report: model {mname!r} is a {type(m).__name__}, not an nn.Module")
    chosen = _check_lenses(lenses)
    if signature_method not in ("dtw", "resampled"):
        raise ValueError(f"signature_method must be 'dtw' or 'resampled', got {signature_method!r}")
    data, data_desc = resolve_data(data, seed=seed)
    children: dict[str, Report] = {}
    for mname, m in models.items():
        children[mname] = scan(
            m, data, chosen, seed=seed, n_samples=n_samples, modularity_n=modularity_n, k=k,
            repeats=repeats, options=options, progress=progress, name=mname,
            batch_size=batch_size, device=device,
        )  # fmt: skip
        if on_model is not None:
            on_model(mname, children[mname])
    bar = _Progress(progress, len(chosen), "compare")
    results: dict[str, LensResult] = {}
    try:
        for lens in chosen:
            bar.step(f"compare: {lens}")
            results[f"compare_{lens}"] = runners.compare_lens(
                lens, models, children, seed=seed,
                settings={"signature_method": signature_method, "clusters": clusters},
            )  # fmt: skip
            bar.advance()
    finally:
        bar.close()
    meta = metadata(
        kind="compare", models={n: c.meta.get("model_hash") for n, c in children.items()},
        data=data_desc, seed=seed, n=_n_used(data, n_samples), n_samples=n_samples, modularity_n=modularity_n, k=k, repeats=repeats,
        lenses=chosen, signature_method=signature_method, clusters=clusters,
    )  # fmt: skip
    return Report(
        title=title or f"netxray compare — {', '.join(models)}", results=results, meta=meta,
        children=children,
    )
