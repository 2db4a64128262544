"""The one place where netxray sets thread counts: torch's intra-op pool and the BLAS pool.

numpy/scipy (OpenBLAS or MKL, via threadpoolctl) and torch (OpenMP) keep separate thread
pools. Left alone, each sizes itself to the machine, and on a small machine the two pools
oversubscribe the cores: 2 BLAS threads spinning beside 2 torch threads made a 512×512
``eigh`` 3× slower on a 2-core machine. ``set_threads(n)`` gives both pools the same n;
the CLI's ``--threads`` calls it, library users can too. netxray never changes thread
counts on its own behind a user's back (a library must not); benchmarks and the test suite
call this once at start.
"""

from __future__ import annotations

from typing import Any

__all__ = ["set_threads"]

_BLAS_LIMITER: Any = None  # kept alive: threadpoolctl's limit lasts as long as this object


def set_threads(n: int) -> None:
    """Use ``n`` threads for torch's intra-op work and for BLAS/LAPACK (numpy, scipy).

    >>> set_threads(1)
    """
    global _BLAS_LIMITER
    if isinstance(n, bool) or int(n) != n or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    import torch

    torch.set_num_threads(int(n))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return
    _BLAS_LIMITER = threadpool_limits(limits=int(n))
