"""Labelled examples handed to the library by a caller, as tensors: the one adapter from the
forms a user may pass as ``data`` to the pair (inputs, labels) that attacks and the
distributional certificate compute on.

``data`` is one of

- a pair (inputs, labels) of tensors or arrays (a tuple or list of two; Python lists of inputs
  and labels work too),
- a data set with a ``batch(indices)`` method returning that pair (``smoothcert.data``),
- any indexable, sized set of (x, y) items with integer labels (a map-style torch data set),
- an object with ``images`` and ``labels`` arrays (and no item access).

Inputs and labels come back in the dtypes the data holds (uint8 stays uint8: the caller decides
the scale; float labels stay float for the caller's check to refuse). A fault is a
:class:`~smoothcert._util.checks.ParameterError` naming the parameter (``data`` unless the
caller says otherwise).

Examples
--------
>>> import torch
>>> x, y = torch.zeros(3, 2), torch.tensor([0, 1, 2])
>>> dataset_length((x, y))
3
>>> batch_of([(x[i], int(y[i])) for i in range(3)], [2, 0])[1]
tensor([2, 0])
>>> batch_of([(x[0], 1.5)], [0])
Traceback (most recent call last):
...
smoothcert._util.checks.ParameterError: data must hold integer class labels; example 0 has 1.5
"""

from __future__ import annotations

import numbers
import operator
from collections.abc import Sequence

import numpy as np
import torch

from smoothcert._util.checks import ParameterError

_FORMS = "must be (images, labels) or a dataset of (image, label) pairs"


def dataset_length(data, name: str = "data") -> int:
    """The number of examples of ``data`` (the forms of this module's docstring); a pair of
    inputs and labels must hold one label per input.

    Raises
    ------
    ParameterError
        Naming ``name``, if ``data`` is none of the forms or its pair is mismatched.
    """
    if _is_pair(data):
        if np.ndim(data[1]) == 0:
            raise ParameterError(
                name,
                f"labels must hold one label per input, got a single label of shape "
                f"{tuple(np.shape(data[1]))} (pass a batch: inputs [B, ...] and labels [B])",
            )
        if len(data[0]) != len(data[1]):
            raise ParameterError(name, f"has {len(data[0])} inputs but {len(data[1])} labels")
        return len(data[0])
    if hasattr(data, "__len__"):
        return len(data)
    if _has_arrays(data):
        return len(data.labels)
    raise ParameterError(name, _FORMS)


def batch_of(data, indices: Sequence[int], name: str = "data") -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) of ``data`` at ``indices``, as tensors in the data's own dtypes (the
    labels of (x, y) items as int64).

    Raises
    ------
    ParameterError
        Naming ``name``, if ``data`` is none of the forms or an item's label is not an
        integer class.
    """
    if _is_pair(data):
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return torch.as_tensor(data[0])[idx], torch.as_tensor(data[1])[idx]
    if callable(getattr(data, "batch", None)):
        return data.batch(list(indices))
    if hasattr(data, "__getitem__") and hasattr(data, "__len__"):
        items = [data[i] for i in indices]
        xs = [torch.as_tensor(x) for x, _ in items]
        labels = [_item_label(y, i, name) for i, (_, y) in zip(indices, items, strict=True)]
        return torch.stack(xs) if xs else torch.empty(0), torch.as_tensor(labels, dtype=torch.long)
    if _has_arrays(data):
        idx = torch.as_tensor(list(indices), dtype=torch.long)
        return torch.as_tensor(data.images)[idx], torch.as_tensor(data.labels)[idx]
    raise ParameterError(name, _FORMS)


def _item_label(y, index: int, name: str) -> int:
    # int(1.7) would silently make it class 1; operator.index takes only whole-number types.
    try:
        return operator.index(y)
    except TypeError:
        raise ParameterError(
            name, f"must hold integer class labels; example {index} has {y!r}"
        ) from None


def _has_arrays(data) -> bool:
    return hasattr(data, "images") and hasattr(data, "labels")


def _is_pair(data) -> bool:
    """Whether ``data`` is (inputs, labels) rather than a sequence of two (x, y) items."""
    if not (isinstance(data, tuple | list) and len(data) == 2):
        return False
    first = data[0]
    if isinstance(first, torch.Tensor | np.ndarray):
        return True
    # Python lists of inputs: a pair unless its first entry is itself an (x, label) item.
    return isinstance(first, tuple | list) and not _looks_like_item(first)


def _looks_like_item(value) -> bool:
    if len(value) != 2:
        return False
    label = value[1]
    if isinstance(label, torch.Tensor):
        return label.ndim == 0
    return isinstance(label, numbers.Number | np.generic) and not isinstance(label, bool)
