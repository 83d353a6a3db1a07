"""Argument checks shared by the public API: each error names the argument, what
was expected and what was given."""
import numbers
from typing import Any

import numpy as np
import numpy.typing as npt

from . import _core


def check_dtype(dtype):
    try:
        dt = np.dtype(dtype)
    except TypeError:
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dtype!r}") from None
    if dt not in (np.float32, np.float64):
        raise TypeError(f"dtype must be 'float32' or 'float64', got {dt.name!r}")
    return dt


def check_choice(name, value, choices, hint=""):
    if not isinstance(value, str) or value not in choices:
        raise ValueError(f"unknown {name} {value!r}; expected one of "
                         f"{', '.join(map(repr, choices))}{hint}")
    return value


# Integer arguments reach C as 64-bit integers: larger ones are refused by name here
# rather than failing inside a conversion.
MAX_INTEGER = 2 ** 62


def short(value, limit=40):
    """repr(value), cut to `limit` characters: an error message names, it does not dump."""
    text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _real(name, value, integer, what):
    """value as a Python int or float, or TypeError/ValueError naming `name`."""
    kind = numbers.Integral if integer else numbers.Real
    if isinstance(value, bool) or not isinstance(value, kind):
        raise TypeError(f"{name} must be {what}, got {value!r}")
    if integer:
        return int(value)
    try:
        return float(value)   # Fraction, NumPy scalars, big ints: all Reals convert
    except OverflowError:
        raise ValueError(f"{name} = {short(value)} is too large: beyond the range of a float") from None


def check_positive(name, value, integer=False, upper=None):
    """A positive number (integer=True: a positive integer), finite, at most `upper`
    (integers: at most MAX_INTEGER when upper is None)."""
    if type(value) is int or (type(value) is float and not integer):  # the common case, fast
        if 0 < value <= (MAX_INTEGER if integer or type(value) is int else float("inf")) and \
                value != float("inf") and (upper is None or value <= upper):
            return value if integer else float(value)
    value = _real(name, value, integer, f"a positive {'integer' if integer else 'number'}")
    if value <= 0 or (not integer and not np.isfinite(value)):
        raise ValueError(f"{name} must be positive, got {value!r}")
    limit = upper if upper is not None else MAX_INTEGER if integer else None
    if limit is not None and value > limit:
        raise ValueError(f"{name} must be at most {limit}, got {short(value)}")
    return value


def check_real(name, value, low, high=None, low_open=False):
    """A finite number in [low, high), or (low, high) with low_open; no upper bound
    without high."""
    value = _real(name, value, False, "a finite number")
    if not np.isfinite(value):
        raise TypeError(f"{name} must be a finite number, got {value!r}")
    if (value <= low if low_open else value < low) or (high is not None and value >= high):
        interval = f"{'(' if low_open else '['}{low}, {high if high is not None else 'inf'})"
        raise ValueError(f"{name} must be in {interval}, got {value!r}")
    return value


def check_integer(name, value, low):
    """An integer >= low (and at most MAX_INTEGER)."""
    value = _real(name, value, True, f"an integer >= {low}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value!r}")
    if value > MAX_INTEGER:
        raise ValueError(f"{name} must be at most {MAX_INTEGER}, got {short(value)}")
    return value


def check_nonnegative(name, value, upper=None):
    """A finite number >= 0, and below `upper` when given."""
    if type(value) is float and 0 <= value < (upper if upper is not None else float("inf")):
        return value
    return check_real(name, value, 0.0, upper)


def check_sgd_settings(lr: float, momentum: float = 0.0, weight_decay: float = 0.0,
                       nesterov: bool = False, dtype: Any = None) -> tuple[float, float, float, bool]:
    """The settings of one SGD step, checked: (lr, momentum, weight_decay, nesterov).
    With dtype, each must also be a finite number of that dtype: C computes in the
    parameters' dtype, where a float32 lr of 1e39 is inf."""
    lr = check_positive("lr", lr)
    momentum = check_nonnegative("momentum", momentum, upper=1.0)
    weight_decay = check_nonnegative("weight_decay", weight_decay)
    if nesterov and momentum == 0:
        raise ValueError("nesterov=True needs momentum > 0")
    if dtype is not None:
        check_representable(dtype, lr=lr, weight_decay=weight_decay)
    return lr, momentum, weight_decay, bool(nesterov)


