"""The training run's config.json: its version, and the upgrade of one written before
versions existed, so that such a run resumes."""

from __future__ import annotations

import json

import pytest

from smoothcert.training.outputs import (
    CONFIG_FILE,
    TRAINING_CONFIG_VERSION,
    prepare_out_dir,
    upgrade_training_config,
)


def test_a_training_config_of_the_old_layout_resumes(tmp_path) -> None:
    identity = {"dataset": "mnist", "epochs": 2, "seed": 0, "schedule": "step"}
    out = tmp_path / "run"
    prepare_out_dir(out, identity)
    written = json.loads((out / CONFIG_FILE).read_text())
    assert written == identity | {"config_version": TRAINING_CONFIG_VERSION}
    # Before versions, config.json held the identity alone.
    (out / CONFIG_FILE).write_text(json.dumps(identity, indent=2, sort_keys=True) + "\n")
    prepare_out_dir(out, identity)  # no mismatch
    with pytest.raises(ValueError, match=r"seed: 0 there, 1 now"):
        prepare_out_dir(out, identity | {"seed": 1})
    assert upgrade_training_config(identity) == written
    with pytest.raises(ValueError, match="newer smoothcert"):
        upgrade_training_config(identity | {"config_version": TRAINING_CONFIG_VERSION + 1})
