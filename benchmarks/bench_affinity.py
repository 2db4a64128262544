"""Benchmark: netxray.affinity_score against the authors' way of computing it, side by side.

Reference (a re-implementation of the method of the authors' ``rho_aff``, CPU branch, written
from its description, not copied): float32 inputs; ``torch.cov`` + 1e-6·I in float32;
A = S (sqrtm(S Σ_X S))^{-1} S with S = ``scipy.linalg.sqrtm(Σ_Y)`` and ``scipy.linalg.inv``;
T(x) = A (x − m_X) + m_Y in float32; the cost ``torch.cdist(T(X), Y)²`` in float32; W2² by POT's
network simplex ``ot.emd2``; ρ = 1 − sqrt(W2² / 2 tr Σ_Y).

netxray: float64 statistics, one Cholesky + one symmetric eigendecomposition for the map
(d ≤ 2n − 2) or the sample-space path (d > 2n − 2: the 2n × 2n Gram matrix, pivoted
Cholesky, the map in the joint span of the samples), then an exact assignment with a rigorous
certificate of its distance from the float64 optimum: for d ≥ 256 with src-d's ``lapjv``
installed (the ``fast`` extra, in the dev environment), one float32 product for the cost
matrix and LAPJV's dual potentials for the certificate ("W2 path" lapjv_duals); otherwise the
float32 matrix built block by block from float64 blocks and lapx ``lapjvr``.

Tables (one thread each, same process, interleaved repeats, best kept):
1. ISOTROPIC data — X ~ N(0, I_d), Y = GELU(X W), W Gaussian / √d — n = 2048,
   d = 64 / 256 / 512 / 1024 / 2048. "floor": the time of the fastest exact solver found on the
   site's own (shifted, float32) cost matrix alone — the best of lapx ``lapjvr``, ``lapjvh``
   and ``lapjvs`` (table 3 times every solver) — and ref/floor, the largest ratio any
   implementation that solves the assignment could reach. |Δρ| is taken against netxray run
   with the reference's absolute ridge; above 1e-6 the reference's steps are rerun in float64
   to show whose rounding it is.
2. Decaying-spectrum data (X with a spectrum e^{-3i/d}, like trained pre-activations).
3. Every exact solver on one site's cost matrix (d = 512): time and optimal objective.
4. d > n: the sample-space path against the d-space path (``reduce_rank=False``) on the same
   data, n = 512, d = 4096 (the reference's two d × d ``sqrtm`` take minutes there: not run).
5. Companions (R², CKA) at d ≫ n: n = 64, d = 768 / 2048 / 3072, against the d×d form.
6. One signature site at n = 8192, d = 512 (goal: < 60 s on one core).

    python benchmarks/bench_affinity.py [--dims 64,256,512,1024,2048] [--n 2048] [--big-n 8192]

Goal (issues 12, 23): ≥ 5× at every d, with and without the optional ``lapjv`` (a plain
install), |Δρ| ≤ 1e-6; the n = 8192 site in < 60 s.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ot
import scipy.linalg
import torch
from scipy.special import erf

import netxray.measures.affinity as affinity_mod
from netxray._threads import set_threads
from netxray.measures.affinity import _map_cholesky, affinity_score
from netxray.measures.assignment import squared_distances


def reference_rho_aff(x: np.ndarray, y: np.ndarray, eps: float = 1e-6, dtype=np.float32) -> float:
    """ρ_aff computed the way the authors' research code does on the CPU (float32 inputs;
    ``dtype=np.float64`` runs the same steps in float64, to tell its rounding from ours)."""
    xt = torch.from_numpy(np.ascontiguousarray(x.T, dtype=dtype))  # (d, n), their layout
    yt = torch.from_numpy(np.ascontiguousarray(y.T, dtype=dtype))
    d, n = xt.shape
    m_x = xt.mean(1, keepdim=True)
    m_y = yt.mean(1, keepdim=True)
    cov_x = torch.cov(xt) + eps * torch.eye(d)
    cov_y = torch.cov(yt) + eps * torch.eye(d)
    if torch.trace(cov_y) > 2 * 1e-6 * d:
        s = scipy.linalg.sqrtm(cov_y.numpy())
        mid = scipy.linalg.sqrtm(s @ cov_x.numpy() @ s)
        a = np.real(s @ scipy.linalg.inv(mid) @ s)
    else:
        a = np.zeros((d, d))
    tx = torch.from_numpy(a).to(xt.dtype) @ (xt - m_x) + m_y
    cost = torch.cdist(tx.T, yt.T) ** 2
    w = torch.ones(n, dtype=xt.dtype) / n
    w2 = ot.emd2(w, w, cost, numItermax=10_000_000)
    return float(1.0 - torch.sqrt(w2 / (2.0 * torch.trace(cov_y))))


def isotropic(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """X ~ N(0, I_d), Y = GELU(X W) with W Gaussian / √d (a random-init linear layer + GELU)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d))
    z = x @ (rng.standard_normal((d, d)) / np.sqrt(d))
    return x, 0.5 * z * (1.0 + erf(z / np.sqrt(2.0)))


