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

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
_EMBED_TYPES = (nn.Embedding, nn.EmbeddingBag)

GLOBAL = "<global>"


def _to_f64(t: torch.Tensor) -> np.ndarray:
    # float64 on the CPU; bfloat16/half have no direct numpy view
    return t.detach().to(device="cpu", dtype=torch.float64).numpy().ravel()


def parameter_role(module: nn.Module, param_name: str) -> str:
    """Role of a parameter: ``norm`` (any parameter of a normalization layer), ``weight``,
    ``bias``, ``embedding`` or ``other`` (free tensors such as a ViT's ``cls_token``)."""
    if isinstance(module, _NORM_TYPES):
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
                st = S.spectral_stats(t if device is None else t.to(device), min_tail=min_tail, rule=rule)
                esd[name] = S.esd_histogram(st.pop("evals"), bins=bins)
                row.update(st)
                row["status"] = "ok"
            except Exception as exc:  # a status in its row, never a crash of the table
                row["status"] = f"error: {type(exc).__name__}: {exc}"
            rows.append(row)
            del t  # before the next read: one tensor in memory at a time
    df = pd.DataFrame(rows).reindex(columns=["name", "shape", *S.SPECTRAL_COLUMNS, "status"])
    meta = {"min_tail": min_tail, "rule": rule,
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
            for t in tensors:  # the finite range, exact in the tensor's own dtype
                finite = t[torch.isfinite(t)]
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
            counts, _ = W.histogram_counts(_to_f64(t), edges)
            total += counts
            inside = int(counts.sum())
            h[k] = counts / (inside * widths) if inside else np.zeros(edges.size - 1)
        if d:
            inside = int(total.sum())
            h[GLOBAL] = total / (inside * widths) if inside else np.zeros(edges.size - 1)
        out.append(h)
    return edges, out


# --------------------------------------------------------------------------- node strengths

# ops (canonical names of the recorded graph, netxray.capture.graph) that map each unit to
# itself: a hidden unit's in- and out-strength add up across them (SPEC §3.2)
_ELEMENTWISE_OPS = frozenset({
    "relu", "relu6", "leaky_relu", "prelu", "rrelu", "elu", "selu", "celu", "gelu", "silu", "mish",
    "tanh", "sigmoid", "hardtanh", "hardswish", "hardsigmoid", "softplus", "softsign",
    "tanhshrink", "logsigmoid", "threshold", "dropout", "alpha_dropout", "feature_alpha_dropout",
    "contiguous", "clone", "detach", "to", "float", "identity",
})
# per-channel ops keep the channel graph intact (each channel maps only to itself)
_CHANNELWISE_OPS = frozenset({
    "batch_norm", "instance_norm", "max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d",
    "avg_pool2d", "avg_pool3d", "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
    "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d", "dropout1d", "dropout2d",
    "dropout3d", "feature_dropout",
})
_LAYER_OPS = frozenset({"linear", "conv1d", "conv2d", "conv3d"})


def _is_flatten(graph: Any, node: Any) -> bool:
    """True for a flatten / view / reshape of (N, C, *spatial) into (N, C·Π spatial): channel c
    then owns the contiguous block of columns c·HW … (c+1)·HW−1."""
    if node.name not in ("flatten", "view", "reshape") or not node.inputs or not node.outputs:
        return False
    src, dst = graph.values[node.inputs[0]].shape, graph.values[node.outputs[0]].shape
    return len(src) >= 3 and len(dst) == 2 and dst[0] == src[0] and dst[1] == math.prod(src[1:])


def _default_example(model: nn.Module) -> torch.Tensor | None:
    """Two zero samples of the input a model declares: a built-in netxray model's
    ``input_shape``, or the image size a timm / Hugging Face image model's preprocessing names;
    else None."""
    cfg = getattr(model, "netxray_config", None)
    shape = cfg.get("input_shape") if isinstance(cfg, dict) else None
    if shape:
        return torch.zeros((2, *[int(s) for s in shape]))
    pre = getattr(model, "netxray_preprocessing", None)
    size = pre.get("size") if isinstance(pre, dict) else None
    if isinstance(size, int) and size > 0:
        return torch.zeros((2, len(pre.get("mean") or ()) or 3, size, size))
    return None


def _hidden_links(model: nn.Module, example: Any) -> tuple[list[tuple[str, str, bool]], str]:
    """Pairs (layer a, layer b, through_flatten) where a's output units feed b through
    element-wise (or, for conv channel graphs, channel-wise) ops only.

    Read on the graph recorded from one real forward pass (:func:`netxray.capture.graph.record_graph`):
    from each Linear/Conv call, follow the value it returns while it has a single reader (among
    those the outputs are computed from) that is an allowed op, up to the next Linear/Conv call reading it as its data. Returns the pairs
    and a note (why none could be found: no example input, or the model did not run on it)."""
    from netxray.capture.graph import record_graph

    if example is None:
        example = _default_example(model)
    if example is None:
        return [], ("total strength not computed: it is read from one forward pass of the model, and "
                    "no example input was given (pass example= a batch the model accepts; built-in "
                    "netxray models use their declared input shape)")  # fmt: skip
    p = next((t for t in model.parameters() if t.is_floating_point()), None)

    def cast(x: Any) -> Any:  # the example runs in the model's own dtype and device
        if isinstance(x, torch.Tensor) and p is not None:
            return x.to(dtype=p.dtype if x.is_floating_point() else x.dtype, device=p.device)
        if isinstance(x, dict):
            return {k: cast(v) for k, v in x.items()}
        return type(x)(cast(v) for v in x) if isinstance(x, (list, tuple)) else x

    try:
        graph = record_graph(model, cast(example))
    except Exception as exc:  # noqa: BLE001 - said in the note, in plain words
        reason = str(exc.__cause__ or exc).split("\n")[0][:200]
        return [], f"total strength not computed: the model could not run on the example input ({reason})"
    modules = dict(model.named_modules())
    layer_types = (nn.Linear, *_CONV_TYPES)

    def layer_op(node: Any, value: int) -> bool:  # a Linear/Conv module's own call reading value as its data
        m = modules.get(node.module_path)
        return (node.kind == "op" and node.name in _LAYER_OPS and isinstance(m, layer_types)
                and node.inputs[:1] == [value] and f"{node.module_path}.weight" in node.params)  # fmt: skip

    live, todo = set(graph.outputs), list(graph.outputs)  # values the model's outputs are computed from
    while todo:
        for u in graph.producer(todo.pop()).inputs:
            if u not in live:
                live.add(u)
                todo.append(u)
    links: dict[tuple[str, str, bool], None] = {}
    for node in graph.ops():
        if node.name not in _LAYER_OPS or not node.outputs or not layer_op(node, node.inputs[0] if node.inputs else -1):
            continue
        is_conv = isinstance(modules[node.module_path], _CONV_TYPES)
        value, flattened = node.outputs[0], False
        while True:
            # readers whose result never reaches the output (``if h.sum() > 0``) do not branch it
            users = [u for u in graph.consumers(value) if any(o in live for o in u.outputs)]
            if len(users) != 1:
                break
            nxt = users[0]
            if nxt.inputs[:1] != [value]:  # the chain must be the op's first (data) argument
                break
            if nxt.name in _LAYER_OPS:
                if layer_op(nxt, value):
                    links[(node.module_path, nxt.module_path, flattened)] = None
                break
            ok = nxt.name in _ELEMENTWISE_OPS or (is_conv and not flattened and nxt.name in _CHANNELWISE_OPS)
            if not ok and is_conv and not flattened and _is_flatten(graph, nxt):
                ok = flattened = True
            if not ok or not nxt.outputs:
                break
            value = nxt.outputs[0]
    return list(links), ""


def _attention_blocks(module: nn.Module) -> tuple[torch.Tensor, ...] | None:
    """(W_q, W_k, W_v, W_o, num_heads) of a multi-head attention module, or None."""
    if isinstance(module, nn.MultiheadAttention):
        if module.in_proj_weight is not None:
            wq, wk, wv = module.in_proj_weight.chunk(3, dim=0)
        else:
            wq, wk, wv = module.q_proj_weight, module.k_proj_weight, module.v_proj_weight
        return wq, wk, wv, module.out_proj.weight, module.num_heads
    qkv, proj, heads = getattr(module, "qkv", None), getattr(module, "proj", None), getattr(module, "num_heads", None)
    if isinstance(qkv, nn.Linear) and isinstance(proj, nn.Linear) and isinstance(heads, int):
        if qkv.out_features == 3 * proj.in_features:
            wq, wk, wv = qkv.weight.chunk(3, dim=0)
            return wq, wk, wv, proj.weight, heads
    return None


def _unit_rows(layer: str, mtype: str, kind: str, signed: np.ndarray, absv: np.ndarray,
               detail: str = "") -> pd.DataFrame:
    return pd.DataFrame({
        "layer": layer, "module_type": mtype, "kind": kind,
        "unit": np.arange(signed.size, dtype=np.int64), "signed": signed, "abs": absv,
        "status": "ok", "detail": detail,
    })


def node_strengths(model: nn.Module, *, include_bias: bool = True, example: Any = None) -> pd.DataFrame:
    """Node strengths of every layer read as a weighted bipartite graph (SPEC §3.2).

    One row per unit: ``layer`` (module path), ``module_type``, ``kind`` and ``unit``, then
    ``signed`` and ``abs`` strengths.
    - ``kind="in"``: output unit j of a layer, s_in_j = Σ_i W_ji (+ b_j if ``include_bias``);
      ``"out"``: input unit i, s_out_i = Σ_j W_ji. Conv layers use the channel graph
      A_oc = Σ_{u,v} K[o, c, u, v] (abs: Σ|K|).
    - ``kind="total"``: a hidden unit's in-strength from ``layer`` plus its out-strength into the
      next layer (named in ``detail``), only where nothing but element-wise ops (per-channel ops
      for conv channels; a flatten maps channel c to its block of columns) sit between the two.
      Which layer feeds which is read from the graph of one real forward pass on ``example``
      (:func:`netxray.capture.graph.record_graph`: a tensor, a tuple of positional arguments or a
      dict of keyword arguments; two samples are plenty). Without ``example``, a built-in netxray
      model runs on zeros of its declared ``input_shape`` (a timm / Hugging Face image model on
      zeros of its preprocessing's image size); any other model gets a ``note`` row saying the
      total strength needs an example input.
    - ``kind="q"|"k"|"v"|"o"``: per-head strength of attention modules (``unit`` = head).
    Parameterized modules it cannot map are rows with ``status`` ``"skipped"`` (normalization,
    free tensors, embeddings: not a bipartite layer) or ``"unmapped"`` (no rule for that
    type), the reason in ``detail`` — never silently dropped. Non-finite weights count as 0.
    Per-layer fluctuation: :func:`strength_fluctuation`.

    Example:
        >>> import torch
        >>> lin = torch.nn.Linear(2, 2)
        >>> with torch.no_grad():
        ...     _ = lin.weight.copy_(torch.tensor([[1., 2.], [3., 4.]])); _ = lin.bias.zero_()
        >>> node_strengths(torch.nn.Sequential(lin)).query("kind == 'in'")["signed"].tolist()
        [3.0, 7.0]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model: expected a torch.nn.Module, got {type(model).__name__}")
    from netxray.measures.cost import check_cost, model_units, per_unit_cost

    # one table row per unit (about 300 bytes as a DataFrame row) and float64 |W| copies: a
    # 10^7-unit layer is gigabytes, so estimate it before anything is allocated
    n_values, n_units = model_units(model)
    need, secs = per_unit_cost(n_values, n_units, copies=2, bytes_per_unit=300)
    check_cost(f"node strengths: {n_units} units in {n_values} parameter values", bytes_needed=need,
               seconds=secs, option="leave the node strengths out (netxray weights without --strengths/--plot "
               "streams the per-tensor statistics in flat memory; scan: --lenses without parameters)")  # fmt: skip
    parts: list[pd.DataFrame] = []
    notes: list[dict[str, str]] = []
    cache: dict[str, dict[str, np.ndarray]] = {}

    def note(layer: str, mtype: str, status: str, reason: str) -> None:
        notes.append({"layer": layer, "module_type": mtype, "status": status, "detail": reason})

    covered: set[int] = set()  # ids of parameters some rule read
    with torch.no_grad():
        for path, module in model.named_modules():
            mtype = type(module).__name__
            try:
                if isinstance(module, nn.Linear):
                    s = W.linear_strengths(
                        module.weight, module.bias if include_bias and module.bias is not None else None
                    )
                elif isinstance(module, _CONV_TYPES):
                    a, aa = W.conv_channel_matrix(module.weight, groups=module.groups)
                    s = {"in_signed": a.sum(1), "in_abs": aa.sum(1),
                         "out_signed": a.sum(0), "out_abs": aa.sum(0)}
                    if include_bias and module.bias is not None:
                        b = np.nan_to_num(_to_f64(module.bias), nan=0.0, posinf=0.0, neginf=0.0)
                        s["in_signed"] = s["in_signed"] + b
                        s["in_abs"] = s["in_abs"] + np.abs(b)
                else:
                    s = None
                if s is not None:
                    cache[path] = s
                    covered.update(id(p) for p in module.parameters(recurse=False))
                    parts.append(_unit_rows(path, mtype, "in", s["in_signed"], s["in_abs"]))
                    parts.append(_unit_rows(path, mtype, "out", s["out_signed"], s["out_abs"]))
                    continue
                blocks = _attention_blocks(module)
                if blocks is not None:
                    h = W.attention_head_strengths(*blocks[:4], num_heads=int(blocks[4]))
                    for k in "qkvo":
                        parts.append(_unit_rows(path, mtype, k, h[f"{k}_signed"], h[f"{k}_abs"]))
                    if isinstance(module, nn.MultiheadAttention):
                        covered.update(id(p) for p in module.parameters(recurse=False))
            except Exception as exc:  # one layer failing is a row, not a crash
                note(path, mtype, "error", f"{type(exc).__name__}: {exc}")
                covered.update(id(p) for p in module.parameters(recurse=False))
        # say which parameterized modules no rule mapped, and why
        for path, module in model.named_modules():
            own = [(n, p) for n, p in module.named_parameters(recurse=False) if id(p) not in covered]
            if not own:
                continue
            mtype = type(module).__name__
            names = ", ".join(n for n, _ in own)
            if isinstance(module, _NORM_TYPES):
                note(path, mtype, "skipped", f"normalization layer ({names}): an element-wise affine map, no edges between units")
            elif isinstance(module, _EMBED_TYPES):
                note(path, mtype, "skipped", f"embedding table ({names}): a lookup, not a bipartite layer between units")
            elif isinstance(module, nn.MultiheadAttention):
                continue
            elif not any(True for _ in module.children()):  # a leaf layer of a type we do not know
                note(path, mtype, "unmapped", f"no strength rule for {mtype} (parameters: {names}); supported: Linear, Conv1d/2d/3d, multi-head attention")
            else:  # tensors held directly by a container (a ViT's cls_token, pos_embed)
                note(path or "<model>", mtype, "skipped", f"free parameter tensor(s) {names}: not the edges of a layer")
    # total strength of hidden units between consecutive layers
    links, link_note = _hidden_links(model, example)
    for a, b, through_flatten in links:
        if a not in cache or b not in cache:
            continue
        s_in = cache[a]["in_signed"], cache[a]["in_abs"]
        s_out = cache[b]["out_signed"], cache[b]["out_abs"]
        n_units = s_in[0].size
        if through_flatten:
            if s_out[0].size % n_units:
                note(a, "", "error", f"total strength: {b} has {s_out[0].size} inputs, not a multiple of {n_units} channels")
                continue
            # Flatten(C, *spatial) → channel c owns the contiguous block of columns c·HW … (c+1)·HW−1
            s_out = tuple(x.reshape(n_units, -1).sum(1) for x in s_out)
        if s_out[0].size != n_units:
            note(a, "", "error", f"total strength: {a} has {n_units} outputs but {b} reads {s_out[0].size}")
            continue
        mtype = type(model.get_submodule(a)).__name__
        parts.append(_unit_rows(a, mtype, "total", s_in[0] + s_out[0], s_in[1] + s_out[1], detail=f"next={b}"))
    if link_note:
        note("<model>", type(model).__name__, "note", link_note)
    for n in notes:
        parts.append(pd.DataFrame([{**n, "kind": "-", "unit": -1, "signed": np.nan, "abs": np.nan}]))
    cols = ["layer", "module_type", "kind", "unit", "signed", "abs", "status", "detail"]
    df = pd.concat(parts, ignore_index=True).reindex(columns=cols) if parts else pd.DataFrame(columns=cols)
    df["unit"] = df["unit"].astype(np.int64)
    mapped = sorted(set(df.loc[df["status"] == "ok", "layer"]))
    df.attrs["meta"] = metadata(model_hash=model_hash(model), include_bias=include_bias,
                                model_type=type(model).__name__)
    df.attrs["summary"] = {
        "layers_mapped": len(mapped),
        "not_mapped": [f"{n['layer']} ({n['module_type']}): {n['status']}: {n['detail']}" for n in notes],
    }
    return df


def strength_fluctuation(strengths: pd.DataFrame) -> pd.DataFrame:
    """Per-layer summary of a :func:`node_strengths` table: for each (layer, kind) the number of
    units and mean / std ("layer fluctuation", population) / min / max of signed and abs strengths.

    Example:
        >>> import torch
        >>> f = strength_fluctuation(node_strengths(torch.nn.Linear(3, 2)))
        >>> sorted(f["kind"])
        ['in', 'out']
    """
    ok = strengths[strengths["status"] == "ok"]
    if ok.empty:
        return pd.DataFrame(columns=["layer", "kind", "n_units"])
    g = ok.groupby(["layer", "kind"], sort=False)
    out = g.agg(
        n_units=("unit", "size"),
        signed_mean=("signed", "mean"), signed_std=("signed", lambda s: float(np.std(s))),
        signed_min=("signed", "min"), signed_max=("signed", "max"),
        abs_mean=("abs", "mean"), abs_std=("abs", lambda s: float(np.std(s))),
        abs_min=("abs", "min"), abs_max=("abs", "max"),
    ).reset_index()
    return out


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
