"""Benchmark of lens 4 (symmetry): canonicalize and align at realistic sizes.

Goal (issue 6): a second or two each on 2 cores for an MLP 784-1024-1024-10 and the built-in
ResNet. Measured side by side in one run, with ratios against two floors every such operation
pays anyway — a float64 deep copy of the model, and one forward pass of 256 inputs — plus the
peak Python-side memory (tracemalloc) relative to the model's float64 size.

    .venv/bin/python benchmarks/bench_symmetry.py
"""

from __future__ import annotations

import copy
import time
import tracemalloc

import torch

from netxray.lenses.symmetry import align, canonicalize, functionally_equivalent, symmetry_group
from netxray.models import build_model


def _best(fn, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def _peak_mb(fn) -> float:
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def _permuted(model: torch.nn.Module, seed: int) -> torch.nn.Module:
    """b: a second network of the same architecture (fresh initialisation)."""
    torch.manual_seed(seed)
    return build_model(model.netxray_config).eval()


def bench(name: str, model: torch.nn.Module, x: torch.Tensor) -> None:
    other = _permuted(model, 1)
    n_params = sum(p.numel() for p in model.parameters())
    size_mb = 8 * n_params / 2**20
    t_copy = _best(lambda: copy.deepcopy(model).double())
    with torch.no_grad():
        t_fwd = _best(lambda: model(x))
    t_group = _best(lambda: symmetry_group(model))
    t_canon = _best(lambda: canonicalize(model))
    t_align = _best(lambda: align(model, other))
    t_eq = _best(lambda: functionally_equivalent(model, canonicalize(model), search_steps=0), repeat=1)
    mem = _peak_mb(lambda: canonicalize(model))
    print(f"== {name}: {n_params:,} parameters ({size_mb:.1f} MB in float64)")
    print(f"  floor  deepcopy+double {t_copy * 1e3:8.1f} ms | forward(256) {t_fwd * 1e3:8.1f} ms")
    for label, t in (("symmetry_group", t_group), ("canonicalize", t_canon), ("align", t_align),
                     ("equivalent (cert.)", t_eq)):
        print(f"  {label:19s} {t * 1e3:8.1f} ms   = {t / t_copy:6.1f}× deepcopy, {t / t_fwd:6.1f}× forward")
    print(f"  canonicalize peak memory {mem:.1f} MB = {mem / size_mb:.1f}× the float64 model")


def main() -> None:
    torch.set_num_threads(2)
    torch.manual_seed(0)
    mlp = build_model({"arch": "mlp", "input_shape": [784], "num_classes": 10, "widths": [1024, 1024]}).eval()
    bench("MLP 784-1024-1024-10", mlp, torch.randn(256, 784))
    torch.manual_seed(0)
    resnet = build_model({"arch": "resnet", "input_shape": [3, 32, 32], "num_classes": 10}).eval()
    bench("built-in ResNet (CIFAR shape, default config)", resnet, torch.randn(256, 3, 32, 32))


if __name__ == "__main__":
    main()
