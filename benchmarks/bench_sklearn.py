"""fastbp.sklearn.MLPClassifier against scikit-learn's MLPClassifier on MNIST, both with
scikit-learn's default parameters apart from max_iter: fit wall time, test accuracy
and the speed ratio.

    FASTBP_DATA=/work/shared/data/mnist python benchmarks/bench_sklearn.py
    python benchmarks/bench_sklearn.py --train-samples 20000 --repeats 3 --markdown
    python benchmarks/bench_sklearn.py --fastbp-threads 1    # fastbp on one core

``--fastbp-threads`` limits fastbp's OpenMP threads during its fit only (through
``n_threads`` when this build's `Network.fit` takes it, else threadpoolctl), so
scikit-learn's BLAS keeps its own threads.

Both fit the same data (pixels / 255, float32 unless ``--dtype float64``; each
estimator computes in X's precision) with scikit-learn's defaults: one hidden layer
of 100 relu units, Adam (learning_rate_init 0.001, betas 0.9/0.999), batch 200,
alpha 1e-4; 5 epochs (``--epochs``), random_state 0. Each estimator is fitted
``--repeats`` times and the fastest fit is reported (the accuracy is that fit's).
"""
import argparse
import os
import platform
import sys
import time
import warnings

import contextlib
import inspect

import numpy as np
import sklearn
from sklearn import neural_network as skl_nn
from sklearn.exceptions import ConvergenceWarning

import fastbp
from fastbp.datasets import load_mnist
from fastbp.sklearn import MLPClassifier

PARAMS = dict(max_iter=5, random_state=0)     # everything else: scikit-learn's defaults


def load(path, train_samples, dtype):
    X, y = load_mnist(path, kind="train")
    X_test, y_test = load_mnist(path, kind="test")
    X = np.ascontiguousarray(X[:train_samples], dtype=dtype) / dtype(255)
    X_test = X_test.astype(dtype) / dtype(255)
    return X, y[:train_samples], X_test, y_test


def fastbp_estimator(params, n_threads):
    """The fastbp estimator, and the context its fit runs in, for n_threads."""
    if n_threads is None:
        return MLPClassifier(**params), contextlib.nullcontext()
    if "n_threads" in inspect.signature(fastbp.Network.fit).parameters:
        return MLPClassifier(**params, n_threads=n_threads), contextlib.nullcontext()
    from threadpoolctl import threadpool_limits
    return MLPClassifier(**params), threadpool_limits(limits=n_threads, user_api="openmp")


def time_fit(make, X, y, X_test, y_test, repeats):
    """(fastest fit in seconds, test accuracy of that fit); make() gives the model and
    the context to fit it in."""
    best = None
    for _ in range(repeats):
        model, context = make()
        with context, warnings.catch_warnings():
            warnings.simplefilter("ignore", ConvergenceWarning)
            start = time.perf_counter()
            model.fit(X, y)
            seconds = time.perf_counter() - start
        if best is None or seconds < best[0]:
            best = (seconds, model.score(X_test, y_test))
    return best


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default=os.environ.get("FASTBP_DATA"),
                        help="directory of the MNIST IDX files (default $FASTBP_DATA)")
    parser.add_argument("--train-samples", type=int, default=60_000)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--fastbp-threads", type=int, default=None,
                        help="threads for fastbp's fit (default: fastbp's own default)")
    parser.add_argument("--epochs", type=int, default=PARAMS["max_iter"], help="max_iter")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--markdown", action="store_true", help="print a Markdown table")
    args = parser.parse_args(argv)
    X, y, X_test, y_test = load(args.data, args.train_samples, getattr(np, args.dtype))
    params = dict(PARAMS, max_iter=args.epochs)

    rows = [("fastbp.sklearn.MLPClassifier",
             *time_fit(lambda: fastbp_estimator(params, args.fastbp_threads), X, y, X_test,
                       y_test, args.repeats)),
            ("sklearn.neural_network.MLPClassifier",
             *time_fit(lambda: (skl_nn.MLPClassifier(**params), contextlib.nullcontext()),
                       X, y, X_test, y_test, args.repeats))]
    ours, theirs = rows[0], rows[1]

    info = fastbp.info() if hasattr(fastbp, "info") else {}
    print(f"MNIST: {len(X)} training, {len(X_test)} test samples, {args.dtype}; "
          f"scikit-learn's defaults and {params}")
    env = {k: os.environ[k] for k in ("OMP_NUM_THREADS", "FASTBP_NUM_THREADS", "FASTBP_CPU")
           if k in os.environ}
    threads = args.fastbp_threads or info.get("threads", "default")
    print(f"fastbp {fastbp.__version__} ({info.get('code_path', '?')} kernels, threads={threads}"
          f"{', ' + str(env) if env else ''}), scikit-learn {sklearn.__version__}, "
          f"numpy {np.__version__}, {info.get('cpu') or platform.machine()}, "
          f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}")
    header = ("estimator", "fit seconds", "test accuracy")
    if args.markdown:
        print(f"| {' | '.join(header)} |\n|---|---:|---:|")
        for name, seconds, accuracy in rows:
            print(f"| {name} | {seconds:.2f} | {accuracy:.4f} |")
    else:
        print(f"{header[0]:<40}{header[1]:>12}{header[2]:>15}")
        for name, seconds, accuracy in rows:
            print(f"{name:<40}{seconds:>12.2f}{accuracy:>15.4f}")
    print(f"speed ratio (scikit-learn / fastbp fit time): {theirs[1] / ours[1]:.1f}x; "
          f"accuracy difference (fastbp - scikit-learn): {100 * (ours[2] - theirs[2]):+.2f} points")
    return 0


if __name__ == "__main__":
    sys.exit(main())
