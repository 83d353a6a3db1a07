"""Model files: `Network.save(path)` and `fastbp.load(path)`.

A model file (format version 3) is a safetensors file (https://huggingface.co/docs/safetensors),
written and parsed by the ``safetensors`` library:

- tensors ``0.weight``, ``0.bias``, ``2.weight``, ``2.bias``, ...: layer l's weights as
  ``(n_out, n_in)`` and biases ``(n_out,)`` under the names ``{2l}.weight`` and
  ``{2l}.bias``, in the network's dtype. These are the layout and the names of the
  ``state_dict`` of the equivalent ``torch.nn.Sequential`` (`Network.to_torch`:
  ``Linear, activation, Linear, ...``, where layer l's ``nn.Linear`` is module 2l), so
  ``seq.load_state_dict(safetensors.torch.load_file(path))`` loads a model file into
  PyTorch. (fastbp's own ``net.weights[l]`` is the transpose, ``(n_in, n_out)``.)
- in the header's ``__metadata__`` (text, as safetensors requires): ``format``
  ("fastbp.Network"), ``format_version``, ``layer_sizes`` and ``activations`` (JSON),
  ``loss``, ``dtype``, ``fastbp_version``, and ``checksum``: a BLAKE2b digest of the
  rest of the metadata and of every tensor's name, dtype, shape and bytes (safetensors
  has no checksum, and a flipped bit in a weight must not load as a different model).

A checkpoint (`Network.fit(..., checkpoint=path)`) is a model file with the rest of a
training run beside the weights:

- in the metadata, ``optimizer_state`` (JSON: its kind, rows and Adam's step count) and
  ``run`` (JSON: the fit's settings, fingerprints of its data, the epoch and step
  reached, the shuffle generator's state and the schedule's; fastbp/checkpoint.py);
- ``state.{k}.{2l}.weight``, ``state.{k}.{2l}.bias``: row k of the optimizer's state
  (the momentum velocity, or Adam's m and v) laid out like the weights;
- ``history.loss``, ``history.val_loss``, ...: the History so far, float64 vectors.

Format versions 1 (model) and 2 (checkpoint) were NumPy ``.npz`` archives (members
``metadata.npy``, ``W0.npy``, ``b0.npy``, ..., ``s0_W0.npy``, ``h_loss.npy``, the
weights as ``(n_in, n_out)``); `load` still reads them (`_read_npz`). A file's first
bytes say which container it is, and its format version must agree.

Nothing in either is pickled, so loading never executes code from the file. Every
size is checked against the bytes actually present before anything is allocated (the
safetensors parser bounds-checks its header's offsets; the .npz reader checks each
member's declared size and ``.npy`` header), so a truncated file or a lying header is
refused with a ValueError instead of an exhausted memory. A model file holds no
optimizer state: a loaded network starts a fresh optimizer (a loaded checkpoint's
network has its state).
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
import tempfile
import zipfile
from io import BytesIO

import numpy as np
import safetensors.numpy

from ._version import __version__

FORMAT_NAME = "fastbp.Network"
FORMAT_VERSION = 3         # safetensors: models and checkpoints; the newest this fastbp reads
NPZ_VERSIONS = (1, 2)      # .npz: 1 a model, 2 a checkpoint
CHECKPOINT_NPZ_VERSION = 2
HISTORY_FIELDS = ("loss", "val_loss", "val_accuracy", "epoch_seconds", "lr")
JSON_FIELDS = ("format_version", "layer_sizes", "activations", "optimizer_state", "run")
METADATA_MEMBER = "metadata.npy"
MAX_METADATA_BYTES = 1 << 16     # the JSON is a few hundred bytes; anything larger is not ours
MAX_NPY_HEADER_BYTES = 1 << 12   # NumPy writes 64..~200 bytes


def linear_names(n_layers, prefix=""):
    """The weight and bias tensor names, in layer order: those of the equivalent
    nn.Sequential's state_dict, where layer l's Linear is module 2l."""
    return [f"{prefix}{2 * l}.{kind}" for l in range(n_layers) for kind in ("weight", "bias")]


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
        "format_version": FORMAT_VERSION,
        "layer_sizes": list(net.layer_sizes),
        "activations": list(net.activations),
        "loss": net.loss,
        "dtype": net.dtype.name,
        "fastbp_version": __version__,
    }
    names = linear_names(net.n_layers)
    tensors = {}
    with net._lock.reading:  # a copy of the weights of one complete update
        tensors.update(zip(names, _torch_layout(net.weights, net.biases)))
        if run is not None:
            rows = 0 if net._state is None else len(net._state)
            metadata["optimizer_state"] = {"kind": net._state_kind if rows else None, "rows": rows,
                                           "rule_steps": int(net._rule_steps if rule_steps is None
                                                             else rule_steps)}
            metadata["run"] = run
            for k in range(rows):
                tensors.update(zip(linear_names(net.n_layers, f"state.{k}."),
                                   _torch_layout(*net._layout.views(net._state[k]))))
            for name in HISTORY_FIELDS:
                tensors[f"history.{name}"] = np.asarray(getattr(history, name), dtype=np.float64)
    header = {key: value if key not in JSON_FIELDS else json.dumps(value)
              for key, value in metadata.items()}
    header["checksum"] = _checksum(header, tensors)
    write_atomically(path, safetensors.numpy.save(tensors, metadata=header))


def _torch_layout(weights, biases):
    """[W0ᵀ, b0, W1ᵀ, b1, ...] as new C-contiguous arrays: nn.Linear's (n_out, n_in)."""
    return [a for w, b in zip(weights, biases) for a in (np.ascontiguousarray(w.T), b.copy())]


