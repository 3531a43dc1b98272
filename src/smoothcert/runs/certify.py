"""Resumable certify and predict runs over a dataset, stored in a run file (see store.py); the
export to the tab-separated format of Cohen et al.'s reference code is tsv.py, the helpers
every run kind shares are common.py.

A run goes in five steps, one function each:

1. validate: the run's settings (:class:`CertifyOptions` / :class:`PredictOptions`) and which
   examples and noise (:class:`Selection`) are checked when built, before any file exists;
2. open: :func:`_open_run` creates the run file, or resumes it when its config matches;
3. select: :meth:`Selection.indices` and the stored rows give the examples still to do;
4. evaluate: each example is certified (or predicted) with its own generator;
5. write: its row is committed at once, so an interrupted run resumes with no gap.

Every example gets its own random generator seeded from (seed, idx), so results do not
depend on the order of examples, on interruptions, or on which machine resumed the run.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch import nn

from smoothcert._util.checks import (
    ParameterError,
    positive_int,
    probability,
)
from smoothcert._util.seeding import example_generator
from smoothcert.certify import stats
from smoothcert.certify.adaptive import AdaptiveOptions
from smoothcert.certify.smoothing import SmoothedClassifier
from smoothcert.runs.common import (
    PREDICT_NOISE_STREAM,
    PREDICT_STREAM,
    check_same_examples,
    run_identity,
)
from smoothcert.runs.selection import Selection
from smoothcert.runs.store import RunStore
from smoothcert.runs.versions import (
    CERTIFY_CONFIG_VERSION,
    PREDICT_CONFIG_VERSION,
    VERSION_KEY,
    upgrade_certify_config,
    upgrade_predict_config,
)

__all__ = [
    "RunStore",
    "CERTIFY_SCHEMA",
    "PREDICT_SCHEMA",
    "Selection",
    "CertifyOptions",
    "PredictOptions",
    "noise_stream",
    "certify_dataset",
    "predict_dataset",
]

CERTIFY_SCHEMA = {
    "label": "INTEGER",
    "prediction": "INTEGER",
    "radius": "REAL",
    "correct": "INTEGER",
    "n_a": "INTEGER",
    "n": "INTEGER",
    "p_a_lower": "REAL",
    "counts_selection": "TEXT",
    "counts_estimation": "TEXT",
    "seconds": "REAL",
}

PREDICT_SCHEMA = {
    "label": "INTEGER",
    "prediction": "INTEGER",
    "correct": "INTEGER",
    "n_a": "INTEGER",
    "n_b": "INTEGER",
    "counts": "TEXT",
    "seconds": "REAL",
}


# Called with each row as soon as it is stored (the CLI drives its progress bar with it).
Progress = Callable[[dict[str, Any]], None]
# Called once the run is open, with (examples already done, examples to do now).
OnStart = Callable[[int, int], None]
# One example's evaluation: (input, its generator) -> its row without label and seconds.
Evaluate = Callable[[Any, torch.Generator], dict[str, Any]]


# ------------------------------------------------------------------ 1. validate


@dataclass(frozen=True)
class _Procedure:
    """What a run does to each example: its kind and row schema, the config entries of its
    settings (and the upgrade of a stored config, :mod:`smoothcert.runs.versions`), its
    evaluation, and its noise stream (with the config entry that records it)."""

    kind: str
    schema: dict[str, str]
    config: dict[str, Any]
    upgrade: Callable[[Mapping[str, Any]], dict[str, Any]]
    evaluate: Evaluate
    stream: tuple[int, ...] = ()
    stream_config: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class CertifyOptions:
    """The settings of a certify run (Cohen et al. §3.2, CERTIFY), checked when built.

    Parameters
    ----------
    n0, n, alpha : int, int, float
        Selection draws, estimation draws and failure probability per example.
    adaptive_radii : list of float, optional
        Target radii: certify by the sequential procedure of
        ``smoothcert.certify.adaptive.certify_adaptive``; ``n`` is then its largest sample size
        and a row's ``n`` the number of estimation draws actually used.
    adaptive_options : AdaptiveOptions, optional
        The sequential procedure's plan options (None: :class:`AdaptiveOptions`' defaults),
        stored in the run's config with every field; used only with ``adaptive_radii``.

    Raises
    ------
    ParameterError
        If a field is out of range; the message names it.
    """

    n0: int = 100
    n: int = 100_000
    alpha: float = 0.001
    adaptive_radii: list[float] | None = None
    adaptive_options: AdaptiveOptions | None = None

    def __post_init__(self) -> None:
        positive_int("n0", self.n0)
        positive_int("n", self.n)
        probability("alpha", self.alpha)
        if self.adaptive_options is not None and not isinstance(
            self.adaptive_options, AdaptiveOptions
        ):
            raise ParameterError(
                "adaptive_options",
                f"must be an AdaptiveOptions, got {type(self.adaptive_options).__name__}",
            )

    def _for_classifier(self, classifier: SmoothedClassifier) -> CertifyOptions:
        """These options with the adaptive plan checked and its defaults filled in (the plan
        depends on σ): bad radii or n_first > n are refused before the run file exists."""
        if self.adaptive_radii is None:
            return self
        if classifier.sound:
            raise ParameterError(
                "adaptive_radii", "cannot be used with a sound classifier (sound=True) yet"
            )
        from smoothcert.certify.adaptive import plan_looks

        options = self.adaptive_options or AdaptiveOptions()
        plan_looks(self.adaptive_radii, classifier.sigma, self.alpha, self.n, **asdict(options))
        return replace(self, adaptive_options=options)

    def _config(self) -> dict[str, Any]:
        """The config entries of these settings, every one (None: no adaptive plan)."""
        targets = None
        if self.adaptive_radii is not None:
            # The plan sorts and de-duplicates the targets: store them so, and the same set of
            # radii in another order resumes the run.
            targets = sorted({float(r) for r in self.adaptive_radii})
        return {
            "command": "certify",
            "n0": self.n0,
            "n": self.n,
            "alpha": self.alpha,
            "adaptive_radii": targets,
            # Every field, defaults included: a resumed run must use the same plan even if a
            # later version changes the defaults.
            "adaptive_options": (
                asdict(self.adaptive_options or AdaptiveOptions()) if targets is not None else None
            ),
            VERSION_KEY: CERTIFY_CONFIG_VERSION,
        }

    def _procedure(self, classifier: SmoothedClassifier) -> _Procedure:
        certify_one = _certify_fn(
            classifier, self.n0, self.n, self.alpha, self.adaptive_radii, self.adaptive_options
        )

        def evaluate(x: Any, gen: torch.Generator) -> dict[str, Any]:
            cert = certify_one(x, gen)
            return {
                "prediction": cert.prediction,
                "radius": cert.radius,
                "n_a": cert.n_a,
                "n": cert.n,
                "p_a_lower": cert.p_a_lower,
                "counts_selection": cert.counts_selection,
                "counts_estimation": cert.counts_estimation,
            }

        return _Procedure(
            "certify", CERTIFY_SCHEMA, self._config(), upgrade_certify_config, evaluate
        )


@dataclass(frozen=True)
class PredictOptions:
    """The settings of a predict run (Cohen et al. §3.2, PREDICT), checked when built.

    Its noise comes from the predict stream (:data:`PREDICT_STREAM`), independent of any
    certify run's and of a predict run's with another ``n``.

    Parameters
    ----------
    n : int, default 1000
        Noisy draws per example.
    alpha : float, default 0.001
        The level of PREDICT's binomial test.

    Raises
    ------
    ParameterError
        If a field is out of range; the message names it.
    """

    n: int = 1000
    alpha: float = 0.001

    def __post_init__(self) -> None:
        positive_int("n", self.n)
        probability("alpha", self.alpha)

    def _procedure(self, classifier: SmoothedClassifier) -> _Procedure:
        n, alpha = self.n, self.alpha

        def evaluate(x: Any, gen: torch.Generator) -> dict[str, Any]:
            # PREDICT (§3.2) from its counts; the counts are kept for re-analysis.
            counts = classifier.counts(x, n, generator=gen)
            top2 = np.sort(counts)[::-1][:2]
            return {
                "prediction": stats.predict_from_counts(counts, alpha),
                "n_a": int(top2[0]),
                "n_b": int(top2[1]),
                "counts": counts,
            }

        return _Procedure(
            "predict",
            PREDICT_SCHEMA,
            {"command": "predict", "n": n, "alpha": alpha, VERSION_KEY: PREDICT_CONFIG_VERSION},
            upgrade_predict_config,
            evaluate,
            stream=(PREDICT_STREAM, n),
            stream_config={"noise_stream": PREDICT_NOISE_STREAM},
        )


def _classifier(
    model: nn.Module | SmoothedClassifier,
    sigma: float | None,
    num_classes: int | None,
    batch_size: int,
) -> SmoothedClassifier:
    if isinstance(model, SmoothedClassifier):
        return model
    if sigma is None or num_classes is None:
        raise ValueError("sigma and num_classes are required when model is a base classifier")
    return SmoothedClassifier(model, num_classes, sigma, batch_size=batch_size)


def _check_dataset(dataset: Any, classifier: SmoothedClassifier) -> None:
    info = getattr(dataset, "info", None)
    shape = getattr(info, "input_shape", None)
    expected = classifier.input_shape
    if shape is not None and expected is not None and tuple(shape) != tuple(expected):
        raise ValueError(
            f"the dataset's inputs have shape {tuple(shape)} but the model expects "
            f"{tuple(classifier.input_shape)}"
        )
    num_classes = getattr(info, "num_classes", None)
    if num_classes is not None and num_classes != classifier.num_classes:
        raise ValueError(
            f"the dataset has {num_classes} classes but the model has {classifier.num_classes}"
        )


def _check_labeled(dataset: Any) -> None:
    if getattr(dataset, "labeled", True) is False:
        raise ValueError(
            "certifying needs labeled data (certified accuracy is against the labels); "
            "predicting works without labels"
        )


# ------------------------------------------------------------------ 2. open


def _run_config(
    classifier: SmoothedClassifier,
    procedure: _Procedure,
    selection: Selection,
    config: Mapping[str, Any] | None,
) -> dict[str, Any]:
    """Everything that determines the run's results (a resume must match it exactly). Later
    entries win: the caller's ``config`` cannot override the noise stream or the shard."""
    return {
        **run_identity(classifier),
        **selection.config(),
        **_classifier_options(classifier),
        **procedure.config,
        **(config or {}),
        VERSION_KEY: procedure.config[VERSION_KEY],  # the caller's entries cannot change it
        **procedure.stream_config,
        **selection.shard_config(),
    }


