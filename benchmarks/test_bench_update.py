"""Per-update time of fastbp, the NumPy reference and PyTorch (when importable) over
the nets x batches of issue 3, dense random float32 inputs.

    pytest benchmarks/test_bench_update.py --benchmark-group-by=group
    pytest benchmarks/test_bench_update.py -k "784-256-10 and b32" --benchmark-group-by=group

One group per (net, batch), so the tools sit side by side. One update = forward +
backward + SGD step on one of a few pre-built batches (see `fastbp.bench.make_update`);
the saved JSON (--benchmark-json) carries samples/s and GFLOP/s in extra_info. For the
interleaved one-run comparison use `python benchmarks/compare.py` instead.
"""
import pytest

from fastbp import Network, bench

CONFIGS = [(sizes, batch, tool) for sizes in bench.DEFAULT_NETS for batch in bench.DEFAULT_BATCHES
           for tool in bench.TOOLS]   # the tools of one config run back to back


@pytest.mark.parametrize("sizes, batch, tool", CONFIGS,
                         ids=[f"{bench.net_name(s)}-b{b}-{t}" for s, b, t in CONFIGS])
def test_update(benchmark, sizes, batch, tool, n_threads, add_update_info):
    if tool == "torch":
        pytest.importorskip("torch")
    update = bench.make_update(tool, Network(sizes, seed=0), bench.make_batches(sizes, batch),
                               n_threads=n_threads)
    update()    # the first call allocates work buffers (and, in PyTorch, gradients)
    benchmark.group = f"update {bench.net_name(sizes)} batch {batch}"
    benchmark(update)
    add_update_info(benchmark, sizes, batch)
