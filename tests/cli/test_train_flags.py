"""The flags of `train` and `train-denoiser` against an explicit list taken from the parsers as
they were hand-written, so that building them from field metadata changes no flag, dest,
default, requirement, choice, type, action or metavar."""

from __future__ import annotations

import argparse

import pytest

from smoothcert.cli import build_parser

SUPPRESS = argparse.SUPPRESS

# (first option string, dest, default, required, choices, type name, action class, metavar)
TRAIN = [
    ("--dataset", "dataset", None, True, None, None, "_StoreAction", "NAME"),
    ("--data-root", "data_root", None, False, None, None, "_StoreAction", "DIR"),
    ("--resize", "resize", None, False, None, "int", "_StoreAction", "PIXELS"),
    ("--stream", "stream", False, False, None, None, "_StoreTrueAction", None),
    ("--subset", "subset", None, False, None, "int", "_StoreAction", "N"),
    ("--test-subset", "test_subset", None, False, None, "int", "_StoreAction", "N"),
    ("--val-size", "val_size", 0, False, None, "int", "_StoreAction", "N"),
    (
        "--augment",
        "augment",
        "auto",
        False,
        ("auto", "none", "crop-flip", "resized-crop-flip"),
        None,
        "_StoreAction",
        None,
    ),
    ("--arch", "arch", None, True, None, None, "_StoreAction", "ARCH"),
    ("--method", "method", "standard", False, None, None, "_StoreAction", "METHOD"),
    ("--epochs", "epochs", 10, False, None, "int", "_StoreAction", None),
    ("--batch-size", "batch_size", 128, False, None, "int", "_StoreAction", None),
    ("--optimizer", "optimizer", "sgd", False, ("sgd", "adam"), None, "_StoreAction", None),
    ("--lr", "lr", 0.1, False, None, "float", "_StoreAction", None),
    ("--momentum", "momentum", 0.9, False, None, "float", "_StoreAction", None),
    ("--weight-decay", "weight_decay", 0.0001, False, None, "float", "_StoreAction", None),
    (
        "--schedule",
        "schedule",
        "step",
        False,
        ("constant", "step", "cosine"),
        None,
        "_StoreAction",
        None,
    ),
    ("--step-size", "step_size", 30, False, None, "int", "_StoreAction", None),
    ("--lr-decay", "lr_decay", 0.1, False, None, "float", "_StoreAction", None),
    ("--seed", "seed", 0, False, None, "int", "_StoreAction", None),
    (
        "--precision",
        "precision",
        "auto",
        False,
        ("auto", "fp32", "bf16", "fp16"),
        None,
        "_StoreAction",
        None,
    ),
    (
        "--channels-last",
        "channels_last",
        "auto",
        False,
        ("auto", "on", "off"),
        None,
        "_StoreAction",
        None,
    ),
    ("--eval-sigma", "eval_sigma", None, False, None, "float", "_StoreAction", "STD"),
    ("--eval-batch-size", "eval_batch_size", 500, False, None, "int", "_StoreAction", None),
    ("--out", "out", None, True, None, None, "_StoreAction", "DIR"),
    ("--device", "device", "auto", False, None, None, "_StoreAction", None),
    ("--threads", "threads", None, False, None, "int", "_StoreAction", None),
    ("--checkpoint-every", "checkpoint_every", "10m", False, None, None, "_StoreAction", "N|Nm"),
    ("--workers", "workers", 0, False, None, "int", "_StoreAction", "N"),
    ("--sync-bn", "sync_bn", False, False, None, None, "_StoreTrueAction", None),
    ("--no-progress", "no_progress", False, False, None, None, "_StoreTrueAction", None),
    (
        "--adversarial",
        "method__adversarial",
        SUPPRESS,
        False,
        None,
        "_parse_bool",
        "_StoreAction",
        "BOOL",
    ),
    ("--alpha", "method__alpha", SUPPRESS, False, None, "float", "_StoreAction", "FLOAT"),
    ("--beta", "method__beta", SUPPRESS, False, None, "float", "_StoreAction", "FLOAT"),
    (
        "--cost-with-noise",
        "method__cost_with_noise",
        SUPPRESS,
        False,
        None,
        "_parse_bool",
        "_StoreAction",
        "BOOL",
    ),
    (
        "--deferred-epochs",
        "method__deferred_epochs",
        SUPPRESS,
        False,
        None,
        "int",
        "_StoreAction",
        "INT",
    ),
    ("--eps", "method__eps", SUPPRESS, False, None, "float", "_StoreAction", "FLOAT"),
    ("--eta", "method__eta", SUPPRESS, False, None, "float", "_StoreAction", "FLOAT"),
    ("--gamma", "method__gamma", SUPPRESS, False, None, "float", "_StoreAction", "FLOAT"),
    (
        "--inner-step-size",
        "method__inner_step_size",
        SUPPRESS,
        False,
        None,
        "float",
        "_StoreAction",
        "FLOAT",
    ),
    (
        "--inner-train-mode",
        "method__inner_train_mode",
        SUPPRESS,
        False,
        None,
        "_parse_bool",
        "_StoreAction",
        "BOOL",
    ),
    (
        "--label-smoothing",
        "method__label_smoothing",
        SUPPRESS,
        False,
        None,
        "float",
        "_StoreAction",
        "FLOAT",
    ),
    ("--lam", "method__lam", SUPPRESS, False, None, "float", "_StoreAction", "FLOAT"),
    ("--margin", "method__margin", SUPPRESS, False, None, "float", "_StoreAction", "FLOAT"),
    ("--max-norm", "method__max_norm", SUPPRESS, False, None, "float", "_StoreAction", "FLOAT"),
    (
        "--mix-max-norm",
        "method__mix_max_norm",
        SUPPRESS,
        False,
        None,
        "float",
        "_StoreAction",
        "FLOAT",
    ),
    ("--mix-step", "method__mix_step", SUPPRESS, False, None, "int", "_StoreAction", "INT"),
    ("--num-noise", "method__num_noise", SUPPRESS, False, None, "int", "_StoreAction", "INT"),
    ("--objective", "method__objective", SUPPRESS, False, None, "str", "_StoreAction", "STR"),
    (
        "--random-zero-grad",
        "method__random_zero_grad",
        SUPPRESS,
        False,
        None,
        "_parse_bool",
        "_StoreAction",
        "BOOL",
    ),
    (
        "--reuse-noise",
        "method__reuse_noise",
        SUPPRESS,
        False,
        None,
        "_parse_bool",
        "_StoreAction",
        "BOOL",
    ),
    (
        "--separate-passes",
        "method__separate_passes",
        SUPPRESS,
        False,
        None,
        "_parse_bool",
        "_StoreAction",
        "BOOL",
    ),
    ("--sigma", "method__sigma", SUPPRESS, False, None, "float", "_StoreAction", "FLOAT"),
    ("--steps", "method__steps", SUPPRESS, False, None, "int", "_StoreAction", "INT"),
    ("--train-copies", "method__train_copies", SUPPRESS, False, None, "str", "_StoreAction", "STR"),
    (
        "--warmup-epochs",
        "method__warmup_epochs",
        SUPPRESS,
        False,
        None,
        "int",
        "_StoreAction",
        "INT",
    ),
]

