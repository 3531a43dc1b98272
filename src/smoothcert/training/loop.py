"""The training loop shared by every method.

:func:`train` takes these steps, each a function below, in this order:

1. resolve the config: validate it and record every method hyperparameter (``_resolve_config``);
2. prepare the data: load the splits, hold out the validation examples
   (:func:`smoothcert.training.splits.prepare_data`);
3. build the model, claim the output directory, make the optimizer (``_build_model``,
   ``_claim_out_dir``);
4. resume from the output directory's resume state, if any (``_resume``);
5. the epoch loop (``_epoch_loop``): train an epoch (``_train_epoch``, one ``_train_step`` per
   batch), evaluate it (``_evaluate_epoch``);
6. write its outputs (``_commit_epoch``; the files are :mod:`smoothcert.training.outputs`).

Per epoch e (0-based): learning rate from the schedule; the training set in the order
``randperm(n)`` seeded by (seed, e); for each batch the method's loss on the model in train
mode, backward, optimizer step; then clean test accuracy and test accuracy under noise σ;
then the checkpoints and the resume state, written atomically.

Resume: ``out_dir/resume.safetensors`` holds the model, the optimizer state (flattened, no
pickle), the method generator's state, the epoch/step counters and the metrics history. Data
order, augmentation and evaluation noise are pure functions of (seed, epoch), and the schedule
is a pure function of (epoch, step), so rerunning the same command after Ctrl-C or kill -9
continues from the last completed epoch and ends with the same weights as an uninterrupted
run (on the same device and thread count).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm import tqdm

from smoothcert._util.hardware import resolve_precision
from smoothcert._util.seeding import (
    STREAM_AUGMENT,
    STREAM_EVAL,
    STREAM_METHOD,
    STREAM_ORDER,
    STREAM_VAL,
    derived_seed,
    rank_seed,
)
from smoothcert._util.torch_helpers import resolve_device
from smoothcert.data import ImageDataset
from smoothcert.data.stream import StreamingImageFolder, UnreadableImage
from smoothcert.models import create_model
from smoothcert.models.checkpoint import save_checkpoint
from smoothcert.training import ddp
from smoothcert.training.batches import memory_batches, streamed_batches
from smoothcert.training.config import TrainConfig, TrainResult
from smoothcert.training.evaluate import evaluate_split
from smoothcert.training.method import BatchContext, Method, MethodOutput
from smoothcert.training.methods.denoiser_methods import get_denoiser_method, is_denoiser_method
from smoothcert.training.outputs import (
    BEST_FILE,
    LAST_FILE,
    RESUME_FILE,
    diverged_message,
    epoch_line,
    model_metadata,
    prepare_out_dir,
    recorded_precision,
    restore_outputs,
    unreadable_message,
    write_metrics,
)
from smoothcert.training.precision import (
    PRECISIONS,
    AutocastModel,
    ScaledOptimizer,
    check_precision,
    default_channels_last,
    grad_scaler,
)
from smoothcert.training.registry import get_method
from smoothcert.training.resume import (
    CheckpointClock,
    EpochSums,
    parse_checkpoint_every,
    read_resume,
    write_resume,
)
from smoothcert.training.splits import TrainData, prepare_data


def learning_rate(
    config: TrainConfig, epoch: int, step_in_epoch: int, steps_per_epoch: int
) -> float:
    """lr at a step: constant; step: lr·decay^⌊epoch/step_size⌋; cosine: ½lr(1 + cos πt),
    t = global step / total steps."""
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "step":
        return config.lr * config.lr_decay ** (epoch // config.step_size)
    t = (epoch * steps_per_epoch + step_in_epoch) / (config.epochs * steps_per_epoch)
    return 0.5 * config.lr * (1.0 + math.cos(math.pi * t))


def _make_optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    """SGD with heavy-ball momentum or Adam, at the initial learning rate."""
    if config.optimizer == "sgd":
        return torch.optim.SGD(
            model.parameters(),
            lr=config.lr,
            momentum=config.momentum,
            weight_decay=config.weight_decay,
        )
    return torch.optim.Adam(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)


def train(
    config: TrainConfig,
    *,
    train_set: ImageDataset | None = None,
    test_set: ImageDataset | None = None,
    progress: bool = True,
    log: Callable[[str], None] | None = None,
) -> TrainResult:
    """Train ``config.arch`` on ``config.dataset`` with ``config.method``.

    Resumes when ``config.out_dir`` holds this run (same identity), else starts fresh.
    ``best.safetensors`` is the epoch with the best validation accuracy (under noise when the
    method has σ) on the last ``val_size`` training examples, held out from training; with
    ``val_size=0`` it is the last epoch. The test set is only reported, never selected on.

    Under ``torchrun`` (WORLD_SIZE > 1) every process calls this with the same config: each
    trains on its share of every global batch of ``batch_size`` examples, gradients are
    averaged over the processes, evaluation is sharded, and only rank 0 writes files and logs.

    Parameters
    ----------
    config : TrainConfig
        Everything that determines the run.
    train_set, test_set : ImageDataset, optional
        Override loading ``config.dataset`` (``subset``/``test_subset`` still apply).
    progress : bool, default True
        Show a progress bar per epoch.
    log : callable, optional
        Receives one line per epoch (and on resume); the library itself never prints.

    Returns
    -------
    TrainResult
        The output folder, the trained model, one metrics dict per epoch, and the paths of
        ``last.safetensors`` and ``best.safetensors``.

    Raises
    ------
    ValueError
        If a configuration value is out of range (the message names the field), or
        ``config.out_dir`` holds a different run.
    """
    config, method = _resolve_config(config)
    ranks = ddp.ranks_from_env()
    ddp.check_batch_size(config.batch_size, ranks.world)
    device = _run_device(config.device, ranks)
    say = (log or _silent) if ranks.main else _silent
    data = prepare_data(config, method, train_set, test_set, say)
    config = _resolve_precision(config, device, say)
    # The model before the output directory: an architecture that cannot take these inputs
    # must fail before a config.json exists that would refuse the corrected command.
    config, model, runner, scaler = _build_model(config, data.train.info, device, ranks, method)
    if hasattr(method, "build_model"):  # a denoiser objective loaded its classifiers:
        config = dataclasses.replace(config, method_options=method.hyperparameters())  # sha256s

    started, finished = ddp.start(ranks, device), False
    try:
        if ranks.distributed and not ddp.same_everywhere(
            [PRECISIONS.index(config.precision)], device
        ):
            raise ValueError(
                "the processes resolved precision auto differently (machines of different "
                "kinds): give the precision explicitly"
            )
        out = Path(config.out_dir).expanduser()
        _claim_out_dir(out, config, device, ranks)
        optimizer = _make_optimizer(config, model)
        generator = torch.Generator(device=device)
        generator.manual_seed(derived_seed(config.seed, 0, STREAM_METHOD))
        run = _Run(
            config=config,
            method=method,
            data=data,
            model=model,
            runner=runner,
            scaler=scaler,
            optimizer=optimizer,
            generator=generator,
            device=device,
            ranks=ranks,
            out=out,
            say=say,
            progress=progress,
        )
        position = _resume(run)
        resumed_from_epoch = position.epoch
        _epoch_loop(run, position)
        finished = True
    except UnreadableImage as exc:  # a streamed file, met in training or evaluation
        out = Path(config.out_dir).expanduser()
        raise ValueError(unreadable_message(out, exc, ranks.main)) from None
    finally:
        ddp.stop(started, finished=finished)
    return TrainResult(
        out_dir=out,
        model=model.eval(),
        history=position.history,
        last_checkpoint=out / LAST_FILE,
        best_checkpoint=(out / BEST_FILE) if (out / BEST_FILE).is_file() else None,
        resumed_from_epoch=resumed_from_epoch,
        rank=ranks.rank,
    )


# --- the steps of train, in order ------------------------------------------------------------


def _silent(_message: str) -> None:
    """The log of a run without one, and of every rank but 0."""


def _resolve_config(config: TrainConfig) -> tuple[TrainConfig, Method]:
    """Validate ``config`` and build its method. The config returned records every method
    hyperparameter explicitly, so that defaults changing later cannot alter a resume."""
    config.validate()
    # Denoiser objectives (mse, stability, diffusion) have their own registry.
    get = get_denoiser_method if is_denoiser_method(config.method) else get_method
    method = get(config.method, **config.method_options)
    return dataclasses.replace(config, method_options=method.hyperparameters()), method


def _resolve_precision(
    config: TrainConfig, device: torch.device, say: Callable[[str], None]
) -> TrainConfig:
    """``config`` with a concrete precision: ``auto`` becomes the one the resumed run recorded,
    or the fast one on ``device`` (:func:`smoothcert._util.hardware.resolve_precision`); recorded in
    config.json and the checkpoints like an explicit one. Says the choice (or the emulated-bf16
    warning) once."""
    out = Path(config.out_dir).expanduser()
    precision, note = resolve_precision(config.precision, device, recorded=recorded_precision(out))
    if note:
        say(note if config.precision == "auto" else f"warning: {note}")
    return dataclasses.replace(config, precision=precision)


def _run_device(device: str | None, ranks: ddp.Ranks) -> torch.device:
    """The device of this process; under torchrun "auto" is cuda:LOCAL_RANK (one GPU each)."""
    if ranks.distributed and device in (None, "auto"):
        device = ddp.default_device()
    return resolve_device(device)


def _build_model(
    config: TrainConfig, info: Any, device: torch.device, ranks: ddp.Ranks, method: Method
) -> tuple[TrainConfig, nn.Module, nn.Module, torch.amp.GradScaler | None]:
    """The model on ``device`` in its memory layout; what the methods and the evaluation call
    (autocast inside, float32 logits out); the fp16 gradient scaler (None otherwise). The
    config returned has ``channels_last`` resolved, before the identity is recorded."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(config.seed)  # weight init, without touching the caller's global RNG
        if hasattr(method, "build_model"):  # a denoiser objective builds its denoiser
            model = method.build_model(config, info)
        else:
            model = create_model(
                config.arch, info.num_classes, info.input_shape, info.mean, info.std
            )
    if config.sync_bn:
        model = ddp.sync_batch_norm(model, device, ranks)
    model.to(device)
    check_precision(config.precision, device)
    if config.channels_last is None:
        config = dataclasses.replace(
            config, channels_last=default_channels_last(config.precision, model)
        )
    if config.channels_last:
        model.to(memory_format=torch.channels_last)
    runner = AutocastModel(model, config.precision, bool(config.channels_last))
    return config, model, runner, grad_scaler(config.precision, device)


