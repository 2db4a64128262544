"""One mechanism to observe a running model: activation calls and layer outputs.

:class:`Capture` is a context manager that installs forward hooks on every module and a
:class:`~torch.overrides.TorchFunctionMode` for functional activations. It observes the real
input and output of each call (the input is reduced *before* the call runs, so in-place
activations are seen correctly) and never re-runs a module or writes into a tensor, so the
model's outputs are bit-identical with and without it. Reducers run inside the hooks, so memory
is bounded by the reduced rows kept, not by spatial size. Hooks are removed and every module's
train/eval flag restored even when the forward raises.

:func:`collect` drives a capture over a dataset: it draws a seeded random subset of samples,
streams it through the model in batches and returns the finished :class:`Capture`.
"""

from __future__ import annotations

import itertools
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from netxray._meta import eval_mode
from netxray.capture.graph import SiteLayout, record_graph, unwrap_model
from netxray.capture.inputs import (  # noqa: F401  (re-exported: the data section lived here)
    LABEL_KEYS,
    _as_tensor,
    _batch_size_of,
    _checked,
    _Indexable,
    _split_batch,
    _split_dict,
    _to_model,
    as_indexable,
    forward_batch,
    iter_batches,
    iter_selected_batches,
    model_device,
    model_dtype,
    place_model,
    select_indices,
    selected_samples,
)
from netxray.capture.reducers import PositionDraw, Reducer, SeqLayout, TokenRule, make_row_store
from netxray.capture.sites import functional_op_name, is_activation_module

DEFAULT_ROWS = 2048  # positions per site when n_samples is None (the reference's batch)

LayerSpec = None | str | Sequence[str] | Sequence[type[nn.Module]] | type[nn.Module]


@dataclass
class SiteRecord:
    """What was observed at one site.

    ``inputs`` / ``outputs`` are the reduced ``(n, d)`` tensors (or whatever a custom reducer's
    ``compute()`` returned); ``inputs`` is None for layer probes. ``input_shape`` and
    ``output_shape`` are the raw per-sample shapes before reduction.
    """

    name: str
    kind: str  # "activation" | "layer"
    module_path: str
    call_index: int
    op: str
    input_shape: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None
    inputs: Any = None
    outputs: Any = None
    status: str = "ok"
    error: str | None = None
    per_input: int | None = None  # positions estimator: the most rows one input gave
    functional: bool = False  # a functional call ("<path>:<op>" probe), not a module's output

    @property
    def n(self) -> int:
        """Number of rows kept (samples, or positions with ``tokens="samples"``)."""
        out = self.outputs
        return int(out.shape[0]) if isinstance(out, torch.Tensor) and out.ndim > 0 else 0


@dataclass
class _SiteState:
    kind: str
    module_path: str
    call_index: int
    op: str
    functional: bool = False
    in_store: Reducer | None = None
    out_store: Reducer | None = None
    input_shape: tuple[int, ...] | None = None
    output_shape: tuple[int, ...] | None = None
    errors: list[str] = field(default_factory=list)
    layout: SiteLayout | None = None


NOT_DATA_DEPENDENT = (
    "its input does not depend on the data batch (an activation applied to parameters or "
    "constants, e.g. a position-bias table): the same values for every sample, not scored"
)


def first_tensor(obj: Any) -> torch.Tensor | None:
    """The tensor a layer 'outputs': itself, the first tensor of a tuple/list, or of a mapping."""
    if isinstance(obj, torch.Tensor):
        return obj
    if isinstance(obj, (tuple, list)):
        for item in obj:
            t = first_tensor(item)
            if t is not None:
                return t
    if isinstance(obj, Mapping):
        for key in ("last_hidden_state", "hidden_states", "logits"):
            if isinstance(obj.get(key), torch.Tensor):
                return obj[key]
        for item in obj.values():
            t = first_tensor(item)
            if t is not None:
                return t
    return None


