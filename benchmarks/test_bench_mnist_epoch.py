"""One epoch of real MNIST training (60,000 samples, 784-256-10, shuffled): fastbp
``fit`` (data gather included) against PyTorch's Python loop over pre-built batches.

    FASTBP_DATA=/work/shared/data/mnist pytest benchmarks/test_bench_mnist_epoch.py \
        --benchmark-group-by=group

PyTorch at batch 1 takes about 20-40 s an epoch, so by default both tools are timed on
the same 5,000 updates (the first 5,000 batches of the epoch's shuffled order: the test
ids and extra_info say so, with the extrapolated epoch time), and the ratio of the two
rows is the ratio per update; FASTBP_BENCH_TORCH_UPDATES=60000 times whole epochs.
"""
import os

import numpy as np
import pytest

from fastbp import Network, bench

BATCHES = (1, 32)


def torch_updates_per_round():
    value = os.environ.get("FASTBP_BENCH_TORCH_UPDATES", "5000")
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"FASTBP_BENCH_TORCH_UPDATES must be an integer >= 1, got {value!r}")
    return int(value)


def timed_updates(n_samples, batch):
    """(updates in an epoch, updates each tool is timed on): the same for both tools."""
    n_updates = -(-n_samples // batch)
    return n_updates, min(n_updates, torch_updates_per_round())


@pytest.mark.parametrize("batch", BATCHES)
def test_fastbp_epoch(benchmark, mnist_train, batch, n_threads):
    X, y = mnist_train
    n_updates, measured = timed_updates(len(X), batch)
    rng = np.random.default_rng(0)
    net = Network(bench.MNIST_NET, seed=0)
    extra = {"n_threads": n_threads}

    def shuffled_samples():
        # As PyTorch's below: `measured` batches' worth of samples, freshly shuffled each
        # round (fit shuffles them again, gathering inside C as it does on a whole epoch).
        order = rng.permutation(len(X))[:measured * batch]
        return (X[order], y[order]), {}

    benchmark.group = f"mnist epoch batch {batch}"
    if measured < n_updates:
        benchmark.name += f" [{measured} of {n_updates} updates timed]"
    benchmark.pedantic(lambda Xs, ys: net.fit(Xs, ys, epochs=1, batch_size=batch, lr=bench.MNIST_LR,
                                              shuffle=True, **extra),
                       setup=shuffled_samples, rounds=3, iterations=1, warmup_rounds=0)
    benchmark.extra_info.update(samples=len(X), updates=n_updates, updates_timed=measured,
                                epoch_s_extrapolated=benchmark.stats.stats.median * n_updates / measured,
                                loss_after=net.evaluate(X[:10000], y[:10000])["loss"])


@pytest.mark.parametrize("batch", BATCHES)
def test_torch_epoch(benchmark, mnist_train, batch):
    torch = pytest.importorskip("torch")
    X, y = mnist_train
    n_updates, measured = timed_updates(len(X), batch)
    step = bench.torch_update_fn(bench.torch_model(Network(bench.MNIST_NET, seed=0)), bench.MNIST_LR)
    rng = np.random.default_rng(0)

    def shuffled_batches():
        # Outside the clock: PyTorch gets its batches pre-built, freshly shuffled each round.
        order = rng.permutation(len(X))[:measured * batch]
        Xs, ys = torch.from_numpy(X[order]), torch.from_numpy(y[order].astype(np.int64))
        return ([(Xs[i:i + batch], ys[i:i + batch]) for i in range(0, len(order), batch)],), {}

    def loop(batches):
        for Xb, yb in batches:
            step(Xb, yb)

    benchmark.group = f"mnist epoch batch {batch}"
    if measured < n_updates:
        benchmark.name += f" [{measured} of {n_updates} updates timed]"
    benchmark.pedantic(loop, setup=shuffled_batches, rounds=3, iterations=1)
    benchmark.extra_info.update(samples=len(X), updates=n_updates, updates_timed=measured,
                                epoch_s_extrapolated=benchmark.stats.stats.median * n_updates / measured)
