"""Benchmark: netxray's spectral view of the weights against WeightWatcher, same layers.

Model: a stack of Linear layers (random Gaussian ones — Marchenko–Pastur, no heavy tail — and
ones built with a power-law spectrum, p(λ) ∝ λ^{-α}, α ∈ {2, 2.5, 3, 4}, as trained layers
show; a bulk with 7 outliers, whose best tail is shorter than 10; a 16-eigenvalue layer, which
WeightWatcher fits with its small-N rule; a tall embedding-like 8192 × 512), sizes 16–8192.
Both tools get the same nn.Module; WeightWatcher ``analyze()`` with its defaults against
``netxray.lenses.parameters.weight_spectra(model, rule="weightwatcher")`` (their minimum tail,
threshold and x_min rule; :func:`netxray.measures.spectral.fit_power_law`). Printed per layer:
α of both, |Δα|, x_min and tail size of both (on the eigenvalues of WᵀW, unnormalised), α with
netxray's default rule (tails ≥ 10), and the per-layer seconds of netxray's stages against
the SVD WeightWatcher runs (scipy ``svd(W, compute_uv=False)``, ~90 % of its time); then both
CPU times (process time: one thread each, interleaved, best of --repeats; on the shared
machine the wall clock also counts other people's work) and their ratio.
Also netxray with ``precision="float32"`` eigenvalues, its |Δα| against WeightWatcher, and how
far the float64 α moves when W is perturbed at its own float32 rounding; per-layer CPU
seconds of each stage (float64 Gram, dsyevd, fit; float32 Gram + eigenvalues; their SVD) and
the floor they set. Goal (issue 23): ≥ 5× faster, the same tail and α on every layer.

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
    return _linear_with_spectrum(n_out, n_in, (1 - rng.random(m)) ** (-1 / (alpha - 1)), rng)


def spiked_linear(n_out: int, n_in: int, rng) -> nn.Linear:
    m = min(n_out, n_in)
    lam = np.concatenate([rng.uniform(0.5, 1.5, m - 7), [9.0, 14.0, 20.0, 31.0, 55.0, 80.0, 150.0]])
    return _linear_with_spectrum(n_out, n_in, lam, rng)


def _linear_with_spectrum(n_out: int, n_in: int, lam: np.ndarray, rng) -> nn.Linear:
    """A Linear whose WᵀW has eigenvalues ``lam`` (random orthonormal singular vectors)."""
    m = min(n_out, n_in)
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


def _stages(w: np.ndarray) -> dict[str, float]:
    """CPU seconds of netxray's float64 row split into its stages (the cast, the Gram, the
    eigensolver, the fit), of the float32 eigenvalues, and of WeightWatcher's SVD."""
    import scipy.linalg

    from netxray.measures.spectral import _as_matrix, _eigenvalues_float32, fit_power_law

    out: dict[str, float] = {}
    t0 = time.process_time()
    a = w.astype(np.float64)
    out["cast"] = time.process_time() - t0
    t0 = time.process_time()
    gram = a @ a.T if a.shape[0] <= a.shape[1] else a.T @ a
    out["gram"] = time.process_time() - t0
    t0 = time.process_time()
    lam = np.linalg.eigvalsh(gram)
    out["eig"] = time.process_time() - t0
    t0 = time.process_time()
    fit_power_law(lam, rule="weightwatcher")
    out["fit"] = time.process_time() - t0
    t0 = time.process_time()
    a32 = _as_matrix(w, np.float32)
    _eigenvalues_float32(a32 @ a32.T if a32.shape[0] <= a32.shape[1] else a32.T @ a32)
    out["eig32"] = time.process_time() - t0  # float32 Gram + ssytrd + dsterf
    t0 = time.process_time()
    scipy.linalg.svd(a, compute_uv=False)
    out["svd"] = time.process_time() - t0
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=2)
    args = ap.parse_args()
    set_threads(1)  # torch and every BLAS pool (scipy's own included), before weightwatcher loads
    logging.disable(logging.WARNING)
    warnings.filterwarnings("ignore")
    import weightwatcher as ww

    from netxray.lenses.parameters import weight_spectra
    from netxray.measures.spectral import spectral_stats

    model, kinds = build()
    t_ww = t_nx = t_32 = np.inf
    for _ in range(args.repeats):  # interleaved: the shared machine's drift hits all three alike
        t0 = time.process_time()
        ours = weight_spectra(model, rule="weightwatcher")
        t_nx = min(t_nx, time.process_time() - t0)
        t0 = time.process_time()
        ours32 = weight_spectra(model, rule="weightwatcher", precision="float32")
        t_32 = min(t_32, time.process_time() - t0)
        t0 = time.process_time()
        theirs = ww.WeightWatcher(model=model).analyze()
        t_ww = min(t_ww, time.process_time() - t0)
    theirs = theirs.reset_index(drop=True)
    ours = ours.reset_index(drop=True)
    ours32 = ours32.reset_index(drop=True)
    default = weight_spectra(model).reset_index(drop=True)
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    rng = np.random.default_rng(1)
    print(f"{'layer':>9} {'kind':>17} {'shape':>10} {'α nx(ww)':>9} {'α ww':>8} {'|Δα|':>7} "
          f"{'|Δα|32':>7} {'|Δα|ulp':>7} {'tail nx':>7} {'ww':>5} {'f32':>5} {'xmin ww':>8} "
          f"{'α dflt':>8} {'gram':>6} {'eig':>6} {'fit':>6} {'eig32':>6} {'svd':>6}")  # fmt: skip
    diffs, diffs32, diffs_ulp, same_tail, same_tail32 = [], [], [], 0, 0
    tot: dict[str, float] = {}
    for i, row in ours.iterrows():
        a_ww = float(theirs.loc[i, "alpha"]) if i < len(theirs) else float("nan")
        x_ww = float(theirs.loc[i, "xmin"]) if i < len(theirs) else float("nan")
        w32 = weights[i].detach().numpy()
        w = w32.astype(np.float64)
        st = min((_stages(w32) for _ in range(2)), key=lambda d: sum(d.values()))
        for k, v in st.items():
            tot[k] = tot.get(k, 0.0) + v
        ev = np.sort(np.linalg.svd(w, compute_uv=False) ** 2)
        n_ww = int((ev >= x_ww).sum())  # WeightWatcher's tail: its eigenvalues ≥ its x_min
        same_tail += int(n_ww == row["n_tail"] and abs(row["alpha"] - a_ww) <= 1e-9 * a_ww)
        same_tail32 += int(n_ww == ours32.loc[i, "n_tail"])
        diffs.append(abs(row["alpha"] - a_ww))
        diffs32.append(abs(ours32.loc[i, "alpha"] - a_ww))
        # the weights' own float32 rounding: W·(1 + u·2⁻²⁴), u ~ U(−1, 1), fitted in float64
        noisy = w * (1 + rng.uniform(-1, 1, w.shape) * 2.0**-24)
        diffs_ulp.append(abs(spectral_stats(noisy, rule="weightwatcher")["alpha"] - row["alpha"]))
        print(f"{row['name']:>9} {kinds[row['name']]:>17} {row['shape']:>10} {row['alpha']:9.4f} "
              f"{a_ww:8.4f} {diffs[-1]:7.1e} {diffs32[-1]:7.1e} {diffs_ulp[-1]:7.1e} {row['n_tail']:7d} "
              f"{n_ww:5d} {ours32.loc[i, 'n_tail']:5d} {x_ww:8.4g} {default.loc[i, 'alpha']:8.4f} "
              f"{st['gram']:6.3f} {st['eig']:6.3f} {st['fit']:6.3f} {st['eig32']:6.3f} {st['svd']:6.3f}")  # fmt: skip
    n = len(ours)
    print(f"float64 (default), rule='weightwatcher': the same tail and α (to 1e-9) on {same_tail} of {n} "
          f"layers, max |Δα| = {np.nanmax(diffs):.2e}")
    print(f"float32 eigenvalues: the same tail on {same_tail32} of {n} layers, max |Δα| = "
          f"{np.nanmax(diffs32):.2e}, max |Δα|/α = {np.nanmax(np.array(diffs32) / ours['alpha']):.1e}; "
          f"float64 α moves by up to {np.nanmax(diffs_ulp):.1e} when W is perturbed at its own float32 "
          f"rounding (|Δα|ulp)")  # fmt: skip
    print(f"stages, summed over layers (CPU s): cast {tot['cast']:.2f}, Gram (dsyrk) {tot['gram']:.2f}, "
          f"eigenvalues (dsyevd) {tot['eig']:.2f}, fit {tot['fit']:.2f}; float32 Gram + eigenvalues "
          f"{tot['eig32']:.2f}; WeightWatcher's SVDs {tot['svd']:.2f}")  # fmt: skip
    print(f"floor in float64: Gram + dsyevd alone = {tot['gram'] + tot['eig']:.2f} s, a ceiling of ~"
          f"{t_ww / (tot['gram'] + tot['eig']):.1f}x against WeightWatcher's {t_ww:.2f} s even with a free "
          f"fit; float32 Gram + eigenvalues {tot['eig32']:.2f} s: ~{t_ww / tot['eig32']:.1f}x "
          f"(stages timed one layer at a time: ±10 % on this machine)")  # fmt: skip
    print(f"time: weightwatcher {t_ww:.2f} s; netxray float64 {t_nx:.2f} s: {t_ww / t_nx:.1f}x faster, "
          f"float32 {t_32:.2f} s: {t_ww / t_32:.1f}x faster (goal ≥ 5x); CPU seconds, one thread each, "
          f"the whole analyze() / weight_spectra")  # fmt: skip


if __name__ == "__main__":
    main()
