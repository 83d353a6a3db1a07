"""scikit-learn estimators whose training runs in fastbp's C core.

`MLPClassifier` and `MLPRegressor` take scikit-learn's parameters, defaults and
meanings (solvers "adam", "sgd" and "lbfgs", ``sample_weight``, sparse X), so they
drop into pipelines and searches in place of `sklearn.neural_network.MLPClassifier` /
`MLPRegressor`:

    from fastbp.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(256,), max_iter=5)
    clf.fit(X_train, y_train).score(X_test, y_test)

This module imports scikit-learn; ``import fastbp`` does not import this module.

How scikit-learn's training maps onto `fastbp.Network.fit` (one call per epoch for
the stochastic solvers, one call for L-BFGS):

- Precision: the network computes in X's precision, float32 for float32 X and float64
  otherwise, as scikit-learn does (``coefs_`` have X's dtype).
- ``alpha``: scikit-learn adds alpha * W to the summed-loss gradient and divides by
  the batch's size (with sample weights, by the batch's weight sum), weights only:
  `Network.fit`'s weight_decay with ``decay_on_sum=True``.
- SGD momentum: scikit-learn keeps v <- momentum * v - lr * g, fastbp v <- momentum * v
  + g and steps by lr * v. At a fixed lr the steps are identical; when the lr changes
  between epochs ("invscaling", "adaptive") the stored velocity is rescaled by
  lr_old / lr_new, so the steps stay identical then too.
- Adam is fastbp's "adam_sklearn" rule, scikit-learn's AdamOptimizer in C.
- ``learning_rate="invscaling"`` (SGD): lr = learning_rate_init / (t + 1) ** power_t
  at the end of each epoch, t = samples seen, as scikit-learn does.
- L-BFGS: `Network.fit(optimizer="lbfgs")`, scipy's L-BFGS-B on the full-batch
  objective with scikit-learn's options (maxiter, maxfun, gtol).
- Squared error: fastbp's "mse" is the mean over outputs of (yhat - y)², scikit-learn's
  gradient that of the half squared error summed over outputs; the gradient's scale
  is absorbed in lr, decay, Adam's epsilon and L-BFGS's gtol, so the steps are the
  same, and ``loss_`` is reported on scikit-learn's scale.
- Binary classification: one logistic output (``coefs_[-1]`` has one column), as in
  scikit-learn; multi-label y (an indicator matrix): one logistic output per label.
- ``loss_`` of the stochastic solvers adds scikit-learn's penalty, alpha / (2 * batch)
  * Σ‖W‖² per batch, with the mean of Σ‖W‖² at the epoch's start and end standing for
  each batch's (scikit-learn uses the weights before each batch's step).
"""
from __future__ import annotations

import copy
import numbers
import warnings
from typing import Any, Sequence, TypeVar

import numpy as np
import scipy.sparse
from scipy.special import xlogy
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import train_test_split
from sklearn.neural_network import MLPClassifier as SklearnMLPClassifier
from sklearn.neural_network import MLPRegressor as SklearnMLPRegressor
from sklearn.preprocessing import LabelBinarizer
from sklearn.utils import check_random_state
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets, type_of_target, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sklearn_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    _sklearn_validate_data = None

from ._validation import check_choice, check_integer, check_real
from .network import Network

_Estimator = TypeVar("_Estimator", bound="_BaseMLP")

# scikit-learn's hidden activation names -> fastbp's
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
SOLVERS = ("adam", "sgd", "lbfgs", "gd")
STOCHASTIC_SOLVERS = ("adam", "sgd", "gd")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
# MLPRegressor's loss -> (fastbp's loss, out_activation_)
REGRESSION_LOSSES = {"squared_error": ("mse", "identity"), "poisson": ("poisson", "exp")}
AUTO_BATCH = 200            # batch_size="auto" is min(200, n_samples), as in scikit-learn
ADAPTIVE_DIVISOR = 5.0      # "adaptive" divides lr by this when progress stalls
ADAPTIVE_MIN_LR = 1e-6      # ... and stops once lr is at or below this
# Sparse X is densified this many values at a time (32 MB in float64): a whole number
# of batches, so the batches are those of the dense array.
SPARSE_BLOCK_VALUES = 1 << 22
INPUT_DTYPES = (np.float64, np.float32)   # kept as given; anything else becomes float64


def expected_failed_checks(estimator):
    """The checks of scikit-learn's suite (`parametrize_with_checks`) that cannot pass
    for this estimator, each with the reason.

    >>> from fastbp.sklearn import MLPRegressor, expected_failed_checks
    >>> sorted(expected_failed_checks(MLPRegressor()))
    []
    """
    return {}


def _validate_data(estimator, X, y="no_validation", reset=True, **kwargs):
    """scikit-learn's own input validation, whichever version is installed; with the
    default y only X is validated (y=None is then an error, as scikit-learn wants)."""
    if _sklearn_validate_data is not None:
        return _sklearn_validate_data(estimator, X, y, reset=reset, **kwargs)
    return estimator._validate_data(X, y, reset=reset, **kwargs)  # pragma: no cover


def _checked_sample_weight(sample_weight, n_samples, dtype):
    """sample_weight as a 1-D float array of n_samples non-negative finite weights, not
    all zero (None stays None)."""
    if sample_weight is None:
        return None
    if isinstance(sample_weight, numbers.Number):
        sample_weight = np.full(n_samples, sample_weight)
    try:
        weights = np.asarray(sample_weight, dtype=np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"sample_weight must be an array of numbers, got "
                        f"{type(sample_weight).__name__}") from None
    if weights.ndim != 1 or len(weights) != n_samples:
        raise ValueError(f"sample_weight must have shape ({n_samples},), one weight per "
                         f"sample of X; got shape {weights.shape}")
    if not np.isfinite(weights).all():
        raise ValueError("sample_weight contains NaN or inf")
    if (weights < 0).any():
        raise ValueError(f"sample_weight must be non-negative, got {weights.min()!r}")
    if not weights.any():
        raise ValueError("sample_weight is zero for every sample")
    return weights.astype(dtype, copy=False)


