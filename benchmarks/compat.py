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

Each model runs in its own process with a time limit; results go to a JSON-lines file and a
Markdown table (``docs/compat.md``). Run it with ``make compat`` or:

    python benchmarks/compat.py [--only resnet18,hf_bert] [--timeout 900] [--out docs/compat.md]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
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
SEQ_LEN = 8
VOCAB = 64


@dataclass
class Case:
    """One model of the sweep: how to build it, its input, and the blocks known from its source."""

    name: str
    source: str  # torchvision | timm | hf
    build: Callable[[], nn.Module]
    kind: str = "image"  # image | tokens | pixels (dict with pixel_values)
    size: int = 32
    expected_blocks: int | None = None


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
    return cases


_LAST = {"vit_h_14", "vit_l_16", "vit_l_32", "regnet_y_128gf", "regnet_y_32gf", "regnet_x_32gf",
         "regnet_y_16gf", "regnet_x_16gf", "efficientnet_b7", "efficientnet_b6", "efficientnet_b5",
         "efficientnet_v2_l", "efficientnet_v2_m", "convnext_large", "convnext_base", "swin_b",
         "swin_v2_b", "resnext101_64x4d", "resnext101_32x8d", "wide_resnet101_2", "resnet152",
         "vgg19_bn", "vgg19", "vgg16_bn", "vgg16", "maxvit_t", "densenet201", "densenet161"}  # fmt: skip

REPRESENTATIVE = ("resnet18", "mobilenet_v2", "swin_t", "densenet121", "vit_b_16",
                  "hf_bert", "hf_gpt2", "hf_llama")  # fmt: skip