def _checksum(header, tensors):
    """A digest of the metadata (but the checksum) and of every tensor."""
    h = hashlib.blake2b(digest_size=16)
    h.update(json.dumps({k: v for k, v in header.items() if k != "checksum"}, sort_keys=True).encode())
    for name in sorted(tensors):
        a = np.ascontiguousarray(tensors[name])
        h.update(json.dumps([name, a.dtype.str, a.shape]).encode())
        h.update(memoryview(a).cast("B"))
    return "blake2b-128:" + h.hexdigest()


def write_atomically(path, data):
    """Write the bytes ``data`` to ``path`` through a temporary file beside it and a
    rename: ``path`` holds either all of them or what it held before."""
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
            f.write(data)
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


def read_model(path):
    """(metadata dict, [W0, b0, W1, b1, ...], extras) from a file written by
    `save_network` (or a format version 1 or 2 .npz): the reading half of
    `fastbp.load` (fastbp/network.py builds the Network). Weights come as fastbp's
    (n_in, n_out). extras is {} for a model file; for a checkpoint {"state": one
    [W0, b0, ...] per row of the optimizer's state, "history": {field: float64 vector}}.

    Raises FileNotFoundError if there is no file, and BadModelFile (a ValueError),
    saying what is wrong, for anything that is not a complete, consistent model file:
    neither safetensors nor zip, truncated, a checksum that does not match, a newer
    format version, missing or extra arrays, shapes or dtypes that disagree with the
    metadata, object (pickled) arrays.
    """
    path = os.fspath(path)
    try:  # non-blocking: a FIFO must not hang the open
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        raise FileNotFoundError(f"{path}: no such model file") from None
    # One open file, read whole: measured and read by path, a file that another
    # process replaces in between could be judged by one and read from another.
    # Reading it whole allocates no more than the file holds.
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        os.close(fd)
        raise bad_model(path, "not a regular file")
    with os.fdopen(fd, "rb") as f:
        data = f.read()
    try:
        if data.startswith(b"PK"):
            return _read_npz(path, BytesIO(data), len(data))
        return _read_safetensors(path, data)
    except BadModelFile:
        raise
    except Exception as e:  # noqa: BLE001 - a hostile file can reach any error of the parsers
        raise bad_model(path, f"unreadable ({type(e).__name__}: {e})") from None


