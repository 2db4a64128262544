"""Lens 3 — the learnable parameters of one model: statistics, histograms, node strengths (SPEC §3).

``weight_stats(model)`` gives one row per parameter tensor (role ``weight`` / ``bias`` / ``norm`` /
``embedding`` / ``other``) plus a ``<global>`` row over all weight tensors concatenated;
``node_strengths(model)`` gives one row per unit of every layer it can read as a weighted
bipartite graph (Linear, ConvNd as a channel graph, multi-head attention per head), and one row
per parameterized module it could not map, saying why. Nothing here modifies the model.

Example:
    >>> import torch
    >>> m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    >>> weight_stats(m)[["name", "role", "count"]].values.tolist()[:2]
    [['0.weight', 'weight', 12], ['0.bias', 'bias', 3]]
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from netxray._meta import metadata, model_hash
from netxray.lenses._parameters_strengths import (  # noqa: F401  (re-exported: they lived here)
    _CHANNELWISE_OPS,
    _CONV_TYPES,
    _ELEMENTWISE_OPS,
    _EMBED_TYPES,
    _LAYER_OPS,
    _attention_blocks,
    _default_example,
    _hidden_links,
    _is_flatten,
    _to_f64,
    _unit_rows,
    is_norm_module,
    node_strengths,
    strength_fluctuation,
)
from netxray.measures import weights as W

__all__ = [
    "weight_stats",
    "weight_spectra",
    "checkpoint_tensors",
    "weight_histograms",
    "node_strengths",
    "strength_fluctuation",
    "plot_weight_histograms",
    "plot_strengths",
    "parameter_role",
]


GLOBAL = "<global>"

_RANGE_CHUNK = 1 << 22  # values per chunk of the histogram range pass (a bool mask and a copy)


def parameter_role(module: nn.Module, param_name: str) -> str:
    """Role of a parameter: ``norm`` (any parameter of a normalization layer), ``weight``,
    ``bias``, ``embedding`` or ``other`` (free tensors such as a ViT's ``cls_token``)."""
    if is_norm_module(module):
        return "norm"
    if isinstance(module, _EMBED_TYPES):
        return "embedding"
    if param_name == "bias" or param_name.endswith("_bias"):
        return "bias"
    if param_name == "weight" or param_name.endswith("_weight") or param_name.startswith("weight_"):
        return "weight"
    return "other"


def _named_params(model: nn.Module) -> list[tuple[str, str, nn.Module, str, torch.Tensor]]:
    """(full name, module path, module, local name, tensor) for every parameter, model order.

    A tensor shared by several modules (tied weights) is listed once, under its first name, as
    ``model.named_parameters()`` does, so it is not counted twice in the global statistics."""
    out, seen = [], set()
    for mpath, module in model.named_modules():
        for pname, p in module.named_parameters(recurse=False):
            if id(p) in seen:
                continue
            seen.add(id(p))
            full = f"{mpath}.{pname}" if mpath else pname
            out.append((full, mpath, module, pname, p))
    return out


# --------------------------------------------------------------------------- streamed checkpoints


@dataclass(frozen=True)
class TensorEntry:
    """One tensor of a safetensors checkpoint, known from the file headers alone."""

    name: str
    file: Path
    dtype: str
    shape: tuple[int, ...]
    nbytes: int
    offset: int = 0  # absolute byte offset of the data in ``file``


_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}  # fmt: skip


def _safetensors_header(file: Path) -> tuple[dict[str, Any], int]:
    """(tensor name → {dtype, shape, data_offsets}, byte offset of the data section)."""
    import json
    import struct

    with open(file, "rb") as fh:
        head = fh.read(8)
        if len(head) != 8:
            raise ValueError(f"{file}: not a safetensors file (shorter than its 8-byte header size)")
        (size,) = struct.unpack("<Q", head)
        if size > 100 * 2**20:
            raise ValueError(f"{file}: not a safetensors file (header of {size} bytes)")
        try:
            header = json.loads(fh.read(size))
        except ValueError as exc:
            raise ValueError(f"{file}: not a safetensors file (unreadable header: {exc})") from None
    header.pop("__metadata__", None)
    return header, 8 + size