def _open_run(
    out: str | os.PathLike,
    classifier: SmoothedClassifier,
    procedure: _Procedure,
    selection: Selection,
    config: Mapping[str, Any] | None,
    info: Mapping[str, Any] | None,
) -> tuple[RunStore, int]:
    """(the run file, created or resumed, and the seed its examples use)."""
    seed = selection.seed
    if seed is None:
        # No seed given: draw one now and keep it in the run, so resuming stays consistent.
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    # The σ that scaled the noise (the radii's σ), recorded as provenance: the config keeps
    # the requested σ so that runs made before it was recorded still resume.
    info = dict(info or {}) | {"seed_used": seed, "sigma_noise": classifier.noise_sigma}
    run_config = _run_config(classifier, procedure, selection, config)
    store = RunStore.open(
        out, procedure.kind, run_config, procedure.schema, info=info, upgrade=procedure.upgrade
    )
    return store, int(store.info.get("seed_used", seed))


# ------------------------------------------------------------------ 3-5. select, evaluate, write


def _evaluate_example(
    dataset: Any, idx: int, evaluate: Evaluate, generator: torch.Generator
) -> dict[str, Any]:
    """Example ``idx``'s row: its evaluation, label, correctness and wall time."""
    x, label = dataset[idx]
    start = time.perf_counter()
    row = evaluate(x, generator)
    seconds = time.perf_counter() - start
    if label is None:  # unlabeled data (PREDICT only): no correctness to record
        row = {"label": None, **row, "correct": None}
    else:
        row = {"label": int(label), **row, "correct": int(row["prediction"] == int(label))}
    row["seconds"] = seconds
    return row


