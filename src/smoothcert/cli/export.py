"""`smoothcert export`: a certify run in the reference code's TSV format."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "write a certify run as TSV (idx label predict radius correct time)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("run", help="certify run file (.db)")
    parser.add_argument("tsv", help="output TSV file")


def run(args: argparse.Namespace) -> int:
    from smoothcert.runs import export_tsv

    count = export_tsv(args.run, args.tsv)
    print(f"wrote {count} rows to {args.tsv}")
    return 0
