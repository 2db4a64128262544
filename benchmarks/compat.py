"""Compatibility sweep: every lens on the models people bring (issue 10, item 6).

For each model — every torchvision classification architecture, Hugging Face BERT, RoBERTa,
GPT-2, Llama (SwiGLU + RMSNorm + grouped-query attention) and ViT built from small configs, and a
dozen timm architectures, all randomly initialised (nothing is downloaded) — on random inputs
of a small size the model allows:

- ``scan`` runs all four lenses (nonlinearity, modularity, parameters, symmetry): none failed;
- the signature's site count equals an independent count of activation calls (module hooks and
  a function mode written here, not the capture's);
- the logits are bit-identical with and without a capture attached;
- the modularity curve probes exactly the natural probes read from the graph: one point per
  block, plus the stem and the pre-head;
- the symmetry lens's axes (as ``symmetry_group`` reports them today) and whether each was
  verified, when the table says;
- the time per model.

Each model runs in its own (forked) process, stopped when one phase outlives its limit;
results go to a JSON-lines file (resumable: models already there are skipped) and a Markdown
table (``docs/compat.md``, every model of the file). Run it with ``make compat`` or:

    python benchmarks/compat.py [--only resnet18,hf_bert] [--timeout 600] [--out docs/compat.md]

``--only`` re-measures the named models and replaces their rows (the rest of the table stays).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

N_CLASSES = 3
N_DEFAULT = 24  # samples per lens in the sweep
SEQ_LEN = 8
VOCAB = 64


@dataclass
class Case:
    """One model of the sweep: how to build it, its input, and the blocks known from its source."""

    name: str
    source: str  # torchvision | timm | hf
    build: Callable[[], nn.Module]
    kind: str = "image"  # image | tokens | pixels (dict with pixel_values) | vector | pair
    size: int = 32  # image side, or a vector's features ("pair": two images, or vectors of size, size - 1)
    eos: int | None = None  # token models that need an end-of-sequence token (T5): the last id
    expected_blocks: int | None = None
    check_layout: bool = False  # compare every site's d with its channel count (LAYOUT_FAMILIES)
    recheck: bool = False  # re-test each symmetry axis on all-random weights (issue 21 families)


# ------------------------------------------------------------------------------ the models

# torchvision models that need more than 32×32 (their pooling or partition sizes)
_TV_SIZES = {"alexnet": 64, "inception_v3": 80, "googlenet": 64, "maxvit_t": 224,
             "squeezenet1_0": 64, "squeezenet1_1": 64}  # fmt: skip
# blocks known from the source, for models whose count is easy to read off
_TV_BLOCKS = {"resnet18": 8, "resnet34": 16, "resnet50": 16, "mobilenet_v2": 17, "efficientnet_b0": 16,
              "convnext_tiny": 18, "swin_t": 15, "swin_v2_t": 15, "densenet121": 7, "vit_b_16": 12,
              "vit_b_32": 12}  # fmt: skip


def _tv_case(name: str) -> Case:
    import torchvision

    def build() -> nn.Module:
        kw: dict[str, Any] = {"weights": None, "num_classes": N_CLASSES}
        if name.startswith("vit_"):
            kw["image_size"] = 32 if not name.endswith("_14") else 28
        if name in ("inception_v3", "googlenet"):
            kw["aux_logits"] = False
            kw["init_weights"] = True
        return torchvision.models.get_model(name, **kw)

    size = _TV_SIZES.get(name, 28 if name == "vit_h_14" else 32)
    return Case(name, "torchvision", build, size=size, expected_blocks=_TV_BLOCKS.get(name))


_TIMM = {  # name: (image size, extra kwargs)
    "resnet18": (32, {}), "efficientnet_b0": (32, {}), "mobilenetv3_small_100": (32, {}),
    "convnext_atto": (32, {}), "vit_tiny_patch16_224": (32, {"img_size": 32}),
    "deit_tiny_patch16_224": (32, {"img_size": 32}),
    "swin_tiny_patch4_window7_224": (64, {"img_size": 64, "window_size": 2}),
    "mobilevit_xxs": (64, {}), "efficientformer_l1": (224, {}),
    "regnetx_002": (32, {}), "mixer_s16_224": (32, {"img_size": 32}), "poolformer_s12": (32, {}),
    "levit_128s": (64, {"img_size": 64}), "ghostnet_100": (32, {}), "repvgg_a0": (32, {}),
}  # fmt: skip


def _timm_case(name: str) -> Case:
    size, kw = _TIMM[name]

    def build() -> nn.Module:
        import timm

        return timm.create_model(name, pretrained=False, num_classes=N_CLASSES, **kw)

    return Case(f"timm_{name}", "timm", build, size=size)


def _hf_cases() -> list[Case]:
    def make(config_name: str, **cfg: Any) -> Callable[[], nn.Module]:
        def build() -> nn.Module:
            import transformers as tf

            config = getattr(tf, config_name)(num_labels=N_CLASSES, **cfg)
            if config_name == "ViTConfig":
                return tf.ViTForImageClassification(config)
            return tf.AutoModelForSequenceClassification.from_config(config)

        return build

    small = {"hidden_size": 32, "num_hidden_layers": 3, "num_attention_heads": 4, "intermediate_size": 64}
    return [
        Case("hf_bert", "hf", make("BertConfig", vocab_size=VOCAB, max_position_embeddings=32, **small),
             kind="tokens", expected_blocks=3),
        Case("hf_roberta", "hf", make("RobertaConfig", vocab_size=VOCAB, max_position_embeddings=40,
                                      pad_token_id=1, **small), kind="tokens", expected_blocks=3),
        Case("hf_gpt2", "hf", make("GPT2Config", vocab_size=VOCAB, n_positions=32, n_embd=32, n_layer=3,
                                   n_head=4, pad_token_id=0, bos_token_id=0, eos_token_id=0),
             kind="tokens", expected_blocks=3),
        Case("hf_llama", "hf", make("LlamaConfig", vocab_size=VOCAB, max_position_embeddings=32,
                                    num_key_value_heads=2, pad_token_id=0, **small),
             kind="tokens", expected_blocks=3),
        Case("hf_vit", "hf", make("ViTConfig", image_size=32, patch_size=8, **small), kind="pixels",
             expected_blocks=3),
    ]  # fmt: skip


def _issue21_cases() -> list[Case]:
    """The families of issue 21: attention heads in every layout, experts, shared and tied
    weights, several inputs, functional-only models (tiny configs: seconds per model)."""
    import symmetry_families as fam

    def hf(config_name: str, model_name: str = "AutoModelForSequenceClassification", **cfg: Any):
        def build() -> nn.Module:
            import transformers as tf

            config = getattr(tf, config_name)(num_labels=N_CLASSES, **cfg)
            cls = getattr(tf, model_name)
            return cls.from_config(config) if model_name.startswith("Auto") else cls(config)

        return build

    def timm_(name: str, **kw: Any):
        def build() -> nn.Module:
            import timm

            return timm.create_model(name, pretrained=False, num_classes=N_CLASSES, **kw)

        return build

    def tv_(fn: str, **kw: Any):
        def build() -> nn.Module:
            import torchvision

            *mod, name = fn.split(".")
            obj: Any = torchvision.models
            for part in mod:
                obj = getattr(obj, part)
            return getattr(obj, name)(weights=None, **kw)

        return build

    tiny = {"vocab_size": VOCAB, "hidden_size": 16, "num_hidden_layers": 2, "num_attention_heads": 4,
            "intermediate_size": 16, "max_position_embeddings": 32, "pad_token_id": 0}  # fmt: skip
    # widths below the sweep's n = 24: every signature site is scored (not under-determined)
    cases = [
        Case("hf_opt", "hf", hf("OPTConfig", vocab_size=VOCAB, hidden_size=16, num_hidden_layers=2,
                                 num_attention_heads=4, ffn_dim=16, max_position_embeddings=32,
                                 word_embed_proj_dim=16, pad_token_id=0), kind="tokens", expected_blocks=2),
        Case("hf_phi3", "hf", hf("Phi3Config", num_key_value_heads=2, eos_token_id=1, bos_token_id=1, **tiny),
             kind="tokens", expected_blocks=2),
        Case("hf_gpt_neox", "hf", hf("GPTNeoXConfig", **tiny), kind="tokens", expected_blocks=2),
        Case("hf_bloom", "hf", hf("BloomConfig", vocab_size=VOCAB, hidden_size=4, n_layer=2, n_head=2,
                                   pad_token_id=0), kind="tokens", expected_blocks=2),
        Case("hf_deberta_v2", "hf", hf("DebertaV2Config", **{**tiny, "pad_token_id": 0}, max_relative_positions=8,
                                        relative_attention=True, pos_att_type=["p2c", "c2p"], position_buckets=4),
             kind="tokens", expected_blocks=2),
        Case("hf_albert", "hf", hf("AlbertConfig", embedding_size=8, **tiny), kind="tokens", expected_blocks=2),
        Case("hf_t5", "hf", hf("T5Config", "T5ForSequenceClassification", vocab_size=VOCAB, d_model=16, d_kv=4,
                                d_ff=16, num_layers=2, num_decoder_layers=2, num_heads=4, decoder_start_token_id=0,
                                pad_token_id=0, eos_token_id=1), kind="tokens", eos=1, expected_blocks=4),
        Case("hf_mixtral", "hf", hf("MixtralConfig", num_key_value_heads=2, num_local_experts=3,
                                     num_experts_per_tok=2, **tiny), kind="tokens", expected_blocks=2),
        Case("hf_clip", "hf", hf("CLIPConfig", "CLIPForImageClassification",
                                  text_config={"vocab_size": VOCAB, "hidden_size": 16, "intermediate_size": 16,
                                               "num_hidden_layers": 1, "num_attention_heads": 4},
                                  vision_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 2,
                                                 "num_attention_heads": 4, "image_size": 16, "patch_size": 8}),
             kind="pixels", size=16, expected_blocks=2),
        Case("timm_beit", "timm", timm_("beit_base_patch16_224", img_size=32, patch_size=8, embed_dim=16, depth=2,
                                        num_heads=4, mlp_ratio=1.0), expected_blocks=2),
        Case("timm_eva02", "timm", timm_("eva02_tiny_patch14_224", img_size=28, depth=2, embed_dim=16,
                                          num_heads=2, mlp_ratio=1.0), size=28,
             expected_blocks=2),
        Case("timm_pvt_v2_b0", "timm", timm_("pvt_v2_b0"), size=64),
        Case("lraspp_mobilenet_v3_large", "torchvision",
             tv_("segmentation.lraspp_mobilenet_v3_large", weights_backbone=None, num_classes=N_CLASSES),
             expected_blocks=15),
        Case("raft_small", "torchvision", tv_("optical_flow.raft_small"), kind="pair", size=128),
        Case("moe_top1", "hand-written", fam.TopOneMoE, kind="vector", size=4),
        Case("shared_linear", "hand-written", fam._SharedLinear, kind="vector", size=4),
        Case("two_inputs", "hand-written", fam._TwoInputs, kind="pair", size=4),
        Case("functional_only", "hand-written", fam.FunctionalOnly, kind="vector", size=4),
    ]  # fmt: skip
    for case in cases:
        case.recheck = True
    return cases


def all_cases() -> dict[str, Case]:
    """Every model of the sweep, by name (torchvision names as torchvision spells them)."""
    cases: dict[str, Case] = {}
    try:
        import torchvision

        for name in torchvision.models.list_models(module=torchvision.models):
            cases[name] = _tv_case(name)
    except ImportError:
        pass
    for case in _hf_cases():
        cases[case.name] = case
    for name in _TIMM:
        case = _timm_case(name)
        cases[case.name] = case
    try:
        for case in _issue21_cases():
            cases[case.name] = case
    except ImportError:  # benchmarks/ not on the path (the script puts it there)
        pass
    return cases


# the largest models, run last in this order (about by size): a stopped run costs the fewest rows
_LAST = ["maxvit_t", "densenet161", "densenet201", "efficientnet_b5", "efficientnet_b6", "efficientnet_b7",
         "efficientnet_v2_m", "efficientnet_v2_l", "resnet152", "convnext_base", "swin_b", "swin_v2_b",
         "resnext101_32x8d", "resnext101_64x4d", "wide_resnet101_2", "regnet_x_16gf", "regnet_y_16gf",
         "vgg11", "vgg11_bn", "vgg13", "vgg13_bn", "vgg16", "vgg16_bn", "vgg19", "vgg19_bn", "convnext_large",
         "regnet_x_32gf", "regnet_y_32gf", "vit_l_32", "vit_l_16", "vit_h_14", "regnet_y_128gf"]  # fmt: skip

# over 250 M parameters: never two at once, whatever the number of workers
_HEAVY = {"vit_l_16", "vit_l_32", "vit_h_14", "regnet_y_128gf"}

REPRESENTATIVE = ("resnet18", "mobilenet_v2", "swin_t", "densenet121", "vit_b_16",
                  "hf_bert", "hf_gpt2", "hf_llama")  # fmt: skip


def make_data(case: Case, n: int, seed: int = 0) -> tuple[Any, torch.Tensor]:
    """Random inputs the model accepts and balanced labels (a tensor or a dict of tensors)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % N_CLASSES
    if case.kind == "tokens":
        ids = torch.randint(2, VOCAB, (n, SEQ_LEN), generator=g)
        if case.eos is not None:
            ids[:, -1] = case.eos
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, y
    if case.kind == "vector":
        return torch.randn(n, case.size, generator=g), y
    if case.kind == "pair":  # two positional inputs: two images, or two vectors of sizes s, s - 1
        if case.source == "hand-written":
            return (torch.randn(n, case.size, generator=g), torch.randn(n, case.size - 1, generator=g)), y
        shape = (n, 3, case.size, case.size)
        return (torch.rand(shape, generator=g) * 2 - 1, torch.rand(shape, generator=g) * 2 - 1), y
    x = torch.randn(n, 3, case.size, case.size, generator=g)
    return ({"pixel_values": x} if case.kind == "pixels" else x), y


