"""Atomic file writes, shared by checkpoints, datasets, run files and records.

A write goes to a temporary file beside the target, is flushed to disk, then renamed over the
target: a crash leaves the old file or the new one, never a partial or empty one.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> None:
    """Call ``write(f)`` on a temporary file, fsync it, and rename it over ``path``.

    Raises
    ------
    ValueError
        If ``path`` is a directory (refused before anything is written).

    On any failure the temporary file is removed, so no stray file is left next to ``path``.
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"{path} is a directory; give a file path to write to")
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:  # also KeyboardInterrupt: the partial file is never wanted
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, record: Any, **dumps_options: Any) -> None:
    """Write ``record`` as indented JSON with a final newline to ``path`` atomically."""
    dumps_options.setdefault("indent", 2)
    atomic_write_text(path, json.dumps(record, **dumps_options) + "\n")