def checkpoint_tensors(path: str | Path) -> list[TensorEntry]:
    """The tensors of a safetensors checkpoint, in file order, from the headers only.

    ``path``: a ``.safetensors`` file; a directory in the Hugging Face sharded layout
    (``model.safetensors.index.json`` mapping tensor names to shard files); or a directory
    of ``*.safetensors`` files (read in name order). Nothing is loaded, no code is run.

    Example:
        >>> import tempfile, torch, safetensors.torch as st
        >>> d = tempfile.mkdtemp()
        >>> st.save_file({"w": torch.zeros(2, 3)}, f"{d}/model.safetensors")
        >>> [(e.name, e.dtype, e.shape) for e in checkpoint_tensors(d)]
        [('w', 'F32', (2, 3))]
    """
    import json

    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    if path.is_file():
        files = [path]
    else:
        index = path / "model.safetensors.index.json"
        if index.exists():
            weight_map = json.loads(index.read_text()).get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise ValueError(f"{index}: expected a non-empty 'weight_map' of tensor → shard file")
            files = [path / f for f in dict.fromkeys(weight_map.values())]
            missing = [str(f) for f in files if not f.exists()]
            if missing:
                raise FileNotFoundError(f"{index} names shard files that are missing: {missing}")
        else:
            files = sorted(path.glob("*.safetensors"))
            if not files:
                raise FileNotFoundError(f"{path}: no model.safetensors.index.json and no *.safetensors files")
    entries = []
    for f in files:
        header, base = _safetensors_header(f)
        for name, info in header.items():
            shape = tuple(int(v) for v in info["shape"])
            dtype = str(info["dtype"])
            begin, end = (int(v) for v in info["data_offsets"])
            nbytes = int(np.prod(shape, dtype=np.int64)) * _DTYPE_BYTES.get(dtype, 1)
            if end - begin != nbytes:
                raise ValueError(f"{f}: tensor {name!r} ({dtype} {shape}) has {end - begin} bytes, expected {nbytes}")
            entries.append(TensorEntry(name, f, dtype, shape, nbytes, base + begin))
    return entries


_TORCH_DTYPES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                 "I64": "int64", "I32": "int32", "I16": "int16", "I8": "int8", "U8": "uint8",
                 "BOOL": "bool"}  # fmt: skip


def _read_tensor(fh: Any, e: TensorEntry) -> torch.Tensor:
    """One tensor's bytes read straight from its byte range into a buffer of its own size.

    Not ``safe_open``: its memory map makes every page of the shard that has been read count
    in the process's resident memory, so reading a whole shard looked like holding it all;
    ``readinto`` keeps the resident memory at the tensor itself. Little-endian, as the
    safetensors format specifies."""
    if e.dtype not in _TORCH_DTYPES:
        raise TypeError(f"dtype {e.dtype} is not supported")
    buf = torch.empty(e.nbytes, dtype=torch.uint8)
    fh.seek(e.offset)
    if fh.readinto(buf.numpy()) != e.nbytes:
        raise ValueError(f"{e.file}: tensor {e.name!r} is truncated")
    return buf.view(getattr(torch, _TORCH_DTYPES[e.dtype])).reshape(e.shape)


def _stream(entries: Sequence[TensorEntry], progress: bool, label: str):
    """Yield (entry, tensor) one tensor at a time (one read per tensor); a byte progress bar."""
    bar = None
    if progress:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        bar = Progress(TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                       TimeRemainingColumn(), transient=True)  # fmt: skip
        bar.start()
        task = bar.add_task(label, total=sum(e.nbytes for e in entries))
    try:
        by_file: dict[Path, list[TensorEntry]] = {}
        for e in entries:
            by_file.setdefault(e.file, []).append(e)
        for f, group in by_file.items():
            with open(f, "rb", buffering=0) as fh:
                for e in group:
                    yield e, _read_tensor(fh, e)
                    if bar is not None:
                        bar.advance(task, e.nbytes)
    finally:
        if bar is not None:
            bar.stop()


def _role_from_name(name: str, ndim: int) -> str:
    """The role of a checkpoint tensor without its module: a heuristic on the name (stated):
    ``norm`` when a path part names a normalization (…norm…, ln…, bn…); ``embedding`` for a 2-D
    table whose path names one (wte, wpe, embed_tokens, embed_positions, …embeddings except
    patch embeddings, which are convolutions); ``bias`` for a trailing bias; ``weight`` for a
    ≥ 2-D trailing weight; else ``other``."""
    parts = name.lower().split(".")
    if any("norm" in p or p.startswith(("ln", "bn")) for p in parts[:-1]) or parts[-1] in ("gamma", "beta"):
        return "norm"
    tables = ("wte", "wpe", "embed_tokens", "embed_positions")
    if ndim == 2 and any(p in tables or (p.endswith("embeddings") and "patch" not in p) for p in parts):
        return "embedding"
    if parts[-1].endswith("bias"):
        return "bias"
    if parts[-1].endswith("weight") and ndim >= 2:
        return "weight"
    return "other"


