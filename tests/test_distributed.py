"""Data-parallel training over MPI (fit(comm=...), fastbp train --distributed), run under
`mpiexec -n 2` and `-n 3` (uneven shards). Each test starts mpiexec with a small script
whose ranks write what they ended with; the assertions are here. Without mpi4py or
mpiexec these tests skip, except under CI, where MPI must be installed: they fail."""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

import fastbp

MPI_TIMEOUT = 120    # seconds for one mpiexec; a hang fails the test instead of the suite


def mpiexec():
    """mpiexec beside this Python (the mpich wheel's), else on PATH."""
    here = Path(sys.executable).parent / "mpiexec"
    found = str(here) if here.exists() else None
    if found is None:
        from shutil import which
        found = which("mpiexec")
    try:
        import mpi4py  # noqa: F401
    except ImportError:
        found = None
    if found is None:
        message = "MPI tests need mpi4py and mpiexec: pip install 'fastbp[mpi]'"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return found


PRELUDE = textwrap.dedent("""
    import json, os, sys
    import numpy as np
    import fastbp
    from mpi4py import MPI
    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    out = sys.argv[1]
    rng = np.random.default_rng(0)
    X_all = rng.standard_normal((301, 10))
    y_all = rng.integers(0, 3, 301)
    bounds = np.linspace(0, 301, size + 1).round().astype(int)
    mine = slice(bounds[rank], bounds[rank + 1])
    X, y = X_all[mine], y_all[mine]

    def save(net, **extra):
        np.save(f"{out}/params{rank}.npy", net._params)
        with open(f"{out}/info{rank}.json", "w") as f:
            json.dump(extra, f)
""")


def run_ranks(tmp_path, n, body, *args, check=True, timeout=MPI_TIMEOUT):
    """Run PRELUDE + body under mpiexec -n n; the CompletedProcess."""
    script = tmp_path / "job.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(fastbp.__file__))]
                                        + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    env.setdefault("FASTBP_NUM_THREADS", "1")
    result = subprocess.run([mpiexec(), "-n", str(n), sys.executable, str(script), str(tmp_path),
                             *map(str, args)], capture_output=True, text=True, env=env,
                            cwd=tmp_path, timeout=timeout)
    if check:
        assert result.returncode == 0, result.stdout + result.stderr
    return result


def results(tmp_path, n):
    params = [np.load(tmp_path / f"params{r}.npy") for r in range(n)]
    info = [json.loads((tmp_path / f"info{r}.json").read_text()) for r in range(n)]
    return params, info


