"""Every code path this CPU can run (generic, AVX2, AVX-512), in one process, against
the NumPy reference: gradients and fused SGD steps for float32 and float64, dense,
compact (some features zero in every row) and sparse (mostly zero) inputs, and
batches on both sides of each register-tile and K-panel boundary of each path
(tiles of 4, 6 and 8 rows, 8/16/32-column strips, panels of 192 and 256 rows).

CI also runs the whole suite once per path (FASTBP_CPU); this file makes sure a
machine that runs only the default build still checks every path it has."""
import os
import subprocess
import sys

import numpy as np
import pytest

from fastbp import _core

from conftest import (assert_params_equal, available_paths, make_net, params_copy, random_problem,
                      reference_gradients, reference_of)


PATHS = available_paths()
# Rows: below SMALL_BATCH (1-3), each tile height and one past it, one register tile
# of rows short/over a block, and each side of a panel of K for the fused step.
BATCHES = (1, 2, 3, 4, 5, 6, 7, 8, 9, 12, 13, 16, 17, 31, 33, 120, 121, 192, 193, 256, 257, 385)
# Output widths around one and two vectors of each path (8/16/32 floats).
WIDTHS = (3, 8, 10, 16, 17, 33)
INPUTS = {"dense": 0.0, "compact": None, "sparse": 0.85}


def problem(sizes, loss, n, dtype, inputs, seed):
    if inputs == "compact":  # a third of the features zero in every row, the rest dense
        X, y = random_problem(sizes, loss, n, dtype, seed=seed)
        X[:, ::3] = 0
        return X, y
    return random_problem(sizes, loss, n, dtype, seed=seed, zero_fraction=INPUTS[inputs])


def tolerance(dtype):
    return (1e-9, 1e-12) if dtype == "float64" else (2e-3, 2e-5)


def assert_gradients_close(got, expected, dtype):
    rtol, atol = tolerance(dtype)
    for l, ((dW, db), (eW, eb)) in enumerate(zip(got, expected)):
        scale = max(np.abs(eW).max(), np.abs(eb).max(), 1e-30)
        np.testing.assert_allclose(dW, eW, rtol=rtol, atol=atol * scale, err_msg=f"dW[{l}]")
        np.testing.assert_allclose(db, eb, rtol=rtol, atol=atol * scale, err_msg=f"db[{l}]")