def _head(x: Any, n: int) -> Any:
    if isinstance(x, tuple):  # several positional inputs
        return tuple(t[:n] for t in x)
    return {k: v[:n] for k, v in x.items()} if isinstance(x, dict) else x[:n]


def _call(model: nn.Module, x: Any) -> Any:
    if isinstance(x, tuple):
        return model(*x)
    return model(**x) if isinstance(x, dict) else model(x)


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
    if isinstance(out, dict):  # torchvision segmentation: {"out": ..., "aux": ...}
        return out["out"] if "out" in out else next(iter(out.values()))
    if isinstance(out, (list, tuple)) and isinstance(out[-1], torch.Tensor):  # RAFT: the last flow
        return out[-1]
    return out[0]


# ------------------------------------------------------------------------------ the checks


class _CountActivations(TorchFunctionMode):
    """An independent count of activation calls: module calls plus top-level functional calls.

    Not the capture's code: module forward hooks count activation modules, this mode counts
    functional activations made outside them.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        from netxray.capture.sites import ACTIVATION_MODULES, FUNCTIONAL_ACTIVATIONS

        self.funcs = FUNCTIONAL_ACTIVATIONS
        self.inside = 0
        self.count = 0
        # per activation call: the output width of the last parametrised layer that ran before
        # it (a Conv's out_channels, a Linear's out_features, a norm's feature count) — the
        # channel count the call's site must report as d, read from the modules, not the graph
        self.widths: list[int | None] = []
        self._last_width: int | None = None
        self.handles = []
        for m in model.modules():
            if isinstance(m, ACTIVATION_MODULES):
                self.handles.append(m.register_forward_pre_hook(self._enter))
                self.handles.append(m.register_forward_hook(self._leave))
            elif _layer_width(m) is not None:
                self.handles.append(m.register_forward_hook(self._width_hook(_layer_width(m))))

    def _width_hook(self, width: int):
        def hook(*_: Any) -> None:
            self._last_width = width

        return hook

    def _enter(self, *_: Any) -> None:
        self.count += 1
        self.widths.append(self._last_width)
        self.inside += 1

    def _leave(self, *_: Any) -> None:
        self.inside -= 1

    def __torch_function__(self, func, types, args=(), kwargs=None):
        try:
            hit = func in self.funcs
        except TypeError:
            hit = False
        if hit and self.inside == 0:
            self.count += 1
            self.widths.append(self._last_width)
        return func(*args, **(kwargs or {}))

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def _layer_width(m: nn.Module) -> int | None:
    """The feature count a parametrised layer writes (None for any other module)."""
    if isinstance(m, nn.modules.conv._ConvNd):
        return int(m.out_channels)
    if isinstance(m, nn.Linear):
        return int(m.out_features)
    if isinstance(m, (nn.modules.batchnorm._NormBase, nn.GroupNorm)):
        return int(getattr(m, "num_features", None) or m.num_channels)
    if isinstance(m, nn.LayerNorm) and m.normalized_shape:
        return int(m.normalized_shape[-1])
    return None


def count_activation_calls(model: nn.Module, x: Any, widths: bool = False) -> Any:
    """Activation calls in one forward pass on ``x`` (eval mode, no grad).

    With ``widths=True``: ``(count, [width before each call])`` (see :class:`_CountActivations`).
    """
    counter = _CountActivations(model)
    try:
        with torch.no_grad(), counter:
            _call(model, x)
    finally:
        counter.close()
    return (counter.count, counter.widths) if widths else counter.count


# families whose sites are channel-last or window-token tensors: every site must report d = the
# channel count (issue 10: ConvNeXt / Swin read d = H before the graph gave each site its axis)
LAYOUT_FAMILIES = ("convnext", "swin", "maxvit")


def lens_statuses(tables: dict[str, Any], statuses: dict[str, str]) -> dict[str, str]:
    """Each lens's status, ``ok`` only when everything it was asked to read was read.

    A lens that ran can still be partial: signature sites with status ``error`` or
    non-linearities it could not observe (fused kernels), modularity layers that were not
    scored, weight tensors whose statistics failed, a symmetry summary that is partial,
    unverified or failed (e.g. 0 axes because the structure could not be read).
    """
    out = dict(statuses)
    sig = tables.get("nonlinearity")
    if sig is not None and out.get("nonlinearity") == "ok":
        st = sig["status"].astype(str)
        bad = {k: int(v) for k, v in st[st.str.startswith(("error", "nonfinite"))].value_counts().items()}
        unseen = sig.attrs.get("summary", {}).get("not_observed") or []
        parts = [f"{v} site(s) {k.split(':')[0]}" for k, v in bad.items()]
        parts += [f"{len(unseen)} non-linearit(ies) not observed"] if unseen else []
        if len(sig) == 0:
            parts.append("no activation site")
        if parts:
            out["nonlinearity"] = "partial: " + ", ".join(parts)
    mod = tables.get("modularity")
    if mod is not None and out.get("modularity") == "ok" and "status" in mod:
        st = mod["status"].astype(str)
        bad = st[st != "ok"]
        if len(bad) or len(mod) == 0:
            out["modularity"] = f"partial: {len(bad)} of {len(mod)} layer(s) not scored ({', '.join(sorted(set(bad)))})"
    par = tables.get("parameters")
    if par is not None and out.get("parameters") == "ok" and "status" in getattr(par, "columns", []):
        st = par["status"].astype(str)
        bad = st[st.str.startswith(("error", "empty"))]
        if len(bad):
            out["parameters"] = f"partial: {len(bad)} tensor(s) not read"
    sym = tables.get("symmetry")
    if sym is not None and out.get("symmetry") == "ok":
        status = str(sym.attrs.get("summary", {}).get("status", "ok"))
        if status != "ok":
            out["symmetry"] = status
    return out


def _lenses_direct(model: nn.Module, data: Any, n: int, repeats: int, seed: int) -> dict[str, Any]:
    """The four lenses called as library functions (what ``scan`` runs, without its plots)."""
    import netxray
    from netxray.lenses.parameters import node_strengths
    from netxray.report.runners import _example  # the two samples scan records the graph on

    tables: dict[str, Any] = {}
    status: dict[str, str] = {}
    calls = {
        "nonlinearity": lambda: netxray.nonlinearity_signature(model, data, n_samples=n, seed=seed),
        "modularity": lambda: netxray.modularity_curve(model, data, n=n, k=3, repeats=repeats, seed=seed),
        "parameters": lambda: (netxray.weight_stats(model), node_strengths(model, example=_example(data)))[0],
        "symmetry": lambda: netxray.symmetry_group(model),
    }
    failed = {}
    for name, call in calls.items():
        try:
            tables[name] = call()
            status[name] = "ok"
        except Exception as exc:  # a lens that raises is a failed lens, like in scan
            status[name] = "failed"
            failed[name] = f"{type(exc).__name__}: {str(exc)[:200]}"
    return {"tables": tables, "status": status, "failed": failed}


_PIPE: Any = None  # in a sweep worker: the connection to the parent (heartbeats, the row)


def _phase(name: str, params: int | None = None) -> None:
    """A heartbeat to the sweep's parent: its time limit applies per phase (see :func:`run_one`)."""
    if _PIPE is not None:
        _PIPE.send(("phase", name, params))


