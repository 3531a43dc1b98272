"""Training: one loop (``train``), per-batch losses as registered methods."""

from __future__ import annotations

from smoothcert.training.loop import TrainConfig, TrainResult, train
from smoothcert.training.method import BatchContext, Method, MethodOutput, register
from smoothcert.training.registry import get_method, list_methods, method_class

__all__ = [
    "BatchContext",
    "Method",
    "MethodOutput",
    "TrainConfig",
    "TrainResult",
    "get_method",
    "list_methods",
    "method_class",
    "register",
    "train",
]
