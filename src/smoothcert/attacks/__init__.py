"""L2 attacks on base and smoothed classifiers, and the surrogate ascent of WRM/NAL."""

from smoothcert.attacks.surrogate import AscentResult, surrogate_ascent

__all__ = ["AscentResult", "surrogate_ascent"]