def _float_chunks(t: torch.Tensor):
    return W.torch_float32_chunks(t)


def _weight_stats_streamed(path: Path, near_zero: float, include_global: bool, progress: bool) -> pd.DataFrame:
    """weight_stats of a safetensors checkpoint read tensor by tensor (no model is built)."""
    entries = checkpoint_tensors(path)
    rows: list[dict[str, Any]] = []
    glob = W.GlobalStats(near_zero)
    weights: list[TensorEntry] = []
    for e, t in _stream(entries, progress, f"weights of {path.name}"):
        role = _role_from_name(e.name, t.ndim)
        row: dict[str, Any] = {"name": e.name, "module": e.name.rpartition(".")[0],
                               "module_type": "", "role": role,
                               "shape": "x".join(map(str, e.shape)) or "scalar"}  # fmt: skip
        try:
            if not t.is_floating_point():
                raise TypeError(f"dtype {e.dtype} is not a floating-point weight")
            full = W.stats_from_chunks(lambda t=t: _float_chunks(t), t.numel(), near_zero)
            if role == "weight" and include_global:
                glob.add(full)
                weights.append(e)
            row.update({k: v for k, v in full.items() if not k.startswith("_")})
            row["status"] = "nonfinite" if row["n_nonfinite"] else "ok"
        except Exception as exc:  # one odd tensor is a status, not a crash of the table
            row["status"] = f"error: {type(exc).__name__}: {exc}"
        del t
        rows.append(row)
    if include_global:
        row = {"name": GLOBAL, "module": "", "module_type": "", "role": "global", "shape": ""}
        if weights:
            # the global percentiles' second radix pass re-reads the weight tensors
            def reread():
                for _, t in _stream(weights, progress, "global percentiles"):
                    yield from _float_chunks(t)
                    del t  # before the next read: one tensor in memory at a time

            row.update(glob.finish(reread))
            row["status"] = "nonfinite" if row["n_nonfinite"] else "ok"
        else:
            row.update({k: np.nan for k in W.STAT_COLUMNS})
            row["status"] = "empty: the checkpoint has no weight tensors"
        rows.append(row)
    cols = ["name", "module", "module_type", "role", "shape", *W.STAT_COLUMNS, "status"]
    df = pd.DataFrame(rows).reindex(columns=cols)
    df.attrs["meta"] = metadata(
        checkpoint=str(path), n_params=int(sum(int(np.prod(e.shape, dtype=np.int64)) for e in entries)),
        n_bytes=int(sum(e.nbytes for e in entries)), near_zero=near_zero, streamed=True,
    )  # fmt: skip
    return df


