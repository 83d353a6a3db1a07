"""Backpropagation in C (`Network.gradients`) against the NumPy reference and
against central finite differences of the loss."""
import numpy as np
import pytest

from fastbp import reference

from conftest import (assert_params_equal, make_net, params_copy, random_problem,
                      reference_gradients, rows_away_from_relu_kinks)

ACTIVATIONS = ("relu", "sigmoid", "tanh", "identity")
LOSSES = ("cross_entropy", "mse", "binary_cross_entropy", "poisson")
BATCH_SIZES = (1, 2, 7, 32, 257)
HIDDEN_WIDTHS = (6, 5, 7, 4)       # small, so finite differences over every parameter stay cheap


def sizes_with(n_hidden, n_in=4, n_out=3):
    return [n_in, *HIDDEN_WIDTHS[:n_hidden], n_out]


def reference_loss(weights, biases, activations, X, y, loss):
    output = reference.forward(weights, biases, activations, X)[-1]
    return reference.loss_and_delta(output, y, loss)[0]


def finite_difference_gradients(net, X, y, h=1e-5):
    """Central differences (C(p + h) - C(p - h)) / 2h of the mean loss, in float64,
    for every weight and bias, through the reference forward pass."""
    weights = [w.astype(np.float64) for w in net.weights]
    biases = [b.astype(np.float64) for b in net.biases]
    X = X.astype(np.float64)
    grads = []
    for l in range(net.n_layers):
        pair = []
        for p in (weights[l], biases[l]):
            g = np.empty_like(p)
            flat, gflat = p.reshape(-1), g.reshape(-1)
            for i in range(flat.size):
                saved = flat[i]
                flat[i] = saved + h
                up = reference_loss(weights, biases, net.activations, X, y, net.loss)
                flat[i] = saved - h
                down = reference_loss(weights, biases, net.activations, X, y, net.loss)
                flat[i] = saved
                gflat[i] = (up - down) / (2 * h)
            pair.append(g)
        grads.append(tuple(pair))
    return grads


def assert_gradients_close(got, expected, rtol, atol):
    assert len(got) == len(expected)
    for l, ((dW, db), (eW, eb)) in enumerate(zip(got, expected)):
        assert dW.shape == eW.shape and db.shape == eb.shape, f"layer {l} shapes"
        np.testing.assert_allclose(dW, eW, rtol=rtol, atol=atol, err_msg=f"dW[{l}]")
        np.testing.assert_allclose(db, eb, rtol=rtol, atol=atol, err_msg=f"db[{l}]")


def scaled_atol(expected, factor):
    """An absolute tolerance relative to the largest gradient entry (float32 sums
    over many rows lose digits against the biggest terms, not each entry's own)."""
    biggest = max(max(np.abs(dW).max(), np.abs(db).max()) for dW, db in expected)
    return factor * max(biggest, 1e-3)


def assert_gradients_match(got, expected, dtype):
    """fastbp's gradients against the float64 reference's, at dtype's tolerance."""
    if dtype == "float64":
        assert_gradients_close(got, expected, rtol=1e-6, atol=1e-12)
    else:
        assert_gradients_close(got, expected, rtol=1e-3, atol=scaled_atol(expected, 1e-5))


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("n_hidden", [1, 2, 3, 4])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float64_gradients_match_reference_and_finite_differences(activation, loss, n_hidden, batch):
    sizes = sizes_with(n_hidden)
    net = make_net(sizes, activation, loss, "float64", seed=n_hidden)
    X, y = rows_away_from_relu_kinks(net, batch, seed=batch, dtype="float64")
    got = net.gradients(X, y)
    value, expected = reference_gradients(net, X, y)
    assert_gradients_close(got, expected, rtol=1e-6, atol=1e-12)
    fd = finite_difference_gradients(net, X, y)
    assert_gradients_close(got, fd, rtol=1e-6, atol=1e-8)


@pytest.mark.parametrize("batch", BATCH_SIZES)
@pytest.mark.parametrize("n_hidden", [1, 2, 3, 4])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float32_gradients_match_reference(activation, loss, n_hidden, batch):
    sizes = sizes_with(n_hidden)
    net = make_net(sizes, activation, loss, "float32", seed=n_hidden)
    X, y = random_problem(sizes, loss, batch, "float32", seed=batch)
    got = net.gradients(X, y)
    assert all(dW.dtype == np.float32 and db.dtype == np.float32 for dW, db in got)
    _, expected = reference_gradients(net, X, y)   # float64 maths from the same float32 values
    assert_gradients_close(got, expected, rtol=1e-3, atol=scaled_atol(expected, 1e-5))


