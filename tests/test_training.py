"""Training: `fit` and `train_step` against the reference's steps, learning real
problems, schedules, History, determinism, divergence and Ctrl-C."""
import math
import signal
import threading
import time

import numpy as np
import pytest

import fastbp
from fastbp import _core, reference

from conftest import (assert_close_to_reference, make_net, params_copy, random_problem,
                      reference_of)

OPTIMIZERS = {   # name: (momentum, nesterov)
    "plain": (0.0, False),
    "momentum": (0.9, False),
    "nesterov": (0.9, True),
}
TOLERANCE = {"float64": dict(rtol=1e-9, atol=1e-12), "float32": dict(rtol=1e-4, atol=1e-6)}


def assert_params_finite(net):
    for l in range(net.n_layers):
        assert np.isfinite(net.weights[l]).all(), f"weights[{l}] not finite"
        assert np.isfinite(net.biases[l]).all(), f"biases[{l}] not finite"


# -- one step, many steps: the same as the reference -------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_one_fit_step_matches_reference(kind, loss, dtype):
    momentum, nesterov = OPTIMIZERS[kind]
    sizes = [7, 9, 6, 3]
    net = make_net(sizes, "tanh", loss, dtype, seed=1)
    ref = reference_of(net)
    X, y = random_problem(sizes, loss, 40, dtype, seed=2)
    hist = net.fit(X, y, optimizer="sgd", lr=0.3, batch_size=len(X), epochs=1, momentum=momentum,
                   nesterov=nesterov, weight_decay=0.05, shuffle=False)
    ref_loss = ref.train_step(X, y, 0.3, momentum=momentum, weight_decay=0.05, nesterov=nesterov)
    assert_close_to_reference(net, ref, **TOLERANCE[dtype])
    assert hist.n_updates == 1
    assert hist.loss[0] == pytest.approx(ref_loss, rel=1e-5)


@pytest.mark.parametrize("batch", [4, 40, 300])
@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_one_fit_step_matches_reference_on_mnist_shaped_input(kind, batch):
    # 784 mostly-zero inputs, relu, batches below and above 256 rows (the update
    # is fused into the backward product for small batches only).
    momentum, nesterov = OPTIMIZERS[kind]
    sizes = [784, 32, 10]
    net = make_net(sizes, "relu", "cross_entropy", "float64", seed=40)
    ref = reference_of(net)
    X, y = random_problem(sizes, "cross_entropy", batch, "float64", seed=41, zero_fraction=0.8)
    X = np.abs(X)
    for _ in range(2):
        net.fit(X, y, lr=0.05, batch_size=batch, epochs=1, momentum=momentum, nesterov=nesterov,
                weight_decay=1e-3, shuffle=False)
        ref.train_step(X, y, 0.05, momentum=momentum, weight_decay=1e-3, nesterov=nesterov)
    assert_close_to_reference(net, ref, **TOLERANCE["float64"])


@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_generic_code_path_steps_match_reference(generic_isa, kind):
    momentum, nesterov = OPTIMIZERS[kind]
    sizes = [300, 33, 10]
    for dtype, batch in (("float64", 40), ("float32", 300)):
        net = make_net(sizes, "relu", "cross_entropy", dtype, seed=44)
        ref = reference_of(net)
        X, y = random_problem(sizes, "cross_entropy", batch, dtype, seed=45, zero_fraction=0.6)
        for _ in range(2):
            net.fit(X, y, lr=0.05, batch_size=batch, epochs=1, momentum=momentum,
                    nesterov=nesterov, weight_decay=1e-3, shuffle=False)
            ref.train_step(X, y, 0.05, momentum=momentum, weight_decay=1e-3, nesterov=nesterov)
        assert_close_to_reference(net, ref, **TOLERANCE[dtype])