def _run(
    classifier: SmoothedClassifier,
    dataset: Any,
    out: str | os.PathLike,
    procedure: _Procedure,
    selection: Selection,
    config: Mapping[str, Any] | None,
    info: Mapping[str, Any] | None,
    progress: Progress | None,
    on_start: OnStart | None,
) -> list[dict[str, Any]]:
    """Steps 2-5 for validated settings: open (or resume) the run, then evaluate each selected
    example not yet stored with its own generator, commit its row, report progress."""
    indices = selection.indices(len(dataset))
    check_same_examples(out, dataset)
    store, seed = _open_run(out, classifier, procedure, selection, config, info)
    with store:
        done = store.done_indices()
        todo = [i for i in indices if i not in done]
        if on_start is not None:
            on_start(len(indices) - len(todo), len(todo))
        for idx in todo:
            generator = example_generator(seed, idx, classifier.device, procedure.stream)
            row = _evaluate_example(dataset, idx, procedure.evaluate, generator)
            store.add(idx, row)
            if progress is not None:
                progress(row)
        return store.rows()


# ------------------------------------------------------------------ the runs


def certify_dataset(
    model: nn.Module | SmoothedClassifier,
    dataset: Any,
    out: str | os.PathLike,
    options: CertifyOptions | None = None,
    selection: Selection | None = None,
    *,
    sigma: float | None = None,
    num_classes: int | None = None,
    batch_size: int = 1000,
    config: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    progress: Progress | None = None,
    on_start: OnStart | None = None,
) -> list[dict[str, Any]]:
    """CERTIFY every selected example of a dataset into a resumable run file.

    Certifies each example ``selection`` picks of ``dataset`` with the settings ``options``
    (Cohen et al. §3.2, CERTIFY) and stores one committed row per example in the SQLite run
    file ``out``; if ``out`` exists with the same configuration, the run resumes. Each
    example's noise comes from a generator seeded by (seed, idx), so a resumed or sharded
    run equals an uninterrupted one.

    Parameters
    ----------
    model : torch.nn.Module or SmoothedClassifier
        A base classifier (then ``sigma`` and ``num_classes`` are required) or a ready
        ``SmoothedClassifier``.
    dataset : indexable
        ``dataset[i]`` gives (input, label); inputs in [0, 1].
    out : str or os.PathLike
        The run file (SQLite); missing folders are created.
    options : CertifyOptions, optional
        n0, n, alpha and the adaptive plan (None: :class:`CertifyOptions`' defaults).
    selection : Selection, optional
        Which examples (every skip-th, max_examples in all, this shard's), and the seed
        (None: :class:`Selection`'s defaults, every example with seed 0).
    sigma, num_classes : optional
        Noise level and number of classes when ``model`` is a base classifier.
    batch_size : int, default 1000
        Noisy copies per forward pass when ``model`` is a base classifier.
    config, info : dict, optional
        ``config`` adds entries that identify the run (e.g. the checkpoint's sha256; a resume
        must match them exactly); ``info`` adds provenance.
    progress, on_start : callable, optional
        Progress callback and a hook called once the run file is open.

    Returns
    -------
    list of dict
        All rows of the run, ordered by idx: label, prediction (-1 = abstain), radius,
        correct, n_a, n, p_a_lower, the two count vectors and seconds.

    Raises
    ------
    ValueError
        If the adaptive plan does not fit (a :class:`smoothcert._util.checks.ParameterError`
        naming its parameter), the dataset does not fit the model, or ``out`` holds a
        different run.

    Examples
    --------
    >>> from smoothcert.certify.adaptive import AdaptiveOptions
    >>> options = CertifyOptions(n0=100, n=10_000, adaptive_radii=[0.25, 0.5],
    ...                          adaptive_options=AdaptiveOptions(n_first=200))
    >>> selection = Selection(skip=20, max_examples=500, seed=0)
    >>> options.n, selection.skip
    (10000, 20)
    """
    classifier = _classifier(model, sigma, num_classes, batch_size)
    _check_dataset(dataset, classifier)
    _check_labeled(dataset)
    options = (options or CertifyOptions())._for_classifier(classifier)
    procedure = options._procedure(classifier)
    selection = selection or Selection()
    return _run(classifier, dataset, out, procedure, selection, config, info, progress, on_start)


