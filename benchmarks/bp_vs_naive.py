"""One gradient two ways: backpropagation vs the naive gradient, weight by weight.

backprop  ``Network.gradients(X, y)``: one forward and one backward pass.
naive     ``fastbp.naive_gradients``: for every parameter, two forward passes with
          it nudged by ±h (central differences), through the same C forward kernel.

Both run on one thread (n_threads=1) and are timed in CPU seconds, float64, batch 32, tanh hidden layers,
softmax cross-entropy on 10 classes. Two series:

  depth   fixed width 16, 1..20 weight layers (sizes [16, 16, ..., 16, 10])
  width   fixed depth 2, widths 8..512         (sizes [w, w, 10])

The naive gradient of a big network takes minutes (2·P forward passes of cost ~P
each), so when the full run would exceed --naive-budget seconds the script times
the central differences of a random sample of parameters (--sample of them) and
scales that time linearly to all P parameters; such rows are marked "sampled".
Every parameter costs the same two forward passes, so the scaling is exact up to
timing noise. Where the naive gradient is computed in full, it is also compared
with backpropagation's (max abs difference), as a check the two agree.

    python benchmarks/bp_vs_naive.py                      # full table (~1-2 min)
    python benchmarks/bp_vs_naive.py --plot docs/bp_vs_naive.png
    python benchmarks/bp_vs_naive.py --quick               # CI smoke: a few seconds
"""
import argparse
import math
import time

import numpy as np

import fastbp
from fastbp.gradcheck import _central_difference, _check_eps, _loss_function, _parameter_arrays

BATCH = 32
N_CLASSES = 10
DEPTH_WIDTH = 16
DEPTHS = (1, 2, 4, 8, 16, 20)
WIDTH_DEPTH = 2
WIDTHS = (8, 16, 32, 64, 128, 256, 512)
# CPU time of this process, not wall time: on a shared machine other processes'
# work would otherwise be charged to whichever method happened to run beside it.
# Everything runs on one thread, so CPU time is the time the computation takes.
clock = time.process_time
TEXTBOOK_DEPTH = 20
TEXTBOOK_SPEEDUP = math.exp(TEXTBOOK_DEPTH) / TEXTBOOK_DEPTH    # "exp(20)/20 ≈ 24 million"


def make_problem(sizes, seed=0):
    net = fastbp.Network(sizes, activation="tanh", loss="cross_entropy", dtype="float64",
                         seed=seed, n_threads=1)
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((BATCH, sizes[0]))
    y = rng.integers(0, sizes[-1], BATCH)
    return net, X, y


def n_parameters(net):
    return sum(w.size + b.size for w, b in zip(net.weights, net.biases))


def best_time(fn, min_seconds):
    """Seconds per call of fn: the fastest of several loops of calls (each loop long
    enough to swamp the timer), repeating for at least min_seconds in all."""
    number = 1
    while True:   # calls per loop: enough for ~5 ms
        start = clock()
        for _ in range(number):
            fn()
        elapsed = clock() - start
        if elapsed >= 5e-3 or number >= 1 << 16:
            break
        number *= 2
    best, spent, loops = elapsed / number, elapsed, 1
    while loops < 3 or spent < min_seconds:
        start = clock()
        for _ in range(number):
            fn()
        elapsed = clock() - start
        best, spent, loops = min(best, elapsed / number), spent + elapsed, loops + 1
    return best


def naive_time_sampled(net, X, y, n_sample, seed=0):
    """Seconds the naive gradient would take over all parameters, from timing the
    central differences of n_sample random ones (each costs two forward passes)."""
    eps = _check_eps(None, net.dtype)
    loss = _loss_function(net, X, y)
    arrays = [param for _, _, param in _parameter_arrays(net)]
    sizes = np.array([a.size for a in arrays])
    rng = np.random.default_rng(seed)
    picks = rng.choice(sizes.sum(), size=min(n_sample, int(sizes.sum())), replace=False)
    owners = np.searchsorted(np.cumsum(sizes), picks, side="right")
    offsets = picks - np.concatenate([[0], np.cumsum(sizes)])[owners]
    entries = [(arrays[o], np.unravel_index(i, arrays[o].shape)) for o, i in zip(owners, offsets)]
    start = clock()
    for param, index in entries:
        _central_difference(loss, param, index, eps)
    return (clock() - start) / len(entries) * sizes.sum()