def test_weight_decay_leaves_biases_alone():
    # With weight decay 0.5, decaying the biases too would move them by a further
    # lr * 0.5 * b: the step must match the reference that decays weights only.
    sizes = [4, 5, 3]
    net = make_net(sizes, "relu", "cross_entropy", "float64", seed=3)
    X, y = random_problem(sizes, "cross_entropy", 16, seed=4)
    biases_before = [b.copy() for b in net.biases]
    ref = reference_of(net)
    net.fit(X, y, lr=0.1, batch_size=16, epochs=1, weight_decay=0.5, shuffle=False)
    ref.train_step(X, y, 0.1, weight_decay=0.5)
    assert_close_to_reference(net, ref, **TOLERANCE["float64"])
    for l, b0 in enumerate(biases_before):
        wrongly_decayed = ref.biases[l] - 0.1 * 0.5 * b0
        assert np.abs(net.biases[l] - wrongly_decayed).max() > 1e-4


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_several_fit_steps_match_reference_sequence(kind, dtype):
    # 3 epochs of 4 batches in order: 12 updates, velocity carried from one to the next.
    momentum, nesterov = OPTIMIZERS[kind]
    sizes = [5, 8, 4]
    net = make_net(sizes, "sigmoid", "cross_entropy", dtype, seed=5)
    ref = reference_of(net)
    X, y = random_problem(sizes, "cross_entropy", 48, dtype, seed=6)
    hist = net.fit(X, y, lr=0.2, batch_size=12, epochs=3, momentum=momentum, nesterov=nesterov,
                   weight_decay=0.01, shuffle=False)
    losses = []
    for epoch in range(3):
        for start in range(0, 48, 12):
            losses.append(ref.train_step(X[start:start + 12], y[start:start + 12], 0.2,
                                         momentum=momentum, weight_decay=0.01, nesterov=nesterov))
    assert_close_to_reference(net, ref, **TOLERANCE[dtype])
    assert hist.n_updates == 12
    # the epoch's loss is the mean of its batches' losses before their updates
    np.testing.assert_allclose(hist.loss, np.mean(np.reshape(losses, (3, 4)), axis=1), rtol=1e-5)


def test_last_partial_batch_is_an_update_of_its_own():
    sizes = [3, 4, 2]
    net = make_net(sizes, "tanh", "mse", "float64", seed=7)
    ref = reference_of(net)
    X, y = random_problem(sizes, "mse", 10, seed=8)
    hist = net.fit(X, y, lr=0.1, batch_size=4, epochs=1, momentum=0.5, shuffle=False)
    for start in (0, 4, 8):
        ref.train_step(X[start:start + 4], y[start:start + 4], 0.1, momentum=0.5)
    assert hist.n_updates == 3
    assert_close_to_reference(net, ref, **TOLERANCE["float64"])


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("kind", list(OPTIMIZERS))
def test_train_step_matches_reference_and_keeps_velocity(kind, dtype):
    momentum, nesterov = OPTIMIZERS[kind]
    sizes = [6, 10, 3]
    net = make_net(sizes, "relu", "cross_entropy", dtype, seed=9)
    ref = reference_of(net)
    for step in range(4):
        X, y = random_problem(sizes, "cross_entropy", 9 + step, dtype, seed=10 + step)
        got = net.train_step(X, y, lr=0.15, momentum=momentum, nesterov=nesterov, weight_decay=0.02)
        expected = ref.train_step(X, y, 0.15, momentum=momentum, weight_decay=0.02, nesterov=nesterov)
        assert got == pytest.approx(expected, rel=1e-5)
        assert_close_to_reference(net, ref, **TOLERANCE[dtype])


def test_velocity_carries_from_one_fit_call_to_the_next():
    sizes = [4, 6, 3]
    net = make_net(sizes, "tanh", "cross_entropy", "float64", seed=11)
    ref = reference_of(net)
    X, y = random_problem(sizes, "cross_entropy", 20, seed=12)
    for _ in range(3):
        net.fit(X, y, lr=0.1, batch_size=20, epochs=1, momentum=0.9, shuffle=False)
        ref.train_step(X, y, 0.1, momentum=0.9)
    assert_close_to_reference(net, ref, **TOLERANCE["float64"])


