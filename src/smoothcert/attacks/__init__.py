"""L2 attacks on base and smoothed classifiers, and the surrogate ascent of WRM/NAL."""

from smoothcert.attacks.pgd import pgd_l2, pgd_l2_smoothed
from smoothcert.attacks.robust import RobustAccuracy, robust_accuracy
from smoothcert.attacks.surrogate import AscentResult, surrogate_ascent

__all__ = [
    "AscentResult",
    "RobustAccuracy",
    "pgd_l2",
    "pgd_l2_smoothed",
    "robust_accuracy",
    "surrogate_ascent",
]
