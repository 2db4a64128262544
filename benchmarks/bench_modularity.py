"""Benchmarks of Lens 2 (issues 4, 12), side by side in one run; prints ratios, asserts nothing.

Part ``modularity``: ``netxray.modularity`` (float32 similarity blocks, top-k per block, every
near-tie re-checked in float64) against a baseline written the way the paper's code does it
(dense similarity matrix, a per-row Python top-k loop filling a dense adjacency matrix,
``networkx`` graph and ``networkx.community.modularity``), on the same features, at
N ∈ {500, 2000, 5000} (goal, issue 12: ≥ 50× at N = 5000, |ΔQ| ≤ 1e-9); at N = 10 000 netxray
alone, float32 against its float64 path (same graph: edges compared). The one-layer timings
are of the numpy backend (``backend="numpy"``).

Part ``faiss``: the kNN graph with its float32 candidates from faiss's exact ``IndexFlatIP``
(``backend="faiss"``, extra ``netxray[fast]``) against the numpy blocks, at N = 10 000, 20 000
and 40 000 (``--faiss-sizes``), equal thread counts; graphs compared edge by edge.

Part ``curve``: the modularity curve of the built-in ResNet (stage widths 64-128-256-512, two
blocks per stage, 3×32×32 inputs) at N samples (default 2000, one repeat), each run in a fresh
process so its peak RSS is its own: netxray's curve probing the first 1, 3, 5 and all 9 layers,
against the naive way (capture every layer's flattened features in one pass, then measure) at 1
and 5 layers. Goal: netxray's peak RSS does not grow with the number of probed layers. To tell
"more layers kept alive" from "a heavier pass", the heaviest single layer (layer1.1: the widest
rows, the deepest forward among them) is also probed alone (``deepest``); ``--fixed-mmap`` runs
the workers with a fixed glibc mmap threshold, so freed large blocks leave the RSS at once
(separates allocator retention from live data).

    python benchmarks/bench_modularity.py                 # both parts
    python benchmarks/bench_modularity.py --part modularity --sizes 500,2000,5000
    python benchmarks/bench_modularity.py --part faiss --faiss-sizes 10000,20000
    python benchmarks/bench_modularity.py --part curve --curve-n 2000

Inputs are synthetic (no download): class-structured Gaussian features / images with a seed.
Threads default to 1 (set --threads): the shared 2-core CI machine makes multi-threaded timings
meaningless.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

from _memory import peak_rss_mb  # benchmarks/_memory.py (the script folder is on sys.path)


def _set_threads(n: int) -> None:
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(n)


def _features(n: int, d: int, classes: int, seed: int):
    import numpy as np

    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=n)
    centers = rng.normal(size=(classes, d))
    x = 0.15 * centers[y] + rng.normal(size=(n, d))  # overlapping classes: Q well below Q_max
    return x, y


def reference_modularity(features, labels, k: int = 3, timings: dict | None = None) -> float:
    """The paper-style baseline (Lu et al.'s ``calculate_similarity`` + ``calculate_modularity``):
    a dense N × N similarity matrix, a per-row Python top-k (``heapq.nlargest`` over each row,
    as in their code), a Python loop over the edges, a networkx graph, networkx modularity.

    Kinder to the baseline than the original: the similarity matrix is one BLAS product (their
    cosine path called ``torch.cosine_similarity`` once per pair). Self is excluded (SPEC §2.1)
    and A = (A_dir + A_dirᵀ)/2, so both sides build the same graph.
    """
    import heapq

    import networkx as nx
    import numpy as np

    t0 = time.perf_counter()
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    sim = f @ f.T
    np.fill_diagonal(sim, -np.inf)
    t1 = time.perf_counter()
    n = len(f)
    adj = np.zeros((n, n))
    for i in range(n):
        row = sim[i]
        for j in heapq.nlargest(k, range(n), row.take):
            adj[i, j] = row[j]
    adj = (adj + adj.T) / 2
    adj[adj < 0] = 0
    t2 = time.perf_counter()
    graph = nx.Graph()
    graph.add_nodes_from(range(n))
    rows, cols = np.nonzero(np.triu(adj, 1))
    graph.add_weighted_edges_from(
        (int(a), int(b), float(adj[a, b])) for a, b in zip(rows, cols, strict=True)
    )
    communities = [set(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)]
    q = nx.community.modularity(graph, communities, weight="weight")
    if timings is not None:
        timings.update(similarity=t1 - t0, topk=t2 - t1, networkx=time.perf_counter() - t2)
    return q


def bench_faiss(sizes: list[int], d: int, k: int, threads: int) -> None:
    """The kNN graph's float32 candidates from faiss's exact IndexFlatIP against numpy's blocks
    (both re-check near-ties in float64): time, ratio, and whether the graphs are identical."""
    from netxray.measures.modularity import faiss_available, knn_graph

    print(f"== kNN graph: faiss (IndexFlatIP, exact) vs numpy float32 blocks, d = {d}, k = {k}, "
          f"{threads} thread(s) each")
    if not faiss_available():
        print("   skipped: faiss is not installed (pip install 'netxray[fast]')")
        return
    import faiss

    faiss.omp_set_num_threads(threads)
    print(f"{'N':>6} {'numpy s':>9} {'faiss s':>9} {'numpy/faiss':>12}  identical graph")
    for n in sizes:
        x, _ = _features(n, d, 10, seed=n)
        knn_graph(x[:50], k=k, backend="faiss")  # warm-up
        t = {}
        graphs = {}
        for backend in ("numpy", "faiss"):
            best = float("inf")
            for _ in range(2):
                t0 = time.perf_counter()
                graphs[backend], _ = knn_graph(x, k=k, backend=backend)
                best = min(best, time.perf_counter() - t0)
            t[backend] = best
        same = (graphs["numpy"] != graphs["faiss"]).nnz == 0
        print(f"{n:>6} {t['numpy']:>9.3f} {t['faiss']:>9.3f} {t['numpy'] / t['faiss']:>11.2f}x  {same}")


def reference_modularity_sampled(features, labels, graph, k: int = 3, rows: int = 1000, seed: int = 0) -> tuple[float, dict]:
    """The same baseline where its dense N × N matrices do not fit (N = 20 000: 3.2 GB each),
    timed part by part: the similarity product in full (in row blocks, the same flops), the
    per-row ``heapq`` top-k on ``rows`` random rows scaled by N / rows (every row costs the same:
    N key calls on a row of N values), networkx on the full graph. The graph networkx gets is
    netxray's, after checking that the baseline's top-k of the sampled rows picks the same
    neighbours (it does on these features: no ties). Returns (Q, timings)."""
    import heapq

    import networkx as nx
    import numpy as np

    n = len(features)
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    t0 = time.perf_counter()
    for b0 in range(0, n, 1000):
        f[b0 : b0 + 1000] @ f.T
    t_sim = time.perf_counter() - t0
    pick = np.random.default_rng(seed).choice(n, size=min(rows, n), replace=False)
    sims = f[pick] @ f.T
    sims[np.arange(len(pick)), pick] = -np.inf
    t0 = time.perf_counter()
    chosen = [heapq.nlargest(k, range(n), row.take) for row in sims]
    t_topk = (time.perf_counter() - t0) * n / len(pick)
    a_dir = graph.tocsr()
    agree = all(set(c) <= set(a_dir[i].indices.tolist()) for i, c in zip(pick, chosen, strict=True))
    t0 = time.perf_counter()
    g = nx.Graph()
    g.add_nodes_from(range(n))
    up = __import__("scipy.sparse", fromlist=["triu"]).triu(a_dir, 1).tocoo()
    g.add_weighted_edges_from((int(i), int(j), float(w)) for i, j, w in zip(up.row, up.col, up.data, strict=True))
    communities = [set(np.flatnonzero(labels == c).tolist()) for c in np.unique(labels)]
    q = nx.community.modularity(g, communities, weight="weight")
    t_nx = time.perf_counter() - t0
    return q, {"similarity": t_sim, "topk": t_topk, "networkx": t_nx, "same_neighbours": agree}


def _peak_mb(fn) -> float:
    """Peak of the memory numpy/Python allocate during ``fn()`` (tracemalloc), in MB."""
    import tracemalloc

    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 1e6


def bench_modularity(sizes: list[int], d: int, k: int, ref_max: int, ref_full: int = 5000) -> None:
    from netxray.measures.modularity import knn_graph, modularity

    print(f"== modularity: one layer, d = {d}, k = {k}, 10 classes (synthetic features); goal ≥ 60x at "
          f"N = 5000 and 20 000 in flat memory, |dQ| ≤ 1e-9")  # fmt: skip
    print(f"{'N':>6} {'netxray s':>10} {'reference s':>12} {'speed-up':>9} {'|dQ|':>10} "
          f"{'Q':>9} {'peak MB':>8} {'N² f64 MB':>9}  reference split: similarity / top-k / networkx s")  # fmt: skip
    for n in sizes:
        x, y = _features(n, d, 10, seed=n)
        modularity(x[:50], y[:50], k=k)  # warm-up (imports, BLAS)
        t = []
        for _ in range(3):
            t0 = time.perf_counter()
            res = modularity(x, y, k=k, backend="numpy", return_graph=True)
            t.append(time.perf_counter() - t0)
        q = res.q
        t_ours = min(t)
        peak = _peak_mb(lambda x=x, y=y: modularity(x, y, k=k, backend="numpy"))
        dense = 8 * n * n / 1e6
        if n > ref_max:  # the baseline takes too long here: float64 path instead
            t0 = time.perf_counter()
            a64, _ = knn_graph(x, k=k, precision="float64")
            t64 = time.perf_counter() - t0
            a32, _ = knn_graph(x, k=k, backend="numpy")
            same = (a32 != a64).nnz == 0
            print(f"{n:>6} {t_ours:>10.3f}  (reference skipped; netxray float64 path "
                  f"{t64:.3f} s, {t64 / t_ours:.1f}x; identical graph: {same}) Q = {q:.6f}, "
                  f"peak {peak:.0f} MB")  # fmt: skip
            continue
        split: dict = {}
        t0 = time.perf_counter()
        if n <= ref_full:
            q_ref = reference_modularity(x, y, k=k, timings=split)
            t_ref = time.perf_counter() - t0
            note = ""
        else:
            q_ref, split = reference_modularity_sampled(x, y, res.graph, k=k)
            t_ref = split["similarity"] + split["topk"] + split["networkx"]
            note = (f"  (top-k timed on 1000 rows × N/1000; its picks are edges of netxray graph: "
                    f"{split['same_neighbours']})")
        print(f"{n:>6} {t_ours:>10.3f} {t_ref:>12.3f} {t_ref / t_ours:>8.1f}x "
              f"{abs(q - q_ref):>10.2e} {q:>9.6f} {peak:>8.0f} {dense:>9.0f}  {split['similarity']:.3f} / "
              f"{split['topk']:.3f} / {split['networkx']:.3f}{note}")  # fmt: skip


# ----------------------------------------------------------------------------- curve


def _resnet_and_data(n: int, seed: int = 0):
    import torch

    from netxray.models import build_model

    torch.manual_seed(seed)
    model = build_model({"arch": "resnet", "input_shape": [3, 32, 32], "num_classes": 10,
                         "channels": [64, 128, 256, 512], "blocks": [2, 2, 2, 2]}).eval()  # fmt: skip
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 10, (n,), generator=g)
    templates = torch.randn(10, 3, 32, 32, generator=g)
    # weak class signal: the raw input has Q ≈ 0.27, far from the ceiling (≈ 0.9)
    x = 0.1 * templates[y] + torch.randn(n, 3, 32, 32, generator=g)
    return model, x, y



def curve_worker(mode: str, n_layers: int, n: int) -> None:
    """Runs in a fresh process; prints one JSON line."""
    from netxray.capture import natural_probes

    model, x, y = _resnet_and_data(n)
    layers = natural_probes(model)[:n_layers]
    if mode == "deepest":  # only the deepest of those layers: the same deepest pass, one layer
        layers, mode = layers[-1:], "netxray"
    base = peak_rss_mb()
    t0 = time.perf_counter()
    if mode == "netxray":
        from netxray.lenses.modularity import modularity_curve

        curve = modularity_curve(model, (x, y), layers=layers, n=n, repeats=1, batch_size=250)
        qs = [round(float(q), 6) for q in curve["q_mean"]]
    else:  # naive: every layer's flattened features held at once, then measured
        from netxray.capture import collect
        from netxray.measures.modularity import modularity

        cap = collect(model, (x, y), activations=False, layers=layers, reducer="flatten",
                      n_samples=None, batch_size=250)  # fmt: skip
        sites = cap.layer_sites()
        qs = [round(modularity(s.outputs.numpy(), cap.labels.numpy(), k=3).q, 6)
              for s in sites.values()]  # fmt: skip
    wall = time.perf_counter() - t0
    print(json.dumps({"mode": mode, "layers": n_layers, "n": n, "wall_s": wall,
                      "peak_rss_mb": peak_rss_mb(), "rss_before_mb": base, "q": qs}))  # fmt: skip


def bench_curve(n: int, threads: int, modes: str = "netxray,deepest,naive", layers: str = "1,3,5,9",
                fixed_mmap: bool = False) -> None:
    print(f"== curve: built-in ResNet 64-128-256-512 (2 blocks/stage), 3x32x32, N = {n}, 1 repeat")
    print(f"{'mode':>8} {'layers':>6} {'wall s':>8} {'peak RSS MB':>12} {'before MB':>10}  Q per layer")
    env = dict(os.environ)
    if fixed_mmap:
        # glibc serves a block below its mmap threshold from the heap, and raises that threshold
        # to the size of any mmapped block freed (up to 32 MiB): a freed 32 MB Gram matrix makes
        # the next ones heap blocks, which the heap may keep after they are freed. A fixed
        # threshold maps every large block and unmaps it on free, so the peak RSS counts live data
        print("   (MALLOC_MMAP_THRESHOLD_=1048576: every block >= 1 MiB mapped, unmapped on free)")
        env["MALLOC_MMAP_THRESHOLD_"] = str(1 << 20)
    rows = []
    for mode, n_layers in (("netxray", 1), ("netxray", 3), ("netxray", 5), ("netxray", 9),
                           ("deepest", 3), ("naive", 1), ("naive", 5)):  # fmt: skip
        if mode not in modes.split(",") or str(n_layers) not in layers.split(","):
            continue
        cmd = [sys.executable, __file__, "--worker", mode, "--worker-layers", str(n_layers),
               "--curve-n", str(n), "--threads", str(threads)]  # fmt: skip
        res = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
        if res.returncode != 0:
            print(f"{mode:>8} {n_layers:>6}  failed: {res.stderr.strip().splitlines()[-1:]}")
            continue
        r = json.loads(res.stdout.strip().splitlines()[-1])
        rows.append(r)
        r["mode"] = mode
        print(f"{mode:>8} {n_layers:>6} {r['wall_s']:>8.1f} {r['peak_rss_mb']:>12.0f} "
              f"{r['rss_before_mb']:>10.0f}  {r['q']}")  # fmt: skip
    by = {(r["mode"], r["layers"]): r for r in rows}
    # separates "more layers kept alive" from "a heavier pass": layer1.1 (the 3rd probe) is the
    # deepest of the three 65 536-wide layers (the widest rows), so probing it alone is the
    # heaviest single-layer pass of this model; the curve over L layers should cost about that
    for last in (3, 5, 9):
        if ("netxray", last) in by and ("deepest", 3) in by:
            a, b = by[("netxray", last)], by[("deepest", 3)]
            print(f"first {last} layers vs the heaviest single layer (layer1.1) alone: peak RSS "
                  f"{a['peak_rss_mb']:.0f} vs {b['peak_rss_mb']:.0f} MB ({a['peak_rss_mb'] - b['peak_rss_mb']:+.0f} MB)")
    for mode in ("netxray", "naive"):
        for last in (5, 9):
            if (mode, 1) in by and (mode, last) in by:
                grow = by[(mode, last)]["peak_rss_mb"] - by[(mode, 1)]["peak_rss_mb"]
                print(f"{mode}: peak RSS growth from 1 to {last} probed layers: {grow:+.0f} MB")
    if ("netxray", 5) in by and ("naive", 5) in by:
        a, b = by[("netxray", 5)], by[("naive", 5)]
        print(f"5 layers, naive / netxray: peak RSS {b['peak_rss_mb'] / a['peak_rss_mb']:.2f}x, "
              f"wall {b['wall_s'] / a['wall_s']:.2f}x; same Q: {a['q'] == b['q']}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("modularity", "faiss", "curve", "all"), default="all")
    p.add_argument("--faiss-sizes", default="10000,20000,40000")
    p.add_argument("--sizes", default="500,2000,5000,20000")
    p.add_argument("--ref-max", type=int, default=20000, help="largest N the baseline runs at")
    p.add_argument("--ref-full", type=int, default=5000,
                   help="largest N the baseline runs whole (above: its top-k timed on 1000 rows)")
    p.add_argument("--d", type=int, default=256, help="feature width of the one-layer benchmark")
    p.add_argument("--k", type=int, default=3)
    p.add_argument("--curve-n", type=int, default=2000)
    p.add_argument("--curve-layers", default="1,3,5,9", help="which layer counts to run (of 1,3,5,9)")
    p.add_argument("--fixed-mmap", action="store_true",
                   help="fixed glibc mmap threshold in the workers: separates allocator retention from live data")
    p.add_argument("--curve-modes", default="netxray,deepest,naive",
                   help="which curve runs: netxray (first L layers), deepest (layer L alone), naive")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--worker", choices=("netxray", "deepest", "naive"), help=argparse.SUPPRESS)
    p.add_argument("--worker-layers", type=int, default=5, help=argparse.SUPPRESS)
    args = p.parse_args()
    _set_threads(args.threads)
    import torch

    torch.set_num_threads(args.threads)
    if args.worker:
        curve_worker(args.worker, args.worker_layers, args.curve_n)
        return
    if args.part in ("modularity", "all"):
        bench_modularity([int(s) for s in args.sizes.split(",")], args.d, args.k, args.ref_max, args.ref_full)
    if args.part in ("faiss", "all"):
        bench_faiss([int(s) for s in args.faiss_sizes.split(",")], args.d, args.k, args.threads)
    if args.part in ("curve", "all"):
        bench_curve(args.curve_n, args.threads, args.curve_modes, args.curve_layers, args.fixed_mmap)


if __name__ == "__main__":
    main()
