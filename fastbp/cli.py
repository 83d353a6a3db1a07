"""The `fastbp` command (also `python -m fastbp`).

    fastbp train [--recipe fast98] [--layers 784,256,10] [--epochs 5] [--save model.fbp] ...
    fastbp evaluate model.fbp          # loss, accuracy, confusion matrix on the test set
    fastbp predict model.fbp images    # labels and probabilities for IDX or .npy images
    fastbp export model.fbp model.onnx # the model as an ONNX graph (pip install "fastbp[onnx]")
    fastbp info                        # version, code path, threads, NumPy/BLAS
    fastbp bench ...                   # the benchmarks, when installed

Every user mistake (a missing file, a bad --layers string, a model that does not
fit the data) ends in one line on stderr and exit status 2, never a traceback;
set FASTBP_DEBUG=1 to see the traceback anyway.
"""
import argparse
import importlib
import importlib.util
import json
import os
import platform
import re
import sys
import textwrap
import time

import numpy as np

from . import datasets, interop
from ._platform import numpy_blas
from ._validation import check_integer, check_nonnegative, check_positive, check_real
from ._version import __version__
from .network import ACTIVATIONS, OPTIMIZERS, Network, load
from .optim import SCHEDULES, Schedule

EXIT_USAGE = 2          # a user mistake: bad argument, missing file, incompatible data
EXIT_DIVERGED = 1       # training blew up (NaN/inf loss, or a loss DIVERGED_FACTOR x the start's)
DIVERGED_FACTOR = 100
EXIT_INTERRUPTED = 130  # Ctrl-C, as shells report it
EXIT_BROKEN_PIPE = 141  # the reader of stdout went away, as shells report SIGPIPE
TRAIN_ACCURACY_ROWS = 10_000   # train accuracy is measured on this many training images

# Defaults of `fastbp train`; a recipe overrides some, explicit flags override both.
TRAIN_DEFAULTS = {
    "layers": "784,256,10", "activation": "relu", "optimizer": "sgd", "lr": 0.05,
    "batch_size": 32, "epochs": 5, "momentum": 0.9, "nesterov": False, "weight_decay": 0.0,
    "schedule": "constant", "step_size": 10, "gamma": 0.1, "decay": 1e-4, "tol": None,
    "seed": 0, "val_size": 0, "dtype": "float32", "beta1": None, "beta2": None, "eps": None,
}
# What --optimizer adam/adamw changes in the defaults above (PyTorch's Adam defaults);
# flags given explicitly still win, and momentum given with Adam is refused by fit.
ADAM_DEFAULTS = {"lr": 1e-3, "momentum": 0.0, "beta1": 0.9, "beta2": 0.999, "eps": 1e-8}
ADAM_OPTIMIZERS = ("adam", "adamw", "adam_sklearn")
# --optimizer lbfgs: no momentum (fit refuses it); --epochs is its iteration limit.
LBFGS_DEFAULTS = {"momentum": 0.0}
# Named sets of flags. fast98 reaches >= 98.0% MNIST test accuracy: measured 97.6-97.7%
# after four epochs at lr 0.1, then 98.2-98.3% after one and 98.25-98.34% after two
# more at lr 0.01 (two builds of the core); 8 epochs with the step at epoch 7 gave
# 98.42%. The wide hidden layer and the step down of the learning rate buy the last
# tenths of a percent.
RECIPES = {
    "fast98": {"layers": "784,512,10", "activation": "relu", "optimizer": "sgd", "lr": 0.1,
               "batch_size": 64, "epochs": 6, "momentum": 0.9, "schedule": "step",
               "step_size": 4, "gamma": 0.1, "seed": 0},
}


class UsageError(Exception):
    """A mistake of the user's: reported as one line, exit status 2; `details`, when
    given, follow on lines of their own (where a file was looked for, say)."""

    def __init__(self, message, details=None):
        super().__init__(message)
        self.details = details


# -- argument helpers ----------------------------------------------------------------
def parse_layers(text):
    """"784,256,10" -> [784, 256, 10]; raises UsageError on anything else.

    >>> parse_layers("784, 128,10")
    [784, 128, 10]
    """
    parts = [p.strip() for p in str(text).split(",")]
    try:
        sizes = [int(p) for p in parts]
    except ValueError:
        sizes = None
    if not sizes or len(sizes) < 2 or min(sizes) < 1:
        raise UsageError(f"--layers: expected comma-separated positive integers, input first and "
                         f"output last, like 784,256,10; got {text!r}")
    return sizes


