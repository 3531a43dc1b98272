"""Resume state without pickle: optimizer state flattened into named tensors + JSON structure.

``optimizer.state_dict()`` is ``{"state": {param_index: {key: tensor | number | None}},
"param_groups": [JSON-able dicts]}``. Tensors become ``optim/<index>/<key>`` entries of a
safetensors file; everything else goes into the JSON header, so restoring never unpickles.
"""

from __future__ import annotations

from typing import Any

import torch

TENSOR = "__tensor__"


def flatten_optimizer(state_dict: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors: dict[str, torch.Tensor] = {}
    structure: dict[str, dict[str, Any]] = {}
    for index, entries in state_dict["state"].items():
        s: dict[str, Any] = {}
        for key, value in entries.items():
            if isinstance(value, torch.Tensor):
                tensors[f"optim/{index}/{key}"] = value
                s[key] = TENSOR
            else:
                s[key] = value
        structure[str(index)] = s
    return tensors, {"state": structure, "param_groups": state_dict["param_groups"]}


def unflatten_optimizer(
    tensors: dict[str, torch.Tensor], structure: dict[str, Any]
) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for index, entries in structure["state"].items():
        state[int(index)] = {
            key: tensors[f"optim/{index}/{key}"] if value == TENSOR else value
            for key, value in entries.items()
        }
    return {"state": state, "param_groups": structure["param_groups"]}