@pytest.mark.parametrize("n", [2, 3])
def test_full_batch_gd_over_shards_is_gd_in_one_process(tmp_path, n):
    run_ranks(tmp_path, n, """
        net = fastbp.Network([10, 16, 3], activation="tanh", dtype="float64", seed=1)
        h = net.fit(X, y, optimizer="gd", lr=0.5, epochs=6, comm=comm)
        save(net, loss=h.loss)
    """)
    params, info = results(tmp_path, n)
    one = fastbp.Network([10, 16, 3], activation="tanh", dtype="float64", seed=1)
    rng = np.random.default_rng(0)
    X_all, y_all = rng.standard_normal((301, 10)), rng.integers(0, 3, 301)
    h = one.fit(X_all, y_all, optimizer="gd", lr=0.5, epochs=6)
    for p in params:
        np.testing.assert_array_equal(p, params[0])        # the same bits on every rank
    np.testing.assert_allclose(params[0], one._params, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(info[0]["loss"], h.loss, rtol=1e-12)


@pytest.mark.parametrize("n", [2, 3])
@pytest.mark.parametrize("rule", ["sgd", "adam", "local sgd"])
def test_every_rank_holds_the_same_bits_and_a_rerun_repeats_them(tmp_path, n, rule):
    body = """
        optimizer = "adam" if sys.argv[2] == "adam" else "sgd"
        extra = {"sync_every": 3} if sys.argv[2] == "local" else {}
        if optimizer == "sgd":
            extra["momentum"] = 0.9
        net = fastbp.Network([10, 16, 3], dtype="float32", seed=1, n_threads=int(sys.argv[3]))
        digests = []
        def each_epoch(p):   # a digest of the weights after each epoch
            import hashlib
            digests.append(hashlib.sha256(net._params.tobytes()).hexdigest())
        h = net.fit(X, y, optimizer=optimizer, lr=0.01, batch_size=16, epochs=4, comm=comm,
                    callback=each_epoch, **extra)
        # and step by step: a global batch of all samples makes each epoch one step
        net.fit(X, y, optimizer=optimizer, lr=0.01, batch_size=301, epochs=5, comm=comm,
                callback=each_epoch, schedule="invscaling", decay=0.1, **extra)
        save(net, loss=h.loss, digests=digests, n_updates=h.n_updates)
    """
    kind = rule.split()[0]
    run_ranks(tmp_path, n, body, kind, 1)
    first, info = results(tmp_path, n)
    for r in range(1, n):
        np.testing.assert_array_equal(first[r], first[0])
        assert info[r]["digests"] == info[0]["digests"] and len(info[0]["digests"]) == 9
        assert info[r]["loss"] == info[0]["loss"]
    assert info[0]["n_updates"] == 4 * -(-301 // 16)
    run_ranks(tmp_path, n, body, kind, 2)     # again, with two threads per rank
    again, _ = results(tmp_path, n)
    np.testing.assert_array_equal(again[0], first[0])


def test_validation_and_early_stopping_are_agreed(tmp_path):
    run_ranks(tmp_path, 3, """
        X_val = np.random.default_rng(rank + 10).standard_normal((20 + 7 * rank, 10))
        y_val = np.random.default_rng(rank + 20).integers(0, 3, len(X_val))
        net = fastbp.Network([10, 16, 3], seed=1)
        h = net.fit(X, y, lr=0.5, batch_size=8, epochs=30, tol=0.5, n_iter_no_change=2,
                    validation_data=(X_val, y_val), comm=comm)
        save(net, val_loss=h.val_loss, val_accuracy=h.val_accuracy, stopped=h.stopped_early,
             epochs=h.epochs)
    """)
    _, info = results(tmp_path, 3)
    assert info[0]["stopped"] and info[0]["epochs"] < 30
    for r in (1, 2):
        assert info[r] == info[0]


def test_bad_data_on_one_rank_stops_every_rank_and_that_rank_names_itself(tmp_path):
    run_ranks(tmp_path, 3, """
        if rank == 1:
            X = X.copy()
            X[4, 2] = np.nan
        net = fastbp.Network([10, 16, 3], seed=1)
        before = net._params.copy()
        try:
            net.fit(X, y, epochs=2, comm=comm)
            save(net, error=None)
        except ValueError as e:
            save(net, error=str(e), kind=type(e).__name__, untouched=bool((net._params == before).all()))
    """)
    _, info = results(tmp_path, 3)
    assert info[1]["error"].startswith("rank 1: X contains NaN or inf")
    for r in (0, 2):
        assert info[r]["error"].startswith("rank 1 cannot train: ValueError: X contains NaN")
    assert all(i["untouched"] for i in info)


def test_ranks_that_differ_in_seed_or_arguments_are_refused(tmp_path):
    run_ranks(tmp_path, 2, """
        errors = []
        for seed, lr in ((rank, 0.1), (1, 0.1 * (rank + 1))):
            try:
                fastbp.Network([10, 16, 3], seed=seed).fit(X, y, lr=lr, epochs=1, comm=comm)
            except ValueError as e:
                errors.append(str(e))
        save(fastbp.Network([10, 16, 3]), errors=errors)
    """)
    _, info = results(tmp_path, 2)
    assert "the initial weights (seed) of rank 1 differ from rank 0's" in info[0]["errors"][0]
    assert "the arguments of rank 1 differ" in info[0]["errors"][1]
    assert info[0] == info[1]


def test_an_exception_on_one_rank_ends_the_job_without_a_hang(tmp_path):
    started = time.monotonic()
    result = run_ranks(tmp_path, 2, """
        def fail_on_rank_1(progress):
            if rank == 1 and progress.epoch == 2:
                raise RuntimeError("the disk is full")
        fastbp.Network([10, 16, 3], seed=1).fit(X, y, epochs=50, comm=comm, callback=fail_on_rank_1)
        save(fastbp.Network([10, 16, 3]))
    """, check=False, timeout=90)
    assert result.returncode != 0
    assert "rank 1 of 2 stopped: RuntimeError: the disk is full; aborting every rank" in result.stderr
    assert not (tmp_path / "params0.npy").exists()
    assert time.monotonic() - started < 90


def test_a_rank_that_dies_ends_the_job_without_a_hang(tmp_path):
    result = run_ranks(tmp_path, 2, """
        import signal
        def die_on_rank_1(progress):
            if rank == 1 and progress.epoch == 2:
                os.kill(os.getpid(), signal.SIGKILL)
        fastbp.Network([10, 16, 3], seed=1).fit(X, y, epochs=50, comm=comm, callback=die_on_rank_1)
        save(fastbp.Network([10, 16, 3]))
    """, check=False, timeout=90)
    assert result.returncode != 0
    assert not (tmp_path / "params0.npy").exists()


EPOCHS = 12
RESUMABLE = """
    path, epochs = sys.argv[2], int(sys.argv[3])
    X_big = np.random.default_rng(5).standard_normal((4000, 30))
    y_big = np.random.default_rng(6).integers(0, 4, 4000)
    b = np.linspace(0, 4000, size + 1).round().astype(int)
    net = fastbp.Network([30, 48, 4], seed=2)
    resume = path if len(sys.argv) > 4 else None
    net.fit(X_big[b[rank]:b[rank + 1]], y_big[b[rank]:b[rank + 1]], optimizer="adam", lr=1e-3,
            batch_size=16, epochs=epochs, comm=comm, checkpoint=path, resume=resume)
    save(net)
"""


def test_a_distributed_run_killed_at_a_random_moment_resumes_to_the_same_bits(tmp_path):
    alone = tmp_path / "alone"
    alone.mkdir()
    run_ranks(alone, 2, RESUMABLE, alone / "run.ckpt", EPOCHS)
    expected, _ = results(alone, 2)
    path = tmp_path / "run.ckpt"
    script = tmp_path / "job.py"
    script.write_text(PRELUDE + textwrap.dedent(RESUMABLE))
    env = dict(os.environ, FASTBP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(fastbp.__file__))]
                                        + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    rng = np.random.default_rng()
    for attempt in range(20):
        job = subprocess.Popen([mpiexec(), "-n", "2", sys.executable, str(script), str(tmp_path),
                                str(path), str(EPOCHS)], env=env, cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + MPI_TIMEOUT
        while not path.exists() and job.poll() is None and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.1))   # an epoch takes ~25 ms here, the run ~0.3 s
        os.killpg(job.pid, signal.SIGKILL)   # mpiexec and both ranks at once
        job.wait()
        if path.exists() and not (tmp_path / "params0.npy").exists():
            break
        path.unlink(missing_ok=True)
        (tmp_path / "params0.npy").unlink(missing_ok=True)
    else:
        pytest.fail("20 runs finished before a kill reached them")
    run_ranks(tmp_path, 2, RESUMABLE, path, EPOCHS, "resume")
    resumed, _ = results(tmp_path, 2)
    for r in range(2):
        np.testing.assert_array_equal(resumed[r], expected[0])