def check_model(case: Case, *, n: int = 24, repeats: int = 2, seed: int = 0,
                lenses: tuple[str, ...] | None = None, use_scan: bool = True) -> dict[str, Any]:  # fmt: skip
    """Run every check on one model; returns one row of the table (never raises).

    ``use_scan=False`` calls the four lens functions directly (no report, no plots): the test
    suite's representative subset uses it to stay within the test budget. With ``scan`` each
    lens runs as its own ``scan`` call, so the row holds the time per lens (``lens_seconds``).
    """
    from netxray.capture import Capture
    from netxray.capture.graph import record_graph
    from netxray.report import LENSES, scan

    row: dict[str, Any] = {"model": case.name, "source": case.source, "input": _input_desc(case)}
    t0 = time.perf_counter()
    try:
        _phase("build")
        torch.manual_seed(seed)
        model = case.build().eval()
        row["params"] = sum(p.numel() for p in model.parameters())
        _phase("build", row["params"])
        x, y = make_data(case, n, seed)
        ex = _head(x, 2)
        _phase("graph")
        graph = record_graph(model, ex)
        probes = graph.natural_probes()
        stem, pre = graph.stem(), graph.pre_head()
        row.update(
            blocks=len(graph.blocks()), stem=stem.name if stem else None,
            pre_head=pre.name if pre else None, probes=len(probes),
            graph_notes=graph.notes, expected_blocks=case.expected_blocks,
        )  # fmt: skip
        row["activation_calls"], widths = count_activation_calls(model, ex, widths=True)
        with torch.no_grad():
            plain = _logits(_call(model, _head(x, 4))).clone()
            with Capture(model, layers=probes):
                captured = _logits(_call(model, _head(x, 4))).clone()
        row["logits_identical"] = bool(torch.equal(plain, captured))
        ex_sym = _head(x, 8)  # the symmetry lens's own probe inputs, for the independent re-check
        row["graph_seconds"] = round(time.perf_counter() - t0, 1)
        data = {**x, "labels": y} if isinstance(x, dict) else (x, y)
        tables: dict[str, Any] = {}
        if use_scan:
            # no rotated-input null baseline: its d×d random rotation per site dominates wide
            # models at this n (mobilenet_v2: 74 of 80 s) and it checks the estimator, not the model
            status, row["failed"], row["lens_seconds"] = {}, {}, {}
            for lens in lenses or LENSES:
                _phase(lens)
                t1 = time.perf_counter()
                report = scan(model, data, (lens,), n_samples=n, modularity_n=n, k=3, repeats=repeats,
                              seed=seed, progress=False, options={"nonlinearity": {"null_baseline": False}})  # fmt: skip
                row["lens_seconds"][lens] = round(time.perf_counter() - t1, 1)
                res = report.results[lens]
                status[lens] = res.status
                row["failed"].update(report.failed)
                if res.table is not None:
                    tables[lens] = res.table
                del report
        else:
            direct = _lenses_direct(model, data, n, repeats, seed)
            status, row["failed"], tables = direct["status"], direct["failed"], direct["tables"]
        row["lenses"] = lens_statuses(tables, status)
        _phase("checks")
        if "nonlinearity" in tables:
            sig = tables["nonlinearity"]
            row["sites"] = int(len(sig))
            row["site_status"] = {str(k): int(v) for k, v in sig["status"].value_counts().items()}
            if any(f in case.name.lower() for f in LAYOUT_FAMILIES) or case.check_layout:
                row["layout"] = _layout_check(sig, widths)
        if "modularity" in tables:
            layers = list(tables["modularity"]["layer"])
            row["curve_points"] = len(layers)
            # a re-used block is one point per call ("path#k"): the paths must be the probes
            row["curve_is_probes"] = list(dict.fromkeys(str(v).split("#")[0] for v in layers)) == probes
        if "symmetry" in tables:
            group = tables["symmetry"]
            summ = group.attrs.get("summary", {})
            row["sym_axes"] = summ.get("n_axes")
            row["sym_log10"] = summ.get("log10_order")
            row["sym_status"] = summ.get("status")
            if "verified" in group.columns:
                row["sym_verified"] = int(group["verified"].fillna(False).astype(bool).sum())
            row["sym_not_analysed"] = summ.get("not_analysed")
            if len(group) and case.recheck:
                # each reported axis re-tested on a copy whose parameters are all random (an axis
                # is a claim about every weight), by the independent checker of the families
                # benchmark: "0" = none moves the outputs
                _phase("recheck")
                import symmetry_families as fam

                row["sym_false"] = fam._false_axes(model, ex_sym, group)
    except Exception as exc:  # one model that fails is a row, never a crashed sweep
        row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    row["seconds"] = round(time.perf_counter() - t0, 1)
    row["ok"] = _row_ok(row)
    return row


