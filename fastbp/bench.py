"""Per-update benchmarks: fastbp against the NumPy reference and PyTorch, in one run.

`python benchmarks/compare.py` and `fastbp bench` both call `main`. One "update" is
forward + backward + SGD step (or Adam step) on one pre-built batch of dense random
float32 inputs:

- fastbp: ``net.train_step(X, y, lr=...)`` (Adam: ``optimizer="adam"``);
- NumPy: ``fastbp.reference.ReferenceNetwork.train_step`` (Adam: ``adam_step``);
- PyTorch (eager): ``nn.Sequential`` of Linear/ReLU, ``CrossEntropyLoss``,
  ``torch.optim.SGD`` (Adam: ``torch.optim.Adam``, its default implementation) with
  ``zero_grad(set_to_none=True)``, on pre-built tensors.

All start from the same weights. For each (net, batch) the tools, with each optimizer,
take turns in rounds (the order rotating every round) so that a noisy neighbour on a
shared machine slows all of them alike; each reported time is the median over rounds
of the mean time per update within a round. The Adam rows come from the same rounds
as the SGD rows, so their ratio to fastbp's SGD step is measured too.

``--mnist`` adds one epoch of real MNIST training (fastbp ``fit`` against PyTorch's
Python loop over pre-built batches).

>>> from fastbp.bench import main
>>> main(["--quick", "--nets", "20-16-4", "--batches", "1", "--tools", "fastbp,numpy"])  # doctest: +SKIP
"""
import argparse
import gc
import itertools
import json
import os
import platform
import statistics
import sys
import time

import numpy as np

from . import _core
from ._platform import cpu_name, numpy_blas
from ._version import __version__
from .network import Network
from .reference import ReferenceNetwork

DEFAULT_NETS = ((784, 128, 10), (784, 256, 10), (784, 1024, 1024, 10))
DEFAULT_BATCHES = (1, 8, 32, 128, 512)
QUICK_NETS = ((784, 256, 10),)
QUICK_BATCHES = (1, 32)
TOOLS = ("fastbp", "numpy", "torch")
TOOL_LABELS = {"fastbp": "fastbp", "numpy": "NumPy", "torch": "PyTorch"}
OPTIMIZERS = ("sgd", "adam")
OPTIMIZER_LABELS = {"sgd": "SGD", "adam": "Adam"}
LR = 1e-3                # small enough that no tool diverges over thousands of updates
                         # (and Adam's default)
N_PREBUILT = 4           # distinct batches cycled through, so no tool times one cached batch
ROUND_PAUSE = 0.25       # seconds of rest before each timed round (see measure_interleaved)
SGEMM_SHAPES = ((512, 784, 256), (2048, 2048, 2048))   # (m, k, n): A (m, k) @ B (k, n)
QUICK_SGEMM_SHAPES = ((512, 784, 256),)
BLAS_ENV = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS",
            "OMP_NUM_THREADS", "MKL_NUM_THREADS", "FASTBP_NUM_THREADS", "FASTBP_CPU")
FLOP_CONVENTION = (
    "4·B·Σ fan_in·fan_out flops per update: forward 2·B·n_in·n_out and weight gradient "
    "2·B·n_in·n_out per layer; the input layer computes no delta (fastbp, the NumPy "
    "reference and PyTorch all skip it, X needing no gradient). The deltas of the later "
    "layers (2·B·n_in·n_out each) are not counted, which undercounts deep nets: "
    "784-1024-1024-10 does 1.28x the counted work, the one-hidden-layer nets < 1.01x.")
MNIST_SAMPLES = 60000
MNIST_NET = (784, 256, 10)
MNIST_LR = 0.01
NOT_INSTALLED = "not installed"
SKIPPED = "-"


# -- what is measured -----------------------------------------------------------------
def parse_net(text):
    """Layer sizes from "784-256-10".

    >>> parse_net("784-256-10")
    (784, 256, 10)
    """
    parts = str(text).strip().split("-")
    try:
        sizes = tuple(int(p) for p in parts)
    except ValueError:
        sizes = ()
    if len(sizes) < 2 or min(sizes) < 1:
        raise ValueError(f"a net is written as layer sizes joined by '-', e.g. 784-256-10; got {text!r}")
    return sizes