def predict_dataset(
    model: nn.Module | SmoothedClassifier,
    dataset: Any,
    out: str | os.PathLike,
    options: PredictOptions | None = None,
    selection: Selection | None = None,
    *,
    sigma: float | None = None,
    num_classes: int | None = None,
    batch_size: int = 1000,
    config: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    progress: Progress | None = None,
    on_start: OnStart | None = None,
) -> list[dict[str, Any]]:
    """PREDICT every selected example of a dataset into a resumable run file.

    Stored and resumable like :func:`certify_dataset`, with PREDICT (Cohen et al. §3.2)
    instead of CERTIFY. Unlabeled data is allowed: its rows have no label and no correctness.

    Parameters
    ----------
    model : torch.nn.Module or SmoothedClassifier
        A base classifier (then ``sigma`` and ``num_classes`` are required) or a ready
        ``SmoothedClassifier``.
    dataset : indexable
        ``dataset[i]`` gives (input, label) (label may be missing); inputs in [0, 1].
    out : str or os.PathLike
        The run file (SQLite); missing folders are created.
    options : PredictOptions, optional
        n (noisy draws per example) and alpha (the level of PREDICT's binomial test);
        None: :class:`PredictOptions`' defaults.
    selection : Selection, optional
        Which examples, and the seed (None: every example with seed 0).
    sigma, num_classes : optional
        Noise level and number of classes when ``model`` is a base classifier.
    batch_size : int, default 1000
        Noisy copies per forward pass when ``model`` is a base classifier.
    config, info : dict, optional
        ``config`` adds entries that identify the run (a resume must match them exactly);
        ``info`` adds provenance.
    progress, on_start : callable, optional
        Progress callback and a hook called once the run file is open.

    Returns
    -------
    list of dict
        All rows of the run, ordered by idx: label, prediction (-1 = abstain), correct, n_a,
        n_b (the two largest counts), counts and seconds.

    Raises
    ------
    ValueError
        If the dataset does not fit the model, or ``out`` holds a different run.
    """
    classifier = _classifier(model, sigma, num_classes, batch_size)
    _check_dataset(dataset, classifier)
    procedure = (options or PredictOptions())._procedure(classifier)
    selection = selection or Selection()
    return _run(classifier, dataset, out, procedure, selection, config, info, progress, on_start)


