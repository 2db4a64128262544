"""A model's structure, recorded from one real forward pass.

:func:`record_graph` runs the model once on example inputs with a forward pre-hook and post-hook
on every module and a :class:`~torch.overrides.TorchFunctionMode` that sees every torch function
call (``F.linear``, ``torch.cat``, ``x + y``, ``x.permute(...)``, ``x[..., 0]``, factory
functions…). Every tensor that flows is a :class:`Value`, followed by object identity from the
call that produced it to every call that reads it; an in-place call (``out += identity``,
``relu_``, ``x[i] = v``) makes a new value of the same tensor object. Module calls are spans
(:class:`Node` with ``kind="module"``) around the function calls made inside them, so the graph is
hierarchical: which module called what, in which order, with which shapes.

Why a recorded pass and not ``torch.fx`` or ``torch.export``: symbolic tracing gives up on the
models people bring (data-dependent control flow, ``Proxy`` item assignment in Hugging Face
models, timm's MobileViT), and ``torch.export`` fails on many of them too and renames modules.
A real pass follows whatever runs, keeps the module paths users know (the names of every other
table), and sees exactly the calls that the capture mechanism (:mod:`netxray.capture.core`)
observes, with the same call counting — so a site of the signature lens, a probe of the
modularity curve and an axis of the symmetry lens all name the same thing.

What the graph answers (used by probes, layouts, symmetry and pruning):

- module calls in order, their parents, depths, call indices (re-used modules), input and output
  values and shapes; the parameters each function call reads (by state-dict key);
- residual additions (:meth:`ModelGraph.residual_adds`), concatenations, reshapes and permutes;
- whether a value depends on the data batch (``Value.data_dependent``): activation calls on a
  parameter table (Swin V2's continuous position bias) do not;
- serial module calls (:meth:`ModelGraph.is_serial`): the call's output is the only value of the
  main data path alive at its end, so nothing bypasses it — the residual stream after a layer;
- the repeated blocks, the stem and the representation fed to the head
  (:meth:`ModelGraph.blocks`, :meth:`ModelGraph.stem`, :meth:`ModelGraph.pre_head`);
- each activation site's feature axis (:meth:`ModelGraph.activation_layouts`).

What it cannot follow is listed in ``ModelGraph.notes`` (never silently): tensors of unknown
origin (plain tensor attributes, tensors built outside torch functions), module outputs that no
recorded call produced (C++ extensions, code run with torch functions disabled), tensors hidden
inside non-tensor objects (a key/value cache object).

Example:
    >>> from torch import nn
    >>> class Res(nn.Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = nn.Linear(4, 4)
    ...     def forward(self, x):
    ...         return x + torch.relu(self.fc(x))
    >>> g = record_graph(nn.Sequential(Res(), Res(), nn.Linear(4, 2)), torch.randn(3, 4))
    >>> g.natural_probes(), len(g.residual_adds())
    (['0', '1'], 2)
"""

from __future__ import annotations

import bisect
from collections import OrderedDict
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from netxray._meta import eval_mode
from netxray.capture._graph_record import (  # noqa: F401  (re-exported: they lived here)
    _ADD,
    _CHANNEL_AXIS,
    _CONCAT,
    _CONTAINERS,
    _ELEMENTWISE,
    _LAST_AXIS,
    _PASSTHROUGH,
    _RESHAPE,
    Node,
    ResidualAdd,
    SiteLayout,
    Value,
    _canon,
    _func_name,
    _has_hidden_tensors,
    _Recorder,
    _small_args,
    _tensors,
    unwrap_model,
    unwrap_model_with_names,
)

__all__ = [
    "ModelGraph",
    "Node",
    "ResidualAdd",
    "SiteLayout",
    "Value",
    "record_graph",
    "unwrap_model",
]

# dict keys naming the main input of Hugging Face style models
_PRIMARY_KEYS = ("input_ids", "pixel_values", "inputs_embeds", "input_values", "input_features",
                 "x", "input")  # fmt: skip


