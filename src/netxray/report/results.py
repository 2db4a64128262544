"""What a scan produces, before any rendering: the options shared by the lenses, each lens's
:class:`LensResult` and its rendered :class:`Plot`s.

The bottom of the report package: runners produce these, ``html`` renders them, ``core`` ties
them into a :class:`~netxray.report.core.Report` — imports point one way (no circles).
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

__all__ = ["LensResult", "Plot", "ScanOptions"]


@dataclass
class Plot:
    """A rendered figure: PNG bytes, pixel size, a title and how to read it, and the named slots
    a reader can hover (``(left, top, width, height, name)`` in fractions of the image)."""

    title: str
    png: bytes
    width: int
    height: int
    caption: str = ""
    regions: list[tuple[float, float, float, float, str]] = field(default_factory=list)

    def data_uri(self) -> str:
        return "data:image/png;base64," + base64.b64encode(self.png).decode("ascii")


@dataclass
class ScanOptions:
    """Options shared by every lens of one scan (each lens takes what applies to it)."""

    seed: int = 0
    n_samples: int = 2048  # samples per activation site (non-linearity)
    modularity_n: int = 500  # samples per modularity subset (SPEC §2.2: N = 500)
    k: int = 3
    repeats: int = 5
    layers: Any = "auto"
    batch_size: int = 256
    device: Any = None
    extra: dict[str, dict[str, Any]] = field(default_factory=dict)  # per-lens keyword overrides


@dataclass
class LensResult:
    """What one lens found on one model (or, in a comparison, across models).

    ``status``: ``"ok"`` (its numbers are meaningful); ``"no_result"`` (the lens ran but nothing
    it measured is meaningful — no site scored, no layer measured: ``reason`` says why and what
    would give a result); ``"failed"`` (the lens raised on this model: ``reason`` says why);
    ``"unavailable"`` (the lens is not part of this installation).
    """

    name: str
    title: str
    status: str = "ok"
    reason: str | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)
    summary: dict[str, Any] = field(default_factory=dict)
    plots: list[Plot] = field(default_factory=list)
    howto: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def headline(self) -> dict[str, Any]:
        """Scalar summary figures (what the summary card shows)."""
        out: dict[str, Any] = {}
        for k, v in self.summary.items():
            if isinstance(v, (str, int, float, bool, np.integer, np.floating)) or v is None:
                out[k] = v
            elif isinstance(v, (list, tuple)) and len(v) <= 8 and all(
                isinstance(e, (str, int, float)) for e in v
            ):
                out[k] = list(v)
            elif isinstance(v, Mapping) and len(v) <= 8 and all(
                isinstance(e, (str, int, float)) for e in v.values()
            ):
                out[k] = dict(v)
        return out

    @property
    def table(self) -> pd.DataFrame | None:
        """The lens's main table (its first)."""
        return next(iter(self.tables.values()), None)