def argument(convert, check, expected):
    """An argparse type: the text converted, then checked by the Python API's own check
    (fastbp._validation), so both refuse the same values."""
    def parse(text):
        try:
            return check(convert(text))
        except (ValueError, TypeError, OverflowError):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
    return parse


def positive(kind):
    return argument(kind, lambda v: check_positive("value", v, integer=kind is int),
                    f"a positive {kind.__name__}")


nonnegative_float = argument(float, lambda v: check_nonnegative("value", v), "a number >= 0")
nonnegative_int = argument(int, lambda v: check_integer("value", v, 0), "an integer >= 0")


# -- data --------------------------------------------------------------------------
DATASET_LOADERS = {"mnist": "load_mnist", "fashion-mnist": "load_fashion_mnist"}


def load_dataset(name, data_dir, kind, download=True):
    """Images scaled to [0, 1] as float32 (n, 784) and labels, or UsageError saying
    where fastbp looked and how to provide the files."""
    loader = getattr(datasets, DATASET_LOADERS[name])
    if data_dir is not None and not os.path.isdir(data_dir):
        raise UsageError(f"--data {data_dir}: no such directory")
    # A folder given with --data is where the files are: nothing is downloaded then.
    download = download and data_dir is None
    kwargs = {"path": data_dir, "kind": kind, "download": download}
    try:
        images, labels = loader(**kwargs)
    except FileNotFoundError as e:   # includes datasets.DataNotFoundError
        env = os.environ.get("FASTBP_DATA")
        where = f"--data {data_dir}" if data_dir is not None else \
            f"FASTBP_DATA={env}" if env else "the cache"
        raise UsageError(f"no {name} {kind} files in {where}"
                         + (" and none could be downloaded" if download else "")
                         + ": pass --data DIR or set FASTBP_DATA=DIR, a folder with the four "
                           "IDX files (.gz or not). Details:", details=str(e)) from None
    return scale_images(images), labels


def scale_images(images, dtype=np.float32):
    """uint8 pixels -> dtype in [0, 1]; float images are taken as already scaled."""
    images = np.asarray(images)
    if images.ndim == 3:
        images = images.reshape(len(images), -1)
    if images.ndim != 2:
        raise UsageError(f"images must be (n, pixels) or (n, rows, cols), got shape {images.shape}")
    if np.issubdtype(images.dtype, np.integer):
        return (images / np.float32(255)).astype(dtype)
    if np.issubdtype(images.dtype, np.floating):
        return np.ascontiguousarray(images, dtype=dtype)
    raise UsageError(f"images must hold integer pixels or floats, got dtype {images.dtype}")


def check_model_fits(net, n_features, n_classes, what):
    if net.layer_sizes[0] != n_features:
        raise UsageError(f"the model takes {net.layer_sizes[0]} inputs but {what} has "
                         f"{n_features} pixels per image")
    if n_classes is not None and (net.loss != "cross_entropy" or net.layer_sizes[-1] != n_classes):
        raise UsageError(f"the model has {net.layer_sizes[-1]} {net.loss} outputs but {what} "
                         f"needs a {n_classes}-class cross_entropy classifier")


# -- train ---------------------------------------------------------------------------
class Progress:
    """A one-line progress bar on a terminal; silent otherwise."""

    def __init__(self, stream, enabled):
        self.stream, self.enabled = stream, enabled
        self.last_draw = 0.0

    def update(self, epoch, epochs, done, total, seconds, running_loss, force=False):
        now = time.perf_counter()
        if not self.enabled or (not force and now - self.last_draw < 0.1):
            return
        self.last_draw = now
        width = 30
        filled = int(width * done / total)
        rate = done / seconds if seconds > 0 else 0.0
        self.stream.write(f"\repoch {epoch}/{epochs} [{'#' * filled}{'.' * (width - filled)}] "
                          f"{done}/{total}  {rate:,.0f} samples/s  loss {running_loss:.4f} ")
        self.stream.flush()

    def clear(self):
        if self.enabled:
            self.stream.write("\r\033[K")
            self.stream.flush()


def resolve_train_settings(args):
    settings = dict(TRAIN_DEFAULTS)
    if args.recipe is not None:
        settings.update(RECIPES[args.recipe])
    given = {key: getattr(args, key, None) for key in TRAIN_DEFAULTS}
    optimizer = given["optimizer"] or settings["optimizer"]
    if optimizer in ADAM_OPTIMIZERS:
        settings.update(ADAM_DEFAULTS)
    elif optimizer == "lbfgs":
        settings.update(LBFGS_DEFAULTS)
    for key, value in given.items():
        if value is not None and value is not False:
            settings[key] = value
    settings["layer_sizes"] = parse_layers(settings["layers"])
    return settings


