"""Config versions of the run kinds, and the upgrade of a config stored by an older version.

A run file's config holds every setting that determines its results, and a resumed run must
match it exactly. Every run kind writes its whole config with a ``config_version``. A config
written by an older version lacks the entries added since, whose value was then implicit;
before comparing, :class:`~smoothcert.runs.store.RunStore` upgrades the stored config with the
kind's upgrade function, which gives each missing entry that old implicit value. A config
with no ``config_version`` is version 0: files written before versions existed, which stored
some entries only when they were not their old implicit value.

The upgrade only reads: the run file keeps the config it was written with. Entries added by
the caller (the CLI's checkpoint sha256, dataset, split, denoiser) are compared as given.
A config newer than this code reads is refused.

History (the version each kind writes now is its ``*_CONFIG_VERSION``):

certify (:data:`CERTIFY_CONFIG_VERSION`)
    0: ``sound`` stored only when True; ``adaptive_radii`` and ``adaptive_options`` only for
    an adaptive run; ``precision`` and ``channels_last`` only when the classifier has them.
    1: every entry (``sound`` False, no adaptive plan: None, no precision: None).
    2: ``compile`` (the base model compiled by torch.compile; before: False).
predict (:data:`PREDICT_CONFIG_VERSION`)
    0: ``sound`` stored only when True; ``precision`` and ``channels_last`` as certify's.
    1: every entry. 2: ``compile``, as certify's.
attack (:data:`ATTACK_CONFIG_VERSION`)
    0: ``restarts`` only when > 1; ``skip_fooled`` only when True; ``batch_size``,
    ``evaluation`` and ``vote`` only with noise at test time (a noisy run without
    ``evaluation`` drew fresh votes at every radius: :data:`OLD_NOISY_EVALUATION`);
    ``vote_alpha`` only with ``vote="predict"``; ``precision`` (recorded by the CLI) only
    when not fp32. 1: every entry (None where a setting does not apply).
dcert (:data:`DCERT_CONFIG_VERSION`)
    0: the surrogate's ``restarts`` only when > 1; ``bound`` only when the certified bound
    is computed. 1: every entry (``bound`` None without the bound).

The training run's ``config.json`` has its own version and upgrade
(:func:`smoothcert.training.outputs.upgrade_training_config`).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

__all__ = [
    "VERSION_KEY",
    "CERTIFY_CONFIG_VERSION",
    "PREDICT_CONFIG_VERSION",
    "ATTACK_CONFIG_VERSION",
    "DCERT_CONFIG_VERSION",
    "OLD_NOISY_EVALUATION",
    "upgrade_certify_config",
    "upgrade_predict_config",
    "upgrade_attack_config",
    "upgrade_dcert_config",
    "upgrade_config",
    "UPGRADES",
]

#: The config entry holding the version of the config's layout.
VERSION_KEY = "config_version"

#: ``evaluation`` of a noisy attack run made before the common random numbers (its votes were
#: drawn afresh at every radius; its accuracy falls with the number of radii listed).
OLD_NOISY_EVALUATION = "fresh votes per radius"

# steps[v] turns a version-v config into a version v+1 one; a kind's version is its count of
# steps.
Step = Callable[[dict[str, Any]], dict[str, Any]]


def _upgraded(kind: str, stored: Mapping[str, Any], steps: list[Step]) -> dict[str, Any]:
    """``stored`` brought to version len(steps) by the steps after its own version."""
    current = len(steps)  # the kind's version
    version = stored.get(VERSION_KEY, 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"the {kind} run's config has an invalid {VERSION_KEY} {version!r}")
    if version > current:
        raise ValueError(
            f"the {kind} run's config is of version {version}, written by a newer smoothcert; "
            f"this one reads versions up to {current}"
        )
    config = dict(stored)
    for step in steps[version:]:
        config = step(config)
    config[VERSION_KEY] = current
    return config


def _fill(config: dict[str, Any], defaults: Mapping[str, Any]) -> dict[str, Any]:
    """``config`` with each entry of ``defaults`` it lacks."""
    return {**defaults, **config}


# ------------------------------------------------------------------ certify and predict

# The classifier's settings in a version-0 config when absent (a classifier without a
# precision attribute stored none).
_CLASSIFIER_0 = {"sound": False, "precision": None, "channels_last": None}


def _certify_0_to_1(config: dict[str, Any]) -> dict[str, Any]:
    return _fill(config, _CLASSIFIER_0 | {"adaptive_radii": None, "adaptive_options": None})


def _predict_0_to_1(config: dict[str, Any]) -> dict[str, Any]:
    return _fill(config, _CLASSIFIER_0)


def _classifier_1_to_2(config: dict[str, Any]) -> dict[str, Any]:
    return _fill(config, {"compile": False})


_CERTIFY_STEPS: list[Step] = [_certify_0_to_1, _classifier_1_to_2]
_PREDICT_STEPS: list[Step] = [_predict_0_to_1, _classifier_1_to_2]
CERTIFY_CONFIG_VERSION = len(_CERTIFY_STEPS)
PREDICT_CONFIG_VERSION = len(_PREDICT_STEPS)


def upgrade_certify_config(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored certify config as :data:`CERTIFY_CONFIG_VERSION` writes it (see the module's
    history)."""
    return _upgraded("certify", stored, _CERTIFY_STEPS)


