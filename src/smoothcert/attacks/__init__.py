"""L2 attacks on base and smoothed classifiers (the surrogate ascent of WRM/NAL lives with the
certificate it serves, in :mod:`smoothcert.distributional.ascent`)."""

from smoothcert.attacks.pgd import pgd_l2, pgd_l2_smoothed
from smoothcert.attacks.robust import RobustAccuracy, robust_accuracy

__all__ = [
    "RobustAccuracy",
    "pgd_l2",
    "pgd_l2_smoothed",
    "robust_accuracy",
]
