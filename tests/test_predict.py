"""predict, predict_proba and evaluate against the reference forward pass."""
import numpy as np
import pytest

import fastbp
from fastbp import reference

from conftest import make_net, random_problem

TOLERANCE = {"float64": dict(rtol=1e-10, atol=1e-13), "float32": dict(rtol=1e-4, atol=1e-6)}
ROWS = (1, 7, 512, 513, 1100)     # around and above the 512 rows the C side takes at once


def reference_outputs(net, X):
    """Raw outputs (logits or regression values) of the reference, in float64."""
    weights = [w.astype(np.float64) for w in net.weights]
    biases = [b.astype(np.float64) for b in net.biases]
    return reference.forward(weights, biases, net.activations, np.asarray(X, np.float64))[-1]


@pytest.mark.parametrize("n", ROWS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "identity"])
def test_classifier_outputs_match_reference(activation, dtype, n):
    sizes = [9, 17, 4]
    net = make_net(sizes, activation, "cross_entropy", dtype, seed=n)
    X, y = random_problem(sizes, "cross_entropy", n, dtype, seed=n + 1)
    logits = reference_outputs(net, X)
    expected = np.exp(reference.log_softmax(logits))

    proba = net.predict_proba(X)
    assert proba.shape == (n, 4) and proba.dtype == np.dtype(dtype)
    np.testing.assert_allclose(proba, expected, **TOLERANCE[dtype])
    np.testing.assert_allclose(proba.sum(axis=1), 1, rtol=1e-5 if dtype == "float32" else 1e-12)
    assert (proba >= 0).all()

    labels = net.predict(X)
    assert labels.shape == (n,)
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))
    clear = np.sort(expected, axis=1)[:, -1] - np.sort(expected, axis=1)[:, -2] > 1e-4
    np.testing.assert_array_equal(labels[clear], expected.argmax(axis=1)[clear])

    scores = net.evaluate(X, y)
    ref_loss = -reference.log_softmax(logits)[np.arange(n), y].mean()
    assert scores["loss"] == pytest.approx(ref_loss, rel=1e-5 if dtype == "float32" else 1e-10)
    assert scores["accuracy"] == pytest.approx(np.mean(labels == y))


@pytest.mark.parametrize("n", ROWS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_out", [1, 3])
def test_regressor_outputs_match_reference(n_out, dtype, n):
    sizes = [6, 11, n_out]
    net = make_net(sizes, "tanh", "mse", dtype, seed=n)
    X, y = random_problem(sizes, "mse", n, dtype, seed=n + 2)
    expected = reference_outputs(net, X)

    out = net.predict(X)
    assert out.shape == ((n,) if n_out == 1 else (n, n_out))
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_allclose(out.reshape(n, n_out), expected, **TOLERANCE[dtype])

    scores = net.evaluate(X, y)
    # MSE: the mean over samples and outputs, no factor 1/2
    assert scores["loss"] == pytest.approx(((expected - y) ** 2).mean(),
                                           rel=1e-5 if dtype == "float32" else 1e-10)
    assert "accuracy" not in scores
    if n_out == 1:
        assert net.evaluate(X, y[:, 0])["loss"] == scores["loss"]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", [3, 4, 32, 700])
@pytest.mark.parametrize("activation", ["relu", "sigmoid", "tanh", "identity"])
def test_outputs_with_inputs_wider_than_256_match_reference(activation, n, dtype):
    # 784 inputs, as MNIST: the sum over the inputs runs in several blocks, and the
    # hidden activation must see the whole sum.
    sizes = [784, 32, 10]
    net = make_net(sizes, activation, "cross_entropy", dtype, seed=9)
    X, _ = random_problem(sizes, "cross_entropy", n, dtype, seed=10, zero_fraction=0.8)
    expected = np.exp(reference.log_softmax(reference_outputs(net, X)))
    np.testing.assert_allclose(net.predict_proba(X), expected, **TOLERANCE[dtype])


def test_predict_equals_chunk_by_chunk_predict():
    # The chunked result over 1100 rows equals predicting each row range alone.
    sizes = [10, 20, 5]
    net = make_net(sizes, "relu", "cross_entropy", "float32", seed=3)
    X, _ = random_problem(sizes, "cross_entropy", 1100, "float32", seed=4)
    whole = net.predict_proba(X)
    pieces = np.vstack([net.predict_proba(X[i:i + 100]) for i in range(0, 1100, 100)])
    np.testing.assert_allclose(whole, pieces, rtol=1e-6, atol=1e-7)


def test_evaluate_over_many_rows_equals_the_weighted_mean_of_parts():
    sizes = [10, 20, 5]
    net = make_net(sizes, "relu", "cross_entropy", "float64", seed=5)
    X, y = random_problem(sizes, "cross_entropy", 1300, "float64", seed=6)
    whole = net.evaluate(X, y)
    parts = [net.evaluate(X[i:i + 650], y[i:i + 650]) for i in (0, 650)]
    assert whole["loss"] == pytest.approx(np.mean([p["loss"] for p in parts]), rel=1e-12)
    assert whole["accuracy"] == pytest.approx(np.mean([p["accuracy"] for p in parts]))


def test_predict_after_training_reflects_the_new_weights():
    sizes = [2, 8, 2]
    X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    y = np.array([0, 1, 1, 0])
    net = fastbp.Network(sizes, activation="tanh", seed=0)
    before = net.predict_proba(X)
    net.fit(X, y, lr=0.5, batch_size=4, momentum=0.9, epochs=300)
    after = net.predict_proba(X)
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, np.exp(reference.log_softmax(reference_outputs(net, X))),
                               rtol=1e-4, atol=1e-6)


