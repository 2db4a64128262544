"""Pruning guided by the modularity curve (SPEC §2.2), with the controls that make it honest.

Lu et al. (ECCV 2022) prune the layers where the modularity curve plateaus or degrades, fine-tune,
and report almost no accuracy loss. That claim only means something next to controls, so
:func:`prune_study` prunes, fine-tunes and measures, all the same way:

- ``original``: the model as given (no pruning, no fine-tuning);
- ``finetuned``: no pruning, fine-tuned like the others, when anything is pruned (separates the effect of extra training
  from the effect of removing layers);
- ``modularity``: the redundant layers (:func:`netxray.redundant_layers`) that can be removed;
- ``random#s``: the same number of removable layers drawn at random (seeded, several draws);
- ``non_redundant``: the same number of removable layers where Q still rises (largest ΔQ first),
  when there are enough of them.

Which layers can be removed without breaking shapes. Built-in models: a residual block whose
shortcut is the identity becomes the identity; a conv block whose input and output shapes agree
(same channels, stride 1, padding 1) is dropped; a transformer block is dropped; an MLP hidden
layer whose input and output widths agree is dropped. Removed layers are recorded in
``netxray_config["removed"]`` so a saved pruned model loads back with ``netxray.load``.

Any other model (torchvision, timm, Hugging Face, your own), read from its graph recorded on one
batch (:mod:`netxray.capture.graph`): a module whose every call has the same input and output
shape and holds a residual addition whose shortcut is its own input (a residual block, a
transformer layer, an inverted residual, a ConvNeXt/Swin block) becomes a :class:`SkipBlock`,
which returns that input in the block's output structure — exactly what the shortcut carries.
Everything else is listed with the reason; when no layer can go, the study says so and neither
prunes nor fine-tunes.

Cost: parameters, and MACs per sample counted with forward hooks — convolutions
(out elements × C_in/groups × kernel size), linear layers (out elements × in features), and the
two attention matmuls of built-in ViT blocks (2·T²·dim). Normalization, activations, pooling and
additions are not counted (the usual convention).
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from netxray._meta import eval_mode, metadata, model_hash
from netxray.models._removed import SkipBlock  # re-exported: it lived here

__all__ = [
    "PruneStudy",
    "SkipBlock",
    "count_macs",
    "count_params",
    "prune_layers",
    "prune_study",
    "removable_layers",
]


# --------------------------------------------------------------------------- what can go


def _graph_reason(graph: Any, model: nn.Module, path: str) -> str | None:
    """Removability of any model's layer, read from its graph (see the module docstring)."""
    if ":" in path:  # a "<path>:<op>" probe (natural_probes of a model without blocks)
        return "a functional activation call, not a module: there is no layer to replace"
    module = dict(model.named_modules()).get(path)
    if module is None:
        return f"no module {path!r} in {type(model).__name__}"
    if isinstance(module, (nn.Identity, SkipBlock)):
        return "already removed"
    calls = graph.module_calls(path)
    if not calls:
        return "it was not called in the forward pass"
    adds = graph.residual_adds()
    for call in calls:
        vin, vout = graph.main_input(call), graph.main_output(call)
        if vin is None or vout is None:
            return "it has no tensor input or output"
        a, b = graph.values[vin].shape[1:], graph.values[vout].shape[1:]
        if a != b:
            return f"its input and output shapes differ ({tuple(a)} → {tuple(b)})"
        inside = [r for r in adds if call.start < graph.nodes[r.node].start < call.end]
        if not any(vin in (r.fork, r.skip) for r in inside):
            return ("no residual path from its input to its output (as the identity it would "
                    "drop the whole computation, not a refinement of it)")  # fmt: skip
    return None


def _graph_of(model: nn.Module, example_inputs: Any):
    from netxray.capture.graph import record_graph

    if example_inputs is None:
        raise ValueError(
            f"{type(model).__name__} is not a built-in netxray model: pass example_inputs (a "
            "batch of its inputs) so the removable blocks can be read from its graph"
        )
    return record_graph(model, example_inputs)


def _builtin(model: nn.Module) -> bool:
    return isinstance(getattr(model, "netxray_config", None), dict)


