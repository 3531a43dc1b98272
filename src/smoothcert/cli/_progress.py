"""The progress bar of the commands that store one row per example (certify, predict)."""

from __future__ import annotations

import sys


class RowProgress:
    """A tqdm bar over a run's examples, opened only once the run is (re)opened, so a refused
    run prints nothing but its error. ``postfix(tally, row)`` updates the running figures,
    which count the rows stored before a resume too. A resumed run says so in one line on
    stderr, with or without the bar."""

    def __init__(self, disable: bool, postfix, run: str | None = None) -> None:
        self.disable, self.postfix, self.run = disable, postfix, run
        self.bar = None
        self.tally: dict[str, float] = {"done": 0}
        self.total = 0

    def start(self, done: int, todo: int) -> None:
        from tqdm import tqdm

        self.total = done + todo
        if done and self.run is not None:
            print(f"resuming {self.run}: {done}/{self.total} done", file=sys.stderr, flush=True)
            for row in _stored_rows(self.run):
                self.tally["done"] += 1
                self.postfix(self.tally, row)
        self.bar = tqdm(
            total=self.total,
            initial=done,
            disable=self.disable,
            unit="ex",
            dynamic_ncols=True,
            file=sys.stderr,
        )

    def __call__(self, row: dict) -> None:
        self.tally["done"] += 1
        self.bar.update(1)
        self.bar.set_postfix(self.postfix(self.tally, row))

    def interrupted(self) -> str:
        """The line to print on Ctrl-C: the rows committed to the run file (a row stored just
        before the interrupt may not have reached the bar)."""
        import sqlite3

        from smoothcert.runs.store import RunStore

        done = int(self.tally["done"])
        if self.run is not None and self.bar is not None:
            try:
                with RunStore.read(self.run) as store:
                    done = len(store.done_indices())
            except (ValueError, OSError, sqlite3.DatabaseError):
                pass  # the bar's count is the best we know
        return f"interrupted after {done}/{self.total}; rerun the same command to resume"

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def _stored_rows(path: str) -> list[dict]:
    from smoothcert.runs.store import RunStore

    with RunStore.read(path) as store:
        return store.rows()
