"""`smoothcert zoo`: the shipped trained models, usable anywhere a checkpoint is as zoo:NAME."""

from __future__ import annotations

import argparse

NAME = "zoo"
HELP = "list the shipped trained models (use one as zoo:NAME in certify, predict, attack, ...)"
DESCRIPTION = (
    "List the trained checkpoints shipped with smoothcert: what each is, the command that "
    "trained it and the certified accuracy it reached (accuracy under L2 PGD for the models "
    "trained against attacks). Any command that takes a checkpoint "
    "takes zoo:NAME instead; the file is checked against the manifest's sha256 first."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name", nargs="?", default=None, help="show one model in full")


def run(args: argparse.Namespace) -> int:
    from smoothcert.models.zoo import list_zoo, zoo_path

    entries = list_zoo()
    if args.name is not None:
        name = args.name.removeprefix("zoo:")
        path = zoo_path(f"zoo:{name}")  # checks the name and the hash
        entry = next(e for e in entries if e.name == name)
        print(f"zoo:{entry.name}  ({path.stat().st_size / 1e6:.1f} MB, sha256 {entry.sha256})")
        print(f"  {entry.dataset}, {entry.arch}, {entry.method}, sigma = {entry.sigma}")
        print(f"  trained by: {entry.train_command}")
        if entry.certified_accuracy:
            accs = ", ".join(f"r={r}: {a:.3f}" for r, a in entry.certified_accuracy.items())
            print(f"  certified accuracy: {accs}")
            print(f"  measured by: {entry.certify_command}")
        if entry.attack_accuracy:
            accs = ", ".join(f"r={r}: {a:.3f}" for r, a in entry.attack_accuracy.items())
            print(f"  accuracy under L2 PGD: {accs}")
            print(f"  measured by: {entry.attack_command}")
        if entry.notes:
            print(f"  {entry.notes}")
        return 0
    if not entries:
        print("no models are shipped in this installation")
        return 0
    width = max(len(e.name) for e in entries)
    print(
        f"{'name':<{width + 4}}  {'dataset':<12}{'arch':<10}{'method':<10}{'sigma':>6}  "
        "accuracy (certified, or under PGD)"
    )
    for e in entries:
        kind, table = ("certified", e.certified_accuracy)
        if not table:
            kind, table = ("PGD", e.attack_accuracy)
        shown = list(table.items())[:4]
        accs = kind + " " + " ".join(f"r={r}:{a:.2f}" for r, a in shown) if shown else ""
        sigma = "" if e.sigma is None else f"{e.sigma:g}"
        print(f"zoo:{e.name:<{width}}  {e.dataset:<12}{e.arch:<10}{e.method:<10}{sigma:>6}  {accs}")
    return 0