def _reason(model: nn.Module, path: str) -> str | None:
    """None when the layer at ``path`` can be removed; otherwise why not."""
    from netxray.models import CNN, MLP, BasicBlock, Block, ConvBlock, ResNet, ViT

    module = dict(model.named_modules()).get(path)
    if module is None:
        return f"no module {path!r} in {type(model).__name__}"
    if isinstance(module, nn.Identity):
        return "already removed"
    if isinstance(model, ResNet):
        if path == "stem":
            return "the stem maps the input channels to the first stage's width"
        if isinstance(module, BasicBlock):
            if isinstance(module.shortcut, nn.Identity):
                return None
            return "its shortcut is a projection (the block changes channels or resolution)"
    if isinstance(model, CNN) and isinstance(module, ConvBlock):
        conv = module.conv
        if conv.in_channels != conv.out_channels:
            return f"it changes the channels ({conv.in_channels} → {conv.out_channels})"
        if any(s != 1 for s in conv.stride):
            return "it changes the resolution (stride > 1)"
        return None  # 3×3 conv, padding 1, stride 1: same shape in and out
    if isinstance(model, ViT) and isinstance(module, Block):
        return None  # residual block on the token stream: (B, T, D) in and out
    if isinstance(model, MLP) and path.startswith("hidden."):
        lin = module.linear
        if lin.in_features != lin.out_features:
            return f"it changes the width ({lin.in_features} → {lin.out_features})"
        return None
    return f"{type(module).__name__} in a {type(model).__name__} is not a removable block"


def removable_layers(
    model: nn.Module, layers: list[str] | None = None, example_inputs: Any = None
) -> pd.DataFrame:
    """Which probe layers can be removed, and why not for the others.

    Built-in models by their layouts; any other model from its graph recorded on
    ``example_inputs`` (required then): a module whose input and output shapes agree and that
    holds a residual addition with its own input as the shortcut can become the identity.
    Returns a DataFrame (layer, removable, reason), for ``layers`` or the natural probes.

    Example:
        >>> from netxray.models import build_model
        >>> m = build_model({"arch": "resnet", "input_shape": [1, 8, 8], "num_classes": 10,
        ...                  "width": 8, "depth": 2})
        >>> removable_layers(m).set_index("layer")["removable"].to_dict()["layer1.1"]
        True
    """
    from netxray.capture.graph import unwrap_model
    from netxray.capture.probes import natural_probes

    model = unwrap_model(model)
    graph = None if _builtin(model) else _graph_of(model, example_inputs)
    if layers is None:
        removed = set(getattr(model, "netxray_config", {}).get("removed", []))
        probes = natural_probes(model) if graph is None else graph.natural_probes()
        layers = [p for p in probes if p not in removed]
    rows = []
    for p in layers:
        why = _reason(model, p) if graph is None else _graph_reason(graph, model, p)
        rows.append({"layer": p, "removable": why is None, "reason": why or ""})
    return pd.DataFrame(rows, columns=["layer", "removable", "reason"])