def mpi_world():
    """MPI.COMM_WORLD, for --distributed; UsageError without mpi4py."""
    try:
        from mpi4py import MPI
    except ImportError:
        raise UsageError("--distributed needs mpi4py and an MPI: pip install 'fastbp[mpi]', "
                         "then run it under mpiexec -n N") from None
    return MPI.COMM_WORLD


def shard(a, rank, n_ranks):
    """Rank's part of a, contiguous rows, the parts' sizes differing by at most one."""
    bounds = np.linspace(0, len(a), n_ranks + 1).round().astype(int)
    return a[bounds[rank]:bounds[rank + 1]]


def cmd_train(args, out):
    s = resolve_train_settings(args)
    threads = {} if args.threads is None else {"n_threads": args.threads}
    for path, flag in ((args.save, "--save"), (args.plot, "--plot"), (args.plot_weights, "--plot-weights"),
                       (args.checkpoint, "--checkpoint"),
                       (args.json, "--json")):
        if path is not None and not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise UsageError(f"{flag} {path}: directory {os.path.dirname(os.path.abspath(path))} does not exist")
    if (args.plot or args.plot_weights) and importlib.util.find_spec("matplotlib") is None:
        raise UsageError("--plot and --plot-weights need matplotlib: pip install fastbp[plot]")

    X, y = load_dataset(args.dataset, args.data, "train", download=not args.no_download)
    X_test, y_test = load_dataset(args.dataset, args.data, "test", download=not args.no_download)
    sizes = s["layer_sizes"]
    if sizes[0] != X.shape[1] or sizes[-1] != 10:
        raise UsageError(f"--layers {s['layers']}: {args.dataset} needs {X.shape[1]} inputs and "
                         f"10 outputs, like {X.shape[1]},256,10")
    if s["val_size"] >= len(X):
        raise UsageError(f"--val-size {s['val_size']} leaves no training images (there are {len(X)})")
    if s["val_size"]:
        X, X_val, y, y_val = X[:-s["val_size"]], X[-s["val_size"]:], y[:-s["val_size"]], y[-s["val_size"]:]
        val_name = "val"
    else:
        X_val, y_val, val_name = X_test, y_test, "test"   # reported only, never used to train
    comm, rank, n_ranks = None, 0, 1
    if args.distributed:
        comm = mpi_world()
        rank, n_ranks = comm.Get_rank(), comm.Get_size()
        if rank != 0:   # rank 0 speaks and writes for all
            out = open(os.devnull, "w")
        X, y = shard(X, rank, n_ranks), shard(y, rank, n_ranks)
        if s["val_size"]:   # the validation scores are summed over the ranks' parts
            X_val, y_val = shard(X_val, rank, n_ranks), shard(y_val, rank, n_ranks)
    X = X.astype(s["dtype"], copy=False)
    try:
        net = Network(sizes, activation=s["activation"], loss="cross_entropy", dtype=s["dtype"],
                      seed=s["seed"], **threads)
        Schedule(s["schedule"], s["lr"], decay=s["decay"], step_size=s["step_size"],
                 gamma=s["gamma"], tol=s["tol"])   # checks the settings before loading starts
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None

    recipe = f" (recipe {args.recipe})" if args.recipe else ""
    ranks = f" over {n_ranks} MPI ranks (rank 0's shard: {len(X)})" if comm is not None else ""
    print(f"fastbp {__version__}: training {'-'.join(map(str, sizes))} {s['activation']} on "
          f"{args.dataset}{recipe}{ranks}: {len(X)} train, {len(X_val)} {val_name} images; {s['optimizer']} "
          + ("(full batch) " if s["optimizer"] == "lbfgs" else f"lr {s['lr']:g} ")
          + (f"betas ({s['beta1']:g}, {s['beta2']:g}) eps {s['eps']:g} " if s["optimizer"] in ADAM_OPTIMIZERS
             else "" if s["optimizer"] == "lbfgs" else f"momentum {s['momentum']:g} ")
          + ("" if s["optimizer"] == "lbfgs" else f"batch {s['batch_size']} schedule {s['schedule']}, ")
          + (f"at most {s['epochs']} iterations" if s["optimizer"] == "lbfgs" else
             f"{s['epochs']} epoch{'s' if s['epochs'] != 1 else ''}"), file=out, flush=True)
    print(f"(train acc is measured on the first {min(TRAIN_ACCURACY_ROWS, len(X))} training images)",
          file=out, flush=True)
    progress = Progress(out, enabled=out.isatty())
    rows = []
    initial_loss = net.evaluate(X[:TRAIN_ACCURACY_ROWS], y[:TRAIN_ACCURACY_ROWS])["loss"]

    def report(p):
        """fit's callback: the progress bar during an epoch, a line at its end."""
        if not p.end_of_epoch:
            progress.update(p.epoch, p.epochs, p.samples, p.n_samples, p.seconds, p.loss)
            return
        progress.clear()
        if rank != 0:
            return
        train_acc = net.evaluate(X[:TRAIN_ACCURACY_ROWS], y[:TRAIN_ACCURACY_ROWS])["accuracy"]
        val = net.evaluate(X_val, y_val)
        lr = p.history.lr[-1] if p.history.lr else None   # (L-BFGS has none)
        rows.append({"epoch": p.epoch, "loss": p.loss, "train_accuracy": train_acc,
                     "val_loss": val["loss"], "val_accuracy": val["accuracy"],
                     "seconds": p.seconds, "lr": lr})
        what = "iteration" if s["optimizer"] == "lbfgs" else "epoch"
        lr_text = "" if lr is None else f"  lr {lr:.3g}"
        print(f"{what} {p.epoch:>2}/{p.epochs}  loss {p.loss:.4f}  train acc {train_acc:.4f}  "
              f"{val_name} acc {val['accuracy']:.4f}{lr_text}  {p.seconds:.2f} s", file=out,
              flush=True)

    # The schedule watches the validation loss if there is a validation split, else
    # the training loss: the test set never steers training.
    # ADAM_DEFAULTS fills these in for Adam; given with SGD, fit names them as Adam's.
    adam = {} if s["beta1"] is None and s["beta2"] is None and s["eps"] is None else \
        {"betas": (s["beta1"], s["beta2"]), "eps": s["eps"]}
    hist = net.fit(X, y, optimizer=s["optimizer"], lr=s["lr"], batch_size=s["batch_size"], **adam,
                   epochs=s["epochs"], momentum=s["momentum"], nesterov=s["nesterov"],
                   weight_decay=s["weight_decay"], schedule=s["schedule"], tol=s["tol"],
                   decay=s["decay"], step_size=s["step_size"], gamma=s["gamma"],
                   validation_data=(X_val, y_val) if s["val_size"] else None, callback=report,
                   checkpoint=args.checkpoint, checkpoint_every=args.checkpoint_every,
                   resume=args.resume, comm=comm,
                   **({} if args.sync_every is None else {"sync_every": args.sync_every}))
    if hist.stopped_early:
        print(f"stopped early: the loss did not improve by {s['tol']} for 5 epochs", file=out)
    updates, train_seconds = hist.n_updates, sum(hist.epoch_seconds)

    if rank != 0:   # the weights are rank 0's; it reports and saves them
        return 0
    test = net.evaluate(X_test, y_test)
    us_per_update = 1e6 * train_seconds / max(updates, 1)
    print(f"test accuracy {test['accuracy']:.4f}  test loss {test['loss']:.4f}  "
          f"({updates} updates, {us_per_update:.1f} µs per update, {train_seconds:.1f} s training)",
          file=out, flush=True)

    final_loss = hist.loss[-1]   # the last epoch's mean, as printed
    if not final_loss < DIVERGED_FACTOR * initial_loss:
        # No NaN stopped it, but the weights are useless: say so and do not save them.
        print(f"fastbp train: training diverged: the training loss rose from {initial_loss:.3g} "
              f"to {final_loss:.3g}. Try a smaller --lr (this run: {s['lr']:g})"
              + ("; the model was not saved." if args.save else "."), file=sys.stderr)
        return EXIT_DIVERGED
    if args.save:
        net.save(args.save)
        print(f"saved the model to {args.save}", file=out)
    if args.plot or args.plot_weights:
        from . import plot
        if args.plot:
            plot.history({"loss": [r["loss"] for r in rows], "val_loss": [r["val_loss"] for r in rows],
                          "accuracy": [r["train_accuracy"] for r in rows],
                          "val_accuracy": [r["val_accuracy"] for r in rows]},
                         args.plot, val_label=val_name)
            print(f"wrote the training curves to {args.plot}", file=out)
        if args.plot_weights:
            plot.weights(net, args.plot_weights)
            print(f"wrote the first layer's weights to {args.plot_weights}", file=out)
    if args.json:
        summary = {"fastbp_version": __version__, "dataset": args.dataset, "recipe": args.recipe,
                   "settings": {k: v for k, v in s.items() if k != "layers"},
                   "threads": getattr(net, "n_threads", None), "isa": _isa(), "epochs": rows,
                   "test_loss": test["loss"], "test_accuracy": test["accuracy"],
                   "n_updates": updates, "train_seconds": train_seconds,
                   "us_per_update": us_per_update, "saved_model": args.save}
        with open(args.json, "w") as f:
            json.dump(summary, f, indent=2)
        print(f"wrote the summary to {args.json}", file=out)
    return 0