def _claim_out_dir(out: Path, config: TrainConfig, device: torch.device, ranks: ddp.Ranks) -> None:
    """Rank 0 prepares ``out`` for this run (or refuses it); the other ranks wait for its word."""
    if ranks.main:
        try:
            prepare_out_dir(out, config.identity())
        except ValueError:
            if ranks.distributed:
                ddp.agree(False, device)  # release the other ranks before reporting
            raise
    if ranks.distributed and not ddp.agree(True, device):
        raise ValueError(f"rank 0 refused the output directory {out}; see its message")


@dataclass
class _Run:
    """The parts of a run that the epoch loop reads, fixed once it starts."""

    config: TrainConfig
    method: Method
    data: TrainData
    model: nn.Module  # the weights trained and saved
    runner: nn.Module  # the model as the methods and the evaluation call it (autocast)
    scaler: torch.amp.GradScaler | None  # fp16 only
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # the methods' randomness; its state is checkpointed
    device: torch.device
    ranks: ddp.Ranks
    out: Path
    say: Callable[[str], None]
    progress: bool


@dataclass
class _Position:
    """Where a run stands: what the resume state records."""

    epoch: int = 0  # completed epochs
    batch: int = 0  # batches of epoch ``epoch`` already trained (0: at its start)
    step: int = 0  # optimizer steps so far
    history: list[dict[str, Any]] = field(default_factory=list)  # metrics per completed epoch
    best_score: float = -math.inf  # best validation accuracy so far
    epoch_sums: dict[str, Any] | None = None  # running sums of the interrupted epoch
    augment_state: torch.Tensor | None = None  # its augmentation generator's state


