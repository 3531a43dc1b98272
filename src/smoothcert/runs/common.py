"""What every run kind shares: the selected examples (every skip-th, at most max) and their
digest, the check that a resumed run sees the same examples, the per-example noise generator,
the fingerprints of a model and of a file recorded in a run's config, and the identity of the
model file a run was made with."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from smoothcert._util.checks import (
    optional_positive_int,
    positive_int,
)
from smoothcert._util.hashing import file_sha256
from smoothcert.certify.smoothing import SmoothedClassifier
from smoothcert.runs.store import RunStore


def select_indices(num_examples: int, skip: int = 1, max_examples: int | None = None) -> list[int]:
    """Every ``skip``-th example, ``max_examples`` of them in all (a count, not an index)."""
    skip = positive_int("skip", skip)
    max_examples = optional_positive_int("max_examples", max_examples)
    indices = list(range(0, num_examples, skip))
    return indices if max_examples is None else indices[:max_examples]


def selection_sha(indices: Sequence[int]) -> str:
    """A short identity of an ordered list of examples, stored in the config of attack and
    dcert runs so that a resumed run works on the same examples."""
    return hashlib.sha256(",".join(map(str, indices)).encode()).hexdigest()[:16]


def check_same_examples(out: str | os.PathLike, dataset: Any) -> None:
    """Refuse to resume a run whose stored rows are other examples than the data set now gives.

    The run's configuration names the data set and the selection, not the images: a loader
    that orders the data differently, or another ``root``, would mix rows of two example sets
    in one table. A stored row whose label differs from the data's label at its index shows
    that (unlabeled data and rows without a label are not checked). Read-only: a refused run
    file is left untouched. Nothing to check when ``out`` does not exist yet.
    """
    labels = getattr(dataset, "labels", None)
    if labels is None or not Path(out).is_file():
        return
    with RunStore.read(out) as store:
        stored = store.stored_labels()
    changed = [
        (i, old) for i, old in sorted(stored.items()) if i >= len(labels) or int(labels[i]) != old
    ]
    if changed:
        i, old = changed[0]
        now = f"is now {int(labels[i])}" if i < len(labels) else "is past the data's end"
        raise ValueError(
            f"{out} holds other examples than the data set now gives: {len(changed)} of "
            f"{len(stored)} stored rows have another label at their index (example {i} was "
            f"labelled {old}, {now}); the data changed since the run started (order, files or "
            "root): write to a new out file"
        )


# The noise stream of a predict run: its draws are seeded by (seed, idx, PREDICT_STREAM, n), so
# they are independent of a certify run's (seeded by (seed, idx) alone) and of a predict run
# with another n. Without it, PREDICT's n draws were a prefix of a same-seed reference run's
# and agreed with it more often than independent draws would (Table 4's "accurate" inflated).
#
# The id must not be 0: numpy's SeedSequence pads entropy shorter than its pool (4 words) with
# zeros, so (seed, idx) and (seed, idx, 0) and (seed, idx, 0, 0) are one seed, and a stream id 0
# followed by nothing (or by a 0) would draw a certify run's noise. With the id 1 a predict
# key (seed, idx, 1, n) differs from every padded certify key (seed, idx, 0, 0) in its third
# word, for seeds and indices below 2³² (SeedSequence splits larger integers into 32-bit
# words); tests/analysis/test_evaluation_bias.py checks both.
PREDICT_STREAM = 1
PREDICT_NOISE_STREAM = "seed, idx, predict, n"  # recorded in the config of every predict run


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the model's parameter and buffer names, shapes, dtypes and values."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        # reshape(-1): a 0-dim buffer (batch norm's num_batches_tracked) cannot be viewed as
        # bytes directly; for every other tensor the bytes are the same as before.
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def run_identity(classifier: SmoothedClassifier) -> dict[str, Any]:
    """The config entries that identify the smoothed classifier of a run: its base model's
    fingerprint and σ (every certify and predict run stores them)."""
    return {"model_sha256": model_fingerprint(classifier.base), "sigma": classifier.sigma}


def checkpoint_identity(
    path: Path | None, meta: dict[str, Any], argv: Sequence[str]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """(config entries that identify the model, provenance info) for a run of the model in
    ``path`` (None: a python: factory) whose metadata is ``meta``; ``argv``, the command that
    made the run, goes into the provenance.

    A smoothcert checkpoint is identified by its file's sha256; a model from outside by its
    ``source`` (file sha256, format, runtime and version, normalization), so resuming with
    another file or runtime is refused.
    """
    if "source" in meta:
        shown = str(path.resolve()) if path is not None else meta["source"].get("factory")
        return {"model": meta["source"]}, {"model": shown, "argv": argv}
    config = {"checkpoint_sha256": file_sha256(path)}
    info = {"checkpoint": str(path.resolve()), "checkpoint_metadata": meta, "argv": argv}
    return config, info