TRAIN_DENOISER = [
    ("--arch", "arch", None, True, ("dncnn", "unet-small"), None, "_StoreAction", None),
    ("--depth", "depth", None, False, None, "int", "_StoreAction", "LAYERS"),
    ("--width", "width", None, False, None, "int", "_StoreAction", "CHANNELS"),
    ("--time-dim", "time_dim", None, False, None, "int", "_StoreAction", "DIM"),
    (
        "--objective",
        "objective",
        None,
        True,
        ("mse", "stability", "diffusion"),
        None,
        "_StoreAction",
        None,
    ),
    ("--sigma", "sigma", None, False, None, "float", "_StoreAction", "STD"),
    ("--classifier", "classifier", None, False, None, None, "_StoreAction", "MODEL"),
    ("--surrogate", "surrogate", None, False, None, None, "_AppendAction", "MODEL"),
    ("--init", "init", None, False, None, None, "_StoreAction", "CKPT"),
    (
        "--diffusion-schedule",
        "diffusion_schedule",
        "linear",
        False,
        None,
        None,
        "_StoreAction",
        "linear|cosine|FILE",
    ),
    ("--diffusion-steps", "diffusion_steps", None, False, None, "int", "_StoreAction", "T"),
    ("--trust-model-code", "trust_model_code", False, False, None, None, "_StoreTrueAction", None),
    ("--dataset", "dataset", None, True, None, None, "_StoreAction", "NAME"),
    ("--data-root", "data_root", None, False, None, None, "_StoreAction", "DIR"),
    ("--resize", "resize", None, False, None, "int", "_StoreAction", "PIXELS"),
    ("--stream", "stream", False, False, None, None, "_StoreTrueAction", None),
    ("--subset", "subset", None, False, None, "int", "_StoreAction", "N"),
    ("--test-subset", "test_subset", None, False, None, "int", "_StoreAction", "N"),
    ("--val-size", "val_size", 0, False, None, "int", "_StoreAction", "N"),
    (
        "--augment",
        "augment",
        "auto",
        False,
        ("auto", "none", "crop-flip", "resized-crop-flip"),
        None,
        "_StoreAction",
        None,
    ),
    ("--epochs", "epochs", 10, False, None, "int", "_StoreAction", None),
    ("--batch-size", "batch_size", 128, False, None, "int", "_StoreAction", None),
    ("--optimizer", "optimizer", "adam", False, ("sgd", "adam"), None, "_StoreAction", None),
    ("--lr", "lr", 0.001, False, None, "float", "_StoreAction", None),
    ("--momentum", "momentum", 0.9, False, None, "float", "_StoreAction", None),
    ("--weight-decay", "weight_decay", 0.0, False, None, "float", "_StoreAction", None),
    (
        "--schedule",
        "schedule",
        "step",
        False,
        ("constant", "step", "cosine"),
        None,
        "_StoreAction",
        None,
    ),
    ("--step-size", "step_size", 30, False, None, "int", "_StoreAction", None),
    ("--lr-decay", "lr_decay", 0.1, False, None, "float", "_StoreAction", None),
    ("--seed", "seed", 0, False, None, "int", "_StoreAction", None),
    (
        "--precision",
        "precision",
        "auto",
        False,
        ("auto", "fp32", "bf16", "fp16"),
        None,
        "_StoreAction",
        None,
    ),
    (
        "--channels-last",
        "channels_last",
        "auto",
        False,
        ("auto", "on", "off"),
        None,
        "_StoreAction",
        None,
    ),
    ("--eval-sigma", "eval_sigma", None, False, None, "float", "_StoreAction", "STD"),
    ("--eval-batch-size", "eval_batch_size", 500, False, None, "int", "_StoreAction", None),
    ("--out", "out", None, True, None, None, "_StoreAction", "DIR"),
    ("--device", "device", "auto", False, None, None, "_StoreAction", None),
    ("--threads", "threads", None, False, None, "int", "_StoreAction", None),
    ("--checkpoint-every", "checkpoint_every", "10m", False, None, None, "_StoreAction", "N|Nm"),
    ("--workers", "workers", 0, False, None, "int", "_StoreAction", "N"),
    ("--sync-bn", "sync_bn", False, False, None, None, "_StoreTrueAction", None),
    ("--no-progress", "no_progress", False, False, None, None, "_StoreTrueAction", None),
]