@pytest.mark.parametrize("loss", ["cross_entropy", "mse"])
def test_full_batch_gd_on_more_than_512_rows_matches_reference(loss):
    sizes = [8, 12, 3]
    net = make_net(sizes, "tanh", loss, "float64", seed=13)
    ref = reference_of(net)
    X, y = random_problem(sizes, loss, 1100, seed=14)
    hist = net.fit(X, y, optimizer="gd", lr=0.5, batch_size=7, epochs=3, momentum=0.9,
                   weight_decay=0.01)
    losses = [ref.train_step(X, y, 0.5, momentum=0.9, weight_decay=0.01) for _ in range(3)]
    assert hist.n_updates == 3
    assert_close_to_reference(net, ref, **TOLERANCE["float64"])
    np.testing.assert_allclose(hist.loss, losses, rtol=1e-9)


# -- learning real problems -----------------------------------------------------------

XOR_X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
XOR_Y = np.array([0, 1, 1, 0])


@pytest.mark.parametrize("activation", ["tanh", "sigmoid"])
@pytest.mark.parametrize("batch_size", [4, 1])
def test_learns_xor(activation, batch_size):
    net = fastbp.Network([2, 8, 2], activation=activation, seed=0)
    # single-sample steps are 4x as many and noisier: a smaller lr
    lr = 0.5 if batch_size == 4 else 0.1
    net.fit(XOR_X, XOR_Y, lr=lr, batch_size=batch_size, momentum=0.9, epochs=500)
    assert net.predict(XOR_X).tolist() == XOR_Y.tolist()
    assert net.evaluate(XOR_X, XOR_Y)["accuracy"] == 1.0


def test_learns_a_sine():
    x = np.linspace(-3, 3, 256).reshape(-1, 1)
    y = np.sin(x)
    net = fastbp.Network([1, 32, 1], activation="tanh", loss="mse", seed=0)
    before = net.evaluate(x, y)["loss"]
    net.fit(x, y[:, 0], lr=0.05, momentum=0.9, batch_size=8, epochs=300)
    after = net.evaluate(x, y)["loss"]
    assert before > 0.1
    assert after < 1e-3
    assert np.abs(net.predict(x) - y[:, 0]).max() < 0.1


@pytest.mark.parametrize("optimizer", ["sgd", "gd"])
def test_learns_a_multi_output_linear_map(optimizer):
    rng = np.random.default_rng(0)
    A, c = rng.standard_normal((5, 3)), rng.standard_normal(3)
    X = rng.standard_normal((400, 5))
    Y = X @ A + c
    net = fastbp.Network([5, 16, 3], activation="identity", loss="mse", dtype="float64", seed=0)
    epochs = 100 if optimizer == "sgd" else 1000
    net.fit(X, Y, optimizer=optimizer, lr=0.02 if optimizer == "sgd" else 0.1, batch_size=20,
            momentum=0.9, epochs=epochs)
    assert net.evaluate(X, Y)["loss"] < 1e-6
    assert net.predict(X).shape == (400, 3)


def test_fit_again_continues_training():
    sizes = [10, 16, 4]
    X, y = random_problem(sizes, "cross_entropy", 256, "float32", seed=15)
    net = fastbp.Network(sizes, activation="relu", seed=1)
    first = net.fit(X, y, lr=0.05, batch_size=32, epochs=5)
    second = net.fit(X, y, lr=0.05, batch_size=32, epochs=5)
    assert first.loss[-1] < first.loss[0]
    assert second.loss[0] < first.loss[0]
    assert second.loss[-1] < first.loss[-1]
    assert net.n_updates_ == first.n_updates + second.n_updates == 80


# -- determinism -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_gives_identical_weights(dtype):
    sizes = [12, 20, 5]
    X, y = random_problem(sizes, "cross_entropy", 300, dtype, seed=16)
    runs = []
    for seed in (3, 3, 4):
        net = fastbp.Network(sizes, activation="relu", dtype=dtype, seed=seed)
        net.fit(X, y, lr=0.05, batch_size=7, epochs=3, momentum=0.9, shuffle=True)
        runs.append(net)
    a, b, other = runs
    for l in range(a.n_layers):
        np.testing.assert_array_equal(a.weights[l], b.weights[l])
        np.testing.assert_array_equal(a.biases[l], b.biases[l])
    assert not np.array_equal(a.weights[0], other.weights[0])