def prune_layers(model: nn.Module, layers: list[str], example_inputs: Any = None) -> nn.Module:
    """A pruned deep copy of ``model``: each layer in ``layers`` becomes the identity.

    Built-in models: the layer becomes ``nn.Identity`` and the copy's
    ``netxray_config["removed"]`` lists every removed layer, so ``netxray.save_checkpoint`` /
    ``netxray.load`` round-trip it. Any other model (read from its graph on ``example_inputs``):
    the residual block becomes a :class:`SkipBlock`; ``netxray_removed`` lists the removed
    layers. The original is not modified. A layer that cannot be removed is a ``ValueError``
    that says why. A pruned model loaded from ``torchvision:``, ``timm:`` or ``hf:`` saves with
    ``netxray.save_checkpoint`` (its source + removed blocks + weights) and loads back with
    ``netxray.load``.

    Example:
        >>> import torch
        >>> from netxray.models import build_model
        >>> m = build_model({"arch": "vit", "input_shape": [1, 8, 8], "num_classes": 10,
        ...                  "dim": 16, "depth": 2, "num_heads": 2})
        >>> p = prune_layers(m, ["blocks.1"])
        >>> p.netxray_config["removed"], p(torch.zeros(1, 1, 8, 8)).shape
        (['blocks.1'], torch.Size([1, 10]))
    """
    from netxray.capture.graph import unwrap_model
    from netxray.models._removed import apply_removed

    model = unwrap_model(model)
    layers = list(layers)
    if len(set(layers)) != len(layers):
        raise ValueError(f"prune_layers: a layer is listed twice in {layers}")
    config = getattr(model, "netxray_config", None)
    if not isinstance(config, dict):
        graph = _graph_of(model, example_inputs)
        for p in layers:
            why = _graph_reason(graph, model, p)
            if why is not None:
                raise ValueError(f"prune_layers: cannot remove {p!r}: {why}")
        pruned = copy.deepcopy(model)
        for p in layers:
            out_type = graph.module_calls(p)[0].args.get("out_type", "tensor")
            parent_path, _, name = p.rpartition(".")
            parent = pruned.get_submodule(parent_path) if parent_path else pruned
            # setattr replaces the child in place for Sequential / ModuleList / ModuleDict too
            setattr(parent, name, SkipBlock(type(parent.get_submodule(name)).__name__, out_type))
        pruned.netxray_removed = list(getattr(model, "netxray_removed", [])) + layers
        return pruned
    for p in layers:
        why = _reason(model, p)
        if why is not None:
            raise ValueError(f"prune_layers: cannot remove {p!r}: {why}")
    pruned = copy.deepcopy(model)
    apply_removed(pruned, layers)
    cfg = copy.deepcopy(config)
    cfg["removed"] = list(cfg.get("removed", [])) + layers
    pruned.netxray_config = cfg
    for attr in ("netxray_checkpoint", "netxray_train_metrics"):
        if hasattr(pruned, attr):  # describes the unpruned model
            delattr(pruned, attr)
    return pruned


# --------------------------------------------------------------------------- cost


def count_params(model: nn.Module) -> int:
    """Number of parameters (shared tensors counted once)."""
    return sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())


def count_macs(model: nn.Module, example: torch.Tensor) -> int:
    """Multiply–accumulates per sample of one forward pass, counted with hooks.

    conv: (out elements) × C_in/groups × ∏kernel; linear: (out elements) × in_features;
    built-in ViT attention: 2·T²·dim (Q Kᵀ and A V). ``example``: one input batch (any size).

    Example:
        >>> count_macs(nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)), torch.zeros(5, 4))
        18
    """
    from netxray.models import Attention

    total = [0]
    batch = int(example.shape[0])

    def hook(module: nn.Module, args: tuple, out: Any) -> None:
        if not isinstance(out, torch.Tensor):
            return
        per_sample_out = out.numel() // max(batch, 1)
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            total[0] += per_sample_out * (module.in_channels // module.groups) * math.prod(
                module.kernel_size
            )
        elif isinstance(module, nn.Linear):
            total[0] += per_sample_out * module.in_features
        elif isinstance(module, Attention):
            t, dim = int(args[0].shape[1]), int(args[0].shape[2])
            total[0] += 2 * t * t * dim

    device = next((p.device for p in model.parameters()), None)
    if device is not None:
        example = example.to(device)
    handles = [m.register_forward_hook(hook) for m in model.modules()]
    try:
        with eval_mode(model), torch.no_grad():
            model(example)
    finally:
        for h in handles:
            h.remove()
    return int(total[0])


# --------------------------------------------------------------------------- the study


@dataclass
class PruneStudy:
    """Result of :func:`prune_study`.

    ``table``: one row per variant (original, finetuned, modularity, random#s, non_redundant);
    ``curve``: the modularity curve the decision was made on; ``redundant``: its ΔQ table;
    ``removable``: which layers can go and why not; ``curve_after``: the curve of the pruned,
    fine-tuned model; ``model``: that model (None when nothing was removable); ``summary``.
    """

    table: pd.DataFrame
    curve: pd.DataFrame
    redundant: pd.DataFrame
    removable: pd.DataFrame
    curve_after: pd.DataFrame | None
    model: nn.Module | None
    summary: dict[str, Any] = field(default_factory=dict)


def _evaluate(model: nn.Module, dataset) -> float:
    from netxray.training import evaluate

    return float(evaluate(model, dataset)[0])


def _finetune(model: nn.Module, splits, epochs: int, lr: float, seed: int) -> nn.Module:
    from netxray.training import train

    if epochs == 0:
        return copy.deepcopy(model).eval()
    result = train(model, splits, epochs=epochs, lr=lr, seed=seed, progress=False)
    tuned = result.model.eval()
    for attr in ("netxray_config", "netxray_removed"):
        if hasattr(model, attr):
            setattr(tuned, attr, copy.deepcopy(getattr(model, attr)))
    return tuned


