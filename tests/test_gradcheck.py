"""fastbp.gradcheck and fastbp.naive_gradients: finite differences through the C
forward pass against backpropagation, including a planted backprop bug."""
import itertools

import numpy as np
import pytest

import fastbp
from fastbp import _core
from fastbp.gradcheck import DEFAULT_TOLERANCE

from conftest import (assert_params_equal, make_net, params_copy, random_problem,
                      rows_away_from_relu_kinks)

ACTIVATIONS = ("relu", "sigmoid", "tanh", "identity")
LOSSES = ("cross_entropy", "mse", "binary_cross_entropy", "poisson")
SIZES = [4, 6, 5, 3]


def problem_for(net, n=16, seed=0):
    if "relu" in net.activations and net.dtype == np.float32:
        # float32's step (1e-2 relative) would cross kinks on random rows
        return rows_away_from_relu_kinks(net, n, seed, margin=0.2, oversample=8)
    return random_problem(net.layer_sizes, net.loss, n, net.dtype.name, seed=seed)


@pytest.fixture(autouse=True)
def one_thread(monkeypatch):
    """Networks built in these tests use one thread: thousands of tiny forward passes
    are far quicker without a barrier each (one test below checks the threaded path)."""
    monkeypatch.setenv("FASTBP_NUM_THREADS", "1")


@pytest.fixture
def planted_fault():
    """Plants the test-only backprop bug (dW[layer][0, 0] += 1e-3) in a layer and
    always removes it afterwards."""
    def plant(layer):
        _core._set_test_fault(layer)
    try:
        yield plant
    finally:
        _core._set_test_fault(-1)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation,loss", list(itertools.product(ACTIVATIONS, LOSSES)))
def test_gradcheck_passes_on_correct_kernels(activation, loss, dtype):
    net = make_net(SIZES, activation, loss, dtype, seed=3)
    X, y = problem_for(net)
    # Poisson's exp output has large third derivatives: float32's default step (1e-2)
    # truncates the central difference by about eps² f'''(z) / 6, 2e-3 relative on
    # relu's rows (measured); half the step keeps that and float32's rounding in tolerance.
    eps = 5e-3 if loss == "poisson" and dtype == "float32" else None
    report = fastbp.gradcheck(net, X, y, eps=eps)
    assert report.passed, str(report)
    assert len(report.checks) == 2 * net.n_layers
    assert [c.n_checked for c in report.checks] == [int(np.prod(c.shape)) for c in report.checks]
    atol, _ = DEFAULT_TOLERANCE[net.dtype]
    assert report.max_abs_error < atol


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ["tanh", "sigmoid", "relu"])
@pytest.mark.parametrize("layer", [0, 1, 2])
def test_gradcheck_fails_on_planted_backprop_bug(planted_fault, activation, dtype, layer):
    net = make_net(SIZES, activation, "cross_entropy", dtype, seed=3)
    X, y = problem_for(net)
    assert fastbp.gradcheck(net, X, y).passed
    planted_fault(layer)
    report = fastbp.gradcheck(net, X, y)
    assert not report.passed
    failed = [(c.layer, c.name) for c in report.checks if not c.passed]
    assert failed == [(layer, "W")], str(report)
    bad = report.checks[2 * layer]
    assert bad.worst_index == (0, 0)
    assert bad.backprop_at_worst - bad.fd_at_worst == pytest.approx(1e-3, rel=0.2)
    assert "FAIL" in str(report)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_threaded_kernels_pass_and_planted_bug_fails(planted_fault, dtype):
    net = make_net([3, 4, 2], "sigmoid", "cross_entropy", dtype, seed=4)
    net.n_threads = 2      # a barrier per layer: slow on a busy machine, so a tiny net
    X, y = problem_for(net, n=40)
    assert fastbp.gradcheck(net, X, y).passed
    planted_fault(1)
    report = fastbp.gradcheck(net, X, y)
    assert [(c.layer, c.name) for c in report.checks if not c.passed] == [(1, "W")], str(report)


def test_planted_bug_is_caught_by_sampling_that_covers_the_entry(planted_fault):
    net = make_net(SIZES, "tanh", "mse", "float32", seed=1)
    X, y = problem_for(net)
    planted_fault(0)
    # weights[0] has 24 entries: sample=24 must check all of them, (0, 0) included
    assert not fastbp.gradcheck(net, X, y, sample=24).passed
    assert fastbp.gradcheck(net, X, y, sample=24).checks[0].worst_index == (0, 0)


def test_parameters_unchanged_bit_for_bit(planted_fault):
    for dtype in ("float32", "float64"):
        net = make_net(SIZES, "sigmoid", "mse", dtype, seed=2)
        X, y = problem_for(net)
        before = params_copy(net)
        grads_before = net.gradients(X, y)
        fastbp.gradcheck(net, X, y)
        fastbp.gradcheck(net, X, y, sample=3, seed=5)
        fastbp.naive_gradients(net, X, y)
        assert_params_equal(net, before)
        for (dW, db), (eW, eb) in zip(net.gradients(X, y), grads_before):
            np.testing.assert_array_equal(dW, eW)
            np.testing.assert_array_equal(db, eb)