class ModelGraph:
    """The recorded structure of one forward pass (see the module docstring).

    Attributes: ``nodes`` (list of :class:`Node`, ids are positions), ``values`` (list of
    :class:`Value`), ``inputs`` (value ids of the model inputs), ``outputs`` (value ids of the
    model's output tensors), ``notes`` (what could not be followed, and why), ``model_type``.
    """

    def __init__(self, rec: _Recorder, inputs: list[int], outputs: list[int], model: nn.Module):
        self.nodes = rec.nodes
        self.values = rec.values
        self.inputs = inputs
        self.outputs = outputs
        self.model_type = type(model).__name__
        self.notes: list[str] = list(dict.fromkeys(rec.notes))
        if rec.unknown:
            shown = ", ".join(u for u in rec.unknown if u)
            self.notes.append(
                f"{len(rec.unknown)} tensor(s) of unknown origin (plain tensor attributes or "
                f"tensors made outside torch functions) were read as constants: {shown}"
            )
        if rec.hidden:
            shown = ", ".join(dict.fromkeys(rec.hidden).keys())
            self.notes.append(
                "tensors passed inside non-tensor objects (e.g. a key/value cache) are not "
                f"followed through: {shown[:300]}"
            )
        self._params = {key for key, _ in model.named_parameters(remove_duplicate=False)}
        self._param_module = {}
        for path, m in model.named_modules():
            for n, _ in list(m.named_parameters(recurse=False)) + list(m.named_buffers(recurse=False)):
                self._param_module[f"{path}.{n}" if path else n] = path
        self._live_cache: dict[int, bool] | None = None
        self._tapped_cache: dict[int, bool] | None = None
        self._blocks: list[Node] | None = None
        self._param_seqs: list[int] | None = None
        self._adds_cache: list[ResidualAdd] | None = None

    # ---- basic queries -------------------------------------------------------------------
    def module_calls(self, path: str | None = None) -> list[Node]:
        """Module calls in call order (all, or those of the module at ``path``)."""
        return [n for n in self.nodes if n.kind == "module" and (path is None or n.name == path)]

    def ops(self, name: str | None = None) -> list[Node]:
        """Function calls in call order (all, or those with canonical name ``name``)."""
        return [n for n in self.nodes if n.kind == "op" and (name is None or n.name == name)]

    def producer(self, value: int) -> Node:
        """The node that wrote ``value``."""
        return self.nodes[self.values[value].producer]

    def consumers(self, value: int) -> list[Node]:
        """The function calls that read ``value``."""
        return [self.nodes[i] for i in self.values[value].consumers]

    def inside(self, call: Node) -> list[Node]:
        """The calls made during module call ``call`` (function and module calls)."""
        return [n for n in self.nodes if n.kind in ("op", "module") and call.start < n.start
                and n.end < call.end + (1 if n.kind == "op" else 0) and n.id != call.id]  # fmt: skip

    def contains(self, outer: Node, inner: Node) -> bool:
        """True when module call ``inner`` ran inside module call ``outer``."""
        return outer.start < inner.start and inner.end < outer.end

    def main_output(self, call: Node) -> int | None:
        """The first main-path value a module call returned (its 'output'), else its first."""
        for v in call.outputs:
            if self.values[v].primary:
                return v
        return call.outputs[0] if call.outputs else None

    def main_input(self, call: Node) -> int | None:
        """The first main-path value a call read (its 'input'), else its first input."""
        for v in call.inputs:
            if self.values[v].primary:
                return v
        return call.inputs[0] if call.inputs else None

    def reused_modules(self) -> dict[str, int]:
        """Modules called more than once in the pass: path → number of calls."""
        counts: dict[str, int] = {}
        for n in self.module_calls():
            counts[n.name] = counts.get(n.name, 0) + 1
        return {p: c for p, c in counts.items() if c > 1}

    def feeds(self, call: Node) -> list[Node]:
        """Module calls (outside ``call``) that read a value ``call`` returned, in call order."""
        outs = set(call.outputs)
        found = []
        for n in self.module_calls():
            if n.start > call.end and outs & set(n.inputs):
                found.append(n)
        return found

    def fed_by(self, call: Node) -> list[Node]:
        """Module calls that returned a value ``call`` reads (the latest returner of each)."""
        found: dict[int, Node] = {}
        for v in call.inputs:
            for m in self.values[v].returned_by:
                node = self.nodes[m]
                if node.end < call.start and not self.contains(node, call):
                    found[node.id] = node
        return sorted(found.values(), key=lambda n: n.start)

    def concats(self) -> list[Node]:
        """Concatenations of data-dependent values (DenseNet, Inception, U-Net skips)."""
        return [n for n in self.ops() if n.name in _CONCAT and len(n.inputs) >= 2
                and sum(self.values[v].data_dependent for v in n.inputs) >= 2]  # fmt: skip

    def reshapes(self) -> list[Node]:
        """Reshapes, views and permutes of data-dependent values (window / token layouts)."""
        return [n for n in self.ops() if n.name in _RESHAPE and n.inputs
                and self.values[n.inputs[0]].data_dependent]  # fmt: skip

    def param_module(self, key: str) -> str | None:
        """The module path that owns parameter/buffer ``key``."""
        return self._param_module.get(key)

    # ---- residual structure -------------------------------------------------------------
    def _ancestors(self, value: int) -> set[int]:
        seen = {value}
        todo = [value]
        while todo:
            v = todo.pop()
            for u in self.nodes[self.values[v].producer].inputs:
                if u not in seen and self.values[u].data_dependent:
                    seen.add(u)
                    todo.append(u)
        return seen

    def _distance(self, start: int, target: int) -> int:
        """Number of calls on the shortest backward path from ``start`` to ``target``."""
        frontier, seen, steps = {start}, {start}, 0
        while frontier and steps < 10_000:
            if target in frontier:
                return steps
            nxt = set()
            for v in frontier:
                for u in self.nodes[self.values[v].producer].inputs:
                    if u not in seen and self.values[u].data_dependent:
                        seen.add(u)
                        nxt.add(u)
            frontier, steps = nxt, steps + 1
        return 10**9

    def residual_adds(self) -> list[ResidualAdd]:
        """Additions of two same-shape data-dependent values computed from a common value.

        ``fork`` is the latest common ancestor (largest value id: values are numbered in call
        order), ``skip`` the operand with the shorter path back to it.
        """
        found = []
        for n in self.ops():
            if n.name not in _ADD or len(n.inputs) < 2:
                continue
            a, b = n.inputs[0], n.inputs[1]
            va, vb = self.values[a], self.values[b]
            if not (va.data_dependent and vb.data_dependent) or va.shape != vb.shape or a == b:
                continue
            common = self._ancestors(a) & self._ancestors(b)
            if not common:
                continue
            fork = max(common)
            da, db = self._distance(a, fork), self._distance(b, fork)
            skip, branch = (a, b) if da <= db else (b, a)
            found.append(ResidualAdd(n.id, fork, skip, branch, n.module_path))
        return found

    def _residual_around(self, call: Node) -> bool:
        """True when ``call`` holds a residual addition whose shortcut starts at its own input."""
        if self._param_ops(call) < 1:
            return False
        vin = self.main_input(call)
        if vin is None:
            return False
        if self._adds_cache is None:
            self._adds_cache = self.residual_adds()
        return any(call.start < self.nodes[r.node].start < call.end and vin in (r.fork, r.skip)
                   for r in self._adds_cache)  # fmt: skip

    def _serial_map(self, taps: bool = False) -> dict[int, bool]:
        """Module call id → its main output is the only main-path value alive at its end.

        ``taps=True``: values kept for later by the model — returned by a module call that was
        serial itself, read again further on, last by something other than the residual addition
        it is the shortcut of (a
        segmentation head's low-level features, an encoder's output read by every decoder
        layer's cross-attention) — do not count as alive beside a call.
        """
        if taps:
            if self._tapped_cache is None:
                strict = self._serial_map()
                if self._adds_cache is None:
                    self._adds_cache = self.residual_adds()
                # a shortcut whose last reader is its residual addition is no kept value
                shortcut = {(v, r.node) for r in self._adds_cache for v in (r.fork, r.skip)}

                def last_reader(v: int) -> int | None:
                    cons = self.values[v].consumers
                    return max(cons, key=lambda c: self.nodes[c].start) if cons else None

                kept = {v for n in self.module_calls() if n.name and strict.get(n.id)
                        for v in n.outputs if (v, last_reader(v)) not in shortcut}  # fmt: skip
                self._tapped_cache = self._live_map(exclude=kept)
            return self._tapped_cache
        if self._live_cache is None:
            self._live_cache = self._live_map(exclude=set())
        return self._live_cache

    def _live_map(self, exclude: set[int]) -> dict[int, bool]:
        """Module call id → serial, ignoring the values ``exclude`` (see :meth:`_serial_map`)."""
        end = max((n.end for n in self.nodes), default=0) + 1
        last = {}
        for v in self.values:
            # integer / boolean values (token ids, lengths, masks) are indices beside the
            # representation, not a path around a layer: a classifier that looks up the last
            # non-padding token from input_ids must not make every layer non-serial
            if not v.primary or not _floating(v.dtype):
                continue
            lu = v.last_use
            if v.id in self.outputs:
                lu = end
            last[v.id] = lu
        events = sorted(self.module_calls(), key=lambda n: n.end)
        born = sorted((self.nodes[self.values[v].producer].start, v) for v in last)
        live: set[int] = set()
        result: dict[int, bool] = {}
        i = 0
        for call in events:
            while i < len(born) and born[i][0] < call.end:
                live.add(born[i][1])
                i += 1
            live = {v for v in live if last[v] > call.end}
            out = set(call.outputs)
            rest = {v for v in live if v in out or v not in exclude}
            result[call.id] = bool(rest) and rest <= out
        return result

    def _serial_op(self, node: Node) -> bool:
        """True when a function call's output is the only main-path value alive after it."""
        if not node.outputs:
            return False
        out = set(node.outputs)
        for v in self.values:
            if not v.primary or not _floating(v.dtype) or v.id in out:
                continue
            born = self.nodes[v.producer].start
            last = 10**12 if v.id in self.outputs else v.last_use
            if born <= node.start and last > node.end:
                return False
        return True

    def is_serial(self, call: Node) -> bool:
        """True when nothing on the main data path bypasses module call ``call``.

        At the end of ``call`` the only main-path values still to be read are values it
        returned: a layer of a chain, the residual stream after a transformer layer — not a
        branch of a residual block (the shortcut is alive beside it).
        """
        return self._serial_map().get(call.id, False)

    def _param_ops(self, call: Node) -> int:
        """Number of function calls inside ``call`` that read a parameter or buffer."""
        if self._param_seqs is None:
            self._param_seqs = sorted(n.start for n in self.nodes if n.kind == "op" and n.params)
        seqs = self._param_seqs
        return bisect.bisect_left(seqs, call.end) - bisect.bisect_right(seqs, call.start)

    # ---- blocks, stem, head --------------------------------------------------------------
    def blocks(self) -> list[Node]:
        """The repeated blocks: one module call per block, in call order.

        A block class is a module class (not a plain ``Sequential`` / ``ModuleList`` /
        ``ModuleDict``) called at least twice, whose every call is serial (:meth:`is_serial`)
        and composite (two or more calls inside read parameters) or residual (an addition inside
        it whose shortcut is its own input, around at least one call that reads parameters). The outermost calls of block
        classes are the blocks (a transformer layer, not its attention sublayer), unless a class
        is a stage holding two or more blocks of one class (then those blocks); serial,
        composite siblings of a block (a stride-2 stage transition, an Inception module of a
        class used once, a patch-merging layer) are blocks too.
        """
        if self._blocks is not None:
            return self._blocks
        self._blocks = self._find_blocks(self._serial_map())
        if not self._blocks:
            # no block is serial because the model keeps a layer's output for later (LRASPP's
            # low-level features, the encoder output every T5 decoder layer reads): the blocks
            # are those serial but for such kept values
            self._blocks = self._find_blocks(self._serial_map(taps=True))
        return self._blocks

    def _find_blocks(self, serial: dict[int, bool]) -> list[Node]:
        """The blocks (see :meth:`blocks`) under the serial map ``serial``."""
        calls = [n for n in self.module_calls() if n.name]
        by_class: dict[type | str, list[Node]] = OrderedDict()
        for n in calls:
            by_class.setdefault(n.op, []).append(n)

        def eligible(n: Node) -> bool:
            # composite, or a residual unit around a single layer (``x + f(linear(x))``): both
            # are a block; a lone Linear or activation called in a chain is neither
            return serial.get(n.id, False) and (self._param_ops(n) >= 2 or self._residual_around(n))

        classes = [op for op, group in by_class.items()
                   if op not in ("Sequential", "ModuleList", "ModuleDict") and len(group) >= 2
                   and all(eligible(n) for n in group)]  # fmt: skip
        # a stage (timm's ConvNeXtStage, SwinTransformerStage) holds a chain of two or more
        # blocks of one class: the blocks are the repeated unit, not the stage. A transformer
        # layer holds its sublayers once each: the layer stays the block.
        stages = set()
        for op in classes:
            for inner in classes:
                if inner != op and any(
                    sum(1 for m in by_class[inner] if self.contains(n, m)) >= 2 for n in by_class[op]
                ):
                    stages.add(op)
        chosen = [n for op in classes if op not in stages for n in by_class[op]]
        chosen = [n for n in chosen if not any(o is not n and self.contains(o, n) for o in chosen)]
        parents = {n.parent for n in chosen}
        # siblings between the first and the last block: transitions, not the stem or a head conv
        lo = min((n.start for n in chosen), default=0)
        hi = max((n.end for n in chosen), default=0)
        for n in calls:
            if not (lo < n.start and n.end < hi):
                continue
            if n.parent in parents and n not in chosen and n.op not in ("Sequential",) and eligible(n):
                if not any(self.contains(o, n) or self.contains(n, o) for o in chosen):
                    chosen.append(n)
        return sorted(chosen, key=lambda n: n.start)

    def _returning_module(self, value: int, *, exclude: Node | None, after: int, before: int,
                          outermost: bool = True) -> Node | None:  # fmt: skip
        """The module call that returned ``value`` (walking back through pass-through calls)."""
        for _ in range(12):
            cands = [self.nodes[m] for m in self.values[value].returned_by]
            cands = [c for c in cands if c.name and after <= c.start and c.end <= before
                     and (exclude is None or not self.contains(c, exclude))]  # fmt: skip
            if cands:
                return min(cands, key=lambda c: c.depth) if outermost else max(cands, key=lambda c: c.depth)
            prod = self.producer(value)
            if prod.kind != "op" or (prod.name not in _PASSTHROUGH and prod.site is None):
                return None
            main = [v for v in prod.inputs if self.values[v].primary]
            if not main:
                return None
            value = main[0]
        return None

    def stem(self) -> Node | None:
        """The module call whose output enters the first block (embeddings, a conv stem)."""
        blocks = self.blocks()
        if not blocks:
            return None
        first = blocks[0]
        v = self.main_input(first)
        if v is None:
            return None
        return self._returning_module(v, exclude=first, after=0, before=first.start)

    def head(self) -> Node | None:
        """The module call after the last block that produced the model's main output."""
        out = next((v for v in self.outputs if self.values[v].primary), None)
        if out is None:
            return None
        after = self.blocks()[-1].end if self.blocks() else 0
        # through pass-through calls: a sequence classifier picks the last token's logits
        head = self._returning_module(out, exclude=None, after=after + 1, before=10**12)
        if head is None:
            return None
        out = self.main_output(head)
        vin = self.main_input(head)
        if vin is not None and self.values[vin].shape == self.values[out].shape:
            return None  # a final norm of a model without a head: the output is the representation
        return head

    def _final(self) -> Node | None:
        """The shape-preserving call that made the main output of a head-less model."""
        out = next((v for v in self.outputs if self.values[v].primary), None)
        if out is None or self.head() is not None:
            return None
        after = self.blocks()[-1].end if self.blocks() else 0
        cands = [self.nodes[m] for m in self.values[out].returned_by]
        cands = [c for c in cands if c.name and c.start > after]
        return max(cands, key=lambda c: c.depth) if cands else None

    def pre_head(self) -> Node | None:
        """The module call whose output is the representation fed to the head."""
        head = self.head()
        blocks = self.blocks()
        after = blocks[-1].end if blocks else 0
        if head is None:
            return self._final()
        last = blocks[-1] if blocks else None
        # the main input first; a head that reads several values (LRASPP's low- and high-level
        # features) is fed the representation by the one made after the last block
        ins = [self.main_input(head)] + [v for v in head.inputs if self.values[v].primary]
        for v in dict.fromkeys(v for v in ins if v is not None):
            found = self._returning_module(v, exclude=last, after=after, before=head.start) \
                or (last if last is not None and v in last.outputs else None)
            if found is not None:
                return found
        return None

    def natural_probes(self) -> list[str]:
        """Module paths whose outputs are the natural probe layers, in forward order.

        The stem, every block (:meth:`blocks`) and the module whose output is fed to the head
        (:meth:`pre_head`), each once. A model without repeated blocks (a plain MLP or VGG) is
        probed at its serial activation calls: modules, and functional calls made directly in a
        module (``"<path>:<op>"``, e.g. ``":F.relu"`` for ``F.relu`` in the root's forward; one
        name covers every such call of that module). With fewer than two of those (a model with
        several inputs, each read by its own layer), the outermost modules that read parameters
        and feed the output (the head excluded) are probed too; without any activation call, the
        serial modules that read parameters. Empty when none of these exist.
        """
        paths: list[str] = []
        blocks = self.blocks()
        if blocks:
            stem, pre = self.stem(), self.pre_head()
            chosen = ([stem] if stem is not None else []) + list(blocks) + ([pre] if pre is not None else [])
        else:
            # the last module that made the output (the classifier's final Linear) is no probe
            out = next((v for v in self.outputs if self.values[v].primary), None)
            makers = [self.nodes[m] for m in self.values[out].returned_by] if out is not None else []
            makers = [m for m in makers if m.name]
            last = max(makers, key=lambda c: c.depth) if makers else None
            serial = [n for n in self.module_calls() if n.name and self.is_serial(n) and n is not last]
            chosen = [n for n in serial if n.site is not None]
            chosen += self._functional_sites(last)
            if len(chosen) < 2:
                # too few points for a curve: the layers on the way to the output, each branch's
                # (a model with two inputs reads each with its own layer) — beside the activations
                before = len(chosen)
                chosen += self._feeding_layers(out, last)
                if before == 0 and len(chosen) < 2:
                    chosen = [n for n in serial if self._param_ops(n) >= 1 or n.params]
                chosen = [n for n in chosen if not any(o is not n and n.kind == "module"
                                                       and self.contains(n, o) for o in chosen)]  # fmt: skip
            chosen = sorted(chosen, key=lambda n: n.start)
        for n in chosen:
            name = self.probe_name(n)
            if name not in paths:
                paths.append(name)
        # forward order of first calls: a module called twice (T5's decoder dropout, after its
        # embeddings and after its last layer) is listed where the curve's first point of it is
        first: dict[str, int] = {}
        for n in self.nodes:
            if (n.kind == "module" and n.name) or (n.kind == "op" and n.site is not None):
                first.setdefault(self.probe_name(n), n.start)
        return sorted(paths, key=lambda p: first.get(p, 0))

    def probe_name(self, node: Node) -> str:
        """A probe's name: a module call's path, or ``"<path>:<op>"`` for a functional call."""
        if node.kind == "op" and node.site is not None:
            return f"{node.module_path}:{node.site[2]}"
        return node.name

    def _functional_sites(self, last: Node | None) -> list[Node]:
        """Serial functional activation calls on the main path, outside the output's maker."""
        found = []
        for n in self.ops():
            if n.site is None or not n.inputs or not self.values[n.inputs[0]].data_dependent:
                continue
            if last is not None and last.start < n.start < last.end:
                continue
            owner = self.nodes[n.parent] if n.parent is not None else None
            if owner is not None and owner.name and not self.is_serial(owner):
                continue  # inside a branch (an expert that sees some of the samples): no curve point
            if self._serial_op(n):
                found.append(n)
        return found

    def _feeding_layers(self, out: int | None, last: Node | None) -> list[Node]:
        """Outermost module calls that read parameters, run on every sample and feed the output."""
        if out is None:
            return []
        feeding = self._ancestors(out)
        batch = {self.values[v].shape[0] for v in self.inputs if self.values[v].shape}
        found = []
        for n in self.module_calls():
            if not n.name or n is last or (last is not None and self.contains(last, n)):
                continue
            if not (self._param_ops(n) >= 1 or n.params) or n.op in ("Sequential", "ModuleList", "ModuleDict"):
                continue
            v = self.main_output(n)
            if v is None or v not in feeding or not self.values[v].shape or self.values[v].shape[0] not in batch:
                continue
            found.append(n)
        return [n for n in found if not any(o is not n and self.contains(o, n) for o in found)]

    # ---- layouts ---------------------------------------------------------------------------
    def _axis_from(self, value: int, forward: bool, depth: int = 0) -> tuple[int | None, str]:
        """The feature axis of ``value`` (non-negative), read from the calls around it."""
        ndim = len(self.values[value].shape)
        if depth > 6 or ndim < 2:
            return (1 if ndim == 2 else None), "2-D"
        nodes = self.consumers(value) if forward else [self.producer(value)]
        for n in nodes:
            if n.kind != "op":
                continue
            if n.name in _CHANNEL_AXIS:
                return 1, n.name
            if n.name in ("linear", "layer_norm", "rms_norm"):
                return ndim - 1, n.name
            if n.name in ("matmul", "mm", "bmm", "addmm") and n.params:
                return ndim - 1, n.name
            if n.name in ("permute", "transpose", "swapaxes", "movedim"):
                nxt = n.outputs[0] if forward else (n.inputs[0] if n.inputs else None)
                if nxt is None:
                    continue
                axis, why = self._axis_from(nxt, forward, depth + 1)
                if axis is None:
                    continue
                perm = _perm(n, len(self.values[nxt].shape) if forward else ndim)
                if perm is None:
                    continue
                # forward: out[..., i, ...] = in[..., perm[i], ...] → in axis = perm[out axis]
                return (perm[axis] if forward else perm.index(axis)), f"{why} via {n.name}"
            if n.name in _ELEMENTWISE and n.outputs:
                if forward:
                    nexts = [n.outputs[0]]
                else:
                    nexts = [u for u in n.inputs if self.values[u].data_dependent]
                for nxt in nexts:
                    if self.values[nxt].shape != self.values[value].shape:
                        continue
                    axis, why = self._axis_from(nxt, forward, depth + 1)
                    if axis is not None:
                        return axis, why
        return None, ""

    def layout_of(self, value: int) -> tuple[int | None, str]:
        """Feature axis of a value: from what reads it, else from what wrote it."""
        axis, why = self._axis_from(value, forward=True)
        if axis is None:
            axis, why = self._axis_from(value, forward=False)
        return axis, why

    def activation_layouts(self) -> dict[tuple, SiteLayout]:
        """Capture site key → :class:`SiteLayout` for every activation call of the pass."""
        layouts: dict[tuple, SiteLayout] = {}
        for n in self.nodes:
            if n.site is None:
                continue
            out = n.outputs[0] if n.outputs else None
            inp = n.inputs[0] if n.inputs else None
            if out is None:
                continue
            axis, why = self.layout_of(out)
            if axis is None and inp is not None:
                axis, why = self._axis_from(inp, forward=False)
            dd = self.values[inp].data_dependent if inp is not None else self.values[out].data_dependent
            layouts[n.site] = SiteLayout(axis, len(self.values[out].shape), why, dd)
        return layouts

    # ---- summaries -----------------------------------------------------------------------
    def summary(self):
        """A pandas table of the module calls: path, class, call index, depth, shapes, serial."""
        import pandas as pd

        rows = []
        blocks = {b.id for b in self.blocks()}
        for n in self.module_calls():
            vin, vout = self.main_input(n), self.main_output(n)
            rows.append({
                "module": n.name or "(root)", "type": n.op, "call_index": n.call_index,
                "depth": n.depth,
                "input_shape": self.values[vin].shape if vin is not None else None,
                "output_shape": self.values[vout].shape if vout is not None else None,
                "serial": self.is_serial(n), "block": n.id in blocks,
            })  # fmt: skip
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return (f"ModelGraph({self.model_type}: {len(self.module_calls())} module calls, "
                f"{len(self.ops())} function calls, {len(self.blocks())} blocks, "
                f"{len(self.notes)} notes)")  # fmt: skip


