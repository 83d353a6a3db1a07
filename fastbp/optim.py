"""The update rules as tools of their own: the in-place SGD and Adam updates for any
float arrays, and the learning-rate schedules that `Network.fit` applies per epoch."""
from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core
from ._validation import (check_adam_settings, check_choice, check_nonnegative, check_positive,
                          check_representable, check_sgd_settings)

SCHEDULES = ("constant", "invscaling", "step", "adaptive")


def sgd_update(param: npt.NDArray[np.floating[Any]], grad: npt.NDArray[np.floating[Any]], lr: float, momentum: float = 0.0,
               velocity: npt.NDArray[np.floating[Any]] | None = None, weight_decay: float = 0.0,
               nesterov: bool = False) -> npt.NDArray[np.floating[Any]]:
    """One gradient-descent step on ``param``, in place: w <- w - lr * (g + weight_decay * w).

    With ``momentum`` > 0 a ``velocity`` array of param's shape (zeros to start) is
    required and updated in place, as in PyTorch: v <- momentum * v + g', then
    w <- w - lr * v, or w <- w - lr * (g' + momentum * v) with ``nesterov``.
    ``param``, ``grad`` and ``velocity`` must be C-contiguous arrays of one dtype,
    float32 or float64. Returns ``param``.

    >>> import numpy as np, fastbp
    >>> x = np.array([-3.0])
    >>> fastbp.sgd_update(x, 2 * x, lr=0.25)   # f(x) = x², f'(x) = 2x
    array([-1.5])
    """
    lr, momentum, weight_decay, nesterov = check_sgd_settings(lr, momentum, weight_decay, nesterov)
    _check_update_arrays(param, grad=grad, velocity=velocity)
    check_representable(param.dtype, lr=lr, weight_decay=weight_decay)
    if momentum > 0 and velocity is None:
        raise ValueError("momentum > 0 needs a velocity array (np.zeros_like(param) to start)")
    if momentum == 0:
        velocity = None
    _core.update_raw(_core.RULE_SGD, param, grad, velocity, None, lr, momentum, weight_decay, nesterov)
    return param


def adam_update(param: npt.NDArray[np.floating[Any]], grad: npt.NDArray[np.floating[Any]],
                m: npt.NDArray[np.floating[Any]], v: npt.NDArray[np.floating[Any]], step: int,
                lr: float, betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                weight_decay: float = 0.0, decoupled: bool = False) -> npt.NDArray[np.floating[Any]]:
    """One Adam step on ``param``, in place, as PyTorch's ``torch.optim.Adam``
    (``decoupled=True``: ``torch.optim.AdamW``). ``m`` and ``v`` are the moments
    (zeros to start), updated in place; ``step`` is the 1-based count of this update:

        g' = g + weight_decay * w          (Adam; AdamW instead: w <- w * (1 - lr * weight_decay))
        m <- beta1 * m + (1 - beta1) * g';  v <- beta2 * v + (1 - beta2) * g'^2
        w <- w - lr / (1 - beta1^step) * m / (sqrt(v) / sqrt(1 - beta2^step) + eps)

    All arrays C-contiguous, of one shape and dtype (float32 or float64). Returns ``param``.
    One departure from PyTorch: the step reads an ``m`` below the smallest normal number
    of the dtype as 0 (a subnormal multiplication is slow); ``m`` keeps its exact value,
    and only weights smaller than about 2^25 * lr / (1 - beta1^step) * tiny / eps in
    magnitude can come out differently.

    >>> import numpy as np, fastbp
    >>> x, m, v = np.array([-3.0]), np.zeros(1), np.zeros(1)
    >>> fastbp.adam_update(x, 2 * x, m, v, step=1, lr=0.5)   # a first step is lr * sign(g)
    array([-2.5])
    """
    beta1, beta2, eps = check_adam_settings(betas, eps)
    lr = check_positive("lr", lr)
    weight_decay = check_nonnegative("weight_decay", weight_decay)
    step = check_positive("step", step, integer=True)
    _check_update_arrays(param, grad=grad, m=m, v=v)
    check_representable(param.dtype, lr=lr, weight_decay=weight_decay, eps=eps)
    rule = _core.RULE_ADAMW if decoupled else _core.RULE_ADAM
    _core.update_raw(rule, param, grad, m, v, lr, 0.0, weight_decay, False, beta1, beta2, eps, step)
    return param


def _check_update_arrays(param, **others):
    """param and the arrays of one update: C-contiguous NumPy arrays of one float dtype
    and shape (None for an array the update does not use)."""
    for name, a in {"param": param, **others}.items():
        if a is None:
            continue
        if not isinstance(a, np.ndarray):
            raise TypeError(f"{name} must be a NumPy array, got {type(a).__name__}")
        if a.dtype not in (np.float32, np.float64):
            raise TypeError(f"{name} must be float32 or float64, got {a.dtype}")
        if not a.flags.c_contiguous:
            raise ValueError(f"{name} must be C-contiguous (use np.ascontiguousarray)")
        if a.dtype != param.dtype or a.shape != param.shape:
            raise ValueError(f"{name} must match param's shape {param.shape} and dtype "
                             f"{param.dtype}, got {a.shape} {a.dtype}")
        if name != "grad" and not a.flags.writeable:
            raise ValueError(f"{name} must be writeable: it is updated in place")


class Schedule:
    """The learning rate of each epoch, and whether training should stop.

    - ``constant``: lr every epoch.
    - ``invscaling``: lr / (1 + decay * n) at update n of this fit (applied per update in C).
    - ``step``: lr * gamma ** (epoch // step_size).
    - ``adaptive``: lr, divided by 5 each time the monitored loss has not improved by
      ``tol`` (1e-4 when None) for ``n_iter_no_change`` epochs.
    With ``tol`` set, training stops after ``n_iter_no_change`` epochs without an
    improvement of ``tol`` (for ``adaptive``: once lr has fallen below lr * 1e-6).
    """

    def __init__(self, name, lr, decay=1e-4, step_size=10, gamma=0.1, tol=None, n_iter_no_change=5):
        self.name = check_choice("schedule", name, SCHEDULES)
        self.lr0 = check_positive("lr", lr)
        self.decay = check_nonnegative("decay", decay)
        self.step_size = check_positive("step_size", step_size, integer=True)
        self.gamma = check_positive("gamma", gamma)
        self.tol = None if tol is None else check_nonnegative("tol", tol)
        self.n_iter_no_change = check_positive("n_iter_no_change", n_iter_no_change, integer=True)
        self.lr = self.lr0
        self.best = np.inf
        self.stale = 0

    @property
    def per_update_decay(self):
        return self.decay if self.name == "invscaling" else 0.0

    def epoch_lr(self, epoch):
        if self.name == "step":
            self.lr = self.lr0 * self.gamma ** (epoch // self.step_size)
        return self.lr

    def end_epoch(self, loss):
        """Record the epoch's monitored loss; returns True when training should stop."""
        tol = self.tol if self.tol is not None else 1e-4
        if loss < self.best - tol:
            self.stale = 0
        else:
            self.stale += 1
        self.best = min(self.best, loss)
        if self.stale < self.n_iter_no_change:
            return False
        if self.name == "adaptive":
            if self.lr > self.lr0 * 1e-6:
                self.lr /= 5
                self.stale = 0
                return False
            return self.tol is not None
        return self.tol is not None
