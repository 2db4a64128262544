"""Bounded cost: estimate the memory and time of a quadratic or cubic operation before it starts.

Every operation whose cost grows with the square or the cube of a layer's width or of the
number of samples calls :func:`check_cost` first with its estimate:

- past :data:`WARN_BYTES` (2 GiB) of memory or :data:`WARN_SECONDS` (10 s) of estimated time,
  a :class:`CostWarning` says what is expensive, how expensive, and which option makes it
  cheaper;
- past the memory this machine has available (``MemAvailable`` of ``/proc/meminfo``, else the
  physical memory), a :class:`CostError` (a ``MemoryError``) refuses before anything is
  allocated, naming the option that makes it feasible.

The time model is deliberately simple and stated: ``flops / FLOPS`` with :data:`FLOPS` = 2e9
floating-point operations per second (one core of the 2-core development machine running BLAS
or scipy's assignment solver), and for a linear assignment on a d×d squared-distance cost
matrix ``4e-7·d²`` seconds, measured there (d = 1000…4000 and the issue's d = 20000: 96 s).
Estimates are for deciding whether to warn, not timings to report.

Example:
    >>> est = check_cost("a 100×100 matrix", bytes_needed=8 * 100 * 100, seconds=0.0, option="-")
    >>> est.bytes_needed
    80000
"""

from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

__all__ = [
    "FLOPS",
    "WARN_BYTES",
    "WARN_SECONDS",
    "CostError",
    "CostEstimate",
    "CostWarning",
    "affinity_cost",
    "per_unit_cost",
    "assignment_cost",
    "available_memory",
    "check_cost",
]

WARN_BYTES = 2 << 30  # 2 GiB
WARN_SECONDS = 10.0
FLOPS = 2e9  # floating-point operations per second assumed by the time estimates
_LSA_SECONDS_PER_ENTRY = 4e-7  # linear assignment on a squared-distance matrix, per cost entry
# LAPJV (lapx ``lapjvr``) on the affinity score's float32 cost matrices: 0.12–0.17 CPU s at
# n = 2048 (3–4e-8 s per entry, benchmarks/bench_affinity.py); doubled for a loaded machine
_LAPJV_SECONDS_PER_ENTRY = 8e-8


class CostWarning(ResourceWarning):
    """An operation is estimated to need more than WARN_BYTES of memory or WARN_SECONDS."""


class CostError(MemoryError):
    """An operation would need more memory than this machine has available."""


@dataclass(frozen=True)
class CostEstimate:
    """What an operation is estimated to need: peak bytes and seconds."""

    what: str
    bytes_needed: int
    seconds: float


def available_memory() -> int:
    """Bytes of memory available to a new allocation (``MemAvailable``; else physical memory).

    >>> available_memory() > 0
    True
    """
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 1 << 62  # unknown: never refuse on a guess


def _gib(n: float) -> str:
    return f"{n / 2**30:.1f} GiB" if n >= 2**27 else f"{n / 2**20:.0f} MiB"


def check_cost(
    what: str,
    *,
    bytes_needed: float,
    seconds: float,
    option: str,
    warn_bytes: float | None = None,
    warn_seconds: float | None = None,
) -> CostEstimate:
    """Warn or refuse before an expensive operation (see the module docstring).

    ``what`` names the operation and its size (``"align: axis hidden.0, 20000 units"``);
    ``option`` says what makes it cheaper or feasible (``"pass n_samples=2048"``).
    Raises :class:`CostError` when ``bytes_needed`` exceeds :func:`available_memory`.
    """
    est = CostEstimate(what, int(bytes_needed), float(seconds))
    avail = available_memory()
    if bytes_needed > avail:
        raise CostError(
            f"{what}: needs about {_gib(bytes_needed)} of memory, more than the {_gib(avail)} "
            f"available; {option}"
        )
    wb = WARN_BYTES if warn_bytes is None else warn_bytes
    ws = WARN_SECONDS if warn_seconds is None else warn_seconds
    if bytes_needed > wb or seconds > ws:
        warnings.warn(
            f"{what}: expensive — about {_gib(bytes_needed)} of memory and ~{seconds:.0f} s "
            f"(estimates); {option}",
            CostWarning,
            stacklevel=3,
        )
    return est