def test_train_distributed_shards_mnist_like_data_and_only_rank_0_speaks(tmp_path):
    from test_cli import N_TEST, N_TRAIN, synthetic_digits, write_idx
    digits = tmp_path / "digits"
    digits.mkdir()
    for stem, n, seed in (("train", N_TRAIN, 1), ("t10k", N_TEST, 2)):
        images, labels = synthetic_digits(n, seed)
        write_idx(digits / f"{stem}-images-idx3-ubyte.gz", images, True)
        write_idx(digits / f"{stem}-labels-idx1-ubyte.gz", labels, True)
    env = dict(os.environ, FASTBP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(fastbp.__file__))]
                                        + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    model = tmp_path / "model.fbp"
    result = subprocess.run([mpiexec(), "-n", "2", sys.executable, "-m", "fastbp", "train",
                             "--distributed", "--data", str(digits), "--no-download",
                             "--layers", "784,32,10", "--epochs", "3", "--save", str(model)],
                            capture_output=True, text=True, env=env, cwd=tmp_path,
                            timeout=MPI_TIMEOUT)
    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    assert out.count("fastbp 0.") == 1 and "over 2 MPI ranks" in out
    assert out.count("test accuracy") == 1
    assert float(out.split("test accuracy ")[1].split()[0]) > 0.8
    assert fastbp.load(model).layer_sizes == (784, 32, 10)


