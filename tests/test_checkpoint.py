"""Checkpoints and resume (fit(checkpoint=, checkpoint_every=, resume=), fastbp.load of
a checkpoint, fastbp train --checkpoint/--resume): a resumed run ends in the same bits
as the run left alone, also after a SIGKILL at a random moment; a checkpoint of
another run, or a corrupt one, is refused by name."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import safetensors.numpy

import fastbp
from fastbp import io

from conftest import random_problem

SIZES = [12, 16, 3]
RUNS = {
    "sgd momentum": dict(optimizer="sgd", lr=0.05, momentum=0.9, nesterov=True),
    "adam": dict(optimizer="adam", lr=0.01, weight_decay=0.01),
    "adamw step schedule": dict(optimizer="adamw", lr=0.01, weight_decay=0.05, schedule="step",
                                step_size=2, gamma=0.5),
    "sgd invscaling": dict(optimizer="sgd", lr=0.1, schedule="invscaling", decay=0.01),
    "sgd adaptive with validation": dict(optimizer="sgd", lr=0.2, schedule="adaptive", tol=0.5,
                                         n_iter_no_change=1),
    "gd sample weights": dict(optimizer="gd", lr=0.5, weighted=True),
}


def problem(seed=0, n=300):
    X, y = random_problem(SIZES, "cross_entropy", n, "float64", seed=seed)
    return X, y


def fit(net, X, y, settings, **kwargs):
    settings = dict(settings)
    if settings.pop("weighted", False):
        kwargs["sample_weight"] = np.arange(len(X)) % 3 + 0.5
    if settings.get("schedule") == "adaptive":
        kwargs["validation_data"] = problem(seed=9, n=50)
    return net.fit(X, y, batch_size=16, **settings, **kwargs)


def same_bits(a, b, loaded=False):
    """The same weights and optimizer state (and, unless b was loaded from a file
    rather than trained, the same update count)."""
    for p, q in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_array_equal(p, q)
    if a._state is None:
        assert b._state is None
    else:
        np.testing.assert_array_equal(a._state, b._state)
    assert (a._state_kind, a._rule_steps) == (b._state_kind, b._rule_steps)
    assert loaded or a.n_updates_ == b.n_updates_


@pytest.mark.parametrize("name", sorted(RUNS))
def test_a_resumed_run_ends_in_the_bits_of_the_run_left_alone(tmp_path, name):
    X, y = problem()
    path = tmp_path / "run.ckpt"
    alone = fastbp.Network(SIZES, seed=1)
    h_alone = fit(alone, X, y, RUNS[name], epochs=6)
    first = fastbp.Network(SIZES, seed=1)
    fit(first, X, y, RUNS[name], epochs=3, checkpoint=path)
    resumed = fastbp.Network(SIZES, seed=1)
    h_resumed = fit(resumed, X, y, RUNS[name], epochs=6, resume=path, checkpoint=path)
    same_bits(alone, resumed)
    for field in ("loss", "val_loss", "val_accuracy", "lr"):
        assert getattr(h_alone, field) == getattr(h_resumed, field), field
    assert h_alone.n_updates == h_resumed.n_updates and h_alone.stopped_early == h_resumed.stopped_early
    same_bits(alone, fastbp.load(path), loaded=True)   # the last checkpoint: the run's end


def test_checkpoints_are_written_every_k_epochs_and_after_the_last(tmp_path):
    X, y = problem()
    path = tmp_path / "run.ckpt"
    written = []

    def look(progress):
        if progress.end_of_epoch and path.exists():
            written.append((progress.epoch, io.read_model(path)[0]["run"]["epochs_done"]))

    fastbp.Network(SIZES, seed=1).fit(X, y, epochs=5, checkpoint=path, checkpoint_every=2,
                                      callback=look)
    # the callback runs before the epoch's checkpoint: it sees the one before
    assert written == [(3, 2), (4, 2), (5, 4)]
    assert io.read_model(path)[0]["run"]["epochs_done"] == 5


def test_a_finished_run_resumes_to_itself(tmp_path):
    X, y = problem()
    path = tmp_path / "run.ckpt"
    done = fastbp.Network(SIZES, seed=1)
    h1 = done.fit(X, y, epochs=2, checkpoint=path)
    again = fastbp.Network(SIZES, seed=5)
    h2 = again.fit(X, y, epochs=2, resume=path)
    same_bits(done, again)
    assert h1.loss == h2.loss and h2.n_updates == h1.n_updates


KILLED_RUN = textwrap.dedent("""
    import sys, numpy as np, fastbp
    path, epochs = sys.argv[1], int(sys.argv[2])
    rng = np.random.default_rng(0)
    X = rng.standard_normal((6000, 40)); y = rng.integers(0, 5, 6000)
    net = fastbp.Network([40, 64, 5], seed=3, n_threads=2)
    resume = path if len(sys.argv) > 3 else None
    net.fit(X, y, optimizer="adam", lr=1e-3, batch_size=8, epochs=epochs, checkpoint=path,
            resume=resume)
    np.save(path + ".weights.npy", net._params)