def measure(sizes, args):
    """One row: parameters, forward/backprop/naive seconds, speed-up."""
    net, X, y = make_problem(sizes)
    P = n_parameters(net)
    loss = _loss_function(net, X, y)
    forward = best_time(loss, args.min_seconds)
    backprop = best_time(lambda: net.gradients(X, y), args.min_seconds)
    row = {"sizes": sizes, "depth": len(sizes) - 1, "width": sizes[1] if len(sizes) > 2 else sizes[0],
           "params": P, "forward": forward, "backprop": backprop, "check": None}
    if 2 * P * forward <= args.naive_budget:
        naive_runs = []   # the faster of two runs when both fit the budget, like the others
        for _ in range(2 if 4 * P * forward <= args.naive_budget else 1):
            start = clock()
            naive_grads = fastbp.naive_gradients(net, X, y)
            naive_runs.append(clock() - start)
        row["naive"] = min(naive_runs)
        row["sampled"] = False
        row["check"] = max(float(np.abs(n - b).max())
                           for pair_n, pair_b in zip(naive_grads, net.gradients(X, y))
                           for n, b in zip(pair_n, pair_b))
    else:
        row["naive"] = naive_time_sampled(net, X, y, args.sample)
        row["sampled"] = True
    row["speedup"] = row["naive"] / row["backprop"]
    return row


def loglog_slope(x, t):
    """Least-squares slope of log t against log x: t ∝ x^slope."""
    return float(np.polyfit(np.log(x), np.log(t), 1)[0])


def print_table(title, rows, textbook=False):
    """One row per network; with textbook, the claimed speed-up exp(d)/d beside it."""
    print(f"\n{title}")
    head = (f"{'sizes':<24}{'params':>9}{'forward':>11}{'backprop':>11}{'naive':>12}"
            f"{'':>9}{'naive/(2P·fwd)':>15}{'speed-up':>11}{'max|naive-bp|':>15}"
            f"{'exp(d)/d claim' if textbook else '':>16}")
    print(head)
    for r in rows:
        sizes = "-".join(map(str, r["sizes"])) if len(r["sizes"]) <= 4 else \
            f"{r['sizes'][0]}-{r['sizes'][1]}x{len(r['sizes']) - 2}-{r['sizes'][-1]}"
        check = "" if r["check"] is None else f"{r['check']:.1e}"
        print(f"{sizes:<24}{r['params']:>9}{fmt_time(r['forward']):>11}{fmt_time(r['backprop']):>11}"
              f"{fmt_time(r['naive']):>12}{'sampled' if r['sampled'] else 'full':>9}"
              f"{r['naive'] / (2 * r['params'] * r['forward']):>15.2f}{r['speedup']:>11.3g}{check:>15}"
              f"{format(math.exp(r['depth']) / r['depth'], '.3g') if textbook else '':>16}")


def fmt_time(seconds):
    for unit, scale in (("s", 1), ("ms", 1e-3), ("µs", 1e-6)):
        if seconds >= scale:
            return f"{seconds / scale:.3g} {unit}"
    return f"{seconds * 1e9:.3g} ns"