# -- evaluate / predict ----------------------------------------------------------------
def load_model(path):
    try:
        return load(path)
    except FileNotFoundError as e:
        raise UsageError(str(e)) from None
    except ValueError as e:
        raise UsageError(str(e)) from None


def confusion_matrix(labels, predicted, n_classes):
    """counts[i, j] = images of class i predicted as j.

    >>> confusion_matrix([0, 1, 1], [0, 1, 0], 2).tolist()
    [[1, 0], [1, 1]]
    """
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (np.asarray(labels), np.asarray(predicted)), 1)
    return counts


def cmd_evaluate(args, out):
    net = load_model(args.model)
    X, y = load_dataset(args.dataset, args.data, args.kind, download=not args.no_download)
    check_model_fits(net, X.shape[1], 10, f"{args.dataset} ({args.kind})")
    X = X.astype(net.dtype, copy=False)
    scores = net.evaluate(X, y)
    counts = confusion_matrix(y, net.predict(X), 10)
    print(f"{args.model} on {args.dataset} {args.kind} ({len(X)} images): loss {scores['loss']:.4f}  "
          f"accuracy {scores['accuracy']:.4f}", file=out)
    print("confusion matrix (rows: true class, columns: predicted class):", file=out)
    print("      " + "".join(f"{j:>6}" for j in range(10)), file=out)
    for i in range(10):
        print(f"{i:>6}" + "".join(f"{c:>6}" for c in counts[i]), file=out)
    return 0