def test_edited_weights_are_used_by_predict():
    # weights[i] are the network's own arrays: editing them in place (or through
    # set_weights) changes what predict computes.
    sizes = [3, 4, 2]
    net = make_net(sizes, "identity", "mse", "float64", seed=7)
    X, _ = random_problem(sizes, "mse", 5, seed=8)
    net.set_weights([np.zeros_like(w) for w in net.weights], [np.full_like(b, 2.5) for b in net.biases])
    np.testing.assert_array_equal(net.predict(X), np.full((5, 2), 2.5))
    net.biases[1][...] = -1.0
    np.testing.assert_array_equal(net.predict(X), np.full((5, 2), -1.0))


@pytest.mark.parametrize("n", ROWS)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n_out", [1, 3])
def test_binary_cross_entropy_outputs_are_sigmoids_of_the_reference(n_out, dtype, n):
    sizes = [9, 17, n_out]
    net = make_net(sizes, "tanh", "binary_cross_entropy", dtype, seed=n)
    X, y = random_problem(sizes, "binary_cross_entropy", n, dtype, seed=n + 1)
    z = reference_outputs(net, X)
    expected = 1 / (1 + np.exp(-z))
    proba = net.predict_proba(X)
    assert proba.shape == (n, n_out) and proba.dtype == np.dtype(dtype)
    np.testing.assert_allclose(proba, expected, **TOLERANCE[dtype])
    labels = net.predict(X)
    assert labels.shape == ((n,) if n_out == 1 else (n, n_out))
    np.testing.assert_array_equal(labels.reshape(n, n_out), (proba > 0.5).astype(np.int32))
    scores = net.evaluate(X, y)
    losses = (np.logaddexp(0, z) - y * z).sum(axis=1)
    assert scores["loss"] == pytest.approx(losses.mean(), rel=1e-4 if dtype == "float32" else 1e-10)
    right = ((expected > 0.5) == (y > 0.5)).all(axis=1)
    clear = (np.abs(expected - 0.5) > 1e-4).all(axis=1)
    assert right[clear].sum() <= scores["accuracy"] * n <= right[clear].sum() + (~clear).sum()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_poisson_outputs_are_the_exp_of_the_reference(dtype):
    sizes = [9, 17, 2]
    net = make_net(sizes, "tanh", "poisson", dtype, seed=3)
    X, y = random_problem(sizes, "poisson", 600, dtype, seed=4)
    z = reference_outputs(net, X)
    np.testing.assert_allclose(net.predict(X), np.exp(z), **TOLERANCE[dtype])
    scores = net.evaluate(X, y)
    assert "accuracy" not in scores
    assert scores["loss"] == pytest.approx((np.exp(z) - y * z).sum(axis=1).mean(),
                                           rel=1e-4 if dtype == "float32" else 1e-10)
    with pytest.raises(ValueError, match="predict_proba needs"):
        net.predict_proba(X)


@pytest.mark.parametrize("loss, bad, message", [
    ("binary_cross_entropy", 1.5, r"y must be in \[0, 1\] \(probabilities\) for loss='binary_cross_entropy'; row 2"),
    ("binary_cross_entropy", -0.1, r"in \[0, 1\]"),
    ("poisson", -1.0, r"y must be >= 0 \(counts or rates\) for loss='poisson'; row 2"),
])
def test_targets_outside_the_losss_range_are_refused(loss, bad, message):
    net = make_net([3, 4, 2], "tanh", loss, "float64")
    X, y = random_problem([3, 4, 2], loss, 5, seed=1)
    y[2, 1] = bad
    before = net._params.copy()
    for call in (lambda: net.fit(X, y), lambda: net.train_step(X, y), lambda: net.evaluate(X, y),
                 lambda: net.gradients(X, y)):
        with pytest.raises(ValueError, match=message):
            call()
    with pytest.raises(ValueError, match="y_val must be"):
        net.fit(X[:2], y[:2], validation_data=(X, y))
    np.testing.assert_array_equal(net._params, before)
