"""train_step's fast path (CoreNet.try_train_step in fastbp/_core.pyx, taken by
Network.train_step when the arrays and settings are already as C takes them) must
behave exactly like the Python checks: these came from a review that found it did
not (byte order, 0-d labels, velocities replaced behind the cached core), plus a
thread team smaller than asked for."""
import os
import re
import subprocess
import sys
import textwrap

import numpy as np

import fastbp


def _warm(net, loss="cross_entropy", n=4):
    """One tiny step, so net._core exists and the next train_step takes the fast path."""
    X = np.zeros((n, net.layer_sizes[0]), net.dtype)
    y = np.zeros(n, np.int64) if loss == "cross_entropy" else np.zeros((n, net.layer_sizes[-1]), net.dtype)
    net.train_step(X, y, lr=1e-9)
    return net


def _same_weights(a, b):
    return all(np.array_equal(u, v) for u, v in zip(a.weights + a.biases, b.weights + b.biases))


def test_fast_path_reads_big_endian_X_as_native():
    # try_train_step compares PyArray_TYPE (NPY_DOUBLE for both '<f8' and '>f8') and
    # never looks at the byte order, so a big-endian X is handed to C as if native:
    # the step trains on byte-swapped garbage (loss ~1e244 here). The slow path's
    # check_X sees X.dtype != float64 and converts it.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 5))
    y = np.array([0, 2, 1, 2])
    native = _warm(fastbp.Network([5, 8, 3], seed=0, n_threads=1, dtype="float64"))
    swapped = _warm(fastbp.Network([5, 8, 3], seed=0, n_threads=1, dtype="float64"))
    loss_native = native.train_step(X, y, lr=0.1)
    loss_swapped = swapped.train_step(X.astype(">f8"), y, lr=0.1)
    assert loss_swapped == loss_native
    assert _same_weights(native, swapped)


def test_fast_path_reads_big_endian_targets_as_native():
    # Same for mse targets: the type number of '>f8' is that of float64.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 5))
    y = rng.standard_normal((4, 3))
    native = _warm(fastbp.Network([5, 8, 3], seed=0, n_threads=1, dtype="float64", loss="mse"), "mse")
    swapped = _warm(fastbp.Network([5, 8, 3], seed=0, n_threads=1, dtype="float64", loss="mse"), "mse")
    loss_native = native.train_step(X, y, lr=0.1)
    loss_swapped = swapped.train_step(X, y.astype(">f8"), lr=0.1)
    assert loss_swapped == loss_native
    assert _same_weights(native, swapped)


def test_fast_path_0d_y_does_not_crash(tmp_path):
    # try_train_step reads PyArray_DIM(y, 0) before checking y's number of dimensions;
    # a 0-d array has no dims (NULL pointer): the interpreter segfaults instead of
    # train_step raising ValueError. Run in a subprocess so the crash fails this test
    # only.
    code = textwrap.dedent("""
        import numpy as np, fastbp
        net = fastbp.Network([5, 8, 3], seed=0, n_threads=1, dtype="float64")
        X = np.zeros((1, 5))
        net.train_step(X, np.array([0]), lr=0.1)
        try:
            net.train_step(X, np.array(0), lr=0.1)
        except ValueError:
            print("raised ValueError")
    """)
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)  # outside the source tree (unbuilt fastbp)
    assert result.returncode == 0, f"crashed with return code {result.returncode}"
    assert "raised ValueError" in result.stdout


def test_reset_optimizer_is_seen_by_the_fast_path():
    # reset_optimizer only drops Network._state; the cached CoreNet still points at the
    # old velocity, and try_train_step (momentum > 0 and a state set) would keep using
    # it: the step after a reset would continue the old momentum instead of starting
    # from zero velocity.
    rng = np.random.default_rng(0)
    X = rng.standard_normal((4, 5))
    y = np.array([0, 2, 1, 2])
    net = fastbp.Network([5, 8, 3], seed=0, n_threads=1, dtype="float64")
    for _ in range(3):
        net.train_step(X, y, lr=0.1, momentum=0.9)
    net.reset_optimizer()
    fresh = fastbp.Network([5, 8, 3], seed=0, n_threads=1, dtype="float64")
    fresh.set_weights(net.weights, net.biases)   # same weights, no velocity yet
    net.train_step(X, y, lr=0.1, momentum=0.9)
    fresh.train_step(X, y, lr=0.1, momentum=0.9)
    assert _same_weights(net, fresh)