def read_images(path):
    """Images from an IDX file (gzipped or not) or a .npy array (no pickles)."""
    if not os.path.isfile(path):
        raise UsageError(f"{path}: no such file")
    kinds = ("predict reads an IDX image file (as MNIST's, .gz or not) or a .npy array of "
             "shape (n, 784) or (n, 28, 28)")
    if path.endswith(".npy"):
        try:
            images = np.load(path, allow_pickle=False)
        except (ValueError, OSError, EOFError) as e:
            raise UsageError(f"{path}: not a readable .npy array ({e}); {kinds}") from None
    else:
        try:
            images = datasets.read_idx(path, datasets.IMAGES_MAGIC)
        except ValueError as e:
            raise UsageError(f"{e}; {kinds}") from None
    return scale_images(images)


def cmd_predict(args, out):
    net = load_model(args.model)
    X = read_images(args.images)
    check_model_fits(net, X.shape[1], None, args.images)
    X = X.astype(net.dtype, copy=False)
    if net.loss == "cross_entropy":
        proba = net.predict_proba(X)
        labels = proba.argmax(axis=1)
        if args.all:
            print("index label " + " ".join(f"p{k:<5}" for k in range(proba.shape[1])), file=out)
            for i, (label, p) in enumerate(zip(labels, proba)):
                print(f"{i:>5} {label:>5} " + " ".join(f"{v:.4f}" for v in p), file=out)
        else:
            print("index label probability", file=out)
            for i, label in enumerate(labels):
                print(f"{i:>5} {label:>5} {proba[i, label]:.4f}", file=out)
    else:
        outputs = net.predict(X).reshape(len(X), -1)
        print("index outputs", file=out)
        for i, row in enumerate(outputs):
            print(f"{i:>5} " + " ".join(f"{v:.6g}" for v in row), file=out)
    return 0


def cmd_export(args, out):
    net = load_model(args.model)
    try:
        net.to_onnx(args.onnx, opset=args.opset)
    except ImportError as e:
        raise UsageError(str(e)) from None
    print(f"wrote {args.onnx} (ONNX opset {args.opset}: input 'input', outputs "
          + ("'probabilities' and 'label'" if net.loss in ("cross_entropy", "binary_cross_entropy")
             else "'predictions'") + ")", file=out)
    return 0


