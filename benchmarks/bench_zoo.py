"""Benchmark: zoo analysis throughput (models per second), serial vs local process pool vs Ray.

Trains a small zoo once (or uses ``--zoo DIR``), then runs ``analyze_zoo`` on each engine side
by side and prints models/s and the ratio to the serial engine. Start-up (spawning workers,
starting Ray) is included, as a user sees it.

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
        train_zoo(zoo, "mlp,cnn", "width=8,16;depth=1,2;lr=1e-3,1e-2;epochs=1,2;seed=0,1",
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


if __name__ == "__main__":
    main()