def assignment_cost(d: int, k: int) -> tuple[float, float]:
    """(bytes, seconds) of an exact linear assignment between two sets of d points in k dimensions.

    Memory: the d×d float64 cost matrix and the d×d product it is built from (2·8·d² bytes, plus
    the 2·d·k inputs); time: building it (2·d²·k flops) plus the solver (4e-7·d² s, measured).

    >>> b, s = assignment_cost(1000, 64)
    >>> b == 16 * 1000**2 + 16 * 1000 * 64
    True
    """
    d, k = int(d), int(k)
    return 16.0 * d * d + 16.0 * d * k, 2.0 * d * d * k / FLOPS + _LSA_SECONDS_PER_ENTRY * d * d


def affinity_cost(n: int, d: int) -> tuple[float, float]:
    """(bytes, seconds) of one affinity score on n samples of d features, as computed.

    The map works in r = min(d, 2n − 2) dimensions (d > 2n − 2: the sample-space path, whose
    2n × 2n Gram matrix costs 2·(2n)²·d flops); about ten r × r float64 matrices and 10·r³ +
    6·n·r² flops. W2: the float32 cost matrix (4·n² bytes) filled from 256-row float64 blocks
    from augmented n × (r + 2) copies of both clouds, 2·n²·r flops (for r ≥ 256 with ``lapjv``
    installed, one float32 product of the same size, about half the time: kept as the bound),
    and the LAPJV assignment (8e-8 s per entry: measured 3–4e-8 on one idle core, doubled for
    a loaded one). d = 1: sorting.

    >>> b, s = affinity_cost(2048, 512)
    >>> b < 100 * 2**20 and s < 5
    True
    """
    n, d = int(n), int(d)
    if d <= 1:
        return 16.0 * n, 0.0
    r = min(d, max(1, 2 * n - 2))
    gram_bytes = 8.0 * (2 * n) ** 2 + 16.0 * n * d if r < d else 0.0
    gram_flops = 2.0 * (2 * n) ** 2 * d if r < d else 0.0
    bytes_needed = max(
        gram_bytes,
        4.0 * n * n + 8.0 * 256 * n + 16.0 * n * (r + 2) + 80.0 * r * r + 32.0 * n * r,
    )
    flops = gram_flops + 10.0 * r**3 + 6.0 * n * r * r + 2.0 * n * n * r
    return bytes_needed, flops / FLOPS + _LAPJV_SECONDS_PER_ENTRY * n * n


def per_unit_cost(n_values: int, n_units: int, *, copies: float, bytes_per_unit: float) -> tuple[float, float]:
    """(bytes, seconds) of a per-unit pass over a model: ``copies`` float64 copies of its
    ``n_values`` parameter values plus ``bytes_per_unit`` for each of ``n_units`` table rows or
    per-unit arrays (the peak of the weights lens's node strengths and of the symmetry lens grows
    with a layer's width: one row, or one entry of several per-unit arrays, per unit). Time:
    ~20 flops per value and per unit.

    >>> per_unit_cost(1000, 10, copies=2, bytes_per_unit=300)
    (19000.0, 1.01e-05)
    """
    n_values, n_units = int(n_values), int(n_units)
    return 8.0 * copies * n_values + bytes_per_unit * n_units, 20.0 * (n_values + n_units) / FLOPS


def model_units(model: object) -> tuple[int, int]:
    """(floating parameter values, units) of a torch model: the units are the rows plus the
    columns of every parameter with two or more dimensions (output and input units or channels).

    >>> import torch
    >>> model_units(torch.nn.Linear(3, 5))
    (20, 8)
    """
    values = units = 0
    for p in model.parameters():  # type: ignore[attr-defined]
        if p.is_floating_point():
            values += p.numel()
            if p.dim() >= 2:
                units += int(p.shape[0]) + int(p.shape[1])
    return values, units
