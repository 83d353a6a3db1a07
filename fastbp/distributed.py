"""Data-parallel training over MPI: `Network.fit(X_shard, y_shard, ..., comm=MPI.COMM_WORLD)`.

Every rank calls fit with its own shard of the data and the same arguments and initial
weights (the same seed). The global batch (``batch_size``) is split across the ranks in
proportion to their shards: an epoch is ceil(N / batch_size) steps, N the samples of all
shards, and each rank splits its (shuffled) shard into that many nearly equal chunks.
Each step every rank backpropagates its chunk in C (the summed gradient, its loss and
its sample weight), one MPI allreduce adds the ranks' buffers, and every rank applies
the same update rule (csrc/optim.inc, through `fastbp.sgd_update`'s and
`fastbp.adam_update`'s entry) to the same global mean gradient: the weights are the same
bits on every rank after every step. MPI's reduction algorithms are chosen by message
size and rank count, not by timing, so a run is bit-reproducible for a given number of
ranks (and any thread count).

``sync_every=k`` is local SGD: each rank steps on its own chunks and the ranks average
their weights and optimizer states (velocities, Adam's moments) every k steps and at
each epoch's end, after which they hold the same bits again.

Errors: whatever one rank finds wrong before training (its data, its arguments) every
rank learns in one collective, and every rank raises; the rank that found it names
itself. During training, a NaN loss or an overflowing update is seen by every rank at
the same step (they share the loss and the update) and every rank raises
FloatingPointError, the weights those of the last finite step (with local SGD: of the
last average, which every rank holds alike). A checkpoint that rank 0 cannot write stops
every rank the same way. Any other exception on one rank (an interrupt, a failing
callback) cannot reach the ranks waiting in a collective, so that rank prints it and
aborts the job (MPI_Abort); a rank that dies is noticed by mpiexec, which ends the others.

mpi4py is imported only when a communicator is given: `import fastbp` does not import it.
"""
from __future__ import annotations

import hashlib
import json
import sys
import time

import numpy as np

from . import _core, checkpoint as checkpoints
from ._validation import check_positive
from .network import History, end_of_epoch


SNAPSHOT_STEPS = 64   # synchronous steps between copies of the weights (an overflow replays
                      # from the last copy: a copy per step would cost more than the update)


class _Overflow(Exception):
    """An update made a weight NaN or inf (every rank's update is the same)."""


class RankError(ValueError):
    """What every rank raises when some rank cannot train (its data or arguments)."""
    agreed = True


def _agreed(error):
    """Whether every rank raises `error` alike (so no rank is left in a collective)."""
    return getattr(error, "agreed", False) or isinstance(error, FloatingPointError)


def agree(comm, error):
    """Collective: raise on every rank if any rank's `error` is not None. The rank that
    had it raises its own exception's type with its rank number in front; the others
    raise RankError naming the first failing rank and its message."""
    rank = comm.Get_rank()
    reports = comm.allgather(None if error is None else f"{type(error).__name__}: {error}")
    failed = [(r, m) for r, m in enumerate(reports) if m is not None]
    if not failed:
        return
    if error is not None:
        try:
            mine = type(error)(f"rank {rank}: {error}")
        except Exception:  # an exception type that wants other arguments
            mine = RankError(f"rank {rank}: {reports[rank]}")
        mine.agreed = True
        raise mine from error
    first, message = failed[0]
    raise RankError(f"rank {first} cannot train: {message} (every rank stops)")


def _digest(value):
    h = hashlib.blake2b(digest_size=16)
    if isinstance(value, np.ndarray):
        h.update(np.ascontiguousarray(value).view(np.uint8))
    else:
        h.update(json.dumps(value, sort_keys=True, default=str).encode())
    return h.hexdigest()