def upgrade_predict_config(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored predict config as :data:`PREDICT_CONFIG_VERSION` writes it."""
    return _upgraded("predict", stored, _PREDICT_STEPS)


# ------------------------------------------------------------------ attack


def _attack_0_to_1(config: dict[str, Any]) -> dict[str, Any]:
    config = _fill(config, {"restarts": 1, "skip_fooled": False, "precision": "fp32"})
    if config.get("noise_sigma") is None:
        absent = {"batch_size": None, "evaluation": None, "vote": None, "vote_alpha": None}
        return _fill(config, absent)
    config = _fill(config, {"evaluation": OLD_NOISY_EVALUATION})
    # A noisy version-0 config without a vote predates the vote: left as it is, so that
    # it is refused as before.
    if "vote" in config and config["vote"] != "predict":
        config = _fill(config, {"vote_alpha": None})
    return config


_ATTACK_STEPS: list[Step] = [_attack_0_to_1]
ATTACK_CONFIG_VERSION = len(_ATTACK_STEPS)


def upgrade_attack_config(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored attack config as :data:`ATTACK_CONFIG_VERSION` writes it."""
    return _upgraded("attack", stored, _ATTACK_STEPS)


# ------------------------------------------------------------------ dcert


def _dcert_0_to_1(config: dict[str, Any]) -> dict[str, Any]:
    config = _fill(config, {"bound": None})
    surrogate = config.get("surrogate")
    if isinstance(surrogate, Mapping):
        config["surrogate"] = _fill(dict(surrogate), {"restarts": 1})
    return config


_DCERT_STEPS: list[Step] = [_dcert_0_to_1]
DCERT_CONFIG_VERSION = len(_DCERT_STEPS)


def upgrade_dcert_config(stored: Mapping[str, Any]) -> dict[str, Any]:
    """A stored dcert config as :data:`DCERT_CONFIG_VERSION` writes it."""
    return _upgraded("dcert", stored, _DCERT_STEPS)


#: The upgrade function of each run kind with a versioned config.
UPGRADES: dict[str, Callable[[Mapping[str, Any]], dict[str, Any]]] = {
    "certify": upgrade_certify_config,
    "predict": upgrade_predict_config,
    "attack": upgrade_attack_config,
    "dcert": upgrade_dcert_config,
}


def upgrade_config(kind: str, stored: Mapping[str, Any]) -> dict[str, Any]:
    """``stored`` upgraded by the upgrade function of run kind ``kind`` (unchanged for a kind
    without a versioned config)."""
    upgrade = UPGRADES.get(kind)
    return dict(stored) if upgrade is None else upgrade(stored)
