"""Benchmark: netxray's spectral view of the weights against WeightWatcher, same layers.

Model: a stack of Linear layers (random Gaussian ones — Marchenko–Pastur, no heavy tail — and
ones built with a power-law spectrum, p(λ) ∝ λ^{-α}, α ∈ {2, 2.5, 3, 4}, as trained layers
show), sizes 512–2048. Both tools get the same nn.Module; WeightWatcher ``analyze()`` with its
defaults (power-law fit with the same estimator: continuous MLE, x_min by minimal KS distance)
against ``netxray.lenses.parameters.weight_spectra``. Printed per layer: both α, |Δα|, both
x_min (both on the eigenvalues of WᵀW, unnormalised); then both wall times (one thread each, interleaved, best of --repeats) and their ratio.
Goal (issue 12): ≥ 3× faster, α in agreement.

Requires the ``bench`` extra (``pip install netxray[bench]``: weightwatcher).

    python benchmarks/bench_spectral.py [--repeats 2]
"""

from __future__ import annotations

import argparse
import logging
import time
import warnings

import numpy as np
import torch
from torch import nn

from netxray._threads import set_threads


def power_law_linear(n_out: int, n_in: int, alpha: float, rng) -> nn.Linear:
    m = min(n_out, n_in)
    lam = (1 - rng.random(m)) ** (-1 / (alpha - 1))
    u, _ = np.linalg.qr(rng.normal(size=(n_out, m)))
    v, _ = np.linalg.qr(rng.normal(size=(n_in, m)))
    layer = nn.Linear(n_in, n_out)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy((u * np.sqrt(lam)) @ v.T))
    return layer


def build(seed: int = 0) -> tuple[nn.Module, dict[str, str]]:
    rng = np.random.default_rng(seed)
    torch.manual_seed(seed)
    layers, kinds = [], {}
    specs = [("random", 1024, 512, None), ("random", 2048, 1024, None), ("pl", 1024, 1024, 2.0),
             ("pl", 2048, 1024, 2.5), ("pl", 1024, 512, 3.0), ("pl", 1536, 1536, 4.0),
             ("random", 1536, 1536, None)]  # fmt: skip
    for i, (kind, n_out, n_in, alpha) in enumerate(specs):
        layer = power_law_linear(n_out, n_in, alpha, rng) if kind == "pl" else nn.Linear(n_in, n_out)
        layers.append(layer)
        kinds[f"{i}.weight"] = "random (MP)" if kind == "random" else f"power law α={alpha}"
    return nn.Sequential(*layers), kinds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    set_threads(1)  # torch and every BLAS pool (scipy's own included), before weightwatcher loads
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    import weightwatcher as ww

    from netxray.lenses.parameters import weight_spectra

    model, kinds = build()
    t_ww = t_nx = np.inf
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        ours = weight_spectra(model)
        t_nx = min(t_nx, time.perf_counter() - t0)
        t0 = time.perf_counter()
        theirs = ww.WeightWatcher(model=model).analyze()
        t_ww = min(t_ww, time.perf_counter() - t0)
    theirs = theirs.reset_index(drop=True)
    ours = ours.reset_index(drop=True)
    print(f"{'layer':>9} {'kind':>17} {'shape':>10} {'α netxray':>10} {'α ww':>8} {'|Δα|':>8} "
          f"{'xmin nx':>9} {'xmin ww':>9} {'KS nx':>7} {'stable rank':>11}")  # fmt: skip
    diffs = []
    for i, row in ours.iterrows():
        a_ww = float(theirs.loc[i, "alpha"]) if i < len(theirs) else float("nan")
        x_ww = float(theirs.loc[i, "xmin"]) if i < len(theirs) else float("nan")
        diffs.append(abs(row["alpha"] - a_ww))
        print(f"{row['name']:>9} {kinds[row['name']]:>17} {row['shape']:>10} {row['alpha']:10.4f} "
              f"{a_ww:8.4f} {diffs[-1]:8.1e} {row['xmin']:9.4g} {x_ww:9.4g} "
              f"{row['ks_distance']:7.3f} {row['stable_rank']:11.2f}")  # fmt: skip
    print(f"max |Δα| = {np.nanmax(diffs):.2e} (netxray fits tails of ≥ 10 eigenvalues; "
          "WeightWatcher also tries shorter ones)")
    # the same candidate rule as WeightWatcher (tails down to 2 values): agreement check
    loose = weight_spectra(model, min_tail=2).reset_index(drop=True)
    d2 = np.abs(loose["alpha"].to_numpy() - theirs["alpha"].to_numpy()[: len(loose)])
    print(f"with WeightWatcher's candidate rule (min_tail=2): max |Δα| = {np.nanmax(d2):.2e}")
    print(f"time: netxray {t_nx:.2f} s, weightwatcher {t_ww:.2f} s: {t_ww / t_nx:.1f}x faster "
          f"(goal ≥ 3x), one thread each")  # fmt: skip


if __name__ == "__main__":
    main()
