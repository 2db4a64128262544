"""Permutable spaces, part 1 — the recorded graph read as a list of ops (:func:`recorded_graph`):
standard layers as single ops, other modules through the functions they call, and the tables of
element-wise, reducing, binary, pooling and shape-only ops.

Split out of :mod:`netxray.capture.structure._spaces`, which re-exports every name.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn


@dataclass
class GNode:
    """One op of a recorded forward pass. ``op``: "input" | "param" | "module" | "call" |
    "output"; ``target``: the module path ("module"), the state-dict key ("param"), the function
    or method name ("call"); ``args``/``kwargs`` hold other GNodes, constants and nested
    lists; ``shape``: the output tensor's shape (None when it is not a tensor)."""

    name: str
    op: str
    target: Any
    args: tuple[Any, ...] = ()
    kwargs: dict[str, Any] = field(default_factory=dict)
    shape: tuple[int, ...] | None = None


def _fn_name(target: Any) -> str:
    if isinstance(target, str):
        name = target
    else:
        name = getattr(target, "__name__", str(target))
    if name.startswith("__") and name.endswith("__"):
        name = name[2:-2]
        if name.startswith(("i", "r")) and name[1:] in ("add", "sub", "mul", "truediv", "matmul"):
            name = name[1:]
    if name == "truediv":
        name = "div"
    if name.endswith("_") and not name.startswith("_"):
        name = name[:-1]  # in-place variants behave like their pure forms here
    return name


def _atomic(mod: nn.Module) -> bool:
    """Module calls read as one op (their insides are skipped): the standard layers whose
    ``forward`` is the library's own (a subclass that overrides it, e.g. a LayerNorm over NCHW
    maps, is read through the functions it calls), Hugging Face Conv1D, RMSNorm classes and
    parameter-free activation classes."""
    from netxray.capture.structure._parts import _module_kind

    std = (nn.Linear, nn.Conv1d, nn.Conv2d, nn.Conv3d, nn.LayerNorm, nn.GroupNorm, nn.Embedding,
           nn.MultiheadAttention, nn.Flatten, nn.Softmax, nn.LogSoftmax, nn.LSTM, nn.GRU, *_POOL_MODULES)
    if isinstance(mod, nn.GroupNorm):
        return True  # subclasses (timm's GroupNorm1) still normalise channel groups of axis 1
    for t in (*std, nn.modules.batchnorm._BatchNorm):
        if isinstance(mod, t):
            return type(mod).forward is t.forward or type(mod).__module__.startswith("torch.nn")
    if _is_conv1d_hf(mod) or _is_rmsnorm(mod) or _module_kind(mod) is not None:
        return True
    name = type(mod).__name__
    return not any(True for _ in mod.parameters()) and any(
        w in name for w in ("Activation", "GELU", "SiLU", "Swish")) and not list(mod.children())


_INDEX_NAMES = {"None": None, "Ellipsis": Ellipsis}


def _parse_index(text: str) -> Any:
    """The index of a ``x[...]`` call from its recorded repr, when it is made of ints, slices,
    None and Ellipsis only (parsed, never evaluated); None when it is anything else."""
    import ast

    def conv(node: ast.AST) -> Any:
        if isinstance(node, ast.Constant) and (node.value is None or isinstance(node.value, int)):
            return node.value
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub) and isinstance(node.operand, ast.Constant):
            return -node.operand.value
        if isinstance(node, ast.Name) and node.id in _INDEX_NAMES:
            return _INDEX_NAMES[node.id]
        if isinstance(node, ast.Tuple):
            return tuple(conv(e) for e in node.elts)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "slice" \
                and not node.keywords and len(node.args) <= 3:
            return slice(*[conv(a) for a in node.args])
        raise ValueError(text)

    try:
        return conv(ast.parse(text, mode="eval").body)
    except (ValueError, SyntaxError):
        return _UNPARSED


_UNPARSED = object()


_ALIASES = {"to", "contiguous", "float", "type_as", "type", "detach", "clone", "double", "half"}