@pytest.mark.parametrize("inputs", list(INPUTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", BATCHES)
def test_gradients_match_reference_on_every_path(code_path, batch, dtype, inputs):
    sizes = [40, 37, 10]
    net = make_net(sizes, "tanh", "cross_entropy", dtype, seed=batch)
    X, y = problem(sizes, "cross_entropy", batch, dtype, inputs, seed=batch)
    expected = reference_gradients(net, X, y)[1]
    assert_gradients_close(net.gradients(X, y), expected, dtype)


@pytest.mark.parametrize("width", WIDTHS)
@pytest.mark.parametrize("activation", ["relu", "sigmoid"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("batch", [1, 9, 33])
def test_output_widths_around_the_vector_on_every_path(code_path, width, activation, loss, batch):
    sizes = [29, 19, width]
    net = make_net(sizes, activation, loss, "float64", seed=width)
    X, y = problem(sizes, loss, batch, "float64", "sparse", seed=width + batch)
    expected = reference_gradients(net, X, y)[1]
    assert_gradients_close(net.gradients(X, y), expected, "float64")


@pytest.mark.parametrize("inputs", list(INPUTS))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [1, 3, 4, 8, 32, 193, 257, 385])
def test_fused_sgd_steps_match_reference_on_every_path(code_path, batch, dtype, inputs):
    # The step is fused into the backward products (for batches above one panel of K,
    # into the last one): several steps with momentum and weight decay, then the
    # reference's steps from the same start.
    sizes = [300, 48, 17, 10]
    net = make_net(sizes, "relu", "cross_entropy", dtype, seed=3)
    ref = reference_of(net, np.float64)
    X, y = problem(sizes, "cross_entropy", batch, dtype, inputs, seed=4)
    for _ in range(3):
        net.train_step(X, y, lr=0.05, momentum=0.9, weight_decay=1e-3)
        ref.train_step(X.astype(np.float64), y, lr=0.05, momentum=0.9, weight_decay=1e-3)
    rtol, atol = (1e-9, 1e-12) if dtype == "float64" else (1e-3, 1e-5)
    for l in range(net.n_layers):
        np.testing.assert_allclose(net.weights[l], ref.weights[l], rtol=rtol, atol=atol,
                                   err_msg=f"weights[{l}]")
        np.testing.assert_allclose(net.biases[l], ref.biases[l], rtol=rtol, atol=atol,
                                   err_msg=f"biases[{l}]")


@pytest.mark.parametrize("inputs", list(INPUTS))
@pytest.mark.parametrize("batch", [2, 24, 300])
def test_training_is_bit_identical_for_any_thread_count_on_every_path(code_path, batch, inputs):
    # 76k multiply-adds per row: every batch below is worth two threads (threads_for).
    sizes = [784, 96, 10]
    X, y = problem(sizes, "cross_entropy", 600, "float32", inputs, seed=5)
    results = []
    for n_threads in (1, 2, 3):
        net = make_net(sizes, "relu", "cross_entropy", "float32", seed=6)
        net.n_threads = n_threads
        net.fit(X, y, lr=0.05, momentum=0.5, batch_size=batch, epochs=1)
        results.append(net)
    for net in results[1:]:
        assert_params_equal(net, params_copy(results[0]))


def test_paths_agree_to_rounding_on_a_wide_net():
    # The same training on every path ends within rounding of each other: MNIST-like
    # sparse inputs, a layer wider than a panel of K, a 10-class output. (In float64:
    # float32's rounding differences grow over 16 steps to ~1e-4 relative.)
    sizes = [784, 300, 10]
    X, y = problem(sizes, "cross_entropy", 256, "float64", "sparse", seed=8)
    previous, trained = _core.get_isa(), {}
    try:
        for path in PATHS:
            _core.set_isa(path)
            net = make_net(sizes, "relu", "cross_entropy", "float64", seed=9)
            net.fit(X, y, lr=0.02, batch_size=64, epochs=2)
            trained[path] = params_copy(net)
    finally:
        _core.set_isa(previous)
    first = trained[PATHS[0]]
    for path in PATHS[1:]:
        for a, b in zip(first[0] + first[1], trained[path][0] + trained[path][1]):
            np.testing.assert_allclose(b, a, rtol=1e-9, atol=1e-12, err_msg=path)


def test_set_isa_falls_back_to_the_best_path_below():
    previous = _core.get_isa()
    try:
        for path in ("generic", "avx2", "avx512"):
            got = _core.set_isa(path)
            assert got in PATHS
            assert got == path or path not in PATHS
        with pytest.raises(ValueError, match="code path"):
            _core.set_isa("sse9")
    finally:
        _core.set_isa(previous)


@pytest.mark.parametrize("wanted", ["auto", "generic", "avx2", "avx512", "bogus"])
def test_fastbp_cpu_selects_the_code_path(wanted, tmp_path):
    env = dict(os.environ, FASTBP_CPU=wanted)
    code = ("import warnings, fastbp\n"
            "warnings.simplefilter('always')\n"
            "print(fastbp.info()['code_path'])\n")
    run = subprocess.run([sys.executable, "-W", "always", "-c", code], capture_output=True,
                         text=True, env=env, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    got = run.stdout.strip()
    best = PATHS[-1]
    if wanted in ("auto", "bogus"):
        assert got == best
    elif wanted in PATHS:
        assert got == wanted
        assert "RuntimeWarning" not in run.stderr
    else:  # a path this CPU cannot run: a warning, and the best one below
        assert got == best and "cannot run it" in run.stderr
    if wanted == "bogus":
        assert "is not one of" in run.stderr