def _read_safetensors(path, data):
    try:
        tensors = safetensors.numpy.load(data)
        # The library has checked the header; it does not return its metadata.
        (header_bytes,) = struct.unpack("<Q", data[:8])
        header = json.loads(data[8:8 + header_bytes])["__metadata__"]
    except Exception as e:  # noqa: BLE001 - SafetensorError, or a dtype NumPy lacks
        raise bad_model(path, f"neither a safetensors file nor a .npz archive, or damaged "
                        f"({type(e).__name__}: {e})") from None
    if header.get("checksum") != _checksum(header, tensors):
        raise bad_model(path, "its checksum does not match its contents: corrupt, or not "
                        "written by fastbp")
    meta = {}
    for key, value in header.items():
        try:
            meta[key] = json.loads(value) if key in JSON_FIELDS else value
        except ValueError as e:
            raise bad_model(path, f"metadata {key} is not valid JSON ({e})") from None
    _check_metadata(path, meta, "safetensors")
    sizes, dtype = meta["layer_sizes"], np.dtype(meta["dtype"])
    n_layers = len(sizes) - 1
    rows = meta["optimizer_state"]["rows"] if "run" in meta else 0
    wanted = {}   # name -> (shape, dtype); None: any vector
    for prefix in [""] + [f"state.{k}." for k in range(rows)]:
        for l in range(n_layers):
            wanted[f"{prefix}{2 * l}.weight"] = ((sizes[l + 1], sizes[l]), dtype)
            wanted[f"{prefix}{2 * l}.bias"] = ((sizes[l + 1],), dtype)
    if "run" in meta:
        wanted.update((f"history.{name}", (None, np.dtype(np.float64))) for name in HISTORY_FIELDS)
    missing = [name for name in wanted if name not in tensors]
    extra = sorted(set(tensors) - set(wanted))
    if missing:
        raise bad_model(path, f"missing arrays {', '.join(missing)}")
    if extra:
        raise bad_model(path, f"unexpected tensors {', '.join(extra)}")
    for name, (shape, want) in wanted.items():
        a = tensors[name]
        if a.dtype != want:
            raise bad_model(path, f"{name} has dtype {a.dtype}, the metadata says {want}")
        if a.shape != shape and not (shape is None and a.ndim == 1):
            raise bad_model(path, f"{name} has shape {a.shape}, layer sizes {sizes} need "
                            f"{shape if shape is not None else 'a vector'}")
    # Back to fastbp's (n_in, n_out): a transposed view, copied by whoever keeps it.
    arrays = [tensors[name].T if name.endswith("weight") else tensors[name] for name in wanted]
    return _split(meta, arrays, n_layers, rows)


def _split(meta, arrays, n_layers, rows):
    """(meta, model arrays, extras) from [model, state rows..., history...] in order."""
    n_model = 2 * n_layers
    extras = {}
    if "run" in meta:
        extras["state"] = [arrays[n_model * (k + 1):n_model * (k + 2)] for k in range(rows)]
        extras["history"] = dict(zip(HISTORY_FIELDS, arrays[n_model * (rows + 1):]))
    return meta, arrays[:n_model], extras


def _check_metadata(path, meta, container):
    if not isinstance(meta, dict) or meta.get("format") != FORMAT_NAME:
        raise bad_model(path, f"metadata does not describe a {FORMAT_NAME}")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise bad_model(path, f"format_version must be a positive integer, got {version!r}")
    if version > FORMAT_VERSION:
        raise BadModelFile(f"{path}: written in model format version {version} by fastbp "
                           f"{meta.get('fastbp_version', '?')}; this fastbp ({__version__}) reads "
                           f"format versions up to {FORMAT_VERSION}: upgrade fastbp to load it")
    if (version in NPZ_VERSIONS) != (container == "npz"):
        raise bad_model(path, f"format version {version} in a {container} file: versions "
                        f"{' and '.join(map(str, NPZ_VERSIONS))} are .npz archives, {FORMAT_VERSION} "
                        "safetensors")
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
    if ("run" in meta) != ("optimizer_state" in meta) or ("run" in meta and version == 1):
        raise bad_model(path, "a checkpoint's metadata has both run and optimizer_state, in "
                        "format version 2 or later")
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


# -- format versions 1 and 2: .npz archives ------------------------------------------
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


def _array_members(n_layers, prefix=""):
    """The names of a .npz's weight and bias members, in layer order."""
    return [name for l in range(n_layers) for name in (f"{prefix}W{l}.npy", f"{prefix}b{l}.npy")]


def _read_npz(path, f, file_size):
    """read_model's result from the .npz archive in the file object f, every size
    checked against the file's before anything is allocated; ValueError for what is
    wrong."""
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
        _check_metadata(path, meta, "npz")

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
    return _split(meta, arrays, n_layers, rows)
