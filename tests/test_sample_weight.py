"""Sample weights (fit, train_step, gradients): a batch's loss is Σ s_i C_i / Σ s_i,
applied where each loss forms its output delta (csrc/loss.inc), so every kernel
after it is the same; checked against the NumPy reference at every kernel site and
code path, against repeated samples, and for the errors bad weights get."""
import numpy as np
import pytest

import fastbp
from fastbp import reference

from conftest import make_net, random_problem

LOSSES = ("cross_entropy", "mse", "binary_cross_entropy", "poisson")
# batch sizes that reach each kernel site: the small-batch rows, the packed GEMM, the
# sparse input layer (zeros), and several chunks (over 512 rows)
SITES = [(1, 0.0), (7, 0.5), (64, 0.0), (64, 0.85), (700, 0.3)]


def weights_for(n, seed=0):
    """Integer weights 0..3 (some samples left out) with at least one non-zero."""
    w = np.random.default_rng(seed).integers(0, 4, n).astype(float)
    w[0] = 1.0
    return w


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("batch, zeros", SITES)
def test_weighted_gradients_match_the_reference(code_path, loss, batch, zeros):
    net = make_net([40, 24, 3], "tanh", loss, "float64", seed=1)
    X, y = random_problem(net.layer_sizes, loss, batch, seed=2, zero_fraction=zeros)
    s = weights_for(batch, seed=3) * 0.7
    value, expected = reference.gradients(net.weights, net.biases, net.activations, X, y, loss, s)
    for (dW, db), (rW, rb) in zip(net.gradients(X, y, sample_weight=s), expected):
        np.testing.assert_allclose(dW, rW, rtol=1e-10, atol=1e-13)
        np.testing.assert_allclose(db, rb, rtol=1e-10, atol=1e-13)