def _row_blocks(X, rows):
    """Consecutive row ranges of X, dense, `rows` at a time: sparse X is densified one
    block at a time; dense X is returned whole."""
    if not scipy.sparse.issparse(X):
        yield X
        return
    for start in range(0, X.shape[0], rows):
        yield X[start:start + rows].toarray()


def _network_state(net):
    """Everything needed to rebuild `net` exactly, as plain arrays and numbers: a pickled
    estimator then does not depend on how Network lays out its memory."""
    return {"layer_sizes": net.layer_sizes, "activations": net.activations, "loss": net.loss,
            "dtype": net.dtype.name, "weights": [w.copy() for w in net.weights],
            "biases": [b.copy() for b in net.biases],
            "optimizer_state": None if net._state is None else net._state.copy(),
            "optimizer_state_kind": net._state_kind, "rule_steps": net._rule_steps,
            "shuffle_state": net._shuffle_state}


def _network_from_state(state):
    net = Network(state["layer_sizes"], activation=list(state["activations"]),
                  loss=state["loss"], dtype=state["dtype"])
    net.set_weights(state["weights"], state["biases"])
    if state.get("optimizer_state") is not None:
        net._state = net._layout.copy(state["optimizer_state"])
        net._state_kind = state.get("optimizer_state_kind", "velocity")
        net._rule_steps = state.get("rule_steps", 0)
    elif state.get("velocity") is not None:   # pickled by fastbp before the flat layout
        net._state, net._state_kind = net._layout.zeros(1), "velocity"
        for views, arrays in zip(net._layout.views(net._state[0]), state["velocity"]):
            for view, array in zip(views, arrays):
                view[...] = array
    if state.get("shuffle_state") is not None:
        net._shuffle_state = state["shuffle_state"]
    return net


def _scale_velocity(net, factor):
    """Multiply the network's momentum velocities by factor (in place), so that
    fastbp's v (in gradient units) keeps matching scikit-learn's v (in step units)
    when lr changes."""
    if net._state is not None and factor != 1.0:
        net._state *= factor


