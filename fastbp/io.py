"""Model files: `Network.save(path)` and `fastbp.load(path)`.

A model file is a NumPy ``.npz`` archive (a zip of ``.npy`` members, stored
uncompressed) holding:

- ``metadata.npy``: UTF-8 JSON as a uint8 vector: format name and version, layer
  sizes, hidden activations, loss, dtype and the fastbp version that wrote it;
- ``W0.npy``, ``b0.npy``, ``W1.npy``, ...: each layer's weights (n_in, n_out) and
  biases (n_out,), in the network's dtype.

A checkpoint (`Network.fit(..., checkpoint=path)`, format version 2) is a model file
with the rest of a training run beside the weights:

- in the metadata, ``optimizer_state`` (its kind, rows and Adam's step count) and
  ``run`` (the fit's settings, fingerprints of its data, the epoch and step reached,
  the shuffle generator's state and the schedule's; fastbp/checkpoint.py);
- ``s0_W0.npy``, ``s0_b0.npy``, ...: row k of the optimizer's state (the momentum
  velocity, or Adam's m and v) laid out like the weights;
- ``h_loss.npy``, ``h_val_loss.npy``, ...: the History so far, float64 vectors.

Nothing in it is pickled, so loading never executes code from the file. `load`
checks every member's declared size and ``.npy`` header against the metadata and
against the bytes actually present before it allocates anything, so a truncated
file or a lying header is refused with a ValueError instead of an exhausted memory.
A model file holds no optimizer state: a loaded network starts a fresh optimizer
(a loaded checkpoint's network has its state).
"""
from __future__ import annotations

import json
import os
import stat
import tempfile
import zipfile

import numpy as np

from ._version import __version__

FORMAT_NAME = "fastbp.Network"
MODEL_VERSION = 1          # what a model file is written as: readable by every fastbp
CHECKPOINT_VERSION = 2     # a model file and the run's state
FORMAT_VERSION = CHECKPOINT_VERSION   # the newest this fastbp reads
HISTORY_FIELDS = ("loss", "val_loss", "val_accuracy", "epoch_seconds", "lr")
METADATA_MEMBER = "metadata.npy"
MAX_METADATA_BYTES = 1 << 16     # the JSON is a few hundred bytes; anything larger is not ours
MAX_NPY_HEADER_BYTES = 1 << 12   # NumPy writes 64..~200 bytes


def _array_members(n_layers, prefix=""):
    """The names of the weight and bias members, in layer order."""
    return [name for l in range(n_layers) for name in (f"{prefix}W{l}.npy", f"{prefix}b{l}.npy")]