def weight_stats(
    model: nn.Module | str | Path,
    *,
    near_zero: float = 1e-3,
    include_global: bool = True,
    progress: bool = False,
) -> pd.DataFrame:
    """Per-tensor statistics of every parameter (SPEC §3.1) plus a global row over all weights.

    Columns: ``name, module, module_type, role, shape`` then :data:`STAT_COLUMNS`
    (count, n_finite, n_nonfinite, mean, population std, skewness, excess kurtosis,
    p0…p100, L1, L2, RMS, near-zero fraction) and ``status`` (``ok``, ``nonfinite`` when NaN/inf
    are present — statistics then use the finite values only — or ``error: …``). The global row
    (``name == "<global>"``, role ``global``) concatenates every tensor of role ``weight``.
    ``df.attrs["meta"]`` holds netxray version, model hash, parameter count, ``near_zero``.

    ``model`` may also be a safetensors checkpoint path (a file, or a directory in the Hugging
    Face sharded layout with ``model.safetensors.index.json``): it is then read tensor by tensor
    (each tensor's byte range from the header), without building the model — peak memory about the largest tensor plus
    a few chunks; bf16/fp16 are read exactly (through float32, chunk by chunk); ``progress``
    shows a bar in bytes. Roles then come from the tensor names (see ``_role_from_name``), the
    global row's moments are combined across tensors exactly and its percentiles re-read the
    weights once (exact radix selection).

    Example:
        >>> import torch
        >>> df = weight_stats(torch.nn.Linear(3, 2))
        >>> df.set_index("name").loc["<global>", "count"]
        np.int64(6)
    """
    if isinstance(model, (str, Path)):
        return _weight_stats_streamed(Path(model), near_zero, include_global, progress)
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module or a checkpoint path, got {type(model).__name__}")
    rows: list[dict[str, Any]] = []
    params = _named_params(model)
    n_params = sum(p.numel() for *_, p in params)
    is_weight = [parameter_role(mod, pname) == "weight" for _, _, mod, pname, _ in params]
    # float32/fp16/bf16 parameters (nearly every model): each tensor read in float32 chunks, the
    # percentiles by the exact radix selection (bit for bit np.percentile of the float64 values)
    # and the global row combined tensor by tensor — no float64 copy of the weights (690 MB for
    # ViT-B/16) and no introselect over it. Any float64 parameter: the float64 route below.
    low = all(str(p.dtype) in W._TORCH_FLOATS for *_, p in params)
    glob = W.GlobalStats(near_zero)
    global_weights: list[torch.Tensor] = []
    # float64 route: one buffer for the global row, filled tensor by tensor (no concatenate copy)
    n_global = sum(p.numel() for w, (*_, p) in zip(is_weight, params, strict=True) if w) if include_global else 0
    buf = np.empty(0 if low else n_global, dtype=np.float64)
    pos = 0
    with torch.no_grad():
        for (full, mpath, module, pname, p), w in zip(params, is_weight, strict=True):
            row: dict[str, Any] = {
                "name": full,
                "module": mpath,
                "module_type": type(module).__name__,
                "role": parameter_role(module, pname),
                "shape": "x".join(map(str, p.shape)) or "scalar",
            }
            try:
                if low:
                    full = W.stats_from_chunks(lambda t=p: _float_chunks(t), p.numel(), near_zero)
                    if w and include_global:
                        glob.add(full)
                        global_weights.append(p)
                    row.update({k: v for k, v in full.items() if not k.startswith("_")})
                elif w and include_global:
                    view = buf[pos:pos + p.numel()]
                    view[:] = p.detach().reshape(-1).cpu().to(torch.float64).numpy()
                    pos += p.numel()
                    row.update(W.tensor_stats(view, near_zero=near_zero))
                else:
                    row.update(W.tensor_stats(_to_f64(p), near_zero=near_zero))
                row["status"] = "nonfinite" if row["n_nonfinite"] else "ok"
            except Exception as exc:  # one odd tensor is a status, not a crash of the table
                row["status"] = f"error: {type(exc).__name__}: {exc}"
            rows.append(row)
    if include_global:
        row = {"name": GLOBAL, "module": "", "module_type": "", "role": "global", "shape": ""}
        if global_weights:  # the radix selection's second pass re-reads the weight tensors

            def reread():
                with torch.no_grad():
                    for t in global_weights:
                        yield from _float_chunks(t)

            row.update(glob.finish(reread))
            row["status"] = "nonfinite" if row["n_nonfinite"] else "ok"
        elif pos:
            row.update(W.tensor_stats(buf[:pos], near_zero=near_zero, overwrite=True))
            row["status"] = "nonfinite" if row["n_nonfinite"] else "ok"
        else:
            row.update({k: np.nan for k in W.STAT_COLUMNS})
            row["status"] = "empty: the model has no weight tensors"
        rows.append(row)
    del buf
    cols = ["name", "module", "module_type", "role", "shape", *W.STAT_COLUMNS, "status"]
    df = pd.DataFrame(rows).reindex(columns=cols)
    for c in ("count", "n_finite", "n_nonfinite"):
        df[c] = df[c].astype("Int64") if df[c].isna().any() else df[c].astype(np.int64)
    df.attrs["meta"] = metadata(
        model_hash=model_hash(model), n_params=int(n_params), near_zero=near_zero,
        model_type=type(model).__name__,
    )
    return df