def _lbfgs_warning(result, n_iter):
    """scikit-learn's ConvergenceWarning for an L-BFGS run that did not converge."""
    message = (f"lbfgs failed to converge after {n_iter} iteration(s) "
               f"(status={result.status}):\n{result.message}\n")
    warnings.warn(message + "\nIncrease the number of iterations to improve the "
                  "convergence (max_iter), or scale the data.", ConvergenceWarning, stacklevel=3)


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, the solvers, early
    stopping, the learning-rate rules and the fitted attributes."""

    def __init__(self, hidden_layer_sizes: int | Sequence[int] = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001, batch_size: int | str = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: bool | int = False,
                 warm_start: bool = False, momentum: float = 0.9, nesterovs_momentum: bool = True,
                 early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: float = 10, max_fun: int = 15000,
                 n_threads: int | None = None) -> None:
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.solver = solver
        self.alpha = alpha
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.learning_rate_init = learning_rate_init
        self.power_t = power_t
        self.max_iter = max_iter
        self.shuffle = shuffle
        self.random_state = random_state
        self.tol = tol
        self.verbose = verbose
        self.warm_start = warm_start
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.early_stopping = early_stopping
        self.validation_fraction = validation_fraction
        self.beta_1 = beta_1
        self.beta_2 = beta_2
        self.epsilon = epsilon
        self.n_iter_no_change = n_iter_no_change
        self.max_fun = max_fun
        self.n_threads = n_threads

    # -- what the subclasses define -------------------------------------------------
    def _check_loss(self):
        """Validate the estimator's own loss parameter, if it has one."""

    def _net_loss(self):
        """fastbp's loss for this estimator and its data."""
        raise NotImplementedError

    def _grad_scale(self, n_outputs):
        """scikit-learn's loss gradient / fastbp's (both on the mean over the batch)."""
        return 1.0

    def _sklearn_loss(self, net_loss, y_net, sample_weight):
        """scikit-learn's loss (without penalty) from fastbp's mean loss on y_net."""
        return net_loss

    # -- parameters -----------------------------------------------------------------
    def _check_solver(self):
        """partial_fit's availability: the stochastic solvers only, as in scikit-learn."""
        if self.solver not in STOCHASTIC_SOLVERS:
            raise AttributeError(f"partial_fit is only available for stochastic optimizers. "
                                 f"{self.solver} is not stochastic.")
        return True

    def _checked_params(self):
        """The parameters, validated; returns the hidden layer sizes as a list."""
        check_choice("solver", self.solver, SOLVERS)
        check_choice("activation", self.activation, tuple(ACTIVATIONS))
        check_choice("learning_rate", self.learning_rate, LEARNING_RATES)
        sizes = self.hidden_layer_sizes
        sizes = [sizes] if isinstance(sizes, numbers.Integral) else sizes
        try:
            sizes = list(sizes)
        except TypeError:
            raise TypeError(f"hidden_layer_sizes must be an integer or a sequence of integers, "
                            f"got {self.hidden_layer_sizes!r}") from None
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, numbers.Integral) or s < 1:
                raise ValueError(f"hidden_layer_sizes must be > 0, got {self.hidden_layer_sizes!r}")
        check_real("alpha", self.alpha, 0.0)
        if not (isinstance(self.batch_size, str) and self.batch_size == "auto"):
            check_integer("batch_size", self.batch_size, 1)
        check_real("learning_rate_init", self.learning_rate_init, 0.0, low_open=True)
        check_real("power_t", self.power_t, 0.0)
        check_integer("max_iter", self.max_iter, 1)
        check_real("tol", self.tol, 0.0)
        check_real("momentum", self.momentum, 0.0, 1.0)
        check_real("validation_fraction", self.validation_fraction, 0.0, 1.0, low_open=True)
        check_real("beta_1", self.beta_1, 0.0, 1.0)
        check_real("beta_2", self.beta_2, 0.0, 1.0)
        check_real("epsilon", self.epsilon, 0.0, low_open=True)
        # np.inf: never stop for lack of progress, as in scikit-learn
        if not (isinstance(self.n_iter_no_change, numbers.Real)
                and self.n_iter_no_change == np.inf):
            check_integer("n_iter_no_change", self.n_iter_no_change, 1)
        check_integer("max_fun", self.max_fun, 1)
        self._check_loss()
        if self.n_threads is not None:
            check_integer("n_threads", self.n_threads, 1)
        return [int(s) for s in sizes]

    # -- the network ----------------------------------------------------------------
    def _initial_params(self, units, rng):
        """scikit-learn's initialisation, drawing from rng in its order: per layer the
        weights, then the biases, uniform in ±sqrt(factor / (fan_in + fan_out)),
        factor 2 for logistic, else 6."""
        factor = 2.0 if self.activation == "logistic" else 6.0
        weights, biases = [], []
        for fan_in, fan_out in zip(units[:-1], units[1:]):
            bound = np.sqrt(factor / (fan_in + fan_out))
            weights.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
            biases.append(rng.uniform(-bound, bound, fan_out))
        return weights, biases

    def _build_network(self, params, rng, dtype):
        weights, biases = params
        sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
        net = Network(sizes, activation=ACTIVATIONS[self.activation], loss=self._net_loss(),
                      dtype=dtype, seed=int(rng.randint(np.iinfo(np.int32).max)))
        net.set_weights(weights, biases)
        return net

    def _export_params(self):
        """coefs_ / intercepts_ from the network (copies, in scikit-learn's layout)."""
        self.coefs_ = [w.copy() for w in self._network.weights]
        self.intercepts_ = [b.copy() for b in self._network.biases]

    def _penalty_sum(self):
        """Σ‖W‖² over scikit-learn's coefs_ (weights only)."""
        return sum(float(np.dot(w.ravel(), w.ravel())) for w in self._network.weights)

    # -- fitting --------------------------------------------------------------------
    def fit(self: _Estimator, X: Any, y: Any, sample_weight: Any = None) -> _Estimator:
        """Fit the model to X (n_samples, n_features; dense or scipy sparse) and y;
        returns self. ``sample_weight`` (n_samples,) weights each sample's loss.

        The stochastic solvers train for up to ``max_iter`` epochs (fewer when the loss,
        or with ``early_stopping`` the validation score, stops improving by ``tol`` for
        ``n_iter_no_change`` epochs); "lbfgs" for up to ``max_iter`` iterations and
        ``max_fun`` loss evaluations. Continues from the previous fit when
        ``warm_start`` is set.
        """
        return self._fit(X, y, sample_weight, incremental=False)

    def _fit(self, X, y, sample_weight, incremental):
        hidden = self._checked_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "_network") or (not self.warm_start and not incremental)
        X, y_net = self._validate_Xy(X, y, incremental, reset=first_pass)
        if not first_pass and X.dtype != self._network.dtype:
            # training continues in the precision the network was fitted in
            X = X.astype(self._network.dtype)
        sample_weight = _checked_sample_weight(sample_weight, X.shape[0], X.dtype)
        n_outputs = self._n_outputs_of(y_net)
        rng = check_random_state(self.random_state)
        if first_pass:
            params = self._initial_params([X.shape[1]] + hidden + [n_outputs], rng)
        else:
            self._check_continuable(hidden, n_outputs)
        if self.early_stopping and self.solver != "lbfgs":
            X, X_val, y_net, y_val, sample_weight, sw_val = self._split(X, y_net, sample_weight,
                                                                       n_outputs, rng)
        else:
            X_val = y_val = sw_val = None
        if first_pass:
            self._network = self._build_network(params, rng, X.dtype)
            self._initialize_attributes(n_outputs)
        self._initialize_solver_attributes()
        if self.solver == "lbfgs":
            self._fit_lbfgs(X, y_net, sample_weight)
        else:
            if not incremental or not hasattr(self, "_lr"):
                # a new optimizer, as scikit-learn makes for each fit
                self._lr = float(self.learning_rate_init)
                self._network.reset_optimizer()
            self._run_epochs(X, y_net, sample_weight, X_val, y_val, sw_val, incremental)
        self._export_params()
        return self

    def _split(self, X, y_net, sample_weight, n_outputs, rng):
        """scikit-learn's validation split: the same draws (after the initial weights),
        stratified for a single output of a classifier, as scikit-learn does."""
        stratify = None
        if self._stratify and n_outputs == 1:
            # scikit-learn stratifies on its binarized labels: a (n, 1) boolean column
            stratify = np.asarray(y_net).reshape(len(y_net), -1) == 1
        arrays = (X, y_net) if sample_weight is None else (X, y_net, sample_weight)
        parts = train_test_split(*arrays, random_state=rng, test_size=self.validation_fraction,
                                 stratify=stratify)
        if parts[1].shape[0] < 2:
            raise ValueError("The validation set is too small. Increase 'validation_fraction' "
                             "or the size of your dataset.")
        if sample_weight is None:
            parts += [None, None]
        X, X_val, y_net, y_val, sample_weight, sw_val = parts
        if not scipy.sparse.issparse(X):
            X, X_val = np.ascontiguousarray(X), np.ascontiguousarray(X_val)
        return X, X_val, np.ascontiguousarray(y_net), y_val, sample_weight, sw_val

    def _initialize_attributes(self, n_outputs):
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(self._network.layer_sizes)
        self.out_activation_ = self._out_activation(n_outputs)
        self.n_iter_ = 0
        self.t_ = 0
        self._best_params = self._sparse_rng_state = None
        for name in ("loss_curve_", "validation_scores_", "best_validation_score_",
                     "best_loss_"):
            self.__dict__.pop(name, None)

    def _initialize_solver_attributes(self):
        """The stochastic solvers' attributes, made on their first fit (scikit-learn's
        L-BFGS has none of them)."""
        if self.solver == "lbfgs":
            return
        if not hasattr(self, "loss_curve_"):
            self.loss_curve_ = []
            self._no_improvement_count = 0
            self.validation_scores_ = self.best_validation_score_ = self.best_loss_ = None
        if self.early_stopping and self.validation_scores_ is None:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        if not self.early_stopping and self.best_loss_ is None:
            self.best_loss_ = np.inf

    def _check_continuable(self, hidden, n_outputs):
        expected = [self.n_features_in_] + hidden + [n_outputs]
        if list(self._network.layer_sizes) != expected:
            raise ValueError(f"cannot continue training: the fitted network has layer sizes "
                             f"{list(self._network.layer_sizes)} but the parameters and data "
                             f"need {expected}; fit again with warm_start=False")
        if self._network.activations and self._network.activations[0] != ACTIVATIONS[self.activation]:
            raise ValueError(f"cannot continue training with activation={self.activation!r}: "
                             "the network was fitted with another; fit with warm_start=False")
        if self._network.loss != self._net_loss():
            raise ValueError("cannot continue training with another loss: the network was "
                             f"fitted with {self._network.loss!r}; fit with warm_start=False")

    def _batch_size(self, n_samples):
        if self.solver == "gd":
            return n_samples
        if isinstance(self.batch_size, str):
            return min(AUTO_BATCH, n_samples)
        if self.batch_size > n_samples:
            warnings.warn(f"batch_size={self.batch_size} is larger than the {n_samples} samples; "
                          "it is clipped to the number of samples")
        return min(int(self.batch_size), n_samples)

    def _set_lr(self, lr):
        if self.solver != "adam" and self.momentum > 0:
            _scale_velocity(self._network, self._lr / lr)
        self._lr = lr

    def _fit_args(self, batch, sample_weight):
        """Network.fit's arguments for one epoch of the stochastic solver."""
        grad_scale = self._grad_scale(self.n_outputs_)
        # alpha penalises each batch's summed loss: the network divides it by the
        # batch's size or weight sum, as scikit-learn does
        args = dict(batch_size=batch, epochs=1, shuffle=bool(self.shuffle),
                    weight_decay=float(self.alpha) / grad_scale, decay_on_sum=True)
        if self.solver == "adam":
            # Adam's step does not depend on the gradient's scale but through epsilon
            args.update(optimizer="adam_sklearn", betas=(float(self.beta_1), float(self.beta_2)),
                        eps=float(self.epsilon) / grad_scale)
        else:
            args.update(optimizer=self.solver, momentum=float(self.momentum),
                        nesterov=bool(self.nesterovs_momentum) and self.momentum > 0)
        if self.n_threads is not None:
            args["n_threads"] = self.n_threads
        return args

    def _lr_for_network(self):
        # SGD's step is lr * gradient: fastbp's gradient is scikit-learn's / grad_scale
        scale = 1.0 if self.solver == "adam" else self._grad_scale(self.n_outputs_)
        return self._lr * scale

    def _epoch(self, X, y_net, sample_weight, fit_args, plan):
        """One epoch over (X, y_net); returns fastbp's mean loss over it. Dense X runs
        plan (Network._plan's, X checked once for all epochs); sparse X is densified a
        whole number of batches at a time, in the epoch's order."""
        net = self._network
        lr = self._lr_for_network()
        if plan is not None:
            return net._run_plan(plan.with_lr(lr)).loss[0]
        n = X.shape[0]
        order = self._sparse_rng.permutation(n) if self.shuffle else np.arange(n)
        batch = fit_args["batch_size"]
        rows = max(1, SPARSE_BLOCK_VALUES // (batch * X.shape[1])) * batch
        block_args = dict(fit_args, shuffle=False)
        total = total_weight = 0.0   # each block's loss is its weighted mean: sum them back
        for start in range(0, n, rows):
            rows_here = order[start:start + rows]
            weights = None if sample_weight is None else sample_weight[rows_here]
            loss = net.fit(X[rows_here].toarray(), y_net[rows_here], lr=lr, sample_weight=weights,
                           **block_args).loss[0]
            weight = len(rows_here) if weights is None else float(weights.sum(dtype=np.float64))
            total, total_weight = total + loss * weight, total_weight + weight
        return total / total_weight

    def _run_epochs(self, X, y_net, sample_weight, X_val, y_val, sw_val, incremental):
        n_samples = X.shape[0]
        batch = self._batch_size(n_samples)
        n_batches = -(-n_samples // batch)
        fit_args = self._fit_args(batch, sample_weight)
        self.n_iter_ = 0
        squares_before = self._penalty_sum() if self.alpha else 0.0
        try:
            plan = None
            if not scipy.sparse.issparse(X):  # Network.fit's checks, once for all epochs
                plan = self._network._plan(X, y_net, lr=self._lr_for_network(),
                                           sample_weight=sample_weight, **fit_args)
            for _ in range(self.max_iter):
                try:
                    net_loss = self._epoch(X, y_net, sample_weight, fit_args, plan)
                except FloatingPointError as err:
                    if not self.early_stopping:
                        raise ValueError("Solver produced non-finite parameter weights. The "
                                         "input data may contain large values and need to be "
                                         "preprocessed; or try a smaller learning_rate_init.") from err
                    # scikit-learn records NaN scores for a diverged run and keeps the
                    # best epoch's weights; the weights here cannot go on, so it stops
                    self._record_diverged_epoch(n_samples)
                    break
                self.n_iter_ += 1
                # scikit-learn adds alpha/2 * Σ‖W‖² / batch for each batch, with the
                # weights before that batch's step: the mean of the epoch's first and
                # last Σ‖W‖² stands for them
                squares_after = self._penalty_sum() if self.alpha else 0.0
                penalty = (0.25 * self.alpha * (squares_before + squares_after)
                           * n_batches / n_samples)
                squares_before = squares_after
                self.loss_ = self._sklearn_loss(net_loss, y_net, sample_weight) + penalty
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}", flush=True)
                self._update_no_improvement_count(X_val, y_val, sw_val)
                if self.learning_rate == "invscaling" and self.solver != "adam":
                    self._set_lr(float(self.learning_rate_init) / (self.t_ + 1) ** self.power_t)
                if self._no_improvement_count > self.n_iter_no_change:
                    if self._should_stop():
                        break
                    self._no_improvement_count = 0
                if incremental:
                    break
                if self.n_iter_ == self.max_iter:
                    warnings.warn(f"Stochastic Optimizer: Maximum iterations ({self.max_iter}) "
                                  "reached and the optimization hasn't converged yet.",
                                  ConvergenceWarning)
        except KeyboardInterrupt:
            warnings.warn("Training interrupted by user.")
        if self.early_stopping and self._best_params is not None:
            self._network.set_weights(*self._best_params)

    def _record_diverged_epoch(self, n_samples):
        self.n_iter_ += 1
        self.t_ += n_samples
        self.loss_ = np.nan
        self.loss_curve_.append(np.nan)
        self.validation_scores_.append(np.nan)
        if self.verbose:
            print(f"Iteration {self.n_iter_}, loss = nan: diverged, stopping", flush=True)

    def _fit_lbfgs(self, X, y_net, sample_weight):
        """scikit-learn's L-BFGS: scipy's L-BFGS-B on mean loss + alpha/(2 n) Σ‖W‖², n the
        weight sum, with maxiter, maxfun and gtol; the network computes loss and gradient."""
        if scipy.sparse.issparse(X):
            X = X.toarray()   # full-batch L-BFGS reads all of X at each evaluation
        grad_scale = self._grad_scale(self.n_outputs_)
        weight_sum = X.shape[0] if sample_weight is None else float(sample_weight.sum())
        args = dict(optimizer="lbfgs", epochs=int(self.max_iter), max_fun=int(self.max_fun),
                    tol=float(self.tol) / grad_scale, weight_decay=float(self.alpha) / grad_scale,
                    decay_on_sum=True, sample_weight=sample_weight, verbose=bool(self.verbose))
        if self.n_threads is not None:
            args["n_threads"] = self.n_threads
        try:
            result = self._network.fit(X, y_net, **args).lbfgs
        except FloatingPointError as err:
            raise ValueError("Solver produced non-finite parameter weights. The input data may "
                             "contain large values and need to be preprocessed.") from err
        self.n_iter_ = min(int(result.nit), int(self.max_iter))
        if result.status != 0:
            _lbfgs_warning(result, self.n_iter_)
        squares = self._penalty_sum()
        penalty = 0.5 * float(self.alpha) * squares / weight_sum   # scikit-learn's scale
        net_loss = float(result.fun) - penalty / grad_scale
        self.loss_ = self._sklearn_loss(net_loss, y_net, sample_weight) + penalty

    def _update_no_improvement_count(self, X_val, y_val, sw_val):
        if self.early_stopping:
            score = self._validation_score(X_val, y_val, sw_val)
            self.validation_scores_.append(score)
            if self.verbose:
                print(f"Validation score: {score:f}", flush=True)
            if score < self.best_validation_score_ + self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            if score > self.best_validation_score_:
                self.best_validation_score_ = score
                self._best_params = ([w.copy() for w in self._network.weights],
                                     [b.copy() for b in self._network.biases])
        else:
            if self.loss_curve_[-1] > self.best_loss_ - self.tol:
                self._no_improvement_count += 1
            else:
                self._no_improvement_count = 0
            self.best_loss_ = min(self.best_loss_, self.loss_curve_[-1])

    def _should_stop(self):
        """No progress for n_iter_no_change epochs: stop, or with SGD's "adaptive"
        divide lr."""
        what = "Validation score" if self.early_stopping else "Training loss"
        message = (f"{what} did not improve more than tol={self.tol:f} for "
                   f"{self.n_iter_no_change} consecutive epochs.")
        if self.solver == "adam" or self.learning_rate != "adaptive" or self._lr <= ADAPTIVE_MIN_LR:
            if self.verbose:
                print(message + " Stopping.", flush=True)
            return True
        self._set_lr(self._lr / ADAPTIVE_DIVISOR)
        if self.verbose:
            print(message + f" Setting learning rate to {self._lr:f}", flush=True)
        return False

    # -- prediction -----------------------------------------------------------------
    def _outputs(self, X, check_input=True):
        """The network's outputs for X, in the dtype scikit-learn's would have: X's
        promoted with the parameters' (float32 only when both are)."""
        if check_input:
            check_is_fitted(self)
            X = _validate_data(self, X, reset=False, accept_sparse="csr", dtype=INPUT_DTYPES,
                               order="C")
        net = self._network
        dtype = np.result_type(X.dtype, net.dtype)
        if X.dtype != net.dtype:
            X = X.astype(net.dtype)
        rows = max(1, SPARSE_BLOCK_VALUES // X.shape[1])
        parts = [self._network_outputs(block) for block in _row_blocks(X, rows)]
        out = parts[0] if len(parts) == 1 else np.concatenate(parts)
        return out.astype(dtype, copy=False)

    def _network_outputs(self, X):
        """(n, n_outputs of the network) for dense X of the network's dtype."""
        raise NotImplementedError

    # -- pickling: the Network is stored as its arrays ------------------------------
    def __getstate__(self):
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        if "_network" in state:
            state["_network"] = _network_state(state["_network"])
        return state

    def __setstate__(self, state):
        state = dict(state)
        if isinstance(state.get("_network"), dict):
            state["_network"] = _network_from_state(state["_network"])
        if hasattr(super(), "__setstate__"):
            super().__setstate__(state)
        else:  # pragma: no cover
            self.__dict__.update(state)

    # -- conversion: scikit-learn's own estimators, ONNX ------------------------------
    _sklearn_class: Any = None   # scikit-learn's estimator of the same name (the subclasses')

    def to_sklearn(self) -> Any:
        """scikit-learn's own fitted estimator of this class (its parameters and every
        fitted attribute it reads, copied), for code that expects scikit-learn's: the
        same ``coefs_`` and ``intercepts_``, the same predictions.

        >>> import numpy as np
        >>> from fastbp.sklearn import MLPRegressor
        >>> X = np.linspace(-1, 1, 40).reshape(-1, 1)
        >>> ours = MLPRegressor(hidden_layer_sizes=(8,), max_iter=50, random_state=0).fit(X, X[:, 0])
        >>> theirs = ours.to_sklearn()
        >>> type(theirs).__module__, bool(np.allclose(theirs.predict(X), ours.predict(X)))
        ('sklearn.neural_network._multilayer_perceptron', True)
        """
        check_is_fitted(self)
        theirs = self._sklearn_class()
        theirs.set_params(**{k: v for k, v in self.get_params().items() if k in theirs.get_params()})
        for name, value in _fitted_attributes(self).items():
            setattr(theirs, name, _copied(value))
        return theirs

    @classmethod
    def from_sklearn(cls: type[_Estimator], est: Any) -> _Estimator:
        """This class's estimator from scikit-learn's own fitted one of the same name:
        its parameters, fitted attributes and weights (in their dtype), so the same
        predictions; fitting or partial_fit go on from those weights.

        >>> import numpy as np
        >>> from sklearn.neural_network import MLPClassifier as Theirs
        >>> from fastbp.sklearn import MLPClassifier
        >>> X, y = np.array([[0.0], [1.0], [2.0], [3.0]]), [0, 0, 1, 1]
        >>> theirs = Theirs((4,), max_iter=20, random_state=0).fit(X, y)
        >>> ours = MLPClassifier.from_sklearn(theirs)
        >>> bool((ours.predict(X) == theirs.predict(X)).all())
        True
        """
        from .interop import from_sklearn
        if not isinstance(est, cls._sklearn_class):
            raise TypeError(f"from_sklearn: est must be scikit-learn's {cls._sklearn_class.__name__}, "
                            f"got {type(est).__name__}")
        check_is_fitted(est)
        ours = cls()
        ours.set_params(**{k: v for k, v in est.get_params().items() if k in ours.get_params()})
        for name, value in _fitted_attributes(est).items():
            setattr(ours, name, _copied(value))
        # what fit and partial_fit keep between calls: the stopping rule's count goes on,
        # the rest starts afresh
        ours._no_improvement_count = getattr(est, "_no_improvement_count", 0)
        ours._best_params = ours._sparse_rng_state = None
        ours._network = from_sklearn(est)[0]
        if cls is MLPRegressor and ours._network.loss != ours._net_loss():
            raise ValueError(f"from_sklearn: a {est.out_activation_} output with loss={est.loss!r} "
                             "is not a model fastbp trains")
        return ours

    def to_onnx(self, path: Any = None, opset: int | None = None) -> Any:
        """The ONNX model of the fitted estimator (`fastbp.Network.to_onnx`, whose
        docstring names the graph's input and outputs), written to ``path`` too when
        given. A classifier's ``label`` output holds the labels of ``classes_`` (for
        multi-label y, the 0/1 indicator matrix); its ``probabilities`` are those of the
        network's outputs: one column for two classes (the second class's), unlike
        `predict_proba`'s two."""
        from .interop import DEFAULT_OPSET, to_onnx
        check_is_fitted(self)
        classes = getattr(self, "classes_", None)
        if classes is not None and self._multilabel:
            classes = None
        return to_onnx(self._network, path, DEFAULT_OPSET if opset is None else opset,
                       classes=classes)

    @property
    def _sparse_rng(self):
        """The generator of the epochs' orders for sparse X (dense X is shuffled in C
        by the network's own generator); seeded from the network's."""
        if getattr(self, "_sparse_rng_state", None) is None:
            self._sparse_rng_state = np.random.default_rng(self._network._shuffle_state)
        return self._sparse_rng_state

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"_xfail_checks": expected_failed_checks(self)}


def _fitted_attributes(est):
    """The fitted attributes scikit-learn's MLP estimators read: the public ones (trailing
    underscore) and the label binarizer."""
    return {name: value for name, value in vars(est).items()
            if (name.endswith("_") and not name.startswith("_")) or name == "_label_binarizer"}


def _copied(value):
    """A copy that shares no array with the original."""
    return copy.deepcopy(value)


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier trained in fastbp's C core, with
    scikit-learn's `MLPClassifier` parameters, defaults and attributes.

    Parameters are scikit-learn's (see the module docstring for how each maps onto
    fastbp); ``solver`` is "adam" (the default), "sgd", "lbfgs" or fastbp's "gd" (full
    batch gradient descent). fastbp's own: ``n_threads`` (passed to
    `fastbp.Network.fit`). y may be labels or a multi-label indicator matrix.

    >>> import numpy as np
    >>> from fastbp.sklearn import MLPClassifier
    >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 25, dtype=float)
    >>> y = np.array(["no", "yes", "yes", "no"] * 25)
    >>> clf = MLPClassifier((8,), activation="tanh", solver="sgd", learning_rate_init=0.1,
    ...                     batch_size=4, max_iter=300, random_state=0).fit(X, y)
    >>> clf.predict([[0, 1], [1, 1]]).tolist(), clf.predict_proba([[0, 1]]).shape
    (['yes', 'no'], (1, 2))
    """

    _stratify = True
    _sklearn_class = SklearnMLPClassifier

    def _net_loss(self):
        # one logistic output for two classes (or one: it learns p = 0), one per label
        # for multi-label y, as in scikit-learn; softmax over the classes otherwise
        if self._multilabel or len(self.classes_) <= 2:
            return "binary_cross_entropy"
        return "cross_entropy"

    def _validate_Xy(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, reset=reset, accept_sparse="csr", dtype=INPUT_DTYPES,
                              order="C", multi_output=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        check_classification_targets(y)
        if not hasattr(self, "classes_") or (not self.warm_start and not incremental):
            self._label_binarizer = LabelBinarizer().fit(y)
            self.classes_ = self._label_binarizer.classes_
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where `y` has the same "
                                     "classes as in the previous call to fit. Previously got "
                                     f"{self.classes_}, `y` has {classes}")
            elif len(np.setdiff1d(classes, self.classes_, assume_unique=True)):
                raise ValueError("`y` has classes not in `self.classes_`. `self.classes_` has "
                                 f"{self.classes_}. 'y' has {classes}.")
        if self._net_loss() == "cross_entropy":
            return X, np.searchsorted(self.classes_, y).astype(np.int32)
        # (n, 1) for two classes, the indicator matrix for multi-label y
        return X, np.ascontiguousarray(self._label_binarizer.transform(y), dtype=X.dtype)

    @property
    def _multilabel(self):
        return self._label_binarizer.y_type_.startswith("multilabel")

    def _n_outputs_of(self, y_net):
        return len(self.classes_) if y_net.ndim == 1 else y_net.shape[1]

    def _out_activation(self, n_outputs):
        return "softmax" if self._net_loss() == "cross_entropy" else "logistic"

    def _network_outputs(self, X):
        return self._network.predict_proba(X)

    def _labels(self, out):
        """The labels (or the indicator matrix) of the network's outputs `out`, as
        scikit-learn decodes them: the most probable class; probability > 1/2 for one
        logistic output or per label."""
        return self._label_binarizer.inverse_transform(out[:, 0] if out.shape[1] == 1 else out)

    def _validation_score(self, X_val, y_val, sw_val):
        proba = self._outputs(X_val, check_input=False)
        if not np.isfinite(proba).all():
            return np.nan
        if y_val.ndim == 1:      # class indices
            predicted = proba.argmax(axis=1)
        else:
            predicted = (proba > 0.5).astype(y_val.dtype)
            if y_val.shape[1] == 1:
                y_val, predicted = y_val[:, 0], predicted[:, 0]
        return float(accuracy_score(y_val, predicted, sample_weight=sw_val))

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None,
                    classes: Any = None) -> MLPClassifier:
        """One epoch over (X, y) from the current weights; returns self.

        ``classes`` (every label the model will ever see) is required on the first
        call and optional after; the optimizer state (momentum or Adam's moments,
        learning rate) is kept from call to call. Not offered with solver="lbfgs".

        >>> from fastbp.sklearn import MLPClassifier
        >>> clf = MLPClassifier((4,), random_state=0)
        >>> clf = clf.partial_fit([[0.0], [1.0]], [3, 7], classes=[3, 5, 7])
        >>> clf.classes_.tolist(), clf.predict_proba([[0.5]]).shape
        ([3, 5, 7], (1, 3))
        """
        if classes is not None:
            classes = unique_labels(np.asarray(classes))
            if hasattr(self, "classes_"):
                if not np.array_equal(classes, self.classes_):
                    raise ValueError(f"`classes={classes}` is not the same as on the first call "
                                     f"to partial_fit: {self.classes_}")
            else:
                binarizer = LabelBinarizer()
                if type_of_target(y).startswith("multilabel"):
                    binarizer.fit(y)
                else:
                    binarizer.fit(classes)
                self._label_binarizer, self.classes_ = binarizer, binarizer.classes_
        elif not hasattr(self, "classes_"):
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, sample_weight, incremental=True)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, (n_samples, n_classes), columns in ``classes_`` order (for
        multi-label y: each label's probability)."""
        proba = self._outputs(X)
        if proba.shape[1] == 1 and not self._multilabel:
            return np.hstack([1 - proba, proba])
        return proba

    def predict_log_proba(self, X: Any) -> np.ndarray:
        """The logarithm of `predict_proba`."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def predict(self, X: Any) -> np.ndarray:
        """The most probable class of each sample, as labels from ``classes_`` (for
        multi-label y: the indicator matrix of labels with probability > 1/2)."""
        return self._labels(self._outputs(X))

    def __setstate__(self, state):
        super().__setstate__(state)
        if "classes_" in state and "_label_binarizer" not in state:
            # pickled by fastbp before it used scikit-learn's LabelBinarizer and one
            # logistic output for two classes (then a softmax pair, the same model)
            self._label_binarizer = LabelBinarizer().fit(self.classes_)
            net = self._network
            if len(self.classes_) == 2 and net.loss == "cross_entropy":
                (w, *_), (b, *_) = self.coefs_[-1:], self.intercepts_[-1:]
                single = Network(net.layer_sizes[:-1] + (1,), activation=list(net.activations),
                                 loss="binary_cross_entropy", dtype=net.dtype)
                single.set_weights(net.weights[:-1] + [w], net.biases[:-1] + [b])
                single._shuffle_state = net._shuffle_state
                self._network = single

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        return tags


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor trained in fastbp's C core, with scikit-learn's
    `MLPRegressor` parameters, defaults and attributes: ``loss`` "squared_error"
    (identity outputs) or "poisson" (exponential outputs); y may have several columns.

    >>> import numpy as np
    >>> from fastbp.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> y = np.column_stack([2 * X[:, 0], -X[:, 0] + 1])
    >>> reg = MLPRegressor(hidden_layer_sizes=(16,), solver="sgd", learning_rate_init=0.05,
    ...                    max_iter=200, random_state=0)
    >>> reg.fit(X, y).predict(X).shape, round(reg.score(X, y), 2) > 0.95
    ((200, 2), True)
    """

    _stratify = False
    _sklearn_class = SklearnMLPRegressor

    def __init__(self, loss: str = "squared_error", hidden_layer_sizes: int | Sequence[int] = (100,), activation: str = "relu", *,
                 solver: str = "adam", alpha: float = 0.0001, batch_size: int | str = "auto",
                 learning_rate: str = "constant", learning_rate_init: float = 0.001,
                 power_t: float = 0.5, max_iter: int = 200, shuffle: bool = True,
                 random_state: Any = None, tol: float = 1e-4, verbose: bool | int = False,
                 warm_start: bool = False, momentum: float = 0.9, nesterovs_momentum: bool = True,
                 early_stopping: bool = False, validation_fraction: float = 0.1,
                 beta_1: float = 0.9, beta_2: float = 0.999, epsilon: float = 1e-8,
                 n_iter_no_change: float = 10, max_fun: int = 15000,
                 n_threads: int | None = None) -> None:
        self.loss = loss
        super().__init__(hidden_layer_sizes, activation, solver=solver, alpha=alpha,
                         batch_size=batch_size, learning_rate=learning_rate,
                         learning_rate_init=learning_rate_init, power_t=power_t,
                         max_iter=max_iter, shuffle=shuffle, random_state=random_state, tol=tol,
                         verbose=verbose, warm_start=warm_start, momentum=momentum,
                         nesterovs_momentum=nesterovs_momentum, early_stopping=early_stopping,
                         validation_fraction=validation_fraction, beta_1=beta_1, beta_2=beta_2,
                         epsilon=epsilon, n_iter_no_change=n_iter_no_change, max_fun=max_fun,
                         n_threads=n_threads)

    def _check_loss(self):
        check_choice("loss", self.loss, tuple(REGRESSION_LOSSES))

    def _net_loss(self):
        return REGRESSION_LOSSES[self.loss][0]

    def _grad_scale(self, n_outputs):
        # fastbp's mse gradient is (2 / n_outputs)(yhat - y), scikit-learn's (yhat - y)
        return n_outputs / 2.0 if self.loss == "squared_error" else 1.0

    def _sklearn_loss(self, net_loss, y_net, sample_weight):
        if self.loss == "squared_error":
            return 0.5 * net_loss   # fastbp's mse is mean (yhat - y)², scikit-learn's half
        # fastbp's Poisson loss leaves out the constant Σ_j y log y - y of scikit-learn's
        # half deviance
        constant = np.average((xlogy(y_net, y_net) - y_net).sum(axis=1), weights=sample_weight)
        return net_loss + float(constant)

    def _validate_Xy(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, reset=reset, accept_sparse="csr", dtype=INPUT_DTYPES,
                              order="C", multi_output=True, y_numeric=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        if self.loss == "poisson" and (np.asarray(y) < 0).any():
            raise ValueError("loss='poisson' needs non-negative y (counts or rates)")
        y = y.reshape(len(y), -1)
        return X, np.ascontiguousarray(y, dtype=X.dtype)

    def _n_outputs_of(self, y_net):
        return y_net.shape[1]

    def _out_activation(self, n_outputs):
        return REGRESSION_LOSSES[self.loss][1]

    def _network_outputs(self, X):
        return self._network.predict(X).reshape(len(X), -1)

    def _validation_score(self, X_val, y_val, sw_val):
        pred = self._outputs(X_val, check_input=False)
        if not np.isfinite(pred).all():
            return np.nan
        return float(r2_score(y_val, pred, sample_weight=sw_val))

    @available_if(lambda est: est._check_solver())
    def partial_fit(self, X: Any, y: Any, sample_weight: Any = None) -> MLPRegressor:
        """One epoch over (X, y) from the current weights; returns self. The optimizer
        state (momentum or Adam's moments, learning rate) is kept from call to call.
        Not offered with solver="lbfgs".

        >>> from fastbp.sklearn import MLPRegressor
        >>> reg = MLPRegressor(hidden_layer_sizes=(4,), random_state=0)
        >>> reg = reg.partial_fit([[0.0], [1.0]], [0.5, 1.5])
        >>> reg.n_outputs_, reg.t_
        (1, 2)
        """
        return self._fit(X, y, sample_weight, incremental=True)

    def predict(self, X: Any) -> np.ndarray:
        """Predicted targets, (n_samples,) for one output, else (n_samples, n_outputs)."""
        out = self._outputs(X)
        return out[:, 0] if out.shape[1] == 1 else out

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        tags.target_tags.single_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True, "_xfail_checks": expected_failed_checks(self)}