""")


def test_a_run_killed_at_a_random_moment_resumes_to_the_same_bits(tmp_path):
    path = str(tmp_path / "run.ckpt")
    script = tmp_path / "run.py"
    script.write_text(KILLED_RUN)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(fastbp.__file__))]
                                        + env.get("PYTHONPATH", "").split(os.pathsep))
    alone = str(tmp_path / "alone.ckpt")
    # 30 epochs take about 0.25 s on a quiet machine: long enough for a kill within 0.1 s
    # of the first checkpoint to land before the end.
    subprocess.run([sys.executable, str(script), alone, "30"], check=True, env=env, cwd=tmp_path)
    expected = np.load(alone + ".weights.npy")
    rng = np.random.default_rng()
    for attempt in range(20):   # until the kill lands after the first checkpoint
        child = subprocess.Popen([sys.executable, str(script), path, "30"], env=env, cwd=tmp_path)
        deadline = time.monotonic() + 60
        while not os.path.exists(path) and time.monotonic() < deadline and child.poll() is None:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.1))
        child.send_signal(signal.SIGKILL)
        child.wait()
        if os.path.exists(path) and not os.path.exists(path + ".weights.npy"):
            break
        for leftover in (path, path + ".weights.npy"):
            if os.path.exists(leftover):
                os.unlink(leftover)
    else:
        pytest.fail("20 runs finished before a kill reached them")
    epochs_done = io.read_model(path)[0]["run"]["epochs_done"]   # a whole checkpoint, never a torn one
    assert 1 <= epochs_done <= 30   # (30: killed between the last checkpoint and the end)
    subprocess.run([sys.executable, str(script), path, "30", "resume"], check=True, env=env, cwd=tmp_path)
    np.testing.assert_array_equal(np.load(path + ".weights.npy"), expected)


@pytest.mark.parametrize("change, message", [
    (dict(lr=0.02), r"arguments differ: lr=0.02 \(the checkpoint's run had 0.05\)"),
    (dict(batch_size=8), r"batch_size=8 \(the checkpoint's run had 16\)"),
    (dict(optimizer="adam", momentum=0.0), r"optimizer='adam' \(the checkpoint's run had 'sgd'\)"),
    (dict(shuffle=False), r"shuffle=False"),
    (dict(X_order=True), r"its data differ in X"),
    (dict(y_change=True), r"its data differ in y"),
    (dict(weights=True), r"its data differ in sample_weight"),
])
def test_a_resume_of_another_run_is_refused_by_name(tmp_path, change, message):
    X, y = problem()
    path = tmp_path / "run.ckpt"
    settings = dict(optimizer="sgd", lr=0.05, momentum=0.9, batch_size=16)
    fastbp.Network(SIZES, seed=1).fit(X, y, epochs=1, checkpoint=path, **settings)
    kwargs = dict(settings)
    if change.pop("X_order", False):
        X = X[::-1].copy()
    if change.pop("y_change", False):
        y = (y + 1) % 3
    if change.pop("weights", False):
        kwargs["sample_weight"] = np.ones(len(X))
    kwargs.update(change)
    net = fastbp.Network(SIZES, seed=1)
    before = net._params.copy()
    with pytest.raises(ValueError, match=message):
        net.fit(X, y, epochs=2, resume=path, **kwargs)
    np.testing.assert_array_equal(net._params, before)


def test_a_resume_needs_a_checkpoint_of_the_same_network(tmp_path):
    X, y = problem()
    model, run = tmp_path / "model.fbp", tmp_path / "run.ckpt"
    net = fastbp.Network(SIZES, seed=1)
    net.save(model)
    with pytest.raises(ValueError, match="is a model file, not a checkpoint"):
        net.fit(X, y, resume=model)
    fastbp.Network(SIZES, seed=1).fit(X, y, epochs=1, checkpoint=run)
    with pytest.raises(ValueError, match="checkpoint is of a 12-16-3 relu cross_entropy float32 "
                                         "network, this is a 12-16-3 tanh"):
        fastbp.Network(SIZES, activation="tanh").fit(X, y, resume=run)
    with pytest.raises(FileNotFoundError):
        net.fit(X, y, resume=tmp_path / "missing.ckpt")


def test_a_corrupt_checkpoint_is_refused_like_a_model_file(tmp_path):
    X, y = problem()
    path = tmp_path / "run.ckpt"
    fastbp.Network(SIZES, seed=1).fit(X, y, optimizer="adam", epochs=1, checkpoint=path)
    data = path.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[:len(data) // 2])
    with pytest.raises(io.BadModelFile):
        fastbp.load(tmp_path / "cut.ckpt")
    with pytest.raises(io.BadModelFile):
        fastbp.Network(SIZES, seed=1).fit(X, y, optimizer="adam", resume=tmp_path / "cut.ckpt")
    # a tensor missing, in a file otherwise whole (its checksum made anew): the second
    # moment of the first layer
    with safetensors.safe_open(path, framework="np") as f:
        header = f.metadata()
        tensors = {name: f.get_tensor(name) for name in f.keys() if name != "state.1.0.weight"}
    header["checksum"] = io._checksum(header, tensors)
    (tmp_path / "short.ckpt").write_bytes(safetensors.numpy.save(tensors, metadata=header))
    with pytest.raises(io.BadModelFile, match="missing arrays state.1.0.weight"):
        fastbp.load(tmp_path / "short.ckpt")


def test_checkpoint_settings_that_cannot_work_are_refused(tmp_path):
    X, y = problem()
    net = fastbp.Network(SIZES)
    with pytest.raises(ValueError, match="checkpoint_every"):
        net.fit(X, y, checkpoint=tmp_path / "a.ckpt", checkpoint_every=0)
    with pytest.raises(ValueError, match="optimizer='lbfgs' keeps its memory in scipy"):
        net.fit(X, y, optimizer="lbfgs", checkpoint=tmp_path / "a.ckpt")
    assert not (tmp_path / "a.ckpt").exists()


def test_a_failed_checkpoint_write_keeps_the_last_one(tmp_path, monkeypatch):
    X, y = problem()
    path = tmp_path / "run.ckpt"
    net = fastbp.Network(SIZES, seed=1)
    net.fit(X, y, epochs=1, checkpoint=path)
    kept = path.read_bytes()

    def full_disk(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full_disk)
    with pytest.raises(OSError, match="No space"):
        net.fit(X, y, epochs=1, checkpoint=path)
    assert path.read_bytes() == kept
    assert os.listdir(tmp_path) == ["run.ckpt"]


def test_bad_checkpoint_and_decay_arguments_are_refused_by_name(tmp_path):
    X, y = problem()
    net = fastbp.Network(SIZES)
    with pytest.raises(TypeError, match="checkpoint must be a file path"):
        net.fit(X, y, checkpoint=123)
    with pytest.raises(TypeError, match="resume must be a file path"):
        net.fit(X, y, resume=123)
    with pytest.raises(TypeError, match="decay_on_sum must be True or False"):
        net.fit(X, y, weight_decay=0.1, decay_on_sum="no")


def test_a_checkpoint_with_a_nan_optimizer_state_is_refused_before_the_weights_change(tmp_path):
    X, y = problem()
    path = tmp_path / "run.ckpt"
    bad = fastbp.Network(SIZES, seed=1)
    bad.fit(X, y, optimizer="adam", epochs=1, checkpoint=path)
    bad._state[1][0] = np.nan     # a consistent file (checksums and all) whose moments hold a NaN
    meta = io.read_model(path)[0]
    io.save_network(bad, path, run=meta["run"], history=fastbp.History(loss=[1.0]),
                    rule_steps=meta["optimizer_state"]["rule_steps"])
    net = fastbp.Network(SIZES, seed=7)
    before = net._params.copy()
    with pytest.raises(io.BadModelFile, match="optimizer state holds NaN"):
        net.fit(X, y, optimizer="adam", epochs=2, resume=path)
    np.testing.assert_array_equal(net._params, before)
