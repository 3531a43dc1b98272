"""`smoothcert analyze`: tables and plots of certify runs (Tables 2–3, Figures 6 and 8)."""

from __future__ import annotations

import argparse

NAME = "analyze"
HELP = "certified accuracy tables and plots from certify runs"
DESCRIPTION = (
    "Certified accuracy at each radius (abstentions count as wrong), average certified radius, "
    "and Theorem 6's high-probability lower bound, for one or more certify runs side by side. "
    "--figure8 re-analyses one run from its stored counts: the Lecuyer and Li bounds, other alpha, "
    "other n."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("runs", nargs="+", help="certify run files (.db)")
    parser.add_argument(
        "--radii",
        type=float,
        nargs="+",
        default=[0, 0.25, 0.5, 0.75, 1, 1.25, 1.5],
        help="L2 radii (input units)",
    )
    parser.add_argument("--names", nargs="+", default=None, help="row names (default: file names)")
    parser.add_argument(
        "--format", default="markdown", choices=("markdown", "latex", "csv"), help="table format"
    )
    parser.add_argument(
        "--plot", default=None, help="write a certified-accuracy plot here (.png, .pdf, .svg, ...)"
    )
    parser.add_argument(
        "--rho",
        type=float,
        default=0.001,
        help="Theorem 6: the lower bound holds with probability 1 - rho",
    )
    parser.add_argument(
        "--figure8",
        action="store_true",
        help="re-analyse the (single) run: other bounds, n and alpha",
    )
    parser.add_argument(
        "--alphas",
        type=float,
        nargs="+",
        default=[0.01, 0.001, 0.0001, 0.00001],
        help="alphas for --figure8",
    )
    parser.add_argument(
        "--ns",
        type=int,
        nargs="+",
        default=[1_000, 10_000, 100_000, 1_000_000, 10_000_000],
        help="sample sizes for --figure8 (projection at constant nA/n)",
    )


def run(args: argparse.Namespace) -> int:
    from smoothcert.analysis import (
        analyze,
        bound_comparison,
        check_plot_path,
        format_table,
        plot_curves,
    )
    from smoothcert.cli import _common

    if not 0 < args.rho < 1:
        raise ValueError(f"--rho must be in (0, 1), got {args.rho}")
    # float() accepts "nan" and "inf": a nan radius would print an `r = nan` column.
    _common.finite("radii", args.radii, positive=False)
    if any(not 0 < a < 1 for a in args.alphas):
        raise ValueError(f"--alphas must be in (0, 1), got {args.alphas}")
    if args.plot:
        check_plot_path(args.plot)  # before the tables: a bad --plot must not come last
    if args.figure8:
        if len(args.runs) != 1:
            raise ValueError("--figure8 analyses one run at a time")
        groups = bound_comparison(
            args.runs[0], args.radii, alphas=args.alphas, ns=args.ns, rho=args.rho
        )
        titles = {
            "bounds": "certified accuracy by bound",
            "n": "other n, projected at the observed nA/n",
            "alpha": "other alpha",
        }
        for key, summaries in groups.items():
            print(f"\n{titles[key]}:\n")
            print(format_table(summaries, args.format))
        if args.plot:
            plot_curves({titles[k]: v for k, v in groups.items()}, args.plot)
            print(f"\nwrote {args.plot}")
        return 0
    summaries = analyze(args.runs, args.radii, names=args.names, rho=args.rho)
    print("approximate certified accuracy:\n")
    print(format_table(summaries, args.format))
    k = len(args.radii)
    print(
        f"\nlower bound (Theorem 6), holding at each radius separately with probability "
        f"{1 - args.rho:g}; at all {k} radii together with probability >= "
        f"{max(0.0, 1 - k * args.rho):g} (union bound); runs with alpha > 0.5 have none:\n"
    )
    print(format_table(summaries, args.format, lower_bound=True))
    for s in summaries:
        print(
            f"{s.name}: {s.num_examples} examples, sigma = {s.sigma:g}, "
            f"n = {s.n:,}, alpha = {s.alpha:g}"
        )
    if args.plot:
        plot_curves({"certified accuracy": summaries}, args.plot)
        print(f"wrote {args.plot}")
    return 0
