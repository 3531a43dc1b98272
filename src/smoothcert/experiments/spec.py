"""Experiment files: a TOML description of an experiment as stages, at named scales.

An experiment file has a name, named scales (tables of variables) and an ordered list of
stages. A stage is one `smoothcert` command whose arguments may name variables as ``{var}``;
``foreach`` repeats a stage for every value of a list variable. An argument that is exactly
``{var}`` where ``var`` is a list is spliced in as several arguments (so a scale can add flags
another scale leaves out), and every scale gets ``{runs}`` = ``runs/NAME/SCALE`` and
``{results}`` = ``results/NAME/SCALE``::

    name = "cohen-mnist"
    title = "Cohen et al.: Gaussian training and CERTIFY on MNIST"

    [scales.smoke]
    sigmas = [0.25]
    epochs = 1

    [[stages]]
    name = "train-sigma{sigma}"
    foreach = "sigma in sigmas"
    command = ["train", "--sigma", "{sigma}", "--epochs", "{epochs}", "--out", "{runs}/train"]

``foreach`` reads ``VAR in LIST``, ``VAR in A + B`` (the lists one after the other) or
``VAR in [A, B]`` (the variables themselves, in that order). A ``[[stages]]`` entry with a
``group`` of stages repeats the whole group per value of its ``foreach``, so
``foreach = "batch in [sigmas, more_sigmas]"`` with stages over ``sigma in batch`` runs every
stage for ``sigmas``, then every stage for ``more_sigmas``; a grouped stage with ``once = true``
runs in the first pass only. ``[defaults]`` maps a command to arguments appended to every stage
running it (after its ``command``, before the ``--out`` a stage gives as ``out``), substituted
with that stage's variables; ``defaults = false`` leaves a stage without them.

The ``[report]`` table describes what the report shows (see :mod:`.report`); it is read by the
report, not here, apart from the same variable substitution. Hand-written findings are not part
of an experiment file (they go to the results pages): a ``findings`` variable is refused.
"""

from __future__ import annotations

import contextlib
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_FOREACH = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s+in\s+(\S.*?)\s*$")
_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


@dataclass(frozen=True)
class Stage:
    """One command of an experiment at one scale, with every variable substituted.

    Attributes
    ----------
    name : str
        Unique within the experiment, e.g. ``"train-sigma0.25"``.
    template : str
        The stage's name before substitution (the stages of one ``foreach`` share it).
    argv : tuple of str
        The smoothcert arguments, e.g. ``("train", "--dataset", "mnist", ...)``.
    """

    name: str  # unique within the experiment, e.g. "train-sigma0.25"
    template: str  # the stage's name before substitution (stages from one foreach share it)
    argv: tuple[str, ...]  # the smoothcert arguments, e.g. ("train", "--dataset", "mnist", ...)

    @property
    def command(self) -> str:
        """The shell command that runs this stage by hand."""
        return " ".join(["smoothcert", *(_shell_quote(a) for a in self.argv)])

    def option(self, flag: str) -> str | None:
        """The value following ``flag`` in the arguments.

        Parameters
        ----------
        flag : str
            A flag as written in the arguments, e.g. ``"--out"``.

        Returns
        -------
        str or None
            The argument after the first ``flag``; None when ``flag`` is absent or last.
        """
        args = list(self.argv)
        if flag in args and args.index(flag) + 1 < len(args):
            return args[args.index(flag) + 1]
        return None


@dataclass(frozen=True)
class Experiment:
    """An experiment file resolved at one scale, as :func:`load_experiment` returns it.

    Attributes
    ----------
    path : Path
        The experiment file.
    name : str
        The file's ``name``.
    title : str
        The file's ``title`` (default: the name).
    scale : str
        The scale it was resolved at.
    scales : tuple of str
        Every scale the file defines.
    variables : dict
        The variables at this scale, with ``name``, ``scale``, ``runs`` and ``results``.
    stages : tuple of Stage
        The stages in file order, ``foreach`` expanded.
    report : dict
        The ``[report]`` table, as written (substitute with :meth:`substitute`).
    paper : dict
        The ``[paper]`` table: the published numbers, as written.
    every_stage : frozenset of str
        The stages' names at every scale of the file (this one's and the others'), and their
        names as written (before substitution).
    """

    path: Path
    name: str
    title: str
    scale: str
    scales: tuple[str, ...]
    variables: dict[str, Any]
    stages: tuple[Stage, ...]
    report: dict[str, Any] = field(default_factory=dict)
    paper: dict[str, Any] = field(default_factory=dict)  # published numbers, as written
    every_stage: frozenset[str] = frozenset()  # stage names at any scale, and as written

    @property
    def runs_dir(self) -> Path:
        """``runs/NAME/SCALE``: where the stages write their runs and the state file."""
        return Path(self.variables["runs"])

    @property
    def results_dir(self) -> Path:
        """``results/NAME/SCALE``: where the report and its figures go."""
        return Path(self.variables["results"])

    def substitute(self, value: Any) -> Any:
        """``value`` with ``{var}`` replaced by this scale's variables.

        Parameters
        ----------
        value : str, list or dict
            A string, or a list or table of them (nested), e.g. a report section.

        Returns
        -------
        str, list or dict
            A copy of ``value`` with every ``{var}`` substituted.

        Raises
        ------
        ValueError
            If ``value`` names an unknown variable.
        """
        return _substitute(value, self.variables, where="report")


