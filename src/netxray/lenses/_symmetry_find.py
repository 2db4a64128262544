"""Symmetry lens, part 3 — finding a model's axes and its symmetry group.

Axes of any model from the recorded graph (hidden spaces traced from writers to readers), the
verified analysis of a model, and :func:`symmetry_group`. Split out of
:mod:`netxray.lenses.symmetry`, which re-exports every name.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pandas as pd
import torch
from torch import nn

from netxray._device import resolve_device
from netxray._meta import metadata, model_hash
from netxray.capture.structure._parts import (
    Member,
    _module_kind,
)
from netxray.lenses._symmetry_axes import (
    _PRODUCERS,
    PER_MODULE_ABOVE_BYTES,
    Axis,
    _act_name,
    _Analysis,
    _axis_log_order,
    _cnn_axes,
    _compute_dtype,
    _dedupe,
    _family,
    _identical_unit_groups,
    _linear_axis,
    _mlp_axes,
    _per_module,
    _resnet_axes,
    _state64,
    _state64_views,
    _unwrap,
    _verification_copy,
    _vit_axes,
)
from netxray.lenses._symmetry_verify import (
    _flush,
    _graph_of,
    _layers_not_reached,
    _lowest_precision,
    _Probe,
    _probe_inputs,
    _randomized,
    _restore,
    _run,
    _unreached,
    _Verifier,
)
from netxray.measures import symmetry as msym

LN2 = math.log(2.0)


LN10 = math.log(10.0)


def _generic_axes(
    model: nn.Module, graph: list[Any], keys: set[str]
) -> tuple[list[Axis], list[str], list[str], set[str]]:
    """Axes of any model from its op list (see :mod:`netxray.capture.structure`)."""
    from netxray.capture.structure import _spaces as sg

    found = sg.find_axes(model, graph)
    heads = sg.head_axes(model)
    experts = sg.expert_axes(model)
    mods = dict(model.named_modules())
    shapes = {k: tuple(v.shape) for k, v in model.state_dict(keep_vars=True).items()}
    head_keys = {m.key for h in heads + experts for m in h["writers"] + h["readers"]} \
        | {k for h in heads + experts for k in h.get("explains", [])}
    notes = list(found.notes)
    outputs: list[str] = []
    output_keys: set[str] = set()
    axes: list[tuple[int, Axis]] = []
    for sp in found.spaces:
        writer_keys = {m.key for role, m in sp.members if role == "w"}
        if sp.frozen:
            if writer_keys and writer_keys <= head_keys:
                continue  # queries, keys, values: their heads are axes of their own
            if not sp.members:
                # features no parameter writes or reads (Llama's rotary cos/sin products inside a
                # head): there is nothing to permute, so nothing was left unanalysed; parameters
                # that no axis reached are listed below on their own
                continue
            who = ", ".join(sp.writers[:3]) + (f" (+{len(sp.writers) - 3})" if len(sp.writers) > 3 else "")
            reasons = sorted(set(sp.frozen))
            if reasons == ["reaches the model's output"]:
                outputs.append(f"{who} ({sp.size})")  # observed features: fixed, and rightly so
                output_keys.update(m.key for _, m in sp.members)
            else:
                notes.append(f"{who or 'features'} ({sp.size}): " + "; ".join(reasons[:3]))
            continue
        if sp.size < 2 or not sp.writers:
            continue
        ax = _space_axis(sp, mods, shapes, keys)
        if sp.token:
            ax.kind = "token-mixing hidden unit"
        if sp.groups > 1:
            if sp.size == sp.groups:
                continue  # one channel per group: only whole groups move (the group axis below)
            ax.groups, ax.kind = sp.groups, "grouped channel"
            ax.note = (f"{sp.size} channels in {sp.groups} groups of {sp.size // sp.groups} (a grouped "
                       f"convolution): each channel permutes inside its group only, "
                       f"({sp.size // sp.groups}!)^{sp.groups} elements; " + ax.note)
        axes.append((sp.order, ax))
    axes += [(o, a) for o, a in _group_block_axes(found, notes)]
    # a head axis is processed where its projections' outputs start (the frozen q/k/v space)
    start = {m.key: sp.order for sp in found.spaces for role, m in sp.members if role == "w"}
    for h in heads:
        if h["size"] < 2:
            # one head: nothing to permute. Its tensors were read (the q/k/v spaces are accounted
            # for, not frozen) and are fixed by every symmetry: listed with the output side, not
            # as parts left unanalysed (a 1-head window attention's position-bias table)
            output_keys.update(m.key for m in h["writers"] + h["readers"])
            output_keys.update(h.get("explains", []))
            continue
        ax = Axis(name=h["name"], layer=h["layer"], kind=h["kind"], size=h["size"], writers=h["writers"],
                  readers=h["readers"], act="other", activation="softmax attention", reducible=False,
                  note=h["note"], alternatives=[
                      Axis(name=h["name"], layer=h["layer"], kind=h["kind"], size=a["size"], writers=a["writers"],
                           readers=a["readers"], act="other", activation="softmax attention", reducible=False,
                           note=a["note"]) for a in h.get("alternatives", [])])
        order = min((start[m.key] for m in h["writers"] if m.key in start), default=10**9)
        axes.append((order + 0.5, ax))
    for e in experts:  # stacked experts × router; each expert's hidden units (grouped by expert)
        def axis(d: dict[str, Any]) -> Axis:
            return Axis(name=d["name"], layer=d["layer"], kind=d["kind"], size=d["size"], writers=d["writers"],
                        readers=d["readers"], act="other", activation="routed experts", reducible=False,
                        note=d["note"], groups=d["groups"], reach=d.get("reach"))

        ax = axis(e)
        ax.alternatives = [axis(a) for a in e.get("alternatives", [])]
        order = min((start[m.key] for m in e["writers"] if m.key in start), default=10**9)
        axes.append((order + 0.6, ax))
    axes.sort(key=lambda t: t[0])
    out = [a for _, a in axes]
    # names are keys (verification, alignment): pieces of one cut space share their writers,
    # hence their name — the repeats are numbered in forward order
    seen: dict[str, int] = {}
    for a in out:
        seen[a.name] = seen.get(a.name, 0) + 1
        if seen[a.name] > 1:
            a.name = f"{a.name}#{seen[a.name]}"
    head_paths = [h["layer"].split(".") for h in heads]
    for a in out:
        if a.kind in ("hidden unit", "gated hidden unit"):
            # an FFN: a hidden layer inside the block that holds an attention module
            w = a.layer.split(".")
            for hp in head_paths:
                common = next((i for i, (x, y) in enumerate(zip(w, hp, strict=False)) if x != y), min(len(w), len(hp)))
                if common >= max(1, len(hp) - 2):
                    a.kind = "FFN " + a.kind
                    break
    _set_match(out, shapes)
    return out, notes, outputs, output_keys, dict(found.module_calls)


def _group_block_axes(found: Any, notes: list[str]) -> list[tuple[float, Axis]]:
    """Whole groups of grouped convolutions permuted as blocks.

    A grouped convolution with g groups reads input block j (C_in/g channels) into output
    block j (C_out/g channels) only. Permuting the g blocks by σ — the input space's blocks,
    the output space's blocks (the conv's row blocks, its BN) and every other writer/reader of
    either space, by the same σ — leaves the function unchanged, while the conv's own column
    dimension (the position inside a group) stays. Spaces linked through grouped convolutions
    (input and output of one, or a space read by two) form one component and share σ: one axis
    of g! elements. Together with the grouped-channel axes (each channel inside its group:
    (k!)^g for a space of g blocks of k) the symmetry of a bottleneck ``A →(grouped)→ B`` is the
    wreath-product-like group of order (k_A!)^g · (k_B!)^g · g! — g! only once, since A's and
    B's blocks move together. The component has no such axis when one of its spaces is frozen,
    its blocks are pinned (it reads the model's input) or its spaces disagree on g."""
    out: list[tuple[float, Axis]] = []
    seen: set[int] = set()
    for i, sp in enumerate(found.spaces):
        if sp.groups < 2 or i in seen:
            continue
        comp, stack = [], [i]
        while stack:
            j = stack.pop()
            if j in seen:
                continue
            seen.add(j)
            comp.append(j)
            stack += found.links[j]
        spaces = [found.spaces[j] for j in sorted(comp)]
        g = spaces[0].groups
        who = ", ".join(w for s in spaces for w in s.writers[:1])
        why = ([f"the groups of {s.size} channels ({', '.join(s.writers[:1])}) are frozen: "
                + "; ".join(sorted(set(s.frozen))[:2]) for s in spaces if s.frozen]
               + [r for s in spaces for r in s.gfixed]
               + (["its spaces are grouped differently"] if any(s.groups != g for s in spaces) else []))
        if why:
            if any(not s.frozen for s in spaces):  # otherwise the frozen spaces are reported already
                notes.append(f"channel groups of {who}: whole groups cannot be permuted ({'; '.join(why[:2])})")
            continue
        if g < 2:
            continue
        writers, readers = [], []
        inner: dict[tuple[str, int, int], int] = {}
        for s in spaces:
            k = s.size // g
            for role, m in s.members:
                if m.groups > 1:
                    continue  # the grouped conv's columns: the position inside a group stays
                mm = Member(m.key, m.dim, block=m.block * k, segments=m.segments, offset=m.offset)
                (readers if role == "r" else writers).append(mm)
                inner[(m.key, m.dim, m.offset)] = k
        writers, readers = _dedupe(writers), _dedupe(readers)
        sizes = " and ".join(f"{s.size // g}" for s in spaces)
        # before the grouped-channel axes of its spaces: groups are placed first (compared by
        # their channels sorted inside each group), then the channels inside each group
        out.append((min(s.order for s in spaces) - 0.25, Axis(
            name=f"groups@{spaces[0].writers[0]}", layer=", ".join(s.writers[0] for s in spaces),
            kind="channel group", size=g, writers=writers, readers=readers, act="other",
            activation="grouped convolution", reducible=False, inner=inner,
            note=f"{g} groups of {sizes} channels permuted as whole blocks, the same permutation for the "
            f"input and output channels of the grouped convolution(s) and every tensor that writes or reads "
            f"them ({g}! elements)",
        )))
    return out


def _space_axis(sp: Any, mods: dict[str, nn.Module], shapes: dict[str, tuple[int, ...]], keys: set[str]) -> Axis:
    from netxray.capture.structure import _spaces as sg

    writers = _dedupe([m for role, m in sp.members if role in ("w", "n")])
    # a slice both written and read (a tied decoder reads the encoder's rows) moves once
    written = {(m.key, m.dim, m.offset, m.block, m.segments, m.groups, m.row_dim) for m in writers}
    read = _dedupe([m for role, m in sp.members if role == "r"])
    readers = [m for m in read if (m.key, m.dim, m.offset, m.block, m.segments, m.groups, m.row_dim) not in written]
    if len(readers) < len(read):
        joined_extra = {"shared"}
    else:
        joined_extra = set()
    full = all(m.offset == 0 and shapes[m.key][m.dim] == m.segments * sp.size * m.block for m in writers + readers)
    w_mods = [mods.get(w) for w in sp.writers]
    r_mods = [mods.get(r) for r in sp.readers]
    joined = {j for j in sp.joined if j not in ("add-broadcast", "mul-broadcast")} | joined_extra
    simple = (
        full and len(sp.writers) == 1 and len(sp.readers) == 1 and not joined and readers
        and sp.writers[0] != sp.readers[0]  # not a module reading its own rows (tied weights)
        and isinstance(w_mods[0], _PRODUCERS) and getattr(w_mods[0], "groups", 1) == 1
        and isinstance(r_mods[0], _PRODUCERS) and getattr(r_mods[0], "groups", 1) == 1
        and all(isinstance(a, nn.Module) or a[2] is not None for a in sp.acts)
    )
    if simple:
        prod, cons = sp.writers[0], sp.readers[0]
        block = next(m.block for m in readers)
        return _linear_axis(
            f"{prod}->{cons}", prod, cons, sp.size, list(sp.acts), keys,
            "channel" if not isinstance(w_mods[0], nn.Linear) else "hidden unit",
            cons_linear=isinstance(r_mods[0], nn.Linear), block=block, bn=sp.bn, has_maxpool=sp.maxpool,
        )
    if "add" in joined:
        kind = "residual stream"
    elif "mul" in joined and len(sp.writers) > 1:
        kind = "gated hidden unit" if all(isinstance(m, nn.Linear) or (m is not None and sg._is_conv1d_hf(m))
                                          for m in w_mods if m is not None and m.__class__ is not nn.Embedding) \
            and not any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in w_mods) else "channel"
    elif any(isinstance(m, (nn.Conv1d, nn.Conv2d, nn.Conv3d)) for m in w_mods):
        kind = "channel"
    elif any(isinstance(m, nn.Embedding) for m in w_mods):
        kind = "embedding"
    else:
        kind = "hidden unit"
    first = sp.writers[0]
    name = f"{first}->{sp.readers[0]}" if len(sp.writers) == 1 and len(sp.readers) == 1 else \
        f"{first}+{len(sp.writers) - 1}" if len(sp.writers) > 1 else first
    if kind == "residual stream":
        name = f"stream@{first}"
    parts = [p.split(".") for p in sp.writers + sp.readers if p in mods]
    common = []
    for seg in zip(*parts, strict=False):
        if len(set(seg)) != 1:
            break
        common.append(seg[0])
    layer = ".".join(common) or f"{first} … {(sp.readers or sp.writers)[-1]}"
    bias = next((m for m in writers if m.key.endswith(".bias") and m.key.rsplit(".", 1)[0] == first), None)
    acts = sorted({_act_name(a) if isinstance(a, nn.Module) else a[1] for a in sp.acts
                   if (_module_kind(a) if isinstance(a, nn.Module) else a[0]) != "identity"})
    how = {"add": "residual additions", "mul": "element-wise products", "norm": "normalisations",
           "cat-token": "token concatenation", "depthwise": "depthwise convolutions", "reduced": "reductions",
           "add-param": "added parameters", "mul-param": "scaling parameters", "roll": "spatial rolls",
           "grouped": "grouped convolutions", "shuffle": "channel shuffles",
           "shared": "shared weights (a module called more than once, tied parameters)",
           "recurrent": "a recurrent layer's gates and states"}
    through = [how[j] for j in sorted(joined) if j in how]
    return Axis(
        name=name, layer=layer, kind=kind, size=sp.size, writers=writers, readers=readers, bias=bias,
        act="other", activation="∘".join(acts) or ("LayerNorm" if "norm" in joined else "none"),
        reducible=False,
        note=f"one permutation shared by {len(sp.writers)} writer(s) and {len(sp.readers)} reader(s)"
        + (" through " + ", ".join(through) if through else "") + "; permutation only (no rescaling is claimed)",
    )