def recorded_graph(model: nn.Module, mg: Any) -> list[GNode]:
    """Op list from a :class:`netxray.capture.graph.ModelGraph` (one real forward pass): the
    calls of atomic modules (see :func:`_atomic`) as single ops, every other module read
    through the torch functions it called."""
    from netxray.capture.graph import _perm

    mods = dict(model.named_modules())
    atomic_ids: set[int] = set()
    inside: dict[int, bool] = {}

    def in_atomic(nid: int | None) -> bool:
        chain = []
        while nid is not None and nid not in inside:
            chain.append(nid)
            nid = mg.nodes[nid].parent
        res = inside.get(nid, False) if nid is not None else False
        for c in reversed(chain):
            res = res or c in atomic_ids
            inside[c] = res
        return res

    for n in mg.nodes:
        if n.kind == "module" and n.name in mods and _atomic(mods[n.name]):
            atomic_ids.add(n.id)
    vnode: dict[int, GNode] = {}
    out: list[GNode] = []

    def arg(v: int) -> GNode:
        g = vnode.get(v)
        prod = mg.nodes[mg.values[v].producer]
        while g is None and prod.kind == "op" and prod.name in _ALIASES and prod.inputs \
                and tuple(mg.values[prod.inputs[0]].shape) == tuple(mg.values[v].shape):
            # ``x.to(dtype)`` inside an atomic module returns x itself when the dtype agrees: the
            # recorder gives the same tensor a new value, which the caller then reads
            v = prod.inputs[0]
            g = vnode.get(v)
            prod = mg.nodes[mg.values[v].producer]
        if g is None:  # a value made inside something skipped and used outside: unknown origin
            g = GNode(f"v{v}", "input", None, shape=tuple(mg.values[v].shape))
            vnode[v] = g
            out.append(g)
        return g

    for n in sorted(mg.nodes, key=lambda n: (n.start, n.id)):
        if n.kind in ("input", "constant"):
            for v in n.outputs:
                vnode[v] = GNode(n.name, "input", n.name, shape=tuple(mg.values[v].shape))
                out.append(vnode[v])
            continue
        if n.kind == "param":
            for v in n.outputs:
                vnode[v] = GNode(n.name, "param", n.name, shape=tuple(mg.values[v].shape))
                out.append(vnode[v])
            continue
        if n.kind == "module":
            if n.id not in atomic_ids or (n.parent is not None and in_atomic(n.parent)):
                continue
            args = tuple(arg(v) for v in n.inputs)
            shape = tuple(mg.values[n.outputs[0]].shape) if n.outputs else None
            g = GNode(n.name, "module", n.name, args, {}, shape)
            out.append(g)
            if len(n.outputs) == 1 and not isinstance(mods[n.name], (nn.MultiheadAttention, nn.LSTM, nn.GRU)):
                vnode[n.outputs[0]] = g  # (attention returns (output, weights or None): indexed below)
            else:
                for k, v in enumerate(n.outputs):
                    gi = GNode(f"{n.name}[{k}]", "call", "getitem", (g, k), {}, tuple(mg.values[v].shape))
                    out.append(gi)
                    vnode[v] = gi
            continue
        # a function call
        if in_atomic(n.parent):
            continue
        args = tuple(arg(v) for v in n.inputs)
        name = n.name
        kwargs: dict[str, Any] = {}
        in_shape = mg.values[n.inputs[0]].shape if n.inputs else ()
        extra: tuple[Any, ...] = ()
        if name in ("permute", "transpose", "swapaxes", "swapdims"):
            perm = _perm(n, len(in_shape)) if name != "swapdims" else None
            if perm is None:
                name = "unknown-permute"
            else:
                name, extra = "permute", (tuple(perm),)
        elif name in ("cat", "concat", "concatenate"):
            d = n.args.get("dim", 0)
            args, kwargs = (args,), {"dim": int(d) if isinstance(d, int) else 0}
        elif name == "getitem":
            raw = (n.args.get("args") or [None])[0]
            idx = _parse_index(raw) if isinstance(raw, str) else _UNPARSED
            if idx is _UNPARSED:
                # an index tensor (or something unparsed): recorded as its own input
                extra = ()
                name = "getitem-tensor" if len(args) > 1 else "getitem-unknown"
            else:
                extra = (idx,)
        elif name in _REDUCE:
            rest = [a for a in n.args.get("args", []) if isinstance(a, int) and not isinstance(a, bool)]
            dims = n.args.get("dim", n.args.get("dims", rest if len(rest) > 1 else (rest[0] if rest else None)))
            kwargs = {"dim": dims}
        for k, v in enumerate(n.outputs or []):
            shape = tuple(mg.values[v].shape)
            g = GNode(name if len(n.outputs) == 1 else f"{name}", "call", name,
                      (args[0], *extra, *args[1:]) if extra and args else args, dict(kwargs), shape)
            if len(n.outputs) > 1:
                g.kwargs["_out"] = k
                g.kwargs["_shapes"] = [tuple(mg.values[o].shape) for o in n.outputs]
            out.append(g)
            vnode[v] = g
    outs = tuple(arg(v) for v in mg.outputs)
    out.append(GNode("output", "output", None, outs))
    return out


