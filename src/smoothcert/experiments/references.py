"""Report sections that name stages: ``{stage = "NAME"}`` in place of a run's path.

Wherever a report section gives a path (a ``runs`` label's run, ``run``, ``a``, ``b``,
``reference``, a ``groups`` list's runs), it may name the stage that writes it instead,
``runs."σ = 0.25" = {stage = "certify-sigma0.25"}``, and the report reads the stage's main
output (its ``--out``; ``--json`` for ``rho``) as the command at this scale writes it.
"""

from __future__ import annotations

import re
from typing import Any

from smoothcert.experiments.schedule import output_flags
from smoothcert.experiments.spec import Experiment, Stage


def resolve_stages(experiment: Experiment, value: Any) -> Any:
    """``value`` with every ``{stage = "NAME"}`` replaced by that stage's main output path.

    Parameters
    ----------
    experiment : Experiment
        The experiment at one scale.
    value : str, list or dict
        A report section (nested), as written: a stage's name may use the scale's variables.

    Returns
    -------
    str, list or dict
        A copy of ``value``. A stage of another scale of the file only becomes a note that it
        is not at this scale, which the sections show as not run.

    Raises
    ------
    ValueError
        If a named stage is at no scale of the file, or writes no known output.
    """
    if isinstance(value, list):
        return [resolve_stages(experiment, v) for v in value]
    if not isinstance(value, dict):
        return value
    if set(value) == {"stage"} and isinstance(value["stage"], str):
        return _output(experiment, value["stage"])
    return {k: resolve_stages(experiment, v) for k, v in value.items()}


def _output(experiment: Experiment, written: str) -> str:
    name = experiment.substitute(written)
    stage = next((s for s in experiment.stages if s.name == name), None)
    if stage is None:
        # A name with variables (``rho-g{gamma}``) may name a stage only some scales have.
        if not any(_matches(t, n) for t in experiment.every_stage for n in (name, written)):
            raise ValueError(
                f"{experiment.path}: the report names stage {name!r}, which no scale has"
            )
        return f"(stage {name}: not at scale {experiment.scale})"
    out = _main_output(stage)
    if out is None:
        raise ValueError(f"{experiment.path}: the report names stage {name!r}, which has no output")
    return out


def _main_output(stage: Stage) -> str | None:
    flags = output_flags().get(stage.argv[0], ("--out",))
    return stage.option(flags[0])


def _matches(template: str, name: str) -> bool:
    """Whether ``name`` is a stage ``template`` (as written) with some values put in."""
    parts = re.split(r"\{[A-Za-z_][A-Za-z0-9_]*\}", template)
    return re.fullmatch(".+".join(re.escape(p) for p in parts), name) is not None
