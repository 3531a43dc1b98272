"""Every hyperparameter of every training method is checked when the method is built: a bad
value is a ParameterError naming the hyperparameter (so the CLI reports its flag)."""

from __future__ import annotations

import dataclasses

import pytest

from smoothcert._util.checks import ParameterError
from smoothcert.training.methods.denoiser_methods import DENOISER_METHODS, get_denoiser_method
from smoothcert.training.registry import get_method, list_methods, method_class

# method -> {hyperparameter: a value it refuses}; every field of every method is listed.
BAD: dict[str, dict[str, object]] = {
    "standard": {},
    "gaussian": {"sigma": -0.25},
    "smoothadv": {
        "sigma": -1.0,
        "eps": -0.5,
        "steps": -1,
        "num_noise": 0,
        "warmup_epochs": 1.5,
        "train_copies": "some",
        "random_zero_grad": "yes",
        "objective": "max",
    },
    "consistency": {
        "sigma": float("-inf"),
        "num_noise": 1,
        "lam": -10.0,
        "eta": -0.5,
        "adversarial": 1,
        "eps": -2.0,
        "steps": -4,
        "warmup_epochs": -1,
    },
    "stability": {"sigma": -0.5, "lam": -2.0, "separate_passes": 2},
    "stn": {"sigma": -0.5, "lam": -1.0, "separate_passes": "no"},
    "macer": {
        "sigma": 0.0,
        "num_noise": 0,
        "lam": -12.0,
        "margin": 0.0,
        "beta": 0.0,
        "deferred_epochs": -1,
    },
    "smoothmix": {
        "sigma": -0.25,
        "num_noise": 0,
        "steps": 0,
        "alpha": 0.0,
        "eta": -5.0,
        "mix_step": 4,
        "max_norm": 0.0,
        "mix_max_norm": -1.0,
        "warmup_epochs": -10,
    },
    "nal": {
        "sigma": -0.05,
        "gamma": 0.0,
        "steps": -1,
        "num_noise": 0,
        "inner_step_size": 0.0,
        "cost_with_noise": "true",
        "reuse_noise": 0,
        "inner_train_mode": "false",
    },
    "wrm": {"gamma": -0.385, "steps": -15, "inner_step_size": -1.0, "label_smoothing": 1.0},
    "trades": {"eps": -0.5, "steps": -10, "inner_step_size": 0.0, "beta": -6.0},
}
CASES = [(method, name, value) for method, bad in BAD.items() for name, value in bad.items()]


def test_every_hyperparameter_of_every_method_has_a_case() -> None:
    assert sorted(BAD) == list_methods()
    for method in list_methods():
        fields = {f.name for f in dataclasses.fields(method_class(method))}
        assert set(BAD[method]) == fields, method


@pytest.mark.parametrize(("method", "name", "value"), CASES)
def test_a_bad_hyperparameter_is_a_parameter_error_naming_it(method, name, value) -> None:
    with pytest.raises(ParameterError) as caught:
        get_method(method, **{name: value})
    assert caught.value.parameter == name
    assert repr(value) in caught.value.problem


@pytest.mark.parametrize(
    ("method", "options", "name"),
    [
        ("denoiser-mse", {"sigma": -0.5}, "sigma"),
        ("denoiser-mse", {}, "sigma"),
        ("denoiser-mse", {"sigma": 0.5, "surrogates": ["a.safetensors"]}, "surrogates"),
        ("denoiser-mse", {"sigma": 0.5, "trust_model_code": "yes"}, "trust_model_code"),
        ("denoiser-stability", {"sigma": 0.5}, "classifier"),
        ("denoiser-diffusion", {"sigma": 0.0}, "sigma"),
    ],
)
def test_a_bad_denoiser_hyperparameter_names_it(method, options, name) -> None:
    assert method in DENOISER_METHODS
    with pytest.raises(ParameterError) as caught:
        get_denoiser_method(method, **options)
    assert caught.value.parameter == name


def test_an_unknown_hyperparameter_is_a_parameter_error_listing_the_methods() -> None:
    with pytest.raises(ParameterError) as caught:
        get_method("stn", sigma=0.25, eps=0.5)
    assert caught.value.parameters == ("eps",)
    assert (
        str(caught.value)
        == "eps is not a hyperparameter of stn; it has: lam, separate_passes, sigma"
    )
    with pytest.raises(ParameterError) as caught:
        get_method("standard", sigma=0.25, lam=1.0)
    assert caught.value.parameters == ("lam", "sigma")
    assert caught.value.problem == "are not hyperparameters of standard; it has none"
    with pytest.raises(ParameterError) as caught:
        get_denoiser_method("denoiser-mse", sigma=0.25, schedule="cosine")
    assert str(caught.value) == (
        "schedule is not a hyperparameter of denoiser-mse; it has: arch_options, classifier, "
        "init, sigma, sources, surrogates, trust_model_code"
    )
