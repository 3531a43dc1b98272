"""Reports of a ``dcert`` run (smoothcert.runs.dcert): markdown tables and the two-panel plot
of the certificate against the empirical worst-case loss (the NAL paper's Figure 2(a)).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from smoothcert.runs.dcert import SETTINGS, DcertResult


def dcert_report(result: DcertResult, rhos: Sequence[float] | None = None) -> str:
    """Markdown tables: (1) for each setting and γ_adv, the empirical worst-case point, the
    certificate (min over the grid) at the same ρ_adv and the gap; (2) the smoothed and WRM
    certificates at equal ρ_adv (Theorem 3); (3) the per-γ terms and convergence diagnostics."""
    lines = []
    noise = result.tables["cert", "smooth"].noise_cost
    n = result.tables["cert", "smooth"].lagrangian.shape[0]
    lines.append(
        f"n = {n} examples, σ = {result.sigma:g}, dσ² = {noise:.4g}; "
        "values are mean cross-entropy ± standard error over examples; "
        + (
            "each certificate is taken at the γ of the grid chosen on the even-position "
            "examples and estimated on the odd-position ones (in-sample: the minimum over the "
            "grid on all examples, biased low by that choice)"
            if n >= 2
            else "with one example γ cannot be chosen on other examples: every certificate is "
            "the in-sample minimum over the grid (biased low)"
        )
    )
    lines.append("")
    lines.append(
        "| setting | γ_adv | ρ̂_adv | ε = √ρ̂_adv | ρ̂ (with noise) | worst-case loss | "
        "certificate at ρ̂_adv | γ | gap | in-sample | grad-norm median |"
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
    smooth, plain = result.curve("smooth", rhos), result.curve("plain", rhos)
    lines += [
        "",
        "| ρ_adv | ε | ρ (with noise) | certificate, smoothed | certificate, WRM σ=0 | "
        "smoothed − WRM |",
        "|---|---|---|---|---|---|",
    ]
    for i, r in enumerate(smooth.rho_adv):
        lines.append(
            f"| {r:.4f} | {math.sqrt(r):.4f} | {smooth.rho[i]:.4f} | "
            f"{smooth.value[i]:.4f} ± {smooth.se[i]:.4f} (γ={smooth.gamma[i]:g}) | "
            f"{plain.value[i]:.4f} ± {plain.se[i]:.4f} (γ={plain.gamma[i]:g}) | "
            f"{smooth.value[i] - plain.value[i]:+.4f} |"
        )
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
            "Two ascents at one γ: the certificate's grid and the adversary's sweep share a γ and "
            "differ only in their random draws and restarts, so where their values of "
            "sup[ℓ̂ − γc] disagree beyond Monte Carlo error at least one of them missed the "
            "maximum, and the certificate's φγ may be an underestimate there.",
            "",
            "| setting | γ | examples | mean (certificate's − adversary's) | disagree | "
            "largest disagreement |",
            "|---|---|---|---|---|---|",
        ]
        for r in rows:
            lines.append(
                f"| {r.setting} | {r.gamma:g} | {r.n} | {r.mean_difference:+.4f} | "
                f"{r.disagree} | {r.max_abs_difference:.4f} |"
            )
    return "\n".join(lines)


@dataclass(frozen=True)
class AscentAgreement:
    setting: str
    gamma: float
    n: int  # examples
    mean_difference: float  # mean of the certificate's minus the adversary's sup[ℓ̂ − γc]
    disagree: int  # examples whose two values differ beyond tolerance
    max_abs_difference: float


def ascent_agreement(result: DcertResult, tol: float = 0.01) -> list[AscentAgreement]:
    """For every γ in both the certificate's grid and the adversary's sweep, compare the two
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


def plot_dcert(result: DcertResult, path, *, title: str | None = None) -> None:
    """Two panels. Left: certificate (min over the γ grid) and empirical worst-case loss
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
        left.plot(grid, c.value, color=color, label=f"certificate, {label}")
        pts = result.worst_case(setting)
        left.errorbar(
            [p.rho_adv_test for p in pts], [p.loss for p in pts], yerr=[p.se for p in pts],
            fmt="o", color=color, mfc="none", label=f"worst case on test data, {label}",
        )  # fmt: skip
    left.set_xlabel("ρ_adv = E‖x − x0‖²")
    left.set_ylabel("expected loss")
    left.legend(fontsize=7)
    left.set_title("certificate vs empirical worst case")

    noise = result.tables["cert", "smooth"].noise_cost
    c = result.curve("smooth", grid)
    ts = result.tables["cert", "smooth"]
    for j, g in enumerate(result.gammas):
        right.plot(c.rho, g * grid + ts.lagrangian[:, j].mean(), color="0.8", lw=0.8)
    right.plot(c.rho, c.value, color="C1", label="certificate (min over γ)")
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