@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_float32_gradients_match_finite_differences(activation, loss):
    sizes = sizes_with(2)
    net = make_net(sizes, activation, loss, "float32", seed=3)
    X, y = rows_away_from_relu_kinks(net, 32, seed=4, dtype="float32")
    got = net.gradients(X, y)
    fd = finite_difference_gradients(net, X, y)   # float64 differences of the float32 parameters
    assert_gradients_close(got, fd, rtol=1e-3, atol=scaled_atol(fd, 1e-5))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_gradients_over_more_rows_than_one_chunk(activation, loss, dtype):
    # 1100 rows: above the 512 rows the C side handles at once, so the chunks'
    # gradients have to be summed (and scaled by the full n, not the chunk's).
    sizes = [9, 16, 5]
    net = make_net(sizes, activation, loss, dtype, seed=5)
    X, y = random_problem(sizes, loss, 1100, dtype, seed=6)
    got = net.gradients(X, y)
    _, expected = reference_gradients(net, X, y)
    assert_gradients_match(got, expected, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", LOSSES)
def test_gradients_with_many_zero_inputs(loss, dtype):
    # The kernels skip zero inputs; 80% zeros (and some all-zero rows) must still
    # give the exact gradient.
    sizes = [20, 12, 8, 4]
    net = make_net(sizes, "relu", loss, dtype, seed=7)
    X, y = random_problem(sizes, loss, 64, dtype, seed=8, zero_fraction=0.8)
    X[:5] = 0
    got = net.gradients(X, y)
    _, expected = reference_gradients(net, X, y)
    if dtype == "float64":
        assert_gradients_close(got, expected, rtol=1e-6, atol=1e-12)
        assert_gradients_close(got, finite_difference_gradients(net, X, y), rtol=1e-6, atol=1e-8)
    else:
        assert_gradients_close(got, expected, rtol=1e-3, atol=scaled_atol(expected, 1e-5))


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("n", [8, 600])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("n_in", [100, 101])
def test_gradients_from_the_non_zeros_of_a_sparse_input(n_in, activation, loss, n, dtype):
    # 85% zeros: the input layer's products run over the batch's non-zeros (by sample
    # forward, by pairs of features for dW: an odd count leaves the last pair half
    # empty), 70 outputs wide so that every strip width is used; 600 rows are two
    # chunks whose dW add up.
    sizes = [n_in, 70, 5]
    net = make_net(sizes, activation, loss, dtype, seed=9)
    X, y = random_problem(sizes, loss, n, dtype, seed=10, zero_fraction=0.85)
    X[:, 7] = 0   # a feature no sample has
    got = net.gradients(X, y)
    _, expected = reference_gradients(net, X, y)
    assert_gradients_match(got, expected, dtype)



@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("layout", ["first_rows_zero", "last_features", "one_feature"])
def test_sparse_input_blocks_follow_the_non_zeros(layout, dtype):
    # The sparse input layer cuts its feature blocks so that each holds an equal share
    # of the non-zeros in the batch's first rows: with these layouts blocks come out
    # empty, or (first rows all zero) at equal widths. The gradients must not care,
    # and neither may the thread count.
    # (Big enough batches that the steps run on several threads.)
    sizes = [300, 100, 10]
    X, y = random_problem(sizes, "cross_entropy", 80, dtype, seed=10, zero_fraction=0.85)
    if layout == "first_rows_zero":
        X[:4] = 0
    elif layout == "last_features":
        X[:, :297] = 0
    else:
        X[:, :150] = 0
        X[:, 151:] = 0
    net = make_net(sizes, "relu", "cross_entropy", dtype, seed=9)
    _, expected = reference_gradients(net, X, y)
    assert_gradients_match(net.gradients(X, y), expected, dtype)
    weights = []
    for n_threads in (1, 2, 3):
        net = make_net(sizes, "relu", "cross_entropy", dtype, seed=9)
        net.n_threads = n_threads
        net.fit(X, y, lr=0.1, batch_size=40, epochs=2)
        weights.append(net.weights[0])
    for other in weights[1:]:
        np.testing.assert_array_equal(weights[0], other)


ODD_SHAPES = [
    ([1, 3, 2], "cross_entropy"),
    ([3, 17, 33, 2], "cross_entropy"),
    ([33, 1, 17, 3], "cross_entropy"),
    ([17, 33, 3, 1], "mse"),
    ([1, 1, 1], "mse"),
    ([33, 17, 33], "mse"),
]


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("sizes,loss", ODD_SHAPES)
def test_gradients_with_odd_layer_widths(sizes, loss, activation, dtype):
    # Widths 1, 3, 17, 33 leave remainders after every SIMD width (4, 8, 16).
    net = make_net(sizes, activation, loss, dtype, seed=9)
    X, y = random_problem(sizes, loss, 13, dtype, seed=10)
    got = net.gradients(X, y)
    _, expected = reference_gradients(net, X, y)
    assert_gradients_match(got, expected, dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("batch", [1, 4, 32, 600])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("sizes", [[257, 12, 3], [784, 16, 10]], ids=["257-12-3", "784-16-10"])
def test_gradients_with_inputs_wider_than_256(sizes, activation, batch, dtype):
    # Long input rows (MNIST's 784) are summed over several blocks of the input
    # dimension; the activation must apply to the whole sum, not to the first block.
    net = make_net(sizes, activation, "cross_entropy", dtype, seed=20)
    X, y = random_problem(sizes, "cross_entropy", batch, dtype, seed=21, zero_fraction=0.5)
    got = net.gradients(X, y)
    _, expected = reference_gradients(net, X, y)
    assert_gradients_match(got, expected, dtype)


def test_single_output_mse_accepts_1d_targets():
    sizes = [5, 7, 1]
    net = make_net(sizes, "tanh", "mse", "float64", seed=11)
    X, y = random_problem(sizes, "mse", 20, "float64", seed=12)
    from_1d = net.gradients(X, y[:, 0])
    from_2d = net.gradients(X, y)
    assert_gradients_close(from_1d, from_2d, rtol=0, atol=0)
    assert_gradients_close(from_1d, reference_gradients(net, X, y)[1], rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", LOSSES)
def test_gradients_leave_the_weights_untouched(loss, dtype):
    sizes = [6, 9, 4]
    net = make_net(sizes, "sigmoid", loss, dtype, seed=13)
    before = params_copy(net)
    for n in (3, 700):
        X, y = random_problem(sizes, loss, n, dtype, seed=n)
        net.gradients(X, y)
    assert_params_equal(net, before)


def test_gradients_are_new_arrays_each_call():
    sizes = [4, 5, 3]
    net = make_net(sizes, "relu", "cross_entropy", "float64")
    X, y = random_problem(sizes, "cross_entropy", 10)
    first = net.gradients(X, y)
    kept = [(dW.copy(), db.copy()) for dW, db in first]
    X2, y2 = random_problem(sizes, "cross_entropy", 10, seed=99)
    net.gradients(X2, y2)
    assert_gradients_close(first, kept, rtol=0, atol=0)


# -- the portable C path ---------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", LOSSES)
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_generic_code_path_gradients_match_reference(generic_isa, activation, loss, dtype):
    for sizes, n, zeros in (([3, 17, 33, 2], 7, 0.0), ([33, 17, 5], 1100, 0.5), ([1, 3, 1], 1, 0.0)):
        if loss == "cross_entropy" and sizes[-1] < 2:
            sizes = sizes[:-1] + [2]
        net = make_net(sizes, activation, loss, dtype, seed=14)
        X, y = random_problem(sizes, loss, n, dtype, seed=15, zero_fraction=zeros)
        got = net.gradients(X, y)
        _, expected = reference_gradients(net, X, y)
        assert_gradients_match(got, expected, dtype)


@pytest.mark.parametrize("loss", LOSSES)
def test_generic_and_avx2_paths_agree(loss):
    from fastbp import _core
    if not _core.cpu_has_avx2():
        pytest.skip("this CPU has no AVX2: only the generic path exists")
    sizes = [33, 17, 3, 2]
    net = make_net(sizes, "tanh", loss, "float64", seed=16)
    X, y = random_problem(sizes, loss, 600, "float64", seed=17)
    previous = _core.get_isa()
    try:
        _core.set_isa("avx2")
        fast = net.gradients(X, y)
        _core.set_isa("generic")
        portable = net.gradients(X, y)
    finally:
        _core.set_isa(previous)
    assert_gradients_close(fast, portable, rtol=1e-9, atol=1e-14)


def test_a_planted_backpropagation_error_is_detected():
    # The comparison above can fail: an error of 1e-3 planted in one dW entry by
    # the C test hook is caught against the reference and finite differences.
    from fastbp import _core
    sizes = sizes_with(2)
    net = make_net(sizes, "tanh", "cross_entropy", "float64", seed=18)
    X, y = random_problem(sizes, "cross_entropy", 7, "float64", seed=19)
    _core._set_test_fault(0)
    try:
        got = net.gradients(X, y)
    finally:
        _core._set_test_fault(-1)
    _, expected = reference_gradients(net, X, y)
    with pytest.raises(AssertionError, match="dW\\[0\\]"):
        assert_gradients_close(got, expected, rtol=1e-6, atol=1e-12)
    with pytest.raises(AssertionError, match="dW\\[0\\]"):
        assert_gradients_close(got, finite_difference_gradients(net, X, y), rtol=1e-6, atol=1e-8)
    assert_gradients_close(net.gradients(X, y), expected, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_a_layer_narrower_than_the_thread_count(n_threads):
    # The weight gradient is split among threads by rows of W: a one-input layer
    # leaves some threads without rows (and 10 outputs, without bias columns). Still the
    # reference's gradients, and the same weights whatever the thread count.
    sizes = [2000, 1, 600, 10]
    X, y = random_problem(sizes, "cross_entropy", 256, "float64", seed=3)
    net = make_net(sizes, "relu", "cross_entropy", "float64", seed=4)
    net.n_threads = n_threads
    _, expected = reference_gradients(net, X, y)
    assert_gradients_match(net.gradients(X, y), expected, "float64")
    one = make_net(sizes, "relu", "cross_entropy", "float64", seed=4)
    one.n_threads = 1
    for trained in (net, one):
        trained.fit(X, y, lr=0.05, batch_size=128, epochs=2)
    assert_params_equal(net, params_copy(one))
