"""Recording a model's graph: the values and calls of one forward pass.

The pieces :func:`netxray.capture.graph.record_graph` builds a :class:`~netxray.capture.graph.ModelGraph`
from — :class:`Value`, :class:`Node`, :class:`ResidualAdd`, :class:`SiteLayout`, the op tables
that say which calls keep or move a feature axis, and the recorder (module hooks plus a
``TorchFunctionMode``) — and :func:`unwrap_model`. Split out of :mod:`netxray.capture.graph`,
which re-exports every name.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from netxray.capture.sites import functional_op_name, is_activation_module

# ops that move a feature axis or keep it where it is: followed when reading layouts and
# when walking from a value back to the module that made it
_ELEMENTWISE = {
    "add", "sub", "mul", "div", "truediv", "neg", "dropout", "contiguous", "clone", "to", "float",
    "half", "double", "type", "type_as", "detach", "alpha_dropout", "feature_alpha_dropout",
    "abs", "exp", "log", "sqrt", "rsqrt", "pow", "clamp", "clip", "where", "masked_fill",
    "stochastic_depth", "identity", "requires_grad", "softmax", "log_softmax", "sigmoid",
    "tanh", "relu", "gelu", "silu", "hardswish", "hardsigmoid", "relu6", "elu", "leaky_relu",
    "mish", "softplus", "selu", "celu", "hardtanh",
}


_PASSTHROUGH = {"dropout", "contiguous", "clone", "to", "float", "type", "type_as", "detach",
                "flatten", "view", "reshape", "getitem", "squeeze", "unsqueeze", "identity",
                "alpha_dropout", "feature_alpha_dropout", "adaptive_avg_pool2d", "mean",
                "interpolate", "upsample", "upsample_bilinear", "upsample_nearest"}  # fmt: skip


# (a segmentation model resizes its head's logits to the input's size: still the head's output)
_LAST_AXIS = {"linear", "layer_norm", "rms_norm", "addmm", "matmul", "mm", "bmm", "einsum"}


_CHANNEL_AXIS = {"conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
                 "conv_transpose3d", "batch_norm", "instance_norm", "group_norm"}  # fmt: skip


_ADD = {"add", "sub"}


_CONCAT = {"cat", "concat", "concatenate", "stack", "hstack"}


_RESHAPE = {"reshape", "view", "flatten", "permute", "transpose", "unflatten", "movedim",
            "swapaxes", "swapdims", "unfold", "chunk", "split", "t"}  # fmt: skip


# module containers whose forward only calls their children: never a "block" themselves
_CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside ``nn.DataParallel`` / ``DistributedDataParallel`` / ``torch.compile``.

    Wrappers add a prefix (``module.``, ``_orig_mod.``) to every path and, for compiled models,
    run code the hooks cannot see; every lens answers for the wrapped model itself.

    Example:
        >>> m = nn.Linear(2, 2)
        >>> unwrap_model(nn.DataParallel(m)) is m
        True
    """
    return unwrap_model_with_names(model)[0]


def unwrap_model_with_names(model: nn.Module) -> tuple[nn.Module, list[str]]:
    """:func:`unwrap_model` and the wrappers removed, outermost first (``"DataParallel"``,
    ``"torch.compile"``…), for tables that say what they looked through.

    Example:
        >>> unwrap_model_with_names(nn.DataParallel(nn.Linear(2, 2)))[1]
        ['DataParallel']
    """
    names: list[str] = []
    while len(names) < 8:  # wrappers can nest (a compiled DataParallel); never loop forever
        orig = getattr(model, "_orig_mod", None)
        if isinstance(orig, nn.Module):
            names.append("torch.compile")
            model = orig
            continue
        parallel = (nn.DataParallel, nn.parallel.DistributedDataParallel)
        if isinstance(model, parallel) and isinstance(getattr(model, "module", None), nn.Module):
            names.append(type(model).__name__)
            model = model.module
            continue
        break
    return model, names


@dataclass
class Value:
    """One tensor value: what produced it, its shape, and what it depends on.

    ``producer`` is the node id of the function call (or input / parameter / constant node) that
    wrote it; ``consumers`` the function-call nodes that read it; ``returned_by`` the module calls
    that returned it (innermost first). ``data_dependent``: computed from the model's inputs;
    ``primary``: computed from the main input (``input_ids``, ``pixel_values``, the first tensor).
    """

    id: int
    producer: int
    shape: tuple[int, ...]
    dtype: str
    data_dependent: bool
    primary: bool
    consumers: list[int] = field(default_factory=list)
    returned_by: list[int] = field(default_factory=list)
    last_use: int = -1


