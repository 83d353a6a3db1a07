"""Training over MPI: measured on this machine, and modelled on P nodes.

    python benchmarks/distributed.py --measure                 # runs mpiexec itself
    python benchmarks/distributed.py --measure --json out.json
    python benchmarks/distributed.py --plot docs/distributed.png --from out.json

--measure times, on MNIST (784-256-10, float32), one epoch at batch 32 and 512 with
1 process x 1 thread, 1 process x 2 threads (fit without comm), 1 and 2 MPI ranks x 1
thread (fit(comm=...), synchronous) and 2 ranks with local SGD (sync_every=8); and,
inside the 2-rank job, one allreduce of the parameter buffer against the compute of
one step's backpropagation. It also times one thread's step (backpropagation and
update) at several batch sizes for 784-256-10 and 784-1024-1024-10: the compute term of
the model.

The model of one synchronous step on P nodes, global batch B:

    T(P) = c(B / P) + o + 2 (P - 1) / P * bytes / bandwidth + latency * log2(P)

c(b) the measured compute of a step on b rows (one node = this machine's one core,
times two for its two), o the measured per-step overhead of the Python loop around it,
bytes the parameter buffer (4 bytes a parameter), bandwidth 10 or 100 Gb/s and
latency 5 us (typical of MPI over Ethernet / InfiniBand: modelled, not measured).
Local SGD with sync_every=k pays the allreduce once every k steps. --plot draws
samples per second against P for both nets at batch 32, 512 and 4096.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

NETS = {"784-256-10": (784, 256, 10), "784-1024-1024-10": (784, 1024, 1024, 10)}
MODEL_BATCHES = (32, 512, 4096)
LATENCY = 5e-6             # seconds per allreduce stage: modelled
BANDWIDTHS = {"10 Gb/s": 10e9 / 8, "100 Gb/s": 100e9 / 8}   # bytes per second
LOCAL_SGD_EVERY = 8


def n_params(sizes):
    """Weights and biases of a dense net.

    >>> n_params((784, 256, 10))
    203530
    """
    return sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:]))


def step_time(compute, overhead, n_bytes, P, bandwidth, latency=LATENCY, every=1):
    """The model's seconds per step on P nodes (see the module docstring).

    >>> round(step_time(1e-3, 0.0, 1e6, 1, 1e9), 6)        # one node: no communication
    0.001
    >>> round(step_time(0.0, 0.0, 1e6, 2, 1e9, latency=0), 6)   # 2 (P-1)/P bytes / bandwidth
    0.001
    """
    if P == 1:
        return compute + overhead
    comm = 2 * (P - 1) / P * n_bytes / bandwidth + latency * float(np.log2(P))
    return compute + overhead + comm / every


def compute_of(costs, rows):
    """Seconds of one step on `rows` rows by interpolating measured (rows, seconds) in
    log-log; fewer rows than the fewest measured cost what those do, more than the most
    cost in proportion (the largest batch measured is compute-bound).

    >>> compute_of([(1, 1e-5), (100, 1e-3)], 200)
    0.002
    """
    xs, ys = zip(*sorted(costs))
    if rows > xs[-1]:
        return ys[-1] * rows / xs[-1]
    rows = max(rows, xs[0])
    return float(np.exp(np.interp(np.log(rows), np.log(xs), np.log(ys))))


# -- measuring ----------------------------------------------------------------------
WORKER = "--worker"


def mnist(path):
    from fastbp.datasets import load_mnist
    X, y = load_mnist(path, "train")
    return (X / np.float32(255)).astype(np.float32), y.astype(np.int32)


def median_seconds(call, before=None, rounds=200):
    """The median time of call() over rounds, before() (a barrier) run untimed first."""
    times = []
    for _ in range(rounds):
        if before is not None:
            before()
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def worker(args):
    """One rank of an mpiexec job (or a plain process with --ranks 0): prints JSON."""
    import fastbp
    X, y = mnist(args.data)
    comm = None
    rank, size = 0, 1
    if args.ranks:
        from mpi4py import MPI
        comm = MPI.COMM_WORLD
        rank, size = comm.Get_rank(), comm.Get_size()
        bounds = np.linspace(0, len(X), size + 1).round().astype(int)
        X, y = X[bounds[rank]:bounds[rank + 1]], y[bounds[rank]:bounds[rank + 1]]
    extra = {} if args.sync_every is None else {"sync_every": args.sync_every}
    if comm is not None:
        extra["comm"] = comm
    report = {"ranks": size, "threads": args.threads, "batch": args.batch,
              "sync_every": args.sync_every, "distributed": comm is not None}
    net = fastbp.Network([784, 256, 10], seed=0, n_threads=args.threads)
    net.fit(X[:len(X) // 10], y[:len(y) // 10], lr=0.05, momentum=0.9, batch_size=args.batch,
            epochs=1, **extra)                                            # warm up
    seconds = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        net.fit(X, y, lr=0.05, momentum=0.9, batch_size=args.batch, epochs=1, **extra)
        seconds.append(time.perf_counter() - start)
    report["epoch_seconds"] = seconds
    if comm is not None and size > 1 and args.sync_every is None:
        from mpi4py import MPI
        buf = np.zeros(net._layout.n_params + 2, np.float32)
        small = np.zeros(2, np.float64)
        core = net._core_for(args.batch // size, args.threads)
        rows = np.arange(args.batch // size)
        grads = np.zeros(net._layout.n_params, np.float32)
        times = median_seconds(lambda: comm.Allreduce(MPI.IN_PLACE, buf, op=MPI.SUM), comm.Barrier)
        small_times = median_seconds(lambda: comm.Allreduce(MPI.IN_PLACE, small, op=MPI.SUM),
                                     comm.Barrier)
        compute = median_seconds(lambda: core.gradients(X[rows], y[rows], None, grads))
        report.update(allreduce_seconds=times, allreduce_small_seconds=small_times,
                      allreduce_bytes=int(buf.nbytes), backprop_seconds=compute)
    if rank == 0:
        print(json.dumps(report), flush=True)


def step_costs(repeats=5):
    """{net: [(rows, seconds of one step, one thread)]}: the model's compute term, and
    the per-step overhead of the distributed loop at 1 rank (measured by the caller)."""
    import fastbp
    rng = np.random.default_rng(0)
    costs = {}
    for name, sizes in NETS.items():
        costs[name] = []
        for rows in (1, 8, 32, 128, 512, 2048):
            X = rng.random((rows, sizes[0]), dtype=np.float32)
            X[X < 0.81] = 0   # MNIST's density
            y = rng.integers(0, sizes[-1], rows)
            net = fastbp.Network(list(sizes), seed=0, n_threads=1)
            p = net.profile(X, y, batch_size=rows, steps=max(5, 2000 // rows) if rows < 2048 else 5)
            costs[name].append((rows, p["total_us"] * 1e-6))
    return costs


def run_job(ranks, threads, batch, data, repeats, sync_every=None):
    cmd = [sys.executable, os.path.abspath(__file__), WORKER, "--data", data, "--threads",
           str(threads), "--batch", str(batch), "--repeats", str(repeats), "--ranks", str(ranks)]
    if sync_every is not None:
        cmd += ["--sync-every", str(sync_every)]
    if ranks:
        mpiexec = os.path.join(os.path.dirname(sys.executable), "mpiexec")
        cmd = [mpiexec if os.path.exists(mpiexec) else "mpiexec", "-n", str(ranks)] + cmd
    out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def measure(data, repeats, progress=print):
    jobs = []
    for batch in (32, 512):
        for ranks, threads, sync_every in ((0, 1, None), (0, 2, None), (1, 1, None), (2, 1, None),
                                           (2, 1, LOCAL_SGD_EVERY)):
            report = run_job(ranks, threads, batch, data, repeats, sync_every)
            jobs.append(report)
            how = ("fit" if not report["distributed"] else
                   f"fit(comm), {report['ranks']} rank(s)"
                   + (f", sync_every={sync_every}" if sync_every else ""))
            progress(f"batch {batch:>4}  {max(ranks, 1)} x {threads} thread(s)  {how:<34} "
                     f"epoch {statistics.median(report['epoch_seconds']):.2f} s"
                     + (f"  allreduce {report['allreduce_seconds'] * 1e6:.0f} us of "
                        f"{report['allreduce_bytes'] / 1e6:.2f} MB, backprop of the rank's "
                        f"{batch // 2} rows {report['backprop_seconds'] * 1e6:.0f} us"
                        if "allreduce_seconds" in report else ""))
    return {"jobs": jobs, "step_costs": step_costs()}


# -- the model ----------------------------------------------------------------------
def overhead_of(measured):
    """Seconds per step that the distributed loop adds at one rank (batch 32): the
    1-rank fit(comm) epoch minus the plain 1-thread fit epoch, per step."""
    jobs = {(j["batch"], j["ranks"], j["threads"], j["distributed"], j["sync_every"]): j
            for j in measured["jobs"]}
    plain = statistics.median(jobs[(32, 1, 1, False, None)]["epoch_seconds"])
    one_rank = statistics.median(jobs[(32, 1, 1, True, None)]["epoch_seconds"])
    return max(0.0, (one_rank - plain) / (60000 / 32))


def plot(measured, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    overhead = overhead_of(measured)
    Ps = np.unique(np.round(np.logspace(0, 6, 25, base=2)).astype(int))
    fig, axes = plt.subplots(2, 2, figsize=(11, 8), sharex=True)
    for row, (net, sizes) in enumerate(NETS.items()):
        costs = measured["step_costs"][net]
        n_bytes = 4 * n_params(sizes)
        for col, (bw_name, bw) in enumerate(BANDWIDTHS.items()):
            ax = axes[row][col]
            for batch, color in zip(MODEL_BATCHES, ("C0", "C1", "C2")):
                sync = [batch / step_time(compute_of(costs, batch / P), overhead, n_bytes, P, bw)
                        for P in Ps]
                local = [batch / step_time(compute_of(costs, batch / P), overhead, n_bytes, P, bw,
                                           every=LOCAL_SGD_EVERY) for P in Ps]
                ax.plot(Ps, sync, color=color, label=f"batch {batch}, every step")
                ax.plot(Ps, local, color=color, linestyle="--",
                        label=f"batch {batch}, local SGD k={LOCAL_SGD_EVERY}")
            ax.set_xscale("log", base=2)
            ax.set_yscale("log")
            ax.set_title(f"{net} ({n_bytes / 1e6:.1f} MB of parameters), {bw_name}")
            ax.grid(True, which="both", alpha=0.3)
            if row == 1:
                ax.set_xlabel("nodes P")
            if col == 0:
                ax.set_ylabel("samples per second (model)")
    axes[0][0].legend(fontsize=7)
    fig.suptitle("One synchronous step: c(B/P) + o + 2(P-1)/P bytes/bandwidth + 5 us log2 P "
                 f"(c, o = {overhead * 1e6:.0f} us measured on one core here; links modelled)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--measure", action="store_true")
    ap.add_argument("--plot", metavar="PNG")
    ap.add_argument("--from", dest="source", metavar="JSON", help="measurements saved by --json")
    ap.add_argument("--json", metavar="JSON", help="save the measurements there")
    ap.add_argument("--data", default=os.environ.get("FASTBP_DATA"))
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(WORKER, action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=32, help=argparse.SUPPRESS)
    ap.add_argument("--ranks", type=int, default=0, help=argparse.SUPPRESS)
    ap.add_argument("--sync-every", dest="sync_every", type=int, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.worker:
        return worker(args)
    measured = None
    if args.measure:
        measured = measure(args.data, args.repeats)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(measured, f, indent=1)
    elif args.source:
        with open(args.source) as f:
            measured = json.load(f)
    if args.plot:
        if measured is None:
            ap.error("--plot needs --measure or --from")
        plot(measured, args.plot)
        print(f"wrote {args.plot} (per-step overhead o = {overhead_of(measured) * 1e6:.0f} us)")


if __name__ == "__main__":
    main()
