"""Pictures of a training run, written to PNG files.

Needs matplotlib (``pip install fastbp[plot]``). Figures are drawn on matplotlib's
Agg canvas directly, without pyplot, so plotting neither opens windows nor changes
the backend of an interactive session.
"""
from __future__ import annotations

import math
import os

from typing import TYPE_CHECKING, Mapping, Sequence

import numpy as np

if TYPE_CHECKING:
    from .network import History, Network

MAX_TILES = 64


def figure(width: float, height: float, dpi: int = 100):
    """A matplotlib Figure of width x height inches on its own Agg canvas (no pyplot,
    no window, the session's backend untouched), ready for ``fig.savefig(path)``.
    Raises ImportError naming the package to install when matplotlib is missing."""
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise ImportError("fastbp.plot needs matplotlib: pip install fastbp[plot] "
                          "(or pip install matplotlib)") from None
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    return fig


def _series(hist, name):
    if isinstance(hist, dict):
        values = hist.get(name)
    else:
        values = getattr(hist, name, None)
    return [float(v) for v in values] if values else []


def history(hist: History | Mapping[str, Sequence[float]], path: str | os.PathLike[str],
            val_label: str = "validation") -> None:
    """Loss and accuracy per epoch, train and validation, as a PNG at ``path``.

    ``hist`` is the `fastbp.History` that `Network.fit` returns, or a dict of lists
    with any of the keys "loss", "val_loss", "accuracy" (train) and "val_accuracy".

    >>> import fastbp.plot
    >>> fastbp.plot.history({"loss": [0.9, 0.4, 0.3], "val_accuracy": [0.8, 0.9, 0.92]},
    ...                     "run.png")                                    # doctest: +SKIP
    """
    loss, val_loss = _series(hist, "loss"), _series(hist, "val_loss")
    acc, val_acc = _series(hist, "accuracy"), _series(hist, "val_accuracy")
    if not (loss or val_loss or acc or val_acc):
        raise ValueError("hist: no per-epoch loss or accuracy to plot")
    fig = figure(10, 4)
    from matplotlib.ticker import MaxNLocator
    ax_loss, ax_acc = fig.subplots(1, 2)
    for ax, series, title in ((ax_loss, ((loss, "train"), (val_loss, val_label)), "loss"),
                              (ax_acc, ((acc, "train"), (val_acc, val_label)), "accuracy")):
        drawn = False
        for values, label in series:
            if values:
                ax.plot(range(1, len(values) + 1), values, marker="o", label=label)
                drawn = True
        ax.set_title(title)
        ax.set_xlabel("epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.grid(True, alpha=0.3)
        if drawn:
            ax.legend()
        else:
            ax.text(0.5, 0.5, f"no {title} recorded", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")


def weights(net: Network, path: str | os.PathLike[str], max_units: int = MAX_TILES) -> None:
    """The first layer's weights, one square tile per hidden unit (up to
    ``max_units``), as a PNG at ``path``. The input size must be a square, such
    as MNIST's 784 = 28 × 28. Each tile is scaled to its own largest |weight|:
    red positive, blue negative.

    >>> import fastbp, fastbp.plot
    >>> fastbp.plot.weights(fastbp.Network([784, 16, 10], seed=0), "w.png")   # doctest: +SKIP
    """
    W = np.asarray(net.weights[0], dtype=np.float64)        # (n_in, n_units)
    side = math.isqrt(W.shape[0])
    if side * side != W.shape[0]:
        raise ValueError(f"net: the first layer has {W.shape[0]} inputs, not a square image")
    if isinstance(max_units, bool) or not isinstance(max_units, int) or max_units < 1:
        raise ValueError(f"max_units must be a positive integer, got {max_units!r}")
    n = min(W.shape[1], max_units)
    cols = math.ceil(math.sqrt(n))
    rows = math.ceil(n / cols)
    fig = figure(cols * 1.1, rows * 1.1 + 0.4)
    axes = np.atleast_1d(fig.subplots(rows, cols)).ravel()
    for k, ax in enumerate(axes):
        ax.set_axis_off()
        if k < n:
            tile = W[:, k].reshape(side, side)
            limit = np.abs(tile).max() or 1.0
            ax.imshow(tile, cmap="RdBu_r", vmin=-limit, vmax=limit, interpolation="nearest")
    fig.suptitle(f"first-layer weights, {n} of {W.shape[1]} units")
    fig.tight_layout()
    fig.savefig(os.fspath(path), format="png")
