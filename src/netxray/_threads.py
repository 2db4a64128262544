"""The one place where netxray sets thread counts: torch's intra-op pool and the BLAS pools.

numpy and scipy each ship their own OpenBLAS (two separate libraries, two thread pools), and
torch keeps a third pool (OpenMP). Left alone, each sizes itself to the machine, and on a small
machine the pools oversubscribe the cores: 2 BLAS threads spinning beside 2 torch threads made a
512×512 ``eigh`` 3× slower on a 2-core machine, and a 768×768 scipy Cholesky took 2 s instead of
0.05 s. ``set_threads(n)`` gives every pool the same n; the CLI's ``--threads`` calls it, library
users can too. netxray never changes thread counts on its own behind a user's back (a library
must not); the benchmarks and the test suite (``tests/conftest.py``) call it once at start.

How: threadpoolctl can only limit libraries already loaded into the process, and scipy loads its
OpenBLAS on the first ``import scipy.linalg`` — a limit set before that import silently missed
scipy's pool (measured: 2 threads left there after ``set_threads(1)``). So ``set_threads`` first
imports numpy and scipy.linalg (netxray needs both anyway), then limits every loaded pool, and
sets ``OMP_NUM_THREADS``/``OPENBLAS_NUM_THREADS``/``MKL_NUM_THREADS`` for libraries loaded
later (they read them when they load) and for child processes.
"""

from __future__ import annotations

import os
from typing import Any

__all__ = ["set_threads", "thread_counts"]

_BLAS_LIMITER: Any = None  # kept alive: threadpoolctl's limit lasts as long as this object
_ENV_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def set_threads(n: int) -> None:
    """Use ``n`` threads for torch's intra-op work and for every BLAS/LAPACK pool (numpy, scipy).

    >>> set_threads(1)
    >>> set(thread_counts().values())
    {1}
    """
    global _BLAS_LIMITER
    import numpy

    if isinstance(n, bool) or not isinstance(n, (int, numpy.integer)) or n < 1:
        raise ValueError(f"threads must be a positive integer, got {n!r}")
    import scipy.linalg  # noqa: F401  (loads scipy's own OpenBLAS, a separate pool from numpy's)
    import torch

    for var in _ENV_VARS:
        os.environ[var] = str(int(n))
    torch.set_num_threads(int(n))
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - threadpoolctl comes with scikit-learn
        return
    _BLAS_LIMITER = threadpool_limits(limits=int(n))


def thread_counts() -> dict[str, int]:
    """Threads each pool will use: ``torch`` and every loaded BLAS/OpenMP library (by file name).

    >>> "torch" in thread_counts()
    True
    """
    import torch

    out = {"torch": int(torch.get_num_threads())}
    try:
        from threadpoolctl import threadpool_info
    except ImportError:  # pragma: no cover
        return out
    for info in threadpool_info():
        out[os.path.basename(str(info.get("filepath", info.get("prefix", "?"))))] = int(info["num_threads"])
    return out