def output_width(model: nn.Module, example: torch.Tensor) -> int | None:
    """The width of the model's output on ``example`` (its logits' last axis), None if unreadable."""
    from netxray._meta import eval_mode
    from netxray.capture.core import first_tensor
    from netxray.capture.inputs import _to_model, model_device, model_dtype

    try:
        with eval_mode(model), torch.no_grad():
            out = first_tensor(model(_to_model(example, model_device(model), model_dtype(model))))
    except Exception:  # the caller's own evaluation names the failure
        return None
    return int(out.shape[-1]) if isinstance(out, torch.Tensor) and out.ndim >= 2 else None


def _head_path(model: nn.Module, width: int) -> str | None:
    """The module path of the model's head: its last Linear with ``width`` outputs."""
    heads = [p for p, m in model.named_modules() if isinstance(m, nn.Linear) and m.out_features == width]
    return heads[-1] if heads else None


def _fit_new_head(model: nn.Module, splits: Any, head: str, classes: int, *, epochs: int, lr: float,
                  seed: int) -> nn.Module:  # fmt: skip
    """A copy of ``model`` whose Linear ``head`` is replaced by a fresh ``classes``-way Linear
    (seeded), fitted on the train split with every other parameter frozen (a linear probe, Adam at
    max(lr, 1e-2): a fresh head on fixed features needs a larger step than fine-tuning)."""
    from netxray.training import train

    new = copy.deepcopy(model)
    old = new.get_submodule(head)
    torch.manual_seed(seed)
    fresh = nn.Linear(old.in_features, classes, bias=old.bias is not None).to(old.weight.device, old.weight.dtype)
    parent, _, leaf = head.rpartition(".")
    setattr(new.get_submodule(parent) if parent else new, leaf, fresh)
    for name, p in new.named_parameters():
        p.requires_grad_(name.startswith(f"{head}."))
    fitted = train(new, splits, epochs=epochs, lr=max(lr, 1e-2), seed=seed, progress=False).model.eval()
    for p in fitted.parameters():  # the pruned variants are fine-tuned whole afterwards
        p.requires_grad_(True)
    for attr in ("netxray_config", "netxray_removed"):
        if hasattr(model, attr):
            setattr(fitted, attr, copy.deepcopy(getattr(model, attr)))
    if hasattr(fitted, "netxray_config") and isinstance(fitted.netxray_config, dict):
        fitted.netxray_config["num_classes"] = classes
    return fitted


def _pair_splits(data: Any) -> Any:
    """A ``(train, test)`` pair of labelled containers as in-memory DataSplits; anything else as is.

    ``(x, y)`` tensors are not a pair of splits: both parts must be containers of samples.
    """
    from netxray.capture.inputs import resolve_samples
    from netxray.data import Dataset, DataSplits

    if not (isinstance(data, tuple) and len(data) == 2) or all(
        isinstance(d, (torch.Tensor, np.ndarray)) for d in data
    ):
        return data
    parts = []
    for part, side in zip(data, ("train", "test"), strict=True):
        samples = resolve_samples(part, need_labels=f"prune_study ({side} data)")
        x, y = samples.take(np.arange(len(samples)))
        if isinstance(x, (dict, tuple)) and len(x) == 1:  # the model's one argument, by name
            x = next(iter(x.values())) if isinstance(x, dict) else x[0]
        if not isinstance(x, torch.Tensor):
            raise TypeError(
                f"prune_study: the {side} data gives {type(x).__name__} inputs; built-in models "
                "take one float tensor"
            )
        parts.append((x, y, samples.name))
    classes = 1 + int(max(int(p[1].max()) for p in parts))
    return DataSplits(*(Dataset(x, y, name, classes) for x, y, name in parts))


