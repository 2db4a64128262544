"""netxray._threads.set_threads: every thread pool in the process, set once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

SRC = str(Path(__file__).resolve().parents[1] / "src")


def test_set_threads_limits_every_pool_even_scipy_loaded_later():
    # A fresh process: set_threads is called before anything imported scipy.linalg, whose own
    # OpenBLAS (a separate pool from numpy's) then loads; threadpoolctl alone would miss it.
    code = (
        "from netxray._threads import set_threads, thread_counts\n"
        "set_threads(1)\n"
        "import scipy.linalg, json\n"
        "print(json.dumps(thread_counts()))\n"
    )
    env = {**os.environ, "PYTHONPATH": SRC, "OPENBLAS_NUM_THREADS": "2", "OMP_NUM_THREADS": "2"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, check=True)
    counts = json.loads(out.stdout.strip().splitlines()[-1])
    assert counts["torch"] == 1
    assert any("scipy" in name for name in counts if name != "torch"), counts  # scipy's pool is listed
    assert set(counts.values()) == {1}, counts


@pytest.mark.parametrize("bad", [0, -1, 1.5, True, "2"])
def test_set_threads_rejects_what_is_not_a_positive_integer(bad):
    from netxray._threads import set_threads

    with pytest.raises((ValueError, TypeError), match="threads"):
        set_threads(bad)
