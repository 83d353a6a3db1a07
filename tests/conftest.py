"""Helpers shared by the test files: where MNIST is, random problems, copies of a
network's parameters and the NumPy reference built from a network."""
import os
from pathlib import Path

import numpy as np
import pytest

import fastbp
from fastbp import _core, reference

REPO_ROOT = Path(__file__).resolve().parent.parent
MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
               "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def mnist_dir():
    """The directory holding the four MNIST IDX files: $FASTBP_DATA, else
    ../shared/data/mnist next to the repository. Missing data fails the test under
    CI (where it must be there) and skips it elsewhere, saying how to provide it."""
    env = os.environ.get("FASTBP_DATA")
    directory = Path(env) if env else (REPO_ROOT / ".." / "shared" / "data" / "mnist").resolve()
    missing = [stem for stem in MNIST_FILES
               if not (directory / stem).exists() and not (directory / (stem + ".gz")).exists()]
    if missing:
        message = (f"MNIST not found in {directory} (missing {', '.join(missing)}); set "
                   "FASTBP_DATA to a directory holding the four IDX files "
                   "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, "
                   "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz)")
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return str(directory)


@pytest.fixture
def python_sigint():
    """Python's own Ctrl-C handler, SIGINT unblocked, for tests that send themselves a
    Ctrl-C: a process that a non-interactive shell starts in the background inherits
    SIGINT ignored, and Python then installs no handler (the test's signal would be
    lost, and a wait for it would never end)."""
    import signal
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    blocked = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
    yield
    signal.pthread_sigmask(signal.SIG_SETMASK, blocked)
    signal.signal(signal.SIGINT, previous)


@pytest.fixture
def mnist_path():
    return mnist_dir()


@pytest.fixture
def generic_isa():
    """Runs the test on the portable C code path, then restores the one in force."""
    previous = _core.get_isa()
    _core.set_isa("generic")
    try:
        assert _core.get_isa() == "generic"
        yield
    finally:
        _core.set_isa(previous)


def available_paths():
    """The code paths this CPU can run, portable first."""
    paths = ["generic"]
    if _core.cpu_has_avx2():
        paths.append("avx2")
    if _core.cpu_has_avx512():
        paths.append("avx512")
    return paths


@pytest.fixture(params=available_paths())
def code_path(request):
    """Runs the test once on each code path this CPU can run, then restores the one in force."""
    previous = _core.get_isa()
    assert _core.set_isa(request.param) == request.param
    try:
        yield request.param
    finally:
        _core.set_isa(previous)


def random_problem(sizes, loss, n, dtype="float64", seed=0, zero_fraction=0.0):
    """Inputs X (n, sizes[0]) and matching y: integer labels for cross_entropy,
    targets (n, sizes[-1]) for the other losses, in their ranges. With zero_fraction,
    that share of X's entries is exactly 0 (the kernels skip zero inputs)."""
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, sizes[0]))
    if zero_fraction:
        X[rng.random(X.shape) < zero_fraction] = 0.0
    if loss == "cross_entropy":
        return X.astype(dtype), rng.integers(0, sizes[-1], size=n)
    if loss == "binary_cross_entropy":   # 0/1 labels, with some soft targets among them
        y = (rng.random((n, sizes[-1])) < 0.4).astype(float)
        y[rng.random(y.shape) < 0.2] = 0.3
    elif loss == "poisson":              # counts
        y = rng.poisson(1.5, (n, sizes[-1])).astype(float)
    else:
        y = rng.standard_normal((n, sizes[-1]))
    return X.astype(dtype), y.astype(dtype)


def rows_away_from_relu_kinks(net, n, seed, margin=1e-3, dtype=None, oversample=4):
    """A random problem of n rows (drawn from oversample * n + 64) none of whose hidden
    pre-activations lies within margin of 0: there relu has no derivative, and a
    finite-difference step across the kink measures neither side's slope."""
    dtype = dtype or net.dtype.name
    X, y = random_problem(net.layer_sizes, net.loss, oversample * n + 64, dtype, seed=seed)
    a = X.astype(np.float64)
    keep = np.ones(len(X), dtype=bool)
    for l in range(net.n_layers - 1):
        z = a @ net.weights[l].astype(np.float64) + net.biases[l].astype(np.float64)
        keep &= (np.abs(z) > margin).all(axis=1)
        a = reference.ACTIVATION[net.activations[l]](z)
    assert keep.sum() >= n, "too few rows away from the kinks; change the seed"
    return X[keep][:n], y[keep][:n]


def perturb_biases(net, seed=1, scale=0.1):
    """Give the network non-zero biases, so bias handling is exercised too."""
    rng = np.random.default_rng(seed)
    net.set_weights(net.weights, [rng.uniform(-scale, scale, b.shape) for b in net.biases])
    return net


def params_copy(net):
    """Independent copies of (weights, biases)."""
    return [w.copy() for w in net.weights], [b.copy() for b in net.biases]


def assert_params_equal(net, params):
    """The network's parameters are bit-identical to the copies in params."""
    weights, biases = params
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        np.testing.assert_array_equal(w, weights[l], err_msg=f"weights[{l}] changed")
        np.testing.assert_array_equal(b, biases[l], err_msg=f"biases[{l}] changed")


def reference_of(net, dtype=None):
    """A ReferenceNetwork starting from net's current parameters (in dtype, default
    the network's own)."""
    dtype = dtype or net.dtype
    return reference.ReferenceNetwork([w.astype(dtype) for w in net.weights],
                                      [b.astype(dtype) for b in net.biases],
                                      net.activations, net.loss)


def reference_gradients(net, X, y, dtype=np.float64):
    """The reference's (mean loss, [(dW, db), ...]) from net's current parameters,
    computed in dtype."""
    weights = [w.astype(dtype) for w in net.weights]
    biases = [b.astype(dtype) for b in net.biases]
    return reference.gradients(weights, biases, net.activations, X.astype(dtype), y, net.loss)


def assert_close_to_reference(net, ref, rtol, atol):
    for l in range(net.n_layers):
        np.testing.assert_allclose(net.weights[l], ref.weights[l], rtol=rtol, atol=atol,
                                   err_msg=f"weights[{l}]")
        np.testing.assert_allclose(net.biases[l], ref.biases[l], rtol=rtol, atol=atol,
                                   err_msg=f"biases[{l}]")


def make_net(sizes, activation="tanh", loss="cross_entropy", dtype="float64", seed=0):
    return perturb_biases(fastbp.Network(sizes, activation=activation, loss=loss, dtype=dtype, seed=seed))
