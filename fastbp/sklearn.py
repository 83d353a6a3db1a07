"""scikit-learn estimators whose training runs in fastbp's C core.

`MLPClassifier` and `MLPRegressor` take scikit-learn's parameter names and meanings
for its SGD solver, so they drop into pipelines and searches in place of
`sklearn.neural_network.MLPClassifier` / `MLPRegressor`:

    from fastbp.sklearn import MLPClassifier
    clf = MLPClassifier(hidden_layer_sizes=(256,), batch_size=64, max_iter=5)
    clf.fit(X_train, y_train).score(X_test, y_test)

This module imports scikit-learn; ``import fastbp`` does not import this module.

How scikit-learn's SGD maps onto `fastbp.Network.fit` (one call per epoch):

- The velocity update differs only in where lr is applied: scikit-learn keeps
  v <- momentum * v - lr * g, fastbp keeps v <- momentum * v + g and steps by lr * v.
  At a fixed lr the steps are identical; when the lr changes between epochs
  ("invscaling", "adaptive") the stored velocity is rescaled by lr_old / lr_new,
  so the steps stay identical then too.
- ``alpha``: scikit-learn adds alpha * W to the summed-loss gradient and divides by
  the batch's size, i.e. a weight decay of alpha / batch_size on the mean-loss
  gradient, weights only. fastbp applies one decay to every batch of an epoch, so
  the last, smaller batch of an epoch uses alpha / batch_size where scikit-learn
  uses alpha / (its size).
- ``learning_rate="invscaling"``: scikit-learn sets lr = learning_rate_init /
  (t + 1) ** power_t at the end of each epoch, t = samples seen; the same rule is
  applied here between epochs (fastbp's own per-update "invscaling" is not used).
- Regression: fastbp's "mse" is the mean over outputs of (yhat - y)², scikit-learn's
  the half squared error; lr and decay are rescaled so the steps are the same, and
  ``loss_`` is reported on scikit-learn's scale.
- Binary classification: scikit-learn uses one logistic output; here the network has
  two softmax outputs started as (-w/2, w/2), the same model (p = sigmoid(w·h + b)),
  so ``coefs_[-1]`` has one column and ``predict_proba`` two, as in scikit-learn.
  The two columns get opposite gradients, so the logit's weights move at twice
  scikit-learn's step.
- ``loss_`` adds scikit-learn's penalty, alpha / (2 * batch) * Σ‖W‖² per batch,
  with the mean of Σ‖W‖² at the epoch's start and end standing for each batch's
  (scikit-learn uses the weights before each batch's step).
"""
import numbers
import warnings

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import r2_score
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.multiclass import check_classification_targets, unique_labels
from sklearn.utils.validation import check_is_fitted, column_or_1d

try:  # scikit-learn >= 1.6
    from sklearn.utils.validation import validate_data as _sklearn_validate_data
except ImportError:  # pragma: no cover - older scikit-learn
    _sklearn_validate_data = None

from ._validation import check_choice, check_dtype, check_integer, check_real
from .network import Network

# scikit-learn's hidden activation names -> fastbp's
ACTIVATIONS = {"identity": "identity", "logistic": "sigmoid", "tanh": "tanh", "relu": "relu"}
SOLVERS = ("sgd", "gd")
LEARNING_RATES = ("constant", "invscaling", "adaptive")
AUTO_BATCH = 200            # batch_size="auto" is min(200, n_samples), as in scikit-learn
ADAPTIVE_DIVISOR = 5.0      # "adaptive" divides lr by this when progress stalls
ADAPTIVE_MIN_LR = 1e-6      # ... and stops once lr is at or below this



def expected_failed_checks(estimator):
    """The checks of scikit-learn's suite (`parametrize_with_checks`) that cannot pass
    for this estimator, each with the reason.

    >>> from fastbp.sklearn import MLPRegressor, expected_failed_checks
    >>> sorted(expected_failed_checks(MLPRegressor(dtype="float64")))
    []
    """
    failing = {}
    if check_dtype(getattr(estimator, "dtype", "float32")) == np.float32:
        failing["check_methods_subset_invariance"] = (
            "float32 arithmetic: the C kernels may sum a row's products in a different order "
            "depending on the other rows of the batch, so a prediction made on a subset can "
            "differ in the last bit (about 1e-7 relative), above this check's rtol=1e-7; "
            "with dtype='float64' the check passes")
    return failing