def test_import_fastbp_and_training_without_comm_never_import_mpi4py(tmp_path):
    code = ("import sys, numpy as np, fastbp\n"
            "net = fastbp.Network([3, 4, 2], seed=0)\n"
            "net.fit(np.zeros((8, 3)), np.arange(8) % 2, epochs=1)\n"
            "assert 'mpi4py' not in sys.modules, 'mpi4py was imported'\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(fastbp.__file__))]
                                        + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    subprocess.run([sys.executable, "-c", code], check=True, env=env, cwd=tmp_path)


def test_the_scaling_model_plots_from_measurements(tmp_path):
    pytest.importorskip("matplotlib")
    import doctest
    import importlib.util
    from conftest import REPO_ROOT
    spec = importlib.util.spec_from_file_location("distributed_bench",
                                                  REPO_ROOT / "benchmarks" / "distributed.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    assert doctest.testmod(bench).failed == 0
    jobs = [{"batch": b, "ranks": r, "threads": 1, "distributed": d, "sync_every": None,
             "epoch_seconds": [s]}
            for b, r, d, s in ((32, 1, False, 1.0), (32, 1, True, 1.5))]
    costs = {net: [(rows, 1e-5 * rows + 2e-5) for rows in (1, 32, 512, 2048)] for net in bench.NETS}
    measured = tmp_path / "m.json"
    measured.write_text(json.dumps({"jobs": jobs, "step_costs": costs}))
    assert bench.overhead_of(json.loads(measured.read_text())) == pytest.approx(0.5 / 1875)
    bench.main(["--plot", str(tmp_path / "model.png"), "--from", str(measured)])
    assert (tmp_path / "model.png").stat().st_size > 10000
    # more nodes never buy less communication: the modelled step grows past the compute
    assert bench.step_time(0.0, 0.0, 8e5, 64, 1.25e9) > bench.step_time(0.0, 0.0, 8e5, 2, 1.25e9)


def test_local_sgd_ranks_agree_after_each_fit_so_fit_can_be_called_again(tmp_path):
    run_ranks(tmp_path, 3, """
        net = fastbp.Network([10, 16, 3], seed=1)
        for _ in range(3):   # each call checks that the ranks start alike
            h = net.fit(X, y, optimizer="adam", lr=0.01, batch_size=16, epochs=1, sync_every=4,
                        comm=comm)
        save(net, loss=h.loss)
    """)
    params, info = results(tmp_path, 3)
    for r in (1, 2):
        np.testing.assert_array_equal(params[r], params[0])


def test_an_overflow_mid_epoch_leaves_the_weights_of_the_step_before(monkeypatch):
    mpiexec()   # (mpi4py present)
    from mpi4py import MPI
    from fastbp import _core
    rng = np.random.default_rng(3)
    X, y = rng.standard_normal((792, 10)), rng.integers(0, 3, 792)   # 99 steps of 8
    settings = dict(optimizer="adam", lr=0.01, batch_size=8, shuffle=False)
    real, calls = _core.update_raw, []

    def overflow_at_step_169(*args, **kwargs):   # two calls a step: weights, then biases
        calls.append(1)
        bad = real(*args, **kwargs)
        return 1 if len(calls) == 2 * 169 else bad

    net = fastbp.Network([10, 16, 3], seed=1)
    monkeypatch.setattr(_core, "update_raw", overflow_at_step_169)
    with pytest.raises(FloatingPointError, match="at update 169"):
        net.fit(X, y, epochs=3, comm=MPI.COMM_SELF, **settings)
    monkeypatch.setattr(_core, "update_raw", real)
    assert net.n_updates_ == 168
    expected = fastbp.Network([10, 16, 3], seed=1)
    expected.fit(X, y, epochs=1, comm=MPI.COMM_SELF, **settings)           # 99 steps
    expected.fit(X[:69 * 8], y[:69 * 8], epochs=1, comm=MPI.COMM_SELF, **settings)   # 69 more
    np.testing.assert_array_equal(net._params, expected._params)
    np.testing.assert_array_equal(net._state, expected._state)


def test_an_overflowing_update_stops_every_rank_at_the_last_finite_step(tmp_path):
    run_ranks(tmp_path, 2, """
        Xh = X * 1e3
        net = fastbp.Network([10, 16, 3], seed=1)
        steps = []
        try:
            net.fit(Xh, y, lr=1e30, batch_size=8, epochs=3, comm=comm)
        except FloatingPointError as e:
            steps.append(str(e))
        save(net, error=steps, n_updates=net.n_updates_)
    """)
    params, info = results(tmp_path, 2)
    assert "overflowed the weights" in info[0]["error"][0] or "NaN or inf" in info[0]["error"][0]
    assert info[0] == info[1]
    np.testing.assert_array_equal(params[0], params[1])
    assert np.isfinite(params[0]).all()


def test_the_script_in_docs_distributed_md_runs_under_mpiexec(tmp_path):
    import re
    from conftest import REPO_ROOT, mnist_dir
    data = mnist_dir()
    text = (REPO_ROOT / "docs" / "distributed.md").read_text()
    code = re.findall(r"```python\n(.*?)```", text, re.S)[0]
    assert "comm=comm" in code and "epochs=5" in code
    (tmp_path / "train.py").write_text(code.replace("epochs=5", "epochs=1"))
    env = dict(os.environ, FASTBP_DATA=data)
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(fastbp.__file__))]
                                        + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    subprocess.run([mpiexec(), "-n", "2", sys.executable, "train.py"], check=True, env=env,
                   cwd=tmp_path, timeout=MPI_TIMEOUT)
    net = fastbp.load(tmp_path / "mnist.fbp")
    from fastbp.datasets import load_mnist
    X, y = load_mnist(data, "test")
    assert net.evaluate(X / np.float32(255), y)["accuracy"] > 0.9


