"""Benchmark: zoo analysis throughput (models per second), serial vs local process pool vs Ray.

Trains a small zoo once (or uses ``--zoo DIR``), then runs ``analyze_zoo`` on each engine side
by side and prints models/s and the ratio to the serial engine. Start-up (spawning workers,
starting Ray) is included, as a user sees it. Then the study's answer to "does the power-law α
of the weight spectra predict accuracy?": every predictor's out-of-fold R² and Kendall τ
(weights, hyperparameters, α alone, weights + α) and the rank correlation of each α feature
with accuracy per family.

    .venv/bin/python benchmarks/bench_zoo.py [--zoo DIR] [--workers 2]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--zoo", type=Path, default=None)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--engines", default="serial,local,ray")
    args = ap.parse_args()
    from netxray.lenses.zoo import analyze_zoo, train_zoo

    zoo = args.zoo
    if zoo is None:
        zoo = Path(tempfile.mkdtemp()) / "zoo"
        t = time.perf_counter()
        # widths from 16: a layer needs >= 11 eigenvalues for a power-law alpha
        train_zoo(zoo, "mlp,cnn", "width=16,32;depth=1,2;lr=1e-3,1e-2;epochs=1,2;seed=0,1",
                  engine="local", workers=args.workers, progress=False)
        print(f"trained a 64-model zoo in {time.perf_counter() - t:.1f} s ({zoo})")
    rates, ref = {}, None
    for engine in args.engines.split(","):
        try:
            t = time.perf_counter()
            res = analyze_zoo(zoo, engine=engine, workers=args.workers)
            dt = time.perf_counter() - t
        except ImportError as exc:
            print(f"{engine:>6}: skipped ({exc})")
            continue
        n = len(res.models)
        s = res.summary
        rates[engine] = n / dt
        ref = ref or rates[engine]
        print(f"{engine:>6}: {n} models in {dt:6.1f} s = {n / dt:6.2f} models/s "
              f"(features {s['seconds_features']:.1f} s, histograms {s['seconds_histograms']:.1f} s, "
              f"predictors {s['seconds_predictors']:.1f} s); ratio to {next(iter(rates))}: {rates[engine] / ref:.2f}")
    if rates:
        print("predictors (out-of-fold, GroupKFold by run):")
        for p in s["predictors"]:
            print(f"  {p['predictor']:>5} on {p['features']:<13} R2 = {p['r2']:6.3f}  Kendall tau = "
                  f"{p['kendall_tau']:6.3f}  (n = {p['n']}) {'' if p['status'] == 'ok' else p['status']}")
        print("alpha features vs accuracy (trained models with a fit):")
        for r in s["alpha_vs_accuracy"]:
            print(f"  {r['arch']:>5} {r['feature']:<20} n = {r['n']:>4}  Spearman rho = {r['spearman']:+.3f} "
                  f"(p = {r['spearman_p']:.2g})  Kendall tau = {r['kendall_tau']:+.3f}")


if __name__ == "__main__":
    main()
