"""Benchmark: netxray.affinity_score against the paper code's way of computing it.

Baseline (as the reference implementation does it): ``np.cov`` + ridge, ``scipy.linalg.sqrtm``
(Schur decomposition) and ``inv`` for the Gaussian map, ``ot.dist`` + ``ot.emd2`` (network
simplex) for W2. netxray: two float64 symmetric eigendecompositions in the eigenbasis of Σ_X and
an exact linear assignment. Same inputs, side by side in one run, n = 2048 samples and
d ∈ {64, 512, 1024, 2048}. Printed: both times (best of interleaved repeats), their ratio,
|Δρ|, and where netxray's time goes.

Inputs: activation-like data — X Gaussian with a decaying spectrum (like real pre-activations),
Y = GELU(X) — plus, with ``--hard``, isotropic X and Y = X Q (the transport problem is hardest
there: the assignment is far from the identity).

    python benchmarks/bench_affinity.py [--dims 64,512,1024,2048] [--n 2048] [--hard] [--threads 1]

On a machine shared by several busy processes, multi-threaded OpenBLAS spins and slows every
LAPACK call by 4-20×; ``--threads 1`` gives steadier numbers (same limit on both sides).

Goal (issue 3): ≥ 5× faster for d ≥ 1024, ≥ 2× at d = 512, |Δρ| ≤ 1e-4.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot
import scipy.linalg
from scipy.special import erf

import netxray.measures.affinity as affinity_mod
from netxray.measures.affinity import affinity_score


def reference_affinity(x: np.ndarray, y: np.ndarray, eps: float = 1e-6) -> float:
    """The affinity score computed the way the paper's research code does it."""
    n, d = x.shape
    mx, my = x.mean(0), y.mean(0)
    cov_x = np.atleast_2d(np.cov(x.T)) + eps * np.eye(d)
    cov_y = np.atleast_2d(np.cov(y.T)) + eps * np.eye(d)
    sqrt_cov_x = scipy.linalg.sqrtm(cov_x)
    inv_sqrt_cov_x = scipy.linalg.inv(sqrt_cov_x)
    mid = scipy.linalg.sqrtm(sqrt_cov_x @ cov_y @ sqrt_cov_x)
    a = np.real(inv_sqrt_cov_x @ mid @ inv_sqrt_cov_x)
    tx = (x - mx) @ a + my
    m = ot.dist(tx, y)
    w = np.full(n, 1.0 / n)
    w2 = ot.emd2(w, w, m, numItermax=10_000_000)
    return float(1.0 - np.sqrt(w2 / (2.0 * np.trace(cov_y))))


def activation_like(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    spectrum = np.exp(-3.0 * np.arange(d) / d)  # a decaying spectrum, as in trained layers
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = (rng.standard_normal((n, d)) * spectrum) @ q.T + 0.3 * rng.standard_normal(d)
    y = 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))  # GELU
    return x, y


def rotation_pair(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    return x, x @ q


def timed(fn, *args):
    t = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t


def breakdown(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(seconds in the map, seconds in the assignment) of one netxray call."""
    spent = []
    inner = affinity_mod.wasserstein2_squared

    def timed_w2(a, b):
        out, t = timed(inner, a, b)
        spent.append(t)
        return out

    affinity_mod.wasserstein2_squared = timed_w2  # measure the real call's assignment
    try:
        _, total = timed(affinity_score, x, y)
    finally:
        affinity_mod.wasserstein2_squared = inner
    return total - sum(spent), sum(spent)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", default="64,512,1024,2048")
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--hard", action="store_true", help="also the isotropic rotation case")
    parser.add_argument("--repeats", type=int, default=3, help="interleaved repeats, best kept")
    parser.add_argument("--max-ref-s", type=float, default=30.0,
                        help="repeat the baseline only while one run takes less than this")
    parser.add_argument("--threads", type=int, default=None,
                        help="BLAS/LAPACK threads for both sides (default: the library's own)")
    args = parser.parse_args()
    if args.threads is not None:
        from threadpoolctl import threadpool_limits

        threadpool_limits(args.threads)  # the same limit for the baseline and netxray
    dims = [int(v) for v in args.dims.split(",")]
    cases = [("gelu", activation_like)] + ([("rotation", rotation_pair)] if args.hard else [])
    print(f"affinity score, n = {args.n}: netxray vs reference (sqrtm + inv + ot.emd2), "
          f"BLAS threads: {args.threads or 'default'}")
    print(f"{'data':9s} {'d':>5s} {'ref s':>8s} {'netxray s':>10s} {'ratio':>7s} {'|Δρ|':>9s}  "
          f"{'ρ':>8s}  netxray: map s / assignment s")  # fmt: skip
    for name, make in cases:
        for d in dims:
            x, y = make(args.n, d, seed=d)
            # interleaved repeats, best of each: the machine is shared, noise only adds time
            t_ref, t_ours = np.inf, np.inf
            for rep in range(args.repeats):
                if rep == 0 or t_ref < args.max_ref_s:  # one run of a very slow baseline is enough
                    ref, t = timed(reference_affinity, x, y)
                    t_ref = min(t_ref, t)
                ours, t = timed(affinity_score, x, y)
                t_ours = min(t_ours, t)
            t_map, t_w2 = breakdown(x, y)
            print(f"{name:9s} {d:5d} {t_ref:8.2f} {t_ours:10.2f} {t_ref / t_ours:6.1f}x "
                  f"{abs(ref - ours.score):9.2e}  {ours.score:8.5f}  {t_map:.2f} / {t_w2:.2f}",
                  flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