@dataclass
class Node:
    """A function call, a module call, a model input, a parameter/buffer or a constant.

    ``kind``: "op" | "module" | "input" | "param" | "constant". ``name``: the op name (``add``,
    ``linear``…), the module path, the input name or the state-dict key. ``op``: the function's
    qualified name or the module's class name. ``module_path``: the module a call runs in (a
    module call: its own path). ``parent``: the enclosing module call's node id. ``start`` /
    ``end``: positions in the call sequence (equal for a function call). ``inputs`` / ``outputs``:
    value ids. ``params``: state-dict keys of the parameters and buffers read (function calls)
    or owned directly (module calls). ``site``: the capture site key of an activation call.
    """

    id: int
    kind: str
    name: str
    op: str
    module_path: str = ""
    call_index: int = 0
    parent: int | None = None
    depth: int = 0
    start: int = 0
    end: int = 0
    inputs: list[int] = field(default_factory=list)
    outputs: list[int] = field(default_factory=list)
    params: list[str] = field(default_factory=list)
    args: dict[str, Any] = field(default_factory=dict)
    site: tuple | None = None


@dataclass
class ResidualAdd:
    """An addition of two data-dependent values of one shape that share an ancestor.

    ``fork``: the latest value both operands are computed from (the residual stream before the
    branch); ``skip``: the operand closer to the fork (the shortcut); ``branch``: the other.
    ``module_path``: the module the add runs in.
    """

    node: int
    fork: int
    skip: int
    branch: int
    module_path: str


@dataclass
class SiteLayout:
    """How an activation site's tensor is laid out, read from the graph.

    ``axis``: the feature axis of the site's output (1 for NCHW maps and (B, C, L) sequences,
    ``ndim - 1`` for channel-last maps and tokens), None when the graph did not say;
    ``evidence``: the call that decided it; ``data_dependent``: False for an activation applied
    to parameters or constants (the same for every sample).
    """

    axis: int | None
    ndim: int
    evidence: str
    data_dependent: bool


def _canon(name: str) -> str:
    """``__iadd__`` → ``add``, ``relu_`` → ``relu``, ``__getitem__`` → ``getitem``."""
    if name.startswith("__") and name.endswith("__"):
        core = name[2:-2]
        if core[:1] in ("i", "r") and core[1:] in ("add", "sub", "mul", "truediv", "matmul",
                                                    "div", "and", "or", "pow", "floordiv"):
            core = core[1:]
        return core
    return name.rstrip("_") or name


def _func_name(func: Any) -> tuple[str, str]:
    """(canonical op name, qualified name) of a torch function handed to the mode."""
    name = getattr(func, "__name__", None)
    if name is None and hasattr(func, "__func__"):
        name = getattr(func.__func__, "__name__", None)
    if name == "__get__":  # a Tensor property (x.T, x.mT, x.data)
        owner = getattr(func, "__self__", None)
        name = getattr(owner, "__name__", "get")
    name = str(name or type(func).__name__)
    module = getattr(func, "__module__", None) or ""
    qual = getattr(func, "__qualname__", name)
    return _canon(name), f"{module}.{qual}" if module and "Tensor" not in qual else str(qual)


def _tensors(obj: Any, depth: int = 0) -> list[torch.Tensor]:
    """Every tensor in ``obj``: nested tuples, lists, mappings (ModelOutput), dataclasses."""
    if depth > 6:
        return []
    if isinstance(obj, torch.Tensor):
        return [obj]
    out: list[torch.Tensor] = []
    if isinstance(obj, (tuple, list)):
        for item in obj:
            out += _tensors(item, depth + 1)
    elif isinstance(obj, Mapping):
        for item in obj.values():
            out += _tensors(item, depth + 1)
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        for f in dataclasses.fields(obj):
            out += _tensors(getattr(obj, f.name, None), depth + 1)
    return out


def _has_hidden_tensors(obj: Any, depth: int = 0) -> bool:
    """True when ``obj`` is a non-container object that holds tensors (a cache object)."""
    if depth > 3 or obj is None or isinstance(obj, (torch.Tensor, str, int, float, bool)):
        return False
    if isinstance(obj, (tuple, list)):
        return any(_has_hidden_tensors(o, depth + 1) for o in obj)
    if isinstance(obj, Mapping):
        return any(_has_hidden_tensors(o, depth + 1) for o in obj.values())
    if isinstance(obj, nn.Module) or dataclasses.is_dataclass(obj):
        return False
    attrs = getattr(obj, "__dict__", None)
    if not isinstance(attrs, dict):
        return False
    for v in attrs.values():
        if isinstance(v, torch.Tensor) or (
            isinstance(v, (list, tuple)) and any(isinstance(t, torch.Tensor) for t in v)
        ):
            return True
    return False


