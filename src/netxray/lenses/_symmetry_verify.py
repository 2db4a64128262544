"""Symmetry lens, part 2 — probing a model and verifying claimed axes.

The probe inputs a model accepts, running it in float64, and the permutation test
(:class:`_Verifier`) on a copy whose parameters all hold random values. Split out of
:mod:`netxray.lenses.symmetry`, which re-exports every name.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from netxray.capture.structure._parts import Member
from netxray.lenses._symmetry_axes import (
    _PRODUCERS,
    Axis,
    _compute_dtype,
    _eval64,
    _random_element,
    _scale,
    _take,
)


def _graph_of(model: nn.Module, probe: _Probe) -> tuple[list[Any] | None, str | None]:
    """The op list of one real forward pass of ``model`` on ``probe``
    (:func:`netxray.capture.graph.record_graph`), or why it could not be read."""
    from netxray.capture.graph import record_graph
    from netxray.capture.structure import _spaces as sg

    p = next((t for t in model.parameters() if t.is_floating_point()), None)

    def cast(x: Any) -> Any:  # the example runs in the model's own dtype and device
        if isinstance(x, torch.Tensor):
            return x.to(dtype=p.dtype if (p is not None and x.is_floating_point()) else x.dtype,
                        device=p.device if p is not None else x.device)
        if isinstance(x, dict):
            return {k: cast(v) for k, v in x.items()}
        return type(x)(cast(v) for v in x) if isinstance(x, (list, tuple)) else x

    example = cast(dict(probe.kwargs)) if probe.kwargs else cast(probe.args[0] if len(probe.args) == 1 else tuple(probe.args))
    try:
        mg = record_graph(model, example)  # eval mode, no grad, every flag and weight restored
    except Exception as exc:  # a model that does not run: say so, analyse nothing
        return None, f"its forward pass could not be recorded ({type(exc).__name__}: {str(exc)[:200]})"
    ops = sg.recorded_graph(model, mg)
    return ops, ("; ".join(mg.notes) if mg.notes else None)


@dataclass
class _Probe:
    """Positional and keyword inputs of one call of the model."""

    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    source: str


def _first_rows(x: Any, n: int) -> Any:
    if isinstance(x, torch.Tensor):
        return x[:n]
    if isinstance(x, dict):
        return {k: _first_rows(v, n) for k, v in x.items()}
    return x


def _data_probes(data: Any, n: int) -> list[_Probe]:
    """Probe inputs from the first ``n`` samples of ``data``, in every form the other lenses take
    (:func:`netxray.capture.inputs.resolve_samples`): a tensor, an ``(x, y)`` tuple,
    ``((x1, x2), y)`` or ``(x1, x2)`` for a model with several positional inputs, a dict of
    keyword tensors, a list of (dict) batches, a Dataset or DataLoader, a netxray Dataset.
    A tuple of tensors is ambiguous — ``(x, y)`` or two inputs: the first is tried alone first,
    then all of them as positional inputs."""
    from netxray.capture.inputs import resolve_samples

    d = getattr(data, "test", data)  # DataSplits → test split
    d = getattr(d, "x", d)  # Dataset → inputs
    if isinstance(d, torch.Tensor):
        if d.ndim < 1 or len(d) == 0:
            raise ValueError("data: expected a tensor of inputs with a batch dimension (N, ...)")
        return [_Probe((d[:n],), {}, "data")]
    if isinstance(d, dict) and d and any(isinstance(v, torch.Tensor) for v in d.values()):
        return [_Probe((), _first_rows(dict(d), n), "data")]
    if isinstance(d, (tuple, list)) and len(d) >= 2 and all(isinstance(t, torch.Tensor) and t.ndim for t in d) \
            and len({len(t) for t in d}) == 1:
        return [_Probe((d[0][:n],), {}, "data"),
                _Probe(tuple(t[:n] for t in d), {}, f"data ({len(d)} positional inputs)")]
    try:
        samples = resolve_samples(data, n_samples=n)
        inputs, _ = samples.take(torch.arange(min(n, len(samples))))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"data: {exc}") from exc
    if isinstance(inputs, dict):
        return [_Probe((), dict(inputs), "data")]
    if isinstance(inputs, tuple):
        return [_Probe(tuple(inputs), {}, f"data ({len(inputs)} positional inputs)")]
    return [_Probe((inputs,), {}, "data")]


def _probe_candidates(model: nn.Module, data: Any, n: int, seed: int) -> list[_Probe]:
    if data is not None:
        return _data_probes(data, n)
    g = torch.Generator().manual_seed(seed)
    cfg = getattr(model, "netxray_config", None)
    if isinstance(cfg, dict) and "input_shape" in cfg:
        return [_Probe((torch.rand((n, *[int(s) for s in cfg["input_shape"]]), generator=g),), {}, "netxray config")]
    hf = getattr(model, "config", None)
    main = getattr(model, "main_input_name", None)
    if hf is not None and main == "input_ids" and getattr(hf, "vocab_size", None):
        seq = max(1, min(8, int(getattr(hf, "max_position_embeddings", 8) or 8)))
        ids = torch.randint(0, int(hf.vocab_size), (n, seq), generator=g)
        return [_Probe((), {"input_ids": ids}, "token ids (Hugging Face config)")]
    if hf is not None and main == "pixel_values":
        size = getattr(hf, "image_size", 32)
        size = tuple(size) if isinstance(size, (list, tuple)) else (size, size)
        ch = int(getattr(hf, "num_channels", 3))
        return [_Probe((), {"pixel_values": torch.randn((n, ch, *size), generator=g)}, "pixel values (Hugging Face config)")]
    first = next((m for m in model.modules() if isinstance(m, (*_PRODUCERS, nn.Embedding))), None)
    cands: list[_Probe] = []
    # the size the model was built for, where its patch embedding keeps it (timm: ``patch_embed`` /
    # ``stem`` .img_size). It comes before the pretrained config, which describes the pretrained
    # weights and stays at 224 for a model created with ``img_size=32``
    declared = next(((path, m.img_size) for path, m in model.named_modules()
                     if _two_ints(getattr(m, "img_size", None)) is not None), None)
    chans = next((int(m.in_chans) for m in model.modules() if isinstance(getattr(m, "in_chans", None), int)),
                 first.in_channels if isinstance(first, nn.Conv2d) else None)
    if declared is not None and chans:
        hw = _two_ints(declared[1])
        cands.append(_Probe((torch.randn((n, chans, *hw), generator=g),), {},
                            f"{declared[0] or 'the model'}.img_size ({hw[0]}×{hw[1]})"))
    pc = getattr(model, "pretrained_cfg", None) or getattr(model, "default_cfg", None)
    if isinstance(pc, dict) and isinstance(pc.get("input_size"), (tuple, list)):
        shape = tuple(int(s) for s in pc["input_size"])
        cands.append(_Probe((torch.randn((n, *shape), generator=g),), {},
                            f"timm pretrained config ({'×'.join(map(str, shape))})"))
    if isinstance(getattr(model, "image_size", None), int) and isinstance(first, nn.Conv2d):
        s = model.image_size
        cands.append(_Probe((torch.randn((n, first.in_channels, s, s), generator=g),), {}, "the model's image_size"))
    if isinstance(first, nn.Linear) and not cands:
        return [_Probe((torch.randn((n, first.in_features), generator=g),), {}, "the first Linear layer")]
    if isinstance(first, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        # the spatial size is not declared (or the declared one does not run): the first size
        # the model runs on
        k = first.weight.ndim - 2
        cands += [_Probe((torch.randn((n, first.in_channels, *[s] * k), generator=g),), {},
                         f"the first {type(first).__name__} ({'×'.join([str(s)] * k)}, the first size that runs)")
                  for s in (32, 8, 16, 28, 64, 224)]
    if cands:
        return cands
    raise ValueError(f"cannot infer probe inputs for {type(model).__name__}; pass data=<a batch of its inputs>")


def _two_ints(v: Any) -> tuple[int, int] | None:
    """(h, w) from an int or a pair of ints (a patch embedding's ``img_size``), else None."""
    if isinstance(v, int) and not isinstance(v, bool) and v > 0:
        return (v, v)
    if isinstance(v, (tuple, list)) and len(v) == 2 and all(isinstance(e, int) and e > 0 for e in v):
        return (int(v[0]), int(v[1]))
    return None


def _probe_inputs(model: nn.Module, data: Any, n: int = 2, seed: int = 0, m64: nn.Module | None = None) -> _Probe:
    """``n`` probe inputs: the first rows of ``data`` when given (a tensor, an (x, y) tuple, a
    dict of tensors passed as keywords, a netxray Dataset/DataSplits), else generated from what
    the model declares: a netxray config's input shape, a Hugging Face config (token ids below
    ``vocab_size`` for text models, ``pixel_values`` of ``image_size``), the ``img_size`` its
    patch embedding was built for (timm ``create_model(..., img_size=32)``), a timm pretrained
    config, torchvision's ``image_size``, the first Linear layer, or for a conv net the first of
    32, 8, 16, 28, 64, 224 pixels that the model runs on — the first of these that runs. The inputs are checked by one forward
    pass of an eval-mode float64 copy (the model itself is not run: its BatchNorm statistics and
    mode stay as they are)."""
    cands = _probe_candidates(model, data, n, seed)
    m64 = _eval64(model) if m64 is None else m64
    errors = []
    for c in cands:
        try:
            _run(m64, c)
            return c
        except Exception as exc:  # the wrong guess of an input size: try the next
            errors.append(f"{c.source}: {type(exc).__name__}: {str(exc)[:120]}")
    raise ValueError(f"the model does not run on the probe inputs ({'; '.join(errors[:2])}); pass data=<a batch of its inputs>")


def _float_outputs(y: Any) -> list[torch.Tensor]:
    """Every floating-point tensor in a model's output (tensors, tuples, dicts, ModelOutputs)."""
    if isinstance(y, torch.Tensor):
        return [y] if y.is_floating_point() or y.is_complex() else []
    if isinstance(y, dict):
        return [t for v in y.values() for t in _float_outputs(v)]
    if isinstance(y, (list, tuple)):
        return [t for v in y for t in _float_outputs(v)]
    return []


def _to64(x: Any, dtype: torch.dtype = torch.float64, device: torch.device | None = None) -> Any:
    """Floating tensors of ``x`` (nested in tuples, lists, dicts) cast to ``dtype``, every tensor
    moved to ``device`` (when given), in one ``.to`` each."""
    if isinstance(x, torch.Tensor):
        return x.to(device=device, dtype=dtype) if x.is_floating_point() else x.to(device=device)
    if isinstance(x, dict):
        return {k: _to64(v, dtype, device) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to64(v, dtype, device) for v in x)
    return x


def _run(model: nn.Module, probe: _Probe) -> list[torch.Tensor]:
    """The floating outputs of ``model`` on ``probe``, its floating inputs cast to the model's
    floating dtype (float64 for the verification copy, float32 where the model needs it)."""
    dtype = _compute_dtype(model)
    device = next((t.device for t in itertools.chain(model.parameters(), model.buffers())), torch.device("cpu"))
    with torch.no_grad():
        return _float_outputs(model(*_to64(probe.args, dtype, device), **_to64(probe.kwargs, dtype, device)))


def _lowest_precision(m64: nn.Module, probe: _Probe) -> torch.dtype:
    """The least precise floating dtype any op of the float64 copy computes a per-sample tensor
    in (its first axis is the batch): float64 unless the model casts down itself (Llama's
    RMSNorm runs in float32 whatever the weights' dtype)."""
    from torch.overrides import TorchFunctionMode

    batch = next((t.shape[0] for t in list(probe.args) + list(probe.kwargs.values())
                  if isinstance(t, torch.Tensor) and t.ndim), None)
    order = [torch.float64, torch.float32, torch.bfloat16, torch.float16]
    seen = {"worst": 0}

    class Watch(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            for t in _float_outputs(out):
                if t.ndim and t.shape[0] == batch and t.dtype in order:
                    seen["worst"] = max(seen["worst"], order.index(t.dtype))
            return out

    with Watch():
        _run(m64, probe)
    return order[seen["worst"]]


@dataclass
class _Step:
    """One tensor's part of a group element (see ``_Verifier._steps``): in ``key``, scale the
    ``scaled`` slices by ``f`` and the ``read`` slices by 1/f, then take the ``members`` slices in
    ``perm`` order (unit i of the result is unit ``perm[i]``)."""

    key: str
    axis: Axis
    perm: np.ndarray
    f: np.ndarray | None
    members: list[Member] = field(default_factory=list)
    scaled: list[Member] = field(default_factory=list)
    read: list[Member] = field(default_factory=list)

    def inverse(self) -> _Step:
        """The step that undoes this one: new[i] = f[perm[i]]·w[perm[i]] is undone by scaling
        unit i by 1/f[perm[i]] and taking the units in the inverse order."""
        inv = np.argsort(self.perm)
        f = None if self.f is None else 1.0 / self.f[self.perm]
        return _Step(self.key, self.axis, inv, f, self.members, self.scaled, self.read)


class _Verifier:
    """Applies random group elements to a verification copy of the model (``_eval64`` or
    ``_upcast_per_module``) and compares its outputs on ``probe`` with the unmoved copy's:
    ``max|y' − y| ≤ rtol · max|y|``. The unmoved outputs are read once; every check moves the
    copy's tensors in place, one tensor at a time (a float64 array of one tensor at a time, never
    of the whole model), and gives them their values back afterwards (see :meth:`check`).

    On a copy stored below float64 (a per-module copy of a bfloat16 model) every moved value must
    stay representable in the stored dtype, or the test would measure the rounding of the move
    instead of the symmetry: permutations and sign flips are exact, and rescalings use factors
    2^±1 (exact in any binary format) instead of a ∈ U[0.5, 2]."""

    def __init__(self, model: nn.Module, probe: _Probe, seed: int = 0, rtol: float = 1e-10,
                 y0: list[torch.Tensor] | None = None) -> None:  # fmt: skip
        self.m64 = model
        device = next((p.device for p in model.parameters()), torch.device("cpu"))
        self.device = device
        self.probe = _Probe(_to_device(probe.args, device), _to_device(probe.kwargs, device), probe.source)
        self.live = {k: v for k, v in model.state_dict(keep_vars=True).items() if v.is_floating_point()}
        self.exact_scales = any(v.dtype != torch.float64 for v in self.live.values())
        self.y0 = _run(model, self.probe) if y0 is None else y0  # the unmoved outputs, if known
        self.ref = max((float(t.abs().max()) for t in self.y0 if t.numel()), default=0.0)
        self.rng = np.random.default_rng(seed)
        self.rtol = rtol
        self.forwards = 0  # how many moved forward passes the checks took (benchmarks read it)

    def _element(self, ax: Axis) -> tuple[Axis, np.ndarray, np.ndarray | None, str]:
        """One random element of ``ax``: a permutation that moves every unit it can, with a
        random rescaling or sign flip where the axis claims one (factors ``f``, or None)."""
        a = copy.copy(ax)
        perm = _random_element(self.rng, a)
        what = "permutation"
        if a.act == "homogeneous" and a.scale and a.continuous_dims:
            if self.exact_scales:
                f = 2.0 ** self.rng.choice([-1.0, 1.0], a.size)
            else:
                f = self.rng.uniform(0.5, 2.0, a.size)
            what += " and positive rescaling"
        elif a.sign_flips and a.scale:
            f = self.rng.choice([-1.0, 1.0], a.size)
            what += " and sign flips"
        else:
            f = None
        return a, perm, f, what

    def _steps(self, a: Axis, perm: np.ndarray, f: np.ndarray | None) -> list[_Step]:
        """The element (``perm``, ``f``) of ``a`` as one step per tensor it moves: the tensor's
        scalings (× f for the axis's affine part, ÷ f for its readers), then its slices taken in
        ``perm`` order — per tensor what the whole-state update does, since the updates of
        different tensors are independent. A tensor stored under several keys (tied weights) is
        moved once, its members under every key, the same slice counted once."""
        tensors: dict[int, _Step] = {}
        seen: set[tuple[Any, ...]] = set()
        for group, bucket in ((a.writers + a.readers, "members"), (a.scale, "scaled"), (a.readers, "read")):
            for m in group:
                t = self.live[m.key]
                step = tensors.setdefault(id(t), _Step(m.key, a, perm, f))
                sig = (bucket, id(t), m.dim, m.offset, m.block, m.segments, m.groups, m.row_dim)
                if sig not in seen:
                    seen.add(sig)
                    getattr(step, bucket).append(dataclasses.replace(m, key=step.key))
        return list(tensors.values())

    def _move(self, step: _Step) -> None:
        """Write one step into its tensor (a float64 array of that one tensor meanwhile)."""
        key, size = step.key, step.axis.size
        st = {key: self.live[key].detach().cpu().to(torch.float64).numpy().copy()}
        if step.f is not None:
            for m in step.scaled:
                _scale(st, m, size, step.f)
            for m in step.read:
                _scale(st, m, size, 1.0 / step.f)
        part = copy.copy(step.axis)
        part.writers, part.readers = step.members, []
        _take(st, part, step.perm)
        t = self.live[key]
        t.copy_(torch.from_numpy(st[key]).to(device=t.device, dtype=t.dtype))

    def check(self, axes: Sequence[Axis]) -> tuple[bool, float, str]:
        """One random element of each of ``axes``, composed (applied one after the other to the
        same state), then one forward pass. Returns (passed, relative difference, reason).

        The moved tensors get their values back afterwards: on an exact copy (every move exact
        in the stored dtype) by undoing the steps taken, in reverse, each by its inverse — no
        saved copy of the moved tensors, which for a residual stream are nearly all of them;
        on a float64 copy with rescalings a ∈ U[0.5, 2] (not exactly invertible) from a saved
        copy of the tensors it moves."""
        elements = [self._element(ax) for ax in axes]
        what = elements[0][3] if len(elements) == 1 else f"composition of {len(elements)} axes' elements"
        saved: dict[str, torch.Tensor] = {}
        if not self.exact_scales:
            moved = {id(self.live[m.key]): m.key for ax in axes for m in ax.writers + ax.readers}
            saved = {k: self.live[k].detach().clone() for k in moved.values()}
        done: list[_Step] = []
        try:
            with torch.no_grad():
                for a, perm, f, _ in elements:
                    for step in self._steps(a, perm, f):
                        self._move(step)
                        done.append(step)
            _flush(self.m64)
            self.forwards += 1
            y = _run(self.m64, self.probe)
            y0 = self.y0
            if len(y) != len(y0) or any(t.shape != t0.shape for t, t0 in zip(y, y0, strict=True)):
                return False, math.inf, f"a random {what} changed the output shapes"
            err = max((float((t - t0).abs().max()) for t, t0 in zip(y, y0, strict=True) if t.numel()), default=0.0)
            rel = err / self.ref if self.ref > 0 else err
            if rel <= self.rtol:
                return True, rel, ""
            return False, rel, (f"a random {what} along it changed the outputs by {rel:.2e} "
                                f"(relative; allowed {self.rtol:g})")  # fmt: skip
        except Exception as exc:  # a wrongly claimed axis may break shapes: it is no symmetry
            return False, math.inf, f"moving it broke the forward pass ({type(exc).__name__}: {str(exc)[:120]})"
        finally:
            with torch.no_grad():
                if saved:
                    for k, v in saved.items():
                        self.live[k].copy_(v)
                else:
                    for step in reversed(done):
                        self._move(step.inverse())
                _flush(self.m64)

    def check_each(self, axes: Sequence[Axis]) -> list[tuple[bool, float, str]]:
        """Every axis verified, in as few forward passes as the results allow (group testing).

        All axes' random elements are composed and checked in one pass; a group that fails is
        split in halves, down to single axes, whose verdict is their own. Why a passing group
        verifies each member: if every other axis of the group is a symmetry (of any parameters),
        the composition changes the outputs exactly as the remaining axis's element alone does,
        so the group test *is* that axis's single test. Only two or more wrong axes whose random
        elements cancel to 1e-10 could pass together — a coincidence of measure zero over the
        random permutations and rescalings. ViT-B/16: 25 axes, one float64 forward instead of 25.
        """
        out: list[tuple[bool, float, str] | None] = [None] * len(axes)

        def solve(idx: list[int]) -> None:
            ok, rel, why = self.check([axes[i] for i in idx])
            if ok or len(idx) == 1:
                for i in idx:
                    out[i] = (ok, rel, why)
                return
            half = len(idx) // 2
            solve(idx[:half])
            solve(idx[half:])

        if axes:
            solve(list(range(len(axes))))
        return [r for r in out if r is not None]


def _layers_not_reached(m: nn.Module, probe: _Probe, calls: dict[str, int]) -> set[str]:
    """The layers the recorded pass called (``calls``: module path → count) that one pass of
    the randomised copy ``m`` on ``probe`` does not call."""
    mods = dict(m.named_modules())
    seen: set[str] = set()
    hooks = [mods[p].register_forward_pre_hook(lambda *_, p=p: seen.add(p)) for p in calls if p in mods]
    try:
        _run(m, probe)
    finally:
        for h in hooks:
            h.remove()
    return {p for p in calls if p in mods and p not in seen}


def _unreached(v: _Verifier, key: str, n: int) -> list[int]:
    """The slabs j < n of ``key`` along dim 0 (stacked experts) whose change does not move the
    outputs on the probe: no probe token reaches them, so an axis moving them is untested."""
    out = []
    t = v.live[key]
    for j in range(n):
        with torch.no_grad():
            saved = t[j].clone()
            t[j].mul_(1.5).add_(0.1)
        try:
            _flush(v.m64)
            y = _run(v.m64, v.probe)
            moved = max((float((a - b).abs().max()) for a, b in zip(y, v.y0, strict=True) if a.numel()), default=0.0)
            if moved <= v.rtol * max(v.ref, 1e-300):
                out.append(j)
        finally:
            with torch.no_grad():
                t[j].copy_(saved)
            _flush(v.m64)
    return out


def _verify_axes(
    model: nn.Module, axes: Sequence[Axis], probe: _Probe, seed: int = 0, rtol: float = 1e-10
) -> list[tuple[bool, float, str]]:
    """Each axis checked on its own (one random element, one forward pass per axis); see
    :class:`_Verifier`. Returns (passed, relative difference, reason) per axis."""
    v = _Verifier(model, probe, seed=seed, rtol=rtol)
    return [v.check([ax]) for ax in axes]


def _to_device(x: Any, device: torch.device) -> Any:
    if isinstance(x, torch.Tensor):
        return x.to(device)
    if isinstance(x, dict):
        return {k: _to_device(v, device) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return type(x)(_to_device(v, device) for v in x)
    return x


_STAT_BUFFERS = ("running_mean", "running_var")


def _randomized(m64: nn.Module, seed: int) -> int:
    """Give every floating-point parameter of the copy ``m64`` (our own copy, never the user's
    model) and every running statistic (BatchNorm ``running_mean`` / ``running_var``) random
    non-zero values, in place; returns how many tensors were filled.

    An axis is a claim about *every* value of the parameters: a permutation test on the model's
    own values can pass only because some tensor is zero or constant (timm BEiT's ``q_bias`` is
    zero at init: a head axis that forgets it passes on a fresh model and fails on a trained
    one). So the test runs on values no initialisation can make special. Each tensor keeps its
    scale where it has one: mean + std · N(0, 1) of its own entries; a constant tensor (zeros,
    ones, LayerScale's 1e-5) gets c + s · N(0, 1) with s = 1/√fan_in for a matrix and
    max(0.1, 0.1·|c|) for a vector; running variances are drawn from U(0.5, 2) × their mean.
    Other buffers (masks, position indices, rotary tables) are constants of the architecture,
    not parameters, and keep their values. Shared (tied) parameters are filled once and stay
    tied. In place, not on a second copy: a second float64 copy of ViT-H/14 is 5 GB."""
    g = torch.Generator().manual_seed(seed)
    tensors: list[tuple[str, torch.Tensor]] = [
        (k, p) for k, p in m64.named_parameters() if p.is_floating_point() and p.numel()]
    seen = {id(p) for _, p in tensors}
    for path, mod in m64.named_modules():
        for name in _STAT_BUFFERS:
            b = getattr(mod, name, None)
            if isinstance(b, torch.Tensor) and b.is_floating_point() and b.numel() and id(b) not in seen:
                seen.add(id(b))
                tensors.append((f"{path}.{name}" if path else name, b))
    with torch.no_grad():
        for key, t in tensors:
            flat = t.detach().reshape(-1).to(torch.float64)
            c = float(flat.mean()) if math.isfinite(float(flat.mean())) else 0.0
            sd = float(flat.std()) if flat.numel() > 1 else 0.0
            del flat  # one float64 array of the tensor at a time (an LM head is 0.5 GB in float64)
            noise = torch.randn(t.shape, generator=g, dtype=torch.float64)
            if key.endswith("running_var"):
                new = torch.empty(t.shape, dtype=torch.float64).uniform_(0.5, 2.0, generator=g) * (c if c > 0 else 1.0)
            elif sd > 0 and math.isfinite(sd):
                new = noise.mul_(sd).add_(c)
            elif t.ndim >= 2:
                new = noise.div_(math.sqrt(max(1, t[0].numel()))).add_(c)
            else:
                new = noise.mul_(max(0.1, 0.1 * abs(c))).add_(c)
            t.copy_(new)
            del noise, new
    return len(tensors)


def _flush(m: nn.Module) -> None:
    """Drop tensors that modules of our copy ``m`` derived from their parameters and cache in
    eval mode (timm LeViT's ``attention_bias_cache`` is cleared by ``train()``), so that the
    next forward pass reads the parameters as they are now; the copy ends in eval mode."""
    m.train()
    m.eval()


def _restore(m64: nn.Module, source: nn.Module) -> None:
    """Copy the source model's own values back into its copy ``m64`` (after
    :func:`_randomized`), so that the copy holds the model's values for the identical-units
    count; tensor by tensor, without a second copy of the model."""
    src = source.state_dict()
    with torch.no_grad():
        for k, v in m64.state_dict(keep_vars=True).items():
            if v.is_floating_point() and k in src:
                v.copy_(src[k].detach().to(device=v.device, dtype=v.dtype))
    _flush(m64)