def decaying(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """X with a decaying spectrum e^{-3i/d} in a random basis (like trained pre-activations)."""
    rng = np.random.default_rng(seed)
    spectrum = np.exp(-3.0 * np.arange(d) / d)
    q, _ = np.linalg.qr(rng.standard_normal((d, d)))
    x = (rng.standard_normal((n, d)) * spectrum) @ q.T + 0.3 * rng.standard_normal(d)
    return x, 0.5 * x * (1.0 + erf(x / np.sqrt(2.0)))


CLOCK = {"cpu": time.process_time, "wall": time.perf_counter}
_clock = CLOCK["cpu"]


def timed(fn, *args):
    """(result, seconds) on the chosen clock. "cpu" (default): this process's CPU time — with
    one thread on each side it equals the wall time on an idle core, and it is not inflated
    when other processes share the machine (the development machine is shared); "wall":
    elapsed time."""
    t = _clock()
    out = fn(*args)
    return out, _clock() - t


def breakdown(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    """(seconds in the map, seconds in W2) of one real netxray call."""
    spent = []
    inner = affinity_mod.wasserstein2_squared

    def timed_w2(a, b):
        out, t = timed(inner, a, b)
        spent.append(t)
        return out

    affinity_mod.wasserstein2_squared = timed_w2
    try:
        _, total = timed(affinity_score, x, y)
    finally:
        affinity_mod.wasserstein2_squared = inner
    return total - sum(spent), sum(spent)


def site_clouds(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T(X), Y), both centred, as affinity_score hands them to the W2 step."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    d = xc.shape[1]
    # the default relative ridge ε·(tr Σ/d), as affinity_score adds it
    eps_x = 1e-6 * float(np.einsum("ij,ij->", xc, xc)) / (len(xc) - 1) / d
    eps_y = 1e-6 * float(np.einsum("ij,ij->", yc, yc)) / (len(yc) - 1) / d
    t, yb, _, _ = _map_cholesky(xc, yc, eps_x, eps_y)
    return t, yb


def w2_path(x: np.ndarray, y: np.ndarray) -> str:
    """The solver behind affinity_score's W2 on this site ("lapjv_duals": the float32-product
    path), as ``exact_matching`` chooses it for the site's own clouds."""
    from netxray.measures.assignment import exact_matching

    return exact_matching(*site_clouds(x, y)).solver


def site_cost(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """The site's shifted float64 cost matrix ‖T(x_i) − y_j‖² − min, as affinity_score builds it."""
    cost = squared_distances(*site_clouds(x, y))
    cost -= cost.min()
    return cost


def assignment_floor(x: np.ndarray, y: np.ndarray) -> tuple[float, str]:
    """(seconds, solver) of the fastest exact solver found (table 3: lapx's lapjvr, lapjvh and
    lapjvs, best of two runs each) on this site's own float32 cost matrix alone: no
    implementation that solves the assignment can take less than this."""
    import lap

    cost32 = site_cost(x, y).astype(np.float32)
    runs = {
        "lapjvr": lambda: lap.lapjvr(cost32, return_cost=False),
        "lapjvh": lambda: lap.lapjvh(cost32, return_cost=False),
        "lapjvs": lambda: lap.lapjvs(cost32, return_cost=False, jvx_like=False),
    }
    best = (np.inf, "")
    for name, fn in runs.items():
        if not hasattr(lap, name):  # an older lapx
            continue
        best = min(best, *((timed(fn)[1], name) for _ in range(2)))
    return best


def solvers_table(n: int, d: int) -> None:
    """Every exact solver found, on one isotropic site's cost matrix: time and objective."""
    import lap
    from scipy.optimize import linear_sum_assignment

    x, y = isotropic(n, d, seed=d)
    c = site_cost(x, y)
    c32 = c.astype(np.float32)
    rows = np.arange(n)
    runs = {
        "scipy linear_sum_assignment (float64)": lambda: linear_sum_assignment(c)[1],
        "lapx lapjvr (float32 costs)": lambda: lap.lapjvr(c32, return_cost=False)[1],
        "lapx lapjvr (float64)": lambda: lap.lapjvr(c, return_cost=False)[1],
        "lapx lapjvh (float32 costs)": lambda: lap.lapjvh(c32, return_cost=False)[1],
        "lapx lapjvs (float32)": lambda: lap.lapjvs(c32, return_cost=False, jvx_like=False)[0],
        "lapx lapjvs (float64)": lambda: lap.lapjvs(
            c, return_cost=False, jvx_like=False, prefer_float32=False
        )[0],
        "lapx lapjv (float64)": lambda: lap.lapjv(c, return_cost=False)[0],
        "lapx lapjvc (float64)": lambda: lap.lapjvc(c, return_cost=False)[1],
    }
    try:  # src-d's lapjv (the fast extra): the one that also returns its dual potentials
        from lapjv import lapjv as lapjv_duals

        runs["src-d lapjv, + duals (float32 costs)"] = lambda: lapjv_duals(c32)[0]
    except ImportError:
        pass
    print(f"\nexact solvers on one site's cost matrix (isotropic, n = {n}, d = {d}), one thread")
    print(f"{'solver':40s} {'s':>6s} {'objective − scipy (relative)':>29s}")
    results = {}
    for name, fn in runs.items():
        try:
            cols, t = timed(fn)
        except (AttributeError, ValueError, TypeError) as err:  # an older lapx lacks a solver
            print(f"{name:40s} {'-':>6s}  not run: {err}")
            continue
        results[name] = (t, float(c[rows, np.asarray(cols)].sum()))
    ref = results["scipy linear_sum_assignment (float64)"][1]
    for name, (t, obj) in results.items():
        print(f"{name:40s} {t:6.2f} {(obj - ref) / ref:29.1e}", flush=True)


def sample_space_row(n: int, d: int) -> None:
    """d > n: the sample-space path (default there) against the d-space path, same data."""
    x, y = isotropic(n, d, seed=d)
    print(f"\nd > n: sample space vs d-space, isotropic, n = {n}, d = {d}, one thread")
    sample, t_s = timed(affinity_score, x, y)
    feature, t_f = timed(lambda: affinity_score(x, y, reduce_rank=False))
    print(f"  sample space {t_s:.2f} s, d-space {t_f:.2f} s, ratio {t_f / t_s:.1f}x, "
          f"|Δρ| {abs(sample.score - feature.score):.1e}, ρ = {sample.score:.5f} "
          f"({sample.status})", flush=True)  # fmt: skip


def plain_install(fn, *args):
    """``fn(*args)`` as a plain ``pip install netxray`` runs it: without src-d's ``lapjv`` (the
    float32-product path then takes lapx's plan and repairs the dual potentials itself)."""
    import netxray.measures.assignment as assignment_mod

    saved = assignment_mod._lapjv_with_duals
    assignment_mod._lapjv_with_duals = None
    try:
        return fn(*args)
    finally:
        assignment_mod._lapjv_with_duals = saved


def table(name, make, dims, n, repeats, max_ref_s) -> list[float]:
    print(f"\n{name} data, n = {n}, one thread each")
    print("|Δρ|: against netxray with the reference's absolute ridge ε·I (the default ridge is "
          "relative, SPEC §1.1); ρ: netxray's default")
    print("plain: a plain install (no src-d lapjv); W2 share: the assignment step's share of "
          "netxray's time; floor/W2: the fastest solver alone on the same matrix over that step")
    print(f"{'d':>5s} {'ref s':>8s} {'netxray s':>9s} {'ratio':>7s} {'plain s':>7s} {'ratio':>7s} "
          f"{'|Δρ|':>9s} {'ρ':>8s}  {'map s':>6s} {'W2 s':>6s} {'W2 share':>8s}  {'floor s':>7s} "
          f"{'floor/W2':>8s} {'ref/floor':>9s} floor solver  W2 path (plain)")  # fmt: skip
    ratios = []
    for d in dims:
        x, y = make(n, d, seed=d)
        t_ref, t_ours, t_plain = np.inf, np.inf, np.inf
        for rep in range(repeats):
            if rep == 0 or t_ref < max_ref_s:
                ref, t = timed(reference_rho_aff, x, y)
                t_ref = min(t_ref, t)
            ours, t = timed(affinity_score, x, y)
            t_ours = min(t_ours, t)
            plain, t = plain_install(timed, affinity_score, x, y)
            t_plain = min(t_plain, t)
        assert plain.score == ours.score or abs(plain.score - ours.score) <= 1e-6
        t_map, t_w2 = breakdown(x, y)
        floor, solver = assignment_floor(x, y)
        ratios.append(min(t_ref / t_ours, t_ref / t_plain))
        same_ridge = affinity_score(x, y, ridge="absolute").score
        delta = abs(ref - same_ridge)
        path = w2_path(x, y) if d <= 2 * n - 2 else "sample space"
        path_plain = plain_install(w2_path, x, y) if d <= 2 * n - 2 else "sample space"
        print(f"{d:5d} {t_ref:8.2f} {t_ours:9.2f} {t_ref / t_ours:6.1f}x {t_plain:7.2f} "
              f"{t_ref / t_plain:6.1f}x {delta:9.2e} {ours.score:8.5f}  {t_map:6.2f} {t_w2:6.2f} "
              f"{t_w2 / t_ours:8.0%}  {floor:7.2f} {floor / t_w2:8.0%} {t_ref / floor:8.1f}x "
              f"{solver:12s}  {path} ({path_plain})", flush=True)  # fmt: skip
        if delta > 1e-6:  # whose rounding? the same reference steps in float64
            ref64 = reference_rho_aff(x, y, dtype=np.float64)
            print(f"      |Δρ| > 1e-6: the reference's own steps in float64 give ρ = {ref64:.9f}, "
                  f"|Δρ| {abs(ref64 - same_ridge):.1e} from netxray, {abs(ref64 - ref):.1e} from "
                  "its float32 run", flush=True)  # fmt: skip
    return ratios


def feature_space_r2(x: np.ndarray, y: np.ndarray) -> float:
    """The previous R²: one d×d eigendecomposition whatever n (the d ≫ n case of issue 12)."""
    xc, yc = x - x.mean(0), y - y.mean(0)
    lam, v = np.linalg.eigh(xc.T @ xc)
    keep = lam > lam[-1] * 1e-10
    w = v[:, keep].T @ (xc.T @ yc)
    return float(min(1.0, np.sum(w * w / lam[keep][:, None]) / np.einsum("ij,ij->", yc, yc)))


def companions_table(n: int, dims: list[int]) -> None:
    from netxray.measures.companions import linear_cka, linear_r2

    print(f"\ncompanions at d >> n (n = {n}): R² in the d×d feature space vs netxray (smaller space)")
    print(f"{'d':>5s} {'d×d R² s':>9s} {'R² s':>7s} {'ratio':>7s} {'|ΔR²|':>9s} {'CKA s':>7s} "
          f"{'affinity s':>10s}")  # fmt: skip
    for d in dims:
        x, y = isotropic(n, d, seed=d)
        old, t_old = timed(feature_space_r2, x, y)
        new, t_new = timed(linear_r2, x, y)
        _, t_cka = timed(linear_cka, x, y)
        _, t_aff = timed(affinity_score, x, y)
        print(f"{d:5d} {t_old:9.3f} {t_new:7.4f} {t_old / t_new:6.0f}x {abs(old - new):9.1e} "
              f"{t_cka:7.4f} {t_aff:10.3f}", flush=True)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", default="64,256,512,1024,2048")
    parser.add_argument("--decaying-dims", default="64,512,2048")
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--big-n", type=int, default=8192, help="0 skips the large site")
    parser.add_argument("--big-d", type=int, default=512)
    parser.add_argument("--no-companions", dest="companions", action="store_false")
    parser.add_argument(
        "--clock", choices=sorted(CLOCK), default="cpu",
        help="cpu: process CPU time (one thread each: robust on a shared machine); wall: elapsed",
    )  # fmt: skip
    parser.add_argument("--solvers-d", type=int, default=512, help="0 skips the solvers table")
    parser.add_argument("--dn", default="512x4096", help="n x d of the d > n row; '' skips it")
    parser.add_argument("--repeats", type=int, default=2, help="interleaved repeats, best kept")
    parser.add_argument(
        "--max-ref-s",
        type=float,
        default=20.0,
        help="repeat the baseline only while one run takes less than this",
    )
    args = parser.parse_args()
    global _clock
    _clock = CLOCK[args.clock]
    print(f"clock: {args.clock} seconds (one BLAS / torch thread on each side)")
    set_threads(1)  # one torch and one BLAS thread (numpy's and scipy's pools) for both sides
    dims = [int(v) for v in args.dims.split(",") if v]
    table("ISOTROPIC", isotropic, dims, args.n, args.repeats, args.max_ref_s)
    ddims = [int(v) for v in args.decaying_dims.split(",") if v]
    if ddims:
        table("decaying-spectrum", decaying, ddims, args.n, args.repeats, args.max_ref_s)
    if args.solvers_d:
        solvers_table(args.n, args.solvers_d)
    if args.dn:
        dn_n, dn_d = (int(v) for v in args.dn.lower().split("x"))
        sample_space_row(dn_n, dn_d)
    if args.companions:
        companions_table(64, [768, 2048, 3072])
    if args.big_n:
        x, y = isotropic(args.big_n, args.big_d, seed=1)
        wall = time.perf_counter()
        r, t = timed(affinity_score, x, y)
        wall = time.perf_counter() - wall
        print(f"\none site, n = {args.big_n}, d = {args.big_d} (isotropic), one core: {t:.1f} s "
              f"{args.clock} ({wall:.1f} s wall) (goal < 60 s), ρ = {r.score:.5f}")  # fmt: skip


if __name__ == "__main__":
    main()