def _shell_quote(arg: str) -> str:
    if arg and all(c.isalnum() or c in "-_./:=,+@%" for c in arg):
        return arg
    return "'" + arg.replace("'", "'\"'\"'") + "'"


def _format(text: str, variables: dict[str, Any], where: str) -> str:
    def value(match: re.Match) -> str:
        key = match.group(1)
        if key not in variables:
            raise ValueError(f"{where}: unknown variable {{{key}}}")
        v = variables[key]
        if isinstance(v, (list, dict)):
            raise ValueError(f"{where}: list variable {{{key}}} must be a whole argument")
        return _scalar_text(v)

    return _VAR.sub(value, text)


def _scalar_text(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _substitute(value: Any, variables: dict[str, Any], where: str) -> Any:
    if isinstance(value, str):
        whole = _VAR.fullmatch(value)
        if whole and isinstance(variables.get(whole.group(1)), list):
            return list(variables[whole.group(1)])
        return _format(value, variables, where)
    if isinstance(value, list):
        return [_substitute(v, variables, where) for v in value]
    if isinstance(value, dict):
        return {
            _format(k, variables, where): _substitute(v, variables, where) for k, v in value.items()
        }
    return value


def _expand_argv(args: list[Any], variables: dict[str, Any], where: str) -> tuple[str, ...]:
    out: list[str] = []
    for arg in args:
        if not isinstance(arg, (str, int, float)) or isinstance(arg, bool):
            raise ValueError(f"{where}: command arguments must be strings or numbers, got {arg!r}")
        whole = _VAR.fullmatch(arg) if isinstance(arg, str) else None
        if whole and isinstance(variables.get(whole.group(1)), list):
            # A list's items may name scalar variables themselves (one level).
            out += [_format(_scalar_text(v), variables, where) for v in variables[whole.group(1)]]
        else:
            out.append(_format(str(arg), variables, where))
    return tuple(out)


def load_experiment(path: str | Path, scale: str, *, root: str | Path | None = None) -> Experiment:
    """Read the experiment file ``path`` and resolve it at ``scale``.

    Parameters
    ----------
    path : str or Path
        The TOML file.
    scale : str
        One of the file's ``[scales]``, e.g. ``"smoke"``, ``"cpu"`` or ``"paper"``.
    root : str or Path, optional
        Where ``runs/`` and ``results/`` go (default: the current directory).

    Returns
    -------
    Experiment
        The experiment at ``scale``, every variable substituted.

    Raises
    ------
    FileNotFoundError
        ``path`` does not exist.
    ValueError
        The file is not valid TOML, misses a required key, names an unknown scale or variable,
        or gives two stages one name.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"experiment file {path} does not exist")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ValueError(f"experiment file {path} is not valid TOML: {exc}") from None
    name = doc.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise ValueError(f"{path}: 'name' must be a plain name (letters, digits, . _ -)")
    scales = doc.get("scales")
    if not isinstance(scales, dict) or not scales:
        raise ValueError(f"{path}: no [scales.NAME] tables")
    if scale not in scales:
        raise ValueError(f"scale must be one of {', '.join(scales)} (from {path}), got {scale!r}")
    base = Path(root) if root is not None else Path()
    for where, table in [("[variables]", doc.get("variables", {}))] + [
        (f"[scales.{k}]", v) for k, v in scales.items()
    ]:
        if isinstance(table, dict) and "findings" in table:
            # Conclusions drawn from a run are dated prose about one commit's results; the
            # spec describes what to run, so they live on the results pages instead.
            raise ValueError(
                f"{path}: {where} has 'findings': hand-written findings belong in "
                "docs/results/, not in the experiment file"
            )
    stage_docs = doc.get("stages")
    if not isinstance(stage_docs, list) or not stage_docs:
        raise ValueError(f"{path}: no [[stages]]")
    defaults = doc.get("defaults", {})
    if not isinstance(defaults, dict) or not all(isinstance(v, list) for v in defaults.values()):
        raise ValueError(f"{path}: [defaults] must map a command to a list of arguments")
    variables, stages = _stages_at(doc, path, name, scale, base, stage_docs, defaults)
    every = {s.name for s in stages} | {s.template for s in stages}
    for other in set(scales) - {scale}:  # the report tells a typo from another scale's stage
        with contextlib.suppress(ValueError):  # that scale's own error shows when it is loaded
            found = _stages_at(doc, path, name, other, base, stage_docs, defaults)[1]
            every |= {s.name for s in found} | {s.template for s in found}
    return Experiment(
        path=path,
        name=name,
        title=str(doc.get("title", name)),
        scale=scale,
        scales=tuple(scales),
        variables=variables,
        stages=tuple(stages),
        report=doc.get("report", {}),
        paper=doc.get("paper", {}),
        every_stage=frozenset(every),
    )


def _stages_at(
    doc: dict, path: Path, name: str, scale: str, base: Path, stage_docs: list, defaults: dict
) -> tuple[dict[str, Any], list[Stage]]:
    """The variables and the expanded stages of ``doc`` at ``scale``."""
    variables: dict[str, Any] = {
        "name": name,
        "scale": scale,
        "runs": (base / "runs" / name / scale).as_posix(),
        "results": (base / "results" / name / scale).as_posix(),
    }
    variables.update(doc.get("variables", {}))
    variables.update(doc["scales"][scale])
    stages: list[Stage] = []
    for i, sd in enumerate(stage_docs):
        where = f"{path}: stage {i + 1}"
        if isinstance(sd, dict) and "once" in sd:
            raise ValueError(f"{where}: 'once' is for the stages of a group")
        if isinstance(sd, dict) and "group" in sd:
            stages += _expand_group(sd, variables, defaults, where)
        else:
            stages += _expand_stage(sd, variables, defaults, where)
    names = [s.name for s in stages]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"{path}: stage names must be unique, repeated: {', '.join(dupes)}")
    return variables, stages


def _foreach(sd: dict, variables: dict[str, Any], where: str) -> tuple[str, list[Any]]:
    """``foreach``'s variable and its values: ``VAR in LIST``, ``VAR in A + B + ...`` (the
    lists one after the other) or ``VAR in [A, B, ...]`` (the variables' values as they are)."""
    m = _FOREACH.match(str(sd["foreach"]))
    if not m:
        raise ValueError(f"{where}: foreach must read 'VAR in LIST', got {sd['foreach']!r}")
    var, expr = m.groups()
    explicit = expr.startswith("[") and expr.endswith("]")
    names = [n.strip() for n in (expr[1:-1].split(",") if explicit else expr.split("+"))]
    if explicit and names and not names[-1]:
        names.pop()  # a trailing comma, as TOML allows one in its own lists
    if not names or not all(_IDENT.match(n) for n in names):
        raise ValueError(
            f"{where}: foreach must read 'VAR in LIST', 'VAR in A + B' or 'VAR in [A, B]', "
            f"got {sd['foreach']!r}"
        )
    unknown = [n for n in names if n not in variables]
    if unknown:
        raise ValueError(f"{where}: foreach names unknown variables: {', '.join(unknown)}")
    if explicit:
        return var, [variables[n] for n in names]
    values: list[Any] = []
    for n in names:
        if not isinstance(variables[n], list):
            raise ValueError(f"{where}: foreach needs a list variable, {n!r} is not one")
        values += variables[n]
    return var, values


def _in_scale(sd: dict, variables: dict[str, Any]) -> bool:
    return sd.get("only") is None or variables["scale"] in sd["only"]


def _expand_group(sd: dict, variables: dict[str, Any], defaults: dict, where: str) -> list[Stage]:
    """A group's stages, all of them for its first ``foreach`` value, then for the next."""
    group = sd["group"]
    if not isinstance(group, list) or not group or "command" in sd or "name" in sd:
        raise ValueError(f"{where}: a group is a list of stages, with no name or command")
    bindings: list[dict[str, Any]] = [{}]
    if "foreach" in sd:
        var, values = _foreach(sd, variables, where)
        bindings = [{var: v} for v in values]
    if not _in_scale(sd, variables):
        return []
    stages = []
    for k, binding in enumerate(bindings):
        for j, inner in enumerate(group):
            inner_where = f"{where}, grouped stage {j + 1}"
            if isinstance(inner, dict) and "group" in inner:
                raise ValueError(f"{inner_where}: groups do not nest")
            if isinstance(inner, dict) and inner.get("once") and k > 0:
                continue
            stages += _expand_stage(inner, variables | binding, defaults, inner_where)
    return stages


def _expand_stage(sd: Any, variables: dict[str, Any], defaults: dict, where: str) -> list[Stage]:
    if not isinstance(sd, dict) or not isinstance(sd.get("name"), str):
        raise ValueError(f"{where}: a stage needs a name")
    where = f"{where} ({sd['name']})"
    command = sd.get("command")
    if not isinstance(command, list) or not command:
        raise ValueError(f"{where}: 'command' must be a non-empty list of arguments")
    args = list(command)
    if sd.get("defaults", True) is not False:
        args += defaults.get(str(command[0]), [])
    if "out" in sd:
        args += ["--out", sd["out"]]
    bindings: list[dict[str, Any]] = [{}]
    if "foreach" in sd:
        var, values = _foreach(sd, variables, where)
        bindings = [{var: v} for v in values]
    if not _in_scale(sd, variables):
        return []
    stages = []
    for binding in bindings:
        env = variables | binding
        stages.append(
            Stage(
                name=_format(sd["name"], env, where),
                template=sd["name"],
                argv=_expand_argv(args, env, where),
            )
        )
    return stages
