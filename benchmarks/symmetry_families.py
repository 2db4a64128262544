"""Symmetry coverage of the families the compatibility sweep reported as not analysed (issue 10,
item 3): grouped convolutions (RegNet X/Y, ResNeXt, timm RegNetX), ShuffleNet V2, timm GhostNet,
MobileViT, LeViT, MLP-Mixer, timm models built for another image size, and models whose outputs
are all zero at random init (torchvision ViT, SqueezeNet 1.0).

Each model: random init, small random inputs (or none: the lens builds its own probe), one call
of ``symmetry_group`` with verification. One line per model: status, axes (verified), kinds,
parts not analysed, log10 |G| and seconds. One torch thread (the machine is shared).

    PYTHONPATH=src .venv/bin/python benchmarks/symmetry_families.py [name-filter ...]
"""

from __future__ import annotations

import sys
import time
from collections import Counter

import torch

from netxray.lenses.symmetry import symmetry_group


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
    return out


def main(filters: list[str]) -> None:
    torch.set_num_threads(1)
    torch.manual_seed(0)
    print("| model | status | axes (verified) | kinds | not analysed | log10 |G| | s |")
    print("|---|---|---|---|---|---|---|")
    for name, make, x in _cases():
        if filters and not any(f in name for f in filters):
            continue
        m = make().eval()
        t0 = time.perf_counter()
        g = symmetry_group(m, x)
        sec = time.perf_counter() - t0
        s = g.attrs["summary"]
        kinds = ", ".join(f"{k} {n}" for k, n in Counter(g["kind"]).most_common())
        print(f"| {name} | {s['status'][:60]} | {len(g)} ({int(g['verified'].sum())}) | {kinds} | "
              f"{len(s['not_analysed'])} | {s['log10_order']:.0f} | {sec:.1f} |", flush=True)


if __name__ == "__main__":
    main(sys.argv[1:])
