"""Parameters lens, part 2 — node strengths: how much weight flows through each hidden unit.

:func:`node_strengths` (the incoming and outgoing weight of every unit, following hidden links
through element-wise ops, flattens, convolutions and attention blocks) and
:func:`strength_fluctuation`, with the layer-type tables they share with
:mod:`netxray.lenses.parameters`, which re-exports every name.
"""

from __future__ import annotations

import math
import re
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from netxray._meta import metadata, model_hash
from netxray.measures import weights as W

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,
    nn.LayerNorm,
    nn.GroupNorm,
    nn.LocalResponseNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())

# a library's own normalization class (Hugging Face's LlamaRMSNorm and T5LayerNorm, timm's
# LayerNorm2d, torchvision's FrozenBatchNorm2d): a leaf module named …Norm, …Norm2d, …Norm1
_NORM_NAME = re.compile(r"Norm(\d*d)?\d*$")


def is_norm_module(module: nn.Module) -> bool:
    """Whether ``module`` is a normalization layer: a torch one, or a leaf module whose class
    name ends in ``Norm`` (``LlamaRMSNorm``, ``T5LayerNorm``, ``LayerNorm2d``…) and holds only
    1-D parameters — an element-wise scale and shift, whatever library wrote it.

    >>> is_norm_module(nn.LayerNorm(4)), is_norm_module(nn.Linear(4, 4))
    (True, False)
    """
    if isinstance(module, _NORM_TYPES):
        return True
    own = list(module.parameters(recurse=False))
    return (bool(_NORM_NAME.search(type(module).__name__)) and not any(True for _ in module.children())
            and all(p.dim() <= 1 for p in own))  # fmt: skip


_CONV_TYPES = (nn.Conv1d, nn.Conv2d, nn.Conv3d)


_EMBED_TYPES = (nn.Embedding, nn.EmbeddingBag)


def _to_f64(t: torch.Tensor) -> np.ndarray:
    # float64 on the CPU; bfloat16/half have no direct numpy view
    return t.detach().to(device="cpu", dtype=torch.float64).numpy().ravel()


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

    # one table row per unit (about 300 bytes as a DataFrame row) and float64 copies of one
    # tensor at a time (a Linear is read in row blocks, a conv kernel or attention block whole:
    # itself, |K| and its finite mask, ~3 copies of the largest): a 10^7-unit layer is
    # gigabytes, so estimate it before anything is allocated; the time is that of every value
    n_values, n_units = model_units(model)
    largest = max((p.numel() for p in model.parameters() if p.is_floating_point()), default=0)
    need, _ = per_unit_cost(largest, n_units, copies=3, bytes_per_unit=300)
    _, secs = per_unit_cost(n_values, n_units, copies=3, bytes_per_unit=300)
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
            if is_norm_module(module):
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