# -- info / bench ------------------------------------------------------------------------
def _isa():
    from . import _core
    return _core.get_isa()


def cmd_info(args, out):
    import fastbp
    details = dict(fastbp.info())
    details["numpy"] = np.__version__
    details["numpy_blas"] = numpy_blas() + " (NumPy's; fastbp's C core uses its own kernels)"
    details["python"] = platform.python_version()
    details["platform"] = platform.platform()
    details["cpus"] = os.cpu_count()
    if args.json:
        print(json.dumps(details, indent=2, default=str), file=out)
    else:
        width = max(map(len, details))
        for key, value in details.items():
            print(f"{key:<{width}}  {value}", file=out)
    return 0


def cmd_profile(args, out):
    """Time updates inside C, phase by phase (Network.profile), on random inputs or,
    with --mnist, on the MNIST training images."""
    sizes = parse_layers(args.layers)
    dataset = args.dataset or ("mnist" if args.mnist else None)  # --dataset alone means real images
    if dataset:
        X, y = load_dataset(dataset, args.data, "train", download=not args.no_download)
        if sizes[0] != X.shape[1]:
            raise UsageError(f"--layers {args.layers}: {dataset} needs {X.shape[1]} inputs")
        X, y = scale_images(X), y % sizes[-1]
    else:
        rng = np.random.default_rng(0)
        n = max(args.batch_size * 16, 1024)
        X = rng.random((n, sizes[0]), dtype=np.float32)
        y = rng.integers(0, sizes[-1], n)
    try:
        net = Network(sizes, seed=0, n_threads=args.threads)
        p = net.profile(X, y, batch_size=args.batch_size, steps=args.steps)
    except (ValueError, TypeError) as e:
        raise UsageError(str(e)) from None
    print(f"fastbp {__version__} profile: {'-'.join(map(str, sizes))} relu, batch {p['batch_size']}, "
          f"{p['steps']} updates, {p['n_threads']} thread(s), code path {p['code_path']}, "
          f"{dataset + ' training images' if dataset else 'random dense inputs'}", file=out)
    print(f"{'phase':<10} {'us/update':>10} {'share':>7}", file=out)
    for phase, us in p["phase_us"].items():
        share = us / p["total_us"] if p["total_us"] > 0 else 0.0
        print(f"{phase:<10} {us:>10.1f} {share:>7.1%}", file=out)
    print(f"{'total':<10} {p['total_us']:>10.1f}   ({p['gflops']:.1f} GFLOP/s, "
          f"{p['flops_per_update'] / 1e6:.2f} MFLOP per update)", file=out)
    if p["fused"]:
        print(f"(at batch {p['batch_size']} the SGD step is fused into the backward pass: "
              "'update' is part of 'backward')", file=out)
    return 0


def cmd_bench(args, out):
    if importlib.util.find_spec("fastbp.bench") is None:
        raise UsageError("this fastbp has no benchmark module (fastbp.bench); see benchmarks/ in "
                         "the source tree")
    result = importlib.import_module("fastbp.bench").main(args.bench_args, prog="fastbp bench")
    return 0 if result is None else int(result)


# -- the parser ---------------------------------------------------------------------------
def add_data_options(p):
    p.add_argument("--dataset", choices=sorted(DATASET_LOADERS), default="mnist",
                   help="which images (default mnist)")
    p.add_argument("--data", metavar="DIR", help="directory of the IDX files (default: $FASTBP_DATA)")
    p.add_argument("--no-download", action="store_true",
                   help="never download missing files (when the data loader can download)")


