"""The one way the commands warn: a line on stderr, never an exit."""

from __future__ import annotations

import sys


def warn(message: str) -> None:
    print(f"warning: {message}", file=sys.stderr)