def _resume(run: _Run) -> _Position:
    """Load the resume state in ``run.out`` into the model, optimizer and generators (a fresh
    run's position when there is none) and rewrite outputs deleted since it was written."""
    position = _Position()
    resume_path = run.out / RESUME_FILE
    if resume_path.is_file():
        meta, augment_state = read_resume(resume_path, run.model, run.optimizer, run.generator)
        position = _Position(
            epoch=meta["epoch"],
            batch=meta.get("batch", 0),  # absent in states written at an epoch boundary
            step=meta["step"],
            history=meta["history"],
            best_score=meta["best_score"] if meta["best_score"] is not None else -math.inf,
            epoch_sums=meta.get("epoch_sums"),
            augment_state=augment_state,
        )
        if run.scaler is not None and meta["grad_scaler"]:
            run.scaler.load_state_dict(meta["grad_scaler"])
        epochs = run.config.epochs
        if position.batch:
            run.say(
                f"resuming {run.out} in epoch {position.epoch + 1}/{epochs} "
                f"after batch {position.batch}"
            )
        else:
            run.say(f"resuming {run.out} after epoch {position.epoch}/{epochs}")
        if run.ranks.main:
            restore_outputs(
                run.out, run.model, run.config, run.method, run.data.train, position.history,
                run.data.val is None, position.batch, run.say,
            )  # fmt: skip
    counters = [position.epoch, position.batch, position.step]
    if run.ranks.distributed and not ddp.same_everywhere(counters, run.device):
        raise ValueError(
            f"the processes found different resume states in {run.out}: with several machines, "
            "the output directory must be one every machine shares"
        )
    return position


