"""Benchmark: the built-in families' default training on ``digits``, and checkpoint save/load.

Goal (issue 2): with the defaults, every family reaches >= 95 % test accuracy on digits (ViT
>= 90 %) in well under a minute on 2 CPU cores. Printed per family, side by side in one run:
wall time and test accuracy with 1 torch thread and with N threads (``--threads``, default 2),
their time ratio, and whether the goal holds. Then checkpoint save and load times per family
and the ratio of load time to a fresh ``build_model`` (what loading costs beyond building).

    python benchmarks/bench_train.py [--archs mlp,cnn,resnet,vit] [--threads 2] [--seeds 0]

On a machine shared by busy processes, multi-threaded OpenMP spins: the 1-thread column is the
steadier number there; on an idle 2-core machine the N-thread column is the one to read.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import torch

from netxray.data import load_data
from netxray.models import build_model, load, save_checkpoint
from netxray.training import TRAIN_DEFAULTS, train

GOAL = {"mlp": 0.95, "cnn": 0.95, "resnet": 0.95, "vit": 0.90}


def _train(arch: str, data, seed: int, threads: int) -> tuple[float, float]:
    t0 = time.perf_counter()
    r = train(arch, data, seed=seed, progress=False, num_threads=threads)
    return time.perf_counter() - t0, r.metrics["test_acc"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--archs", default="mlp,cnn,resnet,vit")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--seeds", default="0", help="comma-separated training seeds")
    args = ap.parse_args()
    archs = args.archs.split(",")
    seeds = [int(s) for s in args.seeds.split(",")]
    data = load_data("digits")
    print(f"digits: {len(data.train)} train / {len(data.test)} test; torch {torch.__version__}; "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    print(f"{'arch':7} {'epochs':>6} {'t 1thr s':>9} {'t ' + str(args.threads) + 'thr s':>9} "
          f"{'ratio':>6} {'acc min':>8} {'acc mean':>8} goal")
    models = {}
    for arch in archs:
        t1, tn, accs = [], [], []
        for seed in seeds:
            s1, a1 = _train(arch, data, seed, 1)
            sn, an = _train(arch, data, seed, args.threads)
            t1.append(s1)
            tn.append(sn)
            accs += [a1, an]
        acc_ok = min(accs) >= GOAL[arch]
        verdict = ", ".join(
            f"{label}: {'ok' if acc_ok and max(ts) < 60 else 'MISSED'}"
            for label, ts in (("1 thr", t1), (f"{args.threads} thr", tn))
        )
        print(f"{arch:7} {TRAIN_DEFAULTS[arch]['epochs']:>6} {statistics.median(t1):>9.2f} "
              f"{statistics.median(tn):>9.2f} {statistics.median(t1) / statistics.median(tn):>6.2f} "
              f"{min(accs):>8.4f} {statistics.mean(accs):>8.4f} {verdict} "
              f"(acc >= {GOAL[arch]:.2f}, < 60 s)", flush=True)
        torch.manual_seed(0)
        models[arch] = build_model(train(arch, data, epochs=1, progress=False).config)

    print(f"\n{'arch':7} {'params':>8} {'save ms':>8} {'load ms':>8} {'build ms':>8} {'load/build':>10}")
    for arch, model in models.items():
        with tempfile.TemporaryDirectory() as d:
            reps = 5
            t0 = time.perf_counter()
            for _ in range(reps):
                save_checkpoint(model, d)
            save = (time.perf_counter() - t0) / reps
            t0 = time.perf_counter()
            for _ in range(reps):
                loaded = load(d)
            ld = (time.perf_counter() - t0) / reps
            t0 = time.perf_counter()
            for _ in range(reps):
                build_model(model.netxray_config)
            build = (time.perf_counter() - t0) / reps
            x = data.test.x[:64]
            assert torch.equal(loaded(x), model.eval()(x)), "round trip not bit-identical"
        n = sum(p.numel() for p in model.parameters())
        print(f"{arch:7} {n:>8} {save * 1e3:>8.1f} {ld * 1e3:>8.1f} {build * 1e3:>8.1f} {ld / build:>10.2f}")


if __name__ == "__main__":
    main()