def _layout_check(sig: Any, widths: list[int | None]) -> dict[str, Any]:
    """Every data-dependent site's d against the channel count its layer wrote (issue 10).

    ``widths`` (one per activation call, in call order — the signature's rows are in call
    order too) come from the modules that ran before each call (:class:`_CountActivations`).
    """
    if len(widths) != len(sig):
        return {"checked": 0, "wrong": [f"{len(sig)} sites vs {len(widths)} calls: not compared"]}
    wrong, checked = [], 0
    for (_, r), w in zip(sig.iterrows(), widths, strict=True):
        if str(r["status"]) == "not_data_dependent" or w is None:
            continue
        checked += 1
        d = r["d"]
        if d != d or d is None:  # NaN: the site was not measured (its status says why)
            wrong.append(f"{r['site']}: d not measured ({r['status']})")
        elif int(d) != w:
            wrong.append(f"{r['site']}: d={int(r['d'])}, channels={w}")
    return {"checked": checked, "wrong": wrong}


def _input_desc(case: Case) -> str:
    if case.kind == "tokens":
        return f"ids {SEQ_LEN}" + (" (eos last)" if case.eos is not None else "")
    if case.kind == "vector":
        return f"{case.size}"
    if case.kind == "pair":
        if case.source == "hand-written":
            return f"{case.size} + {case.size - 1}"
        return f"2 × 3×{case.size}×{case.size}"
    return f"3×{case.size}×{case.size}"