@pytest.mark.parametrize("n_threads", [1, 2, 3])
def test_same_seed_and_threads_give_identical_weights(n_threads):
    sizes = [40, 64, 10]
    X, y = random_problem(sizes, "cross_entropy", 600, "float32", seed=16, zero_fraction=0.5)
    runs = []
    for _ in range(2):
        net = fastbp.Network(sizes, activation="relu", seed=3, n_threads=n_threads)
        net.fit(X, y, lr=0.05, batch_size=50, epochs=2, momentum=0.9)
        runs.append(net)
    for l in range(runs[0].n_layers):
        np.testing.assert_array_equal(runs[0].weights[l], runs[1].weights[l])
        np.testing.assert_array_equal(runs[0].biases[l], runs[1].biases[l])


@pytest.mark.parametrize("zero_fraction", [0.3, 0.85])
@pytest.mark.parametrize("n_threads", [2, 3])
def test_threaded_steps_match_reference(n_threads, zero_fraction):
    # Threads split each layer's columns (rows of W below 4 samples); the step is
    # still the reference's, for batches of 1-3 samples (row slabs), small (fused
    # update) and large batches and a wide input layer. 300-120-20-4 is large enough
    # to be threaded even at batch 1.
    sizes = [300, 120, 20, 4]
    for batch in (1, 3, 5, 300):
        net = make_net(sizes, "tanh", "cross_entropy", "float64", seed=42)
        ref = reference_of(net)
        # 85% zeros: the input layer works from the non-zeros (CSR/CSC)
        X, y = random_problem(sizes, "cross_entropy", batch, "float64", seed=43,
                              zero_fraction=zero_fraction)
        net.fit(X, y, lr=0.1, batch_size=batch, epochs=2, momentum=0.9, nesterov=True,
                weight_decay=1e-3, shuffle=False, n_threads=n_threads)
        for _ in range(2):
            ref.train_step(X, y, 0.1, momentum=0.9, weight_decay=1e-3, nesterov=True)
        assert_close_to_reference(net, ref, **TOLERANCE["float64"])
        got = net.gradients(X, y)
        _, expected = reference.gradients(net.weights, net.biases, net.activations, X, y,
                                          "cross_entropy")
        for (dW, db), (eW, eb) in zip(got, expected):
            np.testing.assert_allclose(dW, eW, rtol=1e-9, atol=1e-13)
            np.testing.assert_allclose(db, eb, rtol=1e-9, atol=1e-13)


def test_same_seed_gives_identical_initial_weights_and_shuffle_matters():
    sizes = [6, 8, 3]
    X, y = random_problem(sizes, "cross_entropy", 64, "float64", seed=17)
    shuffled = fastbp.Network(sizes, dtype="float64", seed=5)
    in_order = fastbp.Network(sizes, dtype="float64", seed=5)
    for l in range(shuffled.n_layers):
        np.testing.assert_array_equal(shuffled.weights[l], in_order.weights[l])
    shuffled.fit(X, y, lr=0.1, batch_size=8, epochs=2, shuffle=True)
    in_order.fit(X, y, lr=0.1, batch_size=8, epochs=2, shuffle=False)
    assert not np.array_equal(shuffled.weights[0], in_order.weights[0])


# -- schedules and early stopping ---------------------------------------------------------

def test_invscaling_lowers_lr_every_update():
    sizes = [4, 6, 3]
    net = make_net(sizes, "tanh", "cross_entropy", "float64", seed=18)
    ref = reference_of(net)
    X, y = random_problem(sizes, "cross_entropy", 30, seed=19)
    lr, decay = 0.5, 0.3
    hist = net.fit(X, y, lr=lr, batch_size=10, epochs=2, momentum=0.5, shuffle=False,
                   schedule="invscaling", decay=decay)
    rates = [lr / (1 + decay * t) for t in range(6)]
    for t, rate in enumerate(rates):
        start = (t % 3) * 10
        ref.train_step(X[start:start + 10], y[start:start + 10], rate, momentum=0.5)
    assert_close_to_reference(net, ref, **TOLERANCE["float64"])
    assert hist.lr == pytest.approx([rates[2], rates[5]], rel=1e-12)


