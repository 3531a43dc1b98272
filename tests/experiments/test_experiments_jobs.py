"""`experiment run --jobs N`: stages that do not read each other's outputs run side by side.

The dependencies come from the stages' paths (checked on the shipped files); the books list
every running stage with its process id; the scheduler is checked with fake stage processes
whose overlap and order are proven by a barrier and events, not by timing; then for real: an
experiment run with --jobs 2 ends as one run with --jobs 1 does, and a killed runner's stages
keep the experiment locked while a terminated runner's stages are stopped and recorded as
interrupted."""

from __future__ import annotations

import fcntl
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

import smoothcert
from helpers import smoothcert as cli
from smoothcert._util.checks import ParameterError
from smoothcert.experiments import experiment_status, load_experiment, run_experiment
from smoothcert.experiments import state as state_module
from smoothcert.experiments import workers as workers_module
from smoothcert.experiments.schedule import stage_dependencies, stage_outputs
from smoothcert.experiments.spec import Stage
from smoothcert.experiments.state import LOCK_FILE, STATE_FILE, is_running
from smoothcert.experiments.workers import Workers

REPO = Path(__file__).resolve().parents[2]
SRC = Path(smoothcert.__file__).resolve().parents[1]
WAIT_S = 60.0  # the longest any test waits for an event that must happen

pytestmark = pytest.mark.usefixtures("one_torch_thread")


# ---- dependencies ---------------------------------------------------------------------------


def test_the_nal_experiment_trains_side_by_side_and_evaluates_each_model_after_it(tmp_path):
    experiment = load_experiment(REPO / "experiments/nal-mnist.toml", "cpu", root=tmp_path)
    deps = stage_dependencies(experiment.stages)
    assert list(deps) == [s.name for s in experiment.stages]
    trains = {s.name for s in experiment.stages if s.argv[0] == "train"}
    assert len(trains) == 24  # 12 compared models, 6 more training seeds, 6 of the ablation
    assert all(deps[name] == set() for name in trains)
    assert deps["attack-nal-g0.25"] == {"train-nal-g0.25"}
    assert deps["rho-wrm-g1.5"] == {"train-wrm-g1.5"}  # rho's output is its --json
    assert deps["dcert-wrm-g0.25"] == {"train-wrm-g0.25"}
    assert deps["attack-ablation-K8-s4"] == {"train-ablation-K8-s4"}
    for stage in experiment.stages:  # every evaluation waits for the model it reads, only
        if stage.name not in trains:
            model = f"train-{stage.argv[1].split('/train-')[1].split('/')[0]}"
            assert deps[stage.name] == {model}, stage.name


def test_cohen_cifar10_certifies_each_sigma_after_its_training(tmp_path):
    experiment = load_experiment(REPO / "experiments/cohen-cifar10.toml", "cpu", root=tmp_path)
    deps = stage_dependencies(experiment.stages)
    assert deps["certify-adaptive-sigma0.5"] == {"train-sigma0.5"}
    assert deps["certify-fixed-sigma1.0"] == {"train-sigma1.0"}
    assert deps["train-sigma0.12"] == set() and deps["train-sigma0.25"] == set()


def _stage(name: str, command: str) -> Stage:
    return Stage(name, name, tuple(command.split()))


