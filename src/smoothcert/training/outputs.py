"""The files of a training run's output directory, and the messages that speak of them.

``config.json`` (the run's identity, written first), ``last.safetensors`` and
``best.safetensors`` (checkpoints), ``resume.safetensors`` (the commit point of each epoch and
mid-epoch state, :mod:`smoothcert.training.resume`) and ``metrics.jsonl`` (one line per epoch).
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from torch import nn

from smoothcert._util.atomic import atomic_write_bytes
from smoothcert.data import ImageDataset
from smoothcert.data.stream import UnreadableImage
from smoothcert.models.checkpoint import decode_tensors, save_checkpoint
from smoothcert.training.method import Method

if TYPE_CHECKING:
    from smoothcert.training.config import TrainConfig

RESUME_FILE = "resume.safetensors"
CONFIG_FILE = "config.json"
METRICS_FILE = "metrics.jsonl"
LAST_FILE = "last.safetensors"
BEST_FILE = "best.safetensors"


def write_metrics(out: Path, history: list[dict[str, Any]]) -> None:
    """``metrics.jsonl``: one JSON object per completed epoch, written atomically."""
    lines = "".join(json.dumps(m, sort_keys=True) + "\n" for m in history)
    atomic_write_bytes(out / METRICS_FILE, lines.encode())


def read_metrics(out: str | os.PathLike) -> list[dict[str, Any]] | None:
    """The epochs ``metrics.jsonl`` in the run folder ``out`` records (None when there is no
    such file yet); a corrupt file raises ``json.JSONDecodeError``."""
    path = Path(out) / METRICS_FILE
    if not path.is_file():
        return None
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


#: The layout version of ``config.json`` written now. Version 0 (no ``config_version``: runs
#: made before versions existed) already held every identity field, so its upgrade only adds
#: the version; a later version that adds a field fills in its old implicit value in
#: :func:`upgrade_training_config`.
TRAINING_CONFIG_VERSION = 1
_VERSION_KEY = "config_version"


def upgrade_training_config(stored: dict[str, Any]) -> dict[str, Any]:
    """A stored ``config.json`` identity brought to the layout of
    :data:`TRAINING_CONFIG_VERSION` (before it is compared with the run's); one newer than
    this code reads is refused."""
    version = stored.get(_VERSION_KEY, 0)
    if not isinstance(version, int) or isinstance(version, bool) or version < 0:
        raise ValueError(f"its {_VERSION_KEY} {version!r} is invalid")
    if version > TRAINING_CONFIG_VERSION:
        raise ValueError(
            f"it is of version {version}, written by a newer smoothcert; this one reads "
            f"versions up to {TRAINING_CONFIG_VERSION}"
        )
    return dict(stored) | {_VERSION_KEY: TRAINING_CONFIG_VERSION}


def prepare_out_dir(out: Path, identity: dict[str, Any]) -> None:
    """Create ``out``; refuse a directory that belongs to a different run or to something else.
    ``config.json`` records ``identity`` and its version (:data:`TRAINING_CONFIG_VERSION`)."""
    identity = dict(identity) | {_VERSION_KEY: TRAINING_CONFIG_VERSION}
    try:
        out.mkdir(parents=True, exist_ok=True)
        probe = out / ".write-test"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ValueError(f"cannot write to output directory {out}: {exc.strerror or exc}") from None
    cfg = out / CONFIG_FILE
    if cfg.is_file():
        try:
            previous = json.loads(cfg.read_text())
        except json.JSONDecodeError:
            previous = None
        if not isinstance(previous, dict):
            raise ValueError(f"{cfg} is corrupt; use a new output directory")
        try:
            previous = upgrade_training_config(previous)
        except ValueError as exc:
            raise ValueError(f"{cfg}: {exc}") from None
        diff = identity_diff(previous, identity)
        if [k for k, _, _ in diff] == ["epochs"] and _epochs_may_change(out, identity):
            # The trajectory of every epoch is the same whatever the total (see
            # _epochs_may_change), so the run continues as if started with the new count.
            _write_identity(cfg, identity)
            return
        if diff:
            shown = "; ".join(f"{k}: {old!r} there, {new!r} now" for k, old, new in diff[:3])
            raise ValueError(
                f"{out} holds a run trained with different arguments ({shown}); "
                "rerun with the same arguments to resume, or choose a new output directory"
            )
        return
    # No config.json: not (yet) a run of ours, whatever its files are called, so anything in
    # it (even a best.safetensors) belongs to someone else and must not be overwritten.
    if any(not p.name.startswith(".") for p in out.iterdir()):
        raise ValueError(
            f"output directory {out} is not empty and holds no smoothcert training run; "
            "choose a new output directory"
        )
    _write_identity(cfg, identity)


def recorded_precision(out: Path) -> str | None:
    """The precision recorded in ``out/config.json`` by the run a training resumes (None for a
    new run): ``precision="auto"`` keeps it, whatever this machine would choose."""
    try:
        previous = json.loads((out / CONFIG_FILE).read_text())
    except (OSError, ValueError):
        return None
    value = previous.get("precision") if isinstance(previous, dict) else None
    return value if isinstance(value, str) else None


def _write_identity(cfg: Path, identity: dict[str, Any]) -> None:
    atomic_write_bytes(cfg, (json.dumps(identity, indent=2, sort_keys=True) + "\n").encode())


def completed_epochs(out: Path) -> int:
    """Epochs the resume state in ``out`` records as completed (0 without one)."""
    path = out / RESUME_FILE
    return int(decode_tensors(path)[1]["epoch"]) if path.is_file() else 0


def _epochs_may_change(out: Path, identity: dict[str, Any]) -> bool:
    """Whether the run in ``out`` may continue with ``identity["epochs"]`` epochs in all.

    Only the cosine schedule reads the total (its lr at a step depends on it); with the
    constant and step schedules epoch e trains the same way whatever the total, so a run
    extended (or stopped earlier than planned) equals a fresh run with the new count. Fewer
    epochs than already trained cannot be undone: ValueError.
    """
    if identity.get("schedule") == "cosine":
        return False
    done = completed_epochs(out)
    if identity["epochs"] < done:
        raise ValueError(
            f"{out} has trained {done} epochs already; epochs must be at least {done} "
            "to continue it (or choose a new output directory)"
        )
    return True


def identity_diff(old: dict[str, Any], new: dict[str, Any]) -> list[tuple[str, Any, Any]]:
    """(key, old, new) for each differing field; method hyperparameters by their own name."""
    diff = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k), new.get(k)
        if k == "method_options" and isinstance(a, dict) and isinstance(b, dict):
            diff += [
                (f"{k}.{o}", a.get(o), b.get(o))
                for o in sorted(set(a) | set(b))
                if a.get(o) != b.get(o)
            ]
        elif a != b:
            diff.append((k, a, b))
    return diff


def model_metadata(
    config: TrainConfig,
    method: Method,
    train_set: ImageDataset,
    epoch: int,
    metrics: dict[str, Any],
) -> dict[str, Any]:
    if hasattr(method, "checkpoint_metadata"):  # a denoiser objective
        return method.checkpoint_metadata(config, train_set, epoch, metrics)
    info = train_set.info
    from smoothcert import __version__

    return {
        "arch": config.arch,
        "dataset": config.dataset,
        "dataset_label": info.name,
        "data_root": config.data_root,
        "data_options": config.data_options,
        "num_classes": info.num_classes,
        "input_shape": list(info.input_shape),
        "class_names": list(info.class_names),
        "mean": list(info.mean),
        "std": list(info.std),
        "method": method.name,
        "hyperparameters": method.hyperparameters(),
        "sigma": method.noise_sigma,
        "precision": config.precision,
        "channels_last": config.channels_last,
        "epoch": epoch,
        "metrics": metrics,
        "seed": config.seed,
        "training": config.identity(),
        "smoothcert_version": __version__,
    }


def restore_outputs(
    out: Path,
    model: nn.Module,
    config: TrainConfig,
    method: Method,
    train_set: ImageDataset,
    history: list[dict[str, Any]],
    best_is_last: bool,
    batch: int,
    say: Callable[[str], None],
) -> None:
    """Rewrite outputs deleted since the resume point from the resume state: metrics.jsonl,
    and, when the state is an epoch boundary (its weights are the last completed epoch's),
    last.safetensors and best.safetensors when it is the last epoch. A best chosen on
    validation cannot be rebuilt, nor can a checkpoint from a mid-epoch state: say so."""
    if not history:
        return
    if not (out / METRICS_FILE).is_file():
        write_metrics(out, history)
    meta = model_metadata(config, method, train_set, len(history), history[-1])
    if not (out / LAST_FILE).is_file():
        if batch:
            say(f"warning: {out / LAST_FILE} is missing; the end of this epoch writes it again")
        else:
            save_checkpoint(out / LAST_FILE, model, meta)
            say(f"rewrote the missing {out / LAST_FILE} from the resume state")
    if not (out / BEST_FILE).is_file():
        if best_is_last and not batch:
            save_checkpoint(out / BEST_FILE, model, meta)
            say(f"rewrote the missing {out / BEST_FILE} (the last epoch) from the resume state")
        elif best_is_last:
            say(f"warning: {out / BEST_FILE} is missing; the end of this epoch writes it again")
        else:
            say(
                f"warning: {out / BEST_FILE} is missing; it was chosen on the validation split "
                "and cannot be rebuilt (a later epoch that beats it will write it again)"
            )


def discard_uncommitted(out: Path, main: bool) -> bool:
    """After a failure: with no resume state there is nothing to resume, so the run's files are
    removed (by rank 0) and the same output directory takes a corrected command. True when
    removed."""
    if (out / RESUME_FILE).exists():
        return False
    if main:  # checkpoints without a resume state are from an epoch that never committed
        for name in (CONFIG_FILE, BEST_FILE, LAST_FILE, METRICS_FILE):
            (out / name).unlink(missing_ok=True)
    return True


def diverged_message(out: Path, epoch: int, step: int, loss: float, main: bool = True) -> str:
    """The message for a non-finite loss."""
    where = f"training diverged at epoch {epoch + 1}, step {step} (loss {loss})"
    if discard_uncommitted(out, main):
        return (
            f"{where}; nothing was kept: rerun with a lower learning rate "
            "(or a saner method setting)"
        )
    return (
        f"{where}; {out} keeps its last resume point (resumable with the same arguments); "
        "to train with a lower learning rate, choose a new output directory"
    )


def unreadable_message(out: Path, error: UnreadableImage, main: bool) -> str:
    """The message for an image a streamed folder cannot decode: the run stops (skipping it
    would change every later batch) and keeps its last resume point, if any."""
    if discard_uncommitted(out, main):
        return f"{error}; nothing was kept: replace the file with a readable image and rerun"
    return (
        f"{error}; {out} keeps its last resume point: replace the file with a readable image "
        "and rerun the same command"
    )


def epoch_line(m: dict[str, Any], epochs: int) -> str:
    parts = [
        f"epoch {m['epoch']}/{epochs}",
        f"loss {m['train_loss']:.4f}",
    ]
    if "train_acc" in m:  # a denoiser objective has none
        parts.append(f"train acc {m['train_acc']:.4f}")
    for split in ("val", "test"):  # denoiser objectives
        if f"{split}_diffusion_loss" in m:
            parts.append(f"{split} diffusion loss {m[f'{split}_diffusion_loss']:.4f}")
        if f"{split}_mse" in m:
            parts.append(f"{split} MSE @σ={m['eval_sigma']:g} {m[f'{split}_mse']:.5f}")
    if "val_acc" in m:
        parts.append(f"val acc {m['val_acc']:.4f}")
    if "val_acc_noise" in m:
        parts.append(f"val acc @σ={m['eval_sigma']:g} {m['val_acc_noise']:.4f}")
    if "test_acc" in m:
        parts.append(f"test acc {m['test_acc']:.4f}")
    if "test_acc_noise" in m:
        parts.append(f"test acc @σ={m['eval_sigma']:g} {m['test_acc_noise']:.4f}")
    parts.append(f"{m['train_seconds']:.1f}s train + {m['eval_seconds']:.1f}s eval")
    return ", ".join(parts)