def test_a_smaller_thread_team_than_asked_for_does_not_hang(tmp_path):
    # OMP_THREAD_LIMIT=1 gives every parallel region one thread whatever n_threads
    # asks: the barriers must count the threads the region really got (a hang before).
    code = textwrap.dedent("""
        import numpy as np, fastbp
        rng = np.random.default_rng(0)
        X = rng.random((64, 300), dtype=np.float32); y = rng.integers(0, 10, 64)
        out = []
        for n_threads in (1, 3):
            net = fastbp.Network([300, 128, 10], seed=0, n_threads=n_threads)
            net.fit(X, y, batch_size=8, epochs=1)
            net.train_step(X[:1], y[:1], lr=0.1)
            net.gradients(X, y)
            out.append(np.concatenate([w.ravel() for w in net.weights]))
        assert np.array_equal(out[0], out[1])
        print("ok")
    """)
    env = dict(os.environ, OMP_THREAD_LIMIT="1")
    done = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, timeout=120,
                          capture_output=True, text=True)
    assert done.returncode == 0 and done.stdout.strip() == "ok", done.stderr


def test_an_explicit_n_threads_equal_to_the_networks_takes_the_fast_path(monkeypatch):
    # The benchmark passes n_threads to every call; with it the step went through the
    # Python checks (8 µs a call instead of 2.6). Here the Python checks fail if used.
    net = _warm(fastbp.Network([5, 8, 3], seed=0, n_threads=2))
    X = np.random.default_rng(0).random((4, 5), dtype=np.float32)
    y = np.array([0, 2, 1, 2])

    def refuse(*args, **kwargs):
        raise AssertionError("the slow path checked the arguments")

    monkeypatch.setattr(fastbp.network, "check_sgd_settings", refuse)
    net.train_step(X, y, lr=0.1, n_threads=2)
    with np.testing.assert_raises(AssertionError):
        net.train_step(X, y, lr=0.1, n_threads=1)   # a different count: the slow path


def _adam_pair(optimizers, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.01):
    """Two networks through the same Adam/AdamW steps: one with betas as a tuple (the
    fast path after the first call), one with betas as a list, which the fast path
    refuses, so every step goes through the Python checks. Returns both and their losses."""
    rng = np.random.default_rng(0)
    X = rng.random((3, 20), dtype=np.float32)
    y = np.array([0, 2, 1])
    nets = [fastbp.Network([20, 16, 3], seed=0, n_threads=2) for _ in range(2)]
    losses = [[], []]
    for optimizer in optimizers:
        for k, b in enumerate((tuple(betas), list(betas))):
            losses[k].append(nets[k].train_step(X, y, lr=0.01, optimizer=optimizer, betas=b, eps=eps,
                                                weight_decay=weight_decay))
    return nets, losses


def test_adam_steps_on_the_fast_path_are_the_checked_steps():
    # The fast path sets Adam's betas, eps and step count (its bias correction) itself:
    # a wrong step count or a default in place of a given beta changes every weight.
    nets, losses = _adam_pair(["adam"] * 4 + ["adamw"] * 3 + ["adam"])
    assert losses[0] == losses[1]
    assert _same_weights(*nets)
    for a, b in zip(nets[0]._state, nets[1]._state):
        assert np.array_equal(a, b)
    assert nets[0]._rule_steps == nets[1]._rule_steps == 8


def test_adam_defaults_on_the_fast_path_are_pytorchs(monkeypatch):
    net = _warm(fastbp.Network([5, 8, 3], seed=0, n_threads=1))
    X = np.random.default_rng(0).random((4, 5), dtype=np.float32)
    y = np.array([0, 2, 1, 2])
    net.train_step(X, y, lr=0.01, optimizer="adam")       # sets up the moments
    slow = fastbp.Network([5, 8, 3], seed=0, n_threads=1)
    slow.set_weights(net.weights, net.biases)
    slow._state, slow._state_kind, slow._rule_steps = [s.copy() for s in net._state], "moments", 1
    slow._state = np.stack(slow._state)

    def refuse(*args, **kwargs):
        raise AssertionError("the slow path checked the arguments")

    monkeypatch.setattr(fastbp.network, "check_adam_settings", refuse)
    net.train_step(X, y, lr=0.01, optimizer="adam")       # betas, eps: None
    monkeypatch.undo()
    slow.train_step(X, y, lr=0.01, optimizer="adam", betas=[0.9, 0.999], eps=1e-8)
    assert _same_weights(net, slow)


def test_bad_adam_settings_are_named_after_a_fast_step():
    net = fastbp.Network([5, 8, 3], seed=0, n_threads=1)
    X = np.random.default_rng(0).random((4, 5), dtype=np.float32)
    y = np.array([0, 2, 1, 2])
    net.train_step(X, y, lr=0.01, optimizer="adam")
    net.train_step(X, y, lr=0.01, optimizer="adam")
    before = [w.copy() for w in net.weights]
    for kwargs, message in [(dict(betas=(1.0, 0.999)), "betas[0]"), (dict(betas=(0.9, -0.5)), "betas[1]"),
                            (dict(eps=0.0), "eps"), (dict(eps=1e-50), "is 0 in float32"),
                            (dict(momentum=0.9), "momentum"), (dict(eps=float("nan")), "eps")]:
        with np.testing.assert_raises_regex(ValueError, re.escape(message)):
            net.train_step(X, y, lr=0.01, optimizer="adam", **kwargs)
    assert all(np.array_equal(a, b) for a, b in zip(before, net.weights))