def net_name(sizes):
    return "-".join(str(s) for s in sizes)


def update_flops(sizes, batch):
    """Flops of one update under FLOP_CONVENTION: 4·B·Σ fan_in·fan_out.

    >>> update_flops((784, 256, 10), 1)
    813056
    """
    return 4 * batch * sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))


def make_batches(sizes, batch, n_batches=N_PREBUILT, seed=0):
    """Pre-built (X, y) pairs: dense uniform [0, 1) float32 inputs (C-contiguous) and
    int32 labels in [0, sizes[-1]).

    >>> X, y = make_batches((4, 3), 2)[0]
    >>> X.shape, X.dtype.name, y.shape
    ((2, 4), 'float32', (2,))
    """
    rng = np.random.default_rng(seed)
    return [(rng.random((batch, sizes[0]), dtype=np.float32),
             rng.integers(0, sizes[-1], batch).astype(np.int32)) for _ in range(n_batches)]


def import_torch():
    """The torch module, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    return torch


def torch_model(net):
    """A PyTorch nn.Sequential with a copy of ``net``'s weights, same dtype.

    >>> [type(m).__name__ for m in torch_model(Network([4, 8, 3], seed=0))]  # doctest: +SKIP
    ['Linear', 'ReLU', 'Linear']
    """
    torch = import_torch()
    if torch is None:
        raise ImportError("torch_model needs PyTorch: pip install torch")
    activation = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "sigmoid": torch.nn.Sigmoid,
                  "identity": torch.nn.Identity}
    dtype = torch.float64 if net.dtype == np.float64 else torch.float32
    layers = []
    for l, (W, b) in enumerate(zip(net.weights, net.biases)):
        linear = torch.nn.Linear(W.shape[0], W.shape[1], dtype=dtype)
        with torch.no_grad():   # torch keeps W as (n_out, n_in), fastbp as (n_in, n_out)
            linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(W.T)))
            linear.bias.copy_(torch.from_numpy(b))
        layers.append(linear)
        if l < net.n_layers - 1:
            layers.append(activation[net.activations[l]]())
    return torch.nn.Sequential(*layers)


def torch_update_fn(model, lr, optimizer="sgd"):
    """One eager PyTorch update of ``model`` on (X, y) tensors, by torch.optim.SGD or
    (optimizer="adam") torch.optim.Adam with its defaults; returns the loss tensor."""
    torch = import_torch()
    loss_fn = torch.nn.CrossEntropyLoss()
    if optimizer == "adam":
        optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    else:
        optimizer = torch.optim.SGD(model.parameters(), lr=lr)

    def update(X, y):
        optimizer.zero_grad(set_to_none=True)
        loss = loss_fn(model(X), y)
        loss.backward()
        optimizer.step()
        return loss
    return update


def make_update(tool, net, batches, lr=LR, n_threads=None, optimizer="sgd"):
    """A no-argument function doing one update of ``tool`` ("fastbp", "numpy" or
    "torch") with ``optimizer`` ("sgd" or "adam", PyTorch's defaults) on the next of
    ``batches``, starting from ``net``'s weights (fastbp trains ``net`` itself; the
    others train copies).

    >>> net = Network([4, 8, 3], seed=0)
    >>> update = make_update("numpy", net, make_batches((4, 8, 3), 2), optimizer="adam")
    >>> update()
    """
    if optimizer not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {OPTIMIZERS}, got {optimizer!r}")
    if tool == "fastbp":
        extra = {"n_threads": n_threads} if n_threads else {}
        if optimizer == "adam":
            extra["optimizer"] = "adam"
        cycle = itertools.cycle(batches)

        def update():
            X, y = next(cycle)
            net.train_step(X, y, lr=lr, **extra)
        return update
    if tool == "numpy":
        ref = ReferenceNetwork(net.weights, net.biases, net.activations, net.loss)
        ref_step = ref.adam_step if optimizer == "adam" else ref.train_step
        cycle = itertools.cycle(batches)

        def update():
            X, y = next(cycle)
            ref_step(X, y, lr)
        return update
    if tool == "torch":
        torch = import_torch()
        if torch is None:
            raise ImportError("the torch benchmark needs PyTorch: pip install torch")
        step = torch_update_fn(torch_model(net), lr, optimizer)
        cycle = itertools.cycle([(torch.from_numpy(X), torch.from_numpy(y.astype(np.int64)))
                                 for X, y in batches])

        def update():
            step(*next(cycle))
        return update
    raise ValueError(f"tool must be one of {TOOLS}, got {tool!r}")


# -- timing -----------------------------------------------------------------------------
def time_per_call(fn, n):
    """Mean seconds per call over ``n`` back-to-back calls, the garbage collector off
    (as timeit does) so that a collection triggered by one tool is not billed to another."""
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        start = time.perf_counter()
        for _ in range(n):
            fn()
        return (time.perf_counter() - start) / n
    finally:
        if gc_was_enabled:
            gc.enable()


def calls_per_round(fn, seconds):
    """How many calls of ``fn`` take about ``seconds``; the calls made to find out
    also warm it up (first-call allocations, caches, lazy initialisation)."""
    fn()
    n = 1
    while True:
        per_call = time_per_call(fn, n)
        if per_call * n >= seconds / 4 or n >= 1 << 20:
            return max(1, int(round(seconds / per_call)))
        n *= 4


def measure_interleaved(fns, repeats, seconds):
    """{name: [seconds per call, one per round]} for the no-argument functions in
    ``fns``, taking turns: every round runs each function for about ``seconds``, the
    order rotating from round to round.

    >>> times = measure_interleaved({"sum": lambda: sum(range(100))}, repeats=3, seconds=0.001)
    >>> len(times["sum"])
    3
    """
    names = list(fns)
    n_calls = {name: calls_per_round(fns[name], seconds) for name in names}
    samples = {name: [] for name in names}
    for r in range(repeats):
        for name in names[r % len(names):] + names[:r % len(names)]:
            # The previous tool's threads may still hold the cores: after numpy's last
            # matmul, OpenBLAS's workers spin for about 0.1 s, which doubled the time of
            # whichever tool ran next. So every round starts after the same pause, and
            # a few untimed calls (this tool's own threads may have gone to sleep).
            time.sleep(ROUND_PAUSE)
            time_per_call(fns[name], max(1, n_calls[name] // 10))
            samples[name].append(time_per_call(fns[name], n_calls[name]))
    return samples


def measure_sgemm(shapes=SGEMM_SHAPES, repeats=5, seconds=0.1):
    """The BLAS ceiling: GFLOP/s of numpy float32 matmul A (m, k) @ B (k, n), median
    over ``repeats``, for each (m, k, n) in ``shapes``."""
    rng = np.random.default_rng(0)
    results = []
    for m, k, n in shapes:
        A = rng.random((m, k), dtype=np.float32)
        B = rng.random((k, n), dtype=np.float32)
        out = np.empty((m, n), dtype=np.float32)
        seconds_per_call = statistics.median(
            measure_interleaved({"sgemm": lambda: np.matmul(A, B, out=out)}, repeats, seconds)["sgemm"])
        results.append({"m": m, "k": k, "n": n, "seconds": seconds_per_call,
                        "gflops": 2.0 * m * k * n / seconds_per_call / 1e9})
    return results


# -- the machine ------------------------------------------------------------------------
def _load_average():
    """The 1-minute load average: above the CPU count, other processes compete for the
    cores and every number of the run is suspect."""
    try:
        return round(os.getloadavg()[0], 2)
    except (AttributeError, OSError):
        return None


def cpu_vector_flags():
    """The CPU's vector-instruction flags from /proc/cpuinfo (Linux), e.g. 'avx2 fma
    avx512f ...': what the code-path choice was made from."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = line.split(":", 1)[1].split()
                    return " ".join(x for x in flags if x in ("fma", "avx2") or x.startswith("avx512"))
    except OSError:
        pass
    return "unknown (no /proc/cpuinfo)"