def weight_spectra(
    model: nn.Module | str | Path,
    *,
    min_tail: int = 10,
    rule: str = "netxray",
    bins: int = 50,
    progress: bool = False,
    device: Any = None,
    precision: str = "float64",
) -> pd.DataFrame:
    """The spectral view of every weight matrix (:mod:`netxray.measures.spectral`).

    One row per weight tensor with at least 2 axes (a ConvNd kernel read as out × in·k…;
    embeddings included, biases and normalization parameters left out): ``name, shape`` then
    n_rows, n_cols, spectral_norm, frobenius_norm, stable_rank, alpha (power-law exponent of the
    ESD tail: continuous MLE, x_min by minimal KS distance), alpha_sigma, xmin, xmax, n_tail,
    ks_distance, fit_status, and ``status``. ``df.attrs["esd"]``: per name, the log10-binned
    density of the eigenvalues of WᵀW (densities, edges). ``model``: a module or a safetensors
    checkpoint path, streamed tensor by tensor as in :func:`weight_stats`. ``rule="weightwatcher"``
    fits with WeightWatcher's defaults (tails down to 2 eigenvalues, eigenvalues > 1e-5, their
    small-N fit; :func:`netxray.measures.spectral.fit_power_law`) instead of netxray's tails of
    ≥ ``min_tail`` values. ``device`` (e.g. ``"cuda"``): each tensor is copied there in turn
    (one at a time) and its Gram matrix and eigenvalues computed there; None: where it lives.
    ``precision="float32"``: eigenvalues from a float32 Gram (faster, |Δλ| ≈ 1e-7·λ_max;
    :func:`netxray.measures.spectral.gram_eigenvalues`).

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> df = weight_spectra(torch.nn.Linear(64, 32))
        >>> df[["name", "n_rows", "n_cols"]].values.tolist()
        [['weight', 32, 64]]
    """
    from netxray.measures import spectral as S

    def tensors() -> Iterator[tuple[str, str, torch.Tensor]]:
        if isinstance(model, (str, Path)):
            for e, t in _stream(checkpoint_tensors(model), progress, f"spectra of {Path(model).name}"):
                yield e.name, _role_from_name(e.name, t.ndim), t
                del t  # not held by this frame while the next tensor is read
        elif isinstance(model, nn.Module):
            for full, _, module, pname, p in _named_params(model):
                yield full, parameter_role(module, pname), p
        else:
            raise TypeError(f"model: expected a torch.nn.Module or a checkpoint path, got {type(model).__name__}")

    rows: list[dict[str, Any]] = []
    esd: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    with torch.no_grad():
        for name, role, t in tensors():
            if t.ndim < 2 or role not in ("weight", "embedding", "other") or not t.is_floating_point():
                continue
            row: dict[str, Any] = {"name": name, "shape": "x".join(map(str, t.shape))}
            try:
                st = S.spectral_stats(
                    t if device is None else t.to(device), min_tail=min_tail, rule=rule, precision=precision
                )
                esd[name] = S.esd_histogram(st.pop("evals"), bins=bins)
                row.update(st)
                row["status"] = "ok"
            except Exception as exc:  # a status in its row, never a crash of the table
                row["status"] = f"error: {type(exc).__name__}: {exc}"
            rows.append(row)
            del t  # before the next read: one tensor in memory at a time
    df = pd.DataFrame(rows).reindex(columns=["name", "shape", *S.SPECTRAL_COLUMNS, "status"])
    meta = {"min_tail": min_tail, "rule": rule, "precision": precision,
            "estimator": "continuous power-law MLE, x_min by minimal KS distance"}  # fmt: skip
    if isinstance(model, nn.Module):
        meta["model_hash"] = model_hash(model)
    else:
        meta["checkpoint"] = str(model)
    df.attrs["meta"] = metadata(**meta)
    df.attrs["esd"] = esd
    return df


