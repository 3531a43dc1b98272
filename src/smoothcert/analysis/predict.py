"""PREDICT's five outcome categories against a large-n reference run (Cohen et al. Table 4),
and the checks that the reference is comparable and its noise independent."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from smoothcert.runs.store import RunStore

# --------------------------------------------------------------------------- PREDICT (Table 4)

PREDICT_CATEGORIES = (
    "correct, accurate",
    "correct, inaccurate",
    "incorrect, accurate",
    "incorrect, inaccurate",
    "abstain",
)


# What a reference run must share with the predict run for its top class to be g(x) of the
# same smoothed classifier on the same inputs (examples are matched by dataset index alone).
REFERENCE_KEYS = ("dataset", "split", "model_sha256", "sigma")
_REFERENCE_COUNTS = {"certify": "counts_estimation", "predict": "counts"}


def check_reference(
    reference_path: str | os.PathLike, config: Mapping[str, Any] | None = None
) -> None:
    """Refuse a reference run for :func:`predict_categories` that does not exist or is not a
    certify or predict run, and (given the predict run's ``config``) one whose dataset, split,
    model fingerprint, σ, precision or mode (sound or standard) differs. Cheap: callers check
    before a long predict run."""
    path = Path(reference_path)
    if not path.exists():
        raise FileNotFoundError(f"reference run {path} does not exist")
    with RunStore.read(path) as ref:
        kind, ref_config = ref.kind, ref.config
    if kind not in _REFERENCE_COUNTS:
        raise ValueError(f"reference {path} is a {kind!r} run; need certify or predict")
    for key in REFERENCE_KEYS if config is not None else ():
        if ref_config.get(key) != config.get(key):
            raise ValueError(
                f"reference run {path} has {key} {ref_config.get(key)!r} but the predict run "
                f"has {config.get(key)!r}: it must be a run of the same model, sigma, dataset "
                "and split"
            )
    if config is not None:
        # bf16 and fp32 base classifiers are different smoothed classifiers: g(x) may differ.
        ours, theirs = config.get("precision", "fp32"), ref_config.get("precision", "fp32")
        if ours != theirs:
            raise ValueError(
                f"reference run {path} has precision {theirs!r} but the predict run has "
                f"{ours!r}: it must be a run of the same precision"
            )
        # Sound mode smooths another base function (f on the 8-bit grid, rounded-Gaussian
        # noise): a standard run's top class is not its g(x), nor the reverse.
        ours, theirs = bool(config.get("sound", False)), bool(ref_config.get("sound", False))
        if ours != theirs:
            mode = {True: "sound", False: "standard (not sound)"}
            raise ValueError(
                f"reference run {path} is a {mode[theirs]} run but the predict run is "
                f"{mode[ours]}: sound and standard runs smooth different classifiers; use a "
                "reference made in the same mode"
            )


def check_independent_noise(
    predict_kind: str,
    predict_config: Mapping[str, Any],
    predict_seed: int | None,
    reference_kind: str,
    reference_config: Mapping[str, Any],
    reference_seed: int | None,
) -> None:
    """Refuse a reference run whose noise overlaps the predict run's: the same seed and the
    same noise stream (:func:`smoothcert.runs.certify.noise_stream`), e.g. a predict run from
    before the predict stream against a certify run of the same seed. PREDICT's draws would
    then be the reference's own, and "accurate" would count agreement with itself."""
    from smoothcert.runs.certify import noise_stream

    if predict_seed is None or reference_seed is None or int(predict_seed) != int(reference_seed):
        return
    if noise_stream(predict_kind, dict(predict_config)) == noise_stream(
        reference_kind, dict(reference_config)
    ):
        raise ValueError(
            f"the reference run draws the same noise as the predict run (seed {predict_seed}, "
            "same noise stream): its top class is not an independent estimate of g(x); use a "
            "reference with another seed"
        )


def predict_categories(
    predict_path: str | os.PathLike, reference_path: str | os.PathLike
) -> dict[str, float]:
    """Table 4: fractions of PREDICT outcomes. "correct" = the true label; "accurate" = g(x),
    taken (as in the paper) to be the top class of the reference run's counts — a certify run
    (its estimation counts) or a predict run with a larger n — of the same model and σ on the
    same examples (:func:`check_reference`), at the same precision, whose noise is independent
    of the predict run's (:func:`check_independent_noise`)."""
    with RunStore.read(predict_path) as store:
        if store.kind != "predict":
            raise ValueError(f"{predict_path} is a {store.kind!r} run, expected a predict run")
        rows, config, seed = store.rows(), store.config, store.info.get("seed_used")
    check_reference(reference_path, config)
    with RunStore.read(reference_path) as ref:
        check_independent_noise(
            "predict", config, seed, ref.kind, ref.config, ref.info.get("seed_used")
        )
        key = _REFERENCE_COUNTS[ref.kind]
        reference = {r["idx"]: (r["label"], int(np.argmax(r[key]))) for r in ref.rows()}
    common = [r for r in rows if r["idx"] in reference]
    if not common:
        raise ValueError("the predict run and the reference run share no examples")
    for r in common:
        # A last guard for runs whose configs name no dataset (library runs).
        if reference[r["idx"]][0] != r["label"]:
            raise ValueError(
                f"example {r['idx']} has label {r['label']} in the predict run but "
                f"{reference[r['idx']][0]} in the reference run {reference_path}: not the same "
                "examples"
            )
    tally = dict.fromkeys(PREDICT_CATEGORIES, 0)
    for r in common:
        if r["prediction"] < 0:
            tally["abstain"] += 1
            continue
        correct = "correct" if r["prediction"] == r["label"] else "incorrect"
        accurate = "accurate" if r["prediction"] == reference[r["idx"]][1] else "inaccurate"
        tally[f"{correct}, {accurate}"] += 1
    return {k: v / len(common) for k, v in tally.items()}