def test_step_schedule_lr_per_epoch():
    sizes = [4, 6, 3]
    net = make_net(sizes, "tanh", "cross_entropy", "float64", seed=20)
    ref = reference_of(net)
    X, y = random_problem(sizes, "cross_entropy", 30, seed=21)
    hist = net.fit(X, y, optimizer="gd", lr=0.4, epochs=5, schedule="step", step_size=2, gamma=0.5)
    expected = [0.4, 0.4, 0.2, 0.2, 0.1]
    assert hist.lr == pytest.approx(expected, rel=1e-12)
    for rate in expected:
        ref.train_step(X, y, rate)
    assert_close_to_reference(net, ref, **TOLERANCE["float64"])


def test_adaptive_divides_lr_by_5_after_stale_epochs():
    # An lr far too small to change the loss by tol: every epoch after the first is stale.
    sizes = [4, 6, 3]
    net = make_net(sizes, "tanh", "cross_entropy", "float64", seed=22)
    X, y = random_problem(sizes, "cross_entropy", 30, seed=23)
    lr = 1e-9
    hist = net.fit(X, y, optimizer="gd", lr=lr, epochs=7, schedule="adaptive", n_iter_no_change=2)
    assert hist.epochs == 7 and not hist.stopped_early
    assert hist.lr == pytest.approx([lr, lr, lr, lr / 5, lr / 5, lr / 25, lr / 25], rel=1e-12)


def test_adaptive_keeps_lr_while_the_loss_improves():
    sizes = [2, 8, 2]
    net = fastbp.Network(sizes, activation="tanh", seed=0)
    hist = net.fit(XOR_X, XOR_Y, optimizer="gd", lr=0.5, epochs=20, schedule="adaptive",
                   n_iter_no_change=3)
    assert all(b < a for a, b in zip(hist.loss, hist.loss[1:]))
    assert hist.lr == pytest.approx([0.5] * 20)


@pytest.mark.parametrize("n_iter_no_change", [1, 3])
def test_tol_stops_training_early(n_iter_no_change):
    sizes = [4, 6, 3]
    net = make_net(sizes, "tanh", "cross_entropy", "float64", seed=24)
    X, y = random_problem(sizes, "cross_entropy", 30, seed=25)
    hist = net.fit(X, y, optimizer="gd", lr=1e-9, epochs=50, tol=1e-3,
                   n_iter_no_change=n_iter_no_change)
    assert hist.stopped_early
    # the first epoch improves on nothing-yet; then n_iter_no_change stale epochs
    assert hist.epochs == n_iter_no_change + 1
    assert hist.n_updates == hist.epochs
    assert len(hist.lr) == len(hist.epoch_seconds) == hist.epochs


def test_without_tol_all_epochs_run():
    sizes = [4, 6, 3]
    net = make_net(sizes, "tanh", "cross_entropy", "float64", seed=24)
    X, y = random_problem(sizes, "cross_entropy", 30, seed=25)
    hist = net.fit(X, y, optimizer="gd", lr=1e-9, epochs=12, n_iter_no_change=2)
    assert hist.epochs == 12 and not hist.stopped_early


def test_tol_monitors_validation_loss():
    # Training loss improves every epoch, but the validation set is made of points
    # whose loss rises: with validation_data the stop comes from the validation loss.
    sizes = [2, 8, 2]
    net = fastbp.Network(sizes, activation="tanh", seed=0)
    X_val, y_val = XOR_X, 1 - XOR_Y
    hist = net.fit(XOR_X, XOR_Y, optimizer="gd", lr=0.5, epochs=200, tol=0.0,
                   n_iter_no_change=3, validation_data=(X_val, y_val))
    assert hist.stopped_early and hist.epochs < 200
    assert len(hist.val_loss) == hist.epochs


# -- History ---------------------------------------------------------------------------

