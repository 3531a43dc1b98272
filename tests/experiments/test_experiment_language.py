"""The experiment language: foreach over A + B and [A, B], stage groups, per-command defaults,
report sections naming stages, and hand-written findings kept out of the spec."""

from __future__ import annotations

from pathlib import Path

import pytest

from smoothcert.experiments import load_experiment
from smoothcert.experiments.references import resolve_stages

REPO = Path(__file__).resolve().parents[2]


def _file(tmp_path: Path, body: str, scales: str = "[scales.smoke]\na = [1, 2]\nb = [3]\n") -> Path:
    f = tmp_path / "x.toml"
    f.write_text(f'name = "x"\n{scales}\n{body}')
    return f


def _stages(f: Path, scale: str = "smoke") -> list[tuple[str, tuple[str, ...]]]:
    return [(s.name, s.argv) for s in load_experiment(f, scale).stages]


def test_foreach_runs_over_a_concatenation_in_order(tmp_path):
    f = _file(
        tmp_path, '[[stages]]\nname = "s{v}"\nforeach = "v in b + a"\ncommand = ["rho", "{v}"]\n'
    )
    assert _stages(f) == [("s3", ("rho", "3")), ("s1", ("rho", "1")), ("s2", ("rho", "2"))]


def test_foreach_over_an_explicit_list_of_variables(tmp_path):
    scales = "[scales.smoke]\nlo = 0.12\nhi = 1.0\n"
    f = _file(
        tmp_path, '[[stages]]\nname = "s{v}"\nforeach = "v in [hi, lo]"\ncommand = ["x"]\n', scales
    )
    assert [name for name, _ in _stages(f)] == ["s1.0", "s0.12"]


@pytest.mark.parametrize(
    ("foreach", "message"),
    [
        ("v in a + nope", "unknown variables: nope"),
        ("v in a + c", "'c' is not one"),
        ("v in a +", "'VAR in A + B'"),
        ("v in [a, 2]", "'VAR in [A, B]'"),
    ],
)
def test_foreach_refuses_what_it_cannot_read(tmp_path, foreach, message):
    scales = "[scales.smoke]\na = [1]\nc = 5\n"
    f = _file(
        tmp_path, f'[[stages]]\nname = "s{{v}}"\nforeach = "{foreach}"\ncommand = ["x"]\n', scales
    )
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("+", r"\+")):
        load_experiment(f, "smoke")


GROUP = """
[[stages]]
foreach = "batch in [a, b]"
[[stages.group]]
name = "train{v}"
foreach = "v in batch"
command = ["train", "--out", "{runs}/t{v}"]
[[stages.group]]
name = "certify{v}"
foreach = "v in batch"
command = ["certify", "{runs}/t{v}"]
[[stages.group]]
name = "predict"
once = true
command = ["predict"]
[[stages]]
name = "last"
command = ["merge"]
"""


def test_a_group_runs_all_its_stages_per_pass_and_once_stages_in_the_first_only(tmp_path):
    names = [name for name, _ in _stages(_file(tmp_path, GROUP))]
    assert names == ["train1", "train2", "certify1", "certify2", "predict", "train3", "certify3",
                     "last"]  # fmt: skip


def test_once_belongs_to_groups_and_groups_do_not_nest(tmp_path):
    f = _file(tmp_path, '[[stages]]\nname = "s"\nonce = true\ncommand = ["x"]\n')
    with pytest.raises(ValueError, match="'once' is for the stages of a group"):
        load_experiment(f, "smoke")
    nested = '[[stages]]\n[[stages.group]]\n[[stages.group.group]]\nname = "s"\ncommand = ["x"]\n'
    with pytest.raises(ValueError, match="groups do not nest"):
        load_experiment(_file(tmp_path, nested), "smoke")


def test_defaults_go_after_the_command_and_before_out_with_the_stages_variables(tmp_path):
    body = """
[defaults]
certify = ["--sigma", "{v}", "{flags}", "--no-progress"]
[[stages]]
name = "c{v}"
foreach = "v in b"
command = ["certify", "m{v}.pt", "--n", "10"]
out = "{runs}/c{v}.db"
[[stages]]
name = "plain"
defaults = false
command = ["certify", "m.pt", "--out", "p.db"]
[[stages]]
name = "train"
command = ["train", "--out", "t"]
"""
    f = _file(tmp_path, body, '[scales.smoke]\nb = [0.5]\nflags = ["--max", "4"]\n')
    assert _stages(f) == [
        ("c0.5", ("certify", "m0.5.pt", "--n", "10", "--sigma", "0.5", "--max", "4",
                  "--no-progress", "--out", "runs/x/smoke/c0.5.db")),
        ("plain", ("certify", "m.pt", "--out", "p.db")),
        ("train", ("train", "--out", "t")),
    ]  # fmt: skip


