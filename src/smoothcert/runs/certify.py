"""Resumable certify and predict runs over a dataset, stored in a run file (see store.py),
and export to the tab-separated format of Cohen et al.'s reference code.

Every example gets its own random generator seeded from (seed, idx), so results do not
depend on the order of examples, on interruptions, or on which machine resumed the run.
"""

from __future__ import annotations

import hashlib
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from smoothcert import stats
from smoothcert.atomic import atomic_write_bytes
from smoothcert.checks import is_integer, positive_int, probability
from smoothcert.distributed import check_shard, shard_of
from smoothcert.smoothing import SmoothedClassifier
from smoothcert.store import SQLITE_HEADER, RunStore

__all__ = [
    "RunStore",
    "CERTIFY_SCHEMA",
    "PREDICT_SCHEMA",
    "select_indices",
    "example_generator",
    "noise_stream",
    "model_fingerprint",
    "file_sha256",
    "run_identity",
    "certify_dataset",
    "predict_dataset",
    "check_tsv_target",
    "export_tsv",
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


def select_indices(num_examples: int, skip: int = 1, max_examples: int | None = None) -> list[int]:
    """Every ``skip``-th example, ``max_examples`` of them in all (a count, not an index)."""
    if not isinstance(skip, int) or skip < 1:
        raise ValueError(f"skip must be a positive integer, got {skip!r}")
    if max_examples is not None and (not isinstance(max_examples, int) or max_examples < 1):
        raise ValueError(f"max must be a positive integer, got {max_examples!r}")
    indices = list(range(0, num_examples, skip))
    return indices if max_examples is None else indices[:max_examples]


# The noise stream of a predict run: its draws are seeded by (seed, idx, PREDICT_STREAM, n), so
# they are independent of a certify run's (seeded by (seed, idx) alone) and of a predict run
# with another n. Without it, PREDICT's n draws were a prefix of a same-seed reference run's
# and agreed with it more often than independent draws would (Table 4's "accurate" inflated).
PREDICT_STREAM = 1
PREDICT_NOISE_STREAM = "seed, idx, predict, n"  # recorded in the config of new predict runs


def example_generator(
    seed: int, idx: int, device: torch.device, stream: tuple[int, ...] = ()
) -> torch.Generator:
    """The generator of example ``idx``: independent streams for distinct (seed, idx, stream).
    Certify runs use no ``stream`` (their published noise stays as it was)."""
    state = np.random.SeedSequence([seed, idx, *stream]).generate_state(2, dtype=np.uint32)
    return torch.Generator(device=device).manual_seed(int(state[0]) << 32 | int(state[1]))


def model_fingerprint(model: nn.Module) -> str:
    """sha256 over the model's parameter and buffer names, shapes, dtypes and values."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(t.shape)}:{t.dtype}".encode())
        # reshape(-1): a 0-dim buffer (batch norm's num_batches_tracked) cannot be viewed as
        # bytes directly; for every other tensor the bytes are the same as before.
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def file_sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def run_identity(classifier: SmoothedClassifier) -> dict[str, Any]:
    """The config entries that identify the smoothed classifier of a run: its base model's
    fingerprint and σ (every certify and predict run stores them)."""
    return {"model_sha256": model_fingerprint(classifier.base), "sigma": classifier.sigma}


def _check_seed(seed: int | None) -> None:
    # numpy's SeedSequence only says "expected non-negative integer", naming no argument.
    if seed is None:
        return
    if not is_integer(seed) or seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")


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


def _run_examples(
    classifier: SmoothedClassifier,
    dataset: Any,
    out: str | os.PathLike,
    kind: str,
    schema: dict[str, str],
    config: dict[str, Any],
    info: dict[str, Any] | None,
    selection: tuple[int, int | None, int | None],
    shard: tuple[int, int],
    evaluate: Callable[[Any, torch.Generator], dict[str, Any]],
    progress: Progress | None,
    on_start: OnStart | None,
    stream: tuple[int, ...] = (),
) -> list[dict[str, Any]]:
    """The resumable loop shared by every per-example run: open (or resume) the run, then for
    each selected example not yet stored, evaluate it with its own generator, commit its row,
    report progress. ``evaluate(x, generator)`` returns the row without label and seconds."""
    skip, max_examples, seed = selection
    _check_seed(seed)  # before the run file exists: a refused run must leave nothing behind
    indices = select_indices(len(dataset), skip, max_examples)
    rank, world = check_shard(*shard)
    if world > 1:
        if seed is None:
            raise ValueError("a sharded run needs a seed (every shard must draw the same noise)")
        config = config | {"shard": [rank, world]}
        indices = shard_of(indices, rank, world)
    config = {
        **run_identity(classifier),
        "skip": skip,
        "max": max_examples,
        "seed": seed,
        **_classifier_options(classifier),
        **config,
    }
    if seed is None:
        # No seed given: draw one now and keep it in the run, so resuming stays consistent.
        seed = int(np.random.SeedSequence().generate_state(1)[0])
    # The σ that scaled the noise (the radii's σ), recorded as provenance: the config keeps
    # the requested σ so that runs made before it was recorded still resume.
    info = (info or {}) | {"seed_used": seed, "sigma_noise": classifier.noise_sigma}
    store = RunStore.open(out, kind, config, schema, info=info)
    seed = int(store.info.get("seed_used", seed))
    done = store.done_indices()
    todo = [i for i in indices if i not in done]
    if on_start is not None:
        on_start(len(indices) - len(todo), len(todo))
    with store:
        for idx in todo:
            x, label = dataset[idx]
            start = time.perf_counter()
            row = evaluate(x, example_generator(seed, idx, classifier.device, stream))
            seconds = time.perf_counter() - start
            if label is None:  # unlabeled data (PREDICT only): no correctness to record
                row = {"label": None, **row, "correct": None}
            else:
                row = {"label": int(label), **row, "correct": int(row["prediction"] == int(label))}
            row["seconds"] = seconds
            store.add(idx, row)
            if progress is not None:
                progress(row)
        return store.rows()


def certify_dataset(
    model: nn.Module | SmoothedClassifier,
    dataset: Any,
    out: str | os.PathLike,
    *,
    sigma: float | None = None,
    num_classes: int | None = None,
    n0: int = 100,
    n: int = 100_000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    skip: int = 1,
    max_examples: int | None = None,
    seed: int | None = 0,
    config: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    progress: Progress | None = None,
    on_start: OnStart | None = None,
    adaptive_radii: list[float] | None = None,
    adaptive_options: dict[str, Any] | None = None,
    shard: tuple[int, int] = (0, 1),
) -> list[dict[str, Any]]:
    """CERTIFY every selected example of a dataset into a resumable run file.

    Selects every ``skip``-th example of ``dataset`` (``max_examples`` in all), certifies each
    (Cohen et al. §3.2, CERTIFY) and stores one committed row per example in the SQLite run
    file ``out``; if ``out`` exists with the same configuration, the run resumes. Each
    example's noise comes from a generator seeded by (``seed``, idx), so a resumed or sharded
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
    sigma, num_classes : optional
        Noise level and number of classes when ``model`` is a base classifier.
    n0, n, alpha : int, int, float
        Selection draws, estimation draws and failure probability per example.
    batch_size : int, default 1000
        Noisy copies per forward pass when ``model`` is a base classifier.
    skip, max_examples : int, int or None
        Certify every ``skip``-th example, ``max_examples`` in all (None: all).
    seed : int or None, default 0
        Seed of every example's generator.
    config, info : dict, optional
        ``config`` adds entries that identify the run (e.g. the checkpoint's sha256; a resume
        must match them exactly); ``info`` adds provenance.
    progress, on_start : callable, optional
        Progress callback and a hook called once the run file is open.
    adaptive_radii : list of float, optional
        Target radii: certify by the sequential procedure of
        ``smoothcert.adaptive.certify_adaptive``; ``n`` is then its largest sample size and a
        row's ``n`` the number of estimation draws actually used.
    adaptive_options : dict, optional
        The sequential procedure's n_first / growth / futility / final_share / align, stored
        in the run's config with the defaults filled in.
    shard : (int, int), default (0, 1)
        ``(rank, world)``: certify only every world-th selected example, from position rank
        (see ``smoothcert.distributed``); shards merge into the unsharded run.

    Returns
    -------
    list of dict
        All rows of the run, ordered by idx: label, prediction (-1 = abstain), radius,
        correct, n_a, n, p_a_lower, the two count vectors and seconds.

    Raises
    ------
    ValueError
        If an argument is out of range, the dataset does not fit the model, or ``out`` holds
        a different run.
    """
    classifier = _classifier(model, sigma, num_classes, batch_size)
    _check_dataset(dataset, classifier)
    if getattr(dataset, "labeled", True) is False:
        raise ValueError(
            "certifying needs labeled data (certified accuracy is against the labels); "
            "predicting works without labels"
        )
    positive_int("n0", n0)
    positive_int("n", n)
    probability("alpha", alpha)
    if adaptive_radii is not None and classifier.sound:
        raise ValueError("adaptive_radii cannot be used with a sound classifier (sound=True) yet")
    if adaptive_radii is not None:
        adaptive_options = _adaptive_plan_options(
            adaptive_radii, adaptive_options, classifier.sigma, alpha, n
        )
    certify_one = _certify_fn(classifier, n0, n, alpha, adaptive_radii, adaptive_options)
    run_config: dict[str, Any] = {"command": "certify", "n0": n0, "n": n, "alpha": alpha}
    if adaptive_radii is not None:
        # The plan sorts and de-duplicates the targets: store them so, and the same set of
        # radii in another order resumes the run.
        targets = sorted({float(r) for r in adaptive_radii})
        run_config |= {"adaptive_radii": targets, "adaptive_options": adaptive_options}

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

    return _run_examples(
        classifier,
        dataset,
        out,
        "certify",
        CERTIFY_SCHEMA,
        run_config | (config or {}),
        info,
        (skip, max_examples, seed),
        shard,
        evaluate,
        progress,
        on_start,
    )


def predict_dataset(
    model: nn.Module | SmoothedClassifier,
    dataset: Any,
    out: str | os.PathLike,
    *,
    sigma: float | None = None,
    num_classes: int | None = None,
    n: int = 1000,
    alpha: float = 0.001,
    batch_size: int = 1000,
    skip: int = 1,
    max_examples: int | None = None,
    seed: int | None = 0,
    config: dict[str, Any] | None = None,
    info: dict[str, Any] | None = None,
    progress: Progress | None = None,
    on_start: OnStart | None = None,
    shard: tuple[int, int] = (0, 1),
) -> list[dict[str, Any]]:
    """PREDICT on every selected example, stored and resumable like :func:`certify_dataset`."""
    classifier = _classifier(model, sigma, num_classes, batch_size)
    _check_dataset(dataset, classifier)
    positive_int("n", n)
    probability("alpha", alpha)

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

    run_config = {"command": "predict", "n": n, "alpha": alpha} | (config or {})
    stream: tuple[int, ...] = (PREDICT_STREAM, n)
    if is_legacy_predict_run(out):
        stream = ()  # a run started before the predict stream resumes with the noise it began
    else:
        run_config["noise_stream"] = PREDICT_NOISE_STREAM
    return _run_examples(
        classifier,
        dataset,
        out,
        "predict",
        PREDICT_SCHEMA,
        run_config,
        info,
        (skip, max_examples, seed),
        shard,
        evaluate,
        progress,
        on_start,
        stream,
    )


def is_legacy_predict_run(out: str | os.PathLike) -> bool:
    """Whether ``out`` holds a predict run from before the predict noise stream (no
    ``noise_stream`` in its config): its rows drew the same noise as a certify run's."""
    path = Path(out)
    if not path.is_file() or path.stat().st_size == 0:
        return False
    try:
        with RunStore.read(path) as store:
            return store.kind == "predict" and "noise_stream" not in store.config
    except (ValueError, OSError):
        return False  # not a run: RunStore.open reports it


def noise_stream(kind: str, config: dict[str, Any]) -> tuple[str, int | None]:
    """The noise stream of a stored certify or predict run: ("base", None) for certify runs
    and predict runs from before the predict stream, ("predict", n) for the others. Two runs
    with the same seed draw overlapping noise exactly when their streams are equal."""
    if kind == "predict" and config.get("noise_stream") == PREDICT_NOISE_STREAM:
        return "predict", int(config["n"])
    return "base", None


def _adaptive_plan_options(
    radii: list[float], options: dict[str, Any] | None, sigma: float, alpha: float, n: int
) -> dict[str, Any]:
    """The resolved plan options of an adaptive run, defaults included (a resumed run must use
    the same plan even if a later version changes the defaults), after building the plan once:
    bad radii (NaN, negative), n_first > n, ... are refused before the run file is created,
    not at the first example after it was."""
    import dataclasses

    from smoothcert.adaptive import AdaptiveOptions, plan_looks

    allowed = [f.name for f in dataclasses.fields(AdaptiveOptions)]
    unknown = sorted(set(options or {}) - set(allowed))
    if unknown:
        raise ValueError(f"unknown adaptive options {unknown}; allowed: {allowed}")
    resolved = dataclasses.asdict(AdaptiveOptions(**(options or {})))
    plan_looks(radii, sigma, alpha, n, **resolved)
    return resolved


def check_tsv_target(tsv_path: str | os.PathLike, run_path: str | os.PathLike) -> Path:
    """Refuse a TSV target that would destroy data or cannot be written, before any work: the
    run file itself, any SQLite file (another run), a directory, or a directory that is
    read-only. Missing directories are created when the TSV is written, as they are for a run
    file (one rule for both outputs), provided their nearest existing ancestor is a writable
    directory. Returns the target as a Path."""
    tsv, run = Path(tsv_path), Path(run_path)
    if tsv.resolve() == run.resolve() or (
        tsv.exists() and run.exists() and os.path.samefile(tsv, run)
    ):
        raise ValueError(f"TSV output {tsv} is the run file itself; choose another file name")
    if tsv.is_dir():
        raise ValueError(f"TSV output {tsv} is a directory; give a file name")
    if tsv.is_file():
        with open(tsv, "rb") as fh:
            if fh.read(len(SQLITE_HEADER)) == SQLITE_HEADER:
                raise ValueError(
                    f"TSV output {tsv} is an SQLite file (a run file?); refusing to overwrite it"
                )
    folder = tsv.resolve().parent
    existing = next(p for p in (folder, *folder.parents) if p.exists())
    if not existing.is_dir():
        raise ValueError(
            f"cannot create directory {folder} of TSV output {tsv}: {existing} is a file"
        )
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"directory {existing} of TSV output {tsv} is not writable")
    return tsv


