"""Checkpoints of a training run: `Network.fit(..., checkpoint=path, checkpoint_every=k)`
writes one after every k epochs, `fit(..., resume=path)` continues from it.

A checkpoint is a model file (fastbp/io.py) that also holds what
the rest of the run needs to be the very run that was interrupted: the optimizer's
state (velocities, or Adam's moments and step count), the epoch and update reached,
the shuffle generator's state (the next epoch's order comes from it), the schedule's
state and the History so far. Training is deterministic, so a run killed at any moment
and resumed from its last checkpoint ends in the same bits as the run left alone.

A resume must be the same run: the checkpoint records the fit's settings and a
fingerprint (BLAKE2b) of its data, and a resume whose network, settings or data differ
is refused, naming what differs. ``epochs`` may differ (to train longer), as may
``n_threads`` (results do not depend on it), ``verbose`` and ``callback``.
"""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass

import numpy as np

from . import io
from .optim import Schedule

RUN_FORMAT = "fastbp.Run"


def fingerprint(a):
    """A digest of an array's dtype, shape and values (None for no array)."""
    if a is None:
        return None
    a = np.ascontiguousarray(a)
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{a.dtype.str}{a.shape}".encode())
    h.update(memoryview(a).cast("B"))
    return h.hexdigest()


def data_fingerprints(X, y, sample_weight, validation):
    """What identifies a run's data: digests of X, y, sample_weight and the validation
    pair (the y given as labels or as targets)."""
    val = None
    if validation is not None:
        val = [fingerprint(a) for a in validation]
    return {"X": fingerprint(X), "y": fingerprint(y), "sample_weight": fingerprint(sample_weight),
            "validation": val}


@dataclass
class ResumePoint:
    """Where a checkpointed run stands after its last complete checkpointed epoch."""
    epochs_done: int
    step: int                 # updates of the run so far
    rng: int                  # the shuffle generator's state after epochs_done epochs
    n_updates_base: int       # the network's n_updates_ when the run began
    rule_steps_base: int      # and the updates its optimizer state had seen
    schedule: dict
    stopped_early: bool
    history: dict             # field -> list

    def continue_in(self, net, sched):
        """Put the run's counters, shuffle and schedule state into net and sched; the
        History so far and the epoch to go on from."""
        from .network import History   # (network imports this module)
        history = History(**self.history, stopped_early=self.stopped_early)
        restore_schedule(sched, self.schedule)
        net._shuffle_state = self.rng
        net.n_updates_ = self.n_updates_base
        net._rule_steps = self.rule_steps_base
        return history, self.epochs_done


class RunCheckpoints:
    """fit's side of checkpointing: the run's identity (settings, data) and where and
    how often to write."""

    def __init__(self, path, every, settings, data):
        self.path = None if path is None else os.fspath(path)
        self.every = every
        self.settings = settings
        self.data = data

    def due(self, epochs_done, epochs, stopped_early):
        """Whether a checkpoint is written after this epoch: every `every` epochs and
        after the last one of the run."""
        return self.path is not None and (stopped_early or epochs_done == epochs
                                          or epochs_done % self.every == 0)

    def save(self, net, epochs_done, trainer, n_updates_base, rule_steps_base, counts_steps, sched,
             hist):
        """Write the checkpoint of the run after epochs_done epochs (atomically: a
        failed write keeps the previous one). counts_steps: the run's rule counts its
        updates in the state's step count (Adam's t)."""
        run = {"format": RUN_FORMAT, "settings": self.settings, "data": self.data,
               "epochs_done": epochs_done, "step": int(trainer.step), "rng": int(trainer.rng),
               "n_updates_base": int(n_updates_base), "rule_steps_base": int(rule_steps_base),
               "schedule": {"lr": sched.lr, "best": None if math.isinf(sched.best) else sched.best,
                            "stale": sched.stale},
               "stopped_early": bool(hist.stopped_early)}
        io.save_network(net, self.path, run=run, history=hist,
                        rule_steps=rule_steps_base + (trainer.step if counts_steps else 0))

    def resume(self, path, net):
        """Read the checkpoint at path, check that it is this run, and put its weights
        and optimizer state into net; returns its ResumePoint. ValueError for a file
        that is not a checkpoint of this run, naming what differs."""
        path = os.fspath(path)
        meta, arrays, extras = io.read_model(path)
        run = meta.get("run")
        if run is None:
            raise ValueError(f"resume={path!r} is a model file, not a checkpoint: it holds weights "
                             "but not the run (write one with fit(..., checkpoint=path))")
        _check_run(path, run, extras["history"])
        theirs = (tuple(meta["layer_sizes"]), tuple(meta["activations"]), meta["loss"], meta["dtype"])
        ours = (net.layer_sizes, net.activations, net.loss, net.dtype.name)
        if theirs != ours:
            raise ValueError(f"resume={path!r}: the checkpoint is of a {_describe(*theirs)} network, "
                             f"this is a {_describe(*ours)} one")
        differ = [f"{name}={self.settings.get(name)!r} (the checkpoint's run had "
                  f"{run['settings'].get(name)!r})"
                  for name in sorted(set(self.settings) | set(run["settings"]))
                  if _normal(self.settings.get(name)) != _normal(run["settings"].get(name))]
        if differ:
            raise ValueError(f"resume={path!r} is not this run: its arguments differ: " + ", ".join(differ))
        # one process: {"X": ..., ...}; over MPI: {"ranks": [one such per rank]} (the
        # settings, compared above, hold the number of ranks)
        ours, theirs = self.data.get("ranks", [self.data]), run["data"].get("ranks", [run["data"]])
        for r, (mine, saved) in enumerate(zip(ours, theirs)):
            changed = [name for name in ("X", "y", "sample_weight", "validation")
                       if mine.get(name) != saved.get(name)]
            if changed:
                what = {"X": "X", "y": "y", "sample_weight": "sample_weight",
                        "validation": "validation_data"}
                where = f" on rank {r}" if len(ours) > 1 else ""
                raise ValueError(f"resume={path!r} is not this run: its data differ{where} in "
                                 + ", ".join(what[c] for c in changed)
                                 + " (a resume needs the same data, in the same order)")
        check_optimizer_state(extras, path)   # before anything of net changes
        net.set_weights(arrays[0::2], arrays[1::2])
        put_optimizer_state(net, meta, extras, path)
        history = {name: [float(v) for v in values] for name, values in extras["history"].items()}
        return ResumePoint(run["epochs_done"], run["step"], run["rng"], run["n_updates_base"],
                           run["rule_steps_base"], run["schedule"], run["stopped_early"], history)