def save_network(net, path, run=None, history=None, rule_steps=None):
    """Write ``net`` to ``path`` atomically: the file is either the complete new
    model or, if writing fails, whatever was there before. With ``run`` (a JSON-able
    dict, fastbp/checkpoint.py) it is a checkpoint: the optimizer's state, the updates
    it has seen (``rule_steps``, else the network's count) and ``history`` (a History)
    are written too.

    >>> import fastbp, os, tempfile
    >>> path = os.path.join(tempfile.mkdtemp(), "xor.fbp")
    >>> fastbp.Network([2, 4, 2], seed=0).save(path)
    >>> fastbp.load(path).layer_sizes
    (2, 4, 2)
    """
    path = os.fspath(path)
    metadata = {
        "format": FORMAT_NAME,
        "format_version": MODEL_VERSION if run is None else CHECKPOINT_VERSION,
        "layer_sizes": list(net.layer_sizes),
        "activations": list(net.activations),
        "loss": net.loss,
        "dtype": net.dtype.name,
        "fastbp_version": __version__,
    }
    arrays = {}
    with net._lock.reading:  # a copy of the weights of one complete update
        for l, (w, b) in enumerate(zip(net.weights, net.biases)):
            arrays[f"W{l}"] = w.copy()
            arrays[f"b{l}"] = b.copy()
        if run is not None:
            rows = 0 if net._state is None else len(net._state)
            metadata["optimizer_state"] = {"kind": net._state_kind if rows else None, "rows": rows,
                                           "rule_steps": int(net._rule_steps if rule_steps is None
                                                             else rule_steps)}
            metadata["run"] = run
            for k in range(rows):
                weights, biases = net._layout.views(net._state[k])
                for l, (w, b) in enumerate(zip(weights, biases)):
                    arrays[f"s{k}_W{l}"] = w.copy()
                    arrays[f"s{k}_b{l}"] = b.copy()
            for name in HISTORY_FIELDS:
                arrays[f"h_{name}"] = np.asarray(getattr(history, name), dtype=np.float64)
    arrays = {METADATA_MEMBER[:-4]: np.frombuffer(json.dumps(metadata).encode("utf-8"), dtype=np.uint8),
              **arrays}
    directory = os.path.dirname(os.path.abspath(path))
    # The temporary file sits in the target's directory so that os.replace is a
    # rename within one file system, which is atomic.
    fd, tmp = tempfile.mkstemp(dir=directory, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
    try:
        # mkstemp makes the file private (0600): give it the mode the file it replaces
        # had, or else the one a plain open() would give under the user's umask.
        try:
            mode = os.stat(path).st_mode & 0o7777
        except FileNotFoundError:
            mode = 0o666 & ~_umask()
        os.fchmod(fd, mode)
        with os.fdopen(fd, "wb") as f:
            np.savez(f, allow_pickle=False, **arrays)   # a file object: no ".npz" appended
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask():
    """The process's umask, read without changing it where Linux tells it (os.umask
    can only be read by setting it, which races with other threads' file creation)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


class BadModelFile(ValueError):
    """What `load` raises for a file that is not a complete, consistent model."""


def bad_model(path, problem):
    return BadModelFile(f"{path}: not a usable fastbp model file: {problem}")


def _read_npy_header(path, archive, info):
    """(shape, dtype, data_offset) from a member's .npy header, read without
    reading the data."""
    with archive.open(info) as f:
        try:
            version = np.lib.format.read_magic(f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(
                    f, max_header_size=MAX_NPY_HEADER_BYTES)
            elif version == (2, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(
                    f, max_header_size=MAX_NPY_HEADER_BYTES)
            else:
                raise ValueError(f"unsupported .npy version {version}")
        except (ValueError, EOFError, OSError, zipfile.BadZipFile) as e:
            raise bad_model(path, f"member {info.filename}: bad .npy header ({e})") from None
        offset = f.tell()
    if dtype.hasobject:
        raise bad_model(path, f"member {info.filename} holds Python objects, which fastbp never writes "
                         "and will not unpickle")
    if fortran and len(shape) > 1:
        raise bad_model(path, f"member {info.filename} is in Fortran order; fastbp writes C order")
    return tuple(shape), dtype, offset


def _read_member(path, archive, info, offset, nbytes):
    """Exactly the ``nbytes`` of data after ``offset`` in a member, checking its CRC."""
    try:
        with archive.open(info) as f:
            f.read(offset)
            data = f.read(nbytes + 1)   # one more byte than expected reaches the CRC check
    except (zipfile.BadZipFile, EOFError, OSError) as e:
        raise bad_model(path, f"member {info.filename} is corrupt or truncated ({e})") from None
    if len(data) != nbytes:
        raise bad_model(path, f"member {info.filename} has {len(data)} data bytes, its header says {nbytes}")
    return data


def _check_metadata(path, meta):
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise bad_model(path, f"metadata does not describe a {FORMAT_NAME}")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise bad_model(path, f"format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise BadModelFile(f"{path}: written in model format version {version} by fastbp "
                         f"{meta.get('fastbp_version', '?')}; this fastbp ({__version__}) reads "
                         f"format versions up to {FORMAT_VERSION}: upgrade fastbp to load it")
    sizes = meta.get("layer_sizes")
    if (not isinstance(sizes, list) or len(sizes) < 2
            or any(isinstance(s, bool) or not isinstance(s, int) or s < 1 for s in sizes)):
        raise bad_model(path, f"layer_sizes must be a list of at least two integers >= 1, got {sizes!r}")
    acts = meta.get("activations")
    if not isinstance(acts, list) or len(acts) != len(sizes) - 2 or not all(isinstance(a, str) for a in acts):
        raise bad_model(path, f"activations must list one name per hidden layer "
                         f"({len(sizes) - 2}), got {acts!r}")
    if not isinstance(meta.get("loss"), str):
        raise bad_model(path, f"loss must be a name, got {meta.get('loss')!r}")
    if meta.get("dtype") not in ("float32", "float64"):
        raise bad_model(path, f"dtype must be 'float32' or 'float64', got {meta.get('dtype')!r}")
    if ("run" in meta) != ("optimizer_state" in meta) or ("run" in meta and version < CHECKPOINT_VERSION):
        raise bad_model(path, "a checkpoint's metadata has both run and optimizer_state, in format "
                         f"version {CHECKPOINT_VERSION} or later")
    if "optimizer_state" in meta:
        state = meta["optimizer_state"]
        if (not isinstance(state, dict) or state.get("rows") not in (0, 1, 2)
                or state.get("kind") not in ({None} if state.get("rows") == 0 else
                                              {"velocity"} if state.get("rows") == 1 else {"moments"})
                or isinstance(state.get("rule_steps"), bool) or not isinstance(state.get("rule_steps"), int)
                or state["rule_steps"] < 0):
            raise bad_model(path, f"optimizer_state must give rows 0 (kind None), 1 (velocity) or 2 "
                             f"(moments) and rule_steps >= 0, got {state!r}")
        if not isinstance(meta["run"], dict):
            raise bad_model(path, f"run must be a mapping, got {meta['run']!r}")


def read_model(path):
    """(metadata dict, [W0, b0, W1, b1, ...], extras) from a file written by
    `save_network`: the reading half of `fastbp.load` (fastbp/network.py builds the
    Network). extras is {} for a model file; for a checkpoint {"state": one
    [W0, b0, ...] per row of the optimizer's state, "history": {field: float64 vector}}.

    Raises FileNotFoundError if there is no file, and BadModelFile (a ValueError),
    saying what is wrong, for anything that is not a complete, consistent model file:
    not a zip, truncated, a newer format version, missing or extra arrays, shapes or
    dtypes that disagree with the metadata, object (pickled) arrays.
    """
    path = os.fspath(path)
    try:  # non-blocking: a FIFO must not hang the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such model file") from None
    # One open file for every check and read: measured and read by path, a file that
    # another process replaces in between could be judged by one and read from another.
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise bad_model(path, "not a regular file")
    with os.fdopen(fd, "rb") as f:
        try:
            return _read_model(path, f, info.st_size)
        except BadModelFile:
            raise
        except Exception as e:  # noqa: BLE001 - a hostile file can reach any error of zipfile/json
            raise bad_model(path, f"unreadable ({type(e).__name__}: {e})") from None


def _read_model(path, f, file_size):
    """(metadata, [W0, b0, W1, ...]) from the open model file f, every size checked
    against the file's before anything is allocated; ValueError for what is wrong."""
    try:
        archive = zipfile.ZipFile(f)
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise bad_model(path, f"not a zip archive, or truncated ({e})") from None
    with archive:
        members = {info.filename: info for info in archive.infolist()}
        if len(members) != len(archive.infolist()):
            raise bad_model(path, "duplicate member names")
        for info in members.values():
            # Only stored members: their declared sizes can then be checked against
            # the bytes really in the file, so no declared size can make us allocate
            # more than the file holds (a deflated member could expand without bound).
            if info.compress_type != zipfile.ZIP_STORED:
                raise bad_model(path, f"member {info.filename} is compressed; fastbp writes stored members")
            if info.file_size != info.compress_size or info.header_offset + info.file_size > file_size:
                raise bad_model(path, f"member {info.filename} claims {info.file_size} bytes beyond "
                                 f"the file's {file_size}: truncated or corrupt")

        if METADATA_MEMBER not in members:
            raise bad_model(path, f"no {METADATA_MEMBER} member")
        info = members[METADATA_MEMBER]
        shape, dtype, offset = _read_npy_header(path, archive, info)
        if dtype != np.uint8 or len(shape) != 1 or shape[0] > MAX_METADATA_BYTES:
            raise bad_model(path, f"{METADATA_MEMBER} must be a uint8 vector of at most "
                             f"{MAX_METADATA_BYTES} bytes, got {dtype} {shape}")
        raw = _read_member(path, archive, info, offset, shape[0])
        try:
            meta = json.loads(raw.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise bad_model(path, f"metadata is not valid JSON ({e})") from None
        _check_metadata(path, meta)

        sizes, dtype_expected = meta["layer_sizes"], np.dtype(meta["dtype"])
        n_layers = len(sizes) - 1
        rows = meta["optimizer_state"]["rows"] if "optimizer_state" in meta else 0
        expected = _array_members(n_layers) + sum((_array_members(n_layers, f"s{k}_")
                                                   for k in range(rows)), [])
        history = [f"h_{name}.npy" for name in HISTORY_FIELDS] if "run" in meta else []
        expected += history
        missing = [m for m in expected if m not in members]
        extra = sorted(set(members) - set(expected) - {METADATA_MEMBER})
        if missing:
            raise bad_model(path, f"missing arrays {', '.join(m[:-4] for m in missing)}")
        if extra:
            raise bad_model(path, f"unexpected members {', '.join(extra)}")

        # Every header against the metadata and the member's size before any data is read.
        wanted = []
        for prefix in [""] + [f"s{k}_" for k in range(rows)]:
            for l in range(n_layers):
                wanted += [(f"{prefix}W{l}.npy", (sizes[l], sizes[l + 1]), dtype_expected),
                           (f"{prefix}b{l}.npy", (sizes[l + 1],), dtype_expected)]
        wanted += [(name, None, np.dtype(np.float64)) for name in history]   # any length
        plan = []
        for name, want, dtype_wanted in wanted:
            info = members[name]
            shape, dtype, offset = _read_npy_header(path, archive, info)
            if dtype != dtype_wanted:
                raise bad_model(path, f"{name[:-4]} has dtype {dtype}, the metadata says {dtype_wanted}")
            if want is None and len(shape) == 1:
                want = shape
            if shape != want:
                raise bad_model(path, f"{name[:-4]} has shape {shape}, layer sizes {sizes} need "
                                 f"{want if want is not None else 'a vector'}")
            nbytes = int(np.prod(want)) * dtype.itemsize
            if info.file_size != offset + nbytes:
                raise bad_model(path, f"member {name} holds {info.file_size - offset} data bytes, "
                                 f"its shape needs {nbytes}")
            plan.append((info, offset, nbytes, want, dtype))

        arrays = [np.frombuffer(_read_member(path, archive, info, offset, nbytes),
                                dtype=dtype).reshape(want)
                  for info, offset, nbytes, want, dtype in plan]
    n_model = 2 * n_layers
    extras = {}
    if "run" in meta:
        extras["state"] = [arrays[n_model * (k + 1):n_model * (k + 2)] for k in range(rows)]
        extras["history"] = dict(zip(HISTORY_FIELDS, arrays[n_model * (rows + 1):]))
    return meta, arrays[:n_model], extras