def noise_stream(kind: str, config: dict[str, Any]) -> tuple[str, int | None]:
    """The noise stream of a stored certify or predict run: ("base", None) for certify runs,
    ("predict", n) for predict runs. Two runs with the same seed draw overlapping noise
    exactly when their streams are equal."""
    if kind == "predict":
        return "predict", int(config["n"])
    return "base", None


def _certify_fn(
    classifier: SmoothedClassifier,
    n0: int,
    n: int,
    alpha: float,
    radii: list[float] | None,
    options: AdaptiveOptions | None,
) -> Callable[[Any, torch.Generator], Any]:
    """CERTIFY with fixed n, or the adaptive procedure when target radii are given."""
    if radii is None:
        return lambda x, gen: classifier.certify(x, n0, n, alpha, generator=gen)
    from smoothcert.certify.adaptive import certify_adaptive

    opts = asdict(options or AdaptiveOptions())
    return lambda x, gen: certify_adaptive(
        classifier, x, radii, alpha, n0=n0, n_max=n, generator=gen, **opts
    )


def _classifier_options(classifier: SmoothedClassifier) -> dict[str, Any]:
    """Settings of the classifier that change its results (stored in the run's config; runs
    made before sound mode existed have no ``sound``: see :mod:`smoothcert.runs.versions`)."""
    return {
        "precision": getattr(classifier, "precision", None),
        "channels_last": getattr(classifier, "channels_last", None),
        "compile": bool(getattr(classifier, "compile", False)),
        "sound": bool(getattr(classifier, "sound", False)),
    }