def _floating(dtype: str) -> bool:
    return dtype.startswith(("float", "bfloat", "complex"))


def _perm(node: Node, ndim: int) -> list[int] | None:
    """The permutation a permute/transpose call applied (out axis i = in axis perm[i])."""
    args = list(node.args.get("args", []))
    for k in ("dims",):
        if k in node.args:
            args = list(node.args[k])
    try:
        if node.name == "permute":
            perm = [int(a) % ndim for a in args]
            return perm if sorted(perm) == list(range(ndim)) else None
        if node.name in ("transpose", "swapaxes") and len(args) >= 2:
            i, j = int(args[0]) % ndim, int(args[1]) % ndim
            perm = list(range(ndim))
            perm[i], perm[j] = perm[j], perm[i]
            return perm
    except (TypeError, ValueError):
        return None
    return None


def _primary_positions(example: Any) -> tuple[tuple, dict, list[torch.Tensor], list[str]]:
    """Split example inputs into (args, kwargs, input tensors, their names); primary first."""
    if isinstance(example, Mapping):
        kwargs = dict(example)
        names = list(kwargs)
        primary = next((k for k in _PRIMARY_KEYS if isinstance(kwargs.get(k), torch.Tensor)), None)
        if primary is None:
            primary = next((k for k in names if isinstance(kwargs[k], torch.Tensor)), None)
        order = ([primary] if primary else []) + [k for k in names if k != primary]
        tensors = [kwargs[k] for k in order if isinstance(kwargs[k], torch.Tensor)]
        tnames = [k for k in order if isinstance(kwargs[k], torch.Tensor)]
        return (), kwargs, tensors, tnames
    if isinstance(example, torch.Tensor):
        return (example,), {}, [example], ["input"]
    if isinstance(example, (tuple, list)):
        tensors = [t for t in example if isinstance(t, torch.Tensor)]
        return tuple(example), {}, tensors, [f"input{i}" for i in range(len(tensors))]
    raise TypeError(
        "example_inputs must be a tensor, a tuple of positional arguments or a dict of keyword "
        f"arguments, got {type(example).__name__}"
    )