def _set_match(axes: list[Axis], shapes: dict[str, tuple[int, ...]]) -> None:
    """A slice is a sort/matching feature of its axis only when every other dimension of its
    tensor is permuted by an axis processed earlier (or by none)."""
    by_dim: dict[tuple[str, int], list[int]] = {}
    for i, ax in enumerate(axes):
        for m in ax.writers + ax.readers:
            by_dim.setdefault((m.key, m.dim), []).append(i)
    for i, ax in enumerate(axes):
        def ok(m: Member, i: int = i) -> bool:
            return all(j <= i for d in range(len(shapes[m.key])) if d != m.dim for j in by_dim.get((m.key, d), []))
        ax.writers = [dataclasses.replace(m, match=ok(m)) for m in ax.writers]


def _analyse(model: nn.Module, data: Any = None, copy_mode: str = "auto", device: torch.device | None = None) -> _Analysis:
    if not isinstance(model, nn.Module):
        raise TypeError(f"expected a torch.nn.Module, got {type(model).__name__}")
    model, wrapper = _unwrap(model)
    keys = set(model.state_dict().keys())
    fam = _family(model)
    notes: list[str] = []
    outputs: list[str] = []
    output_keys: set[str] = set()
    readable = True
    probe, m64, calls = None, None, None
    if fam == "mlp":
        axes = _mlp_axes(model, keys)
    elif fam == "cnn":
        axes = _cnn_axes(model, keys)
    elif fam == "resnet":
        axes = _resnet_axes(model, keys)
    elif fam == "vit":
        axes = _vit_axes(model, keys)
    else:
        try:
            m64, probe = _copy_that_runs(model, data, copy_mode, device)
        except ValueError as exc:
            probe, graph, why = None, None, str(exc)
        else:
            graph, why = _graph_of(model, probe)
        if graph is None:
            axes, notes, readable = [], [f"the model's structure could not be read: {why}; no symmetry was proven for it"], False
        else:
            try:
                axes, notes, outputs, output_keys, calls = _generic_axes(model, graph, keys)
            except Exception as exc:  # a layer the finder trips over: a stated failure, never a crash
                axes, readable = [], False
                notes = [f"the axis finder failed on this model's graph ({type(exc).__name__}: {str(exc)[:200]}); "
                         "no symmetry was proven for it"]
            if why:  # parts of the pass the graph could not follow
                notes.insert(0 if readable else 1, f"graph: {why}")
    covered = {m.key for a in axes for m in a.writers + a.readers}
    sd = model.state_dict(keep_vars=True)
    float_keys = [k for k, v in sd.items() if v.is_floating_point()]
    # a tensor stored under several keys (tied weights: ALBERT's predictions.bias is its
    # decoder's bias) is covered, or shown at the output, under all of them
    names: dict[int, list[str]] = {}
    for k in float_keys:
        names.setdefault(id(sd[k]), []).append(k)
    covered |= {a for k in covered if k in sd for a in names.get(id(sd[k]), [])}
    output_keys = output_keys | {a for k in output_keys if k in sd for a in names.get(id(sd[k]), [])}

    def owner(k: str) -> str:
        return k.rsplit(".", 1)[0] if "." in k else k

    touched = {owner(k) for k in covered | output_keys}
    untouched = sorted({owner(k) for k in float_keys if owner(k) not in touched})
    fixed = [k for k in float_keys if k not in covered and owner(k) in touched]
    def why_untouched(o: str) -> str:
        if calls is not None and not any(c == o or c.startswith(o + ".") for c in calls):
            # a route the probe's samples did not take (an expert of a top-1 mixture): its
            # structure was never recorded, so no axis through it can be proven or verified
            return f"{o}: not called on the probe inputs (a route they did not take), so not analysed"
        return f"{o}: no permutable axis proven through it"

    not_analysed = notes + ([why_untouched(o) for o in untouched] if readable else [])
    if fam == "generic":
        statement = (
            "arbitrary model: axes read from the dataflow of one forward pass (feature spaces "
            "carried through element-wise maps, norms, residual additions, gates and "
            "concatenations; attention heads from the attention modules); "
            + ("not analysed: " + "; ".join(not_analysed) if not_analysed
               else "every layer with parameters is covered by some axis")
        )
    else:
        statement = f"built-in {fam}: every axis of its documented layout is listed"
        if untouched:
            statement += "; not analysed: " + "; ".join(not_analysed)
    if outputs:
        statement += "; features fixed because the model's output shows them: " + ", ".join(outputs)
    if fixed:
        statement += "; tensors fixed by every symmetry (output side): " + ", ".join(fixed[:20]) + \
            (f" (+{len(fixed) - 20} more)" if len(fixed) > 20 else "")
    if wrapper:
        statement = f"unwrapped from {wrapper}; " + statement
    return _Analysis(fam, axes, not_analysed, statement, model, wrapper, readable, probe, m64, calls)


