"""Config versions: every run kind stores its whole config and its version; a run file written
before versions existed (entries stored only when not their old implicit value) still
resumes, and a genuinely different option is still refused, naming the entry."""

from __future__ import annotations

import sqlite3
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from helpers import LinearImage, ToyData
from smoothcert.certify.smoothing import SmoothedClassifier
from smoothcert.runs import (
    CertifyOptions,
    PredictOptions,
    RunStore,
    Selection,
    certify_dataset,
    predict_dataset,
)
from smoothcert.runs.attack import attack_dataset
from smoothcert.runs.dcert import dcert_dataset
from smoothcert.runs.store import ConfigMismatch, canonical_json
from smoothcert.runs.versions import (
    OLD_NOISY_EVALUATION,
    upgrade_attack_config,
    upgrade_certify_config,
    upgrade_dcert_config,
)


def _classifier() -> SmoothedClassifier:
    return SmoothedClassifier(LinearImage(), 2, 0.25, batch_size=300, input_shape=(1, 2, 2))


def _config(path: Path) -> dict[str, Any]:
    with RunStore.read(path) as store:
        return dict(store.config)


def _rewrite_config(path: Path, config: dict[str, Any]) -> None:
    """Store ``config`` in the run file as the code of its layout wrote it."""
    con = sqlite3.connect(path)
    with con:
        con.execute("UPDATE meta SET value = ? WHERE key = 'config'", (canonical_json(config),))
    con.close()


def _without(config: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in config.items() if k not in keys}


class _Batches(ToyData):
    """ToyData with the ``batch`` that attack runs read."""

    def batch(self, indices):
        return self.x[list(indices)], self.y[list(indices)]


# ------------------------------------------------------------------ certify and predict

CERTIFY = (CertifyOptions(n0=10, n=100, alpha=0.01), Selection(max_examples=3, seed=1))


def test_a_fresh_certify_config_holds_its_version_and_every_entry(tmp_path) -> None:
    certify_dataset(_classifier(), ToyData(), tmp_path / "c.db", *CERTIFY)
    config = _config(tmp_path / "c.db")
    assert config["config_version"] == 2
    assert config["sound"] is False and config["compile"] is False
    assert config["adaptive_radii"] is None and config["adaptive_options"] is None
    assert config["precision"] == "fp32" and config["channels_last"] is False
    expected = {
        "command", "n0", "n", "alpha", "skip", "max", "seed", "model_sha256", "sigma",
        "precision", "channels_last", "compile", "sound", "adaptive_radii",
        "adaptive_options", "config_version",
    }  # fmt: skip
    assert set(config) == expected
    # Nothing to upgrade in a current config.
    assert upgrade_certify_config(config) == config


def test_a_certify_run_file_of_the_old_layout_resumes(tmp_path) -> None:
    full = certify_dataset(_classifier(), ToyData(), tmp_path / "full.db", *CERTIFY)
    out = tmp_path / "c.db"

    def stop_after_one(row: dict[str, Any]) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        certify_dataset(_classifier(), ToyData(), out, *CERTIFY, progress=stop_after_one)
    # The layout before versions: no version, sound only when on, no adaptive entries (and
    # no compile, added by version 2).
    old = _without(
        _config(out), "config_version", "sound", "adaptive_radii", "adaptive_options", "compile"
    )
    _rewrite_config(out, old)
    rows = certify_dataset(_classifier(), ToyData(), out, *CERTIFY)
    assert [r["idx"] for r in rows] == [0, 1, 2]
    drop = "seconds"
    assert [_without(r, drop) for r in rows] == [_without(r, drop) for r in full]
    assert _config(out) == old  # the file keeps the config it was written with