def prune_study(
    model: nn.Module,
    data: Any,
    *,
    curve: pd.DataFrame | None = None,
    tol: float | None = None,
    finetune_epochs: int = 3,
    lr: float = 1e-3,
    n: int = 500,
    k: int = 3,
    repeats: int = 5,
    seed: int = 0,
    random_draws: int = 3,
    curve_split: str = "train",
    new_head: bool = False,
    head_epochs: int = 10,
    out: str | Path | None = None,
    progress: bool = False,
) -> PruneStudy:
    """Prune the redundant removable layers, fine-tune, and compare with the controls.

    Args:
        model: a trained model (not modified): built-in, or any model whose removable blocks are
            read from its graph (see the module docstring).
        data: a ``DataSplits``, a ``load_data`` spec string, or a ``(train, test)`` pair of
            labelled samples in any container the lenses read (TensorDataset, DataLoader,
            ``(x, y)`` tensors or numpy arrays, dict batches…; held in memory, since fine-tuning
            iterates them): the curve is measured on ``curve_split`` ("train" by default, so the
            choice never looks at the test set), fine-tuning uses the train split, accuracies
            are on the test split.
        curve: a precomputed modularity curve (else computed with n, k, repeats, seed).
        tol: redundancy tolerance for :func:`netxray.redundant_layers` (default from the spread).
        finetune_epochs, lr: fine-tuning of every variant (Adam, cosine schedule, same seed).
        random_draws: how many random selections of the same number of layers.
        new_head: when the model's outputs are not the data's classes (a pretrained 1 000-way
            ImageNet head on a 2-class folder), replace its last Linear by a fresh head for the
            data's classes, fitted for ``head_epochs`` on the train split with the rest frozen,
            before anything is measured (the summary's ``new_head`` says what was done). Without
            it such a model is refused: its accuracy against these labels would mean nothing.
        out: directory; writes the pruned model's checkpoint, ``prune_table.csv``, the curves.

    Returns:
        :class:`PruneStudy` (``table`` has variant, removed, n_removed, params, params_pct, macs,
        macs_pct, acc_pruned, acc_finetuned, delta_acc, delta_vs_finetuned, status).
    """
    from netxray.data import load_data
    from netxray.lenses.modularity import modularity_curve, redundant_layers

    if out is not None:  # before any work: only files netxray provably wrote there are replaced
        from netxray._files import check_owned_files

        check_owned_files(Path(out), study_files())
    splits = load_data(data, seed=seed) if isinstance(data, str) else _pair_splits(data)
    if not (hasattr(splits, "train") and hasattr(splits, "test")):
        raise TypeError(
            "prune_study: data must be a DataSplits, a load_data spec or a (train, test) pair of "
            f"labelled data, got {type(data).__name__}"
        )
    from netxray.data.sources import in_memory

    splits = in_memory(splits, "prune_study (it fine-tunes)")
    if curve_split not in ("train", "test"):
        raise ValueError(f"curve_split must be 'train' or 'test', got {curve_split!r}")
    if isinstance(finetune_epochs, bool) or not isinstance(finetune_epochs, int) or finetune_epochs < 0:
        raise ValueError(f"finetune_epochs must be an integer >= 0, got {finetune_epochs!r}")
    from netxray.capture.graph import unwrap_model

    model = unwrap_model(model)
    curve_data = getattr(splits, curve_split)
    example = curve_data.x[:2]
    head_note = None
    width, classes = output_width(model, example), int(splits.num_classes)
    if width is not None and width != classes:
        head = _head_path(model, width)
        if not new_head or head is None:
            raise ValueError(
                f"prune_study: the model has {width} outputs but the data has {classes} classes, so "
                f"its accuracy against these labels means nothing (an argmax over {width} classes "
                f"against labels 0–{classes - 1}); "
                + (f"pass new_head=True (--new-head) to replace its head {head!r} by a {classes}-way "
                   "Linear fitted on the train split first" if head is not None else
                   "no Linear with that many outputs was found to replace: give data with the "
                   "model's classes")
            )  # fmt: skip
        model = _fit_new_head(model, splits, head, classes, epochs=int(head_epochs), lr=lr, seed=seed)
        head_note = (f"the model's head {head!r} ({width} outputs) was replaced by a {classes}-way "
                     f"Linear fitted for {head_epochs} epochs on the train split (the rest frozen, Adam "
                     f"at lr {max(lr, 1e-2):g}); "
                     "'original' is that model")  # fmt: skip
    elif new_head:
        head_note = f"no new head: the model's {width} outputs already match the data's {classes} classes"
    if curve is None:
        curve = modularity_curve(model, curve_data, n=n, k=k, repeats=repeats, seed=seed,
                                 progress=progress)  # fmt: skip
    red = redundant_layers(curve, tol=tol)
    rem = removable_layers(model, list(curve["layer"]), example)
    info = red.merge(rem, on="layer", how="left")
    info["removable"] = info["removable"].fillna(False).astype(bool)
    candidates = list(info.loc[info["redundant"] & info["removable"], "layer"])
    blocked = info.loc[info["redundant"] & ~info["removable"], ["layer", "reason"]]
    m = len(candidates)
    removable_all = list(info.loc[info["removable"], "layer"])
    rising = info.loc[info["removable"] & ~info["redundant"] & (info["kind"] == "rise")]
    rising = list(rising.sort_values("dq", ascending=False)["layer"])

    base_params, base_macs = count_params(model), count_macs(model, example)
    acc_original = _evaluate(model, splits.test)
    rows: list[dict[str, Any]] = []

    def add(variant: str, removed: list[str], status: str = "ok") -> nn.Module | None:
        row: dict[str, Any] = {"variant": variant, "removed": ";".join(removed),
                               "n_removed": len(removed), "status": status}  # fmt: skip
        tuned = None
        if status == "ok":
            if removed:
                pruned = prune_layers(model, removed, example)
                row["params"] = count_params(pruned)
                row["macs"] = count_macs(pruned, example)
                row["acc_pruned"] = _evaluate(pruned, splits.test)
            else:  # the unpruned model: its cost and accuracy are the ones measured above
                pruned = copy.deepcopy(model)
                row.update(params=base_params, macs=base_macs, acc_pruned=acc_original)
            if variant == "original":
                row["acc_finetuned"] = float("nan")
            else:
                tuned = _finetune(pruned, splits, finetune_epochs, lr, seed)
                row["acc_finetuned"] = _evaluate(tuned, splits.test)
        rows.append(row)
        return tuned

    add("original", [])
    # the fine-tuned unpruned model is the control of a pruning; with nothing to prune there is
    # nothing to compare it with, so no fine-tuning is run (and none is claimed)
    add("finetuned", [], status="ok" if m else "skipped: nothing was pruned, so no fine-tuning")
    pruned_model = None
    if m:
        pruned_model = add("modularity", candidates)
        rng = np.random.default_rng(seed)
        drawn: set[tuple[int, ...]] = set()
        n_combos = math.comb(len(removable_all), m)
        for s in range(int(random_draws)):
            # distinct draws while there are unseen combinations (few removable layers repeat)
            while True:
                pick = tuple(sorted(rng.choice(len(removable_all), size=m, replace=False).tolist()))
                if pick not in drawn or len(drawn) >= n_combos:
                    break
            drawn.add(pick)
            add(f"random#{s}", [removable_all[i] for i in pick])
        if len(rising) >= m:
            add("non_redundant", rising[:m])
        else:
            add("non_redundant", [], status=(
                f"not possible: {len(rising)} removable layer(s) where Q rises, {m} needed"))  # fmt: skip
    table = pd.DataFrame(rows)
    for col in ("params", "macs", "acc_pruned", "acc_finetuned"):
        if col not in table:
            table[col] = np.nan
    table["params_pct"] = 100.0 * table["params"] / base_params
    table["macs_pct"] = 100.0 * table["macs"] / base_macs
    table["delta_acc"] = table["acc_finetuned"] - acc_original
    ft = table.loc[table["variant"] == "finetuned", "acc_finetuned"]
    table["delta_vs_finetuned"] = table["acc_finetuned"] - (float(ft.iloc[0]) if len(ft) else np.nan)
    cols = ["variant", "removed", "n_removed", "params", "params_pct", "macs", "macs_pct",
            "acc_pruned", "acc_finetuned", "delta_acc", "delta_vs_finetuned", "status"]  # fmt: skip
    table = table[cols]

    curve_after = None
    if pruned_model is not None:
        curve_after = modularity_curve(pruned_model, curve_data, n=n, k=k, repeats=repeats,
                                       seed=seed, progress=progress)  # fmt: skip
    rand = table[table["variant"].str.startswith("random#")]["acc_finetuned"]
    mod = table.loc[table["variant"] == "modularity", "acc_finetuned"]
    summary = {
        "n_redundant": int(info["redundant"].sum()),
        "n_removed": m,
        "removed": candidates,
        "redundant_not_removable": [f"{r.layer}: {r.reason}" for r in blocked.itertuples()],
        "acc_original": acc_original,
        "acc_modularity": float(mod.iloc[0]) if len(mod) else None,
        "acc_random_mean": float(rand.mean()) if len(rand) else None,
        "acc_random_std": float(rand.std(ddof=1)) if len(rand) > 1 else None,
        "n_removable": len(removable_all),
        "note": None if m else _nothing_note(info, removable_all),
        "new_head": head_note,
    }
    meta = metadata(
        lens="prune_study", seed=seed, n=n, k=k, repeats=repeats, tol=tol,
        finetune_epochs=finetune_epochs, lr=lr, random_draws=random_draws,
        curve_split=curve_split, data=getattr(curve_data, "name", None), new_head=head_note,
        model_hash=model_hash(model), model=type(model).__name__,
        base_params=base_params, base_macs=base_macs,
    )  # fmt: skip
    table.attrs["meta"] = meta
    table.attrs["summary"] = summary
    study = PruneStudy(table, curve, red, rem, curve_after, pruned_model, summary)
    if out is not None:
        _write_study(study, Path(out))
    return study