def test_a_barrier_orders_everything_and_paths_compare_as_paths():
    stages = [
        _stage("a", "train --out runs/a"),
        _stage("b", "train --out=runs/b"),
        _stage("cert-a", "certify ./runs/a/last.safetensors --out runs/ca.db --tsv runs/ca.tsv"),
        _stage("reads-tsv", "analyze runs/ca.tsv"),  # analyze: outputs unknown
        _stage("c", "train --out runs/c"),
        _stage("again-a", "train --epochs 2 --out runs/a"),  # the same --out as a
        _stage("rho-c", "rho runs/c/last.safetensors --json runs/rho-c.json"),
        _stage("no-json", "rho runs/c/last.safetensors"),  # rho without --json: a barrier
        _stage("inside-c", "attack runs/x.safetensors --out runs/c/attack.db"),
        _stage("over-x", "train --out runs/x.safetensors"),  # writes what one read
    ]
    deps = stage_dependencies(stages)
    assert deps["a"] == set() and deps["b"] == set()
    assert deps["cert-a"] == {"a"}
    assert deps["reads-tsv"] == {"a", "b", "cert-a"}  # a barrier waits for all before it
    assert deps["c"] == {"reads-tsv"}  # and everything after it waits for it
    assert deps["again-a"] == {"reads-tsv", "a", "cert-a"}  # cert-a read a's old model
    assert deps["rho-c"] == {"reads-tsv", "c"}
    assert deps["no-json"] == {s.name for s in stages[:7]}
    assert deps["inside-c"] == {"no-json", "c"}  # writes inside c's folder
    assert deps["over-x"] == {"no-json", "inside-c"}
    assert stage_outputs(stages[2]) == [
        os.path.abspath("runs/ca.db"),
        os.path.abspath("runs/ca.tsv"),
    ]
    assert stage_outputs(stages[3]) is None and stage_outputs(stages[7]) is None


# ---- the books ------------------------------------------------------------------------------

FAKE = """
name = "fake"
[scales.smoke]
[[stages]]
name = "train-a"
command = ["train", "--out", "{runs}/a"]
[[stages]]
name = "train-b"
command = ["train", "--out", "{runs}/b"]
[[stages]]
name = "certify-a"
command = ["certify", "{runs}/a/last.safetensors", "--out", "{runs}/ca.db"]
[[stages]]
name = "train-c"
command = ["train", "--out", "{runs}/c"]
"""


def _fake(tmp_path: Path):
    path = tmp_path / "fake.toml"
    path.write_text(FAKE)
    return load_experiment(path, "smoke", root=tmp_path)


def _state(experiment) -> dict:
    return json.loads((experiment.runs_dir / STATE_FILE).read_text())


def test_one_at_a_time_the_books_list_the_running_stage_with_the_runners_pid(tmp_path):
    experiment = _fake(tmp_path)
    seen = []

    def execute(_argv: list[str]) -> int:
        statuses = [s.status for s in experiment_status(experiment)]
        seen.append((_state(experiment)["running"], statuses))
        return 0

    assert run_experiment(experiment, execute, only=["train-a", "train-b"])
    [(running_a, status_a), (running_b, status_b)] = seen
    assert list(running_a) == ["train-a"] and running_a["train-a"]["pid"] == os.getpid()
    assert list(running_b) == ["train-b"]
    assert status_a == ["running", "left", "left", "left"]
    assert status_b == ["done", "running", "left", "left"]
    assert _state(experiment)["running"] == {}


