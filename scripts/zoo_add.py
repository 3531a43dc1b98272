"""Add (or replace) a model in the zoo from a finished experiment stage (maintainers only).

    .venv/bin/python scripts/zoo_add.py mnist-cnn3-sigma0.25 \
        --experiment experiments/cohen-mnist.toml --scale cpu \
        --train-stage train-sigma0.25 --certify-stage certify-sigma0.25

Copies the stage's last.safetensors into src/smoothcert/models/zoo/NAME.safetensors, and writes
its manifest row: sha256, dataset, arch, method, σ (from the checkpoint's metadata), the exact
commands of the two stages, and the certified accuracy of the certify run at --radii (or, with
--attack-stage, the accuracy under L2 PGD of that attack run). Refuses a file over 5 MB or a zoo
over 40 MB.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from pathlib import Path

from smoothcert._util.hashing import file_sha256
from smoothcert.analysis import analyze
from smoothcert.experiments import load_experiment
from smoothcert.models.checkpoint import load_checkpoint
from smoothcert.models.zoo import MANIFEST, ZOO_DIR, ZooEntry, list_zoo
from smoothcert.runs.attack import read_attack
from smoothcert.runs.store import RunStore

MAX_FILE, MAX_TOTAL = 5_000_000, 40_000_000


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("name")
    p.add_argument("--experiment", required=True)
    p.add_argument("--scale", default="cpu")
    p.add_argument("--train-stage", required=True)
    p.add_argument("--certify-stage", default=None)
    p.add_argument(
        "--certify-run", default=None, help="a certify run file instead of --certify-stage"
    )
    p.add_argument("--attack-stage", default=None, help="an attack stage of the experiment")
    p.add_argument("--radii", type=float, nargs="+", default=[0.0, 0.25, 0.5, 0.75, 1.0])
    p.add_argument("--notes", default="")
    args = p.parse_args(argv)
    experiment = load_experiment(args.experiment, args.scale)
    stages = {s.name: s for s in experiment.stages}
    train = stages[args.train_stage]
    source = f"{train.option('--out')}/last.safetensors"
    _, meta = load_checkpoint(source)
    target = ZOO_DIR / f"{args.name}.safetensors"
    size = Path(source).stat().st_size
    others = sum(e.path.stat().st_size for e in list_zoo() if e.name != args.name)
    if size > MAX_FILE or others + size > MAX_TOTAL:
        print(f"refused: {size} bytes (the zoo would hold {others + size})", file=sys.stderr)
        return 1
    accuracy, certify_command = {}, ""
    if args.certify_stage or args.certify_run:
        run_path = args.certify_run or stages[args.certify_stage].option("--out")
        [summary] = analyze([run_path], args.radii)
        pairs = zip(summary.radii, summary.certified_accuracy, strict=True)
        accuracy = {f"{r:g}": a for r, a in pairs}
        if args.certify_stage:
            command = stages[args.certify_stage].command
        else:  # the command line the run file recorded
            with RunStore.read(run_path) as store:
                argv = store.info.get("argv") or []
            command = "smoothcert " + " ".join(str(a) for a in argv[1:])
        certify_command = f"{command}  ({summary.num_examples} test images)"
    attack_accuracy, attack_command = {}, ""
    if args.attack_stage:
        stage = stages[args.attack_stage]
        result = read_attack(stage.option("--out"))
        missing = [r for r in args.radii if r not in result["accuracy"]]
        if missing:
            print(f"refused: the attack run has no radius {missing}", file=sys.stderr)
            return 1
        attack_accuracy = {f"{r:g}": result["accuracy"][r] for r in args.radii}
        attack_command = f"{stage.command}  ({result['count']} test images)"
    shutil.copyfile(source, target)
    entry = ZooEntry(
        name=args.name,
        file=target.name,
        sha256=file_sha256(target),
        dataset=meta["dataset"],
        arch=meta["arch"],
        method=meta["method"],
        sigma=meta.get("sigma"),
        train_command=train.command,
        certified_accuracy=accuracy,
        certify_command=certify_command,
        notes=args.notes,
        attack_accuracy=attack_accuracy,
        attack_command=attack_command,
    )
    rows = [dataclasses.asdict(e) for e in list_zoo() if e.name != args.name]
    rows.append(dataclasses.asdict(entry))
    (ZOO_DIR / MANIFEST).write_text(json.dumps({"models": rows}, indent=2) + "\n")
    print(f"zoo:{args.name}: {target} ({size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