def test_report_sections_name_stages_and_read_their_outputs(tmp_path):
    scales = "[scales.smoke]\ng = [1]\n[scales.cpu]\ng = [1, 2]\n"
    body = """
[[stages]]
name = "rho-g{v}"
foreach = "v in g"
command = ["rho", "m", "--json", "{runs}/rho-{v}.json"]
[[stages]]
name = "certify"
command = ["certify", "m", "--out", "{runs}/c.db", "--tsv", "{runs}/c.tsv"]
"""
    smoke = load_experiment(_file(tmp_path, body, scales), "smoke")
    section = {
        "runs": {"one": {"stage": "rho-g1"}, "two": {"stage": "rho-g2"}},
        "run": {"stage": "certify"},
        "groups": {"A": [{"stage": "rho-g{scale}"}]},
    }
    assert resolve_stages(smoke, section) == {
        "runs": {"one": "runs/x/smoke/rho-1.json", "two": "(stage rho-g2: not at scale smoke)"},
        "run": "runs/x/smoke/c.db",  # the main output, not --tsv
        "groups": {"A": ["(stage rho-gsmoke: not at scale smoke)"]},  # matches rho-g{v}
    }
    with pytest.raises(ValueError, match="'certfy', which no scale has"):
        resolve_stages(smoke, {"run": {"stage": "certfy"}})


def test_the_report_reads_a_stage_named_in_a_section(tmp_path):
    from smoothcert.experiments.report import write_report

    body = """
[[stages]]
name = "certify"
command = ["certify", "m", "--out", "{runs}/c.db"]
[[report.sections]]
kind = "certified-accuracy"
radii = [0.0]
runs.only = {stage = "certify"}
"""
    f = _file(tmp_path, body)
    report = write_report(load_experiment(f, "smoke", root=tmp_path)).read_text()
    assert f"- only: `{(tmp_path / 'runs/x/smoke/c.db').as_posix()}` (not run yet)" in report


def test_findings_are_refused_in_the_spec(tmp_path):
    body = '[[stages]]\nname = "s"\ncommand = ["x"]\n'
    f = _file(tmp_path, body, '[scales.smoke]\nfindings = "NAL wins"\n')
    with pytest.raises(ValueError, match=r"\[scales.smoke\] has 'findings'.*docs/results/"):
        load_experiment(f, "smoke")


def test_no_shipped_report_prints_hand_written_findings():
    """The findings of nal-mnist live on its results page, dated, not in the experiment file."""
    for path in sorted((REPO / "experiments").glob("*.toml")):
        assert "findings" not in path.read_text(), path.name
    page = (REPO / "docs/results/nal-mnist/findings.md").read_text()
    assert "Written against commit `" in page and "| the paper's claim |" in page


def test_the_cohen_files_order_sigma_by_group_not_by_copies():
    """σ = 0.25 (and 0.5) are trained and certified before the other σ, from one copy of each
    stage; cohen-mnist's PREDICT comes right after the first pass."""
    cifar = load_experiment(REPO / "experiments/cohen-cifar10.toml", "cpu")
    assert [s.name for s in cifar.stages][:7] == [
        "train-sigma0.25", "train-sigma0.5", "certify-adaptive-sigma0.25",
        "certify-adaptive-sigma0.5", "certify-fixed-sigma0.25", "certify-fixed-sigma0.5",
        "train-sigma0.12",
    ]  # fmt: skip
    mnist = load_experiment(REPO / "experiments/cohen-mnist.toml", "cpu")
    assert [s.name for s in mnist.stages] == [
        "train-sigma0.25", "certify-sigma0.25", "predict-n100", "predict-n1000", "predict-n10000",
        "train-sigma0.5", "train-sigma1.0", "certify-sigma0.5", "certify-sigma1.0",
    ]  # fmt: skip
    for name in ("cohen-cifar10", "cohen-mnist"):
        text = (REPO / "experiments" / f"{name}.toml").read_text()
        assert text.count('name = "train-sigma{sigma}"') == 1
