"""fastbp.sklearn: scikit-learn's own estimator checks (each solver), the same SGD,
Adam and L-BFGS trajectories as scikit-learn's MLP (every output kind, sample weights),
precision following X, sparse X, labels, partial_fit, warm_start, early stopping,
pipelines, grid search with workers, pickling, and MNIST accuracy against
scikit-learn."""
import inspect
import pickle
import subprocess
import sys
import warnings

import numpy as np
import pytest

sklearn = pytest.importorskip("sklearn")

from sklearn import neural_network as skl_nn  # noqa: E402
from sklearn.datasets import load_digits  # noqa: E402
from sklearn.exceptions import ConvergenceWarning, NotFittedError  # noqa: E402
from sklearn.model_selection import GridSearchCV  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402
from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

import fastbp  # noqa: E402
from fastbp.sklearn import MLPClassifier, MLPRegressor, expected_failed_checks  # noqa: E402

from conftest import mnist_dir  # noqa: E402

# Small enough that the whole suite of checks runs in seconds, large enough that
# the checks' "learns the toy problem" assertions hold. One thread: the checks' data
# sets are tiny, and waking threads for each update would cost more than the update.
_ONE_THREAD = {"n_threads": 1} if "n_threads" in inspect.signature(fastbp.Network.fit).parameters else {}
CHECKED_ESTIMATORS = [
    MLPClassifier(max_iter=100, random_state=0, **_ONE_THREAD),           # the default: Adam
    MLPRegressor(max_iter=100, random_state=0, **_ONE_THREAD),
    MLPClassifier(solver="sgd", max_iter=50, learning_rate_init=0.01, random_state=0, **_ONE_THREAD),
    MLPRegressor(solver="sgd", max_iter=50, random_state=0, **_ONE_THREAD),
    MLPClassifier(solver="lbfgs", max_iter=100, random_state=0, **_ONE_THREAD),
    MLPRegressor(solver="lbfgs", max_iter=100, random_state=0, **_ONE_THREAD),
]


@parametrize_with_checks(CHECKED_ESTIMATORS, expected_failed_checks=expected_failed_checks)
def test_sklearn_estimator_checks(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_import_fastbp_does_not_import_sklearn(tmp_path):
    code = "import sys, fastbp; print('sklearn' in sys.modules)"
    # cwd outside the source tree, whose fastbp has no compiled core in a clean clone
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=tmp_path)
    assert out.stdout.strip() == "False"


# -- the same steps as scikit-learn ---------------------------------------------------
def _problem(n=120, n_features=5, n_classes=3, n_targets=2, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, n_features))
    return X, rng.integers(0, n_classes, n), rng.standard_normal((n, n_targets))


COMMON = dict(hidden_layer_sizes=(7, 6), activation="tanh", solver="sgd", batch_size=20, learning_rate_init=0.05,
              max_iter=8, shuffle=False, random_state=0)


KINDS = ["classifier", "binary", "multilabel", "regressor", "one_target", "poisson"]


def _estimators_and_y(kind, X, labels, targets):
    """(fastbp's estimator class, scikit-learn's, y, extra parameters) for a kind of
    problem."""
    if kind in ("classifier", "binary", "multilabel"):
        y = {"classifier": labels, "binary": labels % 2,
             "multilabel": np.column_stack([labels == 0, labels != 1, targets[:, 0] > 0]).astype(int)}[kind]
        return MLPClassifier, skl_nn.MLPClassifier, y, {}
    if kind == "poisson":
        counts = np.random.default_rng(2).poisson(np.exp(0.3 * X[:, :2]))
        return MLPRegressor, skl_nn.MLPRegressor, counts, {"loss": "poisson"}
    return MLPRegressor, skl_nn.MLPRegressor, targets[:, 0] if kind == "one_target" else targets, {}


def _fit_both(kind, params):
    X, labels, targets = _problem()
    ours_cls, theirs_cls, y, extra = _estimators_and_y(kind, X, labels, targets)
    params = dict(params, **extra)
    sk_params = dict(params, solver="sgd", batch_size=len(X)) if params.get("solver") == "gd" else params
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = theirs_cls(**sk_params).fit(X, y)
        ours = ours_cls(**params).fit(X, y)
    return ours, theirs


def _assert_same_weights(ours, theirs, rtol=1e-9, atol=1e-12):
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)


