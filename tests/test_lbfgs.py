"""fit(optimizer="lbfgs"): scipy's L-BFGS-B driven by backpropagation's gradient, one
C call over all of X per evaluation; checked against scikit-learn's own L-BFGS fit
from the same initial weights, and for what it promises about its state."""
import warnings

import numpy as np
import pytest

import fastbp

from conftest import make_net, random_problem

pytest.importorskip("scipy")


def sklearn_start(sizes, seed, activation="tanh"):
    """scikit-learn's initial weights for random_state=seed (its draw order)."""
    rng = np.random.RandomState(seed)
    factor = 2.0 if activation == "logistic" else 6.0
    weights, biases = [], []
    for fan_in, fan_out in zip(sizes[:-1], sizes[1:]):
        bound = np.sqrt(factor / (fan_in + fan_out))
        weights.append(rng.uniform(-bound, bound, (fan_in, fan_out)))
        biases.append(rng.uniform(-bound, bound, fan_out))
    return weights, biases


@pytest.mark.parametrize("max_iter", [1, 5, 30])
@pytest.mark.parametrize("weighted", [False, True])
def test_lbfgs_follows_scikit_learns_lbfgs_trajectory(max_iter, weighted):
    sklearn_mlp = pytest.importorskip("sklearn.neural_network")
    datasets = pytest.importorskip("sklearn.datasets")
    X, y = datasets.make_classification(150, 6, n_informative=4, n_classes=3, random_state=0)
    s = np.random.default_rng(1).integers(0, 4, 150).astype(float) if weighted else None
    alpha = 1e-3
    clf = sklearn_mlp.MLPClassifier((8,), activation="tanh", solver="lbfgs", alpha=alpha,
                                    max_iter=max_iter, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y, sample_weight=s)
    net = fastbp.Network([6, 8, 3], activation="tanh", dtype="float64")
    net.set_weights(*sklearn_start([6, 8, 3], 0))
    # scikit-learn's penalty: alpha / 2 * Σ‖W‖² over the summed (weighted) loss
    decay = alpha / (150 if s is None else s.sum())
    hist = net.fit(X, y, optimizer="lbfgs", epochs=max_iter, weight_decay=decay, tol=1e-4,
                   sample_weight=s)
    assert hist.lbfgs.nit == clf.n_iter_ == len(hist.loss)
    assert hist.lbfgs.fun == pytest.approx(clf.loss_, rel=1e-10)
    for ours, theirs in zip(net.weights + net.biases, clf.coefs_ + clf.intercepts_):
        np.testing.assert_allclose(ours, theirs, rtol=1e-8, atol=1e-10)


@pytest.mark.parametrize("loss", ["cross_entropy", "mse", "binary_cross_entropy", "poisson"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_lbfgs_lowers_the_loss_within_its_iteration_limit(loss, dtype):
    X, y = random_problem([5, 7, 2], loss, 80, dtype, seed=2)
    net = make_net([5, 7, 2], "tanh", loss, dtype, seed=3)
    before = net.evaluate(X, y)["loss"]
    hist = net.fit(X, y, optimizer="lbfgs", epochs=15)
    assert 1 <= hist.lbfgs.nit <= 15 and hist.epochs == hist.lbfgs.nit == hist.n_updates
    assert hist.loss[-1] < before
    assert net.evaluate(X, y)["loss"] == pytest.approx(hist.loss[-1], rel=1e-4)
    assert all(np.isfinite(w).all() for w in net.weights + net.biases)
    assert all(b <= a + 1e-12 for a, b in zip(hist.loss, hist.loss[1:]))   # a descent method


def test_an_exception_in_the_callback_leaves_the_weights_of_the_last_iteration():
    X, y = random_problem([5, 7, 3], "cross_entropy", 60, seed=4)
    stopped = make_net([5, 7, 3], seed=5)
    straight = make_net([5, 7, 3], seed=5)

    def stop_at_third(progress):
        if progress.epoch == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        stopped.fit(X, y, optimizer="lbfgs", epochs=50, callback=stop_at_third)
    straight.fit(X, y, optimizer="lbfgs", epochs=3)
    for a, b in zip(stopped.weights + stopped.biases, straight.weights + straight.biases):
        np.testing.assert_array_equal(a, b)


def test_the_padding_between_layers_stays_zero():
    X, y = random_problem([5, 7, 3], "cross_entropy", 60, seed=6)
    net = make_net([5, 7, 3], seed=7)
    net.fit(X, y, optimizer="lbfgs", epochs=20)
    used = np.zeros(net._layout.n_params, bool)
    for views in net._layout.views(np.arange(net._layout.n_params)):
        for v in views:
            used[v.ravel()] = True
    assert not net._params[~used].any()


@pytest.mark.parametrize("kwargs, message", [
    (dict(momentum=0.9), "optimizer='lbfgs' does not use them"),
    (dict(betas=(0.9, 0.99)), "optimizer='lbfgs' does not use them"),
    (dict(schedule="step"), "no learning rate to schedule"),
    (dict(max_fun=0), "max_fun"),
    (dict(tol=-1.0), "tol"),
    (dict(weight_decay=-1.0), "weight_decay"),
])
def test_bad_lbfgs_settings_are_refused_by_name(kwargs, message):
    X, y = random_problem([3, 4, 2], "cross_entropy", 8, seed=8)
    net = make_net([3, 4, 2])
    before = net._params.copy()
    with pytest.raises(ValueError, match=message):
        net.fit(X, y, optimizer="lbfgs", **kwargs)
    np.testing.assert_array_equal(net._params, before)


def test_train_step_refuses_lbfgs():
    X, y = random_problem([3, 4, 2], "cross_entropy", 8, seed=9)
    with pytest.raises(ValueError, match="train_step takes one step"):
        make_net([3, 4, 2]).train_step(X, y, optimizer="lbfgs")
