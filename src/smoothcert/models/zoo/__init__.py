"""The model zoo: trained checkpoints shipped with smoothcert, loaded by name as ``zoo:NAME``.

``manifest.json`` (beside this module) lists each checkpoint with its sha256, what it is
(dataset, arch, training method, σ), the command that trained it and the certified accuracies
it reached, with the command behind them. A checkpoint is loaded only after its sha256 matches
the manifest, so a damaged or swapped file is refused rather than certified.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from smoothcert._util.hashing import file_sha256

ZOO_DIR = Path(__file__).resolve().parent
MANIFEST = "manifest.json"
PREFIX = "zoo:"


@dataclass(frozen=True)
class ZooEntry:
    """One shipped checkpoint (a row of the manifest)."""

    name: str
    file: str  # relative to the zoo folder
    sha256: str
    dataset: str
    arch: str
    method: str
    sigma: float | None
    train_command: str
    certified_accuracy: dict[str, float] = field(default_factory=dict)  # radius -> accuracy
    certify_command: str = ""
    notes: str = ""
    # models trained against attacks (NAL, WRM): L2 PGD accuracy, radius -> accuracy
    attack_accuracy: dict[str, float] = field(default_factory=dict)
    attack_command: str = ""

    @property
    def path(self) -> Path:
        return ZOO_DIR / self.file


def list_zoo(zoo_dir: Path | None = None) -> list[ZooEntry]:
    """The manifest's entries, in manifest order (empty when nothing is shipped)."""
    path = (zoo_dir or ZOO_DIR) / MANIFEST
    if not path.is_file():
        return []
    try:
        rows: list[dict[str, Any]] = json.loads(path.read_text())["models"]
        return [ZooEntry(**row) for row in rows]
    except (json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ValueError(f"the zoo manifest {path} is corrupt ({exc})") from None


def is_zoo_name(spec: object) -> bool:
    return isinstance(spec, str | Path) and str(spec).startswith(PREFIX)


def zoo_path(spec: str | Path) -> Path:
    """The verified file of ``zoo:NAME``.

    Raises
    ------
    ValueError
        NAME is not in the zoo (the message lists the names), or its file does not match the
        manifest's sha256.
    FileNotFoundError
        The manifest lists NAME but its file is missing.
    """
    name = str(spec)[len(PREFIX) :]
    entries = {e.name: e for e in list_zoo()}
    if name not in entries:
        known = ", ".join(entries) or "none shipped"
        raise ValueError(f"no model {name!r} in the zoo (models: {known})")
    entry = entries[name]
    if not entry.path.is_file():
        raise FileNotFoundError(f"zoo model {name!r}: its file {entry.file} is missing")
    if file_sha256(entry.path) != entry.sha256:
        raise ValueError(
            f"zoo model {name!r}: {entry.file} does not match the manifest's sha256 "
            "(damaged or replaced); reinstall smoothcert"
        )
    return entry.path