def _check_ranks_agree(comm, net, plan, sync_every, resuming):
    """Collective: every rank must train the same network from the same weights with the
    same arguments; RankError on every rank naming what differs, and where."""
    mine = {
        "the network": _digest([net.layer_sizes, net.activations, net.loss, net.dtype.name]),
        "the arguments": _digest([plan.optimizer, plan.rule.__dict__, plan.sched.__dict__,
                                  plan.batch_size, plan.epochs, plan.shuffle, sync_every,
                                  plan.max_fun, plan.tol, plan.val is not None,
                                  plan.weights is not None, plan.run is not None,
                                  None if plan.run is None else
                                  [plan.run.path is not None, plan.run.every], resuming]),
        "the initial weights (seed)": _digest(net._params),
        "the optimizer state": _digest(None if net._state is None else net._state),
        "the shuffle seed": _digest(net._shuffle_state),
    }
    everyone = comm.allgather(mine)
    for what in mine:
        differ = [r for r, theirs in enumerate(everyone) if theirs[what] != everyone[0][what]]
        if differ:
            raise RankError(f"the ranks must call fit alike: {what} of rank "
                            f"{', '.join(map(str, differ))} differ from rank 0's (same layer sizes, "
                            "seed, arguments, and sample_weight/validation_data on every rank or "
                            "on none)")