def _flags(command: str) -> list[tuple]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [
        (
            a.option_strings[0],
            a.dest,
            a.default,
            a.required,
            None if a.choices is None else tuple(a.choices),
            getattr(a.type, "__name__", None),
            type(a).__name__,
            a.metavar,
        )
        for a in sub.choices[command]._actions
        if a.option_strings and a.dest != "help"
    ]


@pytest.mark.parametrize(
    ("command", "expected"), [("train", TRAIN), ("train-denoiser", TRAIN_DENOISER)]
)
def test_flags_are_those_of_the_hand_written_parser(command: str, expected: list[tuple]) -> None:
    got = _flags(command)
    assert sorted(got) == sorted(expected)
    assert len(got) == len(expected)  # no flag twice


def test_field_flags_take_their_help_from_the_field_metadata() -> None:
    import dataclasses

    from smoothcert.training import TrainConfig

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    fields = {f.name: f for f in dataclasses.fields(TrainConfig)}
    assert all(f.metadata.get("help") for f in fields.values())
    # each command's own wording where the meaning differs (or the choices are listed)
    own = {
        "train": ({"dataset", "arch", "method"}, 24),
        "train-denoiser": ({"dataset", "arch", "val_size", "eval_sigma"}, 22),
    }
    for command, (overridden, count) in own.items():
        actions = {a.dest: a for a in sub.choices[command]._actions}
        actions["out_dir"] = actions["out"]
        shown = [name for name in fields if name in actions and name not in overridden]
        assert len(shown) == count  # every field but method_options and data_options
        for name in shown:
            assert actions[name].help == fields[name].metadata["help"], (command, name)


def test_train_denoiser_makes_its_objective_flags_from_the_method_fields() -> None:
    import dataclasses

    from smoothcert.training.methods.denoiser_methods import DenoiserMethod

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    actions = {a.dest: a for a in sub.choices["train-denoiser"]._actions}
    fields = {f.name: f for f in dataclasses.fields(DenoiserMethod)}
    flags = {"sigma": "sigma", "classifier": "classifier", "surrogates": "surrogate",
             "init": "init", "trust_model_code": "trust_model_code"}  # fmt: skip
    for name, dest in flags.items():
        assert actions[dest].help == fields[name].metadata["help"], name
        assert actions[dest].metavar == fields[name].metadata.get("metavar"), name
    assert isinstance(actions["surrogate"], argparse._AppendAction)
    assert actions["sigma"].type is float and actions["trust_model_code"].default is False