def weight_histograms(
    models: nn.Module | Sequence[nn.Module],
    *,
    bins: int = 64,
    edges: Any | None = None,
    role: str = "weight",
) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
    """Histograms of parameters on bin edges shared by every model given (densities, ∫ = 1).

    For each model: a dict ``tensor name -> density`` for tensors of ``role`` plus ``"<global>"``
    (all of them concatenated). Edges span the finite range of all selected tensors of all
    models unless ``edges`` is given (values outside are then left out of the densities).

    Example:
        >>> import torch
        >>> torch.manual_seed(0) and None
        >>> e, h = weight_histograms([torch.nn.Linear(4, 4), torch.nn.Linear(4, 4)], bins=8)
        >>> float((h[0]["<global>"] * np.diff(e)).sum())
        1.0
    """
    if isinstance(models, nn.Module):
        models = [models]
    # the tensors themselves, read one at a time (never all weights in float64 at once, nor
    # their concatenation: the global histogram is the sum of the per-tensor counts)
    per_model: list[dict[str, torch.Tensor]] = [
        {full: p.detach() for full, _, mod, pname, p in _named_params(m) if parameter_role(mod, pname) == role}
        for m in models
    ]
    if edges is None:
        tensors = [t for d in per_model for t in d.values()]
        # said in the user's terms, before shared_bin_edges would say it in its own
        if not tensors:
            raise ValueError(f"weight_histograms: the model has no {role} parameters: nothing to plot")
        lo, hi = math.inf, -math.inf
        with torch.no_grad():
            for t in tensors:  # the finite range, exact in the tensor's own dtype, chunk by chunk
                flat = t.reshape(-1)
                for i in range(0, flat.numel(), _RANGE_CHUNK):
                    c = flat[i:i + _RANGE_CHUNK]
                    finite = c[torch.isfinite(c)]
                    if finite.numel():
                        lo, hi = min(lo, float(finite.min())), max(hi, float(finite.max()))
        if not math.isfinite(lo):
            n = sum(t.numel() for t in tensors)
            raise ValueError(f"weight_histograms: all {n} {role} values in {len(tensors)} tensors are "
                             "NaN or inf (the training diverged): no distribution to plot")
        edges = W.shared_bin_edges(bins=bins, range=(lo, hi))
    edges = np.asarray(edges, dtype=np.float64)
    widths = np.diff(edges)
    out = []
    for d in per_model:
        h: dict[str, np.ndarray] = {}
        total = np.zeros(edges.size - 1, dtype=np.int64)
        for k, t in d.items():
            # counts add up, and each value's bin depends on it alone: float64 chunk by chunk
            # gives the counts of the whole float64 tensor exactly
            counts = np.zeros(edges.size - 1, dtype=np.int64)
            for c in W.float64_chunks(t):
                counts += W.histogram_counts(c, edges)[0]
            total += counts
            inside = int(counts.sum())
            h[k] = counts / (inside * widths) if inside else np.zeros(edges.size - 1)
        if d:
            inside = int(total.sum())
            h[GLOBAL] = total / (inside * widths) if inside else np.zeros(edges.size - 1)
        out.append(h)
    return edges, out


# --------------------------------------------------------------------------- plots


def _figure(nrows: int = 1, ncols: int = 1, size: tuple[float, float] = (8, 5)) -> tuple[Any, Any]:
    from matplotlib.figure import Figure

    fig = Figure(figsize=size, layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False)
    return fig, axes


def _save(fig: Any, path: str | Path | None) -> None:
    if path is not None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(path, dpi=110)


def plot_weight_histograms(
    model: nn.Module, path: str | Path | None = None, *, bins: int = 64, max_lines: int = 13
) -> Any:
    """Figure: density of all weights (top) and of each weight tensor (bottom) on shared edges.

    Up to ``max_lines`` tensors: one line each. More: a heat map with one row per tensor (in
    parameter order, labelled by tensor or by stage, see
    :func:`netxray._plotting.label_positions`) and log10 density as colour, which stays
    readable at hundreds of tensors. Returns the matplotlib Figure; saves it when ``path`` is given.
    """
    from netxray._plotting import PAGE_WIDTH, finish_figure, label_positions

    edges, (h,) = weight_histograms(model, bins=bins)
    centers = 0.5 * (edges[1:] + edges[:-1])
    names = [k for k in h if k != GLOBAL]
    many = len(names) > max_lines
    low = min(9.0, 1.6 + 0.018 * len(names)) if many else 3.4
    fig, axes = _figure(2, 1, (PAGE_WIDTH if many else 8, 3.0 + low))
    if GLOBAL in h:
        axes[0, 0].stairs(h[GLOBAL], edges, fill=True, alpha=0.6)
    axes[0, 0].set(title="all weights", xlabel="weight", ylabel="density")
    ax = axes[1, 0]
    if many:
        dens = np.stack([h[k] for k in names])
        with np.errstate(divide="ignore"):
            img = np.log10(np.where(dens > 0, dens, np.nan))
        im = ax.imshow(img, aspect="auto", interpolation="nearest", cmap="viridis",
                       extent=(edges[0], edges[-1], len(names) - 0.5, -0.5))  # fmt: skip
        fig.colorbar(im, ax=ax, label="log10 density", pad=0.01)
        label_positions(ax, names, axis="y", max_labels=30)
        ax.set(title=f"per weight tensor ({len(names)} tensors, one row each, shared bins)", xlabel="weight")
    else:
        for name in names:
            ax.plot(centers, h[name], lw=1, label=name)
        ax.set(title="per weight tensor (shared bins)", xlabel="weight", ylabel="density", yscale="symlog")
        if names:
            ax.legend(fontsize=7)
    finish_figure(fig)
    _save(fig, path)
    return fig