def test_status_shows_the_running_stage_of_a_runner_of_earlier_versions(tmp_path):
    experiment = _fake(tmp_path)
    experiment.runs_dir.mkdir(parents=True)
    state = {"stages": {}, "current": {"stage": "train-b", "pid": 1, "started": "x"}}
    (experiment.runs_dir / STATE_FILE).write_text(json.dumps(state))
    assert [s.status for s in experiment_status(experiment)] == ["left"] * 4  # no runner
    fd = os.open(experiment.runs_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # that runner
        statuses = [s.status for s in experiment_status(experiment)]
        assert statuses == ["left", "running", "left", "left"]
    finally:
        os.close(fd)


# ---- the scheduler, with fake stage processes --------------------------------------------

_pids = itertools.count(900_000)


class FakeProcess:
    """A stage process whose work is ``body(process, log_path)`` run by ``wait()`` (which
    the runner calls on a thread of its own once it has recorded the stage as started)."""

    def __init__(self, body: Callable[[FakeProcess, Path], int], log_path: Path) -> None:
        self.body, self.log_path = body, log_path
        self.pid = next(_pids)
        self.signalled = threading.Event()

    def wait(self) -> int:
        return self.body(self, self.log_path)

    def send_signal(self, sig: int) -> None:
        assert sig == signal.SIGTERM
        self.signalled.set()


def fake_spawn(bodies: dict[str, Callable[[FakeProcess, Path], int]], started: list[str]):
    def spawn(argv: list[str], log_path: Path, keep_fd: int) -> FakeProcess:
        lock = log_path.parent.parent / LOCK_FILE  # the stage inherits the experiment's lock
        assert os.fstat(keep_fd).st_ino == os.stat(lock).st_ino
        started.append(log_path.stem)
        return FakeProcess(bodies[log_path.stem], log_path)

    return spawn


def test_independent_stages_overlap_and_a_dependent_one_waits(tmp_path):
    experiment = _fake(tmp_path)
    trains = ("train-a", "train-b", "train-c")
    together = threading.Barrier(3, timeout=WAIT_S)  # passes only when the three run at once
    finished = {name: threading.Event() for name in trains}
    looked = threading.Event()
    seen: dict[str, object] = {}

    def train(name: str) -> Callable[[FakeProcess, Path], int]:
        def body(process: FakeProcess, _log: Path) -> int:
            together.wait()
            if name == "train-a":  # the books while the three run
                seen["running"] = _state(experiment)["running"]
                seen["status"] = {s.stage.name: s.status for s in experiment_status(experiment)}
                seen["pid"] = process.pid
                looked.set()
            else:  # still running while train-a reads the books
                assert looked.wait(WAIT_S)
            finished[name].set()
            return 0

        return body

    def certify(_process: FakeProcess, _log: Path) -> int:
        seen["a finished first"] = finished["train-a"].is_set()
        return 0

    started: list[str] = []
    bodies = {name: train(name) for name in trains} | {"certify-a": certify}
    lines: list[str] = []
    # Four slots: certify-a could start at once; only its dependency holds it back.
    spawn = fake_spawn(bodies, started)
    assert run_experiment(experiment, None, jobs=4, spawn=spawn, log=lines.append) is True
    assert started == ["train-a", "train-b", "train-c", "certify-a"]
    assert seen["a finished first"] is True
    assert set(seen["running"]) == set(trains)
    assert seen["running"]["train-a"]["pid"] == seen["pid"]
    assert seen["status"] == {"train-a": "running", "train-b": "running",
                              "certify-a": "left", "train-c": "running"}  # fmt: skip
    state = _state(experiment)
    assert state["running"] == {}
    assert {n: (e["status"], e["attempts"]) for n, e in state["stages"].items()} == {
        n: ("done", 1) for n in bodies
    }
    log = experiment.runs_dir / "logs" / "train-a.log"
    assert any(
        line.startswith("[1/4] train-a: started (pid ") and str(log) in line for line in lines
    )
    assert "train-a: done in 0s" in lines

    # Everything done: a second run skips every stage and starts nothing.
    started.clear()
    lines.clear()
    assert run_experiment(experiment, None, jobs=4, spawn=spawn, log=lines.append) is True
    names = [s.name for s in experiment.stages]
    assert started == [] and lines == [f"[{i}/4] {n}: done" for i, n in enumerate(names, 1)]


def test_one_heartbeat_updates_every_running_stage(tmp_path, monkeypatch):
    monkeypatch.setattr(state_module, "_HEARTBEAT_S", 0.05)
    experiment = _fake(tmp_path)
    both = threading.Barrier(2, timeout=WAIT_S)

    def body(_process: FakeProcess, _log: Path) -> int:
        both.wait()
        deadline = time.monotonic() + WAIT_S
        while time.monotonic() < deadline:  # until a beat has timed both running stages
            stages = _state(experiment)["stages"]
            if all(stages[n]["seconds"] > 0 for n in ("train-a", "train-b")):
                both.wait()
                return 0
            time.sleep(0.02)
        return 1

    spawn = fake_spawn({"train-a": body, "train-b": body}, [])
    assert run_experiment(experiment, None, only=["train-a", "train-b"], jobs=2, spawn=spawn)


def test_a_failure_starts_nothing_new_and_lets_the_running_stage_finish(tmp_path):
    experiment = _fake(tmp_path)
    both = threading.Barrier(2, timeout=WAIT_S)
    failure_reported = threading.Event()

    def failing(_process: FakeProcess, log: Path) -> int:
        both.wait()
        with open(log, "a") as f:
            f.writelines(f"line {i}\n" for i in range(1, 16))
        return 3

    def slower(_process: FakeProcess, _log: Path) -> int:
        both.wait()
        # Finish only after the runner took in the failure, with a slot free for train-c.
        return 0 if failure_reported.wait(WAIT_S) else 1

    lines: list[str] = []

    def log(line: str) -> None:
        lines.append(line)
        if line.startswith("train-a: failed"):
            failure_reported.set()

    started: list[str] = []
    spawn = fake_spawn({"train-a": failing, "train-b": slower}, started)
    assert run_experiment(experiment, None, jobs=2, spawn=spawn, log=log) is False
    assert started == ["train-a", "train-b"]  # neither certify-a nor the free train-c started
    state = _state(experiment)
    assert state["stages"]["train-a"]["status"] == "failed"
    assert state["stages"]["train-a"]["exit_code"] == 3
    assert state["stages"]["train-b"]["status"] == "done"
    assert set(state["stages"]) == {"train-a", "train-b"} and state["running"] == {}
    failed = lines.index(next(line for line in lines if line.startswith("train-a: failed")))
    assert "(exit code 3); rerun to continue; " in lines[failed]
    assert lines[failed + 1 : failed + 11] == [f"    line {i}" for i in range(6, 16)]
    assert lines[failed + 11] == "no new stage starts; waiting for train-b"
    assert [s.status for s in experiment_status(experiment)] == ["failed", "done", "left", "left"]


def test_sigint_stops_the_running_stages_and_restores_the_handlers(tmp_path):
    experiment = _fake(tmp_path)
    both = threading.Barrier(2, timeout=WAIT_S)

    def stoppable(process: FakeProcess, _log: Path) -> int:
        both.wait()
        if process.pid % 2 == 0:  # one of the two: the user presses Ctrl-C
            os.kill(os.getpid(), signal.SIGINT)
        return -signal.SIGTERM if process.signalled.wait(WAIT_S) else 0

    handlers = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)
    spawn = fake_spawn({"train-a": stoppable, "train-b": stoppable}, [])
    with pytest.raises(KeyboardInterrupt):
        run_experiment(experiment, None, jobs=2, spawn=spawn)
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == handlers
    state = _state(experiment)
    for name in ("train-a", "train-b"):
        assert state["stages"][name]["status"] == "interrupted"
        assert state["stages"][name]["exit_code"] == -signal.SIGTERM
    assert state["running"] == {} and not is_running(experiment)


