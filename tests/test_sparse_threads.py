"""The sparse input layer (csrc/sparse.inc) gives bit-identical results for any number of
threads: thread counts beyond its SPARSE_BLOCKS feature blocks, batches smaller than the
thread count, several chunks per step, Adam (fused updates of masked tails), hidden
widths that end in a partial vector, every shape of the layers above it, on every code
path."""
import numpy as np
import pytest

from conftest import assert_params_equal, make_net, params_copy, random_problem, reference_gradients


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width,batch,optimizer", [
    (100, 4, "sgd"), (100, 5, "adam"), (37, 24, "adam"), (129, 300, "sgd"),
    (100, 1200, "sgd"),   # full-batch GD: chunks of max_batch, EPI_ADD, unfused update
])
def test_sparse_bits_do_not_depend_on_threads(code_path, dtype, width, batch, optimizer):
    sizes = [784, width, 10]
    if batch < 24:
        sizes = [784, 2000 + width % 16, 10]   # enough work per row for threads_for
    X, y = random_problem(sizes, "cross_entropy", 1200, dtype, seed=5, zero_fraction=0.85)
    results = []
    for n_threads in (1, 2, 3, 5, 6):
        net = make_net(sizes, "relu", "cross_entropy", dtype, seed=6)
        net.n_threads = n_threads
        kw = dict(lr=0.01) if optimizer == "sgd" else dict(lr=1e-3)
        if optimizer == "sgd":
            kw["momentum"] = 0.5
        net.fit(X[:max(batch * 3, 12)] if batch < 24 else X, y[:max(batch * 3, 12)] if batch < 24 else y,
                optimizer=optimizer, batch_size=batch, epochs=1, **kw)
        results.append(net)
    for net in results[1:]:
        assert_params_equal(net, params_copy(results[0]))


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_in", [783, 784])
@pytest.mark.parametrize("layout", ["neighbours", "last_feature"])
def test_sparse_pairs_of_features_bits_for_any_threads(code_path, dtype, n_in, layout):
    # The weight gradient runs over pairs of features (2p, 2p + 1), whole pairs to each
    # thread: an odd feature count leaves the last pair half empty. "neighbours":
    # neighbouring features non-zero together (as MNIST's pixels) in a third of the
    # rows; "last_feature": every non-zero in the last feature, so that the feature
    # blocks all end there (sparse_blocks' fill-in) and one thread owns that pair.
    # Gradients (stored), a plain SGD step (fused, pairs no sample has skipped) and
    # Adam steps (fused) must not depend on the thread count and must match the NumPy
    # reference.
    sizes = [n_in, 100, 10]
    X, y = random_problem(sizes, "cross_entropy", 240, dtype, seed=3, zero_fraction=0.85)
    if layout == "neighbours":
        X[:, 1::2] = np.where(np.arange(240)[:, None] % 3 == 0, X[:, 0:n_in - 1:2], X[:, 1::2])
    else:
        X[:, :-1] = 0
        X[::2, -1] = 1.5
    lr = 0.1
    runs = []
    for n_threads in (1, 2, 3, 5):
        net = make_net(sizes, "relu", "cross_entropy", dtype, seed=6)
        net.n_threads = n_threads
        before = params_copy(net)
        if n_threads == 1:
            _, expected = reference_gradients(net, X, y)
        grads = [a for pair in net.gradients(X, y) for a in pair]
        net.train_step(X, y, lr=lr, optimizer="sgd")
        sgd = params_copy(net)
        for _ in range(2):
            net.train_step(X, y, lr=1e-3, optimizer="adam")
        runs.append((grads, sgd, params_copy(net)))
    def arrays(run):
        grads, sgd, adam = run
        return grads + sgd[0] + sgd[1] + adam[0] + adam[1]
    for run in runs[1:]:
        for a, b in zip(arrays(run), arrays(runs[0])):
            np.testing.assert_array_equal(a, b)
    rtol, atol = (1e-4, 1e-6) if dtype == "float32" else (1e-10, 1e-13)
    for a, b in zip(runs[0][0], [g for pair in expected for g in pair]):
        np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
    for l, (dW, db) in enumerate(expected):
        np.testing.assert_allclose(runs[0][1][0][l], before[0][l] - lr * dW, rtol=rtol, atol=atol)
        np.testing.assert_allclose(runs[0][1][1][l], before[1][l] - lr * db, rtol=rtol, atol=atol)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("width", [37, 100, 129])
@pytest.mark.parametrize("batch", [4, 7, 64, 1200])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_sparse_train_step_and_gradients_bits_for_any_threads(code_path, dtype, width, batch, optimizer):
    # train_step and gradients run exactly n_threads threads (no busy-machine watch).
    sizes = [784, width + (2048 if batch < 16 else 0), 10]
    X, y = random_problem(sizes, "cross_entropy", batch, dtype, seed=batch, zero_fraction=0.85)
    steps, grads = [], []
    for n_threads in (1, 2, 3, 5, 9):
        net = make_net(sizes, "relu", "cross_entropy", dtype, seed=6)
        net.n_threads = n_threads
        g = net.gradients(X, y)
        for _ in range(2):
            net.train_step(X, y, lr=1e-3, optimizer=optimizer, weight_decay=1e-3)
        steps.append(params_copy(net))
        grads.append([a for pair in g for a in pair])
        p = net.predict_proba(X)
        if n_threads == 1:
            p1 = p
        np.testing.assert_array_equal(p, p1)
    for s, g in zip(steps[1:], grads[1:]):
        for a, b in zip(s[0] + s[1], steps[0][0] + steps[0][1]):
            np.testing.assert_array_equal(a, b)
        for a, b in zip(g, grads[0]):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes,loss", [
    ([784, 64], "mse"),                          # the sparse layer is a wide output: loss by thread 0
    ([784, 10], "cross_entropy"),                # the sparse layer is a narrow output: loss by rows
    ([784, 64, 32, 10], "cross_entropy"),        # hidden layers by columns between the two
    ([784, 100, 64], "mse"),                     # a wide output above the sparse layer
])
def test_sparse_input_under_every_output_shape_bits_for_any_threads(code_path, dtype, sizes, loss):
    # Each thread builds the non-zeros of its own rows of the batch, and the layers above
    # the sparse one split their work by columns or (a narrow output layer) by rows. The
    # first half of the rows is empty, so the threads that own them finish their share
    # long before the others: a missing barrier shows at once.
    X, y = random_problem(sizes, loss, 200, dtype, seed=1, zero_fraction=0.85)
    X[:100] = 0
    X[:4, :3] = 1
    runs = []
    for n_threads in (1, 2, 3, 9):
        net = make_net(sizes, "relu", loss, dtype, seed=2)
        net.n_threads = n_threads
        g = [a for pair in net.gradients(X, y) for a in pair]
        if n_threads == 1:
            _, expected = reference_gradients(net, X, y)
            rtol, atol = (2e-3, 1e-5) if dtype == "float32" else (1e-9, 1e-12)
            for a, b in zip(g, [a for pair in expected for a in pair]):
                np.testing.assert_allclose(a, b, rtol=rtol, atol=atol)
        net.train_step(X, y, lr=1e-2, optimizer="adam")
        weights, biases = params_copy(net)
        runs.append(g + weights + biases + [net.predict_proba(X) if loss == "cross_entropy" else net.predict(X)])
    for run in runs[1:]:
        for a, b in zip(run, runs[0]):
            np.testing.assert_array_equal(a, b)
