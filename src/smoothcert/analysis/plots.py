"""Certified accuracy against radius as a figure (Cohen et al. Figures 6 and 7): one curve per
run, optionally in panels."""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from smoothcert.analysis.certify import RunSummary, certified_accuracy


def check_plot_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path, refused unless its suffix is a file type matplotlib writes: without
    one matplotlib silently appends ".png" and the figure lands somewhere else than asked."""
    from matplotlib.backend_bases import FigureCanvasBase

    path = Path(path)
    kinds = FigureCanvasBase.get_supported_filetypes()
    if path.suffix[1:].lower() not in kinds:
        raise ValueError(
            f"plot path {path} must end in a file type matplotlib can write "
            f"({', '.join('.' + k for k in sorted(kinds))}), got suffix {path.suffix!r}"
        )
    if path.is_dir():
        raise ValueError(f"plot path {path} is a directory")
    return path


def _check_groups(groups: Mapping[str, Sequence[RunSummary]]) -> None:
    if not groups:
        raise ValueError("groups must hold at least one panel of run summaries, got none")
    for group, summaries in groups.items():
        if not summaries:
            raise ValueError(f"group {group!r} has no run summaries to plot")


def plot_curves(
    groups: dict[str, Sequence[RunSummary]], path: str | os.PathLike, *, title: str | None = None
) -> None:
    """Plot certified accuracy against radius, one line per summary (Figure 6 style).

    One panel per group (e.g. Figure 8's three panels); the curves are computed from each
    summary's per-example radii, so they are exact between the tabulated radii.

    Parameters
    ----------
    groups : dict of str to sequence of RunSummary
        Panel title -> the summaries plotted in it (each with ``per_example``).
    path : str or os.PathLike
        The figure file; its suffix (``.png``, ``.pdf``, ``.svg``, ...) picks the format.
        Missing parent folders are made.
    title : str, optional
        A title over all panels.

    Raises
    ------
    ValueError
        If ``path`` has no suffix matplotlib writes or is a folder, or a group is empty.
    """
    path = check_plot_path(path)
    _check_groups(groups)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(groups), figsize=(5 * len(groups), 4), squeeze=False)
    for ax, (group, summaries) in zip(axes[0], groups.items(), strict=True):
        r_max = max(
            max(float(np.max(s.per_example["radius"], initial=0.0)), *s.radii, 0.0)
            for s in summaries
        )
        grid = np.linspace(0.0, r_max * 1.05 + 1e-9, 400)
        for s in summaries:
            curve = certified_accuracy(s.per_example["radius"], s.per_example["correct"], grid)
            ax.plot(grid, curve, label=s.name)
        ax.set_xlabel("L2 radius")
        ax.set_ylabel("certified accuracy")
        ax.set_ylim(0, 1)
        ax.grid(alpha=0.3)
        ax.set_title(group)
        ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
