"""Backpropagation checked against finite differences, and the naive gradient.

Both functions below differentiate the loss the slow way: perturb one parameter
of the network in place, run the network's own C forward pass on (X, y) and take
central differences

    dC/dp ≈ (C(p + h) - C(p - h)) / (2h).

`gradcheck` compares that with `Network.gradients` (backpropagation) and reports
the error per weight matrix and bias vector; `naive_gradients` returns it for
every parameter — one pair of forward passes per parameter, which is exactly the
cost backpropagation avoids (see benchmarks/bp_vs_naive.py).
"""
from dataclasses import dataclass, field
import math
import numbers

import numpy as np

from . import reference
from ._validation import check_positive

# Default central-difference step, relative to max(1, |p|), per dtype. float64
# leaves rounding noise (~1e-16 / h) and truncation error (~h²) both near 1e-10.
# float32's forward pass rounds each loss to ~1e-7 relative, so the noise is
# ~1e-7 / h: h = 1e-2 balances it against truncation (~h² · C''' / 6). Measured on
# small sigmoid/tanh/identity networks, both losses: max |bp - fd| ≈ 5e-5 in
# float32 (gradients up to 1.2), ≈ 1e-9 in float64.
DEFAULT_EPS = {np.dtype(np.float64): 1e-6, np.dtype(np.float32): 1e-2}
# An entry passes when |bp - fd| <= atol + rtol * max(|bp|, |fd|). float32: 4x above
# the measured error of correct kernels, yet a 1e-3 error in one entry of a gradient
# up to ~3 in size still fails (the planted-fault test in tests/test_gradcheck.py).
DEFAULT_TOLERANCE = {np.dtype(np.float64): (1e-7, 1e-5),   # (atol, rtol)
                     np.dtype(np.float32): (2e-4, 2e-4)}
# Entries skipped because a kink lies within the step: past this share of all entries
# the report fails, as too little was compared.
MAX_SKIPPED_FRACTION = 0.25
# Near a relu kink the step shrinks to stay clear of it, down to eps / this (float32
# rounding noise, ~5e-8 / h, stays below its atol); closer kinks skip the entry.
MIN_STEP_DIVISOR = 10


@dataclass
class ParameterCheck:
    """The comparison for one weight matrix or one bias vector."""
    layer: int
    name: str                  # "W" or "b"
    shape: tuple
    n_checked: int             # entries compared (all of them unless sample= was given)
    n_skipped: int             # entries with a relu kink closer than eps / MIN_STEP_DIVISOR
    max_abs_error: float       # max |backprop - finite difference|
    max_rel_error: float       # max |backprop - fd| / max(|backprop|, |fd|); 0 where both are 0
    worst_index: tuple         # the entry with the largest excess over the tolerance
    backprop_at_worst: float
    fd_at_worst: float
    passed: bool


