"""Reports of a ``dcert`` run (smoothcert.runs.dcert): markdown tables and the two-panel plot
of the estimate of Theorem 1 against the empirical worst-case loss (the NAL paper's Figure
2(a)), and the certified upper bound (smoothcert.distributional.certified) beside the estimate.

Wording: "estimate" is γρ_adv + mean sup[ℓ̂ − γc] with an ascent's sup and a standard error
(not a bound: a local maximum lies below the supremum); "certified bound" is the value that
holds with probability ≥ 1 − δ under the stated assumptions.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smoothcert.distributional.paired import paired_difference
from smoothcert.runs.dcert_file import SETTINGS, DcertResult


def dcert_report(
    result: DcertResult,
    rhos: Sequence[float] | None = None,
    *,
    delta: float = 0.05,
    delta_draws: float = 0.001,
) -> str:
    """Markdown tables: (0) the certified upper bound beside the estimate at each ρ_adv
    (when the run has the bound's statistics); (1) for each setting and γ_adv, the empirical
    worst-case point, the estimate (min over the grid) at the same ρ_adv and the gap; (2) the
    smoothed and WRM estimates at equal ρ_adv (Theorem 3); (3) the per-γ terms and
    convergence diagnostics."""
    lines = certified_lines(result, rhos, delta=delta, delta_draws=delta_draws)
    noise = result.tables["cert", "smooth"].noise_cost
    n = result.tables["cert", "smooth"].lagrangian.shape[0]
    lines.append(
        f"Estimates (not bounds): n = {n} examples, σ = {result.sigma:g}, dσ² = {noise:.4g}; "
        "values are mean cross-entropy ± standard error over examples, the inner sup from "
        "gradient ascent (a local maximum, below the sup); "
        + (
            "each estimate is taken at the γ of the grid chosen on the even-position "
            "examples and estimated on the odd-position ones (in-sample: the minimum over the "
            "grid on all examples, biased low by that choice)"
            if n >= 2
            else "with one example γ cannot be chosen on other examples: every estimate is "
            "the in-sample minimum over the grid (biased low)"
        )
    )
    lines.append("")
    lines.append(
        "| setting | γ_adv | ρ̂_adv | ε = √ρ̂_adv | ρ̂ (with noise) | worst-case loss | "
        "estimate at ρ̂_adv | γ | gap | in-sample | grad-norm median |"
    )
    lines.append("|---|---|---|---|---|---|---|---|---|---|---|")
    for setting, label in (("smooth", f"smoothed σ={result.sigma:g}"), ("plain", "WRM σ=0")):
        points = result.worst_case(setting)
        curve = result.curve(setting, [p.rho_adv_test for p in points])
        columns = (points, curve.value, curve.se, curve.gamma, curve.in_sample)
        for p, v, s, g, low in zip(*columns, strict=True):
            lines.append(
                f"| {label} | {p.gamma_adv:g} | {p.rho_adv_test:.4f} | "
                f"{math.sqrt(p.rho_adv_test):.4f} | {p.rho_test:.4f} | {p.loss:.4f} ± {p.se:.4f} "
                f"| {v:.4f} ± {s:.4f} | {g:g} | {v - p.loss:+.4f} | {low:.4f} | "
                f"{p.grad_norm_median:.3g} |"
            )
    if rhos is None:
        rhos = sorted({round(p.rho_adv_test, 4) for p in result.worst_case("smooth")})
    lines += theorem3_lines(result, rhos)
    lines += [
        "",
        "| γ | mean sup[ℓ̂ − γc], smoothed | mean φ̃γ (ρ-with-noise form) | "
        "mean sup[ℓ − γc], WRM | grad-norm median smoothed / WRM | max |",
        "|---|---|---|---|---|---|",
    ]
    ts, tp = result.tables["cert", "smooth"], result.tables["cert", "plain"]
    for j, g in enumerate(result.gammas):
        lines.append(
            f"| {g:g} | {ts.lagrangian[:, j].mean():.4f} | "
            f"{ts.lagrangian[:, j].mean() - g * noise:.4f} | {tp.lagrangian[:, j].mean():.4f} | "
            f"{np.median(ts.grad_norm[:, j]):.3g} / {np.median(tp.grad_norm[:, j]):.3g} | "
            f"{ts.grad_norm[:, j].max():.3g} / {tp.grad_norm[:, j].max():.3g} |"
        )
    rows = ascent_agreement(result)
    if rows:
        lines += [
            "",
            "Two ascents at one γ: the estimate's grid and the adversary's sweep share a γ and "
            "differ only in their random draws and restarts, so where their values of "
            "sup[ℓ̂ − γc] disagree beyond Monte Carlo error at least one of them missed the "
            "maximum, and the estimate's φγ may be too low there.",
            "",
            "| setting | γ | examples | mean (estimate's − adversary's) | disagree | "
            "largest disagreement |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r.setting} | {r.gamma:g} | {r.n} | {r.mean_difference:+.4f} | "
                f"{r.disagree} | {r.max_abs_difference:.4f} |"
            )
    return "\n".join(lines)


def theorem3_lines(result: DcertResult, rhos: Sequence[float]) -> list[str]:
    """NAL Theorem 3 (Eq. 7), smoothed against WRM's σ = 0 estimate on the same held-out
    examples, with paired standard errors (:func:`smoothcert.distributional.paired_difference`):
    at equal ρ counted as the theorem counts it (the smoothed adversary moves ρ − dσ², the noise
    the rest) and at equal ρ_adv (the same adversary against both). A difference is called
    established only beyond two paired standard errors."""
    ts, tp = result.tables["cert", "smooth"], result.tables["cert", "plain"]
    if ts.lagrangian.shape[0] < 4:
        return ["", "Theorem 3: fewer than 4 examples, no paired comparison."]
    noise = ts.noise_cost
    lines = [
        "",
        "Theorem 3 (smoothed estimate − WRM's, same held-out examples; ± paired standard "
        f"error over test examples; * beyond two). Equal ρ as the theorem counts it (ρ ≥ "
        f"dσ² = {noise:.4g}: the smoothed adversary moves ρ − dσ², WRM's all of ρ), then equal "
        "ρ_adv:",
        "",
        "| compared at | ρ (smoothed's, with noise) | ρ_adv smoothed / WRM | estimate, smoothed "
        "| estimate, WRM σ=0 | smoothed − WRM | established |",
        "|---|---|---|---|---|---|---|",
    ]
    rho_theorem = [noise + r for r in rhos]  # ρ ≥ dσ²: the smoothed side's ρ_adv = ρ − dσ² = r
    for label, ra, rb in (
        ("equal ρ", list(rhos), rho_theorem),
        ("equal ρ_adv", list(rhos), list(rhos)),
    ):
        d = paired_difference(ts, tp, ra, rb)
        for k in range(len(ra)):
            diff, se = d.difference[k], d.se[k]
            verdict = (
                "smoothed lower*" if diff < -2 * se else "WRM lower*" if diff > 2 * se else "no"
            )
            lines.append(
                f"| {label} | {ra[k] + noise:.4f} | {ra[k]:.4f} / {rb[k]:.4f} | "
                f"{d.value_a[k]:.4f} (γ={d.gamma_a[k]:g}) | {d.value_b[k]:.4f} "
                f"(γ={d.gamma_b[k]:g}) | {diff:+.4f} ± {se:.4f} | {verdict} |"
            )
    lines.append("")
    lines.append(
        f"Means over the {d.n_eval} odd-position examples; the standard errors cover test-image "
        "sampling only (one model, one training seed). The two estimates bound different losses: "
        "the smoothed one E ℓ(x + z), WRM's ℓ(x)."
    )
    return lines


@dataclass(frozen=True)
class AscentAgreement:
    setting: str
    gamma: float
    n: int  # examples
    mean_difference: float  # mean of the estimate's minus the adversary's sup[ℓ̂ − γc]
    disagree: int  # examples whose two values differ beyond tolerance
    max_abs_difference: float


def ascent_agreement(result: DcertResult, tol: float = 0.01) -> list[AscentAgreement]:
    """For every γ in both the estimate's grid and the adversary's sweep, compare the two
    independent ascents' per-example values of sup[ℓ̂ − γc]: an example disagrees when they
    differ by more than ``tol`` and by more than three standard errors of their Monte Carlo
    re-estimates (zero for σ = 0)."""
    rows = []
    for setting, label in (("smooth", f"smoothed σ={result.sigma:g}"), ("plain", "WRM σ=0")):
        cert, adv = result.tables["cert", setting], result.tables["adv", setting]
        for j, g in enumerate(cert.gammas):
            hits = np.flatnonzero(np.isclose(adv.gammas, g, rtol=0, atol=1e-12))
            if hits.size == 0:
                continue
            k = int(hits[0])
            diff = cert.lagrangian[:, j] - adv.lagrangian[:, k]
            se = np.hypot(cert.value_se[:, j], adv.value_se[:, k])
            out = (np.abs(diff) > tol) & (np.abs(diff) > 3 * se)
            rows.append(
                AscentAgreement(
                    setting=label,
                    gamma=float(g),
                    n=len(diff),
                    mean_difference=float(diff.mean()),
                    disagree=int(out.sum()),
                    max_abs_difference=float(np.abs(diff).max()),
                )
            )
    return rows


def certified_lines(
    result: DcertResult,
    rhos: Sequence[float] | None = None,
    *,
    delta: float = 0.05,
    delta_draws: float = 0.001,
) -> list[str]:
    """The certified bound beside the smoothed estimate, one row per ρ_adv (the empirical
    ρ̂_adv of the adversary's sweep by default), with the statement's δ, M, s and N; a line
    saying why not for a run without the bound's statistics."""
    if rhos is None:
        rhos = sorted({0.0} | {round(p.rho_adv_test, 4) for p in result.worst_case("smooth")})
    ce = result.certified(rhos, "ce", delta=delta, delta_draws=delta_draws)
    if ce is None:
        return [
            "No certified bound: this run has no Monte Carlo statistics at x0 (made before "
            "the bound existed, or with --bound-draws 0); every number below is an estimate.",
            "",
        ]
    err = result.certified(rhos, "01", delta=delta, delta_draws=delta_draws)
    estimate = result.curve("smooth", rhos)
    lines = [
        f"Certified bound (σ = {result.sigma:g}): with probability ≥ 1 − δ = {1 - delta:g}, "
        f"every adversary with E‖x − x0‖² ≤ ρ_adv (acting before the noise) has expected "
        f"loss at most the value below, for min(CE, M) with M = {ce.clip:g} nats and for the "
        f"0-1 loss; s = {ce.draws} noise draws per example at x0, N = {ce.n} test examples "
        f"assumed iid from the test distribution, δ1 = {delta_draws:g} per example "
        f"(k = {ce.replaced} examples replaced by M), DKW term ε = {ce.epsilon:.4f} (× M). "
        "The inner supremum is bounded through the Lipschitz property of Φ⁻¹(ℓ̂/M) (Salman "
        "et al. 2019, Lemma 2), which knows only ℓ̂(x0): loose when σ is small against the "
        "distances the adversary can afford.",
        "",
        "| ρ_adv | ε = √ρ_adv | estimate, smoothed (± SE) | certified bound, min(CE, M) | γ | "
        "certified bound, 0-1 error | γ |",
        "|---|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(ce.rho_adv):
        lines.append(
            f"| {r:.4f} | {math.sqrt(r):.4f} | {estimate.value[i]:.4f} ± {estimate.se[i]:.4f} | "
            f"{ce.value[i]:.4f} | {_gamma(ce.gamma[i])} | {err.value[i]:.4f} | "
            f"{_gamma(err.gamma[i])} |"
        )
    return [*lines, ""]


def _gamma(g: float) -> str:
    return "— (trivial: M)" if not np.isfinite(g) else f"{g:.4g}"


def plot_dcert(result: DcertResult, path, *, title: str | None = None) -> None:
    """Two panels. Left: the estimate (min over the γ grid), the certified bound (when the run
    has its statistics, δ = 0.05) and the empirical worst-case loss
    against ρ_adv, smoothed and WRM (σ = 0) side by side (Theorem 3). Right: Figure 2(a) of the
    NAL paper for the smoothed loss against ρ with the noise, with the line γρ + mean φ̃γ of
    every γ of the grid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
    rho_max = 1.1 * max(p.rho_adv_test for s in SETTINGS for p in result.worst_case(s))
    grid = np.linspace(0, rho_max, 200)
    styles = {"smooth": ("C1", f"smoothed σ={result.sigma:g}"), "plain": ("C0", "WRM σ=0")}
    for setting, (color, label) in styles.items():
        c = result.curve(setting, grid)
        left.plot(grid, c.value, color=color, label=f"estimate, {label}")
        pts = result.worst_case(setting)
        left.errorbar(
            [p.rho_adv_test for p in pts], [p.loss for p in pts], yerr=[p.se for p in pts],
            fmt="o", color=color, mfc="none", label=f"worst case on test data, {label}",
        )  # fmt: skip
    certified = result.certified(grid)
    if certified is not None:
        left.plot(
            grid, certified.value, color="C2", ls="--",
            label=f"certified bound of min(CE, {certified.clip:g}), δ = {certified.delta:g}",
        )  # fmt: skip
    left.set_xlabel("ρ_adv = E‖x − x0‖²")
    left.set_ylabel("expected loss")
    left.legend(fontsize=7)
    left.set_title("estimate vs empirical worst case")

    noise = result.tables["cert", "smooth"].noise_cost
    c = result.curve("smooth", grid)
    ts = result.tables["cert", "smooth"]
    for j, g in enumerate(result.gammas):
        right.plot(c.rho, g * grid + ts.lagrangian[:, j].mean(), color="0.8", lw=0.8)
    right.plot(c.rho, c.value, color="C1", label="estimate (min over γ)")
    pts = result.worst_case("smooth")
    right.plot(
        [p.rho_test for p in pts], [p.loss for p in pts], "o-", color="C3",
        label="worst case on test data",
    )  # fmt: skip
    right.set_xlabel(f"ρ = E‖x + z − x0‖² (≥ dσ² = {noise:.3g})")
    right.set_ylim(left.get_ylim())
    right.legend(fontsize=7)
    right.set_title("smoothed loss (grey: γρ + E φ̃γ per γ)")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


@dataclass(frozen=True)
class SameRowsComparison:
    """Figure 2(a)'s estimate against the worst case on the same (odd-position) rows."""

    setting: str
    gamma_adv: float
    rho_adv: float  # the adversary's mean ‖x* − x0‖² over the odd rows
    gamma: float  # the estimate's γ, chosen on the even rows
    estimate: float  # γρ_adv + mean over the odd rows of sup[ℓ̂ − γc]
    worst_case: float  # mean over the odd rows of ℓ̂(x*)
    worst_case_all: float  # mean over all rows (the main table's)
    difference: float  # estimate − worst case
    se: float  # paired standard error over the odd rows
    rows: int  # odd rows


def same_rows_comparison(result: DcertResult) -> list[SameRowsComparison]:
    """The estimate minus the empirical worst case on the same rows, with a paired standard
    error, per setting and γ_adv.

    The estimate is a mean over the odd-position rows (γ chosen on the even ones), the worst
    case in the main table a mean over all rows: the two means are over different examples,
    and their gap mixes the bound's slack with the difference between the two samples. On the
    odd rows i alone, with γ the estimate's choice at the adversary's ρ̂_adv (the main table's
    γ) and c_i, ℓ_i the adversary's transport cost and loss on row i,

        D_i = sup[ℓ̂ − γc]_i + γ·c_i − ℓ_i,

    whose mean is the estimate at the adversary's budget on those rows (γ·mean c_i + mean
    sup[ℓ̂ − γc]_i) minus the worst-case loss on those rows; SE = sd(D)/√m over the m odd rows.
    It covers the sampling of test examples and each row's Monte Carlo noise, and the
    randomness of the budget mean c̄ (it is inside D_i); not the choice of γ (made on the other
    rows). Theorem 1 says the estimate's exact counterpart bounds the worst case: a difference
    below −2 SE is evidence that the estimate does not (the ascent missed the sup).

    Returns
    -------
    list of SameRowsComparison
        One per (setting, γ_adv); empty with fewer than two rows.
    """
    out = []
    for setting in SETTINGS:
        cert, adv = result.tables["cert", setting], result.tables["adv", setting]
        n = cert.lagrangian.shape[0]
        if n < 2:
            return []
        points = result.worst_case(setting)
        curve = result.curve(setting, [p.rho_adv_test for p in points])
        odd = slice(1, None, 2)
        for j, p in enumerate(points):
            g = float(curve.gamma[j])
            k = int(np.flatnonzero(result.gammas == g)[0])
            cost, loss = adv.cost[odd, j], adv.loss[odd, j]
            d = cert.lagrangian[odd, k] + g * cost - loss
            m = d.size
            se = float(d.std(ddof=1) / math.sqrt(m)) if m > 1 else float("nan")
            estimate = float(g * cost.mean() + cert.lagrangian[odd, k].mean())
            out.append(
                SameRowsComparison(
                    setting=setting,
                    gamma_adv=p.gamma_adv,
                    rho_adv=float(cost.mean()),
                    gamma=g,
                    estimate=estimate,
                    worst_case=float(loss.mean()),
                    worst_case_all=p.loss,
                    difference=float(d.mean()),
                    se=se,
                    rows=m,
                )
            )
    return out