def _epoch_loop(run: _Run, position: _Position) -> None:
    """Train, evaluate and commit every epoch from ``position`` on."""
    clock = CheckpointClock(parse_checkpoint_every(run.config.checkpoint_every))
    for epoch in range(position.epoch, run.config.epochs):
        sums, lr, train_seconds = _train_epoch(run, position, epoch, clock)
        t1 = time.perf_counter()
        metrics, score = _evaluate_epoch(run, epoch, sums, lr)
        metrics["train_seconds"] = round(train_seconds, 3)
        metrics["eval_seconds"] = round(time.perf_counter() - t1, 3)
        _commit_epoch(run, position, epoch, metrics, score)
        clock.restart()


def _train_epoch(
    run: _Run, position: _Position, epoch: int, clock: CheckpointClock
) -> tuple[EpochSums, float, float]:
    """The optimizer steps of epoch ``epoch`` from batch ``position.batch`` on, writing
    mid-epoch resume states when ``clock`` says so. Returns the epoch's running sums, the
    learning rate of its last step and its training seconds (with those of earlier runs)."""
    config, ranks = run.config, run.ranks
    first = position.batch
    run.model.train()
    n = len(run.data.train)
    steps_per_epoch = math.ceil(n / config.batch_size)
    order = torch.randperm(
        n,
        generator=torch.Generator().manual_seed(derived_seed(config.seed, epoch, STREAM_ORDER)),
    )
    aug_gen = torch.Generator(device=run.device)
    aug_gen.manual_seed(derived_seed(config.seed, epoch, STREAM_AUGMENT))
    sums = EpochSums()
    lr = learning_rate(config, epoch, max(first - 1, 0), steps_per_epoch)
    if first:  # continue the interrupted epoch where its resume state left it
        sums = EpochSums.from_json(position.epoch_sums)
        if position.augment_state is not None:
            aug_gen.set_state(position.augment_state)
    t0 = time.perf_counter()
    size = config.batch_size
    # A batch of one breaks batch norm; under DDP every process needs at least two.
    plan = [i for i in range(first, steps_per_epoch) if min(size, n - i * size) >= 2 * ranks.world]
    bar = tqdm(
        _batches(run, order, plan, epoch, aug_gen),
        desc=f"epoch {epoch + 1}/{config.epochs}",
        disable=not (run.progress and ranks.main),
        leave=False,
        dynamic_ncols=True,
        initial=first,
        total=steps_per_epoch,
    )
    for i, x, y in bar:
        lr = learning_rate(config, epoch, i, steps_per_epoch)
        for group in run.optimizer.param_groups:
            group["lr"] = lr
        if ranks.distributed:  # the rank's method noise: a function of (seed, epoch, batch)
            r = ranks.rank
            run.generator.manual_seed(rank_seed(config.seed, epoch, i, STREAM_METHOD, r))
        ctx = BatchContext(
            epoch=epoch, epochs=config.epochs, step=position.step, generator=run.generator
        )
        loss, correct, seen, stats = _train_step(run, x, y, ctx, whole=min(size, n - i * size))
        position.step += 1
        if not math.isfinite(loss):
            raise ValueError(diverged_message(run.out, epoch, position.step, loss, ranks.main))
        sums.add(loss, correct, seen, stats)
        shown = {"loss": f"{sums.loss / sums.batches:.4f}"}
        if sums.seen:  # a denoiser objective counts no accuracy
            shown["acc"] = f"{sums.correct / sums.seen:.4f}"
        bar.set_postfix(shown)
        if ranks.main and i + 1 < steps_per_epoch and clock.due(position.step):
            _write_resume_point(
                run, position, epoch=epoch, batch=i + 1, sums=sums,
                seconds=time.perf_counter() - t0,
                aug_gen=None if ranks.distributed else aug_gen,
            )  # fmt: skip
            clock.restart()
    bar.close()
    return sums, lr, sums.seconds + time.perf_counter() - t0


