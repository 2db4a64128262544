"""Benchmark: the non-linearity signature of the built-in ResNet (64-128-256-512, 32×32 inputs).

For each depth (residual blocks per stage) a fresh child process builds the model (random
init, seed 0), makes n = 2048 seeded 3×32×32 inputs, times one plain forward pass over them
(the floor) and then ``nonlinearity_signature`` (capture + scoring of every activation call;
the scoring share is printed separately),
and reports its peak RSS (VmHWM) above the RSS before the signature started.

Memory must not grow with the number of activation sites beyond the pooled (n, d) features
that are kept: the table prints those bytes next to what keeping the full (n, C, H, W) maps
would have cost, and the peak RSS growth for 1 and 2 blocks per stage (9 and 17 sites).

    python benchmarks/bench_signature.py [--n 2048] [--depths 1,2] [--batch-size 256] [--threads 1]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time


def _rss_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return -1


def child(n: int, depth: int, batch_size: int, threads: int | None) -> dict:
    import torch

    if threads is not None:
        from netxray._threads import set_threads

        set_threads(threads)  # torch and every BLAS pool (scipy's own included)

    import netxray.lenses.nonlinearity as lens
    from netxray.models import build_model

    scoring = []
    site_row = lens._site_row

    def timed_site_row(*args, **kwargs):  # split the wall time: capture vs scoring the sites
        t0 = time.perf_counter()
        row = site_row(*args, **kwargs)
        scoring.append(time.perf_counter() - t0)
        return row

    lens._site_row = timed_site_row

    torch.manual_seed(0)
    model = build_model({"arch": "resnet", "input_shape": [3, 32, 32], "num_classes": 10,
                         "channels": [64, 128, 256, 512], "depth": depth}).eval()  # fmt: skip
    x = torch.randn(n, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    # full map sizes per activation call, from one sample
    shapes = []
    hooks = [m.register_forward_hook(lambda m, i, o: shapes.append(tuple(o.shape[1:])))
             for m in model.modules() if isinstance(m, torch.nn.ReLU)]  # fmt: skip
    with torch.no_grad():
        model(x[:1])
    for h in hooks:
        h.remove()
    t = time.perf_counter()
    with torch.no_grad():
        for i in range(0, n, batch_size):
            model(x[i : i + batch_size])
    t_forward = time.perf_counter() - t
    rss_before = _rss_kib("VmRSS")
    t = time.perf_counter()
    df = lens.nonlinearity_signature(model, x, n_samples=n, batch_size=batch_size)
    t_sig = time.perf_counter() - t
    peak = _rss_kib("VmHWM")
    pooled = int(sum(2 * 4 * n * int(d) for d in df["d"]))
    full = int(sum(2 * 4 * n * int(torch.tensor(s).prod()) for s in shapes))
    return {"depth": depth, "sites": len(df), "statuses": df["status"].value_counts().to_dict(),
            "forward_s": t_forward, "signature_s": t_sig, "scoring_s": sum(scoring), "rss_before_mib": rss_before / 1024,
            "peak_growth_mib": (peak - rss_before) / 1024, "pooled_mib": pooled / 2**20,
            "full_maps_mib": full / 2**20, "mean_affinity": float(df["affinity"].mean())}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=2048)
    parser.add_argument("--depths", default="1,2")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None, help="BLAS and torch threads")
    parser.add_argument("--child", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child is not None:
        print(json.dumps(child(args.n, args.child, args.batch_size, args.threads)))
        return
    print(f"signature of the built-in ResNet 64-128-256-512, 32×32 inputs, n = {args.n}")
    print(f"{'blocks/stage':>12s} {'sites':>5s} {'forward s':>9s} {'signature s':>11s} {'(scoring s)':>11s} "
          f"{'peak RSS growth MiB':>19s} {'pooled kept MiB':>15s} {'full maps MiB':>13s}")  # fmt: skip
    for depth in [int(v) for v in args.depths.split(",")]:
        out = subprocess.run([sys.executable, __file__, "--n", str(args.n), "--batch-size",
                              str(args.batch_size), "--child", str(depth)]
                             + (["--threads", str(args.threads)] if args.threads else []),
                             capture_output=True, text=True, check=True)  # fmt: skip
        r = json.loads(out.stdout.strip().splitlines()[-1])
        print(f"{r['depth']:12d} {r['sites']:5d} {r['forward_s']:9.1f} {r['signature_s']:11.1f} "
              f"{r['scoring_s']:11.1f} "
              f"{r['peak_growth_mib']:19.0f} {r['pooled_mib']:15.0f} {r['full_maps_mib']:13.0f}"
              f"   statuses {r['statuses']}, mean ρ {r['mean_affinity']:.3f}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