def make_data(case: Case, n: int, seed: int = 0) -> tuple[Any, torch.Tensor]:
    """Random inputs the model accepts and balanced labels (a tensor or a dict of tensors)."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % N_CLASSES
    if case.kind == "tokens":
        ids = torch.randint(2, VOCAB, (n, SEQ_LEN), generator=g)
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}, y
    x = torch.randn(n, 3, case.size, case.size, generator=g)
    return ({"pixel_values": x} if case.kind == "pixels" else x), y


def _head(x: Any, n: int) -> Any:
    return {k: v[:n] for k, v in x.items()} if isinstance(x, dict) else x[:n]


def _call(model: nn.Module, x: Any) -> Any:
    return model(**x) if isinstance(x, dict) else model(x)


def _logits(out: Any) -> torch.Tensor:
    if isinstance(out, torch.Tensor):
        return out
    if hasattr(out, "logits"):
        return out.logits
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
        self.handles = []
        for m in model.modules():
            if isinstance(m, ACTIVATION_MODULES):
                self.handles.append(m.register_forward_pre_hook(self._enter))
                self.handles.append(m.register_forward_hook(self._leave))

    def _enter(self, *_: Any) -> None:
        self.count += 1
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
        return func(*args, **(kwargs or {}))

    def close(self) -> None:
        for h in self.handles:
            h.remove()


def count_activation_calls(model: nn.Module, x: Any) -> int:
    """Activation calls in one forward pass on ``x`` (eval mode, no grad)."""
    counter = _CountActivations(model)
    try:
        with torch.no_grad(), counter:
            _call(model, x)
    finally:
        counter.close()
    return counter.count


def _lenses_direct(model: nn.Module, data: Any, n: int, repeats: int, seed: int) -> dict[str, Any]:
    """The four lenses called as library functions (what ``scan`` runs, without its plots)."""
    import netxray
    from netxray.lenses.parameters import node_strengths

    tables: dict[str, Any] = {}
    status: dict[str, str] = {}
    calls = {
        "nonlinearity": lambda: netxray.nonlinearity_signature(model, data, n_samples=n, seed=seed),
        "modularity": lambda: netxray.modularity_curve(model, data, n=n, k=3, repeats=repeats, seed=seed),
        "parameters": lambda: (netxray.weight_stats(model), node_strengths(model))[0],
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


def check_model(case: Case, *, n: int = 24, repeats: int = 2, seed: int = 0,
                lenses: tuple[str, ...] | None = None, use_scan: bool = True) -> dict[str, Any]:  # fmt: skip
    """Run every check on one model; returns one row of the table (never raises).

    ``use_scan=False`` calls the four lens functions directly (no report, no plots): the test
    suite's representative subset uses it to stay within the test budget.
    """
    from netxray.capture import Capture
    from netxray.capture.graph import record_graph
    from netxray.report import LENSES, scan

    row: dict[str, Any] = {"model": case.name, "source": case.source, "input": _input_desc(case)}
    t0 = time.perf_counter()
    try:
        torch.manual_seed(seed)
        model = case.build().eval()
        row["params"] = sum(p.numel() for p in model.parameters())
        x, y = make_data(case, n, seed)
        ex = _head(x, 2)
        graph = record_graph(model, ex)
        probes = graph.natural_probes()
        stem, pre = graph.stem(), graph.pre_head()
        row.update(
            blocks=len(graph.blocks()), stem=stem.name if stem else None,
            pre_head=pre.name if pre else None, probes=len(probes),
            graph_notes=graph.notes, expected_blocks=case.expected_blocks,
        )  # fmt: skip
        row["activation_calls"] = count_activation_calls(model, ex)
        with torch.no_grad():
            plain = _logits(_call(model, _head(x, 4))).clone()
            with Capture(model, layers=probes):
                captured = _logits(_call(model, _head(x, 4))).clone()
        row["logits_identical"] = bool(torch.equal(plain, captured))
        data = {**x, "labels": y} if isinstance(x, dict) else (x, y)
        if use_scan:
            # no rotated-input null baseline: its d×d random rotation per site dominates wide
            # models at this n (mobilenet_v2: 74 of 80 s) and it checks the estimator, not the model
            report = scan(model, data, lenses or LENSES, n_samples=n, modularity_n=n, k=3,
                          repeats=repeats, seed=seed, progress=False,
                          options={"nonlinearity": {"null_baseline": False}})  # fmt: skip
            row["lenses"] = {name: res.status for name, res in report.results.items()}
            row["failed"] = report.failed
            tables = {name: res.table for name, res in report.results.items() if res.table is not None}
        else:
            direct = _lenses_direct(model, data, n, repeats, seed)
            row["lenses"], row["failed"], tables = direct["status"], direct["failed"], direct["tables"]
        if "nonlinearity" in tables:
            sig = tables["nonlinearity"]
            row["sites"] = int(len(sig))
            row["site_status"] = {str(k): int(v) for k, v in sig["status"].value_counts().items()}
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
            if "verified" in group.columns:
                row["sym_verified"] = int(group["verified"].fillna(False).astype(bool).sum())
            row["sym_not_analysed"] = summ.get("not_analysed")
    except Exception as exc:  # one model that fails is a row, never a crashed sweep
        row["error"] = f"{type(exc).__name__}: {str(exc)[:300]}"
    row["seconds"] = round(time.perf_counter() - t0, 1)
    row["ok"] = _row_ok(row)
    return row


def _input_desc(case: Case) -> str:
    if case.kind == "tokens":
        return f"ids {SEQ_LEN}"
    return f"3×{case.size}×{case.size}"


def _row_ok(row: dict[str, Any]) -> bool:
    """Every check passed: lenses ok, sites = calls, logits identical, curve = probes."""
    return (
        "error" not in row
        and all(s == "ok" for s in row.get("lenses", {}).values())
        and row.get("sites") == row.get("activation_calls")
        and bool(row.get("logits_identical"))
        and bool(row.get("curve_is_probes"))
        and (row.get("expected_blocks") is None or row.get("blocks") == row.get("expected_blocks"))
    )


# ------------------------------------------------------------------------------ the table


def render(rows: list[dict[str, Any]], missing: list[str] | None = None) -> str:
    """The Markdown table of ``docs/compat.md``."""
    total = sum(r.get("seconds", 0) for r in rows)
    ok = sum(bool(r.get("ok")) for r in rows)
    lines = [
        "# Compatibility sweep",
        "",
        "Written by `make compat` (`benchmarks/compat.py`): every model randomly initialised, "
        f"random inputs, {N_CLASSES} balanced random classes, n = 24 samples per lens, 2 "
        "modularity repeats, the signature without its rotated-input null baseline, one process "
        "per model (time limit) on the shared 2-core CPU machine. Columns: lenses "
        "(nonlinearity/modularity/parameters/symmetry, `ok` each), sites = signature sites vs an "
        "independent count of activation calls, `nd` = sites whose input does not depend on the "
        "data (listed apart), logits = bit-identical with and without capture, probes = modularity "
        "points (blocks found + stem + pre-head), symmetry = axes (verified where the lens says), "
        "graph notes = what the recorded graph could not follow.",
        "",
        f"**{ok} of {len(rows)} models pass every check; total {total / 60:.1f} min.**",
        "",
        "| model | source | input | lenses | sites / calls | nd | logits | blocks | probes (stem, pre-head) | symmetry axes | time (s) | notes |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lens = r.get("lenses", {})
        lens_txt = "all ok" if lens and all(s == "ok" for s in lens.values()) else (
            ", ".join(f"{k}: {v}" for k, v in lens.items() if v != "ok") or "—")  # fmt: skip
        nd = r.get("site_status", {}).get("not_data_dependent", 0)
        sym = r.get("sym_axes")
        sym_txt = "—" if sym is None else f"{sym}" + (
            f" ({r['sym_verified']} verified)" if "sym_verified" in r else "")  # fmt: skip
        blocks = r.get("blocks", "—")
        if r.get("expected_blocks") is not None and blocks != r["expected_blocks"]:
            blocks = f"{blocks} (expected {r['expected_blocks']})"
        probes = f"{r.get('probes', '—')} ({r.get('stem') or '—'}, {r.get('pre_head') or '—'})"
        notes = []
        if r.get("error"):
            notes.append(r["error"])
        notes += [f"{k}: {v}" for k, v in (r.get("failed") or {}).items()]
        notes += list(r.get("graph_notes") or [])
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
            f"| {r['model']}{mark} | {r['source']} | {r.get('input', '')} | {lens_txt} | "
            f"{r.get('sites', '—')} / {r.get('activation_calls', '—')} | {nd} | "
            f"{'yes' if r.get('logits_identical') else 'no'} | {blocks} | {probes} | {sym_txt} | "
            f"{r.get('seconds', '—')} | {note_txt} |"
        )
    if missing:
        lines += ["", f"Not measured in this run ({len(missing)}): " + ", ".join(missing) + "."]
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--only", help="comma-separated model names (default: all)")
    ap.add_argument("--representative", action="store_true", help="only the representative subset")
    ap.add_argument("--timeout", type=int, default=900, help="seconds per model")
    ap.add_argument("--out", default="docs/compat.md")
    ap.add_argument("--jsonl", default="runs/compat.jsonl")
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one model, print its row
    ap.add_argument("--n", type=int, default=24)
    ap.add_argument("--render", action="store_true", help="only write the table from the results file")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    cases = all_cases()
    if args.one:
        print(json.dumps(check_model(cases[args.one], n=args.n), default=str))
        return 0
    names = list(cases)
    # the largest models last: a time limit then costs the fewest rows
    names.sort(key=lambda n: (n in _LAST, n not in REPRESENTATIVE, cases[n].source == "torchvision"))
    if args.representative:
        names = list(REPRESENTATIVE)
    if args.only:
        names = [s.strip() for s in args.only.split(",") if s.strip()]
        unknown = [s for s in names if s not in cases]
        if unknown:
            ap.error(f"unknown model(s) {unknown}; known: {', '.join(cases)}")
    jsonl = Path(args.jsonl)
    jsonl.parent.mkdir(parents=True, exist_ok=True)
    done = {}
    if jsonl.exists():  # resume: a model already measured is not run again
        for line in jsonl.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[r["model"]] = r
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(Path(__file__).resolve().parents[1] / "src"),
                                                                      os.environ.get("PYTHONPATH")])))  # fmt: skip
    # several workers may share one results file: each model is claimed once (O_EXCL)
    claims = jsonl.with_suffix(".claims")
    claims.mkdir(exist_ok=True)
    for name in ([] if args.render else names):
        if name in done:
            continue
        try:
            os.close(os.open(claims / name, os.O_CREAT | os.O_EXCL))
        except FileExistsError:
            continue
        t0 = time.perf_counter()
        try:
            proc = subprocess.run([sys.executable, __file__, "--one", name, "--n", str(args.n)],
                                  capture_output=True, text=True, timeout=args.timeout, env=env)  # fmt: skip
            lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
            row = json.loads(lines[-1]) if lines else {
                "model": name, "source": cases[name].source,
                "error": f"process exited {proc.returncode}: {proc.stderr.strip()[-300:]}"}  # fmt: skip
        except subprocess.TimeoutExpired:
            row = {"model": name, "source": cases[name].source, "error": f"timed out after {args.timeout} s"}
        row.setdefault("seconds", round(time.perf_counter() - t0, 1))
        row["ok"] = _row_ok(row)
        done[name] = row
        with jsonl.open("a") as f:
            f.write(json.dumps(row, default=str) + "\n")
        print(f"{name}: {'ok' if row['ok'] else 'FAIL'} {row.get('seconds')} s {row.get('error', '')}", flush=True)
    for line in jsonl.read_text().splitlines() if jsonl.exists() else []:
        if line.strip():  # rows another worker wrote meanwhile
            r = json.loads(line)
            done[r["model"]] = r
    rows = [done[n] for n in names if n in done]
    missing = [n for n in names if n not in done]
    Path(args.out).write_text(render(rows, missing))
    print(f"wrote {args.out}: {sum(r['ok'] for r in rows)}/{len(rows)} ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
