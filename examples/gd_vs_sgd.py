"""Full-batch GD vs single-sample SGD vs mini-batch SGD on MNIST, for equal time.

The same network (784-64-10, relu, softmax cross-entropy, same initial weights)
is trained from scratch once per (method, learning rate), each run given the same
budget of CPU seconds on one thread:

  gd        optimizer="gd": one update per pass over all training rows (the exact
            gradient of the training loss)
  sgd b=1   one row per update (classic stochastic gradient descent)
  sgd b=16, b=128   mini-batches

What is fair: every run gets the same compute (CPU time of this process, one thread
— on a shared machine wall time would charge other people's work to whichever run
was unlucky), starts from the same weights and sees the same pre-shuffled data.
Measuring the loss is not charged to the budget: the clock stops while the
training loss (on a fixed subset of training rows) is evaluated at checkpoints
spaced logarithmically in time. A run stops when its next update, at the cost
measured for the previous ones, would not fit in the budget (so it may overrun by
a few per cent). Training goes through `Network.fit(..., epochs=1)` on consecutive
slices of the shuffled data, so each update is exactly fastbp's own.

    FASTBP_DATA=/work/shared/data/mnist python examples/gd_vs_sgd.py --plot docs/gd_vs_sgd.png
    python examples/gd_vs_sgd.py --quick          # smoke run on a subset, a few seconds
"""
import argparse
import math
import time

import numpy as np

import fastbp
from fastbp.datasets import DataNotFoundError, load_mnist

SIZES = (784, 64, 10)
# (label, optimizer, batch size, learning rates)
METHODS = (("gd", "gd", None, (0.5, 1.5)),
           ("sgd b=1", "sgd", 1, (0.005, 0.02)),
           ("sgd b=16", "sgd", 16, (0.05, 0.2)),
           ("sgd b=128", "sgd", 128, (0.1, 0.5)))
QUICK_METHODS = (("gd", "gd", None, (0.5,)), ("sgd b=1", "sgd", 1, (0.01,)),
                 ("sgd b=16", "sgd", 16, (0.1,)), ("sgd b=128", "sgd", 128, (0.2,)))
MIN_CHUNK_UPDATES = 16     # fewer per fit call and the call's overhead starts to count
# CPU time: the budget is compute, independent of what else runs on the machine
clock = time.process_time


def load_data(quick, seed=0):
    """Shuffled training rows scaled to [0, 1], a fixed subset of them on which the
    training loss is tracked, and the test set."""
    X, y = load_mnist(kind="train", download=False)
    X_test, y_test = load_mnist(kind="test", download=False)
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(X))
    if quick:
        order, X_test, y_test = order[:2000], X_test[:500], y_test[:500]
    X = np.ascontiguousarray(X[order], dtype=np.float32) / np.float32(255)
    y = y[order].astype(np.int32)
    track = slice(0, min(len(X), 10_000))
    return (X, y), (X[track], y[track]), (X_test.astype(np.float32) / np.float32(255),
                                          y_test.astype(np.int32))