def test_parameters_restored_when_the_forward_pass_raises(monkeypatch):
    net = make_net(SIZES, "tanh", "mse", "float64", seed=2)
    X, y = problem_for(net)
    before = params_copy(net)
    calls = []

    def failing_evaluate(*args):
        calls.append(1)
        if len(calls) == 2:    # the "up" step of the first entry has been applied
            raise KeyboardInterrupt
        return {"loss": 0.0}
    monkeypatch.setattr(net, "_evaluate_checked", failing_evaluate)
    with pytest.raises(KeyboardInterrupt):
        fastbp.gradcheck(net, X, y)
    assert_params_equal(net, before)


def test_sample_checks_k_entries_per_array_reproducibly():
    net = make_net([30, 20, 10], "tanh", "cross_entropy", "float32", seed=0)
    X, y = problem_for(net, n=64)
    report = fastbp.gradcheck(net, X, y, sample=7, seed=4)
    assert report.passed, str(report)
    assert [c.n_checked for c in report.checks] == [7, 7, 7, 7]
    again = fastbp.gradcheck(net, X, y, sample=7, seed=4)
    assert [c.worst_index for c in again.checks] == [c.worst_index for c in report.checks]
    assert [c.max_abs_error for c in again.checks] == [c.max_abs_error for c in report.checks]
    # more than there are: every entry
    full = fastbp.gradcheck(net, X, y, sample=10_000)
    assert [c.n_checked for c in full.checks] == [600, 20, 200, 10]


def test_sample_keeps_an_mnist_sized_network_checkable():
    net = fastbp.Network([784, 64, 10], activation="tanh", dtype="float32", seed=0)
    rng = np.random.default_rng(0)
    X = rng.random((64, 784), dtype=np.float32)
    y = rng.integers(0, 10, 64)
    report = fastbp.gradcheck(net, X, y, sample=20)
    assert report.passed, str(report)
    assert report.checks[0].n_checked == 20


def test_report_str_is_a_table():
    net = make_net([3, 4, 2], "tanh", "cross_entropy", "float64", seed=0)
    X, y = problem_for(net, n=5)
    text = str(fastbp.gradcheck(net, X, y))
    lines = text.splitlines()
    assert "max abs err" in lines[1] and "max rel err" in lines[1]
    assert [line.split()[0] for line in lines[2:6]] == ["W[0]", "b[0]", "W[1]", "b[1]"]
    assert lines[2].split()[1] == "3x4"
    assert lines[-1] == "PASSED"


@pytest.mark.parametrize("activation,loss", list(itertools.product(ACTIVATIONS, LOSSES)))
def test_naive_gradients_equal_backprop(activation, loss):
    net = make_net(SIZES, activation, loss, "float64", seed=5)
    X, y = problem_for(net, n=9)
    naive = fastbp.naive_gradients(net, X, y)
    backprop = net.gradients(X, y)
    assert len(naive) == len(backprop)
    for l, ((nW, nb), (bW, bb)) in enumerate(zip(naive, backprop)):
        assert nW.shape == bW.shape and nb.shape == bb.shape and nW.dtype == np.float64
        np.testing.assert_allclose(nW, bW, rtol=1e-5, atol=1e-7, err_msg=f"dW[{l}]")
        np.testing.assert_allclose(nb, bb, rtol=1e-5, atol=1e-7, err_msg=f"db[{l}]")


def test_naive_gradients_see_the_planted_bug_that_backprop_has(planted_fault):
    net = make_net(SIZES, "tanh", "mse", "float64", seed=5)
    X, y = problem_for(net, n=9)
    planted_fault(1)
    naive = fastbp.naive_gradients(net, X, y)
    backprop = net.gradients(X, y)
    assert backprop[1][0][0, 0] - naive[1][0][0, 0] == pytest.approx(1e-3, rel=1e-4)


def test_naive_gradients_float32_within_finite_difference_accuracy():
    net = make_net(SIZES, "sigmoid", "cross_entropy", "float32", seed=5)
    X, y = problem_for(net, n=9)
    for (nW, nb), (bW, bb) in zip(fastbp.naive_gradients(net, X, y), net.gradients(X, y)):
        assert nW.dtype == np.float32
        np.testing.assert_allclose(nW, bW, atol=2e-4)
        np.testing.assert_allclose(nb, bb, atol=2e-4)


@pytest.mark.parametrize("kwargs,exc,name", [
    ({"eps": 0}, ValueError, "eps"), ({"eps": -1e-3}, ValueError, "eps"),
    ({"eps": 2.0}, ValueError, "eps"), ({"eps": "small"}, TypeError, "eps"),
    ({"sample": 0}, ValueError, "sample"), ({"sample": 2.5}, TypeError, "sample"),
    ({"seed": "x"}, TypeError, "seed"), ({"atol": -1}, ValueError, "atol"),
    ({"rtol": float("nan")}, ValueError, "rtol"),
])
def test_bad_arguments_name_the_argument(kwargs, exc, name):
    net = make_net([3, 4, 2], "tanh", "cross_entropy", "float64", seed=0)
    X, y = problem_for(net, n=5)
    with pytest.raises(exc, match=name):
        fastbp.gradcheck(net, X, y, **kwargs)