def _validate_data(estimator, X, y="no_validation", reset=True, **kwargs):
    """scikit-learn's own input validation, whichever version is installed; with the
    default y only X is validated (y=None is then an error, as scikit-learn wants)."""
    if _sklearn_validate_data is not None:
        return _sklearn_validate_data(estimator, X, y, reset=reset, **kwargs)
    return estimator._validate_data(X, y, reset=reset, **kwargs)  # pragma: no cover


def _result_dtype(X):
    """Predictions come back in X's precision, as scikit-learn's do: float32 for
    float32 input, float64 otherwise (the network's dtype sets the arithmetic)."""
    return np.float32 if getattr(X, "dtype", None) == np.float32 else np.float64




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


class _BaseMLP(BaseEstimator):
    """What the classifier and the regressor share: parameters, the epoch loop,
    early stopping, the learning-rate rules and the fitted attributes."""

    def __init__(self, hidden_layer_sizes=(100,), activation="relu", *, solver="sgd", alpha=0.0001,
                 batch_size="auto", learning_rate="constant", learning_rate_init=0.001,
                 power_t=0.5, max_iter=200, shuffle=True, random_state=None, tol=1e-4,
                 verbose=False, warm_start=False, momentum=0.9, nesterovs_momentum=True,
                 early_stopping=False, validation_fraction=0.1, n_iter_no_change=10,
                 dtype="float32", n_threads=None):
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
        self.n_iter_no_change = n_iter_no_change
        self.dtype = dtype
        self.n_threads = n_threads

    # -- what the subclasses define -------------------------------------------------
    _loss = None                 # fastbp loss name

    def _grad_scale(self, n_outputs):
        """scikit-learn's loss gradient / fastbp's (both on the mean over the batch)."""
        return 1.0

    def _loss_scale(self):
        """scikit-learn's loss / fastbp's."""
        return 1.0

    # -- parameters -----------------------------------------------------------------
    def _checked_params(self):
        """The parameters, validated; returns the hidden layer sizes as a list."""
        if isinstance(self.solver, str) and self.solver in ("adam", "lbfgs"):
            raise ValueError(f"solver={self.solver!r} is not available in fastbp: it trains with "
                             "stochastic gradient descent only; use solver='sgd' (mini-batches) "
                             "or 'gd' (full batch)")
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
        check_integer("n_iter_no_change", self.n_iter_no_change, 1)
        check_dtype(self.dtype)
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
        weights[-1], biases[-1] = self._to_net_output(weights[-1], biases[-1])
        return weights, biases

    def _build_network(self, params, rng):
        weights, biases = params
        sizes = [w.shape[0] for w in weights] + [weights[-1].shape[1]]
        net = Network(sizes, activation=ACTIVATIONS[self.activation], loss=self._loss,
                      dtype=self.dtype, seed=int(rng.randint(np.iinfo(np.int32).max)))
        net.set_weights(weights, biases)
        return net

    def _net_outputs(self, n_outputs):
        return n_outputs

    def _to_net_output(self, w, b):
        """scikit-learn's output layer -> the network's."""
        return w, b

    def _from_net_output(self, w, b):
        """The network's output layer -> scikit-learn's."""
        return w, b

    def _export_params(self):
        """coefs_ / intercepts_ from the network (copies, in scikit-learn's layout)."""
        coefs = [w.copy() for w in self._network.weights]
        intercepts = [b.copy() for b in self._network.biases]
        coefs[-1], intercepts[-1] = self._from_net_output(coefs[-1], intercepts[-1])
        self.coefs_, self.intercepts_ = coefs, intercepts

    def _penalty_sum(self):
        """Σ‖W‖² over scikit-learn's coefs_ (weights only)."""
        weights = self._network.weights
        total = sum(float(np.dot(w.ravel(), w.ravel())) for w in weights[:-1])
        w_last, _ = self._from_net_output(weights[-1], self._network.biases[-1])
        return total + float(np.dot(w_last.ravel(), w_last.ravel()))

    # -- fitting --------------------------------------------------------------------
    def fit(self, X, y):
        """Fit the model to X (n_samples, n_features) and y; returns self.

        Trains for up to ``max_iter`` epochs (fewer when the loss, or with
        ``early_stopping`` the validation score, stops improving by ``tol`` for
        ``n_iter_no_change`` epochs); continues from the previous fit when
        ``warm_start`` is set.
        """
        return self._fit(X, y, incremental=False)

    def _fit(self, X, y, incremental):
        hidden = self._checked_params()
        if incremental and self.early_stopping:
            raise ValueError("partial_fit does not support early_stopping=True")
        first_pass = not hasattr(self, "_network") or (not self.warm_start and not incremental)
        X, y_net = self._validate_Xy(X, y, incremental, reset=first_pass)
        n_outputs = self._n_outputs_of(y_net)
        rng = check_random_state(self.random_state)
        if first_pass:
            params = self._initial_params([X.shape[1]] + hidden + [n_outputs], rng)
        else:
            self._check_continuable(hidden, n_outputs)
        if self.early_stopping:
            # the same draws as scikit-learn: initial weights, then this split, which
            # scikit-learn stratifies for a single (logistic) output only
            stratify = y_net if self._stratify and n_outputs == 1 else None
            X, X_val, y_net, y_val = train_test_split(X, y_net, random_state=rng,
                                                      test_size=self.validation_fraction,
                                                      stratify=stratify)
            if len(X_val) < 2:
                raise ValueError("The validation set is too small; increase validation_fraction "
                                 "or the size of your dataset.")
            X, X_val = np.ascontiguousarray(X), np.ascontiguousarray(X_val)
            y_net = np.ascontiguousarray(y_net)
        else:
            X_val = y_val = None
        if first_pass:
            self._network = self._build_network(params, rng)
            self._initialize_attributes(n_outputs)
        if not incremental or not hasattr(self, "_lr"):
            # a new optimizer, as scikit-learn makes for each fit
            self._lr = float(self.learning_rate_init)
            self._network.reset_optimizer()
        self._run_epochs(X, y_net, X_val, y_val, incremental)
        self._export_params()
        return self

    def _initialize_attributes(self, n_outputs):
        self.n_outputs_ = n_outputs
        self.n_layers_ = len(self._network.layer_sizes)
        self.out_activation_ = self._out_activation(n_outputs)
        self.n_iter_ = 0
        self.t_ = 0
        self.loss_curve_ = []
        self._no_improvement_count = 0
        if self.early_stopping:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
            self.best_loss_ = None
        else:
            self.validation_scores_ = None
            self.best_validation_score_ = None
            self.best_loss_ = np.inf
        self._best_params = None

    def _check_continuable(self, hidden, n_outputs):
        expected = [self.n_features_in_] + hidden + [self._net_outputs(n_outputs)]
        if list(self._network.layer_sizes) != expected:
            raise ValueError(f"cannot continue training: the fitted network has layer sizes "
                             f"{list(self._network.layer_sizes)} but the parameters and data "
                             f"need {expected}; fit again with warm_start=False")
        if self._network.activations and self._network.activations[0] != ACTIVATIONS[self.activation]:
            raise ValueError(f"cannot continue training with activation={self.activation!r}: "
                             "the network was fitted with another; fit with warm_start=False")
        if self._network.dtype != check_dtype(self.dtype):
            raise ValueError(f"cannot continue training with dtype={self.dtype!r}: the network "
                             f"holds {self._network.dtype.name}; fit with warm_start=False")
        if self.early_stopping and self.validation_scores_ is None:
            self.validation_scores_ = []
            self.best_validation_score_ = -np.inf
        if not self.early_stopping and self.best_loss_ is None:
            self.best_loss_ = np.inf

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
        if self.momentum > 0:
            _scale_velocity(self._network, self._lr / lr)
        self._lr = lr

    def _run_epochs(self, X, y_net, X_val, y_val, incremental):
        net = self._network
        n_samples = len(X)
        batch = self._batch_size(n_samples)
        n_batches = -(-n_samples // batch)
        grad_scale = self._grad_scale(self.n_outputs_)
        fit_args = dict(optimizer=self.solver, batch_size=batch, epochs=1,
                        momentum=float(self.momentum),
                        nesterov=bool(self.nesterovs_momentum) and self.momentum > 0,
                        weight_decay=float(self.alpha) / (batch * grad_scale),
                        shuffle=bool(self.shuffle))
        if self.n_threads is not None:
            fit_args["n_threads"] = self.n_threads
        self.n_iter_ = 0
        squares_before = self._penalty_sum() if self.alpha else 0.0
        try:
            for _ in range(self.max_iter):
                try:
                    history = net.fit(X, y_net, lr=self._lr * grad_scale, **fit_args)
                except FloatingPointError as err:
                    raise ValueError("Solver produced non-finite parameter weights. The input "
                                     "data may contain large values and need to be preprocessed; "
                                     "or try a smaller learning_rate_init.") from err
                self.n_iter_ += 1
                # scikit-learn adds alpha/2 * Σ‖W‖² / batch for each batch, with the
                # weights before that batch's step: the mean of the epoch's first and
                # last Σ‖W‖² stands for them
                squares_after = self._penalty_sum() if self.alpha else 0.0
                penalty = (0.25 * self.alpha * (squares_before + squares_after)
                           * n_batches / n_samples)
                squares_before = squares_after
                self.loss_ = history.loss[0] * self._loss_scale() + penalty
                self.t_ += n_samples
                self.loss_curve_.append(self.loss_)
                if self.verbose:
                    print(f"Iteration {self.n_iter_}, loss = {self.loss_:.8f}", flush=True)
                self._update_no_improvement_count(X_val, y_val)
                if self.learning_rate == "invscaling":
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
            net.set_weights(*self._best_params)

    def _update_no_improvement_count(self, X_val, y_val):
        if self.early_stopping:
            score = self._validation_score(X_val, y_val)
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
        """No progress for n_iter_no_change epochs: stop, or with "adaptive" divide lr."""
        what = "Validation score" if self.early_stopping else "Training loss"
        message = (f"{what} did not improve more than tol={self.tol:f} for "
                   f"{self.n_iter_no_change} consecutive epochs.")
        if self.learning_rate != "adaptive" or self._lr <= ADAPTIVE_MIN_LR:
            if self.verbose:
                print(message + " Stopping.", flush=True)
            return True
        self._set_lr(self._lr / ADAPTIVE_DIVISOR)
        if self.verbose:
            print(message + f" Setting learning rate to {self._lr:f}", flush=True)
        return False

    # -- prediction -----------------------------------------------------------------
    def _network_input(self, X):
        check_is_fitted(self)
        return _validate_data(self, X, reset=False, dtype=self._network.dtype, order="C")

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

    def __sklearn_tags__(self):  # scikit-learn >= 1.6
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = False
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"_xfail_checks": expected_failed_checks(self)}