def _batches(
    run: _Run, order: torch.Tensor, plan: list[int], epoch: int, aug_gen: torch.Generator
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(batch index, augmented inputs, labels) of this rank for the batches in ``plan``."""
    args = (run.config, epoch, run.data.augmentation)
    if isinstance(run.data.train, StreamingImageFolder):
        return streamed_batches(run.data.train, order, plan, *args, run.device, run.ranks)
    return memory_batches(run.data.train, order, plan, *args, aug_gen, run.device, run.ranks)


def _train_step(
    run: _Run, x: torch.Tensor, y: torch.Tensor, ctx: BatchContext, whole: int
) -> tuple[float, int, int, dict[str, float]]:
    """One optimizer step on this rank's share (x, y) of a global batch of ``whole`` examples:
    (loss, correct, seen, method statistics), over every process under DDP."""
    ranks, optimizer = run.ranks, ScaledOptimizer(run.optimizer, run.scaler)
    output = run.method.loss(run.runner, x, y, ctx)
    loss = output.loss
    if ranks.distributed and len(y) * ranks.world != whole:
        loss = loss * (len(y) * ranks.world / whole)  # uneven last batch
    optimizer.zero_grad()
    optimizer.backward(loss)
    # Under DDP: average the gradients over the processes (and reduce the statistics).
    reduced = _reduce_step(run.model, loss, output, ranks) if ranks.distributed else None
    optimizer.step()
    if reduced is not None:
        return reduced
    loss_value = float(loss.detach())
    if output.logits is None:  # denoiser objectives: no running accuracy
        return loss_value, 0, 0, output.stats
    with torch.no_grad():
        correct = int((output.logits.argmax(1) == output.targets).sum())
    return loss_value, correct, len(output.targets), output.stats


def _evaluate_epoch(
    run: _Run, epoch: int, sums: EpochSums, lr: float
) -> tuple[dict[str, Any], float | None]:
    """The epoch's metrics (training sums, test and validation accuracy) and its validation
    score (noisy accuracy when there is σ; None without a validation split)."""
    batches = max(sums.batches, 1)
    metrics: dict[str, Any] = {
        "epoch": epoch + 1,
        "lr": lr,
        "train_loss": sums.loss / batches,
    }
    if sums.seen:  # none seen: a denoiser objective has no training accuracy
        metrics["train_acc"] = sums.correct / sums.seen
    metrics.update({k: v / batches for k, v in sums.stats.items()})
    data, ranks = run.data, run.ranks
    if ranks.distributed:  # rank 0's running statistics everywhere, as DDP keeps them
        ddp.broadcast_buffers(run.model)
    args = (data.eval_sigma, run.config, epoch)
    # A denoiser objective evaluates test MSE and f∘D accuracy itself.
    evaluate = getattr(run.method, "evaluate_split", evaluate_split)
    if data.test is not None:  # reported only: selecting on it would bias every result
        metrics.update(
            evaluate(run.runner, data.test, "test", *args, STREAM_EVAL, run.device, ranks)
        )
    score = None
    if data.val is not None:
        val_metrics = evaluate(run.runner, data.val, "val", *args, STREAM_VAL, run.device, ranks)
        metrics.update(val_metrics)
        if hasattr(run.method, "validation_score"):  # denoisers: f∘D accuracy or -MSE
            score = run.method.validation_score(val_metrics)
        else:
            score = val_metrics.get("val_acc_noise", val_metrics["val_acc"])
    return metrics, score


def _commit_epoch(
    run: _Run, position: _Position, epoch: int, metrics: dict[str, Any], score: float | None
) -> None:
    """Record epoch ``epoch`` as completed; rank 0 writes, in commit order, best, last, the
    resume state (the commit point), then the log."""
    position.history.append(metrics)
    if score is not None and score > position.best_score:
        position.best_score, is_best = score, True
    else:
        is_best = run.data.val is None  # no held-out set: best is the last epoch
    position.epoch, position.batch = epoch + 1, 0
    position.epoch_sums, position.augment_state = None, None
    if not run.ranks.main:
        return
    meta = model_metadata(run.config, run.method, run.data.train, epoch + 1, metrics)
    if is_best:
        save_checkpoint(run.out / BEST_FILE, run.model, meta)
    save_checkpoint(run.out / LAST_FILE, run.model, meta)
    _write_resume_point(run, position, epoch=epoch + 1, batch=0)
    write_metrics(run.out, position.history)
    run.say(epoch_line(metrics, run.config.epochs))


def _reduce_step(
    model: nn.Module, loss: torch.Tensor, output: MethodOutput, ranks: ddp.Ranks
) -> tuple[float, int, int, dict[str, float]]:
    """Average the gradients over the processes and reduce the step's statistics with them in
    one collective: (global mean loss, correct, seen, per-rank mean of each method statistic).
    The loss is the same on every rank, so a divergence stops them all."""
    keys = sorted(output.stats)
    with torch.no_grad():
        dev = loss.device
        if output.logits is None:  # denoiser objectives: nothing to count
            correct = torch.zeros((), device=dev)
        else:
            correct = (output.logits.argmax(1) == output.targets).sum().float()
        stats = [torch.tensor(float(output.stats[k]), device=dev) for k in keys]
        values = torch.stack([loss.detach().float(), *stats])
        seen = 0.0 if output.logits is None else float(len(output.targets))
        counts = torch.stack([correct, torch.tensor(seen, device=dev)])
    averaged, summed = ddp.reduce_step(model, values, ranks.world, counts)
    averaged, summed = averaged.tolist(), summed.tolist()
    stats = dict(zip(keys, averaged[1:], strict=True))
    return averaged[0], round(summed[0]), round(summed[1]), stats


def _write_resume_point(
    run: _Run,
    position: _Position,
    *,
    epoch: int,
    batch: int,
    sums: EpochSums | None = None,
    seconds: float = 0.0,
    aug_gen: torch.Generator | None = None,
) -> None:
    """The resume state after ``batch`` batches of epoch ``epoch`` (0: at its start)."""
    best_score = position.best_score
    meta: dict[str, Any] = {
        "epoch": epoch,
        "step": position.step,
        "history": position.history,
        "best_score": best_score if math.isfinite(best_score) else None,
        "grad_scaler": run.scaler.state_dict() if run.scaler is not None else None,
    }
    if batch:
        running = EpochSums.from_json(sums.to_json())
        running.seconds += seconds
        meta |= {"batch": batch, "epoch_sums": running.to_json()}
    write_resume(
        run.out / RESUME_FILE,
        run.model,
        run.optimizer,
        run.generator,
        meta,
        aug_gen if batch else None,
    )