def _nothing_note(info: pd.DataFrame, removable_all: list[str]) -> str:
    """Why nothing was pruned, said plainly (and why nothing was fine-tuned either)."""
    if not removable_all:
        reasons = sorted({str(r) for r in info["reason"].dropna() if str(r)})
        return ("no probed layer of this model can be removed ("
                + "; ".join(reasons[:3]) + "): nothing was pruned or fine-tuned")  # fmt: skip
    return ("no redundant layer can be removed (the removable ones still raise Q): nothing was "
            "pruned or fine-tuned")  # fmt: skip


def study_files() -> list[str]:
    """The files (relative paths) :func:`prune_study` may write into its ``out`` directory:
    checked before the work, recorded with their hashes after it (:mod:`netxray._files`)."""
    from netxray.models.checkpoint import _HF_DATA_FILES, HF_SUBDIR

    names = ["prune_table.csv", "curve_before.csv", "redundant.csv", "curve_after.csv", "prune_summary.json",
             "pruned.safetensors", "pruned/model.safetensors", "pruned/config.json"]  # fmt: skip
    return names + [f"pruned/{HF_SUBDIR}/{name}" for name in _HF_DATA_FILES]  # an hf model's config files


def _write_study(study: PruneStudy, out: Path) -> None:
    try:
        _write_study_files(study, out)
    finally:  # what was written is netxray's: a later run (CLI or Python) may replace it
        from netxray._files import record_owned_files

        record_owned_files(out, [name for name in study_files() if (out / name).is_file()])