@dataclass
class GradcheckReport:
    """What `gradcheck` returns: one `ParameterCheck` per weight matrix and bias
    vector, the step and tolerances used, and ``passed`` when every check passed.
    ``str(report)`` is a table."""
    checks: list = field(default_factory=list)
    dtype: str = ""
    eps: float = 0.0
    atol: float = 0.0
    rtol: float = 0.0
    loss: float = 0.0           # the loss at the unperturbed parameters

    @property
    def passed(self):
        """Every compared entry within tolerance, and at most MAX_SKIPPED_FRACTION
        of all entries skipped (past that the check says too little)."""
        return all(c.passed for c in self.checks) and self.n_skipped <= \
            MAX_SKIPPED_FRACTION * (self.n_skipped + sum(c.n_checked for c in self.checks))

    @property
    def n_skipped(self):
        return sum(c.n_skipped for c in self.checks)

    @property
    def max_abs_error(self):
        return max((c.max_abs_error for c in self.checks), default=0.0)

    @property
    def max_rel_error(self):
        return max((c.max_rel_error for c in self.checks), default=0.0)

    def __bool__(self):
        return self.passed

    def __str__(self):
        head = (f"gradcheck ({self.dtype}, eps {self.eps:g}, pass if |bp - fd| <= "
                f"{self.atol:g} + {self.rtol:g}·max(|bp|, |fd|)), loss {self.loss:.6g}")
        columns = ("param", "shape", "checked", "skipped", "max abs err", "max rel err", "worst at",
                   "backprop", "finite diff", "")
        rows = [(f"{c.name}[{c.layer}]", "x".join(map(str, c.shape)), str(c.n_checked),
                 str(c.n_skipped),
                 f"{c.max_abs_error:.2e}", f"{c.max_rel_error:.2e}",
                 str(tuple(int(i) for i in c.worst_index)),
                 f"{c.backprop_at_worst:.6g}", f"{c.fd_at_worst:.6g}",
                 "ok" if c.passed else "FAIL") for c in self.checks]
        widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
        lines = [head, "  ".join(col.ljust(w) for col, w in zip(columns, widths)).rstrip()]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
        if self.n_skipped:
            lines.append(f"skipped: {self.n_skipped} entries with a relu kink closer than the "
                         "smallest usable step, neither passed nor failed")
        lines.append("PASSED" if self.passed else "FAILED")
        return "\n".join(lines)


def _check_eps(eps, dtype):
    if eps is None:
        return DEFAULT_EPS[dtype]
    eps = check_positive("eps", eps)
    if eps >= 1:
        raise ValueError(f"eps must be below 1 (a step relative to max(1, |p|)), got {eps!r}")
    return eps


def _loss_function(net, X, y):
    """A function of no arguments returning the mean loss of (X, y) through the
    network's C forward pass with its current parameters. X and y are validated
    once here, not on each of the thousands of calls that follow."""
    X, labels, targets = net._check_Xy(X, y)
    return lambda: net._evaluate_checked(X, labels, targets)["loss"]


def _central_difference(loss, param, index, eps, max_step=math.inf):
    """(C(p + h) - C(p - h)) / (p⁺ - p⁻) for the entry param[index], perturbed in
    place, then restored bit for bit; h = eps·max(1, |p|), at most max_step. The
    difference is divided by the two perturbed values' distance as stored in param's
    dtype, not by 2h, so rounding p ± h to float32 adds no error."""
    saved = param[index]
    h = min(eps * max(1.0, abs(float(saved))), max_step)
    up_value = param.dtype.type(float(saved) + h)
    down_value = param.dtype.type(float(saved) - h)
    try:
        param[index] = up_value
        up = loss()
        param[index] = down_value
        down = loss()
    finally:
        param[index] = saved
    return (up - down) / (float(up_value) - float(down_value))


class _KinkDistance:
    """How far one parameter may move before a row's relu pre-activation could
    change sign — where the loss has a kink and a finite difference measures
    neither slope.

    A step h in W[l][i, j] changes z_l[:, j] by h·a_{l-1}[:, i] (by h for b[l][j]);
    every activation here is 1-Lipschitz, so a later layer's |Δz_m| is at most
    |Δz_{m-1}| @ |W_m|. This bound is linear in h, so the largest step that cannot
    reach any relu kink is min |z| / bound(h = 1) over the relu layers at and after
    layer l. Pre-activations are computed in float64 from the network's parameters."""

    def __init__(self, net, X):
        self.relu = [a == "relu" for a in net.activations]     # hidden layers only
        if not any(self.relu):
            return
        weights = [w.astype(np.float64) for w in net.weights]
        self.abs_weights = [np.abs(w) for w in weights]
        self.inputs, self.abs_z = [], []     # input of each layer; |z| of hidden layers
        a = np.asarray(X, dtype=np.float64)
        for l, act in enumerate(net.activations):
            self.inputs.append(a)
            z = a @ weights[l] + net.biases[l].astype(np.float64)
            self.abs_z.append(np.abs(z))
            a = reference.ACTIVATION[act](z)
        self.inputs.append(a)

    def max_step(self, layer, name, index):
        """The largest step for this entry that no relu kink lies within (inf if none can)."""
        if not any(self.relu[layer:]):
            return math.inf
        j = index[-1]
        n = len(self.inputs[0])
        per_unit = np.abs(self.inputs[layer][:, index[0]]) if name == "W" else np.ones(n)
        limit = math.inf
        if self.relu[layer]:
            limit = _min_ratio(self.abs_z[layer][:, j], per_unit)
        bound = np.outer(per_unit, self.abs_weights[layer + 1][j]) \
            if layer + 1 < len(self.relu) else None
        for m in range(layer + 1, len(self.relu)):
            if self.relu[m]:
                limit = min(limit, _min_ratio(self.abs_z[m], bound))
            if m + 1 < len(self.relu):
                bound = bound @ self.abs_weights[m + 1]
        return limit


