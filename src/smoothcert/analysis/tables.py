"""Certified accuracy tables of run summaries side by side (markdown, LaTeX or CSV), the best
value of each column marked."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from smoothcert.analysis.certify import RunSummary, shared_radii

# --------------------------------------------------------------------------- formatting


def format_table(
    summaries: Sequence[RunSummary], fmt: str = "markdown", *, lower_bound: bool = False
) -> str:
    """Certified accuracy per radius, one row per summary, as in Tables 2–3; then ACR.

    The best value per radius is marked (bold in markdown and LaTeX, a trailing * in CSV)
    when there is more than one row; a value not measured (NaN) prints as "—" (empty in CSV).

    Parameters
    ----------
    summaries : sequence of RunSummary
        The rows, all at the same radii.
    fmt : {"markdown", "latex", "csv"}, default "markdown"
        The table format.
    lower_bound : bool, default False
        Tabulate Theorem 6's lower bounds instead of the certified accuracies. The last column
        is then headed "ACR (point estimate)": it is the ACR as measured, not a bound.

    Returns
    -------
    str
        The table, lines joined by newlines (no trailing newline).

    Raises
    ------
    ValueError
        If ``fmt`` is unknown, ``summaries`` is empty or the summaries' radii differ.

    Examples
    --------
    >>> a = RunSummary("sigma=0.25", [0.0, 0.5], [0.9, 0.6], [0.88, 0.58], 0.52, 500, 0.25,
    ...                100_000, 0.001)
    >>> b = RunSummary("sigma=0.50", [0.0, 0.5], [0.8, 0.65], [0.78, 0.63], 0.61, 500, 0.5,
    ...                100_000, 0.001)
    >>> print(format_table([a, b]))
    | run | r = 0 | r = 0.5 | ACR |
    |---|---|---|---|
    | sigma=0.25 | **0.900** | 0.600 | 0.520 |
    | sigma=0.50 | 0.800 | **0.650** | 0.610 |
    >>> print(format_table([a, b], "csv"))
    run,r = 0,r = 0.5,ACR
    sigma=0.25,0.900*,0.600,0.520
    sigma=0.50,0.800,0.650*,0.610
    """
    if fmt not in ("markdown", "latex", "csv"):
        raise ValueError(f"format must be markdown, latex or csv, got {fmt!r}")
    if not summaries:
        raise ValueError("nothing to tabulate")
    radii = shared_radii(summaries)
    values = np.array([s.lower_bound if lower_bound else s.certified_accuracy for s in summaries])
    # NaN = not measured (an adaptive run beyond its targets): never "best"
    best = np.array([np.nanmax(c) if np.isfinite(c).any() else np.nan for c in values.T])
    acr = "ACR (point estimate)" if lower_bound else "ACR"
    header = ["run", *(f"r = {r:g}" for r in radii), acr]
    lines = []
    missing = "" if fmt == "csv" else "—"

    def number(v: float) -> str:
        return f"{v:.3f}" if np.isfinite(v) else missing

    def mark(v: float, is_best: bool) -> str:
        text = number(v)
        if is_best and len(summaries) > 1:
            return {"markdown": f"**{text}**", "latex": f"\\textbf{{{text}}}", "csv": f"{text}*"}[
                fmt
            ]
        return text

    body = [
        [s.name, *(mark(v, v == b) for v, b in zip(values[i], best, strict=True)), number(s.acr)]
        for i, s in enumerate(summaries)
    ]
    if fmt == "markdown":
        lines.append("| " + " | ".join(header) + " |")
        lines.append("|" + "|".join("---" for _ in header) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in body]
    elif fmt == "latex":
        lines.append("\\begin{tabular}{l" + "c" * (len(header) - 1) + "}")
        lines.append(" & ".join(h.replace("_", "\\_") for h in header) + " \\\\ \\hline")
        lines += [" & ".join(c.replace("_", "\\_") for c in row) + " \\\\" for row in body]
        lines.append("\\end{tabular}")
    else:
        lines.append(",".join(header))
        lines += [",".join(row) for row in body]
    return "\n".join(lines)