def check_adam_settings(betas, eps):
    """Adam's (beta1, beta2, eps), checked: betas a pair in [0, 1), eps > 0."""
    try:
        beta1, beta2 = betas
    except (TypeError, ValueError):
        raise TypeError(f"betas must be a pair (beta1, beta2), got {short(betas)}") from None
    beta1 = check_real("betas[0]", beta1, 0.0, 1.0)
    beta2 = check_real("betas[1]", beta2, 0.0, 1.0)
    return beta1, beta2, check_positive("eps", eps)


def check_representable(dtype, **values):
    """Each value finite in dtype (float32 or float64), or ValueError naming it."""
    biggest = float(np.finfo(dtype).max)
    for name, value in values.items():
        if abs(value) > biggest:
            raise ValueError(f"{name} = {value!r} overflows {np.dtype(dtype).name}, the parameters' "
                             f"dtype (largest {biggest:.3g})")


def _check_finite(name, a, n_threads=1):
    """Raise if a (C-contiguous float32/float64) holds NaN or inf; scanned in C (by up
    to n_threads threads), no copy."""
    i = _core.first_nonfinite(a, n_threads)
    if i >= 0:
        where = tuple(int(k) for k in np.unravel_index(i, a.shape))
        raise ValueError(f"{name} contains NaN or inf (first at index {where})")


def check_X(X: Any, n_features: int, dtype: Any, name: str = "X", n_threads: int = 1
            ) -> npt.NDArray[Any]:
    """X as a C-contiguous (n, n_features) array of dtype: returned as it is when it
    already is one (no copy), otherwise converted once. Checked for NaN/inf by up to
    n_threads threads."""
    if not (type(X) is np.ndarray and X.dtype == dtype and X.flags.c_contiguous):
        if not hasattr(X, "shape") or not hasattr(X, "dtype"):
            X = as_array(X, name, "a 2-D array of numbers (n_samples, n_features)")
        if not (np.issubdtype(X.dtype, np.number) or X.dtype == np.bool_) or \
                np.issubdtype(X.dtype, np.complexfloating):
            raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D (n_samples, n_features), got shape {X.shape}")
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has 0 samples")
    if X.shape[1] != n_features:
        raise ValueError(f"{name} has {X.shape[1]} features per sample but the network's input "
                         f"layer has {n_features}")
    X = np.ascontiguousarray(X, dtype=dtype)
    _check_finite(name, X, n_threads)
    return X


def as_array(a, name, what):
    """np.asarray(a), with NumPy's error for ragged or mixed sequences naming `name`."""
    try:
        return np.asarray(a)
    except (ValueError, TypeError) as e:
        raise ValueError(f"{name} must be {what}; it could not be made an array "
                         f"(rows of different lengths?): {e}") from None


def check_labels(y: Any, n_samples: int, n_classes: int, name: str = "y") -> npt.NDArray[np.int32]:
    """Class labels as int32 in [0, n_classes)."""
    y = as_array(y, name, "a 1-D array of class labels")
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D class labels, got shape {y.shape}")
    if len(y) != n_samples:
        raise ValueError(f"len({name}) = {len(y)} but X has {n_samples} samples")
    if y.dtype.kind in "iu":
        pass
    elif np.issubdtype(y.dtype, np.floating):
        if not np.isfinite(y).all():
            raise ValueError(f"{name} contains NaN or inf")
        if not (y == np.round(y)).all():
            i = int(np.argmax(y != np.round(y)))
            raise ValueError(f"{name} must hold integer class labels, got {name}[{i}] = {y[i]}")
    elif not (np.issubdtype(y.dtype, np.integer) or y.dtype == np.bool_):
        raise TypeError(f"{name} must hold integer class labels, got dtype {y.dtype}")
    # the range check runs in C on int32/int64 as given (before a cast could wrap values)
    checked = y if y.dtype in (np.int32, np.int64) and y.flags.c_contiguous else \
        np.ascontiguousarray(y, dtype=np.int64)
    i = _core.first_bad_label(checked, n_classes)
    if i >= 0:
        raise ValueError(f"{name} has label {y[i]}, outside [0, {n_classes}) for a network "
                         f"with {n_classes} outputs")
    return np.ascontiguousarray(y, dtype=np.int32)