def test_a_selected_stage_needs_its_dependencies_done_or_selected(tmp_path):
    experiment = _fake(tmp_path)
    started: list[str] = []
    spawn = fake_spawn(dict.fromkeys(("train-a", "certify-a"), lambda _p, _l: 0), started)
    with pytest.raises(ValueError, match="stage certify-a needs train-a, which is neither done "
                       "nor selected"):  # fmt: skip
        run_experiment(experiment, None, only=["certify-a"], jobs=2, spawn=spawn)
    assert started == [] and not (experiment.runs_dir / STATE_FILE).exists()
    assert run_experiment(experiment, None, only=["train-a"], jobs=2, spawn=spawn)
    assert run_experiment(experiment, None, only=["certify-a"], jobs=2, spawn=spawn)
    assert started == ["train-a", "certify-a"]


def test_jobs_must_be_a_positive_integer_and_one_machine(tmp_path, monkeypatch):
    experiment = _fake(tmp_path)
    with pytest.raises(ParameterError, match="jobs must be a positive integer, got 0"):
        run_experiment(experiment, None, jobs=0)
    with pytest.raises(ParameterError, match="under torchrun the workers already share"):
        run_experiment(experiment, None, jobs=2, workers=Workers(rank=0, world=2))
    f = tmp_path / "fake.toml"
    r = cli("experiment", "run", f, "--scale", "smoke", "--root", tmp_path, "--jobs", "0",
            check=False)  # fmt: skip
    assert r.returncode == 2
    assert r.stderr == "smoothcert experiment: error: --jobs must be a positive integer, got 0\n"
    monkeypatch.setattr(workers_module, "join_workers", lambda: Workers(rank=0, world=2))
    r = cli("experiment", "run", f, "--scale", "smoke", "--root", tmp_path, "--jobs", "2",
            check=False)  # fmt: skip
    assert r.returncode == 2
    assert r.stderr == (
        "smoothcert experiment: error: --jobs runs stages side by side on one machine; under "
        "torchrun the workers already share each stage\n"
    )
    assert not experiment.runs_dir.exists()