def machine_info(n_threads):
    """The machine and libraries a run measured: CPU, threads, BLAS, code paths."""
    torch = import_torch()
    info = {
        "cpu": cpu_name(),
        "logical_cpus": os.cpu_count(),
        "threads": n_threads,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "numpy_blas": numpy_blas(),
        "fastbp": __version__,
        "fastbp_isa": _core.get_isa(),
        "cpu_vector_flags": cpu_vector_flags(),
        "fastbp_n_threads": n_threads,
        "torch": torch.__version__ if torch is not None else NOT_INSTALLED,
        "torch_threads": torch.get_num_threads() if torch is not None else None,
        "env": {k: os.environ[k] for k in BLAS_ENV if k in os.environ},
        "load_average_at_start": _load_average(),
    }
    import fastbp
    info["fastbp_info"] = fastbp.info()
    return info


class _BlasThreads:
    """Limits numpy's BLAS to n threads for the run when threadpoolctl is installed
    (without it, the thread count is whatever the BLAS chose at import)."""

    def __init__(self, n):
        self.n, self.limiter = n, None

    def __enter__(self):
        try:
            from threadpoolctl import threadpool_limits
        except ImportError:
            return self
        self.limiter = threadpool_limits(limits=self.n, user_api="blas")
        return self

    def __exit__(self, *exc):
        if self.limiter is not None:
            self.limiter.restore_original_limits()


