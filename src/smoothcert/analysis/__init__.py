"""Analyses of certify and predict runs (Cohen et al. §4, Appendices D and E, Figures 6 and 8).

- approximate certified accuracy at radius r: the fraction of examples certified correct with
  radius ≥ r (abstentions count as wrong), and its high-probability lower bound (Theorem 6);
- average certified radius (ACR): mean of radius·1[correct];
- re-analysis from the stored counts: the radius under the Lecuyer or Li bounds, under another
  α, or projected to another n keeping the empirical proportion nA/n (Figure 8);
- PREDICT's five outcome categories against a large-n reference run (Table 4).

Everything returns plain data; formatting and plotting are separate functions.
"""

from __future__ import annotations

from smoothcert.analysis.certify import (
    BOUNDS,
    DEFAULT_RADII,
    RunSummary,
    analyze,
    average_certified_radius,
    best_per_radius,
    bound_comparison,
    certified_accuracy,
    check_radii,
    load_certify_run,
    reanalyze,
    shared_radii,
)
from smoothcert.analysis.plots import (
    check_plot_path,
    plot_curves,
)
from smoothcert.analysis.predict import (
    PREDICT_CATEGORIES,
    REFERENCE_KEYS,
    check_independent_noise,
    check_reference,
    predict_categories,
)
from smoothcert.analysis.tables import (
    format_table,
)

__all__ = [
    "BOUNDS",
    "DEFAULT_RADII",
    "PREDICT_CATEGORIES",
    "REFERENCE_KEYS",
    "RunSummary",
    "analyze",
    "average_certified_radius",
    "best_per_radius",
    "bound_comparison",
    "certified_accuracy",
    "check_independent_noise",
    "check_plot_path",
    "check_radii",
    "check_reference",
    "format_table",
    "load_certify_run",
    "plot_curves",
    "predict_categories",
    "reanalyze",
    "shared_radii",
]
