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

Beside a yardstick ``<name>.json`` the script writes ``<name>-examples.npz``: every log's
per-example results (test index, label, radius, correct), which :func:`load_examples` reads,
so that a run can be compared with a group's runs on the same test images
(:func:`smoothcert.analysis.compare.paired_with_published`).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

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
    row = group_row(data, group, radii) | {"yardstick": name, "logs": list(group["runs"])}
    return row, origin + (f" at {commit}" if commit else "")


@dataclass(frozen=True)
class PublishedExamples:
    """One published log, per example (one entry per row of the log).

    Attributes
    ----------
    idx : numpy.ndarray
        The test index of each row (int64).
    label : numpy.ndarray
        Its label (int64).
    radius : numpy.ndarray
        Its certified radius as the log printed it (float64; 0 when abstained).
    correct : numpy.ndarray
        Whether it was certified with its label (bool; False when abstained).
    """

    idx: np.ndarray
    label: np.ndarray
    radius: np.ndarray
    correct: np.ndarray


def examples_path(folder: str | os.PathLike, yardstick: str) -> Path:
    """Where the per-example results of yardstick ``<name>.json`` are:
    ``<name>-examples.npz`` beside it."""
    return Path(folder) / (Path(yardstick).stem + "-examples.npz")


#: 10^e for the radius code, exact as floats for e <= 22
_POWERS_OF_TEN = np.array([float(10**e) for e in range(23)])


def decode_radii(code: np.ndarray) -> np.ndarray:
    """The radii of the ``radius_code`` column: 0 for 0, else code = m + 1000·e stands for
    m / 10^e (100 <= m <= 999: the 3 significant digits a log prints), which this gives as
    the same float as the printed text parsed.

    Examples
    --------
    >>> decode_radii(np.array([0, 3953, 2184, 4102])).tolist()
    [0.0, 0.953, 1.84, 0.0102]
    """
    code = np.asarray(code, np.int64)
    return np.where(code == 0, 0.0, (code % 1000) / _POWERS_OF_TEN[np.minimum(code // 1000, 22)])


@functools.lru_cache(maxsize=4)
def _columns(path: str, mtime_ns: int) -> dict[str, Any]:
    """The columns of an examples file, split per log (cached: reports read one file for
    every row of every section)."""
    with np.load(path, allow_pickle=False) as data:
        columns = {key: data[key] for key in data.files}
    ends = np.cumsum(columns["rows"].astype(np.int64))
    starts = ends - columns["rows"]
    if "radius_code" in columns:
        radius = decode_radii(columns["radius_code"])
    else:
        radius = columns["radius"].astype(np.float64)
    label_ends = np.cumsum(columns["label_rows"].astype(np.int64))
    labels = {}
    for d, name in enumerate(columns["datasets"].tolist()):
        part = slice(int(label_ends[d] - columns["label_rows"][d]), int(label_ends[d]))
        idx = np.cumsum(columns["label_idx_delta"][part].astype(np.int64))
        labels[name] = (idx, columns["label"][part].astype(np.int64))
    logs = {}
    for k, file in enumerate(columns["files"].tolist()):
        part = slice(int(starts[k]), int(ends[k]))
        idx = np.cumsum(columns["idx_delta"][part].astype(np.int64))
        # the labels are stored once per data set, for every index its logs hold (sorted)
        known, label = labels[str(columns["datasets"][columns["dataset"][k]])]
        logs[file] = PublishedExamples(
            idx=idx,
            label=label[np.searchsorted(known, idx)],
            radius=radius[part],
            correct=columns["correct"][part].astype(bool),
        )
    return logs


def load_examples(path: str | os.PathLike, files: Sequence[str]) -> dict[str, PublishedExamples]:
    """The per-example results of the logs ``files`` (their paths in the published
    repository, as the yardstick's ``runs`` name them) from an examples file.

    Raises
    ------
    FileNotFoundError
        If the file does not exist.
    KeyError
        If it holds no log of one of these names.
    """
    path = Path(path)
    logs = _columns(str(path.resolve()), path.stat().st_mtime_ns)
    missing = [f for f in files if f not in logs]
    if missing:
        raise KeyError(f"{path} holds no log {missing[0]!r}")
    return {f: logs[f] for f in files}


#: The dataset name of runs on the JPEG copy of CIFAR-10, whose order is not the official one.
JPEG_COPY = "CIFAR-10 (JPEG)"
JPEG_INDEX_MAP = (
    "CIFAR-10 (JPEG): our test indices mapped to the official ones through the copy's "
    "order (it keeps CIFAR-10's order within each class; smoothcert.data.cifar."
    "jpeg_original_indices), so the labels agree by construction and the images are the "
    "same up to the JPEG re-encoding"
)


def _in_official_order(ours: list[dict[str, Any]], published: Any) -> list[dict[str, Any]]:
    """Our rows of the JPEG copy with ``idx`` the official CIFAR-10 test index, read from a
    published log of the whole official test set (its labels in the official order)."""
    from smoothcert.data.cifar import jpeg_original_indices

    labels = np.full(int(np.max(published.idx)) + 1, -1, np.int64)
    labels[np.asarray(published.idx)] = np.asarray(published.label)
    if (labels < 0).any():
        raise ValueError("the published log does not cover the whole test set: no JPEG mapping")
    official = jpeg_original_indices(labels)
    return [dict(row, idx=int(official[row["idx"]])) for row in ours]


def paired_row(
    row: Any, folder: str | os.PathLike, run: str | os.PathLike, radii: Sequence[float]
) -> Any:
    """Our certify run ``run`` against a published row's logs on the same test images
    (:func:`smoothcert.analysis.compare.paired_with_published`), their per-example results
    read from the examples file of the row's yardstick in ``folder``.

    Parameters
    ----------
    row : smoothcert.analysis.compare.PublishedRow
        The row, with its ``yardstick`` and ``logs``.

    Raises
    ------
    ValueError
        If the row names no logs, a log's results are not in the examples file, the pairing
        is refused (:func:`~smoothcert.analysis.compare.paired_with_published`: a test index
        not in a log, a label that differs), or the row's accuracy at some radius is not its
        logs' mean over their whole test set (the row is not the mean of these logs).
    FileNotFoundError
        If the examples file does not exist.
    """
    from smoothcert.analysis.certify import load_certify_run
    from smoothcert.analysis.compare import paired_with_published

    if not row.logs or row.yardstick is None:
        raise ValueError("the row names no published logs")
    path = examples_path(folder, row.yardstick)
    try:
        published = load_examples(path, row.logs)
    except KeyError as exc:
        raise ValueError(exc.args[0]) from None
    config, ours = load_certify_run(run)
    index_map = None
    if config.get("dataset") == JPEG_COPY:
        ours = _in_official_order(ours, next(iter(published.values())))
        index_map = JPEG_INDEX_MAP
    result = paired_with_published(ours, list(published.values()), radii)
    if index_map is not None:
        result = dataclasses.replace(result, index_map=index_map)
    for r, value, mean in zip(radii, row.accuracy, result.published_all, strict=False):
        if abs(value - mean) > 1e-4:  # the rows print 5 decimals
            raise ValueError(
                f"the row's accuracy at r = {r:g} ({value:.5f}) is not the mean of its logs "
                f"({mean:.5f})"
            )
    return result