# -- the per-update comparison -------------------------------------------------------------
def paired_speedup(fastbp_times, other_times):
    """The median over rounds of other's time / fastbp's time in the same round.

    The tools of one round run back to back, so a neighbour that slows the machine
    for a while slows both sides of each ratio alike; a ratio of the two medians
    would pair one tool's quiet round with the other's busy one.

    >>> paired_speedup([1.0, 2.0, 1.0], [3.0, 6.0, 2.0])
    3.0
    """
    return statistics.median(o / f for f, o in zip(fastbp_times, other_times))


def _speedup(samples, other):
    if "fastbp" not in samples or other not in samples:
        return None
    return paired_speedup(samples["fastbp"], samples[other])


def run_updates(nets, batches, tools, repeats, seconds, n_threads, progress=None,
                optimizers=("sgd",)):
    """One result dict per (net, batch) and optimizer, every optimizer's tools measured
    in the same rounds: per tool the median µs per update, samples/s, GFLOP/s and every
    round's time, plus fastbp's speed-ups. Returns {optimizer: rows}; an Adam row, when
    SGD ran too, also has "fastbp_over_sgd": the median over rounds of fastbp's Adam
    time / its SGD time."""
    rows = {optimizer: [] for optimizer in optimizers}
    for sizes in nets:
        for batch in batches:
            data = make_batches(sizes, batch)
            fns = {}
            for optimizer in optimizers:
                net = Network(sizes, seed=0)   # each optimizer trains its own copy
                for tool in tools:
                    fns[optimizer, tool] = make_update(tool, net, data, LR, n_threads, optimizer)
            samples = measure_interleaved(fns, repeats, seconds)
            flops = update_flops(sizes, batch)
            for optimizer in optimizers:
                mine = {tool: samples[optimizer, tool] for tool in tools}
                per_tool = {}
                for tool in tools:
                    t = statistics.median(mine[tool])
                    per_tool[tool] = {"us_per_update": t * 1e6, "samples_per_s": batch / t,
                                      "gflops": flops / t / 1e9,
                                      "rounds_us": [s * 1e6 for s in mine[tool]]}
                row = {"net": net_name(sizes), "sizes": list(sizes), "batch": batch, "flops": flops,
                       "optimizer": optimizer, "tools": per_tool,
                       "speedup_vs_numpy": _speedup(mine, "numpy"),
                       "speedup_vs_torch": _speedup(mine, "torch")}
                if optimizer != "sgd" and "sgd" in optimizers and "fastbp" in tools:
                    # the inverse of a speed-up: how many times SGD's time Adam takes
                    row["fastbp_over_sgd"] = paired_speedup(samples["sgd", "fastbp"], mine["fastbp"])
                rows[optimizer].append(row)
                if progress:
                    progress(row)
            del fns, net, data
            gc.collect()
    return rows


# -- one MNIST epoch -----------------------------------------------------------------------
def load_mnist_float32(data_dir=None):
    """MNIST training images scaled to [0, 1] as float32 (60000, 784) and int32 labels."""
    from .datasets import load_mnist
    images, labels = load_mnist(data_dir, kind="train", download=False)  # a benchmark never downloads
    return (images.astype(np.float32) / np.float32(255)), labels.astype(np.int32)


