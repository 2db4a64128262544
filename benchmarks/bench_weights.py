"""Benchmark: weight statistics and node strengths of a ~25M-parameter model (goal: a few seconds).

Side by side in one run: netxray's ``weight_stats`` against a direct per-tensor baseline
(``scipy.stats.describe`` + ``np.percentile`` + norms, float64), and ``node_strengths``.
Prints wall time, peak RSS growth and the ratio netxray / baseline.

    .venv/bin/python benchmarks/bench_weights.py [--dim 512 --depth 12]
"""

from __future__ import annotations

import argparse
import resource
import time

import numpy as np
import torch
from scipy import stats


def rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def baseline(model: torch.nn.Module) -> int:
    n = 0
    for _, p in model.named_parameters():
        x = p.detach().double().numpy().ravel()
        x = x[np.isfinite(x)]
        stats.describe(x)
        np.percentile(x, [0, 25, 50, 75, 100])
        np.abs(x).sum(), np.linalg.norm(x)
        n += x.size
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--dim", type=int, default=512)
    ap.add_argument("--depth", type=int, default=12)
    args = ap.parse_args()
    torch.set_num_threads(1)
    from netxray.lenses.parameters import node_strengths, weight_stats
    from netxray.models import build_model, default_config

    torch.manual_seed(0)
    import warnings

    warnings.filterwarnings("ignore", category=RuntimeWarning)  # scipy's precision notes on LayerNorm ones
    model = build_model(default_config("vit", [3, 32, 32], 10, dim=args.dim, depth=args.depth,
                                       num_heads=8, mlp_ratio=2, patch_size=4))
    n_params = sum(p.numel() for p in model.parameters())
    r0 = rss_mib()
    print(f"model: ViT dim={args.dim} depth={args.depth}: {n_params / 1e6:.1f}M parameters "
          f"({n_params * 4 / 2**20:.0f} MiB float32); RSS after build {r0:.0f} MiB")

    t, c = time.perf_counter(), time.process_time()
    baseline(model)
    t_base, c_base = time.perf_counter() - t, time.process_time() - c
    r1 = rss_mib()
    t, c = time.perf_counter(), time.process_time()
    df = weight_stats(model)
    t_ws, c_ws = time.perf_counter() - t, time.process_time() - c
    r2 = rss_mib()
    t, c = time.perf_counter(), time.process_time()
    st = node_strengths(model)
    t_ns, c_ns = time.perf_counter() - t, time.process_time() - c
    r3 = rss_mib()
    # wall and CPU time: on a shared machine the CPU time is the number that compares across runs
    print(f"baseline (scipy describe + percentiles per tensor): {t_base:6.2f} s wall {c_base:6.2f} s CPU  peak RSS +{r1 - r0:.0f} MiB")
    print(f"weight_stats ({len(df)} rows incl. global):        {t_ws:6.2f} s wall {c_ws:6.2f} s CPU  peak RSS +{max(r2 - r1, 0):.0f} MiB beyond baseline peak")
    print(f"node_strengths ({len(st)} rows):                  {t_ns:6.2f} s wall {c_ns:6.2f} s CPU  peak RSS +{max(r3 - r2, 0):.0f} MiB beyond previous peak")
    print(f"ratio weight_stats / baseline (CPU): {c_ws / c_base:.2f}  (weight_stats also computes the global "
          "row over all weights and skew/kurtosis on the finite values)")
    print(f"total stats + strengths: {t_ws + t_ns:.2f} s; peak RSS {r3:.0f} MiB")


if __name__ == "__main__":
    main()