def plot_strengths(
    strengths: pd.DataFrame, path: str | Path | None = None, *, kind: str = "in", max_boxes: int = 40
) -> Any:
    """Figure: distribution of |w| strengths per layer and the layer fluctuation (std of signed
    and abs strengths) against depth, for strengths of ``kind``.

    Up to ``max_boxes`` layers: one box plot per layer, the two panels side by side. More: each
    layer's distribution summarized as its median with the interquartile range (dark band) and
    the 5–95 % range (light band), and both panels span the page one above the other; the x axes
    are labelled by layer or by stage (:func:`netxray._plotting.label_positions`). Returns the
    matplotlib Figure; saves it when ``path`` is given.
    """
    from netxray._plotting import PAGE_WIDTH, finish_figure, label_positions

    ok = strengths[(strengths["status"] == "ok") & (strengths["kind"] == kind)]
    layers = list(dict.fromkeys(ok["layer"]))
    many = len(layers) > max_boxes
    if many or len(layers) > 12:
        fig, axes = _figure(2, 1, (PAGE_WIDTH, 7.6))
        box_ax, fl_ax = axes[0, 0], axes[1, 0]
    else:
        fig, axes = _figure(1, 2, (12, 4.5))
        box_ax, fl_ax = axes[0, 0], axes[0, 1]
    if layers:
        x = np.arange(len(layers), dtype=float)
        groups = {lay: g["abs"].to_numpy(dtype=float) for lay, g in ok.groupby("layer", sort=False)}
        values = [groups[lay] for lay in layers]
        q = np.array([np.percentile(v, [5, 25, 50, 75, 95]) for v in values])
        units = [len(v) for v in values]
        if many:
            box_ax.fill_between(x, q[:, 0], q[:, 4], color="tab:blue", alpha=0.15, lw=0, label="5–95 %")
            box_ax.fill_between(x, q[:, 1], q[:, 3], color="tab:blue", alpha=0.35, lw=0, label="25–75 %")
            box_ax.plot(x, q[:, 2], "-", color="tab:blue", lw=1.2, label="median")
            box_ax.legend(fontsize=8, ncol=3)
        else:
            box_ax.boxplot(values, positions=x, showfliers=False, widths=0.6)
        tips = [f"{lay} — {n} units, median |w| strength {m:.3g} (IQR {a:.3g}–{b:.3g})"
                for lay, n, m, a, b in zip(layers, units, q[:, 2], q[:, 1], q[:, 3], strict=True)]  # fmt: skip
        label_positions(box_ax, [str(v) for v in layers], x, tips=tips)
        fl = strength_fluctuation(ok).set_index("layer").loc[layers]
        ms = 4 if len(layers) <= 200 else 2
        fl_ax.plot(x, fl["abs_std"], "o-", ms=ms, label="std of |w| strength")
        fl_ax.plot(x, fl["signed_std"], "s--", ms=ms, label="std of signed strength")
        ftips = [f"{lay} — std |w| {a:.3g}, std signed {b:.3g}"
                 for lay, a, b in zip(layers, fl["abs_std"], fl["signed_std"], strict=True)]  # fmt: skip
        label_positions(fl_ax, [str(v) for v in layers], x, tips=ftips)
        for a in (box_ax, fl_ax):
            a.set_xlim(-0.6, len(layers) - 0.4)
            a.grid(alpha=0.3, axis="y")
        fl_ax.legend(fontsize=8)
    box_ax.set(title=f"|w| {kind}-strength per layer" + (" (median and ranges)" if many else ""), ylabel="strength")
    fl_ax.set(title="layer fluctuation", ylabel="std")
    finish_figure(fig)
    _save(fig, path)
    return fig
