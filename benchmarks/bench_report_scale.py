"""Benchmark: the report's per-layer plots at 10, 100 and 500 sites, and one large model's report.

(a) Each per-layer figure (signature, modularity curve, node strengths, per-tensor histograms,
symmetry bars) drawn from synthetic tables with EfficientNet-like names and rendered by
``figure_to_plot`` (stage labels, overlap check, PNG, hover slots): time and PNG size per figure
and count. (b) A torchvision EfficientNet-B0 (random init, 48 inputs of 3×32×32, n = 48, null
baseline and companion measures off as in the browser test): ``scan`` time, ``render_html``
time, and the size of ``index.html``.

    python benchmarks/bench_report_scale.py [--sizes 10,100,500] [--no-model] [--threads 1]

Goal (issue 14): a 500-site figure renders in seconds, not minutes; the large-model report
stays near 1 MB.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def bench_figures(sizes: list[int]) -> None:
    import test_report_scale as T
    from netxray.report.html import figure_to_plot

    print(f"{'figure':<20}{'n':>6}{'draw s':>9}{'render s':>10}{'PNG kB':>9}{'slots':>7}")
    for n in sizes:
        gen = T._figures(n)
        while True:
            t0 = time.perf_counter()
            try:
                what, fig, _ = next(gen)
            except StopIteration:
                break
            t1 = time.perf_counter()
            plot = figure_to_plot(fig, what)
            t2 = time.perf_counter()
            print(f"{what:<20}{n:>6}{t1 - t0:>9.2f}{t2 - t1:>10.2f}{len(plot.png) / 1e3:>9.0f}{len(plot.regions):>7}")


def bench_model() -> None:
    import test_browser as B
    from netxray.report import scan
    from netxray.report.html import render_html

    model, data, options = B._efficientnet_b0()
    t0 = time.perf_counter()
    report = scan(model, data, seed=0, n_samples=48, modularity_n=48, repeats=2, options=options, progress=False)
    t1 = time.perf_counter()
    page = render_html(report)
    t2 = time.perf_counter()
    with tempfile.TemporaryDirectory() as d:
        index = report.save(d)
        size = index.stat().st_size
    plots = sum(len(r.plots) for r in report.results.values())
    print(f"EfficientNet-B0: scan (lenses + {plots} plots) {t1 - t0:.1f} s, render_html {t2 - t1:.2f} s, "
          f"index.html {size} bytes ({len(page)} characters)")  # fmt: skip
    for name, r in report.results.items():
        print(f"  {name:<13} {r.status:<7} {r.seconds:6.1f} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,100,500")
    ap.add_argument("--no-model", action="store_true")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    bench_figures([int(s) for s in args.sizes.split(",")])
    if not args.no_model:
        bench_model()


if __name__ == "__main__":
    main()