@pytest.mark.parametrize("options", [
    {},
    {"learning_rate": "invscaling", "power_t": 0.3},
    {"learning_rate": "adaptive", "tol": 0.5, "n_iter_no_change": 1},
    {"nesterovs_momentum": False, "alpha": 0.1},
    {"momentum": 0.0, "activation": "relu"},
    {"activation": "logistic", "alpha": 0.0},
    {"activation": "identity", "solver": "gd"},
    {"solver": "adam"},
    {"solver": "adam", "beta_1": 0.5, "beta_2": 0.9, "epsilon": 1e-2, "alpha": 0.1},
    {"solver": "adam", "activation": "relu", "learning_rate_init": 0.01},
    {"solver": "adam", "activation": "logistic", "tol": 0.5, "n_iter_no_change": 1},
    {"solver": "adam", "batch_size": 35, "alpha": 0.1},     # a last batch of 15
    {"batch_size": 50, "alpha": 0.1},                        # a last batch of 20
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
@pytest.mark.parametrize("kind", KINDS)
def test_training_matches_sklearn_step_for_step(kind, options):
    """Same initial weights (drawn as scikit-learn draws them), no shuffling: scikit-
    learn's SGD or Adam and fastbp's give the same weights to rounding (alpha's decay
    of a smaller last batch included)."""
    ours, theirs = _fit_both(kind, dict(COMMON, **options))
    assert ours.n_iter_ == theirs.n_iter_ and ours.t_ == theirs.t_
    _assert_same_weights(ours, theirs)
    # loss_'s L2 penalty uses the epoch's first and last weights, scikit-learn each batch's
    np.testing.assert_allclose(ours.loss_curve_, theirs.loss_curve_,
                               rtol=1e-3 if options.get("alpha") else 1e-5)
    assert ours.out_activation_ == theirs.out_activation_


@pytest.mark.parametrize("options", [
    {},
    {"alpha": 0.1, "activation": "logistic"},
    {"activation": "relu", "tol": 1e-3},
    {"tol": 0.03, "max_iter": 100},     # stops on gtol, after 3 iterations for one_target
    {"max_fun": 7},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
@pytest.mark.parametrize("kind", ["classifier", "binary", "multilabel", "one_target", "poisson"])
def test_lbfgs_matches_sklearn(kind, options):
    """scikit-learn's L-BFGS from the same initial weights: the same iterates, the
    same number of iterations and the same loss_."""
    ours, theirs = _fit_both(kind, dict(COMMON, solver="lbfgs", **dict({"max_iter": 15}, **options)))
    assert ours.n_iter_ == theirs.n_iter_
    # L-BFGS's curvature pairs amplify the last bits by which the two sums differ
    _assert_same_weights(ours, theirs, rtol=1e-8, atol=1e-11)
    assert ours.loss_ == pytest.approx(theirs.loss_, rel=1e-9)
    assert not hasattr(ours, "loss_curve_") and not hasattr(theirs, "loss_curve_")


def test_adam_steps_are_sklearns_AdamOptimizer():
    """Each partial_fit over one full batch is one Adam step: after every step the
    weights are those scikit-learn's AdamOptimizer makes from the same gradients
    (softmax cross-entropy of a tanh layer, plus alpha * W / n, written out here),
    starting from scikit-learn's initial weights for random_state=0."""
    from sklearn.neural_network._stochastic_optimizers import AdamOptimizer
    X, labels, _ = _problem()
    (n, n_features), n_hidden, alpha = X.shape, 5, 0.3
    rng = np.random.RandomState(0)
    params = []
    for fan_in, fan_out in [(n_features, n_hidden), (n_hidden, 3)]:
        bound = np.sqrt(6 / (fan_in + fan_out))
        params += [rng.uniform(-bound, bound, (fan_in, fan_out)), rng.uniform(-bound, bound, fan_out)]
    W0, b0, W1, b1 = params
    params = [W0, W1, b0, b1]             # scikit-learn's order: coefs_ + intercepts_
    optimizer = AdamOptimizer(params, 0.05, 0.8, 0.95, 1e-3)
    clf = MLPClassifier((n_hidden,), activation="tanh", alpha=alpha, batch_size=n,
                        learning_rate_init=0.05, beta_1=0.8, beta_2=0.95, epsilon=1e-3,
                        shuffle=False, random_state=0)
    Y = np.eye(3)[labels]
    for step in range(6):
        clf.partial_fit(X, labels, classes=[0, 1, 2])
        W0, W1, b0, b1 = params
        h = np.tanh(X @ W0 + b0)
        z = h @ W1 + b1
        p = np.exp(z - z.max(axis=1, keepdims=True))
        d1 = p / p.sum(axis=1, keepdims=True) - Y
        d0 = d1 @ W1.T * (1 - h ** 2)
        grads = [(X.T @ d0 + alpha * W0) / n, (h.T @ d1 + alpha * W1) / n,
                 d0.sum(axis=0) / n, d1.sum(axis=0) / n]
        optimizer.update_params(params, grads)
        for ours, theirs in zip(clf.coefs_ + clf.intercepts_, params):
            np.testing.assert_allclose(ours, theirs, rtol=1e-11, atol=1e-14,
                                       err_msg=f"after step {step + 1}")


@pytest.mark.parametrize("options", [
    {"solver": "lbfgs", "alpha": 0.1},
    {"solver": "adam", "batch_size": 120, "alpha": 0.1},     # full batches
    {"solver": "adam", "alpha": 0.1},                         # mini-batches: alpha / Σ s
    {"solver": "sgd", "alpha": 0.1, "nesterovs_momentum": False, "batch_size": 50},
    {"solver": "adam", "alpha": 0.0, "early_stopping": True, "validation_fraction": 0.25,
     "n_iter_no_change": 2, "max_iter": 30},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()))
@pytest.mark.parametrize("kind", ["classifier", "binary", "one_target"])
def test_sample_weight_matches_sklearn(kind, options):
    """fit(X, y, sample_weight) from the same initial weights: scikit-learn 1.7's
    weighted losses, gradients, validation split and weighted validation scores."""
    X, labels, targets = _problem()
    ours_cls, theirs_cls, y, _ = _estimators_and_y(kind, X, labels, targets)
    weights = np.random.default_rng(3).uniform(0, 3, len(X))
    weights[::7] = 0.0
    params = dict(COMMON, **options)
    if params.get("early_stopping"):
        params["batch_size"] = 30         # 90 training samples: whole batches
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = theirs_cls(**params).fit(X, y, sample_weight=weights)
        ours = ours_cls(**params).fit(X, y, sample_weight=weights)
        unweighted = ours_cls(**params).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_
    _assert_same_weights(ours, theirs, rtol=1e-8, atol=1e-11)
    if params.get("early_stopping"):
        np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-12)
    assert not np.allclose(unweighted.coefs_[0], ours.coefs_[0])


@pytest.mark.parametrize("bad, error, match", [
    (np.ones(5), ValueError, r"shape \(120,\)"), (np.ones((120, 2)), ValueError, "shape"),
    (-np.ones(120), ValueError, "non-negative"), (np.zeros(120), ValueError, "zero for every"),
    (np.full(120, np.nan), ValueError, "NaN"), ("heavy", TypeError, "sample_weight"),
])
def test_bad_sample_weight_names_itself(bad, error, match):
    X, labels, _ = _problem()
    with pytest.raises(error, match=match):
        MLPClassifier((3,), max_iter=1).fit(X, labels, sample_weight=bad)


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("n_features", [256, 300, 784])
def test_wide_inputs_match_sklearn(n_features, activation):
    """MNIST-wide inputs: more input rows than one of the C kernels' panels (256)."""
    X, y, _ = _problem(n=64, n_features=n_features, n_classes=10)
    X = np.abs(X)      # non-negative like pixels, so relu units see large sums
    params = dict(COMMON, hidden_layer_sizes=(16,), activation=activation, batch_size=32,
                  max_iter=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = skl_nn.MLPClassifier(**params).fit(X, y)
        ours = MLPClassifier(**params).fit(X, y)
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-9, atol=1e-12)


def test_adaptive_learning_rate_falls_as_sklearn_does():
    X, y, _ = _problem()
    params = dict(COMMON, learning_rate="adaptive", tol=10.0, n_iter_no_change=1, max_iter=6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = skl_nn.MLPClassifier(**params).fit(X, y)
        ours = MLPClassifier(**params).fit(X, y)
    assert ours._lr == pytest.approx(theirs._optimizer.learning_rate)
    assert ours._lr < params["learning_rate_init"]
    np.testing.assert_allclose(ours.coefs_[0], theirs.coefs_[0], rtol=1e-9, atol=1e-12)


def test_stops_when_loss_stalls_like_sklearn():
    X, y, _ = _problem()
    params = dict(COMMON, tol=1e3, n_iter_no_change=2, max_iter=50)
    theirs = skl_nn.MLPClassifier(**params).fit(X, y)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ConvergenceWarning)   # stopping early is not a warning
        ours = MLPClassifier(**params).fit(X, y)
    assert ours.n_iter_ == theirs.n_iter_ == 4
    assert ours.best_loss_ == pytest.approx(theirs.best_loss_, rel=1e-5)


def test_max_iter_reached_warns_convergence():
    X, y, _ = _problem()
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        clf = MLPClassifier((5,), max_iter=3, random_state=0).fit(X, y)
    assert clf.n_iter_ == 3 and len(clf.loss_curve_) == 3 and clf.t_ == 3 * len(X)


# -- early stopping -------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["classifier", "binary", "regressor"])
def test_early_stopping_same_split_scores_and_restored_weights_as_sklearn(kind):
    # 100 samples, 20 for validation: 80 train in whole batches of 20
    X, labels, targets = _problem(n=100)
    y = {"classifier": labels, "binary": labels % 2, "regressor": targets}[kind]
    ours_cls, theirs_cls = ((MLPRegressor, skl_nn.MLPRegressor) if kind == "regressor"
                            else (MLPClassifier, skl_nn.MLPClassifier))
    params = dict(COMMON, early_stopping=True, validation_fraction=0.2, n_iter_no_change=2,
                  max_iter=30)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        theirs = theirs_cls(**params).fit(X, y)
        ours = ours_cls(**params).fit(X, y)
    assert ours.best_loss_ is None and len(ours.validation_scores_) == ours.n_iter_
    assert ours.n_iter_ == theirs.n_iter_
    np.testing.assert_allclose(ours.validation_scores_, theirs.validation_scores_, rtol=1e-8)
    assert ours.best_validation_score_ == pytest.approx(theirs.best_validation_score_)
    for a, b in zip(ours.coefs_, theirs.coefs_):   # both restored to the best epoch
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


def test_early_stopping_restores_best_epoch_weights():
    X, y = load_digits(return_X_y=True)
    clf = MLPClassifier((32,), solver="sgd", early_stopping=True, n_iter_no_change=3, max_iter=40,
                        learning_rate_init=0.5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X / 16, y)
    best = int(np.argmax(clf.validation_scores_))
    assert clf.best_validation_score_ == clf.validation_scores_[best]
    # the weights are the best epoch's: the final epoch's would score differently
    assert best < clf.n_iter_ - 1


def test_partial_fit_rejects_early_stopping():
    X, y, _ = _problem()
    with pytest.raises(ValueError, match="early_stopping"):
        MLPClassifier(early_stopping=True).partial_fit(X, y, classes=[0, 1, 2])


# -- labels and shapes ----------------------------------------------------------------
@pytest.mark.parametrize("names", [np.array(["cat", "dog", "eel"]), np.array([-5, 10, 42])])
def test_arbitrary_class_labels(names):
    X, idx = load_digits(n_class=3, return_X_y=True)
    y = names[idx]
    clf = MLPClassifier((16,), solver="sgd", learning_rate_init=0.1, max_iter=30, random_state=0).fit(X / 16, y)
    np.testing.assert_array_equal(clf.classes_, np.sort(names))
    pred = clf.predict(X / 16)
    assert pred.dtype == y.dtype and set(pred) <= set(names)
    assert clf.score(X / 16, y) > 0.95
    proba = clf.predict_proba(X / 16)
    assert proba.shape == (len(X), 3) and clf.out_activation_ == "softmax"
    np.testing.assert_array_equal(clf.classes_[proba.argmax(axis=1)], pred)


def _forward(coefs, intercepts, X, hidden):
    a = X
    for w, b in zip(coefs[:-1], intercepts[:-1]):
        a = hidden(a @ w + b)
    return a @ coefs[-1] + intercepts[-1]


def test_binary_is_sklearns_logistic_model():
    X, labels, _ = _problem()
    y = np.where(labels == 1, "yes", "no")
    clf = MLPClassifier((6,), activation="tanh", solver="sgd", learning_rate_init=0.05, max_iter=20,
                        random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    assert clf.out_activation_ == "logistic" and clf.n_outputs_ == 1
    assert clf.coefs_[-1].shape == (6, 1) and clf.intercepts_[-1].shape == (1,)
    proba = clf.predict_proba(X)
    assert proba.shape == (len(X), 2)
    z = _forward(clf.coefs_, clf.intercepts_, X, np.tanh)[:, 0]
    np.testing.assert_allclose(proba[:, 1], 1 / (1 + np.exp(-z)), rtol=1e-10)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    np.testing.assert_array_equal(clf.predict(X), np.where(z > 0, "yes", "no"))


def test_one_class_trains_sklearns_constant_model():
    """y with a single label: scikit-learn trains its logistic output towards p = 0 and
    predicts that label; so does fastbp, to the same weights."""
    X, _, _ = _problem()
    y = np.full(len(X), "only")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier((4,), max_iter=5, random_state=0).fit(X, y)
        theirs = skl_nn.MLPClassifier((4,), max_iter=5, random_state=0).fit(X, y)
    assert ours.classes_.tolist() == ["only"] and (ours.predict(X) == "only").all()
    _assert_same_weights(ours, theirs, rtol=1e-6, atol=1e-9)   # shuffled: sums in other orders
    np.testing.assert_allclose(ours.predict_proba(X), theirs.predict_proba(X), rtol=1e-6)


def test_multiclass_probabilities_are_softmax_of_coefs():
    X, y, _ = _problem()
    clf = MLPClassifier((6,), activation="relu", max_iter=5, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    z = _forward(clf.coefs_, clf.intercepts_, X, lambda a: np.maximum(a, 0))
    p = np.exp(z - z.max(axis=1, keepdims=True))
    np.testing.assert_allclose(clf.predict_proba(X), p / p.sum(axis=1, keepdims=True), rtol=1e-10)
    np.testing.assert_allclose(clf.predict_log_proba(X), np.log(clf.predict_proba(X)))


def test_multi_output_regression():
    rng = np.random.default_rng(1)
    X = rng.uniform(-1, 1, (400, 3))
    Y = np.column_stack([X[:, 0] + X[:, 1], np.sin(2 * X[:, 2]), X[:, 0] * X[:, 1]])
    reg = MLPRegressor(hidden_layer_sizes=(32,), activation="tanh", solver="sgd",
                       learning_rate_init=0.05, max_iter=300, random_state=0).fit(X, Y)
    assert reg.n_outputs_ == 3 and reg.out_activation_ == "identity"
    assert reg.coefs_[-1].shape == (32, 3) and reg.predict(X).shape == (400, 3)
    assert reg.score(X, Y) > 0.9
    one = MLPRegressor(hidden_layer_sizes=(8,), max_iter=2, random_state=0).fit(X, Y[:, 0])
    assert one.predict(X).shape == (400,) and one.n_outputs_ == 1


@pytest.mark.parametrize("fit_dtype", [np.float32, np.float64])
@pytest.mark.parametrize("solver", ["sgd", "adam", "lbfgs"])
def test_parameters_follow_X_precision_and_predictions_promote(fit_dtype, solver):
    """As in scikit-learn: float32 X trains float32 parameters, anything else float64;
    predictions have the dtype of X's values times the parameters' (float32 only when
    both are)."""
    X, y, Y = _problem()
    X = X.astype(fit_dtype)
    reg = MLPRegressor(hidden_layer_sizes=(4,), solver=solver, max_iter=2, random_state=0)
    clf = MLPClassifier((4,), solver=solver, max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X, Y)
        clf.fit(X, y)
    for model in (reg, clf):
        assert all(a.dtype == fit_dtype for a in model.coefs_ + model.intercepts_)
    for predict_dtype in (np.float32, np.float64):
        expected = np.result_type(fit_dtype, predict_dtype)
        assert reg.predict(X.astype(predict_dtype)).dtype == expected
        assert clf.predict_proba(X.astype(predict_dtype)).dtype == expected
    assert reg.predict(np.ones((2, X.shape[1]), dtype=int)).dtype == np.float64


def test_float64_data_beyond_float32_range_trains_in_float64():
    """Values finite in float64 but beyond float32's range (3.4e38) train: the network
    is float64 for float64 X (Adam's steps are about lr whatever the gradient's size)."""
    X, y, _ = _problem()
    clf = MLPClassifier((4,), max_iter=1, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X * 1e39, y)
    assert clf.coefs_[0].dtype == np.float64
    assert np.isfinite(clf.coefs_[0]).all() and np.isfinite(clf.predict_proba(X * 1e39)).all()


# -- partial_fit and warm_start -------------------------------------------------------
def test_partial_fit_needs_classes_first_then_keeps_them():
    X, y, _ = _problem()
    clf = MLPClassifier((5,), random_state=0)
    with pytest.raises(ValueError, match="classes must be passed"):
        clf.partial_fit(X, y)
    clf.partial_fit(X[y < 2], y[y < 2], classes=[0, 1, 2])   # y need not hold every class
    assert clf.classes_.tolist() == [0, 1, 2] and clf.predict_proba(X).shape == (len(X), 3)
    with pytest.raises(ValueError, match="classes not in `self.classes_`"):
        clf.partial_fit(X, y + 10)
    with pytest.raises(ValueError, match="not the same"):
        clf.partial_fit(X, y, classes=[0, 1])
    with pytest.raises(ValueError, match="features"):
        clf.partial_fit(X[:, :3], y)


@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_partial_fit_epochs_equal_fit(kind):
    """k calls of partial_fit are k epochs of fit: same init, same optimizer state
    (momentum carried across calls), same shuffling stream."""
    X, labels, targets = _problem()
    params = dict(COMMON, shuffle=True)
    if kind == "classifier":
        fitted = MLPClassifier(**dict(params, max_iter=4))
        stepped = MLPClassifier(**params)
        for _ in range(4):
            stepped.partial_fit(X, labels, classes=[0, 1, 2])
        y = labels
    else:
        fitted = MLPRegressor(**dict(params, max_iter=4))
        stepped = MLPRegressor(**params)
        for _ in range(4):
            stepped.partial_fit(X, targets)
        y = targets
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        fitted.fit(X, y)
    assert stepped.t_ == fitted.t_ == 4 * len(X) and stepped.n_iter_ == 1
    np.testing.assert_allclose(stepped.loss_curve_, fitted.loss_curve_, rtol=1e-12)
    for a, b in zip(stepped.coefs_ + stepped.intercepts_, fitted.coefs_ + fitted.intercepts_):
        np.testing.assert_array_equal(a, b)


def test_warm_start_continues_like_sklearn():
    X, y, _ = _problem()
    params = dict(COMMON, warm_start=True, max_iter=3)
    ours, theirs = MLPClassifier(**params), skl_nn.MLPClassifier(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for model in (ours, theirs):
            model.fit(X, y)
            first = [c.copy() for c in model.coefs_]
            model.fit(X, y)
    assert len(ours.loss_curve_) == len(theirs.loss_curve_) == 6
    assert not np.allclose(first[0], ours.coefs_[0])
    for a, b in zip(ours.coefs_ + ours.intercepts_, theirs.coefs_ + theirs.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)
    with pytest.raises(ValueError, match="same classes"):
        ours.fit(X, y + 1)
    ours.set_params(hidden_layer_sizes=(3,))
    with pytest.raises(ValueError, match="warm_start=False"):
        ours.fit(X, y)


def test_fit_without_warm_start_starts_over():
    X, y, _ = _problem()
    clf = MLPClassifier((5,), max_iter=2, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        first = clf.fit(X, y).coefs_[0].copy()
        second = clf.fit(X, y).coefs_[0]
    np.testing.assert_array_equal(first, second)
    assert len(clf.loss_curve_) == 2


# -- parameters -----------------------------------------------------------------------
def test_unknown_solver_is_rejected_naming_the_choices():
    X, y, _ = _problem()
    with pytest.raises(ValueError, match="solver 'newton'.*'adam', 'sgd', 'lbfgs', 'gd'"):
        MLPClassifier(solver="newton").fit(X, y)


@pytest.mark.parametrize("name, value, error", [
    ("activation", "softplus", ValueError), ("learning_rate", "optimal", ValueError),
    ("batch_size", 0, ValueError), ("batch_size", "big", TypeError),
    ("hidden_layer_sizes", (10, 0), ValueError), ("momentum", 1.0, ValueError),
    ("alpha", -1.0, ValueError), ("max_iter", 0, ValueError), ("learning_rate_init", 0.0, ValueError),
    ("validation_fraction", 1.0, ValueError), ("n_iter_no_change", 0, ValueError),
    ("tol", float("nan"), TypeError), ("beta_1", 1.0, ValueError), ("beta_2", -0.1, ValueError),
    ("epsilon", 0.0, ValueError), ("max_fun", 0, ValueError), ("n_iter_no_change", 2.5, TypeError),
])
def test_bad_parameter_names_itself(name, value, error):
    X, y, _ = _problem()
    with pytest.raises(error, match=name):
        MLPClassifier(**{name: value}).fit(X, y)


def test_predict_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError):
        MLPRegressor().predict(np.zeros((2, 3)))


def test_batch_size_larger_than_data_is_clipped_with_warning():
    X, y, _ = _problem(n=30)
    with pytest.warns(UserWarning, match="batch_size"):
        MLPClassifier((4,), batch_size=100, max_iter=1, random_state=0).fit(X, y)


def test_verbose_prints_sklearns_lines(capsys):
    X, y, _ = _problem()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        MLPClassifier((4,), max_iter=2, verbose=True, random_state=0).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].startswith("Iteration 1, loss = ") and lines[1].startswith("Iteration 2, loss = ")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf = MLPClassifier((4,), solver="lbfgs", max_iter=3, verbose=True, random_state=0).fit(X, y)
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == clf.n_iter_ == 3 and lines[0].startswith("iteration 1/3: loss ")


def test_n_threads_is_passed_through_or_refused():
    X, y, _ = _problem()
    clf = MLPClassifier((4,), max_iter=1, random_state=0, n_threads=1)
    if "n_threads" in inspect.signature(fastbp.Network.fit).parameters:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            clf.fit(X, y)
        assert clf.n_iter_ == 1
    else:
        with pytest.raises(ValueError, match="n_threads"):
            clf.fit(X, y)


# -- ecosystem ------------------------------------------------------------------------
def test_pickle_round_trip_predicts_and_continues_the_same():
    X, y, _ = _problem()
    clf = MLPClassifier((5,), random_state=0).partial_fit(X, y, classes=[0, 1, 2])
    copy = pickle.loads(pickle.dumps(clf))
    np.testing.assert_array_equal(copy.predict_proba(X), clf.predict_proba(X))
    clf.partial_fit(X, y)
    copy.partial_fit(X, y)     # momentum and shuffling state travelled with it
    for a, b in zip(copy.coefs_, clf.coefs_):
        np.testing.assert_array_equal(a, b)


def test_binary_classifier_pickled_before_the_logistic_output_loads_the_same():
    """fastbp up to 0.1.0 trained two classes as a softmax pair (-z/2, z/2) and kept no
    LabelBinarizer: such a pickle loads as the one-logistic-output model it was."""
    X, labels, _ = _problem()
    y = np.where(labels == 1, "yes", "no")
    clf = MLPClassifier((6,), solver="sgd", max_iter=3, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    old = pickle.loads(pickle.dumps(clf))
    net = old._network
    pair = fastbp.Network(net.layer_sizes[:-1] + (2,), activation=list(net.activations),
                          dtype=net.dtype)
    w, b = net.weights[-1], net.biases[-1]
    pair.set_weights(net.weights[:-1] + [np.hstack([-w / 2, w / 2])],
                     net.biases[:-1] + [np.concatenate([-b / 2, b / 2])])
    old._network = pair
    del old._label_binarizer
    loaded = pickle.loads(pickle.dumps(old))
    assert loaded._network.loss == "binary_cross_entropy"
    np.testing.assert_allclose(loaded.predict_proba(X), clf.predict_proba(X), rtol=1e-12)
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


def test_works_in_pipeline():
    X, y = load_digits(return_X_y=True)
    pipe = Pipeline([("scale", StandardScaler()),
                     ("mlp", MLPClassifier((32,), solver="sgd", learning_rate_init=0.05, max_iter=30,
                                           random_state=0))])
    pipe.fit(X[:1200], y[:1200])
    assert pipe.score(X[1200:], y[1200:]) > 0.9


def test_grid_search_with_two_workers():
    X, y = load_digits(return_X_y=True)
    search = GridSearchCV(MLPClassifier(solver="sgd", max_iter=15, learning_rate_init=0.05, random_state=0),
                          {"hidden_layer_sizes": [(8,), (32,)], "alpha": [1e-4, 1e-1]},
                          cv=3, n_jobs=2, error_score="raise")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        search.fit(X / 16, y)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all() and scores.max() > 0.9
    assert search.best_estimator_.coefs_[0].shape[1] == search.best_params_["hidden_layer_sizes"][0]


# -- sparse X -------------------------------------------------------------------------
@pytest.mark.parametrize("container", ["csr_matrix", "csc_matrix", "csr_array"])
@pytest.mark.parametrize("kind", ["classifier", "regressor"])
def test_sparse_X_trains_as_dense_in_blocks(kind, container, monkeypatch):
    """Sparse X is densified a few batches at a time (never all of it) and gives the
    weights that dense X gives."""
    import scipy.sparse
    import fastbp.sklearn as fsk
    X, labels, targets = _problem()
    X[np.abs(X) < 1] = 0.0
    y = labels if kind == "classifier" else targets
    cls = MLPClassifier if kind == "classifier" else MLPRegressor
    params = dict(COMMON, solver="sgd", alpha=0.01)
    dense = cls(**params)
    sparse = cls(**params)
    monkeypatch.setattr(fsk, "SPARSE_BLOCK_VALUES", 2 * COMMON["batch_size"] * X.shape[1])
    rows_seen = []
    fit = fastbp.Network.fit

    def recording_fit(self, X, *args, **kwargs):
        rows_seen.append(len(X))
        return fit(self, X, *args, **kwargs)

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense.fit(X, y)
        monkeypatch.setattr(fastbp.Network, "fit", recording_fit)
        sparse.fit(getattr(scipy.sparse, container)(X), y)
    assert max(rows_seen) == 2 * COMMON["batch_size"] < len(X)
    for a, b in zip(sparse.coefs_ + sparse.intercepts_, dense.coefs_ + dense.intercepts_):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sparse.loss_curve_, dense.loss_curve_, rtol=1e-12)
    sparse_X = getattr(scipy.sparse, container)(X)
    out = (lambda m, A: m.predict_proba(A)) if kind == "classifier" else (lambda m, A: m.predict(A))
    # the C kernels may sum a row in another order in a block of other rows: last bit
    np.testing.assert_allclose(out(sparse, sparse_X), out(sparse, X), rtol=1e-13)


@pytest.mark.parametrize("solver", ["adam", "lbfgs"])
def test_sparse_X_with_early_stopping_and_weights_is_dense_X(solver):
    import scipy.sparse
    X, labels, _ = _problem()
    X[np.abs(X) < 1] = 0.0
    weights = np.random.default_rng(4).uniform(0.5, 2, len(X))
    params = dict(COMMON, solver=solver, early_stopping=True, validation_fraction=0.25,
                  batch_size=30, alpha=0.01)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dense = MLPClassifier(**params).fit(X, labels, sample_weight=weights)
        sparse = MLPClassifier(**params).fit(scipy.sparse.csc_matrix(X), labels,
                                             sample_weight=weights)
    _assert_same_weights(sparse, dense, rtol=1e-12, atol=1e-14)
    if solver == "adam":
        assert sparse.validation_scores_ == dense.validation_scores_


def test_sparse_X_shuffles_each_epoch_reproducibly():
    import scipy.sparse
    X, y, _ = _problem()
    sparse_X = scipy.sparse.csr_matrix(X)
    fitted = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for shuffle in (True, True, False):
            fitted.append(MLPClassifier(**dict(COMMON, solver="sgd", shuffle=shuffle)).fit(sparse_X, y))
    np.testing.assert_array_equal(fitted[0].coefs_[0], fitted[1].coefs_[0])
    assert not np.allclose(fitted[0].coefs_[0], fitted[2].coefs_[0])


# -- what scikit-learn's own tests ask of a drop-in -----------------------------------
def test_n_iter_no_change_inf_never_stops_early():
    X, y, _ = _problem()
    clf = MLPClassifier((4,), solver="sgd", tol=1e9, n_iter_no_change=np.inf, max_iter=30,
                        random_state=0)
    with pytest.warns(ConvergenceWarning, match="Maximum iterations"):
        clf.fit(X, y)
    assert clf.n_iter_ == 30 and clf._no_improvement_count == 29


@pytest.mark.parametrize("cls", [MLPClassifier, MLPRegressor])
def test_partial_fit_is_not_offered_for_lbfgs(cls):
    assert not hasattr(cls(solver="lbfgs"), "partial_fit")
    assert hasattr(cls(solver="sgd"), "partial_fit") and hasattr(cls(), "partial_fit")
    with pytest.raises(AttributeError, match="has no attribute 'partial_fit'") as info:
        cls(solver="lbfgs").partial_fit
    assert "lbfgs is not stochastic" in str(info.value.__cause__)


def test_diverging_sgd_with_early_stopping_records_nan_and_keeps_best_weights():
    X, _, targets = _problem()
    reg = MLPRegressor(hidden_layer_sizes=(20,), activation="identity", solver="sgd",
                       learning_rate_init=5.0, early_stopping=True, max_iter=50, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        reg.fit(X * 100, targets)
    assert np.isnan(reg.validation_scores_[-1]) and isinstance(reg.validation_scores_[-1], float)
    assert np.isnan(reg.loss_curve_[-1]) and len(reg.validation_scores_) == reg.n_iter_ < 50
    finite = [s for s in reg.validation_scores_ if np.isfinite(s)]
    assert reg.best_validation_score_ == max(finite)
    assert np.isfinite(reg.predict(X)).all()
    # without early stopping the divergence is an error, as in scikit-learn
    with pytest.raises(ValueError, match="non-finite parameter weights"):
        reg.set_params(early_stopping=False).fit(X * 100, targets)


def test_early_stopping_stratification_error_is_sklearns():
    X = [[1, 2], [2, 3], [3, 4], [4, 5]]
    with pytest.raises(ValueError, match=r"least populated classes.*\['True'\]"):
        MLPClassifier(solver="sgd", early_stopping=True).fit(X, ["a", "a", "a", "b"])


# -- MNIST against scikit-learn -------------------------------------------------------
MNIST_TRAIN_SAMPLES = 20_000   # keeps scikit-learn's side of the test to a few seconds
MNIST_PARAMS = dict(max_iter=5, random_state=0)   # scikit-learn's defaults otherwise: Adam


def test_mnist_accuracy_within_half_a_point_of_sklearn():
    from fastbp.datasets import load_mnist
    path = mnist_dir()
    X, y = load_mnist(path, kind="train", download=False)
    X_test, y_test = load_mnist(path, kind="test", download=False)
    X = X[:MNIST_TRAIN_SAMPLES].astype(np.float32) / 255
    y = y[:MNIST_TRAIN_SAMPLES]
    X_test = X_test.astype(np.float32) / 255
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        ours = MLPClassifier(**MNIST_PARAMS).fit(X, y).score(X_test, y_test)
        theirs = skl_nn.MLPClassifier(**MNIST_PARAMS).fit(X, y).score(X_test, y_test)
    assert ours > 0.9, f"fastbp accuracy {ours:.4f}"
    assert abs(ours - theirs) <= 0.005, f"fastbp {ours:.4f} vs scikit-learn {theirs:.4f}"


def _conversion_problem(kind):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((120, 5))
    if kind == "multiclass":
        return X, np.array(["a", "b", "c"])[rng.integers(0, 3, 120)]
    if kind == "binary":
        return X, np.array([3, 8])[rng.integers(0, 2, 120)]
    if kind == "multilabel":
        return X, (rng.random((120, 3)) < 0.4).astype(int)
    if kind == "poisson":
        return X, rng.poisson(2.0, 120).astype(float)
    return X, rng.standard_normal((120, 2))


CONVERSIONS = [("multiclass", {}), ("binary", {}), ("multilabel", {}),
               ("regression", {}), ("poisson", {"loss": "poisson"})]


@pytest.mark.parametrize("kind, params", CONVERSIONS)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_to_and_from_scikit_learns_own_estimators_keep_the_predictions(kind, params, dtype):
    from sklearn import neural_network
    X, y = _conversion_problem(kind)
    X = X.astype(dtype)
    ours_cls = MLPRegressor if kind in ("regression", "poisson") else MLPClassifier
    ours = ours_cls(hidden_layer_sizes=(7,), max_iter=30, random_state=0, **params).fit(X, y)
    theirs = ours.to_sklearn()
    assert type(theirs) is getattr(neural_network, ours_cls.__name__)
    for a, b in zip(theirs.coefs_ + theirs.intercepts_, ours.coefs_ + ours.intercepts_):
        np.testing.assert_array_equal(a, b)
    tol = dict(rtol=1e-5, atol=1e-6) if dtype == np.float32 else dict(rtol=1e-12, atol=1e-14)
    if ours_cls is MLPClassifier:
        np.testing.assert_allclose(theirs.predict_proba(X), ours.predict_proba(X), **tol)
        clear = np.abs(ours.predict_proba(X) - 0.5).min(axis=1) > 1e-4
        np.testing.assert_array_equal(theirs.predict(X)[clear], ours.predict(X)[clear])
    else:
        np.testing.assert_allclose(theirs.predict(X), ours.predict(X), **tol)
    # scikit-learn's own fitted estimator, back: scikit-learn's weights and predictions
    theirs = getattr(neural_network, ours_cls.__name__)(hidden_layer_sizes=(6,), max_iter=30,
                                                         random_state=1, **params).fit(X, y)
    back = ours_cls.from_sklearn(theirs)
    np.testing.assert_allclose(back.predict(X) if ours_cls is MLPRegressor else back.predict_proba(X),
                               theirs.predict(X) if ours_cls is MLPRegressor else theirs.predict_proba(X),
                               **tol)
    assert back._network.dtype == theirs.coefs_[0].dtype
    before = [w.copy() for w in back.coefs_]
    back.partial_fit(X, y)            # and it trains on from scikit-learn's weights
    assert any((a != b).any() for a, b in zip(back.coefs_, before))


def test_from_sklearn_refuses_what_is_not_scikit_learns_fitted_estimator():
    from sklearn.neural_network import MLPClassifier as Theirs
    from sklearn.exceptions import NotFittedError
    with pytest.raises(TypeError, match="must be scikit-learn's MLPClassifier"):
        MLPClassifier.from_sklearn(MLPRegressor())
    with pytest.raises(NotFittedError):
        MLPClassifier.from_sklearn(Theirs())


@pytest.mark.parametrize("kind", ["multiclass", "binary", "multilabel", "regression"])
def test_a_fitted_estimator_exports_to_onnx_with_its_labels(kind, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnx")
    X, y = _conversion_problem(kind)
    X = X.astype(np.float32)
    est = (MLPRegressor if kind == "regression" else MLPClassifier)(
        hidden_layer_sizes=(7,), max_iter=30, random_state=0).fit(X, y)
    path = tmp_path / "model.onnx"
    est.to_onnx(path)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    outputs = dict(zip(names, session.run(None, {"input": X})))
    if kind == "regression":
        np.testing.assert_allclose(outputs["predictions"], est.predict(X), rtol=1e-5, atol=1e-5)
        return
    proba = est.predict_proba(X)
    if kind == "binary":
        np.testing.assert_allclose(outputs["probabilities"][:, 0], proba[:, 1], rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_allclose(outputs["probabilities"], proba, rtol=1e-5, atol=1e-6)
    clear = np.abs(proba - 0.5).min(axis=1) > 1e-4
    np.testing.assert_array_equal(outputs["label"][clear], est.predict(X)[clear])


def test_sparse_x_with_sample_weights_reports_the_loss_of_dense_x():
    import scipy.sparse
    rng = np.random.default_rng(5)
    X = rng.standard_normal((300, 6)) * (rng.random((300, 6)) < 0.4)
    y = rng.integers(0, 3, 300)
    w = rng.integers(1, 5, 300).astype(float)
    dense = MLPClassifier((5,), max_iter=3, shuffle=False, random_state=0).fit(X, y, sample_weight=w)
    sparse = MLPClassifier((5,), max_iter=3, shuffle=False, random_state=0).fit(
        scipy.sparse.csr_matrix(X), y, sample_weight=w)
    for a, b in zip(dense.coefs_, sparse.coefs_):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(sparse.loss_curve_, dense.loss_curve_, rtol=1e-6)


def test_an_estimator_from_scikit_learn_trains_on_with_warm_start_and_partial_fit():
    from sklearn.neural_network import MLPClassifier as Theirs
    X, y = _conversion_problem("multiclass")
    theirs = Theirs(hidden_layer_sizes=(6,), max_iter=20, random_state=0).fit(X, y)
    ours = MLPClassifier.from_sklearn(theirs)
    ours.set_params(warm_start=True, max_iter=3, tol=10.0, n_iter_no_change=1)
    ours.fit(X, y)               # no improvement by tol: the stopping rule's count is used
    ours.partial_fit(X, y)
    assert ours.n_iter_ >= 1
