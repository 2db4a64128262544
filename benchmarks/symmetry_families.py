"""Symmetry coverage of the families the compatibility sweep reported as not analysed (issue 10,
item 3): grouped convolutions (RegNet X/Y, ResNeXt, timm RegNetX), ShuffleNet V2, timm GhostNet,
MobileViT, LeViT, MLP-Mixer, timm models built for another image size, and models whose outputs
are all zero at random init (torchvision ViT, SqueezeNet 1.0); and those of issue 21: timm BEiT
and EVA02 (zero-initialised q/v biases), a Linear used twice, a tied autoencoder, a two-input
model, timm nf_resnet26 (weight standardisation), LSTM and GRU, and small Hugging Face models
(Mixtral in float32, GPT-NeoX, Phi-3, Bloom, OPT, CLIP, ALBERT).

Each model: random init, small random inputs (or none: the lens builds its own probe), one call
of ``symmetry_group`` with verification. One line per model: status, axes (verified), kinds,
parts not analysed, log10 |G|, seconds, and ``false``: how many reported axes fail a permutation
test written here independently of the lens (plain tensor indexing) on a copy whose parameters
and running statistics are *all* random — an axis is a claim about every parameter value; it
must be 0 everywhere. One torch thread (the machine is shared).

    PYTHONPATH=src .venv/bin/python benchmarks/symmetry_families.py [name-filter ...]
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import torch
from torch import nn
from torch.nn import functional as F

from netxray.lenses import symmetry as sym
from netxray.lenses.symmetry import symmetry_group


class _SharedLinear(nn.Module):
    """One Linear(16, 16) used twice with a ReLU between: W → PWPᵀ."""

    def __init__(self) -> None:
        super().__init__()
        self.inp, self.fc, self.out = nn.Linear(4, 16), nn.Linear(16, 16), nn.Linear(16, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(torch.relu(self.fc(torch.relu(self.fc(torch.relu(self.inp(x)))))))


class _TiedAutoencoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(8, 5)
        self.dec_bias = nn.Parameter(torch.zeros(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(torch.relu(self.enc(x)), self.enc.weight.t(), self.dec_bias)


class _TwoInputs(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a, self.b, self.h = nn.Linear(4, 6), nn.Linear(3, 6), nn.Linear(6, 3)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.h(torch.relu(self.a(x) + self.b(y)))


class TopOneMoE(nn.Module):
    """One mixture-of-experts layer written by hand: a router, a ModuleList of experts, top-1
    routing (each expert sees only the samples routed to it)."""

    def __init__(self) -> None:
        super().__init__()
        self.embed, self.router = nn.Linear(4, 8), nn.Linear(8, 3)
        self.experts = nn.ModuleList(
            [nn.Sequential(nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 8)) for _ in range(3)]
        )
        self.head = nn.Linear(8, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.embed(x))
        route = self.router(h).argmax(-1)
        y = torch.zeros_like(h)
        for i, expert in enumerate(self.experts):
            mask = route == i
            if mask.any():
                y[mask] = expert(h[mask])
        return self.head(torch.relu(h + y))


class FunctionalOnly(nn.Module):
    """No submodule: parameters on the root, layers written with torch.nn.functional."""

    def __init__(self) -> None:
        super().__init__()
        self.w1, self.b1 = nn.Parameter(torch.randn(16, 4) * 0.5), nn.Parameter(torch.zeros(16))
        self.w2, self.b2 = nn.Parameter(torch.randn(16, 16) * 0.25), nn.Parameter(torch.zeros(16))
        self.w3 = nn.Parameter(torch.randn(3, 16) * 0.25)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.relu(F.linear(x, self.w1, self.b1))
        x = torch.tanh(F.linear(x, self.w2, self.b2))
        return F.linear(x, self.w3)


class _Recurrent(nn.Module):
    def __init__(self, cls: type) -> None:
        super().__init__()
        self.rnn = cls(4, 8, num_layers=2, batch_first=True)
        self.head = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.rnn(x)[0][:, -1])


def _hf(name: str):
    import transformers as T

    cfgs = {
        "mixtral": lambda: T.MixtralForCausalLM(T.MixtralConfig(
            vocab_size=64, hidden_size=16, intermediate_size=24, num_hidden_layers=1, num_attention_heads=4,
            num_key_value_heads=2, num_local_experts=3, num_experts_per_tok=2, max_position_embeddings=16)),
        "gpt_neox": lambda: T.GPTNeoXForCausalLM(T.GPTNeoXConfig(
            vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=4, intermediate_size=32,
            max_position_embeddings=16)),
        "phi3": lambda: T.Phi3ForCausalLM(T.Phi3Config(
            vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=4, num_key_value_heads=2,
            intermediate_size=32, max_position_embeddings=16, pad_token_id=0, eos_token_id=1, bos_token_id=1)),
        "bloom": lambda: T.BloomForCausalLM(T.BloomConfig(vocab_size=64, hidden_size=16, n_layer=1, n_head=4)),
        "opt": lambda: T.OPTForCausalLM(T.OPTConfig(
            vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=4, ffn_dim=32,
            max_position_embeddings=16, word_embed_proj_dim=16)),
        "clip": lambda: T.CLIPVisionModel(T.CLIPVisionConfig(
            hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=4, image_size=16,
            patch_size=8)),
        "albert": lambda: T.AlbertForMaskedLM(T.AlbertConfig(
            vocab_size=64, embedding_size=8, hidden_size=16, num_hidden_layers=2, num_attention_heads=4,
            intermediate_size=32, max_position_embeddings=16)),
    }
    return cfgs[name]


def _random_copy(model: nn.Module) -> nn.Module:
    """A float64 eval copy whose floating state (parameters, running statistics) is all random
    (running variances positive); tied tensors stay tied."""
    m = sym._eval64(model)
    g = torch.Generator().manual_seed(5)
    seen = set()
    with torch.no_grad():
        for k, t in m.state_dict(keep_vars=True).items():
            if not t.is_floating_point() or id(t) in seen:
                continue
            seen.add(id(t))
            t.copy_(torch.rand(t.shape, generator=g, dtype=t.dtype) + 0.5 if k.endswith("running_var")
                    else torch.randn(t.shape, generator=g, dtype=t.dtype) * 0.3)
    m.train()
    return m.eval()  # drops caches of parameter-derived tensors (LeViT)


def _moved(t: torch.Tensor, mem, size: int, perm: torch.Tensor) -> None:
    seg = torch.arange(mem.segments)[:, None, None] * (size * mem.block)
    pos = (mem.offset + seg + torch.arange(size)[None, :, None] * mem.block + torch.arange(mem.block)).reshape(-1)
    src = (mem.offset + seg + perm[None, :, None] * mem.block + torch.arange(mem.block)).reshape(-1)
    t.index_copy_(mem.dim, pos, t.index_select(mem.dim, src).clone())


_EPS = 1e-7  # about float32's rounding


def _rounding_noise(m: nn.Module, probe, y0) -> float:
    """How far the outputs move when every weight changes by a rounding-sized relative amount:
    the floor below which a permutation test cannot tell a symmetry from summation order."""
    g = torch.Generator().manual_seed(7)
    saved = []
    with torch.no_grad():
        for p in m.parameters():
            if p.is_floating_point():
                saved.append((p, p.clone()))
                p.mul_(1 + _EPS * torch.randn(p.shape, generator=g, dtype=p.dtype))
        try:
            y = sym._run(m, probe)
        finally:
            for p, orig in saved:
                p.copy_(orig)
    return max(float((a - b).abs().max()) for a, b in zip(y, y0, strict=True))


def _false_axes(model: nn.Module, data, table) -> str:
    """How many reported axes move the outputs of an all-random copy (independent test).

    The tolerance is the lens's (the dtype the model runs in), raised to 10× the rounding floor
    where rounding alone moves the outputs more; a model whose outputs rounding moves by over
    1e-3 is not rechecked (said so), since no permutation test can tell there."""
    an = sym._analyse(model, data)
    axes = {a.name: a for a in an.axes}
    probe = an.probe if an.probe is not None else sym._probe_inputs(model, data, n=8)
    m = _random_copy(model)
    try:
        y0 = sym._run(m, probe)
    except Exception:  # a model that runs in float32 only (Mixtral)
        m = m.float()
        y0 = sym._run(m, probe)
    ref = max(float(t.abs().max()) for t in y0)
    tol = table.attrs["summary"].get("verify_rtol") or 1e-10
    noise = _rounding_noise(m, probe, y0) / ref
    if noise > 1e-3:  # rounding alone moves the outputs (an iterative model on random weights)
        return (f"not rechecked: a {_EPS:g} relative change of every weight moves the outputs by "
                f"{noise:.1e} (relative) on this all-random copy")
    tol = max(tol, 10 * noise)
    bad, skipped = 0, 0
    gen = torch.Generator().manual_seed(1)
    for name in table["axis"]:
        ax = axes.get(name)
        if ax is None or any(mm.groups > 1 for mm in ax.writers + ax.readers) or ax.groups > 1:
            skipped += 1  # grouped axes: the lens's own test only
            continue
        perm = torch.randperm(ax.size, generator=gen)
        sd = m.state_dict(keep_vars=True)
        saved, done = {}, set()
        with torch.no_grad():
            for mem in ax.writers + ax.readers:
                t = sd[mem.key]
                k = (id(t), mem.dim, mem.offset, mem.block, mem.segments)
                if k in done:
                    continue  # one tensor under two keys (tied) moves once
                done.add(k)
                saved.setdefault(id(t), (t, t.clone()))
                _moved(t, mem, ax.size, perm)
            m.train()
            m.eval()
            y = sym._run(m, probe)
            for t, orig in saved.values():
                t.copy_(orig)
            m.train()
            m.eval()
        if max(float((a - b).abs().max()) for a, b in zip(y, y0, strict=True)) > tol * ref:
            bad += 1
    return f"{bad}" + (f" ({skipped} grouped not rechecked)" if skipped else "")


def _issue21_cases():
    import timm

    def seq(n):
        return torch.randn(n, 5, 4, generator=torch.Generator().manual_seed(0))

    out = [
        ("timm beit tiny", lambda: timm.create_model("beit_base_patch16_224", pretrained=False, img_size=32,
                                                     patch_size=8, embed_dim=32, depth=2, num_heads=4,
                                                     num_classes=3), None),
        ("timm eva02 tiny", lambda: timm.create_model("eva02_tiny_patch14_224", pretrained=False, img_size=28,
                                                      depth=2, num_classes=3), None),
        ("shared Linear", _SharedLinear, torch.randn(8, 4)),
        ("tied autoencoder", _TiedAutoencoder, torch.randn(8, 8)),
        ("two inputs", _TwoInputs, (torch.randn(8, 4), torch.randn(8, 3))),
        ("top-1 MoE (hand-written)", TopOneMoE, torch.randn(16, 4)),
        ("functional only", FunctionalOnly, torch.randn(8, 4)),
        ("timm nf_resnet26", lambda: timm.create_model("nf_resnet26", pretrained=False, num_classes=3),
         torch.rand(2, 3, 32, 32)),
        ("LSTM ×2 + MLP", lambda: _Recurrent(nn.LSTM), seq(8)),
        ("GRU ×2 + MLP", lambda: _Recurrent(nn.GRU), seq(8)),
    ]
    out += [(f"HF {n}", _hf(n), None) for n in ("mixtral", "gpt_neox", "phi3", "bloom", "opt", "clip", "albert")]
    return out


def _cases():
    import timm
    import torchvision.models as tv

    def img(s):
        return torch.rand(2, 3, s, s, generator=torch.Generator().manual_seed(0))

    def t(name, **kw):
        return lambda: timm.create_model(name, pretrained=False, num_classes=3, **kw)

    def v(name, **kw):
        return lambda: getattr(tv, name)(weights=None, num_classes=3, **kw)

    out = [(n, v(n), img(32)) for n in ("regnet_x_400mf", "regnet_x_800mf", "regnet_y_400mf", "regnet_y_800mf",
                                         "resnext50_32x4d", "shufflenet_v2_x0_5", "shufflenet_v2_x1_0")]
    out += [("timm regnetx_002", t("regnetx_002"), img(32)), ("timm ghostnet_100", t("ghostnet_100"), img(32)),
            ("timm mobilevit_xxs", t("mobilevit_xxs"), img(64)),
            ("timm levit_128s @64", t("levit_128s", img_size=64), None),
            ("timm mixer_s16_224 @32", t("mixer_s16_224", img_size=32), None),
            ("timm vit_tiny_patch16_224 @32", t("vit_tiny_patch16_224", img_size=32), None),
            ("timm deit_tiny_patch16_224 @32", t("deit_tiny_patch16_224", img_size=32), None),
            ("timm swin_tiny_patch4_window7_224 @64", t("swin_tiny_patch4_window7_224", img_size=64), None),
            ("vit_b_16 @32", v("vit_b_16", image_size=32), None), ("squeezenet1_0", v("squeezenet1_0"), img(64))]
    return out + _issue21_cases()


def main(filters: list[str]) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print("| model | status | axes (verified) | kinds | not analysed | log10 |G| | s | false on random weights |")
    print("|---|---|---|---|---|---|---|---|")
    for name, make, x in _cases():
        if filters and not any(f in name for f in filters):
            continue
        m = make().eval()
        t0 = time.perf_counter()
        g = symmetry_group(m, x)
        sec = time.perf_counter() - t0
        s = g.attrs["summary"]
        kinds = ", ".join(f"{k} {n}" for k, n in Counter(g["kind"]).most_common())
        false = _false_axes(m, x, g) if len(g) else "-"
        print(f"| {name} | {s['status'][:60]} | {len(g)} ({int(g['verified'].sum())}) | {kinds} | "
              f"{len(s['not_analysed'])} | {s['log10_order']:.1f} | {sec:.1f} | {false} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
