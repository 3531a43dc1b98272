"""Training: one loop (``train``), per-batch losses as registered methods."""

from __future__ import annotations

from smoothcert.training.config import TrainConfig, TrainResult
from smoothcert.training.loop import train
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
