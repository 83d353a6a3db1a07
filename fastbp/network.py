"""Network: a multilayer perceptron whose training runs in C.

Python checks arguments and owns every array (the parameters, their gradients and
the optimizer's state - flat arrays of one layout, fastbp._memory.ParamLayout - and
the work buffers); `_core` hands pointers to C, which runs whole epochs with the GIL
released and allocates nothing.
"""
from __future__ import annotations

import inspect
import os
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable, Sequence

import numpy as np
import numpy.typing as npt

from . import _core, checkpoint as checkpoints, interop, io
from ._memory import ParamLayout
from ._validation import (as_array, check_adam_settings, check_choice, check_dtype, check_labels,
                          check_positive, check_real, check_representable, check_sample_weight,
                          check_sgd_settings, check_target_range, check_targets, check_X)
from .optim import Schedule

ACTIVATIONS = {"identity": 0, "relu": 1, "sigmoid": 2, "tanh": 3}
LOSSES = {"cross_entropy": 0, "mse": 1, "binary_cross_entropy": 2, "poisson": 3}
CLASSIFIER_LOSSES = ("cross_entropy", "binary_cross_entropy")   # predict_proba, accuracy
OPTIMIZERS = ("sgd", "gd", "adam", "adamw", "adam_sklearn", "lbfgs")
ADAM_RULES = {"adam": _core.RULE_ADAM, "adamw": _core.RULE_ADAMW,
              "adam_sklearn": _core.RULE_ADAM_SKLEARN}
# train_step's optimizers whose common case C checks itself (CoreNet.try_train_step)
FAST_STEP_RULES = {"sgd": _core.RULE_SGD, **ADAM_RULES}
MAX_LAYERS = 64          # csrc/real.h FBP_MAX_LAYERS
MAX_THREADS = 1024       # a sanity bound on n_threads (C runs at most 64 of them)
CHUNK_ROWS = 512         # rows per C call for prediction, evaluation and full-batch gradients
WORK_VALUES = 1 << 21    # at most this many input values per chunk: the C work space holds
                         # a few arrays of (rows, n_inputs), so wide inputs take fewer rows
STATUS_OK = _core.STATUS_OK
STATUS_NONFINITE_WEIGHTS = _core.STATUS_NONFINITE_WEIGHTS
RUN_SECONDS = 0.05       # C returns this often during fit, so Ctrl-C is seen quickly
RESTORE_SECONDS = 1.0    # fit keeps a copy of the parameters this often (see _RestorePoint)


def default_threads():
    """$FASTBP_NUM_THREADS, else the CPUs this process may run on."""
    env = os.environ.get("FASTBP_NUM_THREADS")
    if env:
        try:
            n = int(env)
        except ValueError:
            raise ValueError(f"FASTBP_NUM_THREADS must be a positive integer, got {env!r}") from None
        if not 1 <= n <= MAX_THREADS:
            raise ValueError(f"FASTBP_NUM_THREADS must be an integer in [1, {MAX_THREADS}], got {env!r}")
        return n
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def check_threads(n_threads):
    if n_threads is None:
        return default_threads()
    return check_positive("n_threads", n_threads, integer=True, upper=MAX_THREADS)


@dataclass
class History:
    """What `Network.fit` returns: one entry per epoch."""
    loss: list[float] = field(default_factory=list)            # mean training loss over the epoch
    val_loss: list[float] = field(default_factory=list)        # when validation_data was given
    val_accuracy: list[float] = field(default_factory=list)    # cross-entropy only
    epoch_seconds: list[float] = field(default_factory=list)
    lr: list[float] = field(default_factory=list)              # learning rate in force at each epoch's end
    n_updates: int = 0                                  # parameter updates in this fit
    stopped_early: bool = False
    lbfgs: Any = None        # optimizer="lbfgs": scipy's OptimizeResult (fun, nit, nfev, status, message)

    @property
    def epochs(self) -> int:
        return len(self.loss)

    @property
    def final_lr(self) -> float | None:
        return self.lr[-1] if self.lr else None


def end_of_epoch(hist, epoch, epochs, seconds, loss, lr, scores, verbose, callback, n_samples,
                 note=""):
    """An epoch's entry in hist (scores: the validation scores, or None), its line when
    verbose and the callback's end-of-epoch call; returns the loss the schedule
    watches: the validation loss if there is one, else the training loss."""
    hist.epoch_seconds.append(seconds)
    hist.loss.append(loss)
    hist.lr.append(lr)
    if scores is not None:
        hist.val_loss.append(scores["loss"])
        if "accuracy" in scores:
            hist.val_accuracy.append(scores["accuracy"])
    if verbose:
        extra = f", val_loss {hist.val_loss[-1]:.4f}" if scores is not None else ""
        if scores is not None and "accuracy" in scores:
            extra += f", val_accuracy {hist.val_accuracy[-1]:.4f}"
        print(f"epoch {epoch + 1}/{epochs}: loss {loss:.4f}{extra}, lr {lr:.3g}, "
              f"{seconds:.2f} s{note}", flush=True)
    if callback is not None:
        callback(FitProgress(epoch + 1, epochs, n_samples, n_samples, loss, seconds, True, hist))
    return loss if scores is None else scores["loss"]


@dataclass
class FitProgress:
    """What `Network.fit` tells its ``callback``: during an epoch about every 50 ms,
    and once at its end (``end_of_epoch``, after the History entry is added)."""
    epoch: int              # 1-based
    epochs: int
    samples: int            # samples of this epoch done so far
    n_samples: int
    loss: float             # mean training loss over those samples
    seconds: float          # time in this epoch so far
    end_of_epoch: bool
    history: "History"