def check_targets(y: Any, n_samples: int, n_outputs: int, dtype: Any, name: str = "y") -> npt.NDArray[Any]:
    """Regression targets as a C-contiguous (n, n_outputs) array of dtype."""
    y = as_array(y, name, "an array of regression targets")
    if y.ndim == 1 and n_outputs == 1:
        y = y.reshape(-1, 1)
    if y.ndim != 2 or y.shape[1] != n_outputs:
        expected = "(n_samples,) or (n_samples, 1)" if n_outputs == 1 else f"(n_samples, {n_outputs})"
        raise ValueError(f"{name} must have shape {expected} for a network with {n_outputs} "
                         f"outputs, got {y.shape}")
    if len(y) != n_samples:
        raise ValueError(f"len({name}) = {len(y)} but X has {n_samples} samples")
    if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {y.dtype}")
    y = np.ascontiguousarray(y, dtype=dtype)
    _check_finite(name, y)
    return y


def check_target_range(y: npt.NDArray[Any], loss: str, name: str = "y") -> None:
    """The targets a loss is defined for: probabilities in [0, 1] for
    binary_cross_entropy, counts or rates >= 0 for poisson."""
    low, high, what = {"binary_cross_entropy": (0.0, 1.0, "in [0, 1] (probabilities)"),
                       "poisson": (0.0, np.inf, ">= 0 (counts or rates)")}.get(loss, (None,) * 3)
    if low is None:
        return
    bad = np.flatnonzero(((y < low) | (y > high)).any(axis=1))
    if len(bad):
        i = int(bad[0])
        raise ValueError(f"{name} must be {what} for loss={loss!r}; row {i} is "
                         f"{short(y[i].tolist())} ({len(bad)} such rows)")


def check_sample_weight(sample_weight: Any, n_samples: int, dtype: Any,
                        name: str = "sample_weight") -> npt.NDArray[Any] | None:
    """Per-sample weights as a C-contiguous (n_samples,) array of dtype: finite, >= 0,
    not all 0. None stays None (every sample weighs 1)."""
    if sample_weight is None:
        return None
    w = as_array(sample_weight, name, "a 1-D array of weights, one per sample")
    if w.ndim != 1:
        raise ValueError(f"{name} must be 1-D (n_samples,), got shape {w.shape}")
    if len(w) != n_samples:
        raise ValueError(f"len({name}) = {len(w)} but X has {n_samples} samples")
    if not (np.issubdtype(w.dtype, np.number) or w.dtype == np.bool_) or \
            np.issubdtype(w.dtype, np.complexfloating):
        raise TypeError(f"{name} must hold real numbers, got dtype {w.dtype}")
    with np.errstate(over="ignore"):   # a weight beyond dtype's range: inf, refused next
        w = np.ascontiguousarray(w, dtype=dtype)
    _check_finite(name, w)
    negative = np.flatnonzero(w < 0)
    if len(negative):
        raise ValueError(f"{name} must be >= 0; sample {int(negative[0])} weighs "
                         f"{w[negative[0]]!r} ({len(negative)} negative weights)")
    if not w.any():
        raise ValueError(f"{name} is 0 for every sample: there is nothing to fit")
    return w