class OneLineParser(argparse.ArgumentParser):
    """argparse, but a usage mistake is one line (argparse prints its whole usage block
    first, burying the message)."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def as_flags(settings):
    """{"batch_size": 64, "nesterov": False} -> "--batch-size 64": settings as typed."""
    return " ".join(f"--{k.replace('_', '-')}" + ("" if v is True else f" {v}")
                    for k, v in settings.items() if v is not None and v is not False)


def build_parser():
    parser = OneLineParser(prog="fastbp", description="Train and use MLPs whose training runs in C.")
    parser.add_argument("--version", action="version", version=f"fastbp {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True

    wrap = lambda text: textwrap.fill(text, 78, break_on_hyphens=False)  # noqa: E731
    t = sub.add_parser("train", help="train an MLP on MNIST",
                       formatter_class=argparse.RawDescriptionHelpFormatter,
                       description="\n\n".join(
                           [wrap("Train an MLP on MNIST. Defaults: " + as_flags(TRAIN_DEFAULTS) + ".")]
                           + [wrap(f"--recipe {name} stands for {as_flags(r)}.") for name, r in RECIPES.items()]))
    add_data_options(t)
    t.add_argument("--recipe", choices=sorted(RECIPES), help="a named set of the flags below")
    t.add_argument("--layers", help="units per layer, input first (default 784,256,10)")
    t.add_argument("--activation", choices=sorted(ACTIVATIONS), help="of the hidden layers")
    t.add_argument("--optimizer", choices=OPTIMIZERS,
                   help="sgd (mini-batch), gd (full batch), adam or adamw (PyTorch's; their "
                        "defaults: --lr 0.001 --momentum 0 --beta1 0.9 --beta2 0.999 --eps 1e-8)")
    t.add_argument("--beta1", type=argument(float, lambda v: check_real("value", v, 0.0, 1.0), "a number in [0, 1)"),
                   help="Adam: decay of the first moment")
    t.add_argument("--beta2", type=argument(float, lambda v: check_real("value", v, 0.0, 1.0), "a number in [0, 1)"),
                   help="Adam: decay of the second moment")
    t.add_argument("--eps", type=positive(float), help="Adam: added to the root of the second moment")
    t.add_argument("--lr", type=positive(float), help="learning rate: the step is lr times the gradient")
    t.add_argument("--batch-size", dest="batch_size", type=positive(int), help="samples per update (sgd)")
    t.add_argument("--epochs", type=positive(int), help="passes over the training images")
    t.add_argument("--momentum", type=nonnegative_float, help="in [0, 1): the share of the last step kept")
    t.add_argument("--nesterov", action="store_true", help="Nesterov momentum (needs --momentum > 0)")
    t.add_argument("--weight-decay", dest="weight_decay", type=nonnegative_float,
                   help="L2 penalty on the weights (not the biases)")
    t.add_argument("--schedule", choices=SCHEDULES, help="how lr changes over the epochs")
    t.add_argument("--step-size", dest="step_size", type=positive(int), help="epochs per step (schedule step)")
    t.add_argument("--gamma", type=positive(float), help="lr factor per step (schedule step)")
    t.add_argument("--decay", type=nonnegative_float, help="per-update decay (schedule invscaling)")
    t.add_argument("--tol", type=nonnegative_float, help="stop when the loss stops improving by this")
    t.add_argument("--val-size", dest="val_size", type=nonnegative_int,
                   help="hold out the last N training images for validation (default 0: report "
                        "test accuracy per epoch instead, without training on it)")
    t.add_argument("--dtype", choices=("float32", "float64"), help="of the weights and the arithmetic")
    t.add_argument("--seed", type=int, help="initial weights and shuffling: the same seed, the same run")
    t.add_argument("--threads", type=positive(int), help="threads per update (default: $FASTBP_NUM_THREADS or all CPUs)")
    t.add_argument("--save", metavar="MODEL.fbp", help="write the trained model there")
    t.add_argument("--checkpoint", metavar="RUN.ckpt",
                   help="write the run there (weights, optimizer and shuffle state, history) "
                        "after every --checkpoint-every epochs, for --resume")
    t.add_argument("--checkpoint-every", dest="checkpoint_every", type=positive(int), default=1,
                   metavar="N", help="epochs between checkpoints (default 1)")
    t.add_argument("--distributed", action="store_true",
                   help="data-parallel over MPI: run under mpiexec -n N; each rank trains on its "
                        "shard of the images, rank 0 prints and saves (pip install 'fastbp[mpi]')")
    t.add_argument("--sync-every", dest="sync_every", type=positive(int), metavar="K",
                   help="with --distributed: local SGD, the ranks average their weights every K "
                        "steps instead of adding gradients every step")
    t.add_argument("--resume", metavar="RUN.ckpt",
                   help="continue the run a --checkpoint wrote (the same flags and data)")
    t.add_argument("--plot", metavar="RUN.png", help="loss and accuracy per epoch")
    t.add_argument("--plot-weights", dest="plot_weights", metavar="WEIGHTS.png",
                   help="the first layer's weights as 28x28 tiles")
    t.add_argument("--json", metavar="SUMMARY.json", help="write a machine-readable summary")
    t.set_defaults(run=cmd_train)

    e = sub.add_parser("evaluate", help="loss, accuracy and confusion matrix of a saved model")
    e.add_argument("model", help="a model file written by --save or Network.save")
    add_data_options(e)
    e.add_argument("--kind", choices=("test", "train"), default="test", help="which images (default test)")
    e.set_defaults(run=cmd_evaluate)

    p = sub.add_parser("predict", help="labels and probabilities for images")
    p.add_argument("model", help="a model file written by --save or Network.save")
    p.add_argument("images", help="an IDX image file (.gz or raw) or a .npy array (n, 784) or (n, 28, 28)")
    p.add_argument("--all", action="store_true", help="print every class probability")
    p.set_defaults(run=cmd_predict)

    x = sub.add_parser("export", help="write a saved model as an ONNX graph")
    x.add_argument("model", help="a model file written by --save or Network.save")
    x.add_argument("onnx", metavar="MODEL.onnx", help="where to write the ONNX model")
    x.add_argument("--opset", type=argument(int, lambda v: check_integer("value", v, interop.MIN_OPSET),
                                            f"an integer >= {interop.MIN_OPSET}"),
                   default=interop.DEFAULT_OPSET, help=f"ONNX opset (default {interop.DEFAULT_OPSET})")
    x.set_defaults(run=cmd_export)

    i = sub.add_parser("info", help="version, code path, threads, NumPy/BLAS")
    i.add_argument("--json", action="store_true", help="as JSON")
    i.set_defaults(run=cmd_info)

    r = sub.add_parser("profile", help="time one update inside C, phase by phase")
    r.add_argument("--layers", default="784,256,10", help="units per layer (default 784,256,10)")
    r.add_argument("--batch-size", type=positive(int), default=32, help="samples per update (default 32)")
    r.add_argument("--steps", type=positive(int), default=None,
                   help="updates timed, after a warm-up (default: about 0.5 s of them)")
    r.add_argument("--threads", type=positive(int), default=None, help="default: all CPUs")
    r.add_argument("--mnist", action="store_true", help="MNIST training images instead of random ones")
    add_data_options(r)
    r.set_defaults(dataset=None)  # given, --dataset picks real images as --mnist does
    r.set_defaults(run=cmd_profile)

    b = sub.add_parser("bench", help="run the benchmarks (arguments passed on)", add_help=False)
    b.add_argument("bench_args", nargs=argparse.REMAINDER)
    b.set_defaults(run=cmd_bench)
    return parser


def main(argv=None):
    """Run the command line; returns the exit status.

    >>> main(["info"])        # doctest: +SKIP
    0
    """
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    try:
        if argv[:1] == ["bench"]:
            # Everything after "bench" belongs to the benchmark's own parser, options
            # included (argparse's REMAINDER would reject a leading "--option").
            args = argparse.Namespace(command="bench", run=cmd_bench, bench_args=argv[1:])
        else:
            args = parser.parse_args(argv)
    except SystemExit as e:   # --help, --version, or argparse's own one-line usage error
        return e.code if isinstance(e.code, int) else EXIT_USAGE
    out = sys.stdout
    try:
        return args.run(args, out)
    except BrokenPipeError:
        # The reader went away (`fastbp predict ... | head`): stop quietly, as programs
        # killed by SIGPIPE do, and keep Python from reporting the unflushed stdout.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_BROKEN_PIPE
    except UsageError as e:
        message = f"fastbp {args.command}: error: {e}"
        if e.details:
            print(one_line(message), file=sys.stderr)
            print(textwrap.indent(e.details.strip(), "  "), file=sys.stderr)
            return EXIT_USAGE
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        message = f"fastbp {args.command}: error: {e}"
    except (ValueError, TypeError) as e:
        if os.environ.get("FASTBP_DEBUG"):
            raise
        message = f"fastbp {args.command}: error: {e}"
    except FloatingPointError as e:
        print(f"fastbp {args.command}: training diverged: {e}", file=sys.stderr)
        return EXIT_DIVERGED
    except KeyboardInterrupt:
        print(f"\nfastbp {args.command}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    print(one_line(message), file=sys.stderr)
    return EXIT_USAGE


def one_line(message):
    """A multi-line message (a list under a heading, say) as one line.

    >>> one_line("Looked in:\\n  a (missing)\\n  b (missing)\\nGive --data.")
    'Looked in: a (missing); b (missing). Give --data.'
    """
    message = re.sub(r":\s*\n\s+", ": ", message.strip())
    message = re.sub(r"\n\s+", "; ", message)
    message = re.sub(r"\s*\n", ". ", message)
    return re.sub(r"\.\.\s", ". ", " ".join(message.split()))


if __name__ == "__main__":
    sys.exit(main())