class MLPClassifier(ClassifierMixin, _BaseMLP):
    """Multilayer perceptron classifier trained by SGD in fastbp's C core, with
    scikit-learn's `MLPClassifier` parameters and attributes (SGD solver only).

    Parameters are scikit-learn's (see the module docstring for how each maps onto
    fastbp); ``solver`` is "sgd" (mini-batches) or "gd" (full batch). fastbp's own:
    ``dtype`` ("float32" or "float64", the precision of training and prediction) and
    ``n_threads`` (passed to `fastbp.Network.fit`).

    >>> import numpy as np
    >>> from fastbp.sklearn import MLPClassifier
    >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]] * 25, dtype=float)
    >>> y = np.array(["no", "yes", "yes", "no"] * 25)
    >>> clf = MLPClassifier((8,), activation="tanh", learning_rate_init=0.1, batch_size=4,
    ...                     max_iter=300, random_state=0).fit(X, y)
    >>> clf.predict([[0, 1], [1, 1]]).tolist(), clf.predict_proba([[0, 1]]).shape
    (['yes', 'no'], (1, 2))
    """

    _loss = "cross_entropy"
    _stratify = True

    def _validate_Xy(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, reset=reset, dtype=check_dtype(self.dtype), order="C")
        check_classification_targets(y)
        if reset and not incremental:
            classes = unique_labels(y)
            if len(classes) < 2:
                raise ValueError(f"the classifier needs samples of at least 2 classes in y; "
                                 f"got 1 class: {classes[0]!r}")
            self.classes_ = classes
        else:
            classes = unique_labels(y)
            if self.warm_start and not incremental:
                if set(classes) != set(self.classes_):
                    raise ValueError("warm_start can only be used where y has the same classes "
                                     f"as in the previous call to fit; previously got "
                                     f"{self.classes_}, y has {classes}")
            elif len(np.setdiff1d(classes, self.classes_)):
                raise ValueError(f"y has classes not in classes_: classes_ is {self.classes_}, "
                                 f"y has {classes}")
        return X, np.searchsorted(self.classes_, y).astype(np.int32)

    def _n_outputs_of(self, y_net):
        # scikit-learn's output count: 1 logistic unit for two classes
        return 1 if len(self.classes_) == 2 else len(self.classes_)

    def _out_activation(self, n_outputs):
        return "logistic" if n_outputs == 1 else "softmax"

    def _net_outputs(self, n_outputs):
        return 2 if n_outputs == 1 else n_outputs

    def _to_net_output(self, w, b):
        if w.shape[1] != 1:
            return w, b
        # softmax over (-z/2, z/2) gives p(class 1) = sigmoid(z): scikit-learn's model
        return np.hstack([-w / 2, w / 2]), np.concatenate([-b / 2, b / 2])

    def _from_net_output(self, w, b):
        if w.shape[1] != 2 or len(self.classes_) != 2:
            return w, b
        return w[:, 1:] - w[:, :1], b[1:] - b[:1]

    def _validation_score(self, X_val, y_val):
        return float(np.mean(self._network.predict(X_val) == y_val))

    def partial_fit(self, X, y, classes=None):
        """One epoch over (X, y) from the current weights; returns self.

        ``classes`` (every label the model will ever see) is required on the first
        call and optional after; the optimizer state (momentum, learning rate) is kept
        from call to call.

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
                    raise ValueError(f"classes={classes} is not the same as on the first call to "
                                     f"partial_fit: {self.classes_}")
            else:
                if len(classes) < 2:
                    raise ValueError(f"classes must hold at least 2 labels, got {classes}")
                self.classes_ = classes
        elif not hasattr(self, "classes_"):
            raise ValueError("classes must be passed on the first call to partial_fit.")
        return self._fit(X, y, incremental=True)

    def predict_proba(self, X):
        """Class probabilities, (n_samples, n_classes), columns in ``classes_`` order."""
        dtype = _result_dtype(X)
        X = self._network_input(X)
        return self._network.predict_proba(X).astype(dtype, copy=False)

    def predict_log_proba(self, X):
        """The logarithm of `predict_proba`."""
        proba = self.predict_proba(X)
        return np.log(proba, out=proba)

    def predict(self, X):
        """The most probable class of each sample, as labels from ``classes_``."""
        X = self._network_input(X)
        return self.classes_[self._network.predict(X)]

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"_xfail_checks": expected_failed_checks(self)}


class MLPRegressor(RegressorMixin, _BaseMLP):
    """Multilayer perceptron regressor (squared error, identity outputs) trained by SGD
    in fastbp's C core, with scikit-learn's `MLPRegressor` parameters and attributes
    (SGD solver only); y may have several columns.

    >>> import numpy as np
    >>> from fastbp.sklearn import MLPRegressor
    >>> X = np.linspace(-1, 1, 200).reshape(-1, 1)
    >>> y = np.column_stack([2 * X[:, 0], -X[:, 0] + 1])
    >>> reg = MLPRegressor((16,), learning_rate_init=0.05, max_iter=200, random_state=0)
    >>> reg.fit(X, y).predict(X).shape, round(reg.score(X, y), 2) > 0.95
    ((200, 2), True)
    """

    _loss = "mse"
    _stratify = False

    def _grad_scale(self, n_outputs):
        # fastbp's mse gradient is (2 / n_outputs)(yhat - y), scikit-learn's (yhat - y)
        return n_outputs / 2.0

    def _loss_scale(self):
        # fastbp's mse is mean (yhat - y)², scikit-learn's half of it
        return 0.5

    def _validate_Xy(self, X, y, incremental, reset):
        X, y = _validate_data(self, X, y, reset=reset, dtype=check_dtype(self.dtype), order="C",
                              multi_output=True, y_numeric=True)
        if y.ndim == 2 and y.shape[1] == 1:
            y = column_or_1d(y, warn=True)
        y = y.reshape(len(y), -1)
        return X, np.ascontiguousarray(y, dtype=check_dtype(self.dtype))

    def _n_outputs_of(self, y_net):
        return y_net.shape[1]

    def _out_activation(self, n_outputs):
        return "identity"

    def _validation_score(self, X_val, y_val):
        return float(r2_score(y_val, self._network.predict(X_val).reshape(y_val.shape)))

    def partial_fit(self, X, y):
        """One epoch over (X, y) from the current weights; returns self. The optimizer
        state (momentum, learning rate) is kept from call to call.

        >>> from fastbp.sklearn import MLPRegressor
        >>> reg = MLPRegressor((4,), random_state=0).partial_fit([[0.0], [1.0]], [0.5, 1.5])
        >>> reg.n_outputs_, reg.t_
        (1, 2)
        """
        return self._fit(X, y, incremental=True)

    def predict(self, X):
        """Predicted targets, (n_samples,) for one output, else (n_samples, n_outputs)."""
        dtype = _result_dtype(X)
        X = self._network_input(X)
        return self._network.predict(X).astype(dtype, copy=False)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags

    def _more_tags(self):  # scikit-learn < 1.6
        return {"multioutput": True, "_xfail_checks": expected_failed_checks(self)}
