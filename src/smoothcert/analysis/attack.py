"""The numbers of attack runs (the NAL paper's Table 2 protocol): accuracy under attack with its
binomial standard error, and the paired difference of two models on the images both were
attacked on. The runs are read by :func:`smoothcert.runs.attack.read_attack`."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def binomial_se(accuracy: Sequence[float], n: int) -> list[float]:
    """The standard error √(p(1 − p)/n) of each accuracy p over the n attacked images.

    Examples
    --------
    >>> binomial_se([0.5, 1.0], 100)
    [0.05, 0.0]
    """
    return [math.sqrt(p * (1 - p) / n) for p in accuracy]


def paired_difference(
    a: Mapping[str, Any], b: Mapping[str, Any], eps: Sequence[float]
) -> tuple[int, dict[float, tuple[float, float] | None]]:
    """Accuracy of run ``a`` minus run ``b`` (two ``read_attack`` results) at each radius, on
    the images both attacked: (number of shared images, radius -> (mean, paired standard error),
    None where a run lacks the radius or fewer than two images are shared)."""
    pos_a = {r["idx"]: i for i, r in enumerate(a["rows"])}
    pos_b = {r["idx"]: i for i, r in enumerate(b["rows"])}
    shared = sorted(pos_a.keys() & pos_b.keys())
    out: dict[float, tuple[float, float] | None] = {}
    for e in eps:
        if e not in a["eps"] or e not in b["eps"] or len(shared) < 2:
            out[e] = None
            continue
        va = a["robust"][[pos_a[i] for i in shared], a["eps"].index(e)]
        vb = b["robust"][[pos_b[i] for i in shared], b["eps"].index(e)]
        d = va.astype(float) - vb.astype(float)
        out[e] = (float(d.mean()), float(d.std(ddof=1) / math.sqrt(len(d))))
    return len(shared), out
