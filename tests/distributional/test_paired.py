"""The paired comparison of two estimates of Theorem 1 (NAL Theorem 3's smoothed against WRM)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from smoothcert._util.checks import ParameterError
from smoothcert.distributional import curve_from_table, paired_difference
from smoothcert.distributional.table import SurrogateTable


def _table(lag: np.ndarray, sigma: float = 0.0, dim: int = 4) -> SurrogateTable:
    zeros = np.zeros_like(lag)
    gammas = np.array([0.5, 1.0, 2.0])
    return SurrogateTable(gammas, sigma, dim, lag, zeros, zeros, zeros, zeros, np.arange(len(lag)))


def test_each_side_is_the_curve_and_the_se_is_that_of_the_per_example_differences() -> None:
    rng = np.random.default_rng(0)
    shared = rng.normal(size=(40, 1))  # an example hard for one is hard for the other
    a = _table(3.0 + shared + 0.1 * rng.normal(size=(40, 3)) - np.array([0.0, 0.5, 1.0]), 0.1)
    b = _table(3.2 + shared + 0.1 * rng.normal(size=(40, 3)) - np.array([0.0, 0.4, 0.9]))
    ra, rb = [0.0, 0.3, 1.0], [0.04, 0.34, 1.04]
    d = paired_difference(a, b, ra, rb)
    ca, cb = curve_from_table(a, ra), curve_from_table(b, rb)
    np.testing.assert_allclose(d.value_a, ca.value, rtol=0, atol=1e-12)
    np.testing.assert_allclose(d.value_b, cb.value, rtol=0, atol=1e-12)
    np.testing.assert_array_equal(d.gamma_a, ca.gamma)
    np.testing.assert_allclose(d.difference, ca.value - cb.value, atol=1e-12)
    for k in range(3):  # the paired SE by hand, at the chosen γ of each side
        ja = int(np.flatnonzero(a.gammas == d.gamma_a[k])[0])
        jb = int(np.flatnonzero(b.gammas == d.gamma_b[k])[0])
        per = (a.lagrangian[1::2, ja] + ra[k] * d.gamma_a[k]) - (
            b.lagrangian[1::2, jb] + rb[k] * d.gamma_b[k]
        )
        assert d.se[k] == pytest.approx(per.std(ddof=1) / math.sqrt(20), abs=1e-12)
        # pairing removes the shared per-example spread: far below the unpaired SE
        assert d.se[k] < 0.5 * math.hypot(ca.se[k], cb.se[k])
    assert d.n_eval == 20


def test_tables_of_other_examples_and_bad_budgets_are_refused() -> None:
    a = _table(np.ones((6, 3)))
    b = _table(np.ones((6, 3)))
    b.indices = b.indices + 1
    with pytest.raises(ParameterError, match="same examples"):
        paired_difference(a, b, [0.0], [0.0])
    with pytest.raises(ParameterError) as e:
        paired_difference(a, _table(np.ones((6, 3))), [0.0, 1.0], [0.0])
    assert e.value.parameters == ("rho_adv_b",)
    with pytest.raises(ParameterError, match="rho_adv_a"):
        paired_difference(a, _table(np.ones((6, 3))), [-1.0], [0.0])
    with pytest.raises(ValueError, match="at least 4"):
        paired_difference(_table(np.ones((3, 3))), _table(np.ones((3, 3))), [0.0], [0.0])