def fit(net, comm, sync_every, X, y, verbose=False, callback=None, **arguments):
    """Network.fit with comm given (see the module docstring)."""
    if not all(hasattr(comm, name) for name in ("Get_rank", "Get_size", "Allreduce", "allgather")):
        raise TypeError(f"comm must be an mpi4py communicator (MPI.COMM_WORLD, say), got "
                        f"{type(comm).__name__}")
    from mpi4py import MPI   # the communicator is mpi4py's, so it is installed

    rank, size = comm.Get_rank(), comm.Get_size()
    plan = error = None
    try:
        if sync_every is not None:
            sync_every = check_positive("sync_every", sync_every, integer=True)
        plan = net._fit_plan(X, y, **arguments)
        if plan.optimizer == "lbfgs":
            raise ValueError("optimizer='lbfgs' does not train over MPI ranks; use a step rule")
    except Exception as e:  # noqa: BLE001 - every rank must hear of it before any raises
        error = e
    agree(comm, error)
    resuming = arguments.get("resume") is not None
    _check_ranks_agree(comm, net, plan, sync_every, resuming)

    counts = comm.allgather(len(plan.X))
    n_total = sum(counts)
    batch = n_total if plan.optimizer == "gd" else min(plan.batch_size, n_total)
    n_steps = -(-n_total // batch)
    run = plan.run
    start = error = None
    try:   # (another thread of some rank may be training this network)
        net._lock.train_acquire("fit")
    except Exception as e:  # noqa: BLE001
        error = e
    acquired = error is None
    try:
        agree(comm, error)
        if run is not None:   # (on every rank or on none: the arguments agree)
            run.data = {"ranks": comm.allgather(checkpoints.data_fingerprints(*plan.data_arrays()))}
            run.settings.update(ranks=size, sync_every=sync_every)
        try:
            if resuming:
                start = run.resume(arguments["resume"], net)
            trainer = _DistributedTrainer(net, comm, MPI, plan, sync_every, n_steps, rank)
        except Exception as e:  # noqa: BLE001
            error = e
        agree(comm, error)
        if resuming:   # every rank read the same run
            _check_ranks_agree(comm, net, plan, sync_every, resuming)
            positions = comm.allgather((start.epochs_done, start.step))
            if len(set(positions)) > 1:
                raise RankError(f"the ranks resumed from different checkpoints (epochs, steps "
                                f"{positions}): give every rank the same file")
    except BaseException:
        if acquired:
            net._lock.train_release()
        raise
    try:
        return trainer.run(start, verbose, callback)
    except BaseException as e:
        if size == 1 or _agreed(e):   # raised alike by every rank
            raise
        print(f"fastbp: rank {rank} of {size} stopped: {type(e).__name__}: {e}; aborting every "
              "rank (the others wait in a collective it will not join)", file=sys.stderr,
              flush=True)
        comm.Abort(1)
        raise   # not reached
    finally:
        net._lock.train_release()


class _DistributedTrainer:
    """The epoch loop of a distributed fit, with what it needs at hand."""

    def __init__(self, net, comm, MPI, plan, sync_every, n_steps, rank):
        self.net, self.comm, self.MPI, self.plan = net, comm, MPI, plan
        self.sync_every, self.n_steps, self.rank = sync_every, n_steps, rank
        self.size = comm.Get_size()
        n_local = len(plan.X)
        self.core = net._core_for(max(1, -(-n_local // n_steps)), plan.n_threads)
        net._use_state(self.core, plan.rule)
        self.n_params = net._layout.n_params
        self.n_weights = net._layout.n_weights
        # the allreduce buffer: the summed gradient, then the summed loss and weight
        self.buffer = np.zeros(self.n_params + 2, dtype=net.dtype)
        self.sync_buffer = None   # local SGD: the weights and the optimizer state, and the loss
        self.step = 0

    # -- one epoch's chunks -----------------------------------------------------------
    def chunks(self, epoch):
        """This rank's rows for each step of the epoch: its shard in an order drawn from
        (the network's shuffle seed, the rank, the epoch), split into n_steps parts."""
        n_local = len(self.plan.X)
        if self.plan.shuffle and self.plan.optimizer != "gd":
            order = np.random.default_rng([self.net._shuffle_state, self.rank, epoch]).permutation(n_local)
        else:
            order = np.arange(n_local)
        return np.array_split(order, self.n_steps)

    def rows(self, rows):
        p = self.plan
        return (p.X[rows], None if p.labels is None else p.labels[rows],
                None if p.targets is None else p.targets[rows],
                None if p.weights is None else p.weights[rows])

    def weight_of(self, rows, weights):
        return float(len(rows)) if weights is None else float(weights.sum(dtype=np.float64))

    # -- the synchronous step ---------------------------------------------------------
    def synchronous_step(self, rows, lr):
        """Backpropagate this rank's rows, add every rank's gradient (one allreduce),
        apply the update; returns the step's summed loss and weight over all ranks."""
        net, buf, n = self.net, self.buffer, self.n_params
        grads = buf[:n]
        if len(rows):
            X, labels, targets, weights = self.rows(rows)
            mean_loss = self.core.gradients(X, labels, targets, grads, weights)
            weight = self.weight_of(rows, weights)
            grads *= weight           # the summed gradient of this rank's rows
            buf[n], buf[n + 1] = mean_loss * weight, weight
        else:
            buf[:] = 0
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        loss, weight = float(buf[n]), float(buf[n + 1])
        if not np.isfinite(loss):
            raise FloatingPointError(
                f"the loss became NaN or inf at update {self.step + 1}; training stopped on every "
                "rank and the weights are those of the last finite step. Try a smaller lr or "
                "scaling the inputs.")
        if weight > 0:
            grads /= weight
        self.apply(grads, lr, weight)
        return loss, weight

    def apply(self, grads, lr, batch_weight):
        """The rule's update of every parameter from the flat gradient (biases undecayed);
        _Overflow if an updated value is NaN or inf (the same on every rank)."""
        net, rule, nw = self.net, self.plan.rule, self.n_weights
        decay = rule.weight_decay
        if rule.decay_on_sum:
            decay = decay / batch_weight if batch_weight > 0 else 0.0
        state = self.core.state   # the arrays _use_state gave the rule (None: it keeps none)
        t = net._rule_steps + self.step + 1
        bad = 0
        with net._lock.writing:
            for part, wd in ((slice(0, nw), decay), (slice(nw, None), 0.0)):
                bad |= _core.update_raw(
                    rule.kind, net._params[part], grads[part],
                    None if state is None else state[0][part],
                    None if state is None or len(state) < 2 else state[1][part],
                    lr, rule.momentum, wd, rule.nesterov, rule.beta1, rule.beta2, rule.eps, t)
        if bad:
            raise _Overflow()

    def copy_weights(self):
        """The weights and the rule's state, copied: what a divergence goes back to."""
        state = self.core.state
        return self.net._params.copy(), None if state is None else state.copy()

    def put_weights(self, copy):
        """Back to weights and state from copy_weights."""
        params, state = copy
        with self.net._lock.writing:
            self.net._params[...] = params
            if state is not None:
                self.core.state[...] = state

    def snapshot(self, i):
        """What replay_to goes back to: the weights and state before step i of the epoch."""
        self.saved = (i, self.step, self.copy_weights())

    def replay_to(self, i, chunks, lr0):
        """After step i of the epoch overflowed the weights (on every rank alike): back
        to the snapshot, then the steps before i again, which end where step i began."""
        sched = self.plan.sched
        first, self.step, weights = self.saved
        self.put_weights(weights)
        for j in range(first, i):
            self.synchronous_step(chunks[j], lr0 / (1.0 + sched.per_update_decay * self.step))
            self.step += 1

    # -- local SGD --------------------------------------------------------------------
    def local_step(self, rows, lr):
        """One step of this rank alone on its rows; its summed loss and weight."""
        if not len(rows):
            return 0.0, 0.0
        X, labels, targets, weights = self.rows(rows)
        trainer = _core.Trainer()
        self.plan.rule.set_on(trainer, lr, 0.0, self.step, self.net._rule_steps)
        with self.net._lock.writing:
            mean_loss = self.core.train_batch(trainer, X, labels, targets, weights)
        if trainer.status != _core.STATUS_OK:
            return float("nan"), 1.0   # every rank hears of it at the next average
        weight = self.weight_of(rows, weights)
        return mean_loss * weight, weight

    def average(self, loss_weight):
        """Average the ranks' weights and optimizer states (one allreduce, with the
        losses since the last average riding along), so that after it every rank holds
        the same bits; returns the summed (loss, weight) over all ranks."""
        net, n = self.net, self.n_params
        parts = [net._params] + ([] if self.core.state is None else list(self.core.state))
        if self.sync_buffer is None or len(self.sync_buffer) != len(parts) * n + 2:
            self.sync_buffer = np.zeros(len(parts) * n + 2, dtype=net.dtype)
        buf = self.sync_buffer
        for k, part in enumerate(parts):
            buf[k * n:(k + 1) * n] = part
        buf[-2], buf[-1] = loss_weight
        self.comm.Allreduce(self.MPI.IN_PLACE, buf, op=self.MPI.SUM)
        loss, weight = float(buf[-2]), float(buf[-1])
        if not np.isfinite(loss) or not np.isfinite(buf).all():
            self.step, weights = self.averaged
            self.put_weights(weights)   # every rank back to the last average: the same bits
            raise FloatingPointError("a rank's loss or weights became NaN or inf between two "
                                     "averages (local SGD); training stopped on every rank with "
                                     "the weights of the last average. Try a smaller lr.")
        with net._lock.writing:
            for k, part in enumerate(parts):
                np.divide(buf[k * n:(k + 1) * n], self.size, out=part)
        self.keep_average(self.step + 1)
        return loss, weight

    def keep_average(self, steps_done):
        """What a divergence between averages goes back to: the weights and state that
        every rank holds alike after an average (or at the start), and the steps done."""
        self.averaged = (steps_done, self.copy_weights())

    # -- validation -------------------------------------------------------------------
    def validation_scores(self):
        """The loss (and accuracy) over every rank's validation shard: one allreduce."""
        X_val, labels, targets = self.plan.val
        total, correct = self.core.evaluate(X_val, labels, targets)
        sums = np.array([total, correct, len(X_val)], dtype=np.float64)
        self.comm.Allreduce(self.MPI.IN_PLACE, sums, op=self.MPI.SUM)
        scores = {"loss": sums[0] / sums[2]}
        if self.net.loss in ("cross_entropy", "binary_cross_entropy"):
            scores["accuracy"] = sums[1] / sums[2]
        return scores

    # -- the epochs -------------------------------------------------------------------
    def run(self, start, verbose, callback):
        net, plan, sched = self.net, self.plan, self.plan.sched
        hist, first_epoch = (History(), 0) if start is None else start.continue_in(net, sched)
        if start is not None:
            self.step = start.step
        n_updates_base, rule_steps_base = net.n_updates_, net._rule_steps
        counts_steps = plan.rule.kind != _core.RULE_SGD
        if self.sync_every is not None:
            self.keep_average(self.step)
        try:
            for epoch in range(first_epoch, plan.epochs if not hist.stopped_early else first_epoch):
                started = time.perf_counter()
                lr0 = sched.epoch_lr(epoch)
                loss_sum = weight_sum = 0.0
                pending = [0.0, 0.0]   # local SGD: loss and weight since the last average
                chunks = self.chunks(epoch)
                for i, rows in enumerate(chunks):
                    lr = lr0 / (1.0 + sched.per_update_decay * self.step)
                    if self.sync_every is None:
                        if i % SNAPSHOT_STEPS == 0:
                            self.snapshot(i)
                        try:
                            loss, weight = self.synchronous_step(rows, lr)
                        except _Overflow:
                            self.replay_to(i, chunks, lr0)
                            raise FloatingPointError(
                                f"an update overflowed the weights to NaN or inf at update "
                                f"{self.step + 1}; training stopped on every rank and the weights "
                                "are those of the last finite step. Try a smaller lr or scaling "
                                "the inputs.") from None
                        loss_sum, weight_sum = loss_sum + loss, weight_sum + weight
                    else:
                        loss, weight = self.local_step(rows, lr)
                        pending = [pending[0] + loss, pending[1] + weight]
                        if (self.step + 1) % self.sync_every == 0 or i == self.n_steps - 1:
                            loss, weight = self.average(pending)
                            loss_sum, weight_sum = loss_sum + loss, weight_sum + weight
                            pending = [0.0, 0.0]
                    self.step += 1
                    last_lr = lr
                monitored = end_of_epoch(hist, epoch, plan.epochs, time.perf_counter() - started,
                                         loss_sum / weight_sum, last_lr,
                                         None if plan.val is None else self.validation_scores(),
                                         verbose and self.rank == 0, callback, len(plan.X),
                                         f" ({self.size} ranks)")
                hist.stopped_early = sched.end_epoch(monitored)
                run = plan.run
                if run is not None and run.due(epoch + 1, plan.epochs, hist.stopped_early):
                    self.checkpoint(run, epoch + 1, n_updates_base, rule_steps_base, counts_steps,
                                    hist)
                if hist.stopped_early:
                    break
        finally:
            hist.n_updates = self.step
            # the next fit's orders: drawn afresh, alike on every rank
            net._shuffle_state = int(np.random.default_rng(
                [net._shuffle_state, self.size, self.step]).integers(1 << 63))
            net.n_updates_ = n_updates_base + self.step
            if counts_steps:
                net._rule_steps = rule_steps_base + self.step
        return hist

    def checkpoint(self, run, epochs_done, n_updates_base, rule_steps_base, counts_steps, hist):
        """Rank 0 writes the checkpoint (the weights are the same on every rank); every
        rank learns whether it worked."""
        error = None
        if self.rank == 0:
            try:
                position = _Position(self.step, self.net._shuffle_state)
                run.save(self.net, epochs_done, position, n_updates_base, rule_steps_base,
                         counts_steps, self.plan.sched, hist)
            except Exception as e:  # noqa: BLE001
                error = e
        agree(self.comm, error)


class _Position:
    """What a checkpoint reads of a trainer: the updates done and the shuffle state
    (over MPI each epoch's order comes from the seed, the rank and the epoch)."""

    def __init__(self, step, rng):
        self.step, self.rng = step, rng