class _FunctionalActivations(TorchFunctionMode):
    """Sees every torch function call; records the functional activations among them."""

    def __init__(self, capture: Capture) -> None:
        super().__init__()
        self.capture = capture

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        cap = self.capture
        op = functional_op_name(func) if cap._recording_functional() else None
        if op is None:
            return func(*args, **kwargs)
        x = args[0] if args else kwargs.get("input")
        enclosing = cap._stack[-1] if cap._stack else ""
        state = cap._state_for("activation", enclosing, op, functional=True) if cap.activations else None
        if state is not None:
            cap._observe(state, "in", x)
        out = func(*args, **kwargs)
        if state is not None:
            cap._observe(state, "out", out)
        if (enclosing, op) in cap._functional_probes:  # a "<path>:<op>" layer probe
            cap._observe(cap._state_for("layer", enclosing, op, functional=True), "out", out)
        return out


class Capture:
    """Context manager that observes activation calls and/or chosen layers of ``model``.

    Args:
        model: any ``nn.Module``; never modified (hooks are removed on exit).
        activations: record every activation call (modules and functional calls).
        layers: layer outputs to record: None, ``"auto"`` (a built-in model's natural probes),
            module paths, or module types.
        reducer: ``"pool"``, ``"positions"`` (positions as samples, drawn by ``draw``; at most
            ``max_rows`` rows kept per site), ``"flatten"`` (token padding masked by ``draw``), or
            a callable ``(site_name, side) -> Reducer`` (``side`` is ``"in"`` or ``"out"``)
            returning an object with ``update``/``compute``.
        channel_axis: the feature axis of conv-like maps. None (default): per site, from
            ``layouts`` (a Conv/BatchNorm reads axis 1, a Linear/LayerNorm the last axis), else 1.
            An integer overrides every site.
        tokens, seq_layout: pooling rules (see :mod:`netxray.capture.reducers`); with
            ``seq_layout="auto"`` a 3-D site whose layout says axis 1 is read as (B, C, L).
        layouts: capture site key → :class:`~netxray.capture.graph.SiteLayout`, from
            :meth:`ModelGraph.activation_layouts` (``collect`` records it): per-site feature
            axes, and activations whose input does not depend on the data (status
            ``not_data_dependent``, not observed). ``DataParallel`` / ``torch.compile`` wrappers
            are unwrapped: sites are named by the paths of the wrapped model.

    Example:
        >>> model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 2))
        >>> with Capture(model) as cap:
        ...     _ = model(torch.randn(16, 4))
        >>> [(s.name, s.op, tuple(s.outputs.shape)) for s in cap.sites.values()]
        [('1', 'ReLU', (16, 8))]
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        activations: bool = True,
        layers: LayerSpec = None,
        reducer: str | Callable[[str, str], Reducer] = "pool",
        channel_axis: int | None = None,
        tokens: TokenRule = "mean",
        seq_layout: SeqLayout | str = "auto",
        layouts: Mapping[tuple, SiteLayout] | None = None,
        draw: PositionDraw | None = None,
        max_rows: int | None = None,
    ) -> None:
        if not isinstance(model, nn.Module):
            raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
        model = unwrap_model(model)
        self.model = model
        self.layouts: dict[tuple, SiteLayout] = dict(layouts or {})
        self.graph_note: str | None = None
        self.activations = activations
        self.layer_paths = resolve_layers(model, layers)
        # "<path>:<op>" probes: the outputs of functional activation calls made directly in the
        # module at <path> ("" for the root), e.g. a model written with torch.nn.functional only
        self._functional_probes = {tuple(p.split(":", 1)) for p in self.layer_paths if ":" in p}
        self.reducer = reducer
        self.channel_axis = channel_axis
        self.tokens = tokens
        if reducer == "positions" and draw is None:
            draw = PositionDraw(keep=max_rows or DEFAULT_ROWS, seed=0)
        self.draw = draw
        self.max_rows = max_rows
        self._auto_seq = seq_layout == "auto"
        if seq_layout == "auto":
            seq_layout = "channels" if any(isinstance(m, nn.Conv1d) for m in model.modules()) else "tokens"
        if seq_layout not in ("tokens", "channels"):
            raise ValueError(f"seq_layout must be 'auto', 'tokens' or 'channels', got {seq_layout!r}")
        self.seq_layout: SeqLayout = seq_layout  # type: ignore[assignment]
        self.labels: torch.Tensor | None = None
        self.indices: np.ndarray | None = None
        self.n_inputs: int | None = None  # inputs run (set by collect)
        self.n_total: int | None = None  # samples in the data (set by collect)
        self.nonfinite_inputs = 0  # NaN/inf values in the data's inputs (counted by collect)
        self._states: OrderedDict[tuple, _SiteState] = OrderedDict()
        self._handles: list[Any] = []
        self._mode: _FunctionalActivations | None = None
        self._suspended = False  # the mode is popped while an nn.MultiheadAttention runs
        self._stack: list[str] = []
        self._act_depth = 0
        self._in_hook = False
        self._calls: dict[tuple, int] = {}
        self._open_acts: dict[str, list[_SiteState]] = {}
        self._active = False

    # ---- lifecycle -------------------------------------------------------------------------
    def __enter__(self) -> Capture:
        paths = {id(m): p for p, m in self.model.named_modules()}
        probe = set(self.layer_paths)
        try:
            for module in self.model.modules():
                path = paths[id(module)]
                act = self.activations and is_activation_module(module)
                self._handles.append(module.register_forward_pre_hook(self._make_pre_hook(path, act)))
                self._handles.append(
                    module.register_forward_hook(self._make_post_hook(path, act, path in probe))
                )
            if self.activations or self._functional_probes:
                self._mode = _FunctionalActivations(self)
                self._mode.__enter__()
                for module in self.model.modules():
                    if isinstance(module, nn.MultiheadAttention):
                        self._handles.append(module.register_forward_pre_hook(self._suspend_mode))
                        self._handles.append(module.register_forward_hook(self._resume_mode))
        except BaseException:
            self._remove()
            raise
        self._active = True
        return self

    def __exit__(self, *exc: object) -> None:
        self._remove()

    # nn.MultiheadAttention holds no activation call, and in eval mode torch runs it as one
    # fused kernel unless some tensor "has a torch function" — which an active function mode
    # makes every tensor have. Suspending the mode inside it keeps the model's own path, so the
    # outputs stay bit-identical with the capture attached (its probes are module hooks).
    def _suspend_mode(self, *_: Any) -> None:
        from torch.overrides import _get_current_function_mode_stack, _pop_mode

        stack = _get_current_function_mode_stack()
        if self._mode is not None and not self._suspended and stack and stack[-1] is self._mode:
            _pop_mode()
            self._suspended = True

    def _resume_mode(self, *_: Any) -> None:
        from torch.overrides import _push_mode

        if self._mode is not None and self._suspended:
            _push_mode(self._mode)
            self._suspended = False

    def _remove(self) -> None:
        if self._mode is not None and self._suspended:  # an exception inside the attention
            self._mode, self._suspended = None, False
        if self._mode is not None:
            self._mode.__exit__(None, None, None)
            self._mode = None
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        self._active = False

    def begin_forward(self) -> None:
        """Reset per-forward call counters (done automatically when the root module is called)."""
        self._stack.clear()
        self._act_depth = 0
        self._calls.clear()
        self._open_acts.clear()

    # ---- hooks -----------------------------------------------------------------------------
    def _make_pre_hook(self, path: str, is_act: bool):
        is_root = path == ""

        def pre_hook(module: nn.Module, args: tuple) -> None:
            if is_root and not self._stack:
                self.begin_forward()
            self._stack.append(path)
            if is_act:
                state = self._state_for("activation", path, type(module).__name__)
                self._open_acts.setdefault(path, []).append(state)
                self._observe(state, "in", args[0] if args else None)
                self._act_depth += 1

        return pre_hook

    def _make_post_hook(self, path: str, is_act: bool, is_probe: bool):
        def post_hook(module: nn.Module, args: tuple, output: Any) -> None:
            if self._stack and self._stack[-1] == path:
                self._stack.pop()
            if is_act and self._open_acts.get(path):
                self._act_depth = max(0, self._act_depth - 1)
                self._observe(self._open_acts[path].pop(), "out", output)
            if is_probe:
                state = self._state_for("layer", path, type(module).__name__)
                self._observe(state, "out", first_tensor(output))

        return post_hook

    def _recording_functional(self) -> bool:
        return self._active and self._act_depth == 0 and not self._in_hook

    def _state_for(self, kind: str, path: str, op: str, functional: bool = False) -> _SiteState:
        counter_key = (kind, path, op if functional else "")
        call_index = self._calls.get(counter_key, 0)
        self._calls[counter_key] = call_index + 1
        key = (kind, path, op if functional else "", call_index)
        state = self._states.get(key)
        if state is None:
            state = _SiteState(
                kind=kind, module_path=path, call_index=call_index, op=op, functional=functional,
                layout=self.layouts.get(key) if kind == "activation" else None,
            )
            self._states[key] = state
        return state

    def _new_store(self, state: _SiteState, side: str) -> Reducer:
        if callable(self.reducer):
            return self.reducer(_base_name(state), side)
        axis, seq = self._pooling(state)
        return make_row_store(self.reducer, channel_axis=axis, tokens=self.tokens, seq_layout=seq,
                              draw=self.draw, max_rows=self.max_rows)  # fmt: skip

    def _pooling(self, state: _SiteState) -> tuple[int, SeqLayout]:
        """(channel_axis, seq_layout) of a site: the user's choice, else the site's layout."""
        axis = self.channel_axis
        seq = self.seq_layout
        lay = state.layout
        if lay is not None and lay.axis is not None:
            if axis is None and lay.ndim >= 3:
                axis = lay.axis
            if self._auto_seq and lay.ndim == 3:
                seq = "channels" if lay.axis == 1 else "tokens"
        return (1 if axis is None else axis), seq

    def _observe(self, state: _SiteState, side: str, value: Any) -> None:
        """Reduce one batch into the site's store; a failure becomes the site's status."""
        if state.layout is not None and not state.layout.data_dependent:
            # the same values for every sample: listed apart, never pooled as rows
            if isinstance(value, torch.Tensor):
                shape = tuple(value.shape[1:])
                if side == "in":
                    state.input_shape = state.input_shape or shape
                else:
                    state.output_shape = state.output_shape or shape
            return
        self._in_hook = True
        try:
            with torch.no_grad():
                if not isinstance(value, torch.Tensor):
                    raise TypeError(f"{side}put is {type(value).__name__}, not a tensor")
                shape = tuple(value.shape[1:])
                attr = "in_store" if side == "in" else "out_store"
                store = getattr(state, attr)
                if store is None:
                    store = self._new_store(state, side)
                    setattr(state, attr, store)
                    if side == "in":
                        state.input_shape = shape
                    else:
                        state.output_shape = shape
                store.update(value.detach())
        except Exception as exc:  # one failing site is a status, never a crashed forward
            message = f"{type(exc).__name__}: {exc}"
            if message not in state.errors:
                state.errors.append(message)
        finally:
            self._in_hook = False

    # ---- results ---------------------------------------------------------------------------
    @property
    def sites(self) -> OrderedDict[str, SiteRecord]:
        """Every observed site in execution order, named by module path (+ ``#k`` call index)."""
        counts: dict[tuple, int] = {}
        for key in self._states:
            counts[key[:3]] = counts.get(key[:3], 0) + 1
        names = {key: _base_name(st) for key, st in self._states.items()}
        records: OrderedDict[str, SiteRecord] = OrderedDict()
        for key, st in self._states.items():
            name = names[key]
            if counts[key[:3]] > 1:
                name = f"{name}#{st.call_index}"
            if name in records:  # a probed activation module: keep both, tell them apart
                name = f"{name}@{st.kind}"
            inputs = st.in_store.compute() if st.in_store is not None else None
            outputs = st.out_store.compute() if st.out_store is not None else None
            status = "ok" if not st.errors else "error"
            if st.layout is not None and not st.layout.data_dependent:
                status, st.errors = "not_data_dependent", [NOT_DATA_DEPENDENT]
            elif status == "ok" and outputs is None:
                status, st.errors = "error", ["no output was observed"]
            records[name] = SiteRecord(
                name=name,
                kind=st.kind,
                module_path=st.module_path,
                call_index=st.call_index,
                op=st.op,
                input_shape=st.input_shape,
                output_shape=st.output_shape,
                inputs=inputs,
                outputs=outputs,
                status=status,
                error="; ".join(st.errors) or None,
                per_input=getattr(st.out_store, "per_input", None),
                functional=st.functional,
            )
        return records

    def activation_sites(self) -> OrderedDict[str, SiteRecord]:
        """The activation sites only, in execution order."""
        return OrderedDict((k, v) for k, v in self.sites.items() if v.kind == "activation")

    def layer_sites(self) -> OrderedDict[str, SiteRecord]:
        """The probed layers only, in execution order."""
        return OrderedDict((k, v) for k, v in self.sites.items() if v.kind == "layer")

    def summary(self):
        """A pandas table of the sites: name, kind, op, call index, raw shapes, n, d, status."""
        import pandas as pd

        rows = []
        for rec in self.sites.values():
            out = rec.outputs
            rows.append(
                {
                    "site": rec.name,
                    "kind": rec.kind,
                    "op": rec.op,
                    "call_index": rec.call_index,
                    "input_shape": rec.input_shape,
                    "output_shape": rec.output_shape,
                    "n": rec.n,
                    "d": int(out.shape[1]) if isinstance(out, torch.Tensor) and out.ndim == 2 else None,
                    "status": rec.status,
                    "error": rec.error,
                }
            )
        return pd.DataFrame(rows)


def _base_name(state: _SiteState) -> str:
    if state.functional and state.kind == "layer":  # the probe's own name, root included
        return f"{state.module_path}:{state.op}"
    if state.functional:  # "<enclosing module path>:<op>"
        return f"{state.module_path}:{state.op}" if state.module_path else state.op
    return state.module_path or "(root)"


def resolve_layers(model: nn.Module, layers: LayerSpec, example_inputs: Any = None) -> list[str]:
    """Module paths to probe: None → none; "auto" → natural probes; names; or module types.

    A name ``"<path>:<op>"`` probes the functional activation calls ``<op>`` (as the capture
    names them: ``F.relu``, ``torch.tanh``, ...) made directly in the module at ``<path>``
    (``""`` for the root: ``":F.relu"``), one site per call — the layers of a model written with
    ``torch.nn.functional`` only.

    ``"auto"``: a built-in model's probes, or for any other model the probes read from its graph
    recorded on ``example_inputs`` (a batch; required then — see
    the ``netxray_probes()`` a model declares, else
    :func:`netxray.capture.natural_probes`). Wrappers (``DataParallel``, ``torch.compile``) are
    unwrapped: paths are those of the wrapped model.
    """
    from netxray.capture.graph import unwrap_model

    if layers is None:
        return []
    model = unwrap_model(model)
    named = dict(model.named_modules())
    if isinstance(layers, str):
        if layers == "auto":
            from netxray.capture.probes import natural_probes

            return list(natural_probes(model, example_inputs))
        layers = [layers]
    if isinstance(layers, type):
        layers = [layers]
    layers = list(layers)
    if all(isinstance(item, type) for item in layers):
        types = tuple(layers)
        found = [p for p, m in named.items() if p and isinstance(m, types)]
        if not found:
            raise ValueError(
                f"no module of type {', '.join(t.__name__ for t in types)} in {type(model).__name__}"
            )
        return found
    missing = [p for p in layers if not isinstance(p, str) or (p not in named and not _functional_probe(p, named))]
    if missing:
        sample = ", ".join(list(p for p in named if p)[:12])
        raise ValueError(
            f"unknown layer(s) {missing!r}: expected module paths of {type(model).__name__} "
            f"such as {sample}"
        )
    return layers


def _functional_probe(name: str, named: Mapping[str, nn.Module]) -> bool:
    """True when ``name`` is ``"<module path>:<functional activation op>"``."""
    from netxray.capture.sites import FUNCTIONAL_ACTIVATIONS

    path, sep, op = name.partition(":")
    return bool(sep) and path in named and op in set(FUNCTIONAL_ACTIVATIONS.values())


def _head(inputs: Any, n: int) -> Any:
    """The first ``n`` samples of a batch (a tensor or a dict of tensors)."""
    if isinstance(inputs, dict):
        return {k: v[:n] if isinstance(v, torch.Tensor) else v for k, v in inputs.items()}
    return inputs[:n]


def attention_mask(inputs: Any) -> torch.Tensor | None:
    """The batch's attention mask (B, T) when its inputs carry one (Hugging Face dict batches)."""
    if isinstance(inputs, Mapping):
        mask = inputs.get("attention_mask")
        if isinstance(mask, torch.Tensor) and mask.ndim == 2:
            return mask
    return None


def _count_nonfinite(inputs: Any) -> int:
    """NaN/inf values in a batch's floating-point tensors (so a non-finite site can be blamed on
    the data rather than the model)."""
    values = inputs.values() if isinstance(inputs, Mapping) else inputs if isinstance(inputs, (tuple, list)) else [inputs]
    return sum(int((~torch.isfinite(t)).sum()) for t in values
               if isinstance(t, torch.Tensor) and t.is_floating_point())  # fmt: skip


def _check_rows_cost(cap: Capture, rows: int, n_inputs: int, first_batch: int) -> None:
    """Warn or refuse (:func:`netxray.measures.cost.check_cost`) once the first batch has shown
    every site's width and how many rows an input offers there: each site side keeps
    min(``rows``, offered per input × ``n_inputs``) rows of 4-byte floats at the end."""
    from netxray.measures.cost import check_cost

    need, sides, widest = 0.0, 0, 0
    for st in cap._states.values():
        for store in (st.in_store, st.out_store):
            held = store.chunks[0] if getattr(store, "chunks", None) else getattr(store, "rows", None)
            if not isinstance(held, torch.Tensor) or held.ndim != 2:
                continue
            offered = held.shape[0] / max(first_batch, 1)
            need += 4.0 * min(rows, offered * n_inputs) * held.shape[1]
            sides, widest = sides + 1, max(widest, int(held.shape[1]))
    if sides:
        check_cost(f"capture: up to {rows} rows at each of {sides} site sides (widths up to {widest})",
                   bytes_needed=need, seconds=0.0, option="pass a smaller n_samples (--n-samples)")  # fmt: skip


def collect(
    model: nn.Module,
    data: Any,
    *,
    activations: bool = True,
    layers: LayerSpec = None,
    n_samples: int | None = 2048,
    seed: int = 0,
    batch_size: int = 256,
    reducer: str | Callable[[str, str], Reducer] = "pool",
    tokens: TokenRule = "mean",
    channel_axis: int | None = None,
    seq_layout: SeqLayout | str = "auto",
    device: torch.device | str | None = None,
) -> Capture:
    """Run a seeded random subset of ``data`` through ``model`` (eval mode, no grad) and observe it.

    ``data``: any container :func:`netxray.capture.inputs.resolve_samples` reads (Dataset,
    DataLoader, tensors, (x, y), dict batches, numpy arrays, a stream of batches...). Samples:
    the ``n_samples`` indices :func:`~netxray.capture.inputs.select_indices` draws with ``seed``
    (a stream is read once, keeping only those), in data order, ``batch_size`` at a time; the
    same samples in another container give the same sites. ``device``: None runs where the
    model is; another device runs a copy of the model there. The model's train/eval flags are
    restored afterwards, and hooks removed, even when the forward raises.

    ``reducer="positions"`` (positions as samples, SPEC §1.2): the same inputs are run, and each
    site keeps R = ``n_samples`` rows (None: max(2048, inputs)) drawn across them by rank level
    (every input's first draw, then its second, …: :class:`~netxray.capture.reducers.PositionDraw`;
    padding never drawn; at most 4⌈R / inputs⌉ offered per input; R + one batch's rows held).
    ``reducer="flatten"`` zeroes the padded tokens of (B, T, D) tensors.

    Returns the finished :class:`Capture`: ``.sites`` (execution order), ``.labels`` of the kept
    samples, ``.indices`` (dataset indices, for indexable data), ``.n_inputs``, ``.n_total``
    (samples in the data).

    Example:
        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
        >>> cap = collect(model, (torch.randn(100, 1, 8, 8), torch.arange(100) % 10), n_samples=50)
        >>> list(cap.sites), cap.labels.shape
        (['2'], torch.Size([50]))
    """
    if n_samples is not None and n_samples <= 0:
        raise ValueError(f"n_samples must be positive, got {n_samples}")
    if batch_size <= 0:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    model = unwrap_model(model)  # DataParallel / torch.compile: the wrapped model's sites
    # device=None runs where the model is; another device runs a copy there (the user's model
    # is never moved)
    model, target = place_model(model, device)
    dtype = model_dtype(model)
    samples, chosen, where = selected_samples(data, n_samples=n_samples, seed=seed, batch_size=batch_size)
    n_inputs = len(chosen)
    rows = None
    if reducer == "positions":
        rows = n_samples if n_samples is not None else max(DEFAULT_ROWS, n_inputs)
    # each input offers at most 4× its fair share R / inputs: enough for the others to make up
    # for inputs with fewer positions (short texts), and a bound on one batch's rows
    fair_share = -(-(rows or 1) // max(n_inputs, 1))
    draw = PositionDraw(keep=4 * fair_share, seed=seed)
    batches = iter_batches(samples, chosen, where, batch_size)
    first = next(batches, None)
    layouts: dict[tuple, SiteLayout] = {}
    graph_note = None
    if activations and first is not None:
        # the graph of one pass on two samples: each site's feature axis, and the activations
        # whose input does not depend on the data (applied to parameters or constants)
        try:
            graph = record_graph(model, _to_model(_head(first[0], 2), target, dtype))
            layouts = graph.activation_layouts()
            graph_note = "; ".join(graph.notes) or None
        except Exception as exc:  # the capture itself still runs: say why layouts are missing
            graph_note = f"the model graph could not be recorded ({type(exc).__name__}: {exc})"
    cap = Capture(
        model,
        activations=activations,
        layers=layers,
        reducer=reducer,
        channel_axis=channel_axis,
        tokens=tokens,
        seq_layout=seq_layout,
        layouts=layouts,
        draw=draw,
        max_rows=rows,
    )
    cap.graph_note = graph_note
    cap.n_inputs, cap.n_total = n_inputs, len(samples)
    labels: list[torch.Tensor] = []
    indices: list[np.ndarray] = []
    # every container yields the samples select_indices chooses (a stream is read once, keeping
    # only those), so the same samples give the same sites whatever the container
    with eval_mode(model), torch.no_grad(), cap:
        for step, (inputs, y, idx) in enumerate(itertools.chain([first] if first is not None else [], batches)):
            b = _batch_size_of(inputs)
            if y is not None and y.shape[0] != b:
                raise ValueError(f"labels do not match the samples: {y.shape[0]} labels for {b} samples")
            cap.begin_forward()
            cap.nonfinite_inputs += _count_nonfinite(inputs)
            draw.set_batch(idx, attention_mask(inputs))
            forward_batch(model, _to_model(inputs, target, dtype))
            if step == 0 and reducer in ("positions", "pool"):
                _check_rows_cost(cap, rows if reducer == "positions" else n_inputs, n_inputs, b)
            if y is not None:
                labels.append(y.detach().cpu())
            indices.append(idx)
    cap.labels = torch.cat(labels) if labels else None
    cap.indices = np.concatenate(indices) if indices else None
    if not indices:
        raise ValueError("data yielded no samples")
    return cap