# ---- for real: stage processes -----------------------------------------------------------


@pytest.fixture
def stage_env(monkeypatch, tmp_path):
    """Stage processes import this smoothcert (and the test's modules from ``tmp_path``)."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(SRC), str(tmp_path)]))
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    return os.environ.copy()


PAIR = """
name = "pair"
[scales.smoke]
sigmas = [0.25, 0.5]
[[stages]]
name = "train-sigma{sigma}"
foreach = "sigma in sigmas"
command = ["train", "--dataset", "mnist", "--arch", "cnn3", "--method", "gaussian",
  "--sigma", "{sigma}", "--epochs", "1", "--subset", "64", "--test-subset", "32",
  "--batch-size", "32", "--threads", "1", "--no-progress", "--out", "{runs}/train-sigma{sigma}"]
[[stages]]
name = "certify-sigma{sigma}"
foreach = "sigma in sigmas"
command = ["certify", "{runs}/train-sigma{sigma}/last.safetensors", "--n0", "10", "--n", "50",
  "--max", "2", "--batch", "50", "--no-progress", "--out", "{runs}/certify-sigma{sigma}.db"]
[[report.sections]]
kind = "certified-accuracy"
radii = [0.0, 0.25]
runs."σ = 0.25" = "{runs}/certify-sigma0.25.db"
runs."σ = 0.5" = "{runs}/certify-sigma0.5.db"
"""


def _books(root: Path) -> dict:
    """Each stage's status, attempts, exit code and arguments (``root`` written ROOT)."""
    state = json.loads((root / "runs/pair/smoke" / STATE_FILE).read_text())
    books = {}
    for name, entry in state["stages"].items():
        argv = [a.replace(str(root), "ROOT") for a in entry["argv"]]
        books[name] = (entry["status"], entry["attempts"], entry["exit_code"], argv)
    return books


@pytest.mark.slow
def test_two_jobs_end_as_one_job_does_and_a_second_run_skips_all(tmp_path, stage_env, mnist_train):
    path = tmp_path / "pair.toml"
    path.write_text(PAIR)
    one, two = tmp_path / "one", tmp_path / "two"
    cli("experiment", "run", path, "--scale", "smoke", "--root", one)
    r = cli("experiment", "run", path, "--scale", "smoke", "--root", two, "--jobs", "2")
    assert _books(two) == _books(one)
    assert {v[:3] for v in _books(two).values()} == {("done", 1, 0)}
    assert (two / "results/pair/smoke/report.md").is_file()
    logs = two / "runs/pair/smoke/logs"
    assert sorted(p.name for p in logs.iterdir()) == sorted(f"{n}.log" for n in _books(two))
    assert (
        "smoothcert experiment run: smoothcert train" in (logs / "train-sigma0.5.log").read_text()
    )
    assert r.stdout.count(": started (pid ") == 4 and r.stdout.count(": done in ") == 4
    again = cli("experiment", "run", path, "--scale", "smoke", "--root", two, "--jobs", "2")
    assert again.stdout.count(": done\n") == 4 and "started" not in again.stdout
    assert _books(two) == _books(one)


SLOW = '''
import os
import sys
import time
from pathlib import Path


def make():
    """The model factory of a stage that only waits (until killed)."""
    Path(os.environ["SLOW_MARKERS"], str(os.getpid())).write_text(" ".join(sys.argv))
    time.sleep(120)
    raise SystemExit(1)
'''