def _check_run(path, run, history):
    """A checkpoint's run record, as save writes it: BadModelFile otherwise."""
    def whole(value, low=0, high=None):
        return (isinstance(value, int) and not isinstance(value, bool) and value >= low
                and (high is None or value < high))

    def real(value):
        return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

    schedule = run.get("schedule")
    problems = [
        run.get("format") != RUN_FORMAT and "format",
        not isinstance(run.get("settings"), dict) and "settings",
        not isinstance(run.get("data"), dict) and "data",
        not whole(run.get("epochs_done")) and "epochs_done",
        not whole(run.get("step")) and "step",
        not whole(run.get("rng"), 0, 1 << 64) and "rng",
        not whole(run.get("n_updates_base")) and "n_updates_base",
        not whole(run.get("rule_steps_base")) and "rule_steps_base",
        not isinstance(run.get("stopped_early"), bool) and "stopped_early",
        not (isinstance(schedule, dict) and real(schedule.get("lr")) and schedule["lr"] > 0
             and (schedule.get("best") is None or real(schedule["best"]))
             and whole(schedule.get("stale"))) and "schedule",
        whole(run.get("epochs_done")) and len(history["loss"]) != run["epochs_done"] and "history",
    ]
    problems = [p for p in problems if p]
    if problems:
        raise io.bad_model(path, "the run record is damaged or not fastbp's: "
                           + ", ".join(problems))


def check_optimizer_state(extras, path):
    """BadModelFile for a checkpoint's optimizer state that holds NaN or inf."""
    if not all(np.isfinite(a).all() for layers in extras["state"] for a in layers):
        raise io.bad_model(path, "the optimizer state holds NaN or inf")


def put_optimizer_state(net, meta, extras, path):
    """A checkpoint's optimizer state (read by io.read_model) into net."""
    state = meta["optimizer_state"]
    check_optimizer_state(extras, path)
    with net._lock.writing:
        if state["rows"]:
            net._state = net._layout.zeros(state["rows"])
            for k, layers in enumerate(extras["state"]):
                weights, biases = net._layout.views(net._state[k])
                for view, saved in zip(weights + biases, layers[0::2] + layers[1::2]):
                    view[...] = saved
        else:
            net._state = None
        net._state_kind = state["kind"]
        net._rule_steps = state["rule_steps"]


def restore_schedule(sched: Schedule, state):
    sched.lr = state["lr"]
    sched.best = math.inf if state["best"] is None else state["best"]
    sched.stale = state["stale"]


def _normal(value):
    """Settings as JSON gives them back (tuples as lists)."""
    return list(value) if isinstance(value, tuple) else value


def _describe(sizes, activations, loss, dtype):
    return f"{'-'.join(map(str, sizes))} {'/'.join(activations) or 'linear'} {loss} {dtype}"
