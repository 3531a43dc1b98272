"""Which stages of an experiment wait for which: dependencies read off the stages' paths.

An experiment file declares no dependencies: a stage's outputs are the paths its command
writes (its ``--out``, and the few other output flags of the same commands), its inputs are
its other arguments, and a stage depends on an earlier stage whose outputs it reads or
overwrites. A stage whose outputs are not known (a command that declares no output flags,
see :func:`output_flags`, or one without its main output flag) is a barrier.
``experiment run --jobs N`` runs side by side the stages that do not depend on each other.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterable, Sequence

from smoothcert.experiments.spec import Stage


@functools.cache
def output_flags() -> dict[str, tuple[str, ...]]:
    """command -> the flags naming every file or folder it writes, its main output first, as
    each command declares them next to its parser (``OUTPUT_FLAGS`` in its ``smoothcert.cli``
    module). Only commands that write nothing else declare them (``fetch`` fills a shared
    cache, ``merge`` and ``export`` take their output as a positional argument, ``bench``
    writes a record beside the results): a stage of any other command is a barrier."""
    from smoothcert.cli import output_flags as declared

    return declared()


def _path(text: str) -> str:
    """``text`` as an absolute, normalised path (every stage runs in the runner's folder)."""
    return os.path.abspath(text)


def _values(argv: Sequence[str], flag: str) -> list[str]:
    """Every value of ``flag`` in ``argv``, written ``flag VALUE`` or ``flag=VALUE``."""
    found = []
    for i, arg in enumerate(argv):
        if arg == flag and i + 1 < len(argv):
            found.append(argv[i + 1])
        elif arg.startswith(flag + "="):
            found.append(arg[len(flag) + 1 :])
    return found


def stage_outputs(stage: Stage) -> list[str] | None:
    """The paths ``stage`` writes, absolute; None when they are not known (a barrier).

    Parameters
    ----------
    stage : Stage
        One stage of an experiment.

    Returns
    -------
    list of str or None
        The values of the command's output flags (:func:`output_flags`) as absolute paths;
        None for a command without output flags or a stage without its main output
        flag (``--out``; ``--json`` for ``rho``).
    """
    flags = output_flags().get(stage.argv[0]) if stage.argv else None
    if flags is None:
        return None
    main = _values(stage.argv[1:], flags[0])
    if not main:
        return None
    return [_path(v) for flag in flags for v in _values(stage.argv[1:], flag)]


def _inputs(stage: Stage) -> list[str]:
    """Every argument of ``stage`` (and every ``--flag=VALUE``'s value) as an absolute path:
    whatever names an output of another stage is read (or overwritten) by this one."""
    found = []
    for arg in stage.argv[1:]:
        if not arg:
            continue
        found.append(_path(arg))
        if arg.startswith("-") and "=" in arg:
            found.append(_path(arg.split("=", 1)[1]))
    return found


def path_within(path: str, outputs: Iterable[str]) -> bool:
    """Whether ``path`` is one of ``outputs`` or inside one of them."""
    return any(path == out or path.startswith(out.rstrip("/") + "/") for out in outputs)


def stage_dependencies(stages: Sequence[Stage]) -> dict[str, set[str]]:
    """The earlier stages each stage must wait for, inferred from the paths the stages name.

    Stage B depends on an earlier stage A when

    - an argument of B is one of A's outputs or a path inside one (B reads what A writes,
      e.g. ``certify RUNS/train-sigma0.25/last.safetensors`` after ``train --out
      RUNS/train-sigma0.25``), which covers B writing the same ``--out`` as A;
    - an output of B contains one of A's outputs (B overwrites what A wrote);
    - an output of B is an argument of A or contains one (B overwrites what A reads, which in
      file order A reads first);
    - A or B is a barrier: a stage whose outputs are unknown (:func:`stage_outputs` is None)
      waits for every earlier stage, and every later stage waits for it.

    Outputs are the values of the flags of :func:`output_flags` (``--out`` for train,
    certify, predict, attack and dcert, plus certify's ``--tsv`` and dcert's ``--plot``;
    ``--json`` for rho), spelled in full; paths compare after making them absolute, so
    ``runs/x`` and ``./runs/x`` are one path. The dependencies are direct ones: a stage after
    a barrier lists the barrier (and what it reads), not everything before the barrier.

    Parameters
    ----------
    stages : sequence of Stage
        An experiment's stages in file order (``Experiment.stages``).

    Returns
    -------
    dict of str to set of str
        For every stage name, the names of the earlier stages it depends on (empty: it can
        start at once).

    Examples
    --------
    >>> from smoothcert.experiments.spec import Stage
    >>> train = Stage("train", "train", ("train", "--out", "runs/t"))
    >>> cert = Stage("certify", "certify", ("certify", "runs/t/last.safetensors",
    ...                                     "--out", "runs/c.db"))
    >>> other = Stage("train2", "train2", ("train", "--out", "runs/t2"))
    >>> report = Stage("fetch", "fetch", ("fetch", "mnist"))
    >>> deps = stage_dependencies([train, cert, other, report])
    >>> deps["certify"], deps["train2"], sorted(deps["fetch"])
    ({'train'}, set(), ['certify', 'train', 'train2'])
    """
    outputs = [stage_outputs(s) for s in stages]
    inputs = [_inputs(s) for s in stages]
    deps: dict[str, set[str]] = {}
    last_barrier: str | None = None
    for j, b in enumerate(stages):
        if outputs[j] is None:  # a barrier: after everything before it
            deps[b.name] = {a.name for a in stages[:j]}
            last_barrier = b.name
            continue
        found = {last_barrier} if last_barrier is not None else set()
        for i in range(j):
            a_out = outputs[i]
            if a_out is None:
                continue  # the last barrier stands for every barrier before it
            if (
                any(path_within(arg, a_out) for arg in inputs[j])
                or any(path_within(out, outputs[j]) for out in a_out)
                or any(path_within(arg, outputs[j]) for arg in inputs[i])
            ):
                found.add(stages[i].name)
        deps[b.name] = found
    return deps
