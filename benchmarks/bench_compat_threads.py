"""The compat sweep's thread setting, measured: numpy's BLAS pool at its default vs one thread.

On a machine whose cores are shared with other processes, OpenBLAS's worker threads spin while
they wait, so the default pool (one thread per core) can be far slower than one thread for the
small, many LAPACK calls the signature makes (a QR of a d×2n matrix and a d×d-sized Cholesky /
eigendecomposition per site). Side by side, alternating, in one process:

- a QR of a (d, 48) matrix (the signature's joint basis at n = 24), d = 1024 and 4096;
- the non-linearity signature of torchvision densenet121 at n = 24 on 32×32 inputs (121 sites).

    python benchmarks/bench_compat_threads.py [--repeats 2]

Prints the median seconds per setting and the ratio default / one thread. The ratio depends on
the load beside it (on an idle machine the two are close): that is the point of the setting.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch
from threadpoolctl import threadpool_info, threadpool_limits


def _time(fn, limit: int | None) -> float:
    if limit is None:
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t
    with threadpool_limits(limits=limit):
        t = time.perf_counter()
        fn()
        return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--no-model", action="store_true", help="only the QR")
    args = ap.parse_args()
    torch.set_num_threads(1)
    pools = [(i["internal_api"], i["num_threads"]) for i in threadpool_info()]
    print(f"BLAS pools at their default: {pools}")
    rng = np.random.default_rng(0)
    cases = {}
    for d in (1024, 4096):
        a = rng.standard_normal((48, d))
        cases[f"QR ({d}, 48) ×20"] = lambda a=a: [np.linalg.qr(a.T, mode="reduced") for _ in range(20)]
    if not args.no_model:
        import torchvision

        from netxray import nonlinearity_signature

        torch.manual_seed(0)
        model = torchvision.models.densenet121(weights=None, num_classes=3).eval()
        x = torch.randn(24, 3, 32, 32, generator=torch.Generator().manual_seed(0))
        cases["signature densenet121 n=24"] = lambda: nonlinearity_signature(
            model, x, n_samples=24, null_baseline=False
        )
    for name, fn in cases.items():
        times: dict[str, list[float]] = {"default": [], "1 thread": []}
        for _ in range(args.repeats):  # alternating: the load beside it hits both alike
            times["default"].append(_time(fn, None))
            times["1 thread"].append(_time(fn, 1))
        med = {k: statistics.median(v) for k, v in times.items()}
        print(f"{name}: default {med['default']:.3f} s, 1 thread {med['1 thread']:.3f} s, "
              f"ratio {med['default'] / med['1 thread']:.1f}×")  # fmt: skip


if __name__ == "__main__":
    main()