def _min_ratio(abs_z, bound):
    """min |z| / bound over the entries where bound > 0 (inf if there are none)."""
    moving = bound > 0
    return float((abs_z[moving] / bound[moving]).min()) if moving.any() else math.inf


def _parameter_arrays(net):
    """(layer, "W" or "b", array) for each parameter array, in layer order. The
    arrays are the network's own: the C side reads them in place."""
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        yield l, "W", w
        yield l, "b", b


def naive_gradients(net, X, y, eps=None):
    """The gradient of the mean loss over (X, y), one parameter at a time: for each
    weight and bias, two forward passes with it nudged by ±h (central differences),
    through the network's C forward kernel. Slow by design — 2 × (number of
    parameters) forward passes — and correct to finite-difference accuracy.

    Returns [(dW, db), ...] like `Network.gradients`; the parameters are unchanged
    afterwards. ``eps`` is the step relative to max(1, |p|) (default 1e-6 for
    float64, 1e-2 for float32).

    >>> import numpy as np, fastbp
    >>> net = fastbp.Network([3, 4, 2], activation="tanh", dtype="float64", seed=0)
    >>> X, y = np.ones((5, 3)), [0, 1, 0, 1, 1]
    >>> slow = fastbp.naive_gradients(net, X, y)
    >>> fast = net.gradients(X, y)
    >>> all(np.allclose(s, f, atol=1e-7) for sl, fl in zip(slow, fast) for s, f in zip(sl, fl))
    True
    """
    eps = _check_eps(eps, net.dtype)
    loss = _loss_function(net, X, y)
    grads = {}
    for l, name, param in _parameter_arrays(net):
        g = np.empty(param.shape, dtype=np.float64)
        for index in np.ndindex(param.shape):
            g[index] = _central_difference(loss, param, index, eps)
        grads[l, name] = g.astype(net.dtype)
    return [(grads[l, "W"], grads[l, "b"]) for l in range(net.n_layers)]


def _sample_indices(shape, sample, rng):
    """All indices of an array of this shape, or `sample` distinct ones at random."""
    size = int(np.prod(shape))
    if sample is None or sample >= size:
        flat = np.arange(size)
    else:
        flat = np.sort(rng.choice(size, size=sample, replace=False))
    return [np.unravel_index(i, shape) for i in flat]


