"""`fastbp.sgd_update`, the update as a tool of its own, against the reference."""
import numpy as np
import pytest

import fastbp
from fastbp import reference

SIZES = (1, 7, 8, 9, 1000)        # around the 4- and 8-wide vectors, and a long one
SETTINGS = {                      # name: (momentum, nesterov, weight_decay)
    "plain": (0.0, False, 0.0),
    "weight_decay": (0.0, False, 0.1),
    "momentum": (0.9, False, 0.0),
    "nesterov": (0.9, True, 0.0),
    "momentum_weight_decay": (0.5, False, 0.01),
    "nesterov_weight_decay": (0.8, True, 0.05),
}
TOLERANCE = {"float64": dict(rtol=1e-13, atol=1e-15), "float32": dict(rtol=1e-6, atol=1e-7)}


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("setting", list(SETTINGS))
def test_sgd_update_matches_reference(setting, size, dtype):
    momentum, nesterov, weight_decay = SETTINGS[setting]
    rng = np.random.default_rng(size)
    param = rng.standard_normal(size).astype(dtype)
    velocity = np.zeros_like(param) if momentum else None
    ref_param = param.copy()
    ref_velocity = np.zeros_like(param)
    for step in range(3):   # several steps, so the velocity's carry-over counts
        grad = rng.standard_normal(size).astype(dtype)
        out = fastbp.sgd_update(param, grad, lr=0.05, momentum=momentum, velocity=velocity,
                                weight_decay=weight_decay, nesterov=nesterov)
        assert out is param
        reference.sgd_update(ref_param, grad, 0.05, momentum, ref_velocity, weight_decay, nesterov)
        np.testing.assert_allclose(param, ref_param, **TOLERANCE[dtype], err_msg=f"step {step}")
        if momentum:
            np.testing.assert_allclose(velocity, ref_velocity, **TOLERANCE[dtype])
    assert param.dtype == np.dtype(dtype)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_sgd_update_on_a_matrix(dtype):
    rng = np.random.default_rng(0)
    param = rng.standard_normal((33, 17)).astype(dtype)
    grad = rng.standard_normal((33, 17)).astype(dtype)
    velocity = rng.standard_normal((33, 17)).astype(dtype)
    ref_param, ref_velocity = param.copy(), velocity.copy()
    fastbp.sgd_update(param, grad, 0.1, momentum=0.9, velocity=velocity, weight_decay=0.01, nesterov=True)
    reference.sgd_update(ref_param, grad, 0.1, 0.9, ref_velocity, 0.01, True)
    np.testing.assert_allclose(param, ref_param, **TOLERANCE[dtype])
    np.testing.assert_allclose(velocity, ref_velocity, **TOLERANCE[dtype])


def test_gradient_descent_on_a_parabola_oscillates_with_lr_1():
    # f(x) = x², f'(x) = 2x: with lr = 1 each step maps x to x - 2x = -x, exactly.
    x = np.array([-3.0])
    seen = []
    for _ in range(6):
        fastbp.sgd_update(x, 2 * x, lr=1.0)
        seen.append(x[0])
    assert seen == [3.0, -3.0, 3.0, -3.0, 3.0, -3.0]


def test_gradient_descent_on_a_parabola_converges_with_a_small_lr():
    x = np.array([-3.0, 5.0, 0.5], dtype=np.float32)
    for _ in range(200):
        fastbp.sgd_update(x, 2 * x, lr=0.1)
    np.testing.assert_allclose(x, 0, atol=1e-15)


def test_docstring_example():
    x = np.array([-3.0])
    np.testing.assert_array_equal(fastbp.sgd_update(x, 2 * x, lr=0.25), [-1.5])


def test_zero_momentum_ignores_a_given_velocity():
    param, grad = np.ones(9), np.full(9, 2.0)
    velocity = np.full(9, 5.0)
    fastbp.sgd_update(param, grad, lr=0.5, momentum=0.0, velocity=velocity)
    np.testing.assert_array_equal(param, np.zeros(9))
    np.testing.assert_array_equal(velocity, np.full(9, 5.0))


# -- errors -----------------------------------------------------------------------------

def arrays(n=8, dtype=np.float64):
    return np.ones(n, dtype=dtype), np.ones(n, dtype=dtype), np.zeros(n, dtype=dtype)