def test_history_fields():
    sizes = [6, 10, 3]
    X, y = random_problem(sizes, "cross_entropy", 100, "float32", seed=26)
    X_val, y_val = random_problem(sizes, "cross_entropy", 37, "float32", seed=27)
    net = fastbp.Network(sizes, seed=2)
    hist = net.fit(X, y, lr=0.05, batch_size=32, epochs=4, validation_data=(X_val, y_val))
    assert isinstance(hist, fastbp.History)
    assert hist.epochs == len(hist.loss) == 4
    assert len(hist.val_loss) == len(hist.val_accuracy) == len(hist.epoch_seconds) == len(hist.lr) == 4
    assert all(np.isfinite(hist.loss)) and all(s >= 0 for s in hist.epoch_seconds)
    assert hist.n_updates == 4 * math.ceil(100 / 32)
    assert hist.lr == pytest.approx([0.05] * 4) and hist.final_lr == pytest.approx(0.05)
    assert not hist.stopped_early
    final = net.evaluate(X_val, y_val)
    assert hist.val_loss[-1] == pytest.approx(final["loss"], rel=1e-6)
    assert hist.val_accuracy[-1] == pytest.approx(final["accuracy"])
    assert all(0 <= a <= 1 for a in hist.val_accuracy)


def test_history_of_a_regressor_has_no_accuracy():
    sizes = [3, 5, 2]
    X, y = random_problem(sizes, "mse", 50, "float32", seed=28)
    net = fastbp.Network(sizes, loss="mse", seed=3)
    hist = net.fit(X, y, epochs=2, validation_data=(X, y))
    assert len(hist.val_loss) == 2 and hist.val_accuracy == []
    without = fastbp.Network(sizes, loss="mse", seed=3).fit(X, y, epochs=2)
    assert without.val_loss == [] and without.val_accuracy == []


# -- divergence -------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_divergence_raises_and_keeps_finite_weights(dtype):
    sizes = [4, 8, 2]
    X, _ = random_problem(sizes, "mse", 64, dtype, seed=29)
    y = np.full((64, 2), 1e6, dtype=dtype)
    net = fastbp.Network(sizes, loss="mse", dtype=dtype, seed=4)
    with pytest.raises(FloatingPointError, match="NaN or inf"):
        net.fit(X, y, lr=1e30, batch_size=16, epochs=50)
    assert_params_finite(net)


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_divergence_in_train_step_raises_and_keeps_finite_weights(dtype):
    sizes = [4, 8, 2]
    X, _ = random_problem(sizes, "mse", 16, dtype, seed=30)
    y = np.full((16, 2), 1e6, dtype=dtype)
    net = fastbp.Network(sizes, loss="mse", dtype=dtype, seed=5)
    with pytest.raises(FloatingPointError):
        for _ in range(50):
            net.train_step(X, y, lr=1e30)
    assert_params_finite(net)


# -- divergence -------------------------------------------------------------------------

@pytest.mark.parametrize("momentum, shuffle", [(0.0, False), (0.9, True)])
@pytest.mark.parametrize("run_seconds, restore_seconds", [(None, None), (1e-9, 0.0)])
def test_an_update_that_overflows_the_weights_leaves_those_of_the_last_finite_step(
        monkeypatch, momentum, shuffle, run_seconds, restore_seconds):
    # Weight decay of lr * wd = 3 (10 with momentum) doubles the weights every step
    # while tiny inputs keep the logits, and so the loss, finite: the update itself
    # overflows float32. fit must leave the weights (and velocities) of the step before.
    # The second case returns from C after every step and copies before every step.
    from fastbp import network
    if run_seconds is not None:
        monkeypatch.setattr(network, "RUN_SECONDS", run_seconds)
        monkeypatch.setattr(network, "RESTORE_SECONDS", restore_seconds)
    rng = np.random.default_rng(0)
    X = (rng.standard_normal((64, 4)) * 1e-3).astype(np.float32)
    y = rng.integers(0, 3, 64)
    wd = 10.0 if momentum else 3.0
    net = fastbp.Network([4, 3], seed=0)
    with pytest.raises(FloatingPointError, match="overflowed the weights.*those of the last finite step"):
        net.fit(X, y, batch_size=8, lr=1.0, weight_decay=wd, momentum=momentum, epochs=1000,
                shuffle=shuffle)
    last = net.n_updates_
    assert last > 8, "the overflow should come epochs in"
    # The same run, stopped after `last` updates by the C loop's own step limit.
    ref = fastbp.Network([4, 3], seed=0)
    core = ref._core_for(8, ref.n_threads)
    ref._use_state(core, ref._rule("sgd", 1.0, momentum, False, 0.0, None, None))
    trainer = _core.Trainer(X, y.astype(np.int32), None, 8, shuffle, ref._shuffle_state)
    trainer.set_max_steps(last)
    while trainer.step < last:
        trainer.set_optimizer(1.0, 0.0, momentum, wd, False, trainer.step)
        trainer.epoch_begin()
        while not trainer.epoch_done and trainer.step < last:
            core.run(trainer, 1.0)
    assert trainer.status == _core.STATUS_OK
    for a, b in zip(net.weights + net.biases, ref.weights + ref.biases):
        assert np.isfinite(a).all()
        np.testing.assert_array_equal(a, b)
    if momentum:
        np.testing.assert_array_equal(net._state, ref._state)


