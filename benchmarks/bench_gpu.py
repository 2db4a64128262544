"""Benchmark: each lens's heavy products on the GPU against the CPU, side by side in one process.

Ready for the moment a CUDA device is at hand; without one it prints "no CUDA device" and exits
with status 0 (nothing here is needed to build or test the project). Per lens, the step that
dominates its time, on the same data on both sides (CPU: one thread unless ``--threads``):

- non-linearity (signature): the covariances Σ = XᵀX/(n−1) of a site, float64, n × d — the
  Gram matrices the capture accumulates; the affinity score's heavy products, the cost matrix
  ‖T(x_i) − y_j‖² of n × n (one n × n × d product) and the symmetric eigendecomposition of the
  d × d map; and the whole ``affinity_score`` of a Y = GELU(XW) site at n = ``--affinity-n``
  for each d of ``--affinity-d``: ``device="cuda"`` (statistics, map, T(X) and the float64 cost
  matrix on the GPU, the exact LAP on the CPU) against the CPU path (numpy/LAPACK, the float32
  cost certified), the scores compared;
- modularity: the Gram matrix F Fᵀ (N × N, float64) and the kNN graph from it —
  ``netxray.measures.modularity.knn_graph_from_gram`` on a CUDA tensor (its top-k runs on the
  device) against the CPU path; the two graphs are compared edge by edge;
- parameters (spectra): ``netxray.measures.spectral.spectral_stats`` on a CUDA weight (the
  Gram and ``torch.linalg.eigvalsh`` on the device) against the CPU path; α compared;
- symmetry: the whole ``symmetry_group`` of a small Llama (hidden ``--sym-hidden``, 4 layers)
  with its verification copy on the GPU (``device="cuda"``) against the CPU, both copy modes
  (the whole float64 copy; the per-module copy that big models get); axes and verdicts compared.

Printed: seconds on each side (best of ``--repeats``, ``torch.cuda.synchronize`` around each
GPU timing, the first call as warm-up), the ratio CPU/GPU, and the agreement of the results.

    python benchmarks/bench_gpu.py [--n 8192] [--d 1024] [--affinity-n 2048]
        [--affinity-d 256 1024 4096] [--knn-n 20000] [--spectral 4096] [--sym-hidden 512]
        [--dry-run-on-cpu]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np


def _best(fn: Callable[[], Any], repeats: int, sync: Callable[[], None] | None = None) -> tuple[Any, float]:
    """(result, best seconds) of ``repeats`` calls after one warm-up call."""
    out = fn()
    if sync:
        sync()
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        if sync:
            sync()
        best = min(best, time.perf_counter() - t0)
    return out, best


def _row(name: str, t_cpu: float, t_gpu: float, agree: str) -> None:
    print(f"{name:46s} {t_cpu:9.3f} {t_gpu:9.4f} {t_cpu / t_gpu:8.1f}x  {agree}", flush=True)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=8192, help="samples of the covariance / affinity rows")
    ap.add_argument("--d", type=int, default=1024, help="features of the covariance / affinity rows")
    ap.add_argument("--affinity-n", type=int, default=2048,
                    help="samples of the whole-affinity-score rows (the signature's default n)")
    ap.add_argument("--affinity-d", type=int, nargs="+", default=[256, 1024, 4096],
                    help="features of the whole-affinity-score rows (one row each)")
    ap.add_argument("--knn-n", type=int, default=20000, help="N of the modularity rows")
    ap.add_argument("--knn-d", type=int, default=256)
    ap.add_argument("--spectral", type=int, default=4096, help="side of the weight matrix")
    ap.add_argument("--sym-hidden", type=int, default=512, help="hidden size of the symmetry row's Llama")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1, help="CPU threads (the project's convention: 1)")
    ap.add_argument("--dry-run-on-cpu", action="store_true",
                    help="run every step with the 'GPU' side on the CPU too (checks the script, measures nothing)")
    args = ap.parse_args()

    import torch

    if not torch.cuda.is_available() and not args.dry_run_on_cpu:
        print("no CUDA device: nothing to measure (run this where torch.cuda.is_available())")
        return 0
    from netxray._threads import set_threads

    set_threads(args.threads)
    if args.dry_run_on_cpu:
        dev, sync, name = torch.device("cpu"), None, "none (dry run: both sides on the CPU)"
        # the device code paths run on CPU tensors, as the tests run them
        import netxray.measures.affinity as affinity_mod
        import netxray.measures.modularity as modularity_mod
        import netxray.measures.spectral as spectral_mod

        affinity_mod._on_accelerator = lambda dev: True
        modularity_mod._on_accelerator = lambda x: hasattr(x, "detach")
        spectral_mod._on_accelerator = lambda x: hasattr(x, "detach")
    else:
        dev, sync, name = torch.device("cuda"), torch.cuda.synchronize, torch.cuda.get_device_name(0)
    print(f"GPU: {name}; CPU: {args.threads} thread(s); torch {torch.__version__}")
    print(f"{'step':46s} {'CPU s':>9s} {'GPU s':>9s} {'CPU/GPU':>9s}  agreement")
    rng = np.random.default_rng(0)

    # non-linearity: covariances and the affinity score's products
    x = rng.standard_normal((args.n, args.d))
    xg = torch.from_numpy(x).to(dev)
    cov_c, t_c = _best(lambda: x.T @ x / (args.n - 1), args.repeats)
    cov_g, t_g = _best(lambda: xg.T @ xg / (args.n - 1), args.repeats, sync)
    err = float(np.abs(cov_g.cpu().numpy() - cov_c).max() / np.abs(cov_c).max())
    _row(f"covariance XᵀX, float64, {args.n}×{args.d}", t_c, t_g, f"max rel diff {err:.1e}")
    y = np.tanh(x @ (rng.standard_normal((args.d, args.d)) / np.sqrt(args.d)))
    yg = torch.from_numpy(y).to(dev)
    sq = lambda a, b: (a * a).sum(1)[:, None] + (b * b).sum(1)[None, :] - 2.0 * a @ b.T  # noqa: E731
    c_c, t_c = _best(lambda: sq(x, y), args.repeats)
    c_g, t_g = _best(lambda: sq(xg, yg), args.repeats, sync)
    err = float(np.abs(c_g.cpu().numpy() - c_c).max() / np.abs(c_c).max())
    _row(f"affinity cost matrix, float64, n = {args.n}", t_c, t_g, f"max rel diff {err:.1e}")
    c32_c, t_c = _best(lambda: sq(x.astype(np.float32), y.astype(np.float32)), args.repeats)
    c32_g, t_g = _best(lambda: sq(xg.float(), yg.float()), args.repeats, sync)
    _row(f"affinity cost matrix, float32, n = {args.n}", t_c, t_g, "(certified on the CPU path)")
    del c_c, c_g, c32_c, c32_g
    s = np.asarray(cov_c)
    e_c, t_c = _best(lambda: np.linalg.eigh(s), args.repeats)
    e_g, t_g = _best(lambda: torch.linalg.eigh(cov_g), args.repeats, sync)
    err = float(np.abs(e_g[0].cpu().numpy() - e_c[0]).max() / np.abs(e_c[0]).max())
    _row(f"affinity map: eigh of the {args.d}×{args.d} covariance", t_c, t_g, f"eigenvalues rel {err:.1e}")
    x = xg = y = yg = cov_c = cov_g = e_c = e_g = s = None  # free them (closures above read them)

    # the whole affinity score: the device path (LAP on the CPU) against the CPU path
    from netxray.measures.affinity import affinity_score

    gelu = lambda z: 0.5 * z * (1.0 + np.tanh(0.7978845608028654 * (z + 0.044715 * z**3)))  # noqa: E731
    for d in args.affinity_d:
        xa = rng.standard_normal((args.affinity_n, d))
        ya = gelu(xa @ (rng.standard_normal((d, d)) / np.sqrt(d)))
        r_c, t_c = _best(lambda: affinity_score(xa, ya), args.repeats)  # noqa: B023
        r_g, t_g = _best(lambda: affinity_score(xa, ya, device=dev), args.repeats, sync)  # noqa: B023
        _row(f"affinity_score, n = {args.affinity_n}, d = {d} (LAP on CPU)", t_c, t_g,
             f"ρ {r_c.score:.9f} vs {r_g.score:.9f} (diff {abs(r_c.score - r_g.score):.1e}), "
             f"{r_c.status}/{r_g.status}")  # fmt: skip

    # modularity: Gram and kNN graph
    from netxray.measures.modularity import knn_graph_from_gram

    f = rng.standard_normal((args.knn_n, args.knn_d))
    fg = torch.from_numpy(f).to(dev)
    g_c, t_c = _best(lambda: f @ f.T, 1)
    _, t_g = _best(lambda: fg @ fg.T, 1, sync)
    _row(f"modularity Gram FFᵀ, float64, N = {args.knn_n}", t_c, t_g, "")
    g_same = torch.from_numpy(g_c).to(dev)  # the same Gram on both sides: the graphs must be equal
    (a_c, _), t_c = _best(lambda: knn_graph_from_gram(g_c, k=3), 1)
    (a_g, _), t_g = _best(lambda: knn_graph_from_gram(g_same, k=3), 1, sync)
    same_edges = ((a_c != 0) != (a_g != 0)).nnz == 0
    _row(f"modularity kNN graph from the Gram, N = {args.knn_n}", t_c, t_g,
         f"identical edge set: {same_edges}, identical weights: {(a_c != a_g).nnz == 0}")  # fmt: skip
    g_same = None
    g_c = None  # free the N × N matrix

    # parameters: spectra
    from netxray.measures.spectral import spectral_stats

    w = rng.standard_normal((args.spectral, args.spectral)) / np.sqrt(args.spectral)
    wg = torch.from_numpy(w).to(dev)
    s_c, t_c = _best(lambda: spectral_stats(w), 1)
    s_g, t_g = _best(lambda: spectral_stats(wg), 1, sync)
    _row(f"spectra: Gram + eigvalsh + α fit, {args.spectral}²", t_c, t_g,
         f"α {s_c['alpha']:.6f} vs {s_g['alpha']:.6f}, tail {s_c['n_tail']} vs {s_g['n_tail']}")  # fmt: skip

    # symmetry: the whole lens (axes, verification on a float64 copy) on a small Llama, the copy
    # and its forward passes on the device against the CPU
    import transformers

    from netxray.lenses.symmetry import symmetry_group

    cfg = transformers.LlamaConfig(vocab_size=1000, hidden_size=args.sym_hidden, intermediate_size=args.sym_hidden * 11 // 4,
                                   num_hidden_layers=4, num_attention_heads=8, num_key_value_heads=2,
                                   max_position_embeddings=128)  # fmt: skip
    torch.manual_seed(0)
    llama = transformers.LlamaForCausalLM(cfg).eval()
    ids = torch.randint(0, 1000, (2, 64))
    for copy_mode in ("whole", "per-module"):
        g_c, t_c = _best(lambda c=copy_mode: symmetry_group(llama, ids, verify_copy=c), 1)
        g_g, t_g = _best(lambda c=copy_mode: symmetry_group(llama, ids, verify_copy=c, device=dev), 1, sync)
        same = g_c[["axis", "verified"]].equals(g_g[["axis", "verified"]])
        _row(f"symmetry lens, Llama {args.sym_hidden} × 4 layers, {copy_mode} copy", t_c, t_g,
             f"same axes and verdicts: {same} ({int(g_g['verified'].sum())} of {len(g_g)} verified)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