def export_tsv(run_path: str | os.PathLike, tsv_path: str | os.PathLike) -> int:
    """Write a certify run in the reference code's format: ``idx label predict radius correct
    time`` (tab-separated, a header line, abstentions as -1, time as H:MM:SS.ffffff). Radii
    are written in full (shortest round-trip digits): a rounded radius could pass a threshold
    that the certified one does not, e.g. 0.49999996 printed as 0.5. Returns the number of
    rows written. Refuses targets :func:`check_tsv_target` refuses (the run itself, another
    run, a directory)."""
    with RunStore.read(run_path) as store:
        if store.kind != "certify":
            raise ValueError(f"{run_path} is a {store.kind!r} run; only certify runs export to TSV")
        rows = store.rows()
    tsv_path = check_tsv_target(tsv_path, run_path)
    tsv_path.parent.mkdir(parents=True, exist_ok=True)  # as a run file's folder is
    lines = ["idx\tlabel\tpredict\tradius\tcorrect\ttime\n"] + [
        f"{r['idx']}\t{r['label']}\t{r['prediction']}\t{float(r['radius'])!r}\t"
        f"{r['correct']}\t{_elapsed(r['seconds'])}\n"
        for r in rows
    ]
    atomic_write_bytes(tsv_path, "".join(lines).encode())  # never a half-written TSV
    return len(rows)