def _row_ok(row: dict[str, Any]) -> bool:
    """Every check passed: lenses ok (nothing partial), sites = calls, logits identical, curve =
    probes, the expected block count, every channel-last / window site's d = its channels."""
    return (
        "error" not in row
        and all(s == "ok" for s in row.get("lenses", {}).values())
        and row.get("sites") == row.get("activation_calls")
        and bool(row.get("logits_identical"))
        and bool(row.get("curve_is_probes"))
        and (row.get("expected_blocks") is None or row.get("blocks") == row.get("expected_blocks"))
        and not (row.get("layout") or {}).get("wrong")
        and str(row.get("sym_false", "0")).split(" ")[0] == "0"
    )


# ------------------------------------------------------------------------------ the table


def _lens_text(lens: dict[str, str]) -> str:
    """'all ok' only when every lens read everything; otherwise each lens that did not."""
    if not lens:
        return "—"
    if all(s == "ok" for s in lens.values()):
        return "all ok"
    return "; ".join(f"{k}: {v}" for k, v in lens.items() if v != "ok")


# what the sweep does not cover (kept beside the table; update when the sweep grows)
NOT_COVERED = [
    "torchvision detection, video and quantized models, and segmentation / optical-flow models "
    "other than LRASPP and RAFT-small (the sweep covers `list_models(module=torchvision.models)`, "
    "the classification models, and the issue-21 families)",
    "recurrent layers (nn.LSTM / nn.GRU: their gate non-linearities run in a fused kernel the "
    "capture cannot observe; the signature lists them as not observed)",
    "encoder–decoder and generation models other than T5ForSequenceClassification (BART, "
    "Whisper) and models with key/value caches (a cache object is not followed through by the "
    "graph)",
    "pretrained weights: every model is randomly initialised (nothing is downloaded), so the "
    "numbers describe the architecture at initialisation, not a trained model",
    "full-size inputs: images are the smallest size each model accepts (32×32 unless it needs "
    "more), token sequences are 8 long",
]