def _write_study_files(study: PruneStudy, out: Path) -> None:
    import json

    from netxray._meta import atomic_write_text
    from netxray.models import save_checkpoint

    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "prune_table.csv", study.table.to_csv(index=False))
    atomic_write_text(out / "curve_before.csv", study.curve.to_csv(index=False))
    atomic_write_text(out / "redundant.csv", study.redundant.to_csv(index=False))
    if study.curve_after is not None:
        atomic_write_text(out / "curve_after.csv", study.curve_after.to_csv(index=False))
    record = {"summary": study.summary, "meta": study.table.attrs.get("meta", {})}
    atomic_write_text(out / "prune_summary.json", json.dumps(record, indent=2, default=str) + "\n")
    if study.model is None:
        return
    row = study.table[study.table["variant"] == "modularity"].iloc[0]
    metrics = {"test_acc": float(row["acc_finetuned"]), "params": int(row["params"]),
               "macs": int(row["macs"]), "removed": study.summary["removed"]}  # fmt: skip
    from netxray.models.checkpoint import CheckpointError

    try:
        # built-in, or loaded from torchvision: / timm: / hf: (the checkpoint records the source
        # and the removed blocks, and netxray.load builds it again): DIR/pruned
        save_checkpoint(study.model, out / "pruned", metrics=metrics)
    except CheckpointError:
        # your own code (PATH.py:FACTORY or a model object): no checkpoint runs code, so the
        # weights only, read with prune_layers(your_model, summary["removed"], x) + load_state_dict
        from safetensors.torch import save_file

        state = {k: v.detach().cpu().contiguous() for k, v in study.model.state_dict().items()}
        save_file(state, str(out / "pruned.safetensors"), metadata={"removed": ",".join(study.summary["removed"])})
