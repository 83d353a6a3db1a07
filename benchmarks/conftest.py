"""Shared fixtures of the pytest-benchmark suites.

    pytest benchmarks/ --benchmark-group-by=group     # tools side by side per config

Every tool gets the same number of threads: $FASTBP_BENCH_THREADS, default all CPUs
(PyTorch via torch.set_num_threads, numpy's BLAS via threadpoolctl when installed,
fastbp via n_threads when its train_step takes it). The per-update setup is the one
`fastbp.bench` (`python benchmarks/compare.py`) uses, so both measure the same thing.
"""
import os

import pytest

from fastbp import bench
from fastbp.datasets import DataNotFoundError


def bench_threads():
    value = os.environ.get("FASTBP_BENCH_THREADS", str(os.cpu_count() or 1))
    if not value.isdigit() or int(value) < 1:
        raise ValueError(f"FASTBP_BENCH_THREADS must be an integer >= 1, got {value!r}")
    return int(value)


@pytest.fixture(scope="session")
def n_threads():
    return bench_threads()


@pytest.fixture(scope="session", autouse=True)
def same_threads_for_every_tool(n_threads):
    torch = bench.import_torch()
    if torch is not None:
        torch.set_num_threads(n_threads)
    with bench._BlasThreads(n_threads):
        yield


@pytest.fixture(scope="session")
def mnist_train():
    """MNIST's 60,000 training samples as float32 in [0, 1] and int32 labels. Missing
    data fails the benchmark under CI and skips it elsewhere."""
    try:
        return bench.load_mnist_float32()
    except DataNotFoundError as e:
        message = f"{e} (e.g. FASTBP_DATA=/work/shared/data/mnist)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)


@pytest.fixture
def add_update_info():
    """add_update_info(benchmark, sizes, batch): flops, samples/s and GFLOP/s of the
    median update into the benchmark's extra_info (the saved JSON)."""
    def add(benchmark, sizes, batch):
        if benchmark.stats is None:   # --benchmark-disable: run once, nothing timed
            return
        flops = bench.update_flops(sizes, batch)
        median = benchmark.stats.stats.median
        benchmark.extra_info.update(net=bench.net_name(sizes), batch=batch, flops=flops,
                                    samples_per_s=batch / median, gflops=flops / median / 1e9,
                                    flop_convention=bench.FLOP_CONVENTION)
    return add