def test_an_old_certify_run_file_refuses_another_option_naming_it(tmp_path) -> None:
    out = tmp_path / "c.db"
    certify_dataset(_classifier(), ToyData(), out, *CERTIFY)
    old = _without(
        _config(out), "config_version", "sound", "adaptive_radii", "adaptive_options", "compile"
    )
    _rewrite_config(out, old)
    with pytest.raises(ConfigMismatch) as caught:
        adaptive = replace(CERTIFY[0], adaptive_radii=[0.1])
        certify_dataset(_classifier(), ToyData(), out, adaptive, CERTIFY[1])
    assert caught.value.keys == ["adaptive_options", "adaptive_radii"]
    with pytest.raises(ConfigMismatch) as caught:
        other = replace(CERTIFY[0], alpha=0.02)
        certify_dataset(_classifier(), ToyData(), out, other, CERTIFY[1])
    assert caught.value.keys == ["alpha"]


def test_a_sound_entry_of_the_old_layout_is_kept() -> None:
    """Old files stored ``sound`` only when on: such a file upgrades with it on."""
    assert upgrade_certify_config({"n": 5, "sound": True})["sound"] is True
    assert upgrade_certify_config({"n": 5})["sound"] is False


def test_a_predict_run_file_of_the_old_layout_resumes(tmp_path) -> None:
    out = tmp_path / "p.db"
    kw = (PredictOptions(n=50, alpha=0.01), Selection(max_examples=2, seed=1))
    first = predict_dataset(_classifier(), ToyData(), out, *kw)
    config = _config(out)
    assert config["config_version"] == 2 and config["sound"] is False
    assert config["compile"] is False
    _rewrite_config(out, _without(config, "config_version", "sound", "compile"))
    assert predict_dataset(_classifier(), ToyData(), out, *kw) == first
    with RunStore.read(out) as store:
        assert len(store.sessions()) == 2  # resumed, not refused


def test_a_config_newer_than_the_code_is_refused(tmp_path) -> None:
    out = tmp_path / "c.db"
    certify_dataset(_classifier(), ToyData(), out, *CERTIFY)
    _rewrite_config(out, _config(out) | {"config_version": 3})
    with pytest.raises(ValueError, match="version 3, written by a newer smoothcert"):
        certify_dataset(_classifier(), ToyData(), out, *CERTIFY)


def test_a_version_1_run_file_resumes_uncompiled_and_refuses_compile(tmp_path) -> None:
    # version 1 had no compile entry: its base model ran eagerly
    out = tmp_path / "c.db"
    first = certify_dataset(_classifier(), ToyData(), out, *CERTIFY)
    v1 = _without(_config(out), "compile") | {"config_version": 1}
    _rewrite_config(out, v1)
    assert upgrade_certify_config(v1)["compile"] is False
    again = certify_dataset(_classifier(), ToyData(), out, *CERTIFY)
    assert [_without(r, "seconds") for r in again] == [_without(r, "seconds") for r in first]
    compiled = _classifier()
    compiled.compile = True
    with pytest.raises(ConfigMismatch) as caught:
        certify_dataset(compiled, ToyData(), out, *CERTIFY)
    assert caught.value.keys == ["compile"]


# ------------------------------------------------------------------ attack

ATTACK = dict(batch_size=2, indices=[0, 1, 2, 3])


def test_a_fresh_attack_config_holds_its_version_and_every_entry(tmp_path) -> None:
    attack_dataset(LinearImage(), _Batches(), tmp_path / "a.db", [0.0, 0.5], 2, **ATTACK)
    config = _config(tmp_path / "a.db")
    # The entries of a version-0 config that the upgrade fills in, all stored now.
    later = {k: config[k] for k in upgrade_attack_config({"noise_sigma": None})}
    assert later == {
        "restarts": 1,
        "skip_fooled": True,
        "precision": "fp32",
        "batch_size": None,
        "evaluation": None,
        "vote": None,
        "vote_alpha": None,
        "config_version": 1,
        "noise_sigma": None,
    }
    assert upgrade_attack_config(config) == config


