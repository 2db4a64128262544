"""Benchmark: netxray's spectral view of the weights against WeightWatcher, same layers.

Model: a stack of Linear layers (random Gaussian ones — Marchenko–Pastur, no heavy tail — and
ones built with a power-law spectrum, p(λ) ∝ λ^{-α}, α ∈ {2, 2.5, 3, 4}, as trained layers
show; a bulk with 7 outliers, whose best tail is shorter than 10; a 16-eigenvalue layer, which
WeightWatcher fits with its small-N rule; a tall embedding-like 8192 × 512), sizes 16–8192.
Both tools get the same nn.Module; WeightWatcher ``analyze()`` with its defaults against
``netxray.lenses.parameters.weight_spectra(model, rule="weightwatcher")`` (their minimum tail,
threshold and x_min rule; :func:`netxray.measures.spectral.fit_power_law`). Printed per layer:
α of both, |Δα|, x_min and tail size of both (on the eigenvalues of WᵀW, unnormalised), α with
netxray's default rule (tails ≥ 10), and the per-layer seconds of netxray's whole row against
the SVD WeightWatcher runs (scipy ``svd(W, compute_uv=False)``, ~95 % of its time); then both
CPU times (process time: one thread each, interleaved, best of --repeats; on the shared
machine the wall clock also counts other people's work) and their ratio.
Goal (issue 23): ≥ 5× faster, the same tail and α on every layer.

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


def spiked_linear(n_out: int, n_in: int, rng) -> nn.Linear:
    m = min(n_out, n_in)
    lam = np.concatenate([rng.uniform(0.5, 1.5, m - 7), [9.0, 14.0, 20.0, 31.0, 55.0, 80.0, 150.0]])
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
             ("random", 1536, 1536, None), ("spikes", 768, 768, None), ("random", 64, 16, None),
             ("random", 8192, 512, None)]  # fmt: skip
    for i, (kind, n_out, n_in, alpha) in enumerate(specs):
        if kind == "pl":
            layer = power_law_linear(n_out, n_in, alpha, rng)
        elif kind == "spikes":  # a Marchenko–Pastur-like bulk and 7 outliers: a short best tail
            layer = spiked_linear(n_out, n_in, rng)
        else:
            layer = nn.Linear(n_in, n_out)
        layers.append(layer)
        kinds[f"{i}.weight"] = {"random": "random (MP)", "spikes": "bulk + 7 spikes"}.get(
            kind, f"power law α={alpha}"
        )
    return nn.Sequential(*layers), kinds


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    set_threads(1)  # torch and every BLAS pool (scipy's own included), before weightwatcher loads
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    import scipy.linalg
    import weightwatcher as ww

    from netxray.lenses.parameters import weight_spectra
    from netxray.measures.spectral import spectral_stats

    model, kinds = build()
    t_ww = t_nx = np.inf
    for _ in range(args.repeats):
        t0 = time.process_time()
        ours = weight_spectra(model, rule="weightwatcher")
        t_nx = min(t_nx, time.process_time() - t0)
        t0 = time.process_time()
        theirs = ww.WeightWatcher(model=model).analyze()
        t_ww = min(t_ww, time.process_time() - t0)
    theirs = theirs.reset_index(drop=True)
    ours = ours.reset_index(drop=True)
    default = weight_spectra(model).reset_index(drop=True)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    print(f"{'layer':>9} {'kind':>17} {'shape':>10} {'α nx(ww)':>9} {'α ww':>8} {'|Δα|':>8} "
          f"{'xmin nx':>9} {'xmin ww':>9} {'tail nx':>7} {'tail ww':>7} {'α nx dflt':>9} "
          f"{'s nx':>6} {'s svd':>6} {'ratio':>5}")  # fmt: skip
    diffs, same_tail = [], 0
    sum_nx = sum_svd = sum_eig = 0.0
    for i, row in ours.iterrows():
        a_ww = float(theirs.loc[i, "alpha"]) if i < len(theirs) else float("nan")
        x_ww = float(theirs.loc[i, "xmin"]) if i < len(theirs) else float("nan")
        w = weights[i].detach().double().numpy()
        t0 = time.process_time()
        spectral_stats(w, rule="weightwatcher")
        s_nx = time.process_time() - t0
        t0 = time.process_time()
        sv = scipy.linalg.svd(w, compute_uv=False)
        s_svd = time.process_time() - t0
        gram = w.T @ w if w.shape[0] >= w.shape[1] else w @ w.T
        t0 = time.process_time()
        np.linalg.eigvalsh(gram)
        sum_eig += time.process_time() - t0
        sum_nx += s_nx
        sum_svd += s_svd
        ev = np.sort(sv * sv)
        n_ww = int((ev >= x_ww).sum())  # WeightWatcher's tail: its eigenvalues ≥ its x_min
        same_tail += int(n_ww == row["n_tail"] and abs(row["alpha"] - a_ww) <= 1e-9 * a_ww)
        diffs.append(abs(row["alpha"] - a_ww))
        print(f"{row['name']:>9} {kinds[row['name']]:>17} {row['shape']:>10} {row['alpha']:9.4f} "
              f"{a_ww:8.4f} {diffs[-1]:8.1e} {row['xmin']:9.4g} {x_ww:9.4g} {row['n_tail']:7d} "
              f"{n_ww:7d} {default.loc[i, 'alpha']:9.4f} {s_nx:6.3f} {s_svd:6.3f} {s_svd / s_nx:5.1f}")  # fmt: skip
    print(f"rule='weightwatcher': the same tail and α (to 1e-9) on {same_tail} of {len(ours)} layers, "
          f"max |Δα| = {np.nanmax(diffs):.2e}")
    print(f"per layer, summed: netxray's rows {sum_nx:.2f} s, WeightWatcher's SVDs {sum_svd:.2f} s "
          f"({sum_svd / sum_nx:.1f}x); the symmetric eigensolver alone (LAPACK syevd on the Gram) "
          f"{sum_eig:.2f} s: a bound of {sum_svd / sum_eig:.1f}x even with a free Gram and fit")  # fmt: skip
    print(f"time: netxray {t_nx:.2f} s, weightwatcher {t_ww:.2f} s: {t_ww / t_nx:.1f}x faster "
          f"(goal ≥ 5x), CPU seconds, one thread each, the whole analyze() / weight_spectra")  # fmt: skip


if __name__ == "__main__":
    main()
