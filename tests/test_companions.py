"""Companion metrics at the boundary between the sample-space and feature-space routes."""

from __future__ import annotations

import numpy as np
import pytest

from netxray.measures.companions import linear_cka, linear_r2


@pytest.mark.parametrize("d", [1, 7, 31])
def test_r2_is_one_at_n_equal_d_plus_one_and_below_one_beyond(d):
    # n = d + 1 (the d×d feature-space route, d < n): the centred X̃ has rank n − 1 = d, its
    # column space is every centred vector of R^n, so any output is fitted exactly: R² = 1.
    rng = np.random.default_rng(d)
    x = rng.normal(size=(d + 1, d))
    assert linear_r2(x, rng.normal(size=(d + 1, 3))) == pytest.approx(1.0, abs=1e-9)
    # one sample more and an output independent of x is no longer interpolated
    x2 = rng.normal(size=(d + 2, d))
    assert linear_r2(x2, rng.normal(size=(d + 2, 3))) < 1.0 - 1e-6


def test_cka_the_same_either_side_of_n_equals_d():
    # the n×n (Gram) and d×d routes are the same statistic: a column of zeros changes neither
    # the centred products nor CKA, yet moves d from n − 1 (feature route) to n (Gram route)
    rng = np.random.default_rng(0)
    n = 30
    x = rng.normal(size=(n, n - 1))
    y = np.tanh(x @ rng.normal(size=(n - 1, n - 1)))
    pad = np.zeros((n, 1))
    assert linear_cka(np.hstack([x, pad]), np.hstack([y, pad])) == pytest.approx(linear_cka(x, y), rel=1e-12)
    assert linear_r2(np.hstack([x, pad]), y) == pytest.approx(linear_r2(x, y), abs=1e-12)