def test_bad_data_is_rejected_before_any_parameter_moves():
    net = make_net([3, 4, 2], "tanh", "cross_entropy", "float64", seed=0)
    before = params_copy(net)
    with pytest.raises(ValueError, match="X"):
        fastbp.gradcheck(net, np.ones((5, 7)), [0] * 5)
    with pytest.raises(ValueError, match="y"):
        fastbp.naive_gradients(net, np.ones((5, 3)), [0, 1, 2, 0, 1])
    with pytest.raises(ValueError, match="eps"):
        fastbp.naive_gradients(net, np.ones((5, 3)), [0] * 5, eps=-1)
    assert_params_equal(net, before)


def test_relu_float32_on_random_rows_passes_by_stepping_around_kinks():
    # rows not chosen to avoid relu's kink: float32's step (1e-2) would cross many
    net = make_net([20, 16, 10], "relu", "cross_entropy", "float32", seed=0)
    X, y = random_problem(net.layer_sizes, net.loss, 200, "float32", seed=0)
    report = fastbp.gradcheck(net, X, y)
    assert report.passed, str(report)
    assert report.n_skipped > 0 and "skipped:" in str(report)
    strict = fastbp.gradcheck(make_net([20, 16, 10], "tanh", "cross_entropy", "float32", seed=0), X, y)
    assert strict.n_skipped == 0       # smooth activations never skip


def test_too_many_skipped_entries_fail_the_report():
    from fastbp.gradcheck import GradcheckReport, ParameterCheck

    def check(n_checked, n_skipped):
        return ParameterCheck(layer=0, name="W", shape=(10, 10), n_checked=n_checked,
                              n_skipped=n_skipped, max_abs_error=0.0, max_rel_error=0.0,
                              worst_index=(0, 0), backprop_at_worst=0.0, fd_at_worst=0.0,
                              passed=True)
    assert GradcheckReport(checks=[check(75, 25)]).passed
    assert not GradcheckReport(checks=[check(74, 26)]).passed
    assert GradcheckReport(checks=[check(50, 50), check(100, 0)]).passed
    # a step far too large for this relu network: most entries have a kink within it
    net = make_net([20, 16, 10], "relu", "cross_entropy", "float32", seed=0)
    X, y = random_problem(net.layer_sizes, net.loss, 200, "float32", seed=0)
    report = fastbp.gradcheck(net, X, y, eps=0.5)
    assert report.n_skipped > 0.25 * (report.n_skipped + sum(c.n_checked for c in report.checks))
    assert not report.passed


@pytest.mark.parametrize("sizes", [[5, 7, 6, 3], [3, 8, 2]])
def test_kink_distance_is_a_true_bound(sizes):
    """Moving a parameter by less than the reported distance never changes the sign
    of any row's relu pre-activation (checked in float64 with the NumPy forward)."""
    from fastbp.gradcheck import _KinkDistance
    net = make_net(sizes, "relu", "mse", "float64", seed=7)
    X, _ = random_problem(sizes, "mse", 50, "float64", seed=7)
    kinks = _KinkDistance(net, X)

    def relu_signs(weights, biases):
        a, signs = X, []
        for l in range(len(weights) - 1):
            z = a @ weights[l] + biases[l]
            signs.append(z > 0)
            a = np.maximum(z, 0)
        return signs

    base = relu_signs(net.weights, net.biases)
    finite = 0
    for l in range(net.n_layers):
        for name, shape in (("W", net.weights[l].shape), ("b", net.biases[l].shape)):
            for index in np.ndindex(shape):
                distance = kinks.max_step(l, name, index)
                if not np.isfinite(distance):
                    assert l == net.n_layers - 1    # only the output layer reaches no relu
                    continue
                finite += 1
                for sign in (1, -1):
                    weights, biases = params_copy(net)
                    (weights[l] if name == "W" else biases[l])[index] += sign * 0.999 * distance
                    for s0, s1 in zip(base, relu_signs(weights, biases)):
                        np.testing.assert_array_equal(s0, s1)
    assert finite > 0


def test_naive_gradients_cost_two_forward_passes_per_parameter(monkeypatch):
    net = make_net(SIZES, "tanh", "cross_entropy", "float64", seed=5)
    X, y = problem_for(net, n=9)
    forward = net._evaluate_checked
    calls = []
    monkeypatch.setattr(net, "_evaluate_checked", lambda *a: calls.append(1) or forward(*a))
    fastbp.naive_gradients(net, X, y)
    n_params = sum(w.size + b.size for w, b in zip(net.weights, net.biases))
    assert len(calls) == 2 * n_params
