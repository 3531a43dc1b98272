"""The distributional robustness certificate of the NAL paper (Theorem 1), with one
perturbation shared by the noise draws (docs/threat-model.md).

Not to be confused with :class:`smoothcert.certify.smoothing.Certificate`, the pointwise certificate
of one input: this module bounds the expected loss over a data distribution. Its names say
"distributional" or "bound": :func:`distributional_bound` (one γ and ρ, a
:class:`DistributionalBound`) and :func:`distributional_curve` (a γ grid and several ρ, a
:class:`DistributionalCurve`), each also computable from a stored :class:`SurrogateTable`
(:func:`bound_from_table`, :func:`curve_from_table`).

Threat model: a clean input x0 ~ P0 is moved by the adversary to x (any
deterministic or random map, independent of the defender's noise); the defender adds
z ~ N(0, σ²I); the classifier sees x + z. The surrogate with ONE perturbation shared by the
noise draws (what Algorithm 1 computes) is

    φ̃γ(θ; x0) = sup_x E_z[ ℓ(θ; x+z) − γ‖x+z−x0‖² ] = sup_x { ℓ̂(θ; x) − γ‖x−x0‖² } − γdσ²,

with ℓ̂(θ; x) = E_z ℓ(θ; x+z) the smoothed loss (Theorem 2) and d the input dimension. By weak
duality, for every γ ≥ 0 and every adversary with E‖x+z−x0‖² ≤ ρ (Theorem 1, Eq. 3),

    E ℓ(θ; x+z) ≤ γρ + E_P0 φ̃γ(θ; x0).

Since E‖x+z−x0‖² = ‖x−x0‖² + dσ², the same bound in the adversary's own budget
ρ_adv = E‖x−x0‖² = ρ − dσ² reads

    bound(ρ_adv) = inf_γ { γρ_adv + E_P0 sup_x [ ℓ̂(θ; x) − γ‖x−x0‖² ] }.

With σ = 0 it is WRM's certificate of the unsmoothed loss (Sinha et al. 2018), the right-hand
side of Theorem 3 (Eq. 7).

What is estimated here, not guaranteed (every number of this module is an ESTIMATE; the
certified upper bound is :mod:`smoothcert.distributional.certified`): ℓ̂ by Monte-Carlo draws,
the sup by gradient ascent (a local maximizer gives a value BELOW the sup, so the estimate
may be too small when the ascent has not converged: see the gradient-norm diagnostic), and
E_P0 by a finite data set (standard error over examples). Nothing is clipped to [0, 1]: the
theorem takes X = R^d.
"""

from __future__ import annotations

from smoothcert._util.seeding import block_seed
from smoothcert.distributional.ascent import (
    AscentResult,
    LossFn,
    cross_entropy_per_example,
    surrogate_ascent,
)
from smoothcert.distributional.bound import (
    SELECT,
    DistributionalBound,
    DistributionalCurve,
    WorstCasePoint,
    bound_from_table,
    curve_from_table,
    distributional_bound,
    distributional_curve,
    worst_case_from_table,
    worst_case_loss,
)
from smoothcert.distributional.objective import (
    SurrogateResult,
    check_batch,
    check_surrogate_args,
    surrogate,
)
from smoothcert.distributional.paired import PairedDifference, paired_difference
from smoothcert.distributional.table import (
    SurrogateTable,
    batch_of,
    block_rows,
    check_gammas,
    dataset_length,
    surrogate_table,
)

__all__ = [
    "SELECT",
    "AscentResult",
    "LossFn",
    "DistributionalBound",
    "DistributionalCurve",
    "PairedDifference",
    "SurrogateResult",
    "SurrogateTable",
    "WorstCasePoint",
    "batch_of",
    "block_rows",
    "block_seed",
    "check_batch",
    "check_gammas",
    "check_surrogate_args",
    "cross_entropy_per_example",
    "dataset_length",
    "bound_from_table",
    "curve_from_table",
    "paired_difference",
    "distributional_bound",
    "distributional_curve",
    "surrogate",
    "surrogate_ascent",
    "surrogate_table",
    "worst_case_from_table",
    "worst_case_loss",
]