def gradcheck(net, X, y, eps=None, sample=None, seed=0, atol=None, rtol=None):
    """Compare backpropagation (`Network.gradients`) with central finite differences
    of the loss, per weight matrix and bias vector; returns a `GradcheckReport`.

    Each finite difference perturbs one of the network's own parameters in place
    and runs the network's C forward pass (`Network.evaluate`), so it checks the
    kernels the network trains with, in its own dtype; every parameter is restored
    bit for bit. ``sample=k`` checks k entries per weight matrix and per bias vector,
    chosen at random (``seed``), instead of all of them — 2k forward passes each —
    so large networks stay quick. ``eps`` (step relative to max(1, |p|)), ``atol``
    and ``rtol`` default to values for the network's dtype: an entry passes when
    |bp - fd| <= atol + rtol * max(|bp|, |fd|).

    relu has no derivative at 0: a step that moves some row's pre-activation
    across 0 measures neither slope. So in relu networks each entry's step is cut
    to half the distance at which any row's relu input could change sign (a
    rigorous bound from the rows' pre-activations); an entry whose kink is closer
    than eps/10 (below which float32 rounding noise dominates) is skipped —
    counted in the report, neither passed nor failed. More than a quarter of the
    entries skipped fails the report: too little was compared.

    >>> import numpy as np, fastbp
    >>> net = fastbp.Network([3, 4, 2], activation="tanh", dtype="float64", seed=0)
    >>> report = fastbp.gradcheck(net, np.ones((5, 3)), [0, 1, 0, 1, 1])
    >>> report.passed
    True
    """
    eps = _check_eps(eps, net.dtype)
    default_atol, default_rtol = DEFAULT_TOLERANCE[net.dtype]
    atol = default_atol if atol is None else _check_tolerance("atol", atol)
    rtol = default_rtol if rtol is None else _check_tolerance("rtol", rtol)
    if sample is not None:
        sample = check_positive("sample", sample, integer=True)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"seed must be an integer, got {seed!r}")
    loss = _loss_function(net, X, y)
    backprop = net.gradients(X, y)
    rng = np.random.default_rng(seed)
    report = GradcheckReport(dtype=net.dtype.name, eps=eps, atol=atol, rtol=rtol, loss=loss())

    def error_and_excess(bp, fd):
        magnitude = max(abs(bp), abs(fd))
        return abs(bp - fd), abs(bp - fd) - (atol + rtol * magnitude)

    kinks = _KinkDistance(net, net._check_Xy(X, y)[0])
    for l, name, param in _parameter_arrays(net):
        bp_array = backprop[l][0 if name == "W" else 1]
        entries = []   # (index, bp, fd, abs error, excess over the tolerance)
        skipped = 0
        for index in _sample_indices(param.shape, sample, rng):
            step = eps * max(1.0, abs(float(param[index])))
            # Half the kink distance: the float64 bound vs the kernel's own rounding.
            max_step = kinks.max_step(l, name, index) / 2
            if max_step < step / MIN_STEP_DIVISOR:
                skipped += 1     # a kink closer than any step that rounding noise allows
                continue
            bp = float(bp_array[index])
            fd = _central_difference(loss, param, index, eps, max_step)
            abs_err, excess = error_and_excess(bp, fd)
            entries.append((index, bp, fd, abs_err, excess))
        report.checks.append(_summarise(l, name, param.shape, entries, skipped))
    return report


def _summarise(layer, name, shape, entries, skipped):
    """A ParameterCheck from the compared entries of one array."""
    if not entries:
        return ParameterCheck(layer=layer, name=name, shape=shape, n_checked=0, n_skipped=skipped,
                              max_abs_error=0.0, max_rel_error=0.0, worst_index=(),
                              backprop_at_worst=float("nan"), fd_at_worst=float("nan"),
                              passed=True)
    index, bp, fd, _, _ = max(entries, key=lambda e: e[4])
    rel = [e[3] / max(abs(e[1]), abs(e[2])) for e in entries if e[3] > 0]
    return ParameterCheck(layer=layer, name=name, shape=shape, n_checked=len(entries),
                          n_skipped=skipped, max_abs_error=max(e[3] for e in entries),
                          max_rel_error=max(rel, default=0.0),
                          worst_index=tuple(int(i) for i in index), backprop_at_worst=bp,
                          fd_at_worst=fd, passed=all(e[4] <= 0 for e in entries))


def _check_tolerance(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)
