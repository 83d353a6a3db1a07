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
import numbers

import numpy as np

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


@dataclass
class ParameterCheck:
    """The comparison for one weight matrix or one bias vector."""
    layer: int
    name: str                  # "W" or "b"
    shape: tuple
    n_checked: int             # entries compared (all of them unless sample= was given)
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
        return all(c.passed for c in self.checks)

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
        columns = ("param", "shape", "checked", "max abs err", "max rel err", "worst at",
                   "backprop", "finite diff", "")
        rows = [(f"{c.name}[{c.layer}]", "x".join(map(str, c.shape)), str(c.n_checked),
                 f"{c.max_abs_error:.2e}", f"{c.max_rel_error:.2e}",
                 str(tuple(int(i) for i in c.worst_index)),
                 f"{c.backprop_at_worst:.6g}", f"{c.fd_at_worst:.6g}",
                 "ok" if c.passed else "FAIL") for c in self.checks]
        widths = [max(len(r[i]) for r in [columns, *rows]) for i in range(len(columns))]
        lines = [head, "  ".join(col.ljust(w) for col, w in zip(columns, widths)).rstrip()]
        lines += ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
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


def _central_difference(loss, param, index, eps):
    """(C(p + h) - C(p - h)) / (p⁺ - p⁻) for the entry param[index], perturbed in
    place, then restored bit for bit. The step is divided by the difference of the
    two perturbed values as stored in param's dtype, not by 2h, so rounding p ± h
    to float32 adds no error."""
    saved = param[index]
    h = eps * max(1.0, abs(float(saved)))
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

    relu has no derivative at 0: a row whose pre-activation lies within the step of
    0 makes the finite difference measure neither slope. With float32's larger step
    that can fail a correct kernel; check relu networks in float64, or on rows away
    from the kink.

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
    for l, name, param in _parameter_arrays(net):
        bp = backprop[l][0 if name == "W" else 1]
        indices = _sample_indices(param.shape, sample, rng)
        bp_values = np.array([float(bp[i]) for i in indices])
        fd_values = np.array([_central_difference(loss, param, i, eps) for i in indices])
        abs_err = np.abs(bp_values - fd_values)
        magnitude = np.maximum(np.abs(bp_values), np.abs(fd_values))
        rel_err = np.divide(abs_err, magnitude, out=np.zeros_like(abs_err), where=magnitude > 0)
        excess = abs_err - (atol + rtol * magnitude)
        worst = int(np.argmax(excess))
        report.checks.append(ParameterCheck(
            layer=l, name=name, shape=param.shape, n_checked=len(indices),
            max_abs_error=float(abs_err.max()), max_rel_error=float(rel_err.max()),
            worst_index=tuple(int(i) for i in indices[worst]),
            backprop_at_worst=float(bp_values[worst]), fd_at_worst=float(fd_values[worst]),
            passed=bool((excess <= 0).all())))
    return report


def _check_tolerance(name, value):
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value) \
            or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)