@pytest.mark.parametrize("only_rank_0", ["checkpoint", "resume"])
def test_checkpoint_or_resume_on_one_rank_only_is_refused_on_every_rank(tmp_path, only_rank_0):
    run_ranks(tmp_path, 2, """
        path = os.path.join(out, "run.ckpt")
        fastbp.Network([10, 16, 3], seed=1).fit(X, y, epochs=1, comm=comm, checkpoint=path)
        extra = {} if rank else {sys.argv[2]: path}
        try:
            fastbp.Network([10, 16, 3], seed=1).fit(X, y, epochs=2, comm=comm, **extra)
            save(fastbp.Network([10, 16, 3]), error=None)
        except ValueError as e:
            save(fastbp.Network([10, 16, 3]), error=str(e))
    """, only_rank_0)
    _, info = results(tmp_path, 2)
    for r in range(2):
        assert "the arguments of rank 1 differ from rank 0's" in info[r]["error"]


def test_a_checkpoint_rank_0_cannot_write_stops_every_rank_alike(tmp_path):
    result = run_ranks(tmp_path, 2, """
        blocker = os.path.join(out, "a-file")
        open(blocker, "w").close()
        try:   # a directory that is a file: the write fails on rank 0
            fastbp.Network([10, 16, 3], seed=1).fit(X, y, epochs=2, comm=comm,
                                                    checkpoint=os.path.join(blocker, "run.ckpt"))
            save(fastbp.Network([10, 16, 3]), error=None)
        except Exception as e:
            save(fastbp.Network([10, 16, 3]), error=f"{type(e).__name__}: {e}")
    """)
    _, info = results(tmp_path, 2)
    assert info[0]["error"].startswith("NotADirectoryError: rank 0:")
    assert info[1]["error"].startswith("RankError: rank 0 cannot train: NotADirectoryError")
    assert "aborting" not in result.stderr


def test_local_sgd_that_diverges_leaves_every_rank_the_last_average(tmp_path):
    run_ranks(tmp_path, 2, """
        Xh = X * (1e30 if rank == 1 else 1.0)     # rank 1's steps overflow between averages
        net = fastbp.Network([10, 16, 3], seed=1)
        try:
            net.fit(Xh, y, lr=0.1, batch_size=16, epochs=2, sync_every=4, comm=comm)
            error = None
        except FloatingPointError as e:
            error = str(e)
        save(net, error=error, n_updates=net.n_updates_)
    """)
    params, info = results(tmp_path, 2)
    assert "the weights of the last average" in info[0]["error"]
    np.testing.assert_array_equal(params[0], params[1])
    assert np.isfinite(params[0]).all() and info[0] == info[1]


def test_a_distributed_resume_with_other_data_on_one_rank_is_refused(tmp_path):
    run_ranks(tmp_path, 2, """
        path = os.path.join(out, "run.ckpt")
        fastbp.Network([10, 16, 3], seed=1).fit(X, y, epochs=1, comm=comm, checkpoint=path)
        X2 = X.copy()
        if rank == 1:
            X2[0, 0] += 1.0
        try:
            fastbp.Network([10, 16, 3], seed=1).fit(X2, y, epochs=2, comm=comm, resume=path)
            save(fastbp.Network([10, 16, 3]), error=None)
        except ValueError as e:
            save(fastbp.Network([10, 16, 3]), error=str(e))
    """)
    _, info = results(tmp_path, 2)
    assert "its data differ on rank 1 in X" in info[0]["error"]
    assert "its data differ on rank 1 in X" in info[1]["error"]


def test_fit_refuses_what_is_not_a_communicator():
    net = fastbp.Network([3, 4, 2])
    with pytest.raises(TypeError, match="comm must be an mpi4py communicator"):
        net.fit(np.zeros((4, 3)), [0, 1, 0, 1], comm=1)
