"""`smoothcert merge`: join the shard files of a sharded run (see smoothcert.runs.shards)."""

from __future__ import annotations

import argparse

NAME = "merge"
HELP = "merge the shard files of a sharded certify/predict run into one run file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out", help="the merged run file to create (must not exist)")
    parser.add_argument("shards", nargs="+", help="all shard files, e.g. r.shard*-of-4.db")


def run(args: argparse.Namespace) -> int:
    import sys

    from smoothcert.runs.shards import merge_runs, selection_gaps

    count = merge_runs(args.out, args.shards)
    print(f"merged {len(args.shards)} shards, {count} examples, into {args.out}")
    gaps = selection_gaps(args.out)
    if gaps:
        shown = ", ".join(map(str, gaps[:10])) + (" ..." if len(gaps) > 10 else "")
        print(
            f"smoothcert merge: warning: {len(gaps)} selected examples have no row ({shown}); "
            f"rerun the run's command with --out {args.out} to fill them in",
            file=sys.stderr,
        )
    return 0
