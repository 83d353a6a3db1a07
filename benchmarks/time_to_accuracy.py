"""Wall time to 98% MNIST test accuracy: fastbp's fast98 recipe against the same
training loop in PyTorch on the CPU, in one process and one run.

    FASTBP_DATA=/work/shared/data/mnist python benchmarks/time_to_accuracy.py
    python benchmarks/time_to_accuracy.py --quick       # a smoke run, seconds
    python benchmarks/time_to_accuracy.py --help

Both tools train 784-512-10 relu with SGD (lr 0.1, momentum 0.9, batch 64, lr x0.1
after every 4 epochs; the settings come from ``fastbp.cli.RECIPES["fast98"]``) on the
same float32 arrays in memory, and stop at the first epoch end where test accuracy is
at least the target. The test evaluation after each epoch is not counted in the time.
"""
import argparse
import importlib.util
import json
import os
import sys
import time

import numpy as np

import fastbp
from fastbp.cli import RECIPES, UsageError, load_dataset, parse_layers

RECIPE = RECIPES["fast98"]
QUICK_SAMPLES = 5000      # --quick: train and test on this many images
QUICK_TARGET = 0.5
QUICK_MAX_EPOCHS = 2


class _TargetReached(Exception):
    """Raised from fit's callback to end training at the epoch that reached the target."""


def time_fastbp(X, y, X_test, y_test, target, max_epochs, threads):
    """Train the fast98 recipe with one `fit` call (so its step schedule runs as in
    ``fastbp train``) until test accuracy >= target; returns a result dict.

    >>> time_fastbp(X, y, X_test, y_test, 0.98, 10, 2)["seconds_to_target"]   # doctest: +SKIP
    """
    net = fastbp.Network(parse_layers(RECIPE["layers"]), activation=RECIPE["activation"],
                         loss="cross_entropy", dtype="float32", seed=RECIPE["seed"], n_threads=threads)
    epochs_log = []
    eval_seconds = [0.0]
    start = time.perf_counter()

    def at_epoch_end(progress):
        if not progress.end_of_epoch:
            return
        train_seconds = time.perf_counter() - start - eval_seconds[0]
        eval_start = time.perf_counter()
        accuracy = net.evaluate(X_test, y_test)["accuracy"]
        eval_seconds[0] += time.perf_counter() - eval_start
        epochs_log.append({"epoch": progress.epoch, "seconds": train_seconds, "accuracy": accuracy})
        if accuracy >= target:
            raise _TargetReached

    try:
        net.fit(X, y, optimizer=RECIPE["optimizer"], lr=RECIPE["lr"], batch_size=RECIPE["batch_size"],
                epochs=max_epochs, momentum=RECIPE["momentum"], schedule=RECIPE["schedule"],
                step_size=RECIPE["step_size"], gamma=RECIPE["gamma"], callback=at_epoch_end)
    except _TargetReached:
        pass
    return summarize("fastbp", epochs_log, target)


def time_torch(X, y, X_test, y_test, target, max_epochs, threads):
    """The same recipe as a plain PyTorch CPU loop; returns a result dict like `time_fastbp`.

    >>> time_torch(X, y, X_test, y_test, 0.98, 10, 2)["epochs"]   # doctest: +SKIP
    """
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(RECIPE["seed"])
    sizes = parse_layers(RECIPE["layers"])
    layers = []
    for n_in, n_out in zip(sizes[:-2], sizes[1:-1]):
        layers += [nn.Linear(n_in, n_out), nn.ReLU()]
    model = nn.Sequential(*layers, nn.Linear(sizes[-2], sizes[-1]))
    optimizer = torch.optim.SGD(model.parameters(), lr=RECIPE["lr"], momentum=RECIPE["momentum"])
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, step_size=RECIPE["step_size"],
                                                gamma=RECIPE["gamma"])
    loss_fn = nn.CrossEntropyLoss()
    X_t, y_t = torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))
    X_test_t, y_test_t = torch.from_numpy(X_test), torch.from_numpy(y_test.astype(np.int64))
    generator = torch.Generator().manual_seed(RECIPE["seed"])
    batch = RECIPE["batch_size"]

    epochs_log = []
    train_seconds = 0.0
    for epoch in range(1, max_epochs + 1):
        epoch_start = time.perf_counter()
        model.train()
        order = torch.randperm(len(X_t), generator=generator)
        # One gather per epoch, then views: cheaper than indexing every batch.
        X_shuffled, y_shuffled = X_t.index_select(0, order), y_t.index_select(0, order)
        for first in range(0, len(X_t), batch):
            optimizer.zero_grad(set_to_none=True)
            loss = loss_fn(model(X_shuffled[first:first + batch]), y_shuffled[first:first + batch])
            loss.backward()
            optimizer.step()
        scheduler.step()
        train_seconds += time.perf_counter() - epoch_start
        model.eval()
        with torch.inference_mode():
            accuracy = (model(X_test_t).argmax(1) == y_test_t).float().mean().item()
        epochs_log.append({"epoch": epoch, "seconds": train_seconds, "accuracy": accuracy})
        if accuracy >= target:
            break
    return summarize(f"PyTorch {torch.__version__}", epochs_log, target)