class Network:
    """A fully connected network trained by backpropagation and SGD.

    Parameters
    ----------
    layer_sizes : sequence of int
        Units per layer, input first: ``[784, 256, 10]`` is one hidden layer of 256.
    activation : str or sequence of str
        Hidden activation(s): "relu", "sigmoid", "tanh" or "identity".
    loss : "cross_entropy", "mse", "binary_cross_entropy" or "poisson"
        "cross_entropy": a classifier with softmax outputs and integer labels.
        "mse": a regressor with identity outputs, the mean over outputs of (yhat - y)².
        "binary_cross_entropy": a sigmoid per output (binary or multi-label
        classification), targets in [0, 1], the per-output log losses summed.
        "poisson": exp outputs (predicted means, log link), targets >= 0, the loss
        Σ (yhat - y log yhat) over outputs (Poisson deviance up to a constant).
    dtype : "float32" or "float64"
    seed : int or None
        Seeds the initial weights (He-uniform for relu, Glorot-uniform otherwise,
        zero biases) and the shuffling; the same seed gives bit-identical results,
        whatever n_threads (every value is summed in the same order whichever thread
        computes it).
    n_threads : int or None
        Threads that share each layer's work; None: ``$FASTBP_NUM_THREADS``, else
        the CPUs available. ``fit`` and ``train_step`` can override it per call.

    >>> import numpy as np, fastbp
    >>> net = fastbp.Network([2, 8, 2], activation="tanh", seed=0)
    >>> X = np.array([[0, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    >>> hist = net.fit(X, [0, 1, 1, 0], lr=0.5, batch_size=4, epochs=500)
    >>> net.predict(X).tolist()
    [0, 1, 1, 0]
    """

    def __init__(self, layer_sizes: Sequence[int], activation: str | Sequence[str] = "relu",
                 loss: str = "cross_entropy", dtype: npt.DTypeLike = "float32",
                 seed: int | None = None, n_threads: int | None = None) -> None:
        sizes = list(layer_sizes) if not isinstance(layer_sizes, (str, bytes)) else None
        if not sizes or len(sizes) < 2:
            raise ValueError(f"layer_sizes needs at least an input and an output size, got {layer_sizes!r}")
        for s in sizes:
            if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
                raise ValueError(f"layer sizes must be integers >= 1, got {layer_sizes!r}")
        if len(sizes) - 1 > MAX_LAYERS:
            raise ValueError(f"at most {MAX_LAYERS} layers, got {len(sizes) - 1}")
        self.layer_sizes = tuple(int(s) for s in sizes)
        n_hidden = len(sizes) - 2
        if isinstance(activation, str):
            acts = [activation] * n_hidden
        elif isinstance(activation, (list, tuple)):
            acts = list(activation)
        else:
            raise TypeError(f"activation must be a name or a list of names, one per hidden layer; "
                            f"got {activation!r}")
        if len(acts) != n_hidden:
            raise ValueError(f"activation: {len(acts)} given for {n_hidden} hidden layers")
        for a in acts:
            check_choice("activation", a, tuple(ACTIVATIONS))
        self.activations = tuple(acts)
        self.loss = check_choice("loss", loss, tuple(LOSSES))
        if self.loss == "cross_entropy" and self.layer_sizes[-1] < 2:
            raise ValueError("a cross_entropy network needs at least 2 outputs (classes)")
        self.dtype = check_dtype(dtype)
        self.n_threads = check_threads(n_threads)
        self.seed = seed
        seq = np.random.SeedSequence(seed)
        init_rng = np.random.default_rng(seq.spawn(1)[0])
        self._shuffle_state = int(seq.generate_state(1, np.uint64)[0])
        # The parameters and their gradients: two flat arrays in one allocation, each
        # layer's weights and biases views into them.
        self._layout = ParamLayout(self.layer_sizes, self.dtype)
        self._params, self._grads = self._layout.zeros(2)
        self._weights, self._biases = self._layout.views(self._params)
        for l, (n_in, n_out) in enumerate(zip(self.layer_sizes[:-1], self.layer_sizes[1:])):
            # He for relu keeps the activations' variance from shrinking layer after layer;
            # Glorot for the others (and the output layer).
            relu_in = l < n_hidden and self.activations[l] == "relu"
            limit = np.sqrt(6.0 / n_in) if relu_in else np.sqrt(6.0 / (n_in + n_out))
            w = init_rng.uniform(-limit, limit, size=(n_in, n_out))  # float64, then cast: same across dtypes
            self._weights[l][...] = w.astype(self.dtype)
        self._state = None       # the optimizer's state, (k, n_params) in the same layout:
                                 # the momentum velocity or Adam's m and v, made at first use
        self._state_kind = None  # "velocity" or "moments"
        self._rule_steps = 0     # updates the state has seen (Adam's bias correction)
        self._core = None        # the C view of the arrays above, built on first use
        self._lock = _core.ParameterLock()  # threads: inference shares, training excludes
        self.n_updates_ = 0      # parameter updates applied so far, over all calls

    # -- parameters -----------------------------------------------------------------
    @property
    def n_layers(self):
        return len(self._weights)

    @property
    def weights(self) -> list[npt.NDArray[np.floating[Any]]]:
        """The weight matrices, weights[i].shape == (n_in, n_out). The arrays are the
        network's own (edit in place, or use set_weights); the list is a copy."""
        return list(self._weights)

    @property
    def biases(self) -> list[npt.NDArray[np.floating[Any]]]:
        return list(self._biases)

    def set_weights(self, weights, biases):
        """Copy given weights and biases into the network, after checking them all."""
        if len(weights) != self.n_layers or len(biases) != self.n_layers:
            raise ValueError(f"expected {self.n_layers} weight matrices and bias vectors")
        new_w, new_b = [], []
        for l, (w, b) in enumerate(zip(weights, biases)):
            w = as_array(w, f"weights[{l}]", "an array of numbers")
            b = as_array(b, f"biases[{l}]", "an array of numbers")
            if w.shape != self._weights[l].shape or b.shape != self._biases[l].shape:
                raise ValueError(f"layer {l}: expected weights {self._weights[l].shape} and biases "
                                 f"{self._biases[l].shape}, got {w.shape} and {b.shape}")
            with np.errstate(over="ignore", invalid="ignore"):  # checked right below
                w, b = w.astype(self.dtype), b.astype(self.dtype)
            if not (np.isfinite(w).all() and np.isfinite(b).all()):
                raise ValueError(f"layer {l}: weights or biases contain NaN or inf, or values "
                                 f"beyond the range of {self.dtype.name}")
            new_w.append(w)
            new_b.append(b)
        with self._lock.writing:
            for l in range(self.n_layers):
                self._weights[l][...] = new_w[l]
                self._biases[l][...] = new_b[l]

    def reset_optimizer(self):
        """Forget the update rule's state: momentum velocities, Adam's moments and step
        count (fit and train_step keep them otherwise). Not while training (RuntimeError)."""
        self._lock.train_acquire("reset_optimizer")
        try:
            self._state, self._state_kind, self._rule_steps = None, None, 0
        finally:
            self._lock.train_release()

    # -- the C side -----------------------------------------------------------------
    def _core_for(self, rows, n_threads=None):
        """The CoreNet over this network's arrays with work space for `rows` rows."""
        rows = max(1, min(rows, CHUNK_ROWS, WORK_VALUES // self.layer_sizes[0]))
        n_threads = self.n_threads if n_threads is None else n_threads
        core = self._core
        if core is None or core.max_batch < rows or core.n_threads != n_threads:
            acts = [ACTIVATIONS[a] for a in self.activations] + [ACTIVATIONS["identity"]]
            self._core = core = _core.CoreNet(self.layer_sizes, acts, LOSSES[self.loss], self._layout,
                                              self._params, self._grads, rows, n_threads)
        return core

    def _rule(self, optimizer, lr, momentum, nesterov, weight_decay, betas, eps, decay_on_sum=False):
        """The checked settings of the update rule `optimizer` names (lbfgs: its weight
        decay; the rest is refused)."""
        check_choice("optimizer", optimizer, OPTIMIZERS)
        if not isinstance(decay_on_sum, (bool, np.bool_)):
            raise TypeError(f"decay_on_sum must be True or False, got {decay_on_sum!r}")
        lr, momentum, weight_decay, nesterov = check_sgd_settings(lr, momentum, weight_decay,
                                                                  nesterov, self.dtype)
        if optimizer in ADAM_RULES:
            if momentum or nesterov:
                raise ValueError(f"momentum and nesterov are SGD's; {optimizer} keeps moments "
                                 "of its own (set betas)")
            beta1, beta2, eps = check_adam_settings((0.9, 0.999) if betas is None else betas,
                                                    1e-8 if eps is None else eps)
            check_representable(self.dtype, eps=eps)
            if self.dtype.type(eps) == 0:   # 0 / (0 + eps) must stay 0 where g, m, v are
                raise ValueError(f"eps = {eps!r} is 0 in {self.dtype.name}, the parameters' dtype")
            return UpdateRule(ADAM_RULES[optimizer], lr, 0.0, False, weight_decay, beta1, beta2, eps,
                              bool(decay_on_sum))
        if betas is not None or eps is not None:
            raise ValueError(f"betas and eps are Adam's; optimizer={optimizer!r} does not use "
                             "them (optimizer='adam', 'adamw' or 'adam_sklearn')")
        return UpdateRule(_core.RULE_SGD, lr, momentum, nesterov, weight_decay, 0.9, 0.999, 1e-8,
                          bool(decay_on_sum))

    def _use_state(self, core, rule):
        """Point core at the state rule needs: none for plain SGD, the velocity for SGD
        with momentum, the moments m, v for Adam/AdamW. State of another kind (a rule
        change between calls) is replaced by zeros, the step count with it."""
        kind = "moments" if rule.kind != _core.RULE_SGD else "velocity" if rule.momentum > 0 else None
        if kind is None:
            core.set_state(None)
            return
        if self._state is None or self._state_kind != kind:
            self._state = self._layout.zeros(2 if kind == "moments" else 1)
            self._state_kind, self._rule_steps = kind, 0
        core.set_state(self._state, rule.kind)

    def _check_Xy(self, X: npt.ArrayLike, y: npt.ArrayLike, name: str = "X", n_threads: int | None = None
                  ) -> tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.int32] | None, npt.NDArray[np.floating[Any]] | None]:
        n_threads = self.n_threads if n_threads is None else n_threads
        X = check_X(X, self.layer_sizes[0], self.dtype, name, n_threads)
        yname = "y" if name == "X" else name.replace("X", "y")
        if self.loss == "cross_entropy":
            return X, check_labels(y, len(X), self.layer_sizes[-1], yname), None
        targets = check_targets(y, len(X), self.layer_sizes[-1], self.dtype, yname)
        check_target_range(targets, self.loss, yname)
        return X, None, targets

    # -- training -------------------------------------------------------------------
    def fit(self, X: npt.ArrayLike, y: npt.ArrayLike, optimizer: str = "sgd", lr: float = 0.01,
            batch_size: int = 32, epochs: int = 10, momentum: float = 0.0, nesterov: bool = False,
            weight_decay: float = 0.0, schedule: str = "constant", tol: float | None = None,
            n_iter_no_change: int = 5, shuffle: bool = True,
            validation_data: tuple[npt.ArrayLike, npt.ArrayLike] | None = None,
            verbose: bool = False, decay: float = 1e-4, step_size: int = 10, gamma: float = 0.1,
            n_threads: int | None = None,
            callback: Callable[[FitProgress], object] | None = None,
            betas: tuple[float, float] | None = None, eps: float | None = None,
            sample_weight: npt.ArrayLike | None = None, max_fun: int = 15000,
            decay_on_sum: bool = False, checkpoint: str | os.PathLike[str] | None = None,
            checkpoint_every: int = 1, resume: str | os.PathLike[str] | None = None,
            comm: Any = None, sync_every: int | None = None) -> History:
        """Train from the current weights; returns a `History`.

        optimizer="sgd" takes ``batch_size`` samples per update (1 is classic
        single-sample SGD); optimizer="gd" is full-batch gradient descent, one update
        per epoch over all of X. The update is w <- w - lr_t * (g + weight_decay * w)
        (no decay on biases), with momentum/Nesterov as in `fastbp.sgd_update`.
        optimizer="adam" and "adamw" take ``batch_size`` samples per update too, with
        PyTorch's Adam and AdamW rules (`fastbp.adam_update`; ``betas`` default
        (0.9, 0.999), ``eps`` 1e-8; momentum is SGD's and is refused with them).
        optimizer="adam_sklearn" is scikit-learn's Adam (eps added to the uncorrected
        sqrt(v); what `fastbp.sklearn` trains with). The rule's state (velocities, or
        Adam's moments and step count) persists across calls with the same rule (see
        `reset_optimizer`).

        optimizer="lbfgs" is full-batch L-BFGS (scipy.optimize.minimize, method
        "L-BFGS-B", scipy needed) on the mean loss + weight_decay / 2 * Σ‖W‖²:
        ``epochs`` is its iteration limit, ``max_fun`` its limit on loss evaluations,
        ``tol`` its gtol (scipy's default when None); each evaluation is one C call over
        all of X. History has the objective after each iteration and scipy's result in
        ``history.lbfgs``; the weights are those of the last iteration (also after an
        exception or Ctrl-C). It keeps no state between calls; lr, batch_size, shuffle,
        the schedules and momentum/betas/eps do not apply to it.

        ``sample_weight`` (n_samples,), >= 0: a batch's loss is Σ s_i C_i / Σ s_i over
        its samples, so integer weights act as repeated samples; the History's losses
        are weighted the same way.

        ``decay_on_sum=True`` makes weight_decay the coefficient of an L2 penalty
        weight_decay / 2 * Σ‖W‖² on each batch's summed loss instead of its mean
        (scikit-learn's alpha): each update's decay is weight_decay / Σ s_i over its
        batch (its size without sample weights), so a smaller last batch is decayed
        more, as in scikit-learn.

        ``checkpoint=path`` writes a checkpoint (atomically) after every
        ``checkpoint_every`` epochs and after the last: the weights, the optimizer's
        state, the epoch and update counters, the shuffle generator's and the
        schedule's state and the History (fastbp/checkpoint.py). ``resume=path``
        continues the run it holds, with the same data and arguments (``epochs`` may
        be larger), to the same bits as the run left alone; a resume whose network,
        data or arguments differ is refused, naming what differs.
        `fastbp.load(path)` gives a checkpoint's network.

        ``comm`` (an mpi4py communicator, e.g. ``MPI.COMM_WORLD``) trains data-parallel
        over MPI ranks: every rank calls fit with its own shard of X, y and the same
        arguments and seed; ``batch_size`` is the global batch, split across the ranks;
        each step one allreduce adds the ranks' gradients and every rank applies the
        same update, so the weights are the same bits on every rank
        (fastbp/distributed.py). ``sync_every=k`` instead lets each rank step alone and
        averages the weights every k steps (local SGD).

        ``schedule`` sets lr_t (see `fastbp.optim.Schedule`: ``decay`` for
        "invscaling", ``step_size`` and ``gamma`` for "step"). The monitored loss is
        the validation loss when ``validation_data=(X_val, y_val)`` is given, else the
        epoch's mean training loss.

        ``n_threads`` overrides the network's thread count for this call.
        ``callback(progress)``, if given, is called with a `FitProgress` about every
        50 ms and at the end of each epoch (for progress bars and per-epoch reports;
        it may read the network, e.g. evaluate it, but not change it). An exception
        raised in it stops training and propagates; the weights stay as after the
        last complete update.

        X is used in place when it is a C-contiguous array of the network's dtype;
        anything else is converted once, before the first epoch. If the loss becomes
        NaN or inf, or an update overflows the weights, FloatingPointError is raised and
        the weights (and velocities) are those after the last finite update. Ctrl-C stops within about 50 ms with
        KeyboardInterrupt, the weights as after the last completed update.
        """
        if comm is not None:
            from . import distributed
            return distributed.fit(self, comm, sync_every, X, y, optimizer=optimizer, lr=lr,
                                   batch_size=batch_size, epochs=epochs, momentum=momentum,
                                   nesterov=nesterov, weight_decay=weight_decay, schedule=schedule,
                                   tol=tol, n_iter_no_change=n_iter_no_change, shuffle=shuffle,
                                   validation_data=validation_data, verbose=verbose, decay=decay,
                                   step_size=step_size, gamma=gamma, n_threads=n_threads,
                                   callback=callback, betas=betas, eps=eps,
                                   sample_weight=sample_weight, max_fun=max_fun,
                                   decay_on_sum=decay_on_sum, checkpoint=checkpoint,
                                   checkpoint_every=checkpoint_every, resume=resume)
        if sync_every is not None:
            raise ValueError("sync_every is for training over MPI ranks: give comm too")
        plan = self._fit_plan(X, y, optimizer, lr, batch_size, epochs, momentum, nesterov,
                              weight_decay, schedule, tol, n_iter_no_change, shuffle,
                              validation_data, decay, step_size, gamma, n_threads, betas, eps,
                              sample_weight, max_fun, decay_on_sum, checkpoint, checkpoint_every,
                              resume)
        if plan.run is not None:
            plan.run.data = checkpoints.data_fingerprints(*plan.data_arrays())
        return self._run_plan(plan, verbose, callback, resume)

    def _plan(self, X, y, **kwargs):
        """The FitPlan of fit(X, y, **kwargs), fit's defaults for the arguments not given
        (no checkpoints, no MPI)."""
        planned = inspect.signature(Network._fit_plan).parameters
        args = {name: p.default for name, p in inspect.signature(Network.fit).parameters.items()
                if p.default is not p.empty and name in planned}
        args.update(kwargs)
        return self._fit_plan(X, y, **args)

    def _run_plan(self, plan, verbose=False, callback=None, resume=None):
        """Trains as fit does, on a plan that _fit_plan checked. A plan can run again, its
        data not checked a second time: fastbp.sklearn runs one per epoch (the learning
        rate set by FitPlan.with_lr), over data that it checked once."""
        self._lock.train_acquire("fit")
        try:
            if plan.optimizer == "lbfgs":
                decay = plan.rule.weight_decay
                if plan.rule.decay_on_sum:   # one batch: all of X
                    decay /= len(plan.X) if plan.weights is None else float(plan.weights.sum(dtype=np.float64))
                return self._fit_lbfgs(plan.X, plan.labels, plan.targets, plan.weights, decay,
                                       plan.epochs, plan.max_fun, plan.tol, plan.val, verbose,
                                       plan.n_threads, callback)
            start = None if resume is None else plan.run.resume(resume, self)
            return self._fit_checked(plan.X, plan.labels, plan.targets, plan.weights,
                                     plan.optimizer, plan.batch_size, plan.epochs, plan.sched,
                                     plan.rule, plan.shuffle, plan.val, verbose, plan.n_threads,
                                     callback, plan.run, start)
        finally:
            self._lock.train_release()

    def _fit_plan(self, X, y, optimizer, lr, batch_size, epochs, momentum, nesterov, weight_decay,
                  schedule, tol, n_iter_no_change, shuffle, validation_data, decay, step_size,
                  gamma, n_threads, betas, eps, sample_weight, max_fun, decay_on_sum, checkpoint,
                  checkpoint_every, resume):
        """fit's arguments checked and its data converted (the data's fingerprints, for
        checkpoints, are left to the caller): a FitPlan. Raises for anything wrong."""
        lbfgs = optimizer == "lbfgs"
        if lbfgs:
            if momentum or nesterov or betas is not None or eps is not None:
                raise ValueError("momentum, nesterov, betas and eps belong to the step rules; "
                                 "optimizer='lbfgs' does not use them")
            if schedule != "constant":
                raise ValueError(f"schedule={schedule!r}: optimizer='lbfgs' has no learning rate "
                                 "to schedule")
            max_fun = check_positive("max_fun", max_fun, integer=True)
            if tol is not None:
                tol = check_real("tol", tol, 0.0)
        rule = self._rule("gd" if lbfgs else optimizer, lr, momentum, nesterov, weight_decay,
                          betas, eps, decay_on_sum)
        batch_size = check_positive("batch_size", batch_size, integer=True)
        epochs = check_positive("epochs", epochs, integer=True)
        sched = Schedule(schedule, rule.lr, decay=decay, step_size=step_size, gamma=gamma,
                         tol=None if lbfgs else tol, n_iter_no_change=n_iter_no_change)
        n_threads = self.n_threads if n_threads is None else check_threads(n_threads)
        checkpoint_every = check_positive("checkpoint_every", checkpoint_every, integer=True)
        for name, path in (("checkpoint", checkpoint), ("resume", resume)):
            if path is not None and not isinstance(path, (str, os.PathLike)):
                raise TypeError(f"{name} must be a file path (str or os.PathLike), got "
                                f"{type(path).__name__}")
        if lbfgs and (checkpoint is not None or resume is not None):
            raise ValueError("checkpoint and resume cover the step rules; optimizer='lbfgs' keeps "
                             "its memory in scipy and cannot be resumed")
        X, labels, targets = self._check_Xy(X, y, n_threads=n_threads)
        weights = check_sample_weight(sample_weight, len(X), self.dtype)
        val = None
        if validation_data is not None:
            if not isinstance(validation_data, (tuple, list)) or len(validation_data) != 2:
                raise ValueError("validation_data must be a pair (X_val, y_val)")
            val = self._check_Xy(*validation_data, name="X_val")
        run = None
        if checkpoint is not None or resume is not None:
            settings = {"optimizer": optimizer, "lr": rule.lr, "batch_size": batch_size,
                        "momentum": rule.momentum, "nesterov": rule.nesterov,
                        "weight_decay": rule.weight_decay, "decay_on_sum": rule.decay_on_sum,
                        "betas": [rule.beta1, rule.beta2] if optimizer in ADAM_RULES else None,
                        "eps": rule.eps if optimizer in ADAM_RULES else None,
                        "schedule": sched.name, "decay": sched.decay, "step_size": sched.step_size,
                        "gamma": sched.gamma, "tol": sched.tol,
                        "n_iter_no_change": sched.n_iter_no_change, "shuffle": bool(shuffle)}
            run = checkpoints.RunCheckpoints(checkpoint, checkpoint_every, settings, None)
        return FitPlan(optimizer, rule, sched, batch_size, epochs, bool(shuffle), n_threads,
                       max_fun, tol, X, labels, targets, weights, val, run)

    def _fit_checked(self, X, labels, targets, weights, optimizer, batch_size, epochs, sched, rule,
                     shuffle, val, verbose, n_threads, callback, run=None, start=None):
        """fit's epoch loop, its arguments checked; run: checkpointing (None: none);
        start: a checkpoint's ResumePoint to continue from (None: a new run)."""
        n = len(X)
        batch = n if optimizer == "gd" else min(batch_size, n)
        core = self._core_for(batch, n_threads)
        self._use_state(core, rule)
        hist, first_epoch = (History(), 0) if start is None else start.continue_in(self, sched)
        n_updates_base, rule_steps_base = self.n_updates_, self._rule_steps
        trainer = _core.Trainer(X, labels, targets, batch, bool(shuffle) and optimizer != "gd",
                                self._shuffle_state, weights)
        rule.set_on(trainer, rule.lr, sched.per_update_decay, 0 if start is None else start.step,
                    self._rule_steps)
        restore = _RestorePoint(self)
        try:
            for epoch in range(first_epoch, epochs if not hist.stopped_early else first_epoch):
                rule.set_on(trainer, sched.epoch_lr(epoch), sched.per_update_decay, trainer.step,
                            self._rule_steps)
                trainer.epoch_begin()
                start = time.perf_counter()
                restore.take(trainer)
                while not trainer.epoch_done:
                    if trainer.step_rows == 0 and time.perf_counter() - restore.taken >= RESTORE_SECONDS:
                        restore.take(trainer)
                    with self._lock.writing:  # inference waits for whole updates
                        core.run(trainer, RUN_SECONDS)   # Ctrl-C surfaces between these calls
                        if trainer.status == STATUS_NONFINITE_WEIGHTS:  # before anyone reads them
                            restore.replay_to_last_finite_step(core, trainer)
                    self._raise_if_diverged(trainer, epoch)
                    if callback is not None and not trainer.epoch_done:
                        callback(FitProgress(epoch + 1, epochs, trainer.pos, n, trainer.epoch_loss,
                                             time.perf_counter() - start, False, hist))
                monitored = end_of_epoch(hist, epoch, epochs, time.perf_counter() - start,
                                         trainer.epoch_loss, trainer.last_lr,
                                         None if val is None else self._evaluate_checked(*val),
                                         verbose, callback, n)
                hist.stopped_early = sched.end_epoch(monitored)
                if run is not None and run.due(epoch + 1, epochs, hist.stopped_early):
                    run.save(self, epoch + 1, trainer, n_updates_base, rule_steps_base,
                             rule.kind != _core.RULE_SGD, sched, hist)
                if hist.stopped_early:
                    break
        finally:
            hist.n_updates = trainer.step
            self.n_updates_ += trainer.step
            if rule.kind != _core.RULE_SGD:   # Adam's count: the steps its moments saw
                self._rule_steps += trainer.step
            self._shuffle_state = trainer.rng
        return hist

    def _fit_lbfgs(self, X, labels, targets, weights, weight_decay, max_iter, max_fun, tol, val,
                   verbose, n_threads, callback):
        """fit(optimizer="lbfgs"): scipy's L-BFGS-B over the flat parameter array (the
        padding between layers has a zero gradient, so it stays zero and adds nothing
        to scipy's dot products), one C backpropagation over all of X per evaluation."""
        try:
            from scipy.optimize import minimize  # type: ignore[import-untyped]
        except ImportError:
            raise ImportError("optimizer='lbfgs' needs scipy: pip install scipy "
                              "(or pip install 'fastbp[lbfgs]')") from None
        core = self._core_for(min(len(X), CHUNK_ROWS), n_threads)
        n_weights = self._layout.n_weights
        hist = History()
        start = [time.perf_counter()]   # of the current iteration
        last = [self._params.astype(np.float64)]   # the last iterate: what an exception leaves

        def objective(theta):
            with self._lock.writing:
                self._params[...] = theta
                loss = core.gradients(X, labels, targets, self._grads, weights)
            grad = self._grads.astype(np.float64)
            if weight_decay:
                w = theta[:n_weights]
                loss += 0.5 * weight_decay * float(np.dot(w, w))
                grad[:n_weights] += weight_decay * w
            return loss, grad

        def after_iteration(intermediate_result):
            last[0] = intermediate_result.x.copy()
            hist.loss.append(float(intermediate_result.fun))
            hist.epoch_seconds.append(time.perf_counter() - start[0])
            if val is not None:
                with self._lock.writing:
                    self._params[...] = last[0]
                scores = self._evaluate_checked(*val)
                hist.val_loss.append(scores["loss"])
                if "accuracy" in scores:
                    hist.val_accuracy.append(scores["accuracy"])
            if verbose:
                extra = f", val_loss {hist.val_loss[-1]:.4f}" if val is not None else ""
                print(f"iteration {hist.epochs}/{max_iter}: loss {hist.loss[-1]:.6g}{extra}",
                      flush=True)
            if callback is not None:
                callback(FitProgress(hist.epochs, max_iter, len(X), len(X), hist.loss[-1],
                                     hist.epoch_seconds[-1], True, hist))
            start[0] = time.perf_counter()

        options = {"maxiter": max_iter, "maxfun": max_fun}
        if tol is not None:
            options["gtol"] = tol
        try:
            result = minimize(objective, last[0], method="L-BFGS-B", jac=True,
                              callback=after_iteration, options=options)
        except BaseException:
            with self._lock.writing:
                self._params[...] = last[0]
            raise
        with self._lock.writing:
            self._params[...] = result.x
        if not np.isfinite(result.fun) or not np.isfinite(self._params).all():
            with self._lock.writing:
                self._params[...] = last[0]
            raise FloatingPointError(
                f"L-BFGS reached a NaN or inf loss after {result.nit} iterations; the weights "
                "are those of the last iteration. Try scaling the inputs or a weight_decay.")
        hist.lbfgs = result
        hist.n_updates = int(result.nit)
        self.n_updates_ += hist.n_updates
        return hist

    def _raise_if_diverged(self, trainer, epoch, restored=True):
        """FloatingPointError for a trainer that stopped on a NaN/inf. restored: the
        weights are those of the last finite step (fit replays to it when an update
        overflowed the weights); train_step's single update cannot be undone."""
        if trainer.status == _core.STATUS_NONFINITE_LOSS:
            raise FloatingPointError(
                f"the loss became NaN or inf at epoch {epoch + 1}, update {trainer.step + 1}; "
                "training stopped and the weights are those of the last finite step. "
                "Try a smaller lr or scaling the inputs.")
        if trainer.status == _core.STATUS_NONFINITE_WEIGHTS and restored:
            raise FloatingPointError(
                f"an update overflowed the weights to NaN or inf at epoch {epoch + 1}, update "
                f"{trainer.step + 1}; training stopped and the weights are those of the last "
                "finite step. Try a smaller lr or scaling the inputs.")
        if trainer.status == _core.STATUS_NONFINITE_WEIGHTS:
            raise FloatingPointError(
                "this update overflowed the weights to NaN or inf; train_step updates in place "
                "and cannot undo it, so the weights are no longer usable (set_weights from a "
                "copy; fit restores the last finite step by itself). Try a smaller lr or "
                "scaling the inputs.")

    def train_step(self, X, y, lr=0.01, momentum=0.0, nesterov=False, weight_decay=0.0, n_threads=None,
                   optimizer="sgd", betas=None, eps=None, sample_weight=None, decay_on_sum=False):
        """Exactly one update on exactly this batch (all rows of X); returns the batch's
        (weighted) mean loss before the update. optimizer: "sgd" (or "gd": the same for
        one batch), "adam", "adamw" or "adam_sklearn", with the settings fit takes. The
        rule's state (velocities, Adam's moments and step count) persists across calls."""
        lock = self._lock
        lock.step_acquire()   # one training call at a time, and the write turn
        try:
            core, trainer = self._core, _core.Trainer()
            wanted = self.n_threads if n_threads is None else n_threads
            loss = None
            if type(optimizer) is str and optimizer in FAST_STEP_RULES and core is not None and \
                    sample_weight is None and decay_on_sum is False and \
                    type(wanted) is int and core.n_threads == wanted and \
                    (core.state is None or core.state is self._state):
                # The common case (arrays and settings as C takes them, the core set up by
                # the last call with this rule and this network's velocities or moments) is
                # checked in C: a few microseconds instead of a few tens.
                loss = core.try_train_step(trainer, X, y, lr, momentum, weight_decay, nesterov,
                                           FAST_STEP_RULES[optimizer], betas, eps, self._rule_steps)
            if loss is None:
                loss = self._train_step_checked(trainer, X, y, lr, momentum, nesterov, weight_decay,
                                                n_threads, optimizer, betas, eps, sample_weight,
                                                decay_on_sum)
        finally:
            lock.step_release()
        if trainer.status != STATUS_OK:
            self._raise_if_diverged(trainer, 0, restored=False)
        self.n_updates_ += 1
        if optimizer in ADAM_RULES:
            self._rule_steps += 1
        return loss

    def _train_step_checked(self, trainer, X, y, lr, momentum, nesterov, weight_decay, n_threads,
                            optimizer, betas, eps, sample_weight, decay_on_sum):
        """train_step with every argument checked and converted: its loss."""
        if optimizer == "lbfgs":
            raise ValueError("optimizer='lbfgs' is a full-batch method of many evaluations; "
                             "train_step takes one step of a step rule (use fit)")
        rule = self._rule("sgd" if optimizer == "gd" else optimizer, lr, momentum, nesterov,
                          weight_decay, betas, eps, decay_on_sum)
        n_threads = self.n_threads if n_threads is None else check_threads(n_threads)
        X, labels, targets = self._check_Xy(X, y, n_threads=n_threads)
        weights = check_sample_weight(sample_weight, len(X), self.dtype)
        core = self._core_for(len(X), n_threads)
        self._use_state(core, rule)
        rule.set_on(trainer, rule.lr, 0.0, 0, self._rule_steps)
        return core.train_batch(trainer, X, labels, targets, weights)

    def profile(self, X, y, batch_size=32, steps=None, lr=0.01, momentum=0.0, n_threads=None):
        """Time `steps` SGD updates of `batch_size` samples drawn (shuffled) from X, y,
        measured inside C, on a copy of this network (its own weights are untouched),
        after about 0.1 s of untimed updates that start the threads and warm the caches
        (the first updates of a process cost several times the steady ones). steps=None:
        as many as take about 0.5 s, at least 50.

        Returns a dict: microseconds per update for each phase ("gather",
        "forward" (including the loss), "backward", "update"), "total_us",
        "gflops" (achieved, counting 2 flops per multiply-add: forward 2·B·Σ n_l·n_(l+1),
        backward the same for dW plus the same for dX except at the input layer),
        and the settings. "fused" says whether the update is fused into the backward
        product (batches of up to 512 samples: one chunk of rows), its time then part
        of "backward" and "update" 0.

        >>> import numpy as np, fastbp
        >>> net = fastbp.Network([20, 16, 3], seed=0)
        >>> X = np.random.default_rng(0).random((100, 20), dtype=np.float32)
        >>> p = net.profile(X, np.arange(100) % 3, batch_size=10, steps=20)
        >>> p["steps"], sorted(p["phase_us"])
        (20, ['backward', 'forward', 'gather', 'update'])
        """
        batch_size = check_positive("batch_size", batch_size, integer=True)
        if steps is not None:
            steps = check_positive("steps", steps, integer=True)
        rule = self._rule("sgd", lr, momentum, False, 0.0, None, None)
        n_threads = self.n_threads if n_threads is None else check_threads(n_threads)
        X, labels, targets = self._check_Xy(X, y)
        clone = Network(self.layer_sizes, list(self.activations), self.loss, self.dtype,
                        n_threads=n_threads)
        with self._lock.reading:
            clone.set_weights(self._weights, self._biases)
        batch = min(batch_size, len(X))
        core = clone._core_for(batch, n_threads)
        clone._use_state(core, rule)
        trainer = _core.Trainer(X, labels, targets, batch, True, self._shuffle_state)
        rule.set_on(trainer, rule.lr, 0.0, 0, 0)

        def run_until(step):
            trainer.set_max_steps(step)
            while trainer.step < step:
                if trainer.epoch_done:
                    trainer.epoch_begin()
                core.run(trainer, RUN_SECONDS)
                clone._raise_if_diverged(trainer, 0, restored=False)

        start, warm = time.perf_counter(), 10
        while True:  # warm-up, untimed
            run_until(warm)
            elapsed = time.perf_counter() - start
            if elapsed >= 0.1 or (steps is not None and warm >= steps):
                break
            warm *= 2
        if steps is None:
            steps = max(50, int(0.5 * warm / elapsed))
        core.profile_start()
        try:
            run_until(warm + steps)
        finally:
            phases = core.profile_stop()
        done = phases.pop("steps")
        per_update = {k: 1e6 * v / done for k, v in phases.items()}
        total = sum(per_update.values())
        sizes = self.layer_sizes
        macs = sum(a * b for a, b in zip(sizes[:-1], sizes[1:]))
        flops = 2 * batch * (3 * macs - sizes[0] * sizes[1])
        return {"phase_us": per_update, "total_us": total,
                "gflops": flops / (total * 1e-6) / 1e9 if total > 0 else float("nan"),
                "flops_per_update": flops, "steps": done, "batch_size": batch,
                "fused": batch <= core.max_batch, "n_threads": n_threads,
                "code_path": _core.get_isa()}

    # -- backpropagation alone ------------------------------------------------------
    def gradients(self, X: npt.ArrayLike, y: npt.ArrayLike, sample_weight: npt.ArrayLike | None = None
                  ) -> list[tuple[npt.NDArray[np.floating[Any]], npt.NDArray[np.floating[Any]]]]:
        """Backpropagation only: the gradient of the mean loss over all of X (weighted
        by sample_weight, as in `fit`), as a list of (dW, db) per layer (new arrays).
        The weights are not touched."""
        X, labels, targets = self._check_Xy(X, y)
        weights = check_sample_weight(sample_weight, len(X), self.dtype)
        grads = self._layout.zeros(1)[0]
        core = self._core_for(len(X))
        with self._lock.reading:
            core.gradients(X, labels, targets, grads, weights)
        return list(zip(*self._layout.views(grads)))

    # -- inference ------------------------------------------------------------------
    def _outputs(self, X):
        X = check_X(X, self.layer_sizes[0], self.dtype)
        out = np.empty((len(X), self.layer_sizes[-1]), dtype=self.dtype)
        core = self._core_for(len(X))
        with self._lock.reading:
            core.predict(X, out)
        return out

    def predict_proba(self, X: npt.ArrayLike) -> npt.NDArray[np.floating[Any]]:
        """Probabilities (n, n_outputs): of each class (cross_entropy; rows sum to 1) or
        of each output being 1 (binary_cross_entropy)."""
        if self.loss not in CLASSIFIER_LOSSES:
            raise ValueError(f"predict_proba needs a cross_entropy or binary_cross_entropy "
                             f"network; this one's loss is {self.loss!r}: use predict")
        return self._outputs(X)

    def predict(self, X: npt.ArrayLike) -> npt.NDArray[Any]:
        """Class labels (cross_entropy); 0/1 per output (binary_cross_entropy: probability
        above 1/2); the outputs (mse) or predicted means (poisson). For one output of
        the last three, (n,) instead of (n, 1)."""
        out = self._outputs(X)
        if self.loss == "cross_entropy":
            return out.argmax(axis=1)
        if self.loss == "binary_cross_entropy":
            out = (out > 0.5).astype(np.int32)
        return out[:, 0] if out.shape[1] == 1 else out

    def evaluate(self, X: npt.ArrayLike, y: npt.ArrayLike) -> dict[str, float]:
        """{"loss": mean loss, "accuracy": fraction of samples predicted right (the
        cross-entropies only; binary_cross_entropy: every output right)}."""
        return self._evaluate_checked(*self._check_Xy(X, y))

    def _evaluate_checked(self, X, labels, targets):
        core = self._core_for(len(X))
        with self._lock.reading:
            total, correct = core.evaluate(X, labels, targets)
        scores = {"loss": total / len(X)}
        if self.loss in CLASSIFIER_LOSSES:
            scores["accuracy"] = correct / len(X)
        return scores

    def __getstate__(self):
        # The parameters and the optimizer's state; the per-layer views, the gradients
        # (scratch), the C view (pointers) and the lock are made anew by __setstate__.
        state = self.__dict__.copy()
        for name in ("_core", "_lock", "_weights", "_biases", "_grads"):
            del state[name]
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        params, saved_state = self._params, self._state
        self._params, self._grads = self._layout.zeros(2)   # aligned again, views again
        self._params[...] = params
        self._weights, self._biases = self._layout.views(self._params)
        if saved_state is not None:
            self._state = self._layout.copy(saved_state)
        self._core = None
        self._lock = _core.ParameterLock()

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the network to ``path`` (see `fastbp.load`)."""
        io.save_network(self, path)

    def to_onnx(self, path: str | os.PathLike[str] | None = None, opset: int = interop.DEFAULT_OPSET
                ) -> Any:
        """The network as an ONNX model (``onnx.ModelProto``), also written to ``path``
        when given: input ``input`` (batch, n_inputs); outputs ``probabilities`` and
        ``label`` (classifiers) or ``predictions`` (regressors), as `predict_proba` and
        `predict` (fastbp/interop.py). Needs ``pip install "fastbp[onnx]"``.

        >>> import fastbp, os, tempfile
        >>> model = fastbp.Network([4, 8, 3], seed=0).to_onnx(os.path.join(tempfile.mkdtemp(), "m.onnx"))
        >>> [o.name for o in model.graph.output]
        ['probabilities', 'label']
        """
        return interop.to_onnx(self, path, opset)

    def to_torch(self) -> Any:
        """The network as a ``torch.nn.Sequential`` (``Linear``, activation, ...,
        ``Linear``) that returns the logits: apply softmax (cross_entropy), sigmoid
        (binary_cross_entropy) or exp (poisson) for `predict_proba`/`predict`.

        >>> import fastbp
        >>> fastbp.Network([4, 8, 3], activation="tanh", seed=0).to_torch()  # doctest: +SKIP
        Sequential(
          (0): Linear(in_features=4, out_features=8, bias=True)
          (1): Tanh()
          (2): Linear(in_features=8, out_features=3, bias=True)
        )
        """
        return interop.to_torch(self)

    @classmethod
    def from_torch(cls, module: Any, loss: str = "cross_entropy", n_threads: int | None = None) -> "Network":
        """A network with the weights of a ``torch.nn.Sequential`` of ``nn.Linear`` and
        ReLU/Sigmoid/Tanh/Identity layers, Linear last (its logits go through ``loss``'s
        output function); float32 or float64 as its parameters.

        >>> import torch, fastbp  # doctest: +SKIP
        >>> fastbp.Network.from_torch(torch.nn.Sequential(torch.nn.Linear(4, 3)))  # doctest: +SKIP
        Network(4-3, activation=[], loss='cross_entropy', dtype='float32')
        """
        return interop.from_torch(module, loss, n_threads)

    def __repr__(self):
        sizes = "-".join(map(str, self.layer_sizes))
        return (f"Network({sizes}, activation={list(self.activations)}, loss={self.loss!r}, "
                f"dtype={self.dtype.name!r})")


@dataclass
class FitPlan:
    """fit's arguments, checked, and its data, converted (Network._fit_plan)."""
    optimizer: str
    rule: "UpdateRule"
    sched: Schedule
    batch_size: int
    epochs: int
    shuffle: bool
    n_threads: int
    max_fun: int
    tol: float | None
    X: Any
    labels: Any
    targets: Any
    weights: Any
    val: Any
    run: Any             # checkpoints.RunCheckpoints, or None

    def with_lr(self, lr):
        """The same plan with learning rate lr (a new schedule from it)."""
        s = self.sched
        sched = Schedule(s.name, lr, decay=s.decay, step_size=s.step_size, gamma=s.gamma, tol=s.tol,
                         n_iter_no_change=s.n_iter_no_change)
        return replace(self, rule=replace(self.rule, lr=sched.lr0), sched=sched)

    def data_arrays(self):
        """(X, y, sample weights, validation pair) as the checkpoint fingerprints them."""
        val = None if self.val is None else \
            (self.val[0], self.val[1] if self.val[1] is not None else self.val[2])
        return (self.X, self.labels if self.labels is not None else self.targets, self.weights,
                val)


