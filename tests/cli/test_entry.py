"""The `smoothcert` program's exit: a torchrun worker (WORLD_SIZE > 1) leaves by os._exit
after flushing its output (gloo's C++ teardown after the interpreter's can abort a finished
worker), everything else by sys.exit; both with main()'s exit code."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

# An atexit handler shows which exit was taken: os._exit skips it.
PROGRAM = """
import atexit, sys
atexit.register(lambda: print("atexit ran", flush=True))
sys.argv = ["smoothcert", *{argv!r}]
from smoothcert.cli import entry
entry()
"""


def _run(argv: list[str], world: str | None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "WORLD_SIZE"}
    if world is not None:
        env["WORLD_SIZE"] = world
    code = PROGRAM.format(argv=argv)
    return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)


@pytest.mark.parametrize(("world", "skips_teardown"), [("2", True), ("1", False), (None, False)])
def test_a_torchrun_worker_leaves_by_os_exit_with_its_output_flushed(world, skips_teardown):
    done = _run([], world)  # no command: prints the help, returns 0
    assert done.returncode == 0
    assert done.stdout.startswith("usage: smoothcert")  # flushed before os._exit
    assert ("atexit ran" in done.stdout) is not skips_teardown


@pytest.mark.parametrize("world", ["2", None])
def test_the_exit_code_of_main_passes_through_both_exits(world):
    done = _run(["analyze", "missing.db"], world)
    assert done.returncode == 2
    assert done.stderr == "smoothcert analyze: error: run file missing.db does not exist\n"