def _verified_analysis(model: nn.Module, data: Any, verify: bool, seed: int, copy_mode: str = "auto",
                       device: torch.device | None = None) -> tuple[_Analysis, dict[str, Any]]:  # fmt: skip
    """The analysis with every axis verified (see :func:`_verify_axes`); failed axes are
    removed from ``an.axes`` and listed in the returned report with their reason.
    ``copy_mode``, ``device``: the verification copy (:func:`_verification_copy`)."""
    an = _analyse(model, data, copy_mode, device)
    rep: dict[str, Any] = {"verified": {}, "rejected": [], "probe": None, "verification": "not requested",
                           "rtol": None, "precision": None}
    if not verify or not an.axes:
        if verify:
            rep["verification"] = "nothing to verify"
        return an, rep
    m64 = an.m64 if an.m64 is not None else _verification_copy(an.model, copy_mode=copy_mode, device=device)
    try:
        probe = an.probe if an.probe is not None else _probe_inputs(an.model, data, seed=seed, m64=m64)
    except ValueError as exc:
        rep["verification"] = f"not possible: {exc}"
        return an, rep
    try:
        return _verify_on_copy(an, rep, m64, probe, seed)
    finally:
        _restore(m64, an.model)  # the copy holds the model's own values again


def _verify_on_copy(an: _Analysis, rep: dict[str, Any], m64: nn.Module, probe: _Probe,
                    seed: int) -> tuple[_Analysis, dict[str, Any]]:
    """:func:`_verified_analysis` on the copy ``m64`` (float64, or the dtype the model needs),
    whose parameters are given random values first (:func:`_randomized`); the caller restores
    them."""
    rep["probe"] = probe.source
    why = ""
    for attempt in range(3):
        n = _randomized(m64, seed + 1000 + attempt)
        _flush(m64)
        y0 = _run(m64, probe)
        finite = all(bool(torch.isfinite(t).all()) for t in y0)
        nonzero = any(t.numel() and bool((t != 0).any()) for t in y0)
        if finite and nonzero:
            break
        why = "not finite (NaN/inf)" if not finite else "all zero"
    else:
        # no comparison can pass or fail on such outputs; the model's own values would make
        # the test vacuous or unsound (a claim resting on a zero tensor), so nothing is claimed
        rep["verification"] = (f"not possible: with random values in its parameters the model's outputs on the "
                               f"probe inputs are {why} (3 seeds)")
        return an, rep
    rep["randomized"] = (f"every axis was tested on a copy whose {n} parameter tensors and running statistics "
                         "(biases, norms, LayerScale and zero-initialised heads included) hold random values — "
                         "an axis is a claim about every parameter value, so none may rest on a tensor being "
                         "zero or constant")
    precision = _lowest_precision(m64, probe)
    rtol = {torch.float64: 1e-10, torch.float32: 1e-5}.get(precision, 1e-2)
    rep["rtol"] = rtol
    copy_dtype = _compute_dtype(m64)
    stored = next((p.dtype for p in m64.parameters() if p.is_floating_point()), copy_dtype)
    if stored != copy_dtype:
        rep["copy"] = (f"per module: the copy keeps the model's {str(stored).replace('torch.', '')} and each module "
                       f"computes in {str(copy_dtype).replace('torch.', '')} while it runs (a "
                       f"{str(copy_dtype).replace('torch.', '')} copy of the whole model is not made above "
                       f"{PER_MODULE_ABOVE_BYTES / 1024**3:g} GiB); rescalings by 2^±1, exact in "
                       f"{str(stored).replace('torch.', '')}")
    if copy_dtype != torch.float64:
        rep["precision"] = (f"the model does not run in float64 (an op that takes {str(copy_dtype).replace('torch.', '')} "
                            f"and lower only): verified on a {str(copy_dtype).replace('torch.', '')} copy, "
                            f"tolerance {rtol:g} relative")
    elif precision != torch.float64:
        rep["precision"] = (f"the model computes part of its forward pass in {str(precision).replace('torch.', '')} "
                            f"even in a float64 copy (e.g. a norm that upcasts to float32): tolerance {rtol:g}")
    verifier = _Verifier(m64, probe, seed=seed, rtol=rtol, y0=y0)
    results = verifier.check_each(an.axes)
    lost = _layers_not_reached(m64, probe, an.calls) if an.calls else set()
    for i, ax in enumerate(an.axes):
        gone = sorted({m.key.rsplit(".", 1)[0] for m in ax.writers + ax.readers} & lost)
        if gone and results[i][0]:
            # data-dependent control flow (routing, early exits): with random values the probe
            # takes another path, and a test that does not run these layers proves nothing
            results[i] = (False, math.nan, f"with random parameter values the probe inputs no longer reach "
                          f"{', '.join(gone[:3])} (data-dependent routing), so the test would not exercise it")
    for i, ax in enumerate(an.axes):
        if ax.reach is not None and results[i][0]:
            missed = _unreached(verifier, *ax.reach)
            if missed:
                results[i] = (False, math.nan, f"the probe inputs reach no token to expert(s) {missed[:8]}, so their "
                              "units would pass untested (pass data that reaches every expert)")
    keep = []
    for ax, (ok, rel, why) in zip(an.axes, results, strict=True):
        for alt in ax.alternatives if not ok else []:  # another layout of the same units
            ok2, rel2, _ = verifier.check([alt])
            if ok2:
                ax, ok, rel = alt, True, rel2
                break
        if ok:
            keep.append(ax)
            rep["verified"][ax.name] = rel
        else:
            rep["rejected"].append({"axis": ax.name, "kind": ax.kind, "size": ax.size, "reason": why})
    an.axes = keep
    rep["verification"] = "done"
    if rep["rejected"]:
        an.not_analysed = an.not_analysed + [f"{r['axis']}: claimed {r['kind']} axis failed verification: {r['reason']}"
                                             for r in rep["rejected"]]
        an.statement += "; failed verification (not counted): " + "; ".join(
            f"{r['axis']} ({r['reason']})" for r in rep["rejected"])
    return an, rep