def run_mnist(X, y, batches, repeats, torch_updates, n_threads, seed=0):
    """Seconds per epoch of 784-256-10 on (X, y), shuffled, for fastbp ``fit`` (data
    gather included) and PyTorch's Python loop over pre-built batch tensors. PyTorch
    runs at most ``torch_updates`` updates per round, and the epoch time is
    extrapolated from them (said in the result as torch_updates_measured)."""
    torch = import_torch()
    results = []
    for batch in batches:
        n_updates = -(-len(X) // batch)
        net = Network(MNIST_NET, seed=seed)
        fit_kwargs = {"n_threads": n_threads} if n_threads else {}
        rng = np.random.default_rng(seed)
        torch_step, torch_batches = None, None
        if torch is not None:
            torch_step = torch_update_fn(torch_model(net), MNIST_LR)
        fastbp_s, torch_s, measured = [], [], min(n_updates, torch_updates)
        for _ in range(repeats):
            start = time.perf_counter()
            net.fit(X, y, epochs=1, batch_size=batch, lr=MNIST_LR, shuffle=True, **fit_kwargs)
            fastbp_s.append(time.perf_counter() - start)
            if torch_step is not None:
                # Shuffled and split outside the clock: PyTorch gets pre-built batches.
                order = rng.permutation(len(X))[:measured * batch]
                Xs, ys = torch.from_numpy(X[order]), torch.from_numpy(y[order].astype(np.int64))
                torch_batches = [(Xs[i:i + batch], ys[i:i + batch])
                                 for i in range(0, measured * batch, batch)]
                def loop():
                    for Xb, yb in torch_batches:
                        torch_step(Xb, yb)
                torch_s.append(time_per_call(loop, 1) * n_updates / measured)
                del torch_batches, Xs, ys
        fastbp_epoch = statistics.median(fastbp_s)
        row = {"net": net_name(MNIST_NET), "batch": batch, "samples": len(X), "updates": n_updates,
               "fastbp_epoch_s": fastbp_epoch, "fastbp_rounds_s": fastbp_s,
               "fastbp_train_loss": float(net.evaluate(X[:10000], y[:10000])["loss"])}
        if torch_s:
            row.update(torch_epoch_s=statistics.median(torch_s), torch_rounds_s=torch_s,
                       torch_updates_measured=measured,
                       speedup_vs_torch=paired_speedup(fastbp_s, torch_s))
        results.append(row)
    return results


# -- output ---------------------------------------------------------------------------------
def _fmt_us(v):
    return f"{v:,.1f}" if v < 100 else f"{v:,.0f}"


def _fmt_x(v):
    return SKIPPED if v is None else f"{v:.2f}x"


def _tool_cell(row, tool, key, fmt, torch_missing):
    res = row["tools"].get(tool)
    if res is None:
        return NOT_INSTALLED if tool == "torch" and torch_missing else SKIPPED
    return fmt(res[key])


UPDATE_COLUMNS = ("net", "batch", "fastbp µs", "NumPy µs", "PyTorch µs", "fastbp samples/s",
                  "fastbp GFLOP/s", "NumPy GFLOP/s", "PyTorch GFLOP/s", "fastbp % sgemm",
                  "speed-up vs NumPy", "speed-up vs PyTorch")


OVER_SGD_COLUMN = "fastbp Adam / SGD"


def update_table(rows, ceiling_gflops, torch_missing):
    """The per-update results as a header and rows of strings (UPDATE_COLUMNS; Adam's
    rows, measured beside SGD's, one more: OVER_SGD_COLUMN)."""
    over_sgd = any("fastbp_over_sgd" in row for row in rows)
    table = []
    for row in rows:
        fb = row["tools"].get("fastbp")
        pct = (f"{100 * fb['gflops'] / ceiling_gflops:.0f}%"
               if fb and ceiling_gflops else SKIPPED)
        table.append([
            row["net"], str(row["batch"]),
            *(_tool_cell(row, t, "us_per_update", _fmt_us, torch_missing) for t in TOOLS),
            _tool_cell(row, "fastbp", "samples_per_s", lambda v: f"{v:,.0f}", torch_missing),
            *(_tool_cell(row, t, "gflops", lambda v: f"{v:.2f}", torch_missing) for t in TOOLS),
            pct, _fmt_x(row["speedup_vs_numpy"]),
            NOT_INSTALLED if torch_missing else _fmt_x(row["speedup_vs_torch"]),
        ] + ([_fmt_x(row.get("fastbp_over_sgd"))] if over_sgd else []))
    return list(UPDATE_COLUMNS) + ([OVER_SGD_COLUMN] if over_sgd else []), table


MNIST_COLUMNS = ("net", "batch", "updates", "fastbp s/epoch", "PyTorch s/epoch",
                 "PyTorch measured on", "speed-up vs PyTorch")


def mnist_table(rows, torch_missing):
    table = []
    for row in rows:
        if "torch_epoch_s" in row:
            measured = row["torch_updates_measured"]
            how = (f"all {measured:,} updates" if measured == row["updates"] else
                   f"{measured:,} of {row['updates']:,} updates, extrapolated")
            torch_cells = [f"{row['torch_epoch_s']:.2f}", how, _fmt_x(row["speedup_vs_torch"])]
        else:
            torch_cells = [NOT_INSTALLED if torch_missing else SKIPPED] * 3
        table.append([row["net"], str(row["batch"]), f"{row['updates']:,}",
                      f"{row['fastbp_epoch_s']:.2f}", *torch_cells])
    return list(MNIST_COLUMNS), table


def format_table(header, rows, markdown=False):
    """Aligned plain text, or a GitHub markdown table."""
    if markdown:
        lines = ["| " + " | ".join(header) + " |",
                 "|" + "|".join("---" if i < 2 else "---:" for i in range(len(header))) + "|"]
        return "\n".join(lines + ["| " + " | ".join(r) + " |" for r in rows])
    widths = [max(len(str(c)) for c in col) for col in zip(header, *rows)]
    fmt = lambda cells: "  ".join(c.ljust(w) if i < 2 else c.rjust(w)
                                  for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([fmt(header), fmt(["-" * w for w in widths])] + [fmt(r) for r in rows])


def describe_machine(info, sgemm, markdown=False):
    """The lines saying what the numbers were measured on."""
    bullet = "- " if markdown else ""
    torch = (f"{info['torch']} ({info['torch_threads']} threads)"
             if info["torch"] != NOT_INSTALLED else NOT_INSTALLED)
    lines = [
        f"{bullet}machine: {info['cpu']}, {info['logical_cpus']} logical CPUs; threads per tool: {info['threads']}",
        f"{bullet}fastbp {info['fastbp']}, code path {info['fastbp_isa']}, threads {info['fastbp_n_threads']}",
        f"{bullet}CPU vector flags: {info.get('cpu_vector_flags', 'unknown')}",
        f"{bullet}numpy {info['numpy']}, BLAS {info['numpy_blas']}",
        f"{bullet}PyTorch {torch}",
    ]
    load = info.get("load_average_at_start")
    if load is not None:
        busy = (" - busier than its CPUs: other processes compete, expect noise"
                if load > (info["logical_cpus"] or 1) else "")
        lines.append(f"{bullet}load average (1 min) at start: {load}{busy}")
    if info["env"]:
        lines.append(f"{bullet}environment: " + ", ".join(f"{k}={v}" for k, v in info["env"].items()))
    if sgemm:
        lines.append(f"{bullet}sgemm ceiling (numpy float32 matmul, same run): " + "; ".join(
            f"{s['m']}x{s['k']} @ {s['k']}x{s['n']}: {s['gflops']:.1f} GFLOP/s" for s in sgemm))
    return lines


# -- the command ---------------------------------------------------------------------------
def _split_list(values, convert, what):
    items = [v for value in values for v in str(value).replace(",", " ").split()]
    try:
        out = [convert(v) for v in items]
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"{what}: {e}") from None
    if not out:
        raise argparse.ArgumentTypeError(f"{what}: give at least one")
    return out


def _positive_int(text):
    value = int(text)
    if value < 1:
        raise ValueError(f"expected an integer >= 1, got {text!r}")
    return value


def build_parser(prog="fastbp bench"):
    p = argparse.ArgumentParser(
        prog=prog,
        description="Time one SGD update and one Adam update (forward + backward + step) of "
                    "fastbp, the NumPy reference and PyTorch, interleaved in one run; optionally "
                    "one MNIST epoch.",
        epilog="For numpy's fair speed unset OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE: "
               f"env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE {prog}")
    p.add_argument("--quick", action="store_true",
                   help="a few configs and rounds, well under 20 s: a smoke run for CI")
    p.add_argument("--threads", type=_positive_int, default=os.cpu_count() or 1,
                   help="threads for every tool (torch.set_num_threads, numpy's BLAS via "
                        "threadpoolctl, fastbp's n_threads when available); default: all CPUs")
    p.add_argument("--nets", nargs="+", help="e.g. 784-256-10 784-1024-1024-10 (default: "
                   + ", ".join(net_name(n) for n in DEFAULT_NETS) + ")")
    p.add_argument("--batches", nargs="+", help="e.g. 1,8,32 (default: "
                   + ",".join(map(str, DEFAULT_BATCHES)) + ")")
    p.add_argument("--tools", default=",".join(TOOLS),
                   help="comma-separated subset of " + ",".join(TOOLS))
    p.add_argument("--optimizers", default=",".join(OPTIMIZERS),
                   help="comma-separated subset of " + ",".join(OPTIMIZERS) + ": a table for each, "
                        "measured in the same rounds (default: both)")
    p.add_argument("--repeats", type=_positive_int, help="rounds per config (default 7; quick: 3)")
    p.add_argument("--seconds", type=float,
                   help="time each tool runs per round (default 0.15; quick: 0.02)")
    p.add_argument("--json", metavar="PATH", help="also write every number to this JSON file")
    p.add_argument("--markdown", action="store_true", help="print markdown tables (for the README)")
    p.add_argument("--mnist", action="store_true",
                   help="also time one epoch of MNIST training (784-256-10) against PyTorch")
    p.add_argument("--mnist-only", action="store_true", help="only the MNIST epoch comparison")
    p.add_argument("--mnist-batches", nargs="+", default=["1,32"], help="default 1,32")
    p.add_argument("--mnist-repeats", type=_positive_int, default=3, help="epochs per tool (default 3)")
    p.add_argument("--torch-updates", type=_positive_int, default=5000,
                   help="PyTorch updates timed per MNIST epoch, extrapolated to the whole "
                        "epoch when fewer than the epoch's (default 5000)")
    p.add_argument("--data", metavar="DIR", help="MNIST directory (default: $FASTBP_DATA)")
    p.add_argument("--no-sgemm", action="store_true", help="skip the sgemm ceiling")
    return p


def _resolve(args, parser):
    try:
        nets = [parse_net(n) for n in _split_list(args.nets, str, "--nets")] if args.nets else \
            list(QUICK_NETS if args.quick else DEFAULT_NETS)
        batches = _split_list(args.batches, _positive_int, "--batches") if args.batches else \
            list(QUICK_BATCHES if args.quick else DEFAULT_BATCHES)
        tools = _split_list([args.tools], str, "--tools")
        optimizers = _split_list([args.optimizers], str, "--optimizers")
        mnist_batches = _split_list(args.mnist_batches, _positive_int, "--mnist-batches")
    except (ValueError, argparse.ArgumentTypeError) as e:
        parser.error(str(e))
    unknown = [t for t in tools if t not in TOOLS]
    if unknown:
        parser.error(f"--tools: unknown {unknown}; choose from {list(TOOLS)}")
    unknown = [o for o in optimizers if o not in OPTIMIZERS]
    if unknown:
        parser.error(f"--optimizers: unknown {unknown}; choose from {list(OPTIMIZERS)}")
    if args.seconds is not None and args.seconds <= 0:
        parser.error(f"--seconds must be > 0, got {args.seconds}")
    repeats = args.repeats or (3 if args.quick else 7)
    seconds = args.seconds or (0.02 if args.quick else 0.15)
    return (nets, batches, [t for t in TOOLS if t in tools], [o for o in OPTIMIZERS if o in optimizers],
            repeats, seconds, mnist_batches)


def _print_progress(row):
    """One line per finished config on stderr, so a long run shows it is alive."""
    times = ", ".join(f"{TOOL_LABELS[t]} {_fmt_us(r['us_per_update'])} µs" for t, r in row["tools"].items())
    print(f"  {row['net']} batch {row['batch']} {OPTIMIZER_LABELS[row['optimizer']]}: {times}",
          file=sys.stderr, flush=True)


def main(argv=None, prog="fastbp bench"):
    """Run the benchmark and print its tables; returns 0 (the exit status). `prog` is
    the command it is run as (`fastbp bench`, or `python benchmarks/compare.py` in a
    source tree), which its tips repeat.

    >>> main(["--quick", "--nets", "20-16-4", "--batches", "1", "--no-sgemm"])  # doctest: +SKIP
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    nets, batches, tools, optimizers, repeats, seconds, mnist_batches = _resolve(args, parser)
    torch = import_torch()
    torch_missing = torch is None
    if torch_missing:
        tools = [t for t in tools if t != "torch"]
    else:
        torch.set_num_threads(args.threads)
    command = prog + " " + " ".join(argv if argv is not None else sys.argv[1:])
    out = {"command": command.strip(), "flop_convention": FLOP_CONVENTION, "lr": LR,
           "repeats": repeats, "seconds_per_round": seconds, "tools": tools, "optimizers": optimizers}
    say = print
    slow_env = [k for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE") if k in os.environ]

    with _BlasThreads(args.threads):
        info = machine_info(args.threads)
        out["machine"] = info
        sgemm = [] if args.no_sgemm or args.mnist_only else measure_sgemm(
            QUICK_SGEMM_SHAPES if args.quick else SGEMM_SHAPES,
            repeats=3 if args.quick else 5, seconds=seconds)
        out["sgemm"] = sgemm
        ceiling = max((s["gflops"] for s in sgemm), default=None)

        heading = "## " if args.markdown else ""
        say(f"{heading}fastbp benchmark: {out['command']}")
        for line in describe_machine(info, sgemm, args.markdown):
            say(line)
        if slow_env:
            say(f"note: {', '.join(slow_env)} set; they can slow numpy's BLAS. For a fair "
                f"comparison run: env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE {prog}")

        if not args.mnist_only:
            say("")
            say(f"{heading}One update (forward + backward + step), float32, dense random inputs, "
                f"median of {repeats} interleaved rounds of ~{seconds:g} s per tool and optimizer")
            say(f"flops: {FLOP_CONVENTION}")
            rows = run_updates(nets, batches, tools, repeats, seconds, args.threads,
                               progress=_print_progress, optimizers=optimizers)
            for optimizer in optimizers:
                # SGD's rows under the key they always had; Adam's beside them
                out["updates" if optimizer == "sgd" else f"{optimizer}_updates"] = rows[optimizer]
                say("")
                say(f"{heading}{OPTIMIZER_LABELS[optimizer]} step "
                    + ("(torch.optim.SGD, the reference's train_step)" if optimizer == "sgd" else
                       "(torch.optim.Adam with its defaults, the reference's adam_step, "
                       "fastbp train_step(optimizer='adam'); lr 1e-3)"))
                say(format_table(*update_table(rows[optimizer], ceiling, torch_missing), args.markdown))
            say("(speed-up = median over rounds of other tool's time / fastbp's time in the "
                "same round; % sgemm = fastbp GFLOP/s / best sgemm GFLOP/s above"
                + ("; fastbp Adam / SGD = median over rounds of fastbp's Adam time / its SGD time"
                   if "sgd" in optimizers and len(optimizers) > 1 and "fastbp" in tools else "") + ")")

        if args.mnist or args.mnist_only:
            X, y = load_mnist_float32(args.data)
            say("")
            say(f"{heading}One epoch of MNIST training ({len(X):,} samples, {net_name(MNIST_NET)}, "
                f"shuffled, lr {MNIST_LR}), median of {args.mnist_repeats} epochs: fastbp fit() "
                "(data gather included) vs PyTorch's Python loop over pre-built batch tensors")
            out["mnist"] = run_mnist(X, y, mnist_batches, args.mnist_repeats, args.torch_updates,
                                     args.threads)
            say(format_table(*mnist_table(out["mnist"], torch_missing), args.markdown))
            say("(speed-up = median over epochs of PyTorch's time / fastbp's time, each "
                "PyTorch epoch run right after a fastbp one)")

    out["load_average_at_end"] = _load_average()
    say(f"load average (1 min) at end: {out['load_average_at_end']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1, default=str)
        say(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
