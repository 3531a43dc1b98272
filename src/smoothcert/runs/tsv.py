"""Export of a certify run to Cohen et al.'s TSV (idx label predict radius correct time), and the
check, before a run starts, that its --tsv target can be written."""

from __future__ import annotations

import os
from pathlib import Path

from smoothcert._util.atomic import atomic_write_bytes
from smoothcert.runs.store import SQLITE_HEADER, RunStore


def check_tsv_target(tsv_path: str | os.PathLike, run_path: str | os.PathLike) -> Path:
    """Refuse a TSV target that would destroy data or cannot be written, before any work: the
    run file itself, any SQLite file (another run), a directory, or a directory that is
    read-only. Missing directories are created when the TSV is written, as they are for a run
    file (one rule for both outputs), provided their nearest existing ancestor is a writable
    directory. Returns the target as a Path."""
    tsv, run = Path(tsv_path), Path(run_path)
    if tsv.resolve() == run.resolve() or (
        tsv.exists() and run.exists() and os.path.samefile(tsv, run)
    ):
        raise ValueError(f"TSV output {tsv} is the run file itself; choose another file name")
    if tsv.is_dir():
        raise ValueError(f"TSV output {tsv} is a directory; give a file name")
    if tsv.is_file():
        with open(tsv, "rb") as fh:
            if fh.read(len(SQLITE_HEADER)) == SQLITE_HEADER:
                raise ValueError(
                    f"TSV output {tsv} is an SQLite file (a run file?); refusing to overwrite it"
                )
    folder = tsv.resolve().parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(
            f"cannot create directory {folder} of TSV output {tsv}: {existing} is a file"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"directory {existing} of TSV output {tsv} is not writable")
    return tsv


def export_tsv(run_path: str | os.PathLike, tsv_path: str | os.PathLike) -> int:
    """Write a certify run in the reference code's TSV format.

    The columns are ``idx label predict radius correct time`` (tab-separated, a header line,
    abstentions as -1, time as H:MM:SS.ffffff), as Cohen et al.'s code writes them. Radii are
    written in full (shortest round-trip digits): a rounded radius could pass a threshold that
    the certified one does not, e.g. 0.49999996 printed as 0.5.

    Parameters
    ----------
    run_path : str or os.PathLike
        A certify run file.
    tsv_path : str or os.PathLike
        The TSV file to write (atomically); missing folders are made.

    Returns
    -------
    int
        The number of rows written.

    Raises
    ------
    ValueError
        If ``run_path`` is not a certify run, or ``tsv_path`` is the run itself, another run
        file (any SQLite file) or a folder.
    """
    with RunStore.read(run_path) as store:
        if store.kind != "certify":
            raise ValueError(f"{run_path} is a {store.kind!r} run; only certify runs export to TSV")
        rows = store.rows()
    tsv_path = check_tsv_target(tsv_path, run_path)
    tsv_path.parent.mkdir(parents=True, exist_ok=True)  # as a run file's folder is
    lines = ["idx\tlabel\tpredict\tradius\tcorrect\ttime\n"] + [
        f"{r['idx']}\t{r['label']}\t{r['prediction']}\t{float(r['radius'])!r}\t"
        f"{r['correct']}\t{_elapsed(r['seconds'])}\n"
        for r in rows
    ]
    atomic_write_bytes(tsv_path, "".join(lines).encode())  # never a half-written TSV
    return len(rows)


def _elapsed(seconds: float) -> str:
    # The reference code prints datetime.timedelta values.
    whole = int(seconds)
    micro = int(round((seconds - whole) * 1e6))
    if micro == 1_000_000:
        whole, micro = whole + 1, 0
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}.{micro:06d}"
