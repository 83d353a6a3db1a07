"""One Network shared by Python threads, and processes forked from one that ran threads.

The contract (README "Threads and processes"): inference - predict, predict_proba,
evaluate, gradients - from any number of threads gives exactly the single-threaded
answers and runs concurrently (each C call has a work space of its own); one training
call at a time, a second from another thread refused with RuntimeError; inference
during training sees the weights of a complete update and does not disturb training.
A child forked after fastbp ran threads trains and predicts in one thread instead of
waiting for ever on the OpenMP pool it inherited without its threads."""
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import fastbp
from fastbp import _core

N_THREADS = 6


def run_in_threads(fn, n=N_THREADS):
    """fn(i) in n threads started together; their results, or the first exception."""
    start = threading.Barrier(n)
    results, errors = [None] * n, []

    def body(i):
        try:
            start.wait()
            results[i] = fn(i)
        except BaseException as e:  # noqa: BLE001 - reported to the test below
            errors.append(e)

    threads = [threading.Thread(target=body, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=300)
        assert not t.is_alive(), "a thread did not finish"
    if errors:
        raise errors[0]
    return results


def problem(sizes=(784, 96, 10), n=700, dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    X = rng.random((n, sizes[0])).astype(dtype)
    X[X < 0.5] = 0
    return X, rng.integers(0, sizes[-1], n)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_inference_from_many_threads_gives_the_single_threaded_answers(dtype):
    X, y = problem(dtype=dtype)
    net = fastbp.Network([784, 96, 10], dtype=dtype, seed=1, n_threads=2)
    # Batch sizes through every path: small-batch rows, packed GEMM, several chunks.
    slices = [slice(0, 1), slice(3, 6), slice(10, 42), slice(0, 300), slice(0, 700)]
    expected = [(net.predict_proba(X[s]), net.evaluate(X[s], y[s]), net.gradients(X[s], y[s]))
                for s in slices]

    def calls(i):
        for r in range(8):
            k = (i + r) % len(slices)
            s = slices[k]
            np.testing.assert_array_equal(net.predict_proba(X[s]), expected[k][0])
            assert net.evaluate(X[s], y[s]) == expected[k][1]
            for (dW, db), (eW, eb) in zip(net.gradients(X[s], y[s]), expected[k][2]):
                np.testing.assert_array_equal(dW, eW)
                np.testing.assert_array_equal(db, eb)
        return True

    assert all(run_in_threads(calls))


def test_inference_during_fit_sees_whole_updates_and_leaves_training_as_it_would_be():
    X, y = problem(n=2000)
    alone = fastbp.Network([784, 96, 10], seed=2, n_threads=2)
    alone.fit(X, y, epochs=2, batch_size=16, momentum=0.9)
    shared = fastbp.Network([784, 96, 10], seed=2, n_threads=2)
    done = threading.Event()
    seen = []

    def infer():
        while not done.is_set():
            p = shared.predict_proba(X[:50])
            seen.append(bool(np.all(p >= 0)) and bool(np.allclose(p.sum(axis=1), 1, atol=1e-5)))
            shared.evaluate(X[:8], y[:8])

    readers = [threading.Thread(target=infer) for _ in range(3)]
    for t in readers:
        t.start()
    try:
        shared.fit(X, y, epochs=2, batch_size=16, momentum=0.9)
    finally:
        done.set()
        for t in readers:
            t.join(timeout=60)
    assert seen and all(seen)
    for a, b in zip(shared.weights + shared.biases, alone.weights + alone.biases):
        np.testing.assert_array_equal(a, b)


def test_every_prediction_during_training_comes_from_the_weights_of_one_complete_update():
    X, y = problem(sizes=(784, 256, 10), n=256)
    net = fastbp.Network([784, 256, 10], seed=4, n_threads=2)
    states = [[a.copy() for a in net.weights + net.biases]]
    done, outputs = threading.Event(), []

    def infer():
        while not done.is_set():
            outputs.append(net.predict_proba(X))

    reader = threading.Thread(target=infer)
    reader.start()
    try:
        for _ in range(40):
            net.train_step(X[:64], y[:64], lr=0.5)
            states.append([a.copy() for a in net.weights + net.biases])
    finally:
        done.set()
        reader.join(timeout=60)
    check = fastbp.Network([784, 256, 10], seed=4, n_threads=2)
    known = []
    for state in states:
        check.set_weights(state[:2], state[2:])
        known.append(check.predict_proba(X))
    assert len(outputs) > 5
    for out in outputs:
        assert any(np.array_equal(out, k) for k in known), "a prediction mixed two updates"


def test_a_second_training_call_from_another_thread_is_refused_and_the_first_is_intact():
    X, y = problem(n=3000)
    alone = fastbp.Network([784, 96, 10], seed=3, n_threads=1)
    alone.fit(X, y, epochs=3, batch_size=8)
    net = fastbp.Network([784, 96, 10], seed=3, n_threads=1)
    started, refused = threading.Event(), []

    def callback(progress):
        started.set()

    def second():
        started.wait(timeout=60)
        for call in (lambda: net.fit(X, y, epochs=1), lambda: net.train_step(X[:4], y[:4])):
            with pytest.raises(RuntimeError, match="already being trained") as info:
                call()
            refused.append(str(info.value))

    t = threading.Thread(target=second)
    t.start()
    net.fit(X, y, epochs=3, batch_size=8, callback=callback)
    t.join(timeout=60)
    assert len(refused) == 2 and "train_step cannot run" in refused[1]
    for a, b in zip(net.weights + net.biases, alone.weights + alone.biases):
        np.testing.assert_array_equal(a, b)
    net.train_step(X[:4], y[:4])   # free again once fit returned


def test_a_callback_that_trains_its_own_network_is_refused():
    X, y = problem(n=64)
    net = fastbp.Network([784, 16, 10], seed=0)
    with pytest.raises(RuntimeError, match="whose callback this is"):
        net.fit(X, y, epochs=1, callback=lambda p: net.train_step(X[:2], y[:2]))
    net.fit(X, y, epochs=1)


def test_the_lock_lets_readers_share_and_keeps_writers_alone():
    lock = _core.ParameterLock()
    order = []
    lock.read_acquire()
    reader = threading.Thread(target=lambda: (lock.read_acquire(), order.append("reader 2"),
                                              lock.read_release()))
    reader.start()
    reader.join(timeout=10)
    assert order == ["reader 2"]          # a second reader did not wait for the first
    writer = threading.Thread(target=lambda: (lock.write_acquire(), order.append("writer"),
                                              lock.write_release()))
    writer.start()
    writer.join(timeout=0.2)
    assert writer.is_alive() and order == ["reader 2"]   # the writer waits for the reader
    late = threading.Thread(target=lambda: (lock.read_acquire(), order.append("late reader"),
                                            lock.read_release()))
    late.start()
    late.join(timeout=0.2)
    assert late.is_alive()                 # a waiting writer goes before new readers
    lock.read_release()
    writer.join(timeout=10)
    late.join(timeout=10)
    assert order == ["reader 2", "writer", "late reader"]


FORK_CHILD = textwrap.dedent("""
    import concurrent.futures, multiprocessing, sys
    import numpy as np, fastbp
    from fastbp import _core
    rng = np.random.default_rng(0)
    X = rng.random((3000, 784), dtype=np.float32); y = rng.integers(0, 10, 3000)

    def train():
        net = fastbp.Network([784, 256, 10], seed=0, n_threads=2)
        net.fit(X, y, epochs=1, batch_size=256)
        return net.predict_proba(X[:100]), _core.threads_usable()

    expected, usable = train()          # the parent runs OpenMP threads first
    assert usable
    ctx = multiprocessing.get_context("fork")
    with concurrent.futures.ProcessPoolExecutor(2, mp_context=ctx) as pool:
        results = [f.result() for f in [pool.submit(train) for _ in range(2)]]
    q = ctx.Queue()
    p = ctx.Process(target=lambda: q.put(train()))
    p.start()
    results.append(q.get())
    p.join()
    for proba, child_usable in results:
        assert not child_usable         # one thread in the child, by itself
        assert np.array_equal(proba, expected)   # the same bits: threads do not change results
    print("children trained")
""")


def test_a_child_forked_after_threads_ran_trains_and_predicts(tmp_path):
    result = subprocess.run([sys.executable, "-c", FORK_CHILD], capture_output=True, text=True,
                            timeout=120, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "children trained" in result.stdout


def test_predictions_get_their_turn_within_a_long_fit():
    # fit asks for the weights again right after each ~50 ms of updates; a release must
    # hand the turn to the readers that waited, or they wait until the fit ends.
    X, y = problem(n=60_000)
    net = fastbp.Network([784, 96, 10], seed=5, n_threads=1)
    fit_done, answered_during_fit = threading.Event(), []

    def reader():
        for _ in range(5):
            net.predict_proba(X[:10])
            answered_during_fit.append(not fit_done.is_set())

    t = threading.Thread(target=reader)
    fit_thread = threading.Thread(target=lambda: (net.fit(X, y, epochs=2, batch_size=1),
                                                  fit_done.set()))
    fit_thread.start()
    while net._core is None or net._core.max_batch != 1:   # the fit's C view: it is under way
        time.sleep(0.001)
    t.start()
    t.join(timeout=300)
    fit_thread.join(timeout=300)
    assert answered_during_fit == [True] * 5, "predictions waited for the whole fit"


def test_an_interrupted_wait_for_the_weights_leaves_the_network_usable(python_sigint):
    import signal
    lock = _core.ParameterLock()
    lock.write_acquire()            # a training update under way
    main = threading.main_thread().ident

    interrupted = threading.Event()

    def interrupt_soon():           # Ctrl-C: a real SIGINT wakes the waiting acquire
        time.sleep(0.2)
        signal.pthread_kill(main, signal.SIGINT)
        if not interrupted.wait(10):    # lost: end the wait, so the test fails, not hangs
            lock.write_release()

    threading.Thread(target=interrupt_soon).start()
    with pytest.raises(KeyboardInterrupt):
        lock.read_acquire()         # waits, and is interrupted
    interrupted.set()
    lock.write_release()
    with lock.reading:              # nobody is left counted or waiting
        pass
    lock.write_acquire()
    lock.write_release()