@dataclass(frozen=True)
class UpdateRule:
    """The checked settings of one update rule (csrc/optim.inc): kind is the C rule."""
    kind: int
    lr: float
    momentum: float
    nesterov: bool
    weight_decay: float
    beta1: float
    beta2: float
    eps: float
    decay_on_sum: bool = False   # weight_decay penalises each batch's summed loss

    def set_on(self, trainer, lr, decay, step, rule_steps):
        """Give the C trainer these settings with this lr and its per-update decay."""
        trainer.set_optimizer(lr, decay, self.momentum, self.weight_decay, self.nesterov, step,
                              self.beta1, self.beta2, self.eps, rule_steps, self.decay_on_sum)


class _RestorePoint:
    """How fit keeps its promise that after a divergence the weights are those of the
    last finite step, when an update overflows the weights themselves (the kernels
    update them in place as they go, so the step cannot be undone): a copy of the
    parameters, the optimizer's state and the epoch's position, taken at each epoch's
    start and then every RESTORE_SECONDS between whole steps (a copy per second costs
    under 0.5% of the training), and a replay from it to the step before the bad one.
    Steps are deterministic, so the replay ends in the very weights that step left."""

    def __init__(self, net):
        self.net, self.taken = net, 0.0
        self.params = net._layout.zeros(1)[0]
        self.state, self.position = None, None

    def take(self, trainer):
        net = self.net
        self.params[...] = net._params
        if net._state is None:
            self.state = None
        else:
            if self.state is None or self.state.shape != net._state.shape:
                self.state = net._layout.zeros(len(net._state))
            self.state[...] = net._state
        self.position = trainer.position()
        self.taken = time.perf_counter()

    def replay_to_last_finite_step(self, core, trainer):
        last_finite = trainer.step - 1   # the bad step was counted
        net = self.net
        net._params[...] = self.params
        if self.state is not None:
            net._state[...] = self.state
        trainer.set_position(self.position)
        trainer.set_max_steps(last_finite)
        while trainer.step < last_finite and trainer.status == STATUS_OK:
            core.run(trainer, RUN_SECONDS)
        trainer.set_max_steps(0)
        trainer.set_position(trainer.position()[:-1] + (STATUS_NONFINITE_WEIGHTS,))


