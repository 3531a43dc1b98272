"""The data a model is evaluated on, as the command line names it, for the Python API too: a
dataset by name, ``npy:IMAGES.npy`` (the user's arrays, with a labels .npy), or
``folder:DIR`` (images without labels, for PREDICT) (:func:`load_data`); the check that a
model and a dataset fit each other (:func:`check_model_data`); both at once, defaulting to the
model's own dataset (:func:`model_data`); and the σ of a smoothed evaluation of a model
(:func:`resolve_sigma`).

``meta`` below is a model's metadata: a checkpoint's (``smoothcert.models.checkpoint``) or an
outside model's (``smoothcert.models.adapters``), of which ``input_shape``, ``num_classes``,
``dataset``, ``data_options`` and ``sigma`` are used.

Examples
--------
>>> from smoothcert.data.inputs import is_user_data
>>> is_user_data("npy:images.npy"), is_user_data("folder:photos"), is_user_data("mnist")
(True, True, False)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from smoothcert._util.checks import FLOAT32_MAX, ParameterError, finite_real, is_real

NPY_PREFIX = "npy:"
FOLDER_PREFIX = "folder:"


def is_user_data(spec: str) -> bool:
    """Whether ``spec`` names the user's own data (``npy:`` or ``folder:``), not a dataset."""
    return spec.startswith((NPY_PREFIX, FOLDER_PREFIX))


def load_data(
    spec: str,
    split: str = "test",
    *,
    labels: str | os.PathLike | None = None,
    layout: str = "auto",
    root: str | os.PathLike | None = None,
    meta: Mapping[str, Any] | None = None,
) -> Any:
    """The dataset ``spec`` names, read as the model of ``meta`` takes it.

    Parameters
    ----------
    spec : str
        A dataset name (``smoothcert.data.load_dataset``), ``npy:IMAGES.npy`` or ``folder:DIR``.
    split : str, default "test"
        The split of a named dataset.
    labels : path, optional
        The labels .npy of ``npy:IMAGES.npy`` (none: PREDICT only); only with ``npy:``.
    layout : {"auto", "nchw", "nhwc"}
        The axis order of ``npy:`` images.
    root : path, optional
        Where a named dataset lives (default: its standard location).
    meta : mapping, optional
        The model's metadata: its input shape decides the layout of ``npy:`` images and the
        channels of ``folder:`` images; its ``data_options`` (e.g. an image folder's resize)
        apply when ``spec`` is the dataset it was trained on.

    Returns
    -------
    ImageDataset or ArrayDataset
        The examples, images in [0, 1].
    """
    from smoothcert.data import load_dataset
    from smoothcert.data.arrays import load_npy_dataset, load_unlabeled_folder

    meta = meta or {}
    if spec.startswith(NPY_PREFIX):
        return load_npy_dataset(
            spec[len(NPY_PREFIX) :], labels, layout=layout, input_shape=meta.get("input_shape")
        )
    if labels is not None:
        raise ParameterError("labels", "go with a dataset npy:IMAGES.npy only")
    if spec.startswith(FOLDER_PREFIX):
        # Read as the model takes them: one channel for a one-channel model, else RGB.
        shape = meta.get("input_shape") or ()
        return load_unlabeled_folder(
            spec[len(FOLDER_PREFIX) :], grayscale=bool(shape) and shape[0] == 1
        )
    # Data options the model was trained with (e.g. an image folder's resize) apply when the
    # dataset is the checkpoint's own.
    kwargs = dict(meta.get("data_options") or {}) if spec == meta.get("dataset") else {}
    if root is not None:
        kwargs["root"] = root
    return load_dataset(spec, split, **kwargs)


def check_model_data(meta: Mapping[str, Any], dataset: Any, name: str) -> None:
    """Refuse a dataset (named ``name`` in messages) whose inputs do not have the model's shape
    or whose classes are not the model's; the user's arrays (no class count) must hold labels
    below the model's ``num_classes``.

    Raises
    ------
    ValueError
        Saying which shape or class count differs.
    """
    shape = tuple(meta.get("input_shape") or ())
    what = "checkpoint" if "source" not in meta else "model"
    if shape and tuple(dataset.info.input_shape) != shape:
        raise ValueError(
            f"dataset {name!r} has inputs of shape {tuple(dataset.info.input_shape)} "
            f"but the {what} expects {shape}"
        )
    if dataset.info.num_classes is None:  # the user's arrays: labels must be the model's classes
        dataset.check_labels(meta["num_classes"])
    elif meta.get("num_classes") not in (None, dataset.info.num_classes):
        raise ValueError(
            f"dataset {name!r} has {dataset.info.num_classes} classes "
            f"but the {what} has {meta['num_classes']}"
        )


def model_data(
    meta: Mapping[str, Any],
    dataset: str | None = None,
    split: str = "test",
    *,
    labels: str | os.PathLike | None = None,
    layout: str = "auto",
    root: str | os.PathLike | None = None,
) -> Any:
    """The data a model is evaluated on: ``dataset`` (see :func:`load_data`), or by default the
    dataset the model of ``meta`` was trained on, loaded as the model takes it and checked
    against it (:func:`check_model_data`).

    Examples
    --------
    >>> model_data({"num_classes": 10})
    Traceback (most recent call last):
    ...
    smoothcert._util.checks.ParameterError: dataset is needed: the model names no dataset

    Raises
    ------
    ParameterError
        Naming ``dataset`` when it is not given and the model names no dataset.
    ValueError
        When the data does not fit the model.
    """
    name = dataset or meta.get("dataset")
    if not name:
        raise ParameterError("dataset", "is needed: the model names no dataset")
    data = load_data(name, split, labels=labels, layout=layout, root=root, meta=meta)
    check_model_data(meta, data, name)
    return data


def resolve_sigma(meta: Mapping[str, Any], sigma: float | None = None) -> float:
    """The noise σ of a smoothed evaluation of the model of ``meta``: ``sigma`` when given
    (the caller's choice wins, also over a different training σ), else the σ the model was
    trained with (``meta["sigma"]``).

    Raises
    ------
    ParameterError
        Naming ``sigma`` when it is not a float32-finite number > 0, or when it is not given
        and the model records no usable training σ (none, or not a float32-finite number > 0,
        e.g. 0 for a model trained without noise).

    Examples
    --------
    >>> resolve_sigma({"sigma": 0.25}), resolve_sigma({"sigma": 0.25}, 0.5)
    (0.25, 0.5)
    >>> try:
    ...     resolve_sigma({"sigma": None})
    ... except ParameterError as error:
    ...     print(error.parameter, "|", error.problem)
    sigma | is needed: the checkpoint gives no usable training σ (None)
    """
    if sigma is not None:
        return finite_real("sigma", sigma, positive=True)
    trained = meta.get("sigma")
    if not (is_real(trained) and 0 < trained <= FLOAT32_MAX):
        what = "checkpoint" if "source" not in meta else "model"
        problem = f"is needed: the {what} gives no usable training σ ({trained})"
        raise ParameterError("sigma", problem)
    return float(trained)