def symmetry_group(model: nn.Module, data: Any = None, *, verify: bool = True, seed: int = 0,
                   verify_copy: str = "auto", device: Any = None) -> pd.DataFrame:
    """Table of the permutable axes of ``model`` and the order of its symmetry group.

    Axes come from the built-in families' documented layouts, or, for any other model, from the
    dataflow of one forward pass (feature spaces through element-wise maps, norms, residual
    additions, gates and concatenations; attention heads from the attention modules). A
    wrapper (``nn.DataParallel``, ``torch.compile``) is unwrapped. With ``verify`` (default),
    **every axis is verified**: one random element of it (a permutation, plus the rescaling or
    sign flips it claims) is applied to a float64 copy whose parameters and running statistics
    all hold random non-zero values — zero- and constant-initialised ones (biases, LayerScale,
    zero heads) included, so that no claim rests on a tensor being zero — and the outputs on
    probe inputs (the first rows of ``data`` — a tensor, an ``(x, y)`` pair, ``(x1, x2)`` or
    ``((x1, x2), y)`` for several positional inputs, a dict of keyword tensors, a list of (dict)
    batches, a Dataset —, else inputs generated from the model's declared input: token ids for
    Hugging Face text models) must agree to 1e-10 relative (1e-5 where the
    model computes in float32); an axis that fails is not counted and is listed in
    ``summary["rejected"]`` with the reason. The user's model is never modified.

    One row per axis: ``axis``, ``layer``, ``kind`` (hidden unit / channel / block-internal
    channel / residual stream / attention head / key/value head group / (FFN) hidden unit /
    gated hidden unit / MLP hidden unit / grouped channel / channel group), ``size`` d,
    ``groups`` g (1, or for the channels of a grouped convolution the number of groups they
    stay inside), ``tensors`` (the slices it moves), ``activation``, ``log_order = ln d!``
    (grouped: g·ln (d/g)!) and ``log10_order`` (lgamma, never overflows),
    ``sign_flips`` and ``log10_sign_flips = d·log10 2`` for odd activations,
    ``continuous_dims`` (ReLU rescaling: d extra dimensions, not counted in the order;
    attention in the built-in ViT: 2·d_head² per head), ``identical_units`` and
    ``log10_orbit = log10(d!/∏ m_g!)`` — the number of distinct parameter vectors the
    permutations actually reach, smaller than the group when m_g units are identical (e.g.
    zero units) —, ``verified`` (True once the permutation test passed; False when it could not
    be run) and a ``note``.

    ``df.attrs["summary"]``: ``status`` ("ok" | "partial: …" | "unverified: …" | "failed: …" —
    never "ok" when a part could not be read), ``readable`` (False: the structure could not be
    read at all — the model does not run on the probe, or the finder failed), totals ``log10_permutations = Σ log10 d!``,
    ``log10_order`` (with sign flips), ``log10_orbit``, ``continuous_dims``, ``n_params``,
    ``statement`` (what was and was not analysed), ``not_analysed``, ``rejected``,
    ``wrapper`` and ``probe`` (where the probe inputs came from). ``df.attrs["meta"]``:
    provenance.

    ``verify_copy``: the copy the test runs on. ``"auto"`` (default): a float64 copy of the
    whole model, unless that copy would exceed 2 GiB (268 M parameter values); then
    ``"per-module"``: a copy in the model's own dtype whose modules compute in float64 one at a
    time while they run (2 bytes per parameter for a bfloat16 model instead of 8; the same
    float64 forward pass, since casting up is exact; rescalings by 2^±1 so that every moved value
    stays exact in the stored dtype). ``"whole"``: always the whole float64 copy. ``device``:
    where the copy and its forward passes run (``"cuda"``, ``"auto"``…; default: the model's
    device); the model itself never moves.

    >>> from torch import nn
    >>> g = symmetry_group(nn.Sequential(nn.Linear(2, 10), nn.Tanh(), nn.Linear(10, 1)))
    >>> round(g.attrs["summary"]["log10_order"], 4)  # 10! · 2^10
    9.5701
    >>> bool(g["verified"].all()), g.attrs["summary"]["status"]
    (True, 'ok')
    """
    from netxray.measures.cost import check_cost, model_units, per_unit_cost

    if not isinstance(model, nn.Module):
        raise TypeError(f"symmetry_group: model must be a torch.nn.Module, got {type(model).__name__}")
    # a float64 copy of the model (and a permuted one to verify) plus per-unit arrays of every
    # axis (about 500 bytes per unit): a 10^7-unit layer is gigabytes; estimated before any copy
    n_values, n_units = model_units(model)
    need, secs = per_unit_cost(n_values, n_units, copies=2, bytes_per_unit=500)
    if verify and _per_module(model, copy_mode=verify_copy):
        # the copy in the model's dtype (a float64 model's copy also saves the tensors a check
        # moves: its rescalings are not undone exactly), a few float64 arrays of the largest
        # tensor (moved one at a time, or run by its module)
        floats = [p for p in model.parameters() if p.is_floating_point()]
        stored = max((p.element_size() for p in floats), default=8)
        largest = max((p.numel() for p in floats), default=0)
        need = (1 if stored < 8 else 2) * stored * float(n_values) + 4 * 8.0 * largest + 500.0 * n_units
    check_cost(f"symmetry_group: {n_units} units in {n_values} parameter values", bytes_needed=need,
               seconds=secs, option="leave the symmetry lens out (scan: --lenses without symmetry) or "
               "analyse a narrower model")  # fmt: skip
    dev = None if device is None else resolve_device(device, model)
    an, rep = _verified_analysis(model, data, verify, seed, verify_copy, dev)
    inner = an.model if an.model is not None else model
    # read-only views of the float64 copy the analysis already made (the same values), instead
    # of a second float64 copy of every parameter (690 MB for ViT-B/16)
    state = _state64_views(an.m64) if an.m64 is not None else _state64(inner)
    rows = []
    done = rep["verification"] == "done"
    for ax in an.axes:
        lo = _axis_log_order(ax)
        # units identical in every tensor they own are fixed by swapping them: the orbit of these
        # very parameters is d!/∏ m_g! for groups of m_g identical units (zero units included);
        # in a grouped axis only units of one group can be swapped
        groups = _identical_unit_groups(state, ax)
        stab = sum(msym.log_factorial(len(g)) for g in groups)
        rows.append({
            "axis": ax.name,
            "layer": ax.layer,
            "kind": ax.kind,
            "size": ax.size,
            "groups": ax.groups,
            "tensors": "; ".join(m.describe() for m in ax.writers + ax.readers),
            "activation": ax.activation,
            "log_order": lo,
            "log10_order": lo / LN10,
            "sign_flips": ax.sign_flips,
            "log10_sign_flips": ax.size * LN2 / LN10 if ax.sign_flips else 0.0,
            "continuous_dims": ax.continuous_dims,
            "identical_units": ax.size - len(groups),
            "log10_orbit": (lo - stab) / LN10,
            "verified": done and ax.name in rep["verified"],
            "note": ax.note,
        })
    cols = ["axis", "layer", "kind", "size", "groups", "tensors", "activation", "log_order", "log10_order",
            "sign_flips", "log10_sign_flips", "continuous_dims", "identical_units", "log10_orbit",
            "verified", "note"]
    df = pd.DataFrame(rows, columns=cols)
    n_params = sum(p.numel() for p in inner.parameters())
    perm = float(df["log10_order"].sum()) if len(df) else 0.0
    flips = float(df["log10_sign_flips"].sum()) if len(df) else 0.0
    if not an.readable:
        status = "failed: " + (an.not_analysed[0] if an.not_analysed else "the structure could not be read")
    elif verify and not done and an.axes:
        status = f"unverified: verification {rep['verification']}"
    elif not verify and an.axes:
        status = "unverified: verification not requested"
    elif an.not_analysed or rep["rejected"]:
        parts = []
        if rep["rejected"]:
            parts.append(f"{len(rep['rejected'])} claimed axes failed verification")
        if an.not_analysed:
            parts.append(f"{len(an.not_analysed)} parts not analysed")
        status = ("partial: " if len(df) else "failed: no axis proven; ") + ", ".join(parts)
    else:
        status = "ok"
    df.attrs["summary"] = {
        "status": status,
        "readable": an.readable,
        "family": an.family,
        "n_axes": len(df),
        "log_permutations": perm * LN10,
        "log10_permutations": perm,
        "log10_order": perm + flips,
        "log10_orbit": float(df["log10_orbit"].sum()) if len(df) else 0.0,
        "continuous_dims": int(df["continuous_dims"].sum()) if len(df) else 0,
        "n_params": n_params,
        "statement": an.statement,
        "not_analysed": an.not_analysed,
        "rejected": rep["rejected"],
        "wrapper": an.wrapper,
        "probe": rep["probe"],
        "verify_rtol": rep.get("rtol"),
    }
    if rep.get("precision"):
        df.attrs["summary"]["statement"] += "; verification: " + rep["precision"]
    if rep.get("copy"):
        df.attrs["summary"]["statement"] += "; verification copy: " + rep["copy"]
    if rep.get("randomized"):
        df.attrs["summary"]["statement"] += "; verification: " + rep["randomized"]
    df.attrs["meta"] = metadata(model_hash=model_hash(inner), family=an.family)
    return df


def _copy_that_runs(model: nn.Module, data: Any, copy_mode: str = "auto",
                    device: torch.device | None = None) -> tuple[nn.Module, _Probe]:  # fmt: skip
    """An eval-mode copy of ``model`` for the verification and the probe inputs it runs on:
    float64 unless the model does not run in float64 (Mixtral's grouped expert matmul takes
    float32/bfloat16 only) — then float32, and the verification tolerance follows (1e-5
    relative instead of 1e-10; :func:`_verify_on_copy` states it)."""
    m64 = _verification_copy(model, copy_mode=copy_mode, device=device)
    try:
        return m64, _probe_inputs(model, data, m64=m64)
    except ValueError as exc:
        why = str(exc)
    del m64  # (the exception's frames no longer hold the float64 copy either)
    if data is None and "cannot infer probe inputs" in why:
        raise ValueError(why)
    m32 = _verification_copy(model, torch.float32, copy_mode, device)
    try:
        probe = _probe_inputs(model, data, m64=m32)
    except ValueError:
        raise ValueError(why) from None
    return m32, probe