def record_graph(model: nn.Module, example_inputs: Any) -> ModelGraph:
    """Record the structure of ``model`` from one forward pass on ``example_inputs``.

    Args:
        model: any ``nn.Module`` (``DataParallel`` / ``torch.compile`` wrappers are unwrapped).
            Run in eval mode without gradients; every module's train/eval flag is restored and
            every hook removed afterwards, and no weight is touched.
        example_inputs: a tensor (``model(x)``), a tuple (``model(*args)``) or a dict of keyword
            arguments (``model(**inputs)``, Hugging Face style). Two samples are plenty.

    Returns:
        :class:`ModelGraph`.

    Raises:
        ValueError: the model cannot run on ``example_inputs`` (the error says why).

    Example:
        >>> g = record_graph(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)),
        ...                  torch.zeros(2, 3))
        >>> [(n.name, n.op) for n in g.module_calls()][1:]
        [('0', 'Linear'), ('1', 'ReLU'), ('2', 'Linear')]
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    model = unwrap_model(model)
    args, kwargs, tensors, names = _primary_positions(example_inputs)
    rec = _Recorder(model)
    inputs: list[int] = []
    for i, (t, name) in enumerate(zip(tensors, names, strict=True)):
        node = rec._new_node(kind="input", name=name, op="input")
        vid = rec._new_value(t, node.id, dd=True, primary=(i == 0))
        node.outputs.append(vid)
        inputs.append(vid)
    handles = []
    try:
        for path, module in model.named_modules():
            handles.append(module.register_forward_pre_hook(rec.pre_hook(path, module), with_kwargs=True))
            handles.append(module.register_forward_hook(rec.post_hook(path, module), with_kwargs=True,
                                                        always_call=True))  # fmt: skip
        with eval_mode(model), torch.no_grad(), rec:
            try:
                out = model(*args, **kwargs)
            except Exception as exc:
                raise ValueError(
                    f"record_graph: {type(model).__name__} cannot run on the example inputs: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
    finally:
        for h in handles:
            h.remove()
    outputs = [rec.tensor_value[id(t)] if id(t) in rec.tensor_value else rec.value_of(t)
               for t in _tensors(out)]  # fmt: skip
    graph = ModelGraph(rec, inputs, outputs, model)
    rec.keep.clear()
    rec.tensor_value.clear()
    return graph