SLOW_EXPERIMENT = """
name = "slow"
[scales.smoke]
xs = ["a", "b"]
[[stages]]
name = "wait-{x}"
foreach = "x in xs"
command = ["certify", "--model", "python:slowstage:make", "--dataset", "mnist",
  "--sigma", "0.25", "--no-progress", "--out", "{runs}/{x}.db"]
"""


def _start_runner(tmp_path: Path, env: dict) -> tuple[subprocess.Popen, list[int]]:
    """A runner of two stages that wait, once both stages run: (runner, their pids)."""
    (tmp_path / "slowstage.py").write_text(SLOW)
    (tmp_path / "slow.toml").write_text(SLOW_EXPERIMENT)
    markers = tmp_path / "markers"
    markers.mkdir()
    cmd = [sys.executable, "-m", "smoothcert", "experiment", "run", str(tmp_path / "slow.toml"),
           "--scale", "smoke", "--root", str(tmp_path), "--jobs", "2"]  # fmt: skip
    out = open(tmp_path / "runner.out", "w")  # noqa: SIM115 - the runner writes it until it ends
    runner = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT,
                              env=env | {"SLOW_MARKERS": str(markers)})  # fmt: skip
    out.close()
    deadline = time.monotonic() + WAIT_S
    while len(list(markers.iterdir())) < 2:  # both stage processes reached the model factory
        assert runner.poll() is None, (tmp_path / "runner.out").read_text()
        assert time.monotonic() < deadline, (tmp_path / "runner.out").read_text()
        time.sleep(0.05)
    return runner, sorted(int(p.name) for p in markers.iterdir())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.mark.slow
def test_stages_of_a_killed_runner_keep_the_experiment_locked(tmp_path, stage_env):
    runner, pids = _start_runner(tmp_path, stage_env)
    experiment = load_experiment(tmp_path / "slow.toml", "smoke", root=tmp_path)
    state = json.loads((experiment.runs_dir / STATE_FILE).read_text())
    assert sorted(e["pid"] for e in state["running"].values()) == pids
    runner.kill()
    assert runner.wait(WAIT_S) == -signal.SIGKILL
    try:
        assert all(_alive(pid) for pid in pids)
        r = cli("experiment", "run", tmp_path / "slow.toml", "--scale", "smoke", "--root",
                tmp_path, "--jobs", "2", check=False)  # fmt: skip
        assert r.returncode == 2 and "is already running" in r.stderr, r.stderr
        assert is_running(experiment)
        assert [s.status for s in experiment_status(experiment)] == ["running", "running"]
    finally:
        for pid in pids:
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + WAIT_S
    while is_running(experiment):  # the lock goes with the last stage process
        assert time.monotonic() < deadline
        time.sleep(0.05)
    fd = os.open(experiment.runs_dir / LOCK_FILE, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free for the next runner
    finally:
        os.close(fd)


@pytest.mark.slow
def test_sigterm_to_the_runner_stops_its_stages_and_records_them(tmp_path, stage_env):
    runner, pids = _start_runner(tmp_path, stage_env)
    runner.send_signal(signal.SIGTERM)
    try:
        assert runner.wait(WAIT_S) == 130
    finally:
        if runner.poll() is None:
            runner.kill()
    out = (tmp_path / "runner.out").read_text()
    assert "interrupted: stopping wait-a, wait-b" in out, out
    assert out.endswith("smoothcert experiment: interrupted\n"), out
    assert not any(_alive(pid) for pid in pids)  # the runner waited for them: none left
    experiment = load_experiment(tmp_path / "slow.toml", "smoke", root=tmp_path)
    state = json.loads((experiment.runs_dir / STATE_FILE).read_text())
    assert state["running"] == {}
    for entry in state["stages"].values():
        assert (entry["status"], entry["exit_code"]) == ("interrupted", -signal.SIGTERM)
    assert [s.status for s in experiment_status(experiment)] == ["interrupted", "interrupted"]
    assert not is_running(experiment)