def _elapsed(seconds: float) -> str:
    # The reference code prints datetime.timedelta values.
    whole = int(seconds)
    micro = int(round((seconds - whole) * 1e6))
    if micro == 1_000_000:
        whole, micro = whole + 1, 0
    h, rem = divmod(whole, 3600)
    m, s = divmod(rem, 60)
    return f"{h}:{m:02d}:{s:02d}.{micro:06d}"


def _certify_fn(
    classifier: SmoothedClassifier,
    n0: int,
    n: int,
    alpha: float,
    radii: list[float] | None,
    options: dict[str, Any] | None,
) -> Callable[[Any, torch.Generator], Any]:
    """CERTIFY with fixed n, or the adaptive procedure when target radii are given."""
    if radii is None:
        return lambda x, gen: classifier.certify(x, n0, n, alpha, generator=gen)
    from smoothcert.adaptive import certify_adaptive

    opts = dict(options or {})
    return lambda x, gen: certify_adaptive(
        classifier, x, radii, alpha, n0=n0, n_max=n, generator=gen, **opts
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


def _classifier_options(classifier: SmoothedClassifier) -> dict[str, Any]:
    """Settings of the classifier that change its results (stored in the run's config).
    ``sound`` is stored only when on, so that runs made before sound mode existed resume, and
    a run resumed in the other mode is refused either way."""
    options = {}
    for name in ("precision", "channels_last"):
        value = getattr(classifier, name, None)
        if value is not None:
            options[name] = value
    if getattr(classifier, "sound", False):
        options["sound"] = True
    return options
