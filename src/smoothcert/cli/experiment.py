"""`smoothcert experiment run|status|report FILE --scale S`: a whole experiment, resumable."""

from __future__ import annotations

import argparse
import functools

NAME = "experiment"
HELP = "run an experiment file's stages (resumable), show its status, write its report"
DESCRIPTION = (
    "Run an experiment file (experiments/NAME.toml): its stages are smoothcert commands at a "
    "named scale (smoke: seconds; cpu: hours on one CPU; paper: the paper's settings, for "
    "GPUs). `run` skips finished stages and resumes interrupted ones (rerun the same command "
    "after a crash), then writes results/NAME/SCALE/report.md; `status` shows what is done, "
    "running and left, the time spent and an estimate of the time left; `report` writes the "
    "report from whatever has finished so far. `run --jobs N` runs up to N stages side by "
    "side, each in a process of its own with its output in runs/NAME/SCALE/logs/STAGE.log: "
    "a stage waits for the stages whose outputs it reads (a command whose outputs are not "
    "known waits for all before it); a stage without its own --threads gets an even share of "
    "the cores (OMP_NUM_THREADS, unless set). "
    "Under torchrun (`torchrun --nproc-per-node W -m "
    "smoothcert -- experiment run FILE`) training is data-parallel and certification sharded "
    "over the W workers."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("action", choices=("run", "status", "report"), help="what to do")
    parser.add_argument("file", metavar="FILE", help="experiment file, e.g. experiments/x.toml")
    parser.add_argument(
        "--scale", default="cpu", help="the file's scale to use: smoke, cpu or paper"
    )
    parser.add_argument(
        "--stage",
        action="append",
        default=None,
        metavar="NAME",
        help="run only this stage (repeatable); the report is not written",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=1,
        metavar="N",
        help="run: up to N independent stages side by side, each in a process of its own "
        "(logs in runs/NAME/SCALE/logs/); 1 runs them one at a time in this process",
    )
    parser.add_argument(
        "--root",
        default=".",
        metavar="DIR",
        help="folder that receives runs/NAME/SCALE and results/NAME/SCALE",
    )


def run(args: argparse.Namespace) -> int:
    from smoothcert.cli import main
    from smoothcert.experiments import (
        experiment_status,
        load_experiment,
        run_experiment,
        write_report,
    )
    from smoothcert.experiments.processes import share_of_cores, spawn_stage
    from smoothcert.experiments.status import format_seconds

    experiment = load_experiment(args.file, args.scale, root=args.root)
    if args.action == "status":
        rows = experiment_status(experiment)
        width = max(len(s.stage.name) for s in rows)
        print(f"{experiment.name} at scale {experiment.scale}:")
        for s in rows:
            left = "" if s.status == "done" else f"  left ~{format_seconds(s.left_seconds)}"
            print(
                f"  {s.stage.name:<{width}}  {s.status:<11}  {s.progress:<18}"
                f"  spent {format_seconds(s.seconds)}{left}"
            )
        spent = sum(s.seconds for s in rows)
        unknown = [s for s in rows if s.status != "done" and s.left_seconds is None]
        left_total = sum(s.left_seconds or 0.0 for s in rows if s.status != "done")
        print(
            f"  total spent {format_seconds(spent)}; left ~{format_seconds(left_total)}"
            + (f" + {len(unknown)} stage(s) not yet estimable" if unknown else "")
        )
        return 0
    if args.action == "report":
        print(f"report: {write_report(experiment)}")
        return 0
    from smoothcert.experiments.workers import join_workers

    workers = join_workers()  # several under torchrun: see smoothcert.experiments.workers
    try:
        finished = run_experiment(
            experiment,
            main,
            only=args.stage,
            log=lambda line: print(line, flush=True),
            workers=workers,
            jobs=args.jobs,
            spawn=functools.partial(spawn_stage, threads=share_of_cores(args.jobs)),
        )
        if finished and args.stage is None and workers.main:
            print(f"report: {write_report(experiment)}")
    finally:
        workers.close()
    return 0 if finished else 1