def test_train_step_says_it_cannot_undo_an_overflowing_update():
    net = fastbp.Network([4, 3], seed=0)
    X = np.ones((2, 4), np.float32)
    with pytest.raises(FloatingPointError, match="cannot undo it"):
        net.train_step(X, [0, 1], lr=3e38, weight_decay=1e38)


# -- Ctrl-C -----------------------------------------------------------------------------

@pytest.mark.parametrize("n_threads", [1, 2])
def test_a_full_batch_step_paused_between_chunks_goes_on_to_the_same_weights(n_threads):
    # fit returns from C every RUN_SECONDS so that Ctrl-C is seen; a full-batch step
    # longer than that pauses between chunks of rows and the next call goes on with it.
    # Here every call pauses after one chunk: the weights must not move until the step
    # completes, and must end bit-identical to uninterrupted steps.
    sizes = [784, 64, 10]
    X, y = random_problem(sizes, "cross_entropy", 3000, "float32", seed=8)
    whole = fastbp.Network(sizes, seed=0, n_threads=n_threads)
    whole.fit(X, y, optimizer="gd", lr=0.1, momentum=0.9, epochs=2)
    net = fastbp.Network(sizes, seed=0, n_threads=n_threads)
    core = net._core_for(len(X), n_threads)
    net._use_state(core, net._rule("sgd", 0.1, 0.9, False, 0.0, None, None))
    trainer = _core.Trainer(X, y.astype(np.int32), None, len(X), False, net._shuffle_state)
    calls = pauses = 0
    for epoch in range(2):
        trainer.set_optimizer(0.1, 0.0, 0.9, 0.0, False, trainer.step)
        trainer.epoch_begin()
        before = [w.copy() for w in net.weights]
        while not trainer.epoch_done:
            done = core.run(trainer, 1e-9)
            calls += 1
            if done == 0:
                pauses += 1
                assert 0 < trainer.step_rows < len(X)
                assert all(np.array_equal(a, b) for a, b in zip(net.weights, before))
        assert trainer.step_rows == 0
    assert pauses == 2 * (-(-len(X) // core.max_batch) - 1)
    for a, b in zip(net.weights + net.biases, whole.weights + whole.biases):
        np.testing.assert_array_equal(a, b)


def long_fit_problem():
    sizes = [64, 128, 10]
    X, y = random_problem(sizes, "cross_entropy", 4096, "float32", seed=31)
    return fastbp.Network(sizes, seed=6), X, y


def interrupted_fit(net, X, y, start_interrupt):
    """Run a fit far longer than the test, interrupted by start_interrupt(fired),
    which appends the time it fires to fired; returns the seconds from the
    interrupt to KeyboardInterrupt reaching the caller."""
    fired = []
    start_interrupt(fired)
    with pytest.raises(KeyboardInterrupt):
        net.fit(X, y, lr=0.01, batch_size=32, epochs=200)
    assert fired, "the fit ended before the interrupt was sent"
    return time.perf_counter() - fired[0]


@pytest.mark.skipif(not hasattr(signal, "setitimer"), reason="needs signal.setitimer")
def test_ctrl_c_from_a_signal_stops_fit_quickly():
    net, X, y = long_fit_problem()
    fired_at = []

    def on_alarm(signum, frame):
        fired_at.append(time.perf_counter())
        raise KeyboardInterrupt

    def start(fired):
        fired_at.clear()
        signal.setitimer(signal.ITIMER_REAL, 0.2)

    old = signal.signal(signal.SIGALRM, on_alarm)
    try:
        with pytest.raises(KeyboardInterrupt):
            start(fired_at)
            net.fit(X, y, lr=0.01, batch_size=32, epochs=200)
        assert fired_at, "the fit ended before the interrupt was sent"
        delay = time.perf_counter() - fired_at[0]
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)
    assert delay < 2.0
    assert_params_finite(net)
    # the network is still usable afterwards
    net.fit(X[:64], y[:64], lr=0.01, batch_size=32, epochs=1)
    assert_params_finite(net)


def test_ctrl_c_from_another_thread_stops_fit_quickly(python_sigint):
    import _thread
    net, X, y = long_fit_problem()

    def start(fired):
        def interrupt():
            fired.append(time.perf_counter())
            _thread.interrupt_main()
        timer = threading.Timer(0.2, interrupt)
        timer.daemon = True
        timer.start()

    delay = interrupted_fit(net, X, y, start)
    assert delay < 2.0
    assert_params_finite(net)
    before = params_copy(net)
    net.train_step(X[:32], y[:32], lr=0.01)
    assert not np.array_equal(net.weights[0], before[0][0])


@pytest.mark.parametrize("zero_below", [0.5, 0.85])
@pytest.mark.parametrize("batch_size", [1, 2, 3, 8, 64, 300])
def test_weights_are_bit_identical_for_any_thread_count(batch_size, zero_below):
    """Threads split each layer by output columns and dX by input rows, so every
    value is computed whole by one thread; below 4 samples they split W by rows and
    the forward sums go over fixed row blocks added in order. Either way 1, 2 or 3
    threads give the same bits."""
    rng = np.random.default_rng(0)
    X = rng.random((900, 300), dtype=np.float32)
    X[X < zero_below] = 0     # half zeros, or sparse enough for the CSR/CSC input layer
    y = rng.integers(0, 10, 900)
    results = []
    for n_threads in (1, 2, 3):
        net = fastbp.Network([300, 100, 64, 10], seed=3, n_threads=n_threads)
        net.fit(X, y, lr=0.05, momentum=0.9, batch_size=batch_size, epochs=1)
        results.append(net.weights + net.biases)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("batch_size", [1, 64])
def test_fit_may_change_its_thread_count_midway(batch_size):
    """On a busy machine the epoch loop drops to one thread and later tries all again
    (a CPU-time watch in C); the testing hook makes it switch every few steps. The
    weights must be the same bits as without switching."""
    rng = np.random.default_rng(0)
    X = rng.random((600, 300), dtype=np.float32)
    X[X < 0.85] = 0
    y = rng.integers(0, 10, 600)
    results = []
    try:
        for every in (0, 1, 3):
            fastbp._core._set_test_regroup(every)
            net = fastbp.Network([300, 100, 64, 10], seed=3, n_threads=2)
            net.fit(X, y, lr=0.05, momentum=0.9, batch_size=batch_size, epochs=2)
            results.append(net.weights + net.biases)
    finally:
        fastbp._core._set_test_regroup(0)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)


def test_wide_inputs_step_in_chunks_like_the_reference():
    # 70,000 inputs: the C work space takes at most 2M input values per chunk (29 rows
    # here), so a batch of 40 is two chunks whose gradients add up before the step;
    # 90% zeros, so the chunks go through the sparse input layer.
    sizes = [70000, 4, 3]
    net = make_net(sizes, "relu", "cross_entropy", "float64", seed=11)
    ref = reference_of(net)
    X, y = random_problem(sizes, "cross_entropy", 40, "float64", seed=12, zero_fraction=0.9)
    for _ in range(2):
        net.train_step(X, y, lr=0.1, momentum=0.9)
        ref.train_step(X, y, 0.1, momentum=0.9)
    assert net._core.max_batch < len(X)
    assert_close_to_reference(net, ref, **TOLERANCE["float64"])