@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
@pytest.mark.parametrize("batch, zeros", SITES)
def test_weighted_train_steps_match_the_reference(code_path, optimizer, batch, zeros):
    net = make_net([40, 24, 3], "relu", "cross_entropy", "float64", seed=4)
    ref = reference.ReferenceNetwork(net.weights, net.biases, net.activations, net.loss)
    X, y = random_problem(net.layer_sizes, net.loss, batch, seed=5, zero_fraction=zeros)
    s = weights_for(batch, seed=6)
    for _ in range(3):
        loss = net.train_step(X, y, lr=0.05, weight_decay=0.01, optimizer=optimizer, sample_weight=s)
        if optimizer == "sgd":
            expected = ref.train_step(X, y, 0.05, weight_decay=0.01, sample_weight=s)
        else:
            expected = ref.adam_step(X, y, 0.05, weight_decay=0.01, sample_weight=s)
        assert loss == pytest.approx(expected, rel=1e-12)
    for a, b in zip(net.weights + net.biases, ref.weights + ref.biases):
        np.testing.assert_allclose(a, b, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("loss", LOSSES)
def test_integer_weights_give_the_full_batch_step_of_repeated_samples(loss):
    X, y = random_problem([6, 9, 2], loss, 50, seed=7)
    s = weights_for(50, seed=8)
    repeated = np.repeat(np.arange(50), s.astype(int))
    weighted = make_net([6, 9, 2], "tanh", loss, "float64", seed=9)
    copies = make_net([6, 9, 2], "tanh", loss, "float64", seed=9)
    h1 = weighted.fit(X, y, optimizer="gd", lr=0.1, epochs=4, sample_weight=s)
    h2 = copies.fit(X[repeated], y[repeated], optimizer="gd", lr=0.1, epochs=4)
    np.testing.assert_allclose(h1.loss, h2.loss, rtol=1e-12)
    for a, b in zip(weighted.weights + weighted.biases, copies.weights + copies.biases):
        np.testing.assert_allclose(a, b, rtol=1e-11, atol=1e-14)


@pytest.mark.parametrize("optimizer", ["sgd", "adam", "adam_sklearn"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_equal_power_of_two_weights_change_no_bit_of_a_shuffled_fit(optimizer, dtype):
    # s_i / Σ s is exactly 1 / n when every s_i is 4: any other result is a weighting bug
    X, y = random_problem([30, 16, 4], "cross_entropy", 333, dtype, seed=10, zero_fraction=0.5)
    nets = [make_net([30, 16, 4], "relu", "cross_entropy", dtype, seed=11) for _ in range(2)]
    hists = [net.fit(X, y, optimizer=optimizer, lr=0.01, batch_size=32, epochs=2, sample_weight=s)
             for net, s in zip(nets, (None, np.full(333, 4.0)))]
    assert hists[0].loss == hists[1].loss
    for a, b in zip(nets[0].weights + nets[0].biases, nets[1].weights + nets[1].biases):
        np.testing.assert_array_equal(a, b)


def test_the_epoch_loss_is_the_weighted_mean():
    net = make_net([5, 4, 3], "tanh", "cross_entropy", "float64", seed=12)
    X, y = random_problem([5, 4, 3], "cross_entropy", 40, seed=13)
    s = weights_for(40, seed=14)
    before = reference.gradients(net.weights, net.biases, net.activations, X, y, net.loss, s)[0]
    hist = net.fit(X, y, optimizer="gd", lr=1e-300, epochs=1, sample_weight=s)  # a no-op step
    assert hist.loss[0] == pytest.approx(before, rel=1e-12)


def test_a_batch_whose_weights_are_all_zero_has_no_gradient():
    X, y = random_problem([5, 4, 3], "cross_entropy", 10, seed=16)
    s = np.r_[np.zeros(5), np.ones(5)]
    weighted = make_net([5, 4, 3], "tanh", "cross_entropy", "float64", seed=15)
    second_half = make_net([5, 4, 3], "tanh", "cross_entropy", "float64", seed=15)
    h1 = weighted.fit(X, y, lr=0.5, batch_size=5, epochs=1, shuffle=False, sample_weight=s)
    h2 = second_half.fit(X[5:], y[5:], lr=0.5, batch_size=5, epochs=1, shuffle=False)
    assert h1.n_updates == 2 and h1.loss == h2.loss
    for a, b in zip(weighted.weights + weighted.biases, second_half.weights + second_half.biases):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("bad, message", [
    ([1.0, -1.0, 1.0, 1.0], "must be >= 0"),
    ([1.0, np.nan, 1.0, 1.0], "NaN or inf"),
    ([1.0, np.inf, 1.0, 1.0], "NaN or inf"),
    ([1.0, 1.0, 1.0], "len\\(sample_weight\\) = 3"),
    ([[1.0, 1.0, 1.0, 1.0]], "must be 1-D"),
    ([0.0, 0.0, 0.0, 0.0], "0 for every sample"),
    (["a", "b", "c", "d"], "real numbers"),
])
def test_bad_sample_weights_are_refused_by_name(bad, message):
    net = make_net([3, 4, 2], "tanh", "cross_entropy", "float64")
    X, y = random_problem([3, 4, 2], "cross_entropy", 4, seed=17)
    before = net._params.copy()
    for call in (lambda: net.fit(X, y, sample_weight=bad),
                 lambda: net.fit(X, y, optimizer="lbfgs", sample_weight=bad),
                 lambda: net.train_step(X, y, sample_weight=bad),
                 lambda: net.gradients(X, y, sample_weight=bad)):
        with pytest.raises((ValueError, TypeError), match=message):
            call()
    np.testing.assert_array_equal(net._params, before)


def test_a_weight_that_overflows_float32_is_refused():
    net = make_net([3, 4, 2], "tanh", "cross_entropy", "float32")
    X, y = random_problem([3, 4, 2], "cross_entropy", 4, "float32", seed=18)
    with pytest.raises(ValueError, match="sample_weight contains NaN or inf"):
        net.fit(X, y, sample_weight=[1.0, 1e300, 1.0, 1.0])


@pytest.mark.parametrize("optimizer", ["sgd", "adam_sklearn"])
@pytest.mark.parametrize("weighted", [False, True])
def test_decay_on_sum_divides_the_decay_by_each_batchs_weight(optimizer, weighted):
    # scikit-learn's alpha: alpha * W joins the batch's summed-loss gradient, and the sum
    # is divided by the batch's size (or its summed sample weights)
    X, y = random_problem([6, 5, 3], "cross_entropy", 20, seed=19)
    s = weights_for(20, seed=20) if weighted else None
    fitted = make_net([6, 5, 3], "tanh", "cross_entropy", "float64", seed=21)
    stepped = make_net([6, 5, 3], "tanh", "cross_entropy", "float64", seed=21)
    fitted.fit(X, y, optimizer=optimizer, lr=0.05, batch_size=8, epochs=1, shuffle=False,
               weight_decay=0.3, decay_on_sum=True, sample_weight=s)
    for start in (0, 8, 16):           # batches of 8, 8 and 4
        rows = slice(start, start + 8)
        total = 8 if start < 16 else 4
        if s is not None:
            total = s[rows].sum()
        stepped.train_step(X[rows], y[rows], lr=0.05, optimizer=optimizer, weight_decay=0.3 / total,
                           sample_weight=None if s is None else s[rows])
    for a, b in zip(fitted.weights + fitted.biases, stepped.weights + stepped.biases):
        np.testing.assert_allclose(a, b, rtol=1e-13, atol=1e-15)