def render(rows: list[dict[str, Any]], missing: list[str] | None = None, note: str | None = None) -> str:
    """The Markdown table of ``docs/compat.md`` (``note``: a paragraph about this run)."""
    total = sum(float(r.get("wall_seconds", r.get("seconds", 0)) or 0) for r in rows)
    ok = sum(bool(r.get("ok")) for r in rows)
    ns = sorted({int(r.get("n", N_DEFAULT)) for r in rows})
    lens_total: dict[str, float] = {}
    for r in rows:
        for k, v in (r.get("lens_seconds") or {}).items():
            lens_total[k] = lens_total.get(k, 0.0) + float(v)
    lines = [
        "# Compatibility sweep",
        "",
        "Written by `make compat` (`benchmarks/compat.py`; `--only m1,m2` re-measures chosen models "
        "and rewrites their rows, `--render` rewrites this file from `runs/compat.jsonl`).",
        "",
        "**Sweep settings (the sweep's choices, not library defaults):** every model randomly "
        "initialised; random inputs at the smallest size the model accepts (the input column); "
        f"{N_CLASSES} balanced random classes; n = {', '.join(map(str, ns)) or N_DEFAULT} samples "
        "per lens (the library's default is 2048 for the signature, 500 for modularity), "
        "modularity k = 3 with 2 repeats; the signature without its rotated-input null baseline "
        "(it checks the estimator, not the model); one torch and one BLAS thread; one process per "
        "model, each phase (graph, each lens) stopped if it outlives its limit (600 CPU seconds, "
        "scaled up by the parameter count over 50 M; CPU, not wall time, so a worker starved by "
        "other work is not stopped); on the shared 2-core CPU machine (other work ran "
        "beside it, so times are upper bounds). The sweep checks that every lens reads every "
        "model, not the values: at n = 24 almost every signature site has fewer samples than "
        "features (`under_determined` in the notes: scored, left out of the statistics), and a "
        "random-init model's numbers describe its initialisation.",
        "",
        "Columns: lenses (`all ok` only when each of nonlinearity / modularity / parameters / "
        "symmetry read everything: a lens that ran but left parts unread — sites with errors, "
        "unscored layers, a partial, unverified or failed symmetry summary — is named with its "
        "status; `graph: partial` when the recorded graph could not follow a part of the pass, "
        "named in the notes), ✗ = a check failed (a lens not ok, sites ≠ calls, logits differ, "
        "curve ≠ probes, blocks ≠ the count read from the source, d ≠ channels, an error), "
        "sites = signature sites vs an independent count of activation calls, `nd` = "
        "sites whose input does not depend on the data (listed apart), logits = bit-identical "
        "with and without capture, probes = modularity points (blocks found + stem + pre-head), "
        "symmetry = axes (verified by the permutation test), log10 |G|, and for the issue-21 "
        "families `false on random weights`: axes that move the outputs of a copy whose parameters "
        "are all random, by the independent checker of `benchmarks/symmetry_families.py` (must be 0; "
        "otherwise ✗), layout = for ConvNeXt, Swin and "
        "MaxViT: sites whose d equals the channel count of the layer before them / sites checked, "
        "time = seconds for the model (per lens in the JSON-lines file), notes = what the "
        "recorded graph or a lens could not follow.",
        "",
        *([note, ""] if note else []),
        f"**{ok} of {len(rows)} models pass every check; total {total / 60:.1f} min (summed over models)"
        + (" (" + ", ".join(f"{k} {v / 60:.1f} min" for k, v in lens_total.items()) + ")" if lens_total else "")
        + ".**",
        "",
        "| model | source | params (M) | input | lenses | sites / calls | nd | logits | blocks | probes (stem, pre-head) | symmetry axes | layout | time (s) | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]  # fmt: skip
    for r in rows:
        lens_txt = _lens_text(r.get("lenses") or {})
        if r.get("graph_notes"):  # a part of the forward pass the graph could not follow
            lens_txt += f"; graph: partial ({len(r['graph_notes'])} note(s))"
        nd = r.get("site_status", {}).get("not_data_dependent", 0)
        sym = r.get("sym_axes")
        sym_txt = "—" if sym is None else f"{sym}" + (
            f" ({r['sym_verified']} verified)" if "sym_verified" in r else "")  # fmt: skip
        if sym is not None and r.get("sym_log10") is not None:
            sym_txt += f", log10 |G| {float(r['sym_log10']):.1f}"
        if "sym_false" in r:  # re-checked on all-random weights: axes that move the outputs
            sym_txt += f", false on random weights: {r['sym_false']}"
        blocks = r.get("blocks", "—")
        if r.get("expected_blocks") is not None and blocks != r["expected_blocks"]:
            blocks = f"{blocks} (expected {r['expected_blocks']})"
        probes = f"{r.get('probes', '—')} ({r.get('stem') or '—'}, {r.get('pre_head') or '—'})"
        lay = r.get("layout")
        lay_txt = "—" if not lay else f"{lay['checked'] - len(lay['wrong'])} / {lay['checked']}"
        params = r.get("params")
        params_txt = "—" if not params else f"{params / 1e6:.3g}"
        notes = []
        if r.get("error"):
            notes.append(r["error"])
        notes += [f"{k}: {v}" for k, v in (r.get("failed") or {}).items()]
        if lay and lay["wrong"]:
            notes.append(f"layout: {len(lay['wrong'])} site(s) with d ≠ channels, e.g. {lay['wrong'][0]}")
        notes += list(r.get("graph_notes") or [])
        # scored but left out of the signature statistics (under-determined: n < d at this n)
        aside = {k: v for k, v in (r.get("site_status") or {}).items() if k not in ("ok", "not_data_dependent")}
        if aside:
            notes.append("signature sites " + ", ".join(f"{v} {k}" for k, v in sorted(aside.items())))
        na = r.get("sym_not_analysed")
        if isinstance(na, list) and na:
            # the first reason that is about the whole model, else the count of layers
            whole = [s for s in na if "could not" in str(s) or "model" in str(s)[:12]]
            notes.append(f"symmetry: {len(na)} layer(s) not analysed" + (f" ({whole[0]})" if whole else ""))
        elif na:
            notes.append(f"symmetry not analysed: {na}")
        note_txt = "; ".join(str(n).replace("|", "/").replace("\n", " ")[:200] for n in notes)
        mark = "" if r.get("ok") else " ✗"
        lines.append(
            f"| {r['model']}{mark} | {r['source']} | {params_txt} | {r.get('input', '')} | "
            f"{lens_txt.replace('|', '/')} | {r.get('sites', '—')} / {r.get('activation_calls', '—')} | {nd} | "
            f"{'yes' if r.get('logits_identical') else 'no'} | {blocks} | {probes} | {sym_txt} | "
            f"{lay_txt} | {r.get('wall_seconds', r.get('seconds', '—'))} | {note_txt} |"
        )
    if missing:
        lines += ["", f"Not measured in this run ({len(missing)}): " + ", ".join(missing) + "."]
    lines += ["", "## Not covered", ""] + [f"- {item}" for item in NOT_COVERED]
    lines.append("")
    return "\n".join(lines)


def _row_name(line: str) -> str | None:
    """The model named by a Markdown table row (None for other lines and the header)."""
    if not line.startswith("| ") or line.startswith("|---"):
        return None
    name = line.split("|")[1].strip().removesuffix(" ✗").strip()
    return None if name == "model" else name


def splice(old_md: str, new_md: str, measured: set[str]) -> str:
    """``old_md`` with the rows of ``measured`` models taken from ``new_md`` (replaced in place,
    new models appended to the table), the pass count recounted over the rows, and the text
    above the count and the "Not covered" section of ``new_md``: a partial re-run updates the
    table without the results file of the full run (the other rows, their times and the total
    time stay as measured)."""
    new_rows = {n: line for line in new_md.splitlines() if (n := _row_name(line)) in measured}
    out, last_row, seen = [], -1, set()
    for line in old_md.split("\n## Not covered")[0].splitlines():
        name = _row_name(line)
        if name is not None:
            seen.add(name)
            line = new_rows.get(name, line)
            last_row = len(out)
        out.append(line)
    added = [line for n, line in new_rows.items() if n not in seen]
    out[last_row + 1 : last_row + 1] = added
    rows = [line for line in out if _row_name(line) is not None]
    ok = sum(1 for line in rows if "✗" not in line.split("|")[1])
    text = "\n".join(out)
    count = re.compile(r"^\*\*\d+ of \d+ models pass every check", re.M)
    at_new, at_old = count.search(new_md), count.search(text)
    if at_new and at_old:  # the settings and columns as the script writes them now
        text = new_md[: at_new.start()] + text[at_old.start() :]
    text = re.sub(r"\*\*\d+ of \d+ models pass every check", f"**{ok} of {len(rows)} models pass every check", text)
    tail = new_md.split("\n## Not covered", 1)
    return text.rstrip("\n") + ("\n\n## Not covered" + tail[1] if len(tail) == 2 else "\n")


def _read_rows(jsonl: Path) -> dict[str, dict[str, Any]]:
    """The results file: the last row of each model wins (a re-run replaces the old row)."""
    done: dict[str, dict[str, Any]] = {}
    if jsonl.exists():
        for line in jsonl.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[r["model"]] = r
    return done


def _claim(claims: Path, name: str) -> bool:
    """Claim a model for this worker (several workers may share one results file).

    A claim file holds the claiming process id; a claim left by a process that is gone (a run
    that was stopped) is taken over, so a stopped sweep resumes where it stopped.
    """
    path = claims / name
    for _ in range(2):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            try:
                pid = int(path.read_text().strip() or "0")
                os.kill(pid, 0)
                return False  # a live worker has it
            except (ValueError, ProcessLookupError, FileNotFoundError):
                path.unlink(missing_ok=True)  # stale: its worker is gone
                continue
            except PermissionError:
                return False
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        return True
    return False


def _phase_limit(base: float, params: int | None) -> float:
    """Seconds one phase of one model may take: ``base``, more for models over 50 M params.

    The lenses' cost grows with the weights (the parameters lens reads every one, the symmetry
    check runs copies), so a fixed limit would stop a large model for being large, not for
    hanging; a phase that makes no progress within this limit is stopped.
    """
    return base * max(1.0, (params or 0) / 50e6)


def _worker(conn: Any, case: Case, n: int) -> None:
    """A forked sweep worker: one model's row, heartbeats on the way (see :func:`run_one`)."""
    global _PIPE
    _PIPE = conn
    try:
        row = check_model(case, n=n)
    except BaseException as exc:  # check_model never raises; this is a last resort for the row
        row = {"model": case.name, "error": f"{type(exc).__name__}: {str(exc)[:300]}"}
    conn.send(("row", json.loads(json.dumps(row, default=str)), None))
    conn.close()


def _preload() -> None:
    """Import the heavy modules once in the parent: each forked worker then starts at once.

    A fresh interpreter per model spent 8–18 s importing torch, torchvision, timm,
    transformers and netxray's report (matplotlib) on this machine, before any work.
    """
    import importlib

    for mod in ("torchvision", "timm", "transformers", "netxray.report", "netxray.capture.graph",
                "netxray.lenses.symmetry", "netxray.lenses.parameters"):  # fmt: skip
        try:
            importlib.import_module(mod)
        except ImportError:
            pass


def run_one(name: str, case: Case, n: int, timeout: float, max_seconds: float) -> dict[str, Any]:
    """One model in a forked process, stopped when a phase outlives its limit (never raises).

    The worker reports each phase (build, graph, each lens, checks) as it starts; the parent
    stops it when one phase runs longer than :func:`_phase_limit` or the model runs longer than
    ``max_seconds`` in all, and the row says which phase was stopped.
    """
    import multiprocessing as mp

    t0 = time.perf_counter()
    ctx = mp.get_context("fork")
    parent, child = ctx.Pipe(duplex=False)
    proc = ctx.Process(target=_worker, args=(child, case, n), daemon=True)  # forked: no pickling
    proc.start()
    child.close()
    phase, params, row, killed = "start", None, None, None
    try:
        row, phase, killed, params = _watch(proc, parent, t0, timeout, max_seconds)
    finally:  # a stopped sweep (SIGTERM, Ctrl-C) leaves no worker behind
        if proc.is_alive() and row is None:
            proc.kill()
    proc.join(timeout=30)
    if row is None:
        why = killed or f"the worker exited {proc.exitcode} in phase {phase} without a row"
        if proc.exitcode == -9 and not killed:
            why += " (killed by the system: out of memory?)"
        row = {"model": name, "source": case.source, "input": _input_desc(case), "error": why, "params": params}
    row["wall_seconds"] = round(time.perf_counter() - t0, 1)
    row.setdefault("seconds", row["wall_seconds"])
    row["ok"] = _row_ok(row)
    return row


def _cpu_seconds(pid: int) -> float | None:
    """CPU seconds (user + system) a process has used, from /proc (None where there is none)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


def _watch(proc: Any, parent: Any, t0: float, timeout: float, max_seconds: float) -> tuple:
    """Follow a worker's heartbeats until its row arrives or a limit stops it.

    The limits count the worker's CPU seconds where /proc has them (else wall seconds): on a
    machine shared with other work a starved worker is slow, not stuck, and is not stopped for
    that; a phase that keeps computing past its limit is.
    """

    def clock() -> float:
        cpu = _cpu_seconds(proc.pid)
        return cpu if cpu is not None else time.perf_counter() - t0

    phase, since, params, row, killed = "start", clock(), None, None, None
    while row is None:
        if parent.poll(1.0):
            try:
                kind, value, extra = parent.recv()
            except EOFError:
                break  # the worker died without a row (e.g. killed for memory)
            if kind == "phase":
                phase, since = value, clock()
                params = extra if extra is not None else params
            else:
                row = value
            continue
        if not proc.is_alive() and not parent.poll(0):
            break
        now = clock()
        limit = _phase_limit(timeout, params)
        if now - since > limit:
            killed = f"timed out: phase {phase} ran over its {limit:.0f} s limit"
        elif now > max_seconds:
            killed = f"timed out: over the {max_seconds:.0f} s limit per model (in phase {phase})"
        if killed:
            proc.kill()
            break
    return row, phase, killed, params


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated model names: (re)measure these and replace their rows "
                    "(default: every model not yet in the results file)")  # fmt: skip
    ap.add_argument("--representative", action="store_true", help="only the representative subset")
    ap.add_argument("--large-first", action="store_true",
                    help="the largest models first (smallest of them first): for a second worker")  # fmt: skip
    ap.add_argument("--timeout", type=int, default=600,
                    help="seconds one phase of one model may run (scaled up for models over 50 M params)")
    ap.add_argument("--max-model-seconds", type=int, default=3600, help="seconds per model in all")
    ap.add_argument("--out", default="docs/compat.md")
    ap.add_argument("--jsonl", default="runs/compat.jsonl")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one model, print its row
    ap.add_argument("--n", type=int, default=N_DEFAULT)
    ap.add_argument("--render", action="store_true", help="only write the table from the results file")
    ap.add_argument("--note", help="a paragraph about this run, written above the table")
    ap.add_argument("--splice", action="store_true",
                    help="with --only: replace (or add) only these models' rows in the existing --out table, "
                    "keeping the others (for a results file that lacks the full run's rows)")  # fmt: skip
    args = ap.parse_args(argv)
    src = str(Path(__file__).resolve().parents[1] / "src")
    if src not in sys.path:  # measure this checkout's netxray, not another installed copy
        sys.path.insert(0, src)
    from netxray._threads import set_threads

    # one thread for torch AND for BLAS: numpy's OpenBLAS pool left at 2 threads on a shared
    # 2-core machine spins against the other processes (a 1024×48 QR: 570 ms vs 7 ms)
    set_threads(1)
    import signal

    # SIGTERM (kill PID) ends the sweep like Ctrl-C: the running worker is stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    cases = all_cases()
    if args.one:
        print(json.dumps(check_model(cases[args.one], n=args.n), default=str))
        return 0
    names = list(cases)
    # the largest models last: a stopped run then costs the fewest rows
    names.sort(key=lambda n: (_LAST.index(n) if n in _LAST else -1, n not in REPRESENTATIVE,
                              cases[n].source == "torchvision"))  # fmt: skip
    todo = list(REPRESENTATIVE) if args.representative else names
    if args.large_first:  # a second worker beside a first one: the two ends of the list meet
        todo = [n for n in _LAST if n in todo] + [n for n in todo if n not in _LAST]
    rerun: set[str] = set()
    if args.only:
        todo = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in todo if s not in cases]
        if unknown:
            ap.error(f"unknown model(s) {unknown}; known: {', '.join(cases)}")
        rerun = set(todo)
    jsonl = Path(args.jsonl)
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    done = _read_rows(jsonl)
    if not args.render:
        _preload()
    claims = jsonl.with_suffix(".claims")
    claims.mkdir(exist_ok=True)
    pending = [] if args.render else [n for n in todo if n not in done or n in rerun]
    while pending:
        ran = False
        for name in list(pending):
            # the largest models one at a time across workers (each holds several GB, twice
            # during the symmetry check's float64 copy): a busy one is retried later
            heavy = name in _HEAVY
            if heavy and not _claim(claims, "_heavy"):
                continue
            pending.remove(name)
            try:
                if not _claim(claims, name):
                    continue  # another worker has it
                if name not in rerun and name in _read_rows(jsonl):  # measured meanwhile
                    (claims / name).unlink(missing_ok=True)
                    continue
                try:
                    row = run_one(name, cases[name], args.n, args.timeout, args.max_model_seconds)
                    row["n"] = args.n
                    row["measured_at"] = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
                    done[name] = row
                    with jsonl.open("a") as f:
                        f.write(json.dumps(row, default=str) + "\n")
                finally:
                    (claims / name).unlink(missing_ok=True)
                ran = True
                print(f"{name}: {'ok' if row['ok'] else 'FAIL'} {row.get('seconds')} s {row.get('error', '')}",
                      flush=True)  # fmt: skip
            finally:
                if heavy:
                    (claims / "_heavy").unlink(missing_ok=True)
            break  # back to the start of the list: a deferred heavy model may be free now
        if pending and not ran:
            time.sleep(20)  # only heavy models are left and another worker runs one
    done.update(_read_rows(jsonl))  # rows another worker wrote meanwhile
    rows = [done[n] for n in names if n in done]
    missing = [n for n in names if n not in done]
    text = render(rows, missing, args.note)
    if args.splice and args.only and Path(args.out).exists():
        text = splice(Path(args.out).read_text(), text, rerun)
    Path(args.out).write_text(text)
    print(f"wrote {args.out}: {sum(bool(r.get('ok')) for r in rows)}/{len(rows)} ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
