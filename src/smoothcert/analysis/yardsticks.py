"""Published yardsticks: the summaries of published per-example certification logs that
``scripts/published_certify_logs.py`` writes (``experiments/published/*.json``), looked up
for one of our certify runs by what the run itself records.

A yardstick file holds ``groups``, one per published setting: ``dataset``, ``arch``,
``method``, ``hyperparameters``, ``sigma``, the mean over its runs of the certified accuracy
at each radius of ``definitions.radii`` (with the sd over the runs) and of the ACR, and the
files of its runs (``runs`` lists each file's number of examples ``n``).

A run matches a group when the dataset, σ and training method agree, the architecture agrees
where both name one (``cifar_resnet20`` is our ``resnet20``), and every hyperparameter the
group names that our method also has agrees, except the warm-up and deferral lengths, which
scale with the number of epochs and are not compared (nor are the epochs and learning-rate
schedule). Exactly one group must match; none or several give no published row.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: hyperparameters of a yardstick group that are not compared: lengths in epochs, which a
#: shorter schedule scales (the epochs themselves are not compared either)
NOT_COMPARED = frozenset({"warmup_epochs", "deferred_lr_step_size", "deferred_epochs"})


@dataclass(frozen=True)
class RunIdentity:
    """What a certify run records of the model it certified.

    Attributes
    ----------
    dataset : str
        The data set certified.
    sigma : float
        The smoothing noise level.
    method : str
        The training method of the checkpoint.
    arch : str or None
        Its architecture, when recorded.
    hyperparameters : dict
        The method's hyperparameters, as the checkpoint stores them.
    """

    dataset: str
    sigma: float
    method: str
    arch: str | None = None
    hyperparameters: dict[str, Any] = field(default_factory=dict)


def run_identity(path: str | os.PathLike) -> RunIdentity | None:
    """The dataset, σ, method, architecture and hyperparameters a certify run records (None
    for a model from outside smoothcert, whose checkpoint names no training method)."""
    from smoothcert.runs.store import RunStore

    with RunStore.read(path) as store:
        config, info = store.config, store.info
    meta = info.get("checkpoint_metadata") or {}
    dataset, sigma, method = config.get("dataset"), config.get("sigma"), meta.get("method")
    if dataset is None or sigma is None or method is None:
        return None
    return RunIdentity(
        dataset=str(dataset),
        sigma=float(sigma),
        method=str(method),
        arch=meta.get("arch"),
        hyperparameters=dict(meta.get("hyperparameters") or {}),
    )


def load_yardsticks(folder: str | os.PathLike) -> dict[str, dict[str, Any]]:
    """Every yardstick file (``*.json`` with ``groups``) in ``folder``, by file name; an
    absent folder has none."""
    found: dict[str, dict[str, Any]] = {}
    folder = Path(folder)
    if not folder.is_dir():
        return found
    for path in sorted(folder.glob("*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(data, dict) and isinstance(data.get("groups"), list):
            found[path.name] = data
    return found


def _arch(name: str | None) -> str | None:
    return None if name is None else name.lower().removeprefix("cifar_")


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, int | float) and isinstance(b, int | float):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def matches(group: dict[str, Any], run: RunIdentity) -> bool:
    """Whether a yardstick group is the run's setting (see the module docstring)."""
    if group.get("dataset") != run.dataset or group.get("method") != run.method:
        return False
    if not _same(group.get("sigma"), run.sigma):
        return False
    ours, theirs = _arch(run.arch), _arch(group.get("arch"))
    if ours is not None and theirs is not None and ours != theirs:
        return False
    return all(
        _same(value, run.hyperparameters[key])
        for key, value in (group.get("hyperparameters") or {}).items()
        if key in run.hyperparameters and key not in NOT_COMPARED
    )


def group_row(yardstick: dict[str, Any], group: dict[str, Any], radii: Sequence[float]) -> dict:
    """A group as a published row (the fields of :func:`smoothcert.analysis.compare.
    published_row`) at ``radii``: the values at the leading radii that the yardstick's grid
    holds (a row stops at the first radius it does not have)."""
    grid = [float(r) for r in yardstick["definitions"]["radii"]]
    columns = []
    for r in radii:
        hit = next((k for k, g in enumerate(grid) if math.isclose(g, r, abs_tol=1e-9)), None)
        if hit is None:
            break
        columns.append(hit)
    acc = group["certified_accuracy"]
    sizes = {run["n"] for run in yardstick.get("runs", []) if run.get("file") in group["runs"]}
    hyper = ", ".join(f"{k}={v:g}" for k, v in sorted(group["hyperparameters"].items()))
    k = int(group["n_runs"])
    row: dict[str, Any] = {
        "accuracy": [acc[c]["mean"] for c in columns],
        "runs": k,
        "acr": group["acr"]["mean"],
        "note": f"{group['method']} ({hyper or 'no hyperparameters'}), {group['arch']}, "
        + (f"mean of {k} runs" if k > 1 else "one run"),
    }
    if k > 1:
        row["sd"] = [acc[c]["sd"] for c in columns]
        row["acr_sd"] = group["acr"]["sd"]
    if len(sizes) == 1:
        row["n"] = sizes.pop()
    return row


def find_published(
    yardsticks: dict[str, dict[str, Any]], run: RunIdentity, radii: Sequence[float]
) -> tuple[dict | None, str | None]:
    """(the published row of the one group matching ``run``, where it comes from) over every
    yardstick file; (None, None) when no group matches, (None, why) when several do."""
    found = [
        (name, data, group)
        for name, data in yardsticks.items()
        for group in data["groups"]
        if matches(group, run)
    ]
    if not found:
        return None, None
    if len(found) > 1:
        where = ", ".join(sorted({name for name, _, _ in found}))
        return None, (
            f"{len(found)} published groups of {run.method} on {run.dataset} at σ = "
            f"{run.sigma:g} match ({where}): their hyperparameters tell them apart, ours do not"
        )
    name, data, group = found[0]
    source = data.get("source", {})
    commit = str(source.get("commit") or "")[:7]
    origin = f"{name}: {source.get('repository', 'published logs')}"
    return group_row(data, group, radii), origin + (f" at {commit}" if commit else "")
