"""Peak memory of the running benchmark process, shared by the benchmarks that measure it."""

from __future__ import annotations

import resource


def peak_rss_mb() -> float:
    """This process's peak RSS (VmHWM, MB). Not ru_maxrss: Linux carries that across exec, so
    a worker started by a bigger parent would report the parent's peak."""
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