def plot(depth_rows, width_rows, fits, path):
    from fastbp.plot import figure
    try:
        fig = figure(13, 4, dpi=90)
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None
    by_params, by_depth, speedup = fig.subplots(1, 3)
    P = np.array([r["params"] for r in width_rows])
    for key, label, marker in (("backprop", "backprop", "o"), ("naive", "naive (weight by weight)", "s")):
        t = np.array([r[key] for r in width_rows])
        by_params.loglog(P, t, marker + "-", label=f"{label}: ∝ P^{fits['width', key]:.2f}")
    by_params.set(xlabel="parameters P (depth 2, width 8…512)", ylabel="seconds per gradient",
                  title="time vs parameters")
    depths = np.array([r["depth"] for r in depth_rows])
    for key, label, marker in (("backprop", "backprop", "o"), ("naive", "naive", "s")):
        t = np.array([r[key] for r in depth_rows])
        by_depth.semilogy(depths, t, marker + "-", label=f"{label}: ∝ depth^{fits['depth', key]:.2f}")
    by_depth.set(xlabel=f"depth (width {DEPTH_WIDTH})", ylabel="seconds per gradient",
                 title="time vs depth")
    measured = np.array([r["speedup"] for r in depth_rows])
    speedup.semilogy(depths, measured, "o-", label="measured naive / backprop")
    grid = np.linspace(1, depths.max(), 100)
    speedup.semilogy(grid, np.exp(grid) / grid, "--", color="0.4", label="textbook exp(d)/d")
    speedup.semilogy(depths, [r["params"] for r in depth_rows], ":", color="C2",
                     label="P, the number of parameters")
    speedup.set(xlabel="depth d", ylabel="speed-up of backprop", title="speed-up vs depth")
    for ax in (by_params, by_depth, speedup):
        ax.grid(True, which="major", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    print(f"\nwrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true",
                        help="small networks and budgets: a smoke run of a few seconds")
    parser.add_argument("--naive-budget", type=float, default=5.0, metavar="SECONDS",
                        help="run the naive gradient in full when estimated below this "
                             "(default %(default)s), else time a sample and scale")
    parser.add_argument("--sample", type=int, default=300,
                        help="parameters timed when sampling (default %(default)s)")
    parser.add_argument("--min-seconds", type=float, default=0.2,
                        help="repeat each backprop/forward timing at least this long")
    parser.add_argument("--plot", metavar="PATH", help="write a log-scale PNG")
    args = parser.parse_args(argv)
    depths, widths = DEPTHS, WIDTHS
    if args.quick:
        depths, widths = (1, 2, 4), (8, 16, 32)
        args.naive_budget, args.sample, args.min_seconds = 0.3, 30, 0.02

    print(f"fastbp {fastbp.__version__}, float64, batch {BATCH}, tanh, cross-entropy, 1 thread, CPU time, "
          f"naive gradient = central differences, 2 forward passes per parameter")
    depth_rows = [measure([DEPTH_WIDTH] * depth + [N_CLASSES], args) for depth in depths]
    width_rows = [measure([width] * WIDTH_DEPTH + [N_CLASSES], args) for width in widths]
    print_table(f"fixed width {DEPTH_WIDTH}, depth {', '.join(map(str, depths))}", depth_rows,
                textbook=True)
    print_table(f"fixed depth {WIDTH_DEPTH}, width {', '.join(map(str, widths))}", width_rows)

    fits = {}
    for series, rows, xkey in (("depth", depth_rows, "depth"), ("width", width_rows, "params")):
        for key in ("backprop", "naive", "speedup"):
            fits[series, key] = loglog_slope([r[xkey] for r in rows], [r[key] for r in rows])
    # the large end shows the asymptotic growth; the small end is per-call overhead
    tail = width_rows[-3:]
    tail_fits = {key: loglog_slope([r["params"] for r in tail], [r[key] for r in tail])
                 for key in ("backprop", "naive", "speedup")}
    print("\ngrowth (log-log least-squares slopes)")
    print(f"  vs depth (width {DEPTH_WIDTH}):   backprop ∝ depth^{fits['depth', 'backprop']:.2f}, "
          f"naive ∝ depth^{fits['depth', 'naive']:.2f}, speed-up ∝ depth^{fits['depth', 'speedup']:.2f}")
    print(f"  vs parameters (depth {WIDTH_DEPTH}): backprop ∝ P^{fits['width', 'backprop']:.2f}, "
          f"naive ∝ P^{fits['width', 'naive']:.2f}, speed-up ∝ P^{fits['width', 'speedup']:.2f}")
    print(f"  largest three widths only:  backprop ∝ P^{tail_fits['backprop']:.2f}, "
          f"naive ∝ P^{tail_fits['naive']:.2f}, speed-up ∝ P^{tail_fits['speedup']:.2f}")

    deepest = depth_rows[-1]
    print(f"\ndepth {deepest['depth']} (width {DEPTH_WIDTH}, {deepest['params']} parameters): "
          f"measured speed-up {deepest['speedup']:.3g}")
    if deepest["depth"] == TEXTBOOK_DEPTH:
        print(f"textbook claim for depth {TEXTBOOK_DEPTH}: exp(20)/20 = {TEXTBOOK_SPEEDUP:.3g} "
              f"(off by a factor {TEXTBOOK_SPEEDUP / deepest['speedup']:.3g})")
    largest = max(depth_rows + width_rows, key=lambda r: r["params"])
    print(f"largest network ({largest['params']} parameters): measured speed-up {largest['speedup']:.3g}"
          f"{' (naive time sampled and scaled)' if largest['sampled'] else ''}")
    print("the naive gradient costs 2P forward passes (column naive/(2P·fwd) ≈ 1), each ~P "
          "multiply-adds per row, so ~P²; backprop costs about 3 forward passes, ~P. The speed-up "
          "grows like P — with depth only because P grows with depth — not like exp(depth).")
    if args.plot:
        plot(depth_rows, width_rows, fits, args.plot)


if __name__ == "__main__":
    main()
