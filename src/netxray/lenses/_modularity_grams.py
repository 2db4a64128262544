"""Modularity lens, part 1 — the Gram matrices of each probed layer, one layer at a time.

Which layers are probed, how samples are chunked to bound memory, and the forward passes that
reduce each layer's activations to a Gram matrix (:class:`_GramReducer`), stopping early once
the last probed layer has run. Split out of :mod:`netxray.lenses.modularity`, which re-exports
every name.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
from torch import nn

from netxray._meta import eval_mode
from netxray.capture import Capture, forward_batch
from netxray.capture.core import attention_mask
from netxray.capture.inputs import (
    _shape_of,
    _to_model,
    model_dtype,
)
from netxray.capture.reducers import flatten_features

# float64 column chunk of the Gram accumulation: N × chunk × 8 bytes
_CHUNK_BYTES = 64 << 20


def _chunk_repeats(subsets: list[np.ndarray], d: int, budget: int) -> list[list[int]]:
    """Group repeats so the union of their samples times d floats stays under ``budget`` bytes."""
    groups: list[list[int]] = []
    current: list[int] = []
    union: set[int] = set()
    for r, s in enumerate(subsets):
        grown = union | set(s.tolist())
        if current and len(grown) * d * 4 > budget:
            groups.append(current)
            current, grown = [], set(s.tolist())
        current.append(r)
        union = grown
    if current:
        groups.append(current)
    return groups


class _StopForward(BaseException):
    """Raised after the probed layer ran: the rest of the forward pass is not needed.

    A BaseException so that no ``except Exception`` in a model or hook swallows it.
    """


class _GramReducer:
    """Reduces a layer's flattened rows to the Gram matrix G = F Fᵀ (float64).

    When one batch brings every sample (the pool fits in one batch: ``n_rows`` ≤ batch size,
    e.g. a scan's 64 ViT images), G is computed inside the hook from that batch and no row is
    kept: the layer costs N²·8 bytes, not N·d·4 (39 MB per ViT-B/16 block at N = 64), so every
    layer fits in one forward pass. Otherwise the rows go into one buffer allocated for the
    ``n_rows`` samples expected (no concatenation copy), and G is built by :meth:`gram` when the
    lens measures this layer, not by :meth:`compute`, so the layers of one pass never hold
    their Gram matrices at the same time. Either way G is accumulated over column chunks
    (N × chunk float64 at a time, the same chunks and order, so both routes give the same
    bits), so very wide flattened features never exist in float64 all at once: peak ≈
    N·d·4 + N²·8 bytes. The rows live where the model runs: on a GPU they never leave it, the
    Gram matrix is built there and stays there for the kNN blocks and top-k; only each row's k
    neighbours come back (untested on real GPU hardware).
    """

    def __init__(self, n_rows: int, mask_of_batch: dict[str, Any] | None = None) -> None:
        self.n_rows = n_rows
        self.buf: torch.Tensor | None = None
        self.pos = 0
        self.done: tuple[Any, int] | None = None
        # the current batch's attention mask ({"mask": (B, T) or None}): padded tokens are zeroed,
        # so the cosine graph is that of the real tokens whatever the padded length
        self.mask_of_batch = mask_of_batch if mask_of_batch is not None else {}

    def update(self, batch: torch.Tensor) -> None:
        rows = flatten_features(batch, self.mask_of_batch.get("mask"))
        if not torch.isfinite(rows).all():
            raise ValueError("layer output contains NaN or infinite values")
        # rows kept in the layer's own floating dtype (bf16 exact, half the bytes of float32);
        # only the Gram's column blocks become float64
        dtype = rows.dtype if rows.is_floating_point() else torch.float32
        b = rows.shape[0]
        if self.done is None and self.buf is None and b >= self.n_rows:
            self.done = _gram(rows.to(dtype))  # every sample at once: reduce now, keep nothing
            return
        if self.done is not None:  # more rows than announced after all (rare): keep them
            raise RuntimeError("modularity: a layer produced more rows than the samples fed")
        if self.buf is None:
            self.buf = torch.empty(max(self.n_rows, b), rows.shape[1], dtype=dtype, device=rows.device)
        if self.pos + b > self.buf.shape[0]:  # more rows than announced: grow (rare)
            grow = torch.empty(b, self.buf.shape[1], dtype=dtype, device=self.buf.device)
            self.buf = torch.cat([self.buf[: self.pos], grow])
        # a copy: the model may modify this tensor in place after the hook (inplace ReLU)
        self.buf[self.pos : self.pos + b] = rows
        self.pos += b

    def compute(self) -> _GramReducer | None:
        """Itself: the capture computes every layer of a pass at once, so a Gram matrix not yet
        formed in the hook is built later, one layer at a time (:meth:`gram`)."""
        if self.done is None and self.buf is None:  # nothing kept (the capture says why)
            return None
        return self

    def gram(self) -> tuple[Any, int]:
        """(G = F Fᵀ in float64, d), the rows freed: a numpy array, or a tensor on the rows'
        device when that is not the CPU (the kNN blocks and top-k then run there too)."""
        if self.done is not None:
            out, self.done = self.done, None
            return out
        if self.buf is None:
            raise RuntimeError("the rows were already reduced and freed")
        out = _gram(self.buf[: self.pos])
        self.buf = None  # free the rows as soon as the Gram matrix exists
        return out


def _gram(rows: torch.Tensor) -> tuple[Any, int]:
    """(F Fᵀ in float64, d) for floating rows F (N × d: float32/float64, bf16/fp16), over column chunks: a numpy
    array, or a tensor on the rows' device when that is not the CPU (G stays there)."""
    n, d = rows.shape
    step = max(1, _CHUNK_BYTES // (8 * max(n, 1)))
    if rows.device.type != "cpu":  # reduce where the rows are; G stays there for the kNN
        g = torch.zeros(n, n, dtype=torch.float64, device=rows.device)
        for c0 in range(0, d, step):
            block = rows[:, c0 : c0 + step].to(torch.float64)
            g += block @ block.T
        return g, int(d)
    native = rows.dtype in (torch.float32, torch.float64)  # else bf16/fp16: numpy has no bfloat16
    feats = rows.numpy() if native else rows
    gram = np.zeros((n, n))
    for c0 in range(0, d, step):
        if native:
            block = np.ascontiguousarray(feats[:, c0 : c0 + step], dtype=np.float64)
        else:  # exact: every bf16/fp16 value is a float64
            block = feats[:, c0 : c0 + step].to(torch.float64).numpy()
        # numpy recognises b @ b.T and calls the symmetric rank-k update (half the flops)
        gram += block @ block.T
    return gram, int(d)


def _sub_gram(gram: Any, pos: np.ndarray) -> Any:
    """The rows and columns ``pos`` of a Gram matrix (numpy, or a tensor where it lives)."""
    if isinstance(gram, torch.Tensor):
        t = torch.from_numpy(np.asarray(pos, dtype=np.int64)).to(gram.device)
        return gram.index_select(0, t).index_select(1, t)
    return gram[np.ix_(pos, pos)]


def _probe_layers(model: nn.Module, x_one: Any, paths: list[str], device) -> list[dict[str, Any]]:
    """One small forward with every layer probed: execution order, call counts, output shapes."""
    cap = Capture(model, activations=False, layers=paths, reducer="flatten")
    try:
        # measured as deployed (eval); every module gets its own train/eval flag back afterwards
        with eval_mode(model), torch.no_grad(), cap:
            cap.begin_forward()
            forward_batch(model, _to_model(x_one, device, model_dtype(model)))
    except Exception as exc:
        shape = _shape_of(x_one)
        raise ValueError(
            f"the model cannot run on the data's samples (shape {shape}): "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    sites = []
    calls: dict[str, int] = {}
    for rec in cap.layer_sites().values():
        # the probe this site answers: a module path, or "<path>:<op>" for functional calls
        probe = f"{rec.module_path}:{rec.op}" if rec.functional else rec.module_path
        calls[probe] = calls.get(probe, 0) + 1
        sites.append(
            {
                "name": rec.name,
                "module": probe,
                "call_index": rec.call_index,
                "d": int(math.prod(rec.output_shape)) if rec.output_shape is not None else 0,
                "status": rec.status,
                "error": rec.error,
            }
        )
    for s in sites:
        s["calls"] = calls[s["module"]]
    seen = {s["module"] for s in sites}
    for p in paths:  # a probed layer the forward never reached: say so, never drop it
        if p not in seen:
            sites.append(
                {"name": p, "module": p, "call_index": 0, "d": 0, "calls": 0,
                 "status": "not_called", "error": "the module was not called in the forward pass"}
            )  # fmt: skip
    return sites


def _take(data, idx: np.ndarray) -> Any:
    x, _ = data.take(torch.from_numpy(np.asarray(idx, dtype=np.int64)))
    return x


def _layer_grams(
    model: nn.Module, data, module_paths: list[str], pool: np.ndarray, *, stop_after: str | None,
    batch_size: int, device,
) -> dict[str, tuple[np.ndarray, int]]:
    """Gram matrices of the outputs of ``module_paths`` over the samples ``pool``, per call site.

    ``stop_after``: a module (or a ``"<path>:<op>"`` probe: then the module at ``<path>``) after
    whose output the forward pass is abandoned (the rest of the network is not needed), or None
    to run it whole.
    """
    n_rows = len(pool)
    dtype = model_dtype(model)  # a float64 (or half) model is fed inputs of its own dtype
    mask_of_batch: dict[str, Any] = {}
    cap = Capture(
        model, activations=False, layers=list(module_paths),
        reducer=lambda *_: _GramReducer(n_rows, mask_of_batch),
    )  # fmt: skip
    handle = None
    with eval_mode(model), torch.no_grad(), cap:
        if stop_after is not None:
            def _stop(*_: Any) -> None:
                raise _StopForward

            # registered after the capture's hooks, so it runs once the output was recorded
            owner = stop_after.split(":", 1)[0]  # a functional probe: the module that made the call
            handle = dict(model.named_modules())[owner].register_forward_hook(_stop)
        try:
            for start in range(0, len(pool), batch_size):
                cap.begin_forward()
                try:
                    x = _take(data, pool[start : start + batch_size])
                    mask_of_batch["mask"] = attention_mask(x)
                    forward_batch(model, _to_model(x, device, dtype))
                except _StopForward:
                    pass
        finally:
            if handle is not None:
                handle.remove()
    out: dict[str, Any] = {}
    for rec in cap.layer_sites().values():
        out[rec.name] = rec.outputs if rec.status == "ok" else RuntimeError(rec.error or "failed")
    return out


def _plan(
    sites: list[dict[str, Any]], subsets: list[np.ndarray], budget: int, batch_size: int | None = None,
) -> list[tuple[list[dict[str, Any]], list[list[int]]]]:
    """Passes over the data: (layers captured together, groups of repeats), memory-bounded.

    Consecutive layers share one pass while their rows (P samples × d floats) fit in ``budget``
    bytes; a layer wider than the budget gets passes of its own, its repeats split so that each
    pass's samples fit (one repeat at least). Peak memory is therefore about
    max(budget, P_repeat · d_max · 4) whatever the number of layers.
    """
    pool = len(np.unique(np.concatenate(subsets)))
    all_repeats = [list(range(len(subsets)))]
    # the pool in one batch: each layer's Gram matrix is formed in its hook, no rows are kept
    one_batch = batch_size is not None and pool <= batch_size
    jobs, group, used = [], [], 0
    for site in sites:
        size = pool * pool * 8 if one_batch else pool * max(site["d"], 1) * 4
        if size > budget:
            if group:
                jobs.append((group, all_repeats))
                group, used = [], 0
            jobs.append(([site], _chunk_repeats(subsets, max(site["d"], 1), budget)))
            continue
        if group and used + size > budget:
            jobs.append((group, all_repeats))
            group, used = [], 0
        group.append(site)
        used += size
    if group:
        jobs.append((group, all_repeats))
    return jobs