_ELEMENTWISE = {
    "relu": "homogeneous", "leaky_relu": "homogeneous", "prelu": None, "tanh": "odd",
    "softsign": "odd", "neg": "odd", "hardtanh": None,
    "gelu": "other", "silu": "other", "sigmoid": "other", "elu": "other", "celu": "other",
    "selu": "other", "softplus": "other", "mish": "other", "hardswish": "other",
    "hardsigmoid": "other", "relu6": "other", "logsigmoid": "other", "erf": "other",
    "exp": "other", "log": "other", "sqrt": "other", "rsqrt": "other", "abs": "other",
    "pow": "other", "square": "other", "reciprocal": "other", "sin": "other", "cos": "other",
    "softmax": "other", "log_softmax": "other", "clamp": "other", "clip": "other",
    "dropout": "identity", "contiguous": "identity", "clone": "identity", "detach": "identity",
    "to": "identity", "float": "identity", "double": "identity", "half": "identity",
    "bfloat16": "identity", "type_as": "identity", "type": "identity", "alpha_dropout": "identity",
    "identity": "identity",
    # stochastic depth / drop path: the identity in eval mode, a per-sample factor in training
    "stochastic_depth": "identity", "drop_path": "identity",
}


_REDUCE = {"mean", "sum", "amax", "amin", "max", "min", "var", "std", "norm", "logsumexp", "prod",
           "var_mean", "std_mean"}


_BINARY = {"add": "add", "sub": "add", "mul": "mul", "div": "mul", "rsub": "add",
           "maximum": "other", "minimum": "other", "where": "other"}


_POOL_MODULES = (nn.MaxPool1d, nn.MaxPool2d, nn.MaxPool3d, nn.AvgPool1d, nn.AvgPool2d, nn.AvgPool3d,
                 nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d, nn.AdaptiveAvgPool3d,
                 nn.AdaptiveMaxPool1d, nn.AdaptiveMaxPool2d, nn.AdaptiveMaxPool3d)


_POOL_FUNCS = {"max_pool1d", "max_pool2d", "max_pool3d", "avg_pool1d", "avg_pool2d", "avg_pool3d",
               "adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d",
               "adaptive_max_pool1d", "adaptive_max_pool2d", "adaptive_max_pool3d",
               # resizing acts on the spatial axes of each channel alike (a segmentation head
               # resizes its features and logits to the input's size)
               "interpolate", "upsample", "upsample_bilinear", "upsample_nearest"}


_SHAPE_ONLY = {"size", "dim", "getattr", "numel", "eq", "ne", "lt", "gt", "le", "ge", "_assert",
               "floordiv", "ndimension", "is_floating_point", "shape", "device", "dtype",
               "new_zeros", "new_ones", "zeros_like", "ones_like", "full_like", "arange"}


def _is_conv1d_hf(mod: nn.Module) -> bool:
    # Hugging Face's GPT-2 style Conv1D: a Linear whose weight is stored (in, out)
    return type(mod).__name__ == "Conv1D" and hasattr(mod, "nf") and getattr(mod, "weight", None) is not None


def _is_rmsnorm(mod: nn.Module) -> bool:
    if hasattr(nn, "RMSNorm") and isinstance(mod, nn.RMSNorm):
        return True
    # the RMSNorm classes of Hugging Face and timm: one 1-D weight, normalising the last axis
    name = type(mod).__name__
    return "RMSNorm" in name and isinstance(getattr(mod, "weight", None), torch.Tensor)