def summarize(tool, epochs_log, target):
    reached = [e for e in epochs_log if e["accuracy"] >= target]
    return {"tool": tool, "per_epoch": epochs_log,
            "seconds_to_target": reached[0]["seconds"] if reached else None,
            "epochs": len(epochs_log),
            "final_accuracy": epochs_log[-1]["accuracy"] if epochs_log else None}


def format_result(result, target):
    if result["seconds_to_target"] is None:
        reached = f"not reached in {result['epochs']} epochs"
    else:
        reached = f"{result['seconds_to_target']:.2f} s ({result['epochs']} epochs)"
    return (f"{result['tool']:<16} to {target:.1%}: {reached}; "
            f"final test accuracy {result['final_accuracy']:.2%}")


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", help="directory of the MNIST IDX files (default: $FASTBP_DATA)")
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1,
                   help="threads for both tools (default: all CPUs, %(default)s here)")
    p.add_argument("--max-epochs", type=int, default=10, help="stop after this many epochs (default 10)")
    p.add_argument("--target", type=float, default=0.98, help="test accuracy to reach (default 0.98)")
    p.add_argument("--quick", action="store_true",
                   help=f"smoke run: {QUICK_SAMPLES} images, target {QUICK_TARGET}, at most "
                        f"{QUICK_MAX_EPOCHS} epochs; PyTorch only if installed")
    p.add_argument("--json", metavar="PATH", help="also write the results as JSON to PATH")
    args = p.parse_args(argv)
    if args.threads < 1:
        p.error(f"--threads: expected a positive integer, got {args.threads}")
    if args.max_epochs < 1:
        p.error(f"--max-epochs: expected a positive integer, got {args.max_epochs}")
    if not 0 < args.target <= 1:
        p.error(f"--target: expected an accuracy in (0, 1], got {args.target}")
    if args.quick:
        args.target, args.max_epochs = QUICK_TARGET, min(args.max_epochs, QUICK_MAX_EPOCHS)
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        X, y = load_dataset("mnist", args.data, "train")
        X_test, y_test = load_dataset("mnist", args.data, "test")
    except UsageError as e:
        print(f"time_to_accuracy: {e}", file=sys.stderr)
        return 2
    if args.quick:
        X, y, X_test, y_test = X[:QUICK_SAMPLES], y[:QUICK_SAMPLES], X_test[:QUICK_SAMPLES], y_test[:QUICK_SAMPLES]
    X, X_test = np.ascontiguousarray(X, np.float32), np.ascontiguousarray(X_test, np.float32)

    have_torch = importlib.util.find_spec("torch") is not None
    if not have_torch and not args.quick:
        print("time_to_accuracy: PyTorch is not installed (pip install torch==2.13.0); "
              "the comparison needs it (--quick runs without it)", file=sys.stderr)
        return 2
    print(f"fastbp {fastbp.__version__}, recipe fast98 = {RECIPE}; {len(X)} train, {len(X_test)} test "
          f"images; {args.threads} threads; target {args.target:.1%}, at most {args.max_epochs} epochs",
          flush=True)

    results = [time_fastbp(X, y, X_test, y_test, args.target, args.max_epochs, args.threads)]
    print(format_result(results[0], args.target), flush=True)
    if have_torch:
        results.append(time_torch(X, y, X_test, y_test, args.target, args.max_epochs, args.threads))
        print(format_result(results[1], args.target), flush=True)
        fast, torch_ = (r["seconds_to_target"] for r in results)
        if fast is not None and torch_ is not None:
            print(f"ratio PyTorch / fastbp: {torch_ / fast:.2f}")
        else:
            print("ratio PyTorch / fastbp: n/a (a tool did not reach the target)")
    else:
        print("PyTorch: torch is not installed; skipped (--quick)")

    if args.json:
        with open(args.json, "w") as f:
            json.dump({"threads": args.threads, "target": args.target, "max_epochs": args.max_epochs,
                       "samples": len(X), "results": results}, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