def test_an_attack_run_file_of_the_old_layout_resumes(tmp_path) -> None:
    out = tmp_path / "a.db"
    first = attack_dataset(LinearImage(), _Batches(), out, [0.0, 0.5], 2, **ATTACK)
    # Before versions: restarts only when > 1, skip_fooled only when on, the noisy entries
    # only with noise, precision (the CLI's) only when not fp32.
    old = _without(
        _config(out), "config_version", "restarts", "precision", "batch_size", "evaluation",
        "vote", "vote_alpha",
    )  # fmt: skip
    assert old["skip_fooled"] is True
    _rewrite_config(out, old)
    again = attack_dataset(LinearImage(), _Batches(), out, [0.0, 0.5], 2, **ATTACK)
    assert again["accuracy"] == first["accuracy"] and again["count"] == 4
    # Attacking every radius is another run: refused, naming skip_fooled.
    with pytest.raises(ConfigMismatch) as caught:
        attack_dataset(LinearImage(), _Batches(), out, [0.0, 0.5], 2, **ATTACK, skip_fooled=False)
    assert caught.value.keys == ["skip_fooled"]
    with pytest.raises(ConfigMismatch) as caught:
        attack_dataset(LinearImage(), _Batches(), out, [0.0, 0.5], 2, **ATTACK, restarts=2)
    assert caught.value.keys == ["restarts"]


def test_old_attack_configs_upgrade_to_their_implicit_values() -> None:
    every_radius = upgrade_attack_config({"noise_sigma": None, "restarts": 3})
    assert every_radius["skip_fooled"] is False and every_radius["restarts"] == 3
    assert every_radius["precision"] == "fp32" and every_radius["vote"] is None
    assert upgrade_attack_config({"noise_sigma": None, "precision": "bf16"})["precision"] == "bf16"
    # A noisy run made before the common random numbers drew fresh votes per radius.
    noisy = upgrade_attack_config({"noise_sigma": 0.25, "batch_size": 4})
    assert noisy["evaluation"] == OLD_NOISY_EVALUATION
    crn = upgrade_attack_config({"noise_sigma": 0.25, "evaluation": "crn", "vote": "majority"})
    assert crn["vote_alpha"] is None and crn["evaluation"] == "crn"
    # A noisy config without a vote predates it and stays so (refused, as before).
    assert "vote" not in upgrade_attack_config({"noise_sigma": 0.25, "evaluation": "crn"})


# ------------------------------------------------------------------ dcert

DCERT = dict(
    sigma=0.25, gammas=[1.0], gamma_adv=[2.0], indices=[0, 1], selection=[0, 1, 2, 3],
    batch_size=2, steps=1, num_noise=2, num_eval=2, restarts=1, bound_draws=0,
)  # fmt: skip


def _pair() -> tuple[torch.Tensor, torch.Tensor]:
    data = ToyData(m=4)
    return data.x, data.y


def test_a_dcert_run_file_of_the_old_layout_resumes(tmp_path) -> None:
    out = tmp_path / "d.db"
    dcert_dataset(LinearImage(), _pair(), out, **DCERT)
    config = _config(out)
    assert config["config_version"] == 1 and config["bound"] is None
    assert config["surrogate"]["restarts"] == 1
    assert upgrade_dcert_config(config) == config
    # Before versions: the surrogate's restarts only when > 1, bound only when computed.
    old = _without(config, "config_version", "bound")
    old["surrogate"] = _without(config["surrogate"], "restarts")
    _rewrite_config(out, old)
    dcert_dataset(LinearImage(), _pair(), out, **DCERT)  # resumes: no mismatch
    # Without restarts and bound_draws, the run keeps those of the old file (1 and none).
    unnamed = DCERT | {"restarts": None, "bound_draws": None, "indices": [0, 1, 2, 3]}
    result = dcert_dataset(LinearImage(), _pair(), out, **unnamed)
    assert result.bound_stats is None and len(result.tables["cert", "smooth"].indices) == 4
    with pytest.raises(ConfigMismatch) as caught:
        dcert_dataset(LinearImage(), _pair(), out, **(DCERT | {"restarts": 2}))
    assert caught.value.keys == ["surrogate"]