def train_for(budget, optimizer, batch_size, lr, train, track, n_checkpoints, seed=0):
    """Train a fresh network for `budget` CPU seconds; returns the network and the
    curve: lists of updates, CPU seconds and tracked training loss at checkpoints."""
    X, y = train
    net = fastbp.Network(SIZES, activation="relu", loss="cross_entropy", dtype="float32",
                         seed=seed, n_threads=1)
    curve = {"updates": [0], "seconds": [0.0], "loss": [net.evaluate(*track)["loss"]]}
    checkpoints = list(budget * np.geomspace(1e-3, 1.0, n_checkpoints))
    spent, updates, cursor, diverged = 0.0, 0, 0, False
    seconds_per_update = None
    while True:
        if seconds_per_update is None:   # a first chunk to measure the cost of an update
            n_updates = 1 if optimizer == "gd" else MIN_CHUNK_UPDATES
        else:   # up to the next checkpoint, and never past the budget
            fits = math.floor((budget - spent) / seconds_per_update)
            if fits < 1:
                break
            target = checkpoints[0] if checkpoints else budget
            n_updates = 1 if optimizer == "gd" else \
                min(fits, max(MIN_CHUNK_UPDATES, round((target - spent) / seconds_per_update)))
        if optimizer == "sgd":   # one slice of whole batches, wrapping round the data
            n_updates = min(n_updates, len(X) // batch_size)
            if cursor + n_updates * batch_size > len(X):
                cursor = 0
        start = clock()
        try:
            if optimizer == "gd":
                hist = net.fit(X, y, optimizer="gd", lr=lr, epochs=1)
            else:
                rows = slice(cursor, cursor + n_updates * batch_size)
                hist = net.fit(X[rows], y[rows], lr=lr, batch_size=batch_size, epochs=1,
                               shuffle=False)
                cursor = rows.stop
            done = hist.n_updates
        except FloatingPointError:
            diverged, done = True, n_updates
        elapsed = clock() - start
        spent += elapsed
        updates += done
        seconds_per_update = elapsed / max(1, done)
        if diverged:
            break
        if checkpoints and spent >= 0.95 * checkpoints[0]:
            curve["updates"].append(updates)
            curve["seconds"].append(spent)
            curve["loss"].append(net.evaluate(*track)["loss"])
            while checkpoints and checkpoints[0] <= 1.05 * spent:
                checkpoints.pop(0)
    if curve["updates"][-1] != updates and not diverged:
        curve["updates"].append(updates)
        curve["seconds"].append(spent)
        curve["loss"].append(net.evaluate(*track)["loss"])
    return net, curve, diverged


def plot(results, path):
    from fastbp.plot import figure
    try:
        fig = figure(12, 4.4, dpi=90)
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None
    by_updates, by_seconds = fig.subplots(1, 2, sharey=True)
    colors = {}
    for r in results:
        color = colors.setdefault(r["method"], f"C{len(colors)}")
        lrs = [q["lr"] for q in results if q["method"] == r["method"]]
        style = "-" if r["lr"] == max(lrs) else "--"
        label = f"{r['method']}, lr {r['lr']:g}" + (" (diverged)" if r["diverged"] else "")
        c = r["curve"]
        by_updates.plot(c["updates"][1:], c["loss"][1:], style, color=color, marker=".", ms=3,
                        lw=1, label=label)
        by_seconds.plot(c["seconds"][1:], c["loss"][1:], style, color=color, marker=".", ms=3,
                        lw=1, label=label)
    initial = results[0]["curve"]["loss"][0]
    for ax, xlabel in ((by_updates, "parameter updates"), (by_seconds, "CPU seconds (1 thread)")):
        ax.set_xscale("log")
        ax.axhline(initial, color="0.7", lw=0.8)
        ax.set(xlabel=xlabel)
        ax.grid(True, which="major", alpha=0.3)
    by_updates.set(ylabel="training loss (10,000 fixed rows)", ylim=(0, initial * 1.05),
                   title="loss vs updates")
    by_seconds.set(title="loss vs time: equal budget for every run")
    by_updates.legend(fontsize=7, loc="upper right")   # empty there: every run ends low
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0,
                        help="CPU-second budget per run (default %(default)s)")
    parser.add_argument("--checkpoints", type=int, default=24,
                        help="loss measurements per run, log-spaced in time")
    parser.add_argument("--plot", metavar="PATH", help="write the two-panel PNG")
    parser.add_argument("--quick", action="store_true",
                        help="2,000 training rows, one lr per method, 0.3 s each: a smoke run")
    args = parser.parse_args(argv)
    if args.seconds <= 0:
        parser.error(f"--seconds must be positive, got {args.seconds}")
    if args.checkpoints < 2:
        parser.error(f"--checkpoints must be at least 2, got {args.checkpoints}")
    methods = QUICK_METHODS if args.quick else METHODS
    budget = 0.3 if args.quick else args.seconds
    n_checkpoints = 6 if args.quick else args.checkpoints

    try:
        train, track, test = load_data(args.quick)
    except DataNotFoundError as e:
        raise SystemExit(f"gd_vs_sgd.py needs MNIST (set FASTBP_DATA): {e}") from None
    print(f"{SIZES[0]}-{SIZES[1]}-{SIZES[2]} relu, float32, 1 thread, {len(train[0])} training rows, "
          f"{budget:g} CPU s per run; loss on {len(track[0])} fixed training rows")
    results = []
    for method, optimizer, batch_size, lrs in methods:
        for lr in lrs:
            net, curve, diverged = train_for(budget, optimizer, batch_size, lr, train, track,
                                             n_checkpoints)
            scores = net.evaluate(*test)
            results.append({"method": method, "lr": lr, "curve": curve, "diverged": diverged,
                            "batch": len(train[0]) if batch_size is None else batch_size,
                            "test_accuracy": scores["accuracy"]})
            print(f"  {method:<10} lr {lr:<6g} {curve['updates'][-1]:>8} updates  "
                  f"loss {curve['loss'][-1]:.4f}  test accuracy {scores['accuracy']:.4f}"
                  f"{'  DIVERGED' if diverged else ''}", flush=True)

    print(f"\n| method | lr | updates | rows seen | CPU s | train loss | test accuracy |")
    print("|---|---|---:|---:|---:|---:|---:|")
    for r in results:
        c = r["curve"]
        print(f"| {r['method']} | {r['lr']:g} | {c['updates'][-1]} | {c['updates'][-1] * r['batch']} | "
              f"{c['seconds'][-1]:.2f} | {c['loss'][-1]:.4f} | "
              f"{r['test_accuracy']:.4f}{' (diverged)' if r['diverged'] else ''} |")
    if args.plot:
        plot(results, args.plot)


if __name__ == "__main__":
    main()
