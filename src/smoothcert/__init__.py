"""smoothcert: certified robustness of PyTorch classifiers by randomized smoothing.

The public API is re-exported here lazily, so `import smoothcert` stays cheap and a
missing optional part never breaks the rest.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

# name -> module that defines it
_EXPORTS: dict[str, str] = {
    "ABSTAIN": "smoothcert.certify.stats",
    "ParameterError": "smoothcert._util.checks",
    "Certificate": "smoothcert.certify.smoothing",
    "SmoothedClassifier": "smoothcert.certify.smoothing",
    "load_dataset": "smoothcert.data",
    "create_model": "smoothcert.models",
    "list_models": "smoothcert.models",
    "save_checkpoint": "smoothcert.models.checkpoint",
    "load_checkpoint": "smoothcert.models.checkpoint",
    "train": "smoothcert.training",
    "certify_dataset": "smoothcert.runs",
    "predict_dataset": "smoothcert.runs",
    "CertifyOptions": "smoothcert.runs",
    "PredictOptions": "smoothcert.runs",
    "Selection": "smoothcert.runs",
    "AdaptiveOptions": "smoothcert.certify.adaptive",
    "analyze": "smoothcert.analysis",
    "pgd_l2": "smoothcert.attacks",
    "pgd_l2_smoothed": "smoothcert.attacks",
    "robust_accuracy": "smoothcert.attacks",
    "surrogate": "smoothcert.distributional",
    "distributional_bound": "smoothcert.distributional",
    "distributional_curve": "smoothcert.distributional",
    "worst_case_loss": "smoothcert.distributional",
}

__all__ = ["__version__", *_EXPORTS]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'smoothcert' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