class _Recorder(TorchFunctionMode):
    """Hooks + function mode that build the graph during one forward pass."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.nodes: list[Node] = []
        self.values: list[Value] = []
        self.tensor_value: dict[int, int] = {}  # id(tensor) -> current value id
        self.keep: list[torch.Tensor] = []  # strong refs: an id is never reused while recording
        self.param_keys: dict[int, str] = {}
        for key, p in model.named_parameters(remove_duplicate=False):
            self.param_keys.setdefault(id(p), key)
        for key, b in model.named_buffers(remove_duplicate=False):
            self.param_keys.setdefault(id(b), key)
        self.stack: list[int] = []
        self.seq = 0
        self.calls: dict[str, int] = {}
        self.site_calls: dict[tuple, int] = {}
        self.act_depth = 0
        self.busy = False
        self.notes: list[str] = []
        self.unknown: list[str] = []
        self.hidden: list[str] = []
        self.primary_ids: set[int] = set()

    # -- values --------------------------------------------------------------------------
    def _new_node(self, **kw: Any) -> Node:
        node = Node(id=len(self.nodes), **kw)
        self.nodes.append(node)
        return node

    def _new_value(self, t: torch.Tensor, producer: int, dd: bool, primary: bool) -> int:
        v = Value(id=len(self.values), producer=producer, shape=tuple(t.shape),
                  dtype=str(t.dtype).replace("torch.", ""), data_dependent=dd, primary=primary)  # fmt: skip
        self.values.append(v)
        self.tensor_value[id(t)] = v.id
        self.keep.append(t)
        return v.id

    def value_of(self, t: torch.Tensor) -> int:
        """The current value of tensor ``t``; parameters, buffers and strangers get a node."""
        vid = self.tensor_value.get(id(t))
        if vid is not None:
            return vid
        key = self.param_keys.get(id(t))
        if key is not None:
            node = self._new_node(kind="param", name=key, op="parameter", start=self.seq,
                                  end=self.seq)  # fmt: skip
        else:
            where = self.nodes[self.stack[-1]].name if self.stack else "(root)"
            node = self._new_node(kind="constant", name=f"constant@{where}", op="tensor",
                                  module_path=where, start=self.seq, end=self.seq)  # fmt: skip
            if len(self.unknown) < 5:
                self.unknown.append(f"{tuple(t.shape)} in {where or '(root)'}")
            else:
                self.unknown.append("")
        vid = self._new_value(t, node.id, dd=False, primary=False)
        node.outputs.append(vid)
        return vid

    # -- function calls ------------------------------------------------------------------
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.busy:
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        self.busy = True
        try:
            self._record_call(func, args, kwargs, out)
        finally:
            self.busy = False
        return out

    def _record_call(self, func: Any, args: tuple, kwargs: dict, out: Any) -> None:
        ins = _tensors(args) + _tensors(kwargs)
        outs = _tensors(out)
        name, qual = _func_name(func)
        inplace = name == "setitem"
        if not outs and not inplace:
            return  # x.shape, x.dim(), x.item(): no tensor flows
        if name == "setitem" and args:
            outs = [args[0]] if isinstance(args[0], torch.Tensor) else []
        self.seq += 1
        parent = self.stack[-1] if self.stack else None
        in_ids = [self.value_of(t) for t in ins]
        params = [self.nodes[self.values[v].producer].name for v in in_ids
                  if self.nodes[self.values[v].producer].kind == "param"]  # fmt: skip
        node = self._new_node(
            kind="op", name=name, op=qual,
            module_path=self.nodes[parent].name if parent is not None else "",
            parent=parent, depth=(self.nodes[parent].depth + 1) if parent is not None else 0,
            start=self.seq, end=self.seq, inputs=in_ids, params=params,
            args=_small_args(name, args, kwargs),
        )  # fmt: skip
        op = functional_op_name(func)
        if op is not None and self.act_depth == 0:
            node.site = self._site_key(node.module_path, op, functional=True)
        dd = any(self.values[v].data_dependent for v in in_ids)
        primary = any(self.values[v].primary for v in in_ids)
        for v in in_ids:
            self.values[v].consumers.append(node.id)
            self.values[v].last_use = self.seq
        for t in outs:
            node.outputs.append(self._new_value(t, node.id, dd, primary))

    def _site_key(self, path: str, op: str, functional: bool) -> tuple:
        """The key :class:`netxray.capture.Capture` gives the same call (same counting)."""
        counter = ("activation", path, op if functional else "")
        k = self.site_calls.get(counter, 0)
        self.site_calls[counter] = k + 1
        return ("activation", path, op if functional else "", k)

    # -- module calls --------------------------------------------------------------------
    def pre_hook(self, path: str, module: nn.Module):
        act = is_activation_module(module)
        direct = [f"{path}.{n}" if path else n for n, _ in
                  list(module.named_parameters(recurse=False)) + list(module.named_buffers(recurse=False))]  # fmt: skip

        def hook(mod: nn.Module, args: tuple, kwargs: dict) -> None:
            if self.busy:
                return
            self.busy = True
            try:
                self.seq += 1
                parent = self.stack[-1] if self.stack else None
                k = self.calls.get(path, 0)
                self.calls[path] = k + 1
                ins = _tensors(args) + _tensors(kwargs)
                in_ids = [self.value_of(t) for t in ins]
                node = self._new_node(
                    kind="module", name=path, op=type(mod).__name__, module_path=path,
                    call_index=k, parent=parent,
                    depth=(self.nodes[parent].depth + 1) if parent is not None else 0,
                    start=self.seq, end=self.seq, inputs=in_ids, params=direct,
                )  # fmt: skip
                if act:
                    node.site = self._site_key(path, type(mod).__name__, functional=False)
                    self.act_depth += 1
                if any(_has_hidden_tensors(a) for a in list(args) + list(kwargs.values())):
                    self.hidden.append(path or "(root)")
                self.stack.append(node.id)
            finally:
                self.busy = False

        return hook

    def post_hook(self, path: str, module: nn.Module):
        act = is_activation_module(module)

        def hook(mod: nn.Module, args: tuple, kwargs: dict, output: Any) -> None:
            if self.busy or not self.stack:
                return
            self.busy = True
            try:
                node = self.nodes[self.stack[-1]]
                if node.name != path:  # an exception unwound a child; find our own call
                    while self.stack and self.nodes[self.stack[-1]].name != path:
                        self.stack.pop()
                    if not self.stack:
                        return
                    node = self.nodes[self.stack[-1]]
                self.stack.pop()
                if act:
                    self.act_depth = max(0, self.act_depth - 1)
                self.seq += 1
                node.end = self.seq
                # the output's structure: a stand-in for a removed block must return the same
                if isinstance(output, torch.Tensor):
                    node.args["out_type"] = "tensor"
                elif isinstance(output, tuple) and not hasattr(output, "_fields"):
                    node.args["out_type"] = f"tuple:{len(output)}"
                else:
                    node.args["out_type"] = type(output).__name__
                for t in _tensors(output):
                    vid = self.tensor_value.get(id(t))
                    if vid is None:
                        vid = self.value_of(t)  # nothing recorded made it: say so
                        self.notes.append(
                            f"{path or '(root)'} ({type(mod).__name__}): an output of shape "
                            f"{tuple(t.shape)} was not produced by any recorded call (code the "
                            "graph cannot see: a C++ extension, or torch functions disabled)"
                        )
                    node.outputs.append(vid)
                    self.values[vid].returned_by.append(node.id)
            finally:
                self.busy = False

        return hook


def _small_args(name: str, args: tuple, kwargs: dict) -> dict[str, Any]:
    """The non-tensor arguments that matter for layouts (dims, shapes)."""
    keep: dict[str, Any] = {}
    if name in ("permute", "transpose", "flatten", "reshape", "view", "movedim", "swapaxes",
                "unflatten", "cat", "concat", "stack", "layer_norm", "mean", "sum", "softmax",
                "getitem", "chunk", "split", "squeeze", "unsqueeze", "rms_norm"):  # fmt: skip
        rest = [a for a in args[1:] if not isinstance(a, torch.Tensor)]
        if name in ("cat", "concat", "stack"):
            rest = list(args[1:])
        if name == "getitem" and len(args) > 1:
            # the whole index when it is short (a 4-D slice tuple is ~100 characters): a cut one
            # cannot be read back, and x[:, :oup] (GhostNet) would look like an unknown index
            r = repr(args[1])
            rest = [r if len(r) <= 400 else r[:80]]
        elif rest and isinstance(rest[0], (list, tuple, torch.Size)) and len(rest) == 1:
            rest = list(rest[0])
        keep["args"] = rest
        for k in ("dim", "dims", "normalized_shape", "start_dim", "end_dim"):
            if k in kwargs:
                keep[k] = kwargs[k]
        if name in ("cat", "concat", "stack") and "dim" not in keep:
            keep["dim"] = rest[0] if rest else 0
    return keep