@pytest.mark.parametrize("make_call,error,pattern", [
    (lambda p, g, v: fastbp.sgd_update(p, g[:7], 0.1), ValueError, "grad"),
    (lambda p, g, v: fastbp.sgd_update(p, g.reshape(2, 4), 0.1), ValueError, "grad"),
    (lambda p, g, v: fastbp.sgd_update(p, g.astype(np.float32), 0.1), ValueError, "grad"),
    (lambda p, g, v: fastbp.sgd_update(p, g, 0.1, 0.9, v[:4]), ValueError, "velocity"),
    (lambda p, g, v: fastbp.sgd_update(p, g, 0.1, 0.9, v.astype(np.float32)), ValueError, "velocity"),
    (lambda p, g, v: fastbp.sgd_update(p, np.ones(16)[::2], 0.1), ValueError, "grad.*contiguous"),
    (lambda p, g, v: fastbp.sgd_update(p, g, 0.1, 0.9, np.zeros(16)[::2]), ValueError, "velocity.*contiguous"),
    (lambda p, g, v: fastbp.sgd_update(p, g.astype(np.int64), 0.1), TypeError, "grad"),
    (lambda p, g, v: fastbp.sgd_update(p, list(g), 0.1), TypeError, "grad"),
    (lambda p, g, v: fastbp.sgd_update(p, g, 0.1, momentum=0.9), ValueError, "velocity"),
    (lambda p, g, v: fastbp.sgd_update(p, g, 0.0), ValueError, "lr"),
    (lambda p, g, v: fastbp.sgd_update(p, g, -0.1), ValueError, "lr"),
    (lambda p, g, v: fastbp.sgd_update(p, g, "0.1"), TypeError, "lr"),
    (lambda p, g, v: fastbp.sgd_update(p, g, 0.1, momentum=1.5, velocity=v), ValueError, "momentum"),
    (lambda p, g, v: fastbp.sgd_update(p, g, 0.1, momentum=-0.5, velocity=v), ValueError, "momentum"),
    (lambda p, g, v: fastbp.sgd_update(p, g, 0.1, weight_decay=-1.0), ValueError, "weight_decay"),
    (lambda p, g, v: fastbp.sgd_update(p, g, 0.1, nesterov=True), ValueError, "nesterov"),
], ids=["grad short", "grad shape", "grad dtype", "velocity short", "velocity dtype",
        "grad strided", "velocity strided", "grad int", "grad list", "momentum without velocity",
        "lr 0", "lr negative", "lr string", "momentum > 1", "momentum < 0", "weight_decay < 0",
        "nesterov without momentum"])
def test_sgd_update_rejects(make_call, error, pattern):
    param, grad, velocity = arrays()
    before = param.copy()
    with pytest.raises(error, match=pattern):
        make_call(param, grad, velocity)
    np.testing.assert_array_equal(param, before)


def test_sgd_update_rejects_bad_params():
    grad = np.ones(8)
    with pytest.raises(ValueError, match="param.*contiguous"):
        fastbp.sgd_update(np.ones(16)[::2], grad, 0.1)
    with pytest.raises(TypeError, match="param"):
        fastbp.sgd_update(np.ones(8, dtype=np.int32), grad, 0.1)
    with pytest.raises(TypeError, match="param"):
        fastbp.sgd_update([1.0] * 8, grad, 0.1)
    frozen = np.ones(8)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="param.*writeable"):
        fastbp.sgd_update(frozen, grad, 0.1)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("batch", [257, 400, 512])
@pytest.mark.parametrize("opt", [dict(), dict(momentum=0.9), dict(momentum=0.9, nesterov=True),
                                 dict(weight_decay=1e-3)])
def test_a_step_over_two_panels_is_the_gradient_then_sgd_update(batch, opt, dtype):
    """Over KC (256) samples the weight-gradient product has two panels of K, and
    train_step fuses the step into the last (csrc/dense.inc, dense_backward_weights):
    the same bits as gradients() followed by sgd_update, layer by layer."""
    rng = np.random.default_rng(batch)
    X = rng.normal(size=(batch, 37)).astype(dtype)
    y = rng.integers(0, 4, batch)
    fused = fastbp.Network([37, 24, 4], dtype=dtype, seed=3, n_threads=2)
    apart = fastbp.Network([37, 24, 4], dtype=dtype, seed=3, n_threads=2)
    momentum = opt.get("momentum", 0.0)
    vW = [np.zeros_like(w) for w in apart.weights]
    vb = [np.zeros_like(b) for b in apart.biases]
    for _ in range(3):
        fused.train_step(X, y, lr=0.05, **opt)
        for l, (dW, db) in enumerate(apart.gradients(X, y)):
            fastbp.sgd_update(apart.weights[l], dW, 0.05, momentum, vW[l] if momentum else None,
                              opt.get("weight_decay", 0.0), opt.get("nesterov", False))
            fastbp.sgd_update(apart.biases[l], db, 0.05, momentum, vb[l] if momentum else None,
                              0.0, opt.get("nesterov", False))
    for a, b in zip(fused.weights + fused.biases, apart.weights + apart.biases):
        np.testing.assert_array_equal(a, b)