def load(path: str | os.PathLike[str]) -> Network:
    """Read a network written by `Network.save` (or a checkpoint written by
    `Network.fit`, whose network comes with its optimizer state) and return a new
    `fastbp.Network`.

    Raises FileNotFoundError if there is no file, and ValueError, saying what is
    wrong, for anything that is not a complete, consistent model file: neither
    safetensors nor a .npz of format version 1 or 2, truncated, a checksum that does
    not match, a newer format version, missing or extra arrays, shapes or dtypes that
    disagree with the metadata, object (pickled) arrays, NaN or inf weights
    (fastbp/io.py reads it).

    >>> import fastbp, os, tempfile
    >>> net = fastbp.Network([4, 3, 2], activation="tanh", seed=1)
    >>> path = os.path.join(tempfile.mkdtemp(), "net.fbp")
    >>> net.save(path)
    >>> fastbp.load(path).activations
    ('tanh',)
    """
    meta, arrays, extras = io.read_model(path)
    activation = meta["activations"] if meta["activations"] else "relu"
    try:
        net = Network(meta["layer_sizes"], activation=activation, loss=meta["loss"], dtype=meta["dtype"])
        net.set_weights(arrays[0::2], arrays[1::2])
    except (ValueError, TypeError) as e:
        raise io.bad_model(os.fspath(path), str(e)) from None
    if extras:   # a checkpoint: its optimizer state too
        checkpoints.put_optimizer_state(net, meta, extras, os.fspath(path))
    return net
