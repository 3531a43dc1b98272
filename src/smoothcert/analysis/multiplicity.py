"""Many radii, one verdict: p-values of the reports' differences and Holm's correction over
the radii of one comparison.

A report row "A − B" tests one difference per radius, a dozen of them; starring each cell
beyond two standard errors calls some difference somewhere far more often than 5% of the
time when there is none. Holm's step-down procedure (Holm 1979) keeps the chance of any false
call in the row at most ``level`` whatever the dependence between the radii (differences at
neighbouring radii are strongly correlated, which makes it conservative, never wrong): sort
the m p-values, p_(1) ≤ … ≤ p_(m); reject the j-th smallest while p_(j) ≤ level/(m − j + 1)
and every smaller one was rejected; stop at the first that is not.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence

from scipy import stats


def normal_p(difference: float, se: float) -> float:
    """Two-sided p-value of ``difference`` under a normal null with standard error ``se``
    (the paired difference of many test images); 0 when se = 0 and difference ≠ 0, 1 when
    both are 0.

    >>> round(normal_p(0.02, 0.01), 4)
    0.0455
    """
    if se == 0:
        return 1.0 if difference == 0 else 0.0
    return float(2 * stats.norm.sf(abs(difference) / se))


def t_p(difference: float, se: float, df: float) -> float:
    """Two-sided p-value of ``difference`` under Student's t with ``df`` degrees of freedom
    and standard error ``se`` (a difference over a few training seeds).

    >>> round(t_p(0.02, 0.01, 2), 4)
    0.1835
    """
    if se == 0 or math.isinf(df):
        return normal_p(difference, se)
    return float(2 * stats.t.sf(abs(difference) / se, df))


def holm(p_values: Sequence[float], level: float = 0.05) -> list[bool]:
    """Which of the hypotheses Holm's step-down procedure rejects at family-wise ``level``.

    Parameters
    ----------
    p_values : sequence of float
        One p-value per hypothesis (per radius of a comparison); NaN counts as not rejected
        and still counts in m.
    level : float
        The family-wise error rate, in (0, 1).

    Returns
    -------
    list of bool
        In the order given.

    Examples
    --------
    m = 4: 0.001 ≤ 0.05/4 and 0.012 ≤ 0.05/3 are rejected; 0.03 > 0.05/2 stops there, so 0.04
    is not rejected although it is below 0.05:

    >>> holm([0.03, 0.001, 0.04, 0.012])
    [False, True, False, True]
    """
    m = len(p_values)
    order = sorted(range(m), key=lambda j: (math.isnan(p_values[j]), p_values[j]))
    rejected = [False] * m
    for rank, j in enumerate(order):
        p = p_values[j]
        if math.isnan(p) or p > level / (m - rank):
            break
        rejected[j] = True
    return rejected


def holm_by_key(p_values: Mapping[Hashable, float], level: float = 0.05) -> dict[Hashable, bool]:
    """:func:`holm` over a mapping (e.g. radius -> p-value), keyed alike.

    >>> holm_by_key({0.5: 0.001, 1.0: 0.04})
    {0.5: True, 1.0: True}
    """
    return dict(zip(p_values, holm(list(p_values.values()), level), strict=True))
