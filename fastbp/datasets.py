"""MNIST and Fashion-MNIST: finding, downloading, verifying and reading the IDX files.

Both data sets come as the same four files (``train-images-idx3-ubyte.gz``,
``train-labels-idx1-ubyte.gz``, ``t10k-images-idx3-ubyte.gz``,
``t10k-labels-idx1-ubyte.gz``), gzipped or raw. A loader looks, in order, in

1. the ``path`` argument;
2. ``$FASTBP_DATA`` (MNIST: the directory itself, then ``$FASTBP_DATA/mnist``;
   Fashion-MNIST: only ``$FASTBP_DATA/fashion-mnist``, so a ``$FASTBP_DATA`` that
   holds MNIST is never mistaken for Fashion-MNIST);
3. the cache, ``<cache root>/<name>/``, where the cache root is ``$FASTBP_CACHE``,
   else ``$XDG_CACHE_HOME/fastbp``, else ``~/.cache/fastbp``;
4. system directories (Fashion-MNIST: ``/usr/share/datasets/fashion-mnist``, from
   Debian's package ``dataset-fashion-mnist``);

and, if the files are in none of them and ``download`` is true, fetches the four
files from the mirrors in ``MIRRORS``, checks each one's MD5 and SHA-256 against
``CHECKSUMS`` and moves it atomically into the cache. See docs/data.md.
"""
from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import struct
import sys
import tempfile
import urllib.error
import urllib.request
import zlib

from typing import Sequence

import numpy as np
import numpy.typing as npt

from ._version import __version__

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801
IDX_UBYTE = 0x08  # the IDX type code for unsigned bytes, the only one these data sets use

DATASET_TITLES = {"mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}

# Published checksums of the four original .gz files: (md5, sha256).
# MNIST: the canonical files' MD5 (the ones torchvision checks) and SHA-256, as listed
# in /work/shared/data/mnist/README.md and re-checked against those files by
# tests/test_datasets.py. Fashion-MNIST: the MD5 column of the "Get the Data" table in
# zalandoresearch/fashion-mnist's README.md; Zalando publishes no SHA-256, so those
# are the digests of the same upstream files as recorded, identically, by two
# independent loaders (batchup's fashion_mnist.py and a test list that also carries the
# MNIST values above). Debian's recompressed .gz files do not match these; local files
# are therefore never checksummed, only downloads.
CHECKSUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": (
            "f68b3c2dcbeaaa9fbdd348bbdeb94873",
            "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        "train-labels-idx1-ubyte.gz": (
            "d53e105ee54ea40749a09fcbcd1e9432",
            "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
        "t10k-images-idx3-ubyte.gz": (
            "9fb629c4189551a2d022fa330f9573f3",
            "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        "t10k-labels-idx1-ubyte.gz": (
            "ec29112dd5afa0611ce80d1b7f02629c",
            "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": (
            "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
            "08dc20ab1689590a0bcd66e874647b6ee8464e2d501b5a3f1f78831db19a3fdc"),
        "train-labels-idx1-ubyte.gz": (
            "25c81989df183df01b3e8a0aad5dffbe",
            "b0197879cbda89f3dc7b894f9fd52b858e68ea4182b6947c9d8c2b67e5f18dcc"),
        "t10k-images-idx3-ubyte.gz": (
            "bef4ecab320f06d8554ea6380940ec79",
            "78dcbbfb5a27efaf1b6c1d616caca68560be8766c5bffcb2791df9273a534229"),
        "t10k-labels-idx1-ubyte.gz": (
            "bb300cfdad3c16e7a12a480ee83cd310",
            "42bd18137a62d5998cdeae52bf3a0676ac6b706f5cf8439b47bb5b151ae3dccf"),
    },
}

# Base URLs tried in order; a file's URL is base + "/" + file name. Tests replace these.
MIRRORS = {
    "mnist": [
        "https://ossci-datasets.s3.amazonaws.com/mnist",        # torchvision's mirror
        "https://storage.googleapis.com/cvdf-datasets/mnist",   # CVDF's mirror
        "http://yann.lecun.com/exdb/mnist",                     # the original site
    ],
    "fashion-mnist": [
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com",   # Zalando's own
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion",
    ],
}

# Read-only directories filled by system packages, looked at after the cache.
SYSTEM_DIRS = {
    "mnist": [],
    "fashion-mnist": ["/usr/share/datasets/fashion-mnist"],  # Debian: dataset-fashion-mnist
}

DOWNLOAD_TIMEOUT = 30.0            # seconds, per connection attempt and per read
MAX_DOWNLOAD_BYTES = 64 * 2**20    # the largest file (Fashion train images) is ~26 MB
# Deflate cannot expand data more than about 1032:1, so a .gz file whose header claims
# more than this many bytes per compressed byte is lying.
MAX_GZIP_RATIO = 1100


class DataNotFoundError(FileNotFoundError):
    """The data set's files are not where fastbp looked, and could not be downloaded."""


class ChecksumError(ValueError):
    """A downloaded file's MD5 or SHA-256 differs from the published value."""


def _open(path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return (gzip.open(path, "rb") if gz else open(path, "rb")), gz


def _read_exactly(f, n):
    """Up to n bytes from f, gathered chunk by chunk so that memory grows with the data
    actually present rather than with what a header claims."""
    buf = bytearray()
    while len(buf) < n:
        chunk = f.read(min(1 << 20, n - len(buf)))
        if not chunk:
            break
        buf += chunk
    return buf


def read_idx(path, expected_magic):
    """The uint8 array in one IDX file, after checking its header against its length:
    images (n, rows*cols), labels (n,).

    Rejects a wrong magic number, a truncated header or body, trailing bytes, and a
    header claiming more data than the file can hold, without allocating what the
    header claims.

    >>> images = read_idx("t10k-images-idx3-ubyte.gz", IMAGES_MAGIC)   # doctest: +SKIP
    >>> images.shape
    (10000, 784)
    """
    if expected_magic >> 8 != IDX_UBYTE or not 1 <= expected_magic & 0xFF <= 3:
        raise ValueError(f"expected_magic must be an unsigned-byte IDX magic such as "
                         f"0x{IMAGES_MAGIC:08x} or 0x{LABELS_MAGIC:08x}, got 0x{expected_magic:08x}")
    ndim = expected_magic & 0xFF
    header_size = 4 + 4 * ndim
    try:
        file_size = os.path.getsize(path)
        f, gz = _open(path)
        with f:
            header = _read_exactly(f, header_size)
            if len(header) >= 4:
                (magic,) = struct.unpack(">I", header[:4])
                if magic != expected_magic:
                    raise ValueError(f"{path}: wrong magic number 0x{magic:08x}, expected "
                                     f"0x{expected_magic:08x} (not this kind of IDX file)")
            if len(header) < header_size:
                raise ValueError(f"{path}: truncated IDX header ({len(header)} bytes, "
                                 f"expected {header_size})")
            dims = struct.unpack(f">{ndim}I", header[4:])
            if any(d == 0 for d in dims[1:]):
                raise ValueError(f"{path}: implausible IDX header, dimensions {dims}")
            # Python integers: no overflow however large the header's numbers are.
            item_size = 1
            for d in dims[1:]:
                item_size *= d
            body_size = dims[0] * item_size
            limit = file_size * MAX_GZIP_RATIO if gz else file_size - header_size
            if body_size > limit:
                raise ValueError(
                    f"{path}: implausible IDX header: dimensions {dims} mean {body_size} "
                    f"bytes of data, more than a {'gzip ' if gz else ''}file of {file_size} "
                    f"bytes can hold")
            # One byte more than the header promises, to detect trailing data.
            body = _read_exactly(f, body_size + 1)
    except (OSError, EOFError, zlib.error) as e:
        # OSError includes gzip.BadGzipFile; EOFError is a truncated gzip stream.
        raise ValueError(f"{path}: cannot read ({type(e).__name__}: {e})") from None
    if len(body) < body_size:
        raise ValueError(f"{path}: truncated: the header announces {dims[0]} items "
                         f"({body_size} bytes of data) but only {len(body)} bytes follow it")
    if len(body) > body_size:
        raise ValueError(f"{path}: trailing data after the {dims[0]} items "
                         f"({body_size} bytes of data) the header announces")
    shape = (dims[0], item_size) if ndim > 1 else (dims[0],)
    # bytearray is writable, so the array owns usable memory without a copy.
    return np.frombuffer(body, dtype=np.uint8).reshape(shape)


def cache_root():
    """The directory under which downloaded data sets are kept: ``$FASTBP_CACHE``,
    else ``$XDG_CACHE_HOME/fastbp``, else ``~/.cache/fastbp``.

    >>> cache_root()                         # doctest: +SKIP
    '/home/me/.cache/fastbp'
    """
    if os.environ.get("FASTBP_CACHE"):
        return os.path.abspath(os.environ["FASTBP_CACHE"])
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = xdg if xdg and os.path.isabs(xdg) else os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "fastbp")


def _check_name(name):
    if name not in DATASET_TITLES:
        raise ValueError(f"name must be one of {sorted(DATASET_TITLES)}, got {name!r}")


def search_dirs(name, path=None):
    """The places a data set is looked for, in order, as (description, directory)
    pairs; directory is None where the place does not apply (e.g. an unset variable).

    >>> [d for _, d in search_dirs("fashion-mnist")][-1]
    '/usr/share/datasets/fashion-mnist'
    """
    _check_name(name)
    places = [("path argument", os.fspath(path) if path is not None else None)]
    env = os.environ.get("FASTBP_DATA")
    if name == "mnist":
        places.append(("$FASTBP_DATA", env or None))
    places.append((f"$FASTBP_DATA/{name}", os.path.join(env, name) if env else None))
    places.append(("cache", os.path.join(cache_root(), name)))
    places += [("system", d) for d in SYSTEM_DIRS.get(name, [])]
    return places


def _find(directory, stem):
    for file_name in (stem + ".gz", stem):
        p = os.path.join(directory, file_name)
        if os.path.isfile(p):
            return p
    return None


def _describe_url_error(e):
    """(reason, kind) for an exception from urlopen or reading its response; kind is
    "unreachable" when no connection could be made (the mirror is then not retried
    for the other files), else "failed"."""
    if isinstance(e, urllib.error.HTTPError):
        e.close()
        return f"HTTP {e.code} {e.reason}", "failed"
    if isinstance(e, urllib.error.URLError):
        return f"cannot connect ({e.reason})", "unreachable"
    if isinstance(e, TimeoutError):
        return f"timed out ({e})", "unreachable"
    return f"{type(e).__name__}: {e}", "failed"


def _fetch_verified(url, destination, md5, sha256, timeout):
    """Download url into destination, atomically and only if its MD5 and SHA-256
    match. Returns None on success, else (why it failed, "checksum" | "unreachable" |
    "failed"). Whatever happens, no temporary file is left behind."""
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(destination) + ".",
                               suffix=".part", dir=os.path.dirname(destination))
    try:
        digest_md5, digest_sha256, size = hashlib.md5(), hashlib.sha256(), 0
        request = urllib.request.Request(url, headers={"User-Agent": f"fastbp/{__version__}"})
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(request, timeout=timeout) as response:
                    while chunk := response.read(1 << 16):
                        size += len(chunk)
                        if size > MAX_DOWNLOAD_BYTES:
                            return (f"more than {MAX_DOWNLOAD_BYTES} bytes, not the expected "
                                    f"file", "failed")
                        digest_md5.update(chunk)
                        digest_sha256.update(chunk)
                        out.write(chunk)
            except (OSError, ValueError, http.client.HTTPException) as e:
                # URLError, HTTPError and socket timeouts are OSErrors; ValueError: a
                # malformed URL; HTTPException: e.g. a connection cut mid-body.
                return _describe_url_error(e)
            out.flush()
            os.fsync(out.fileno())
        got = (digest_md5.hexdigest(), digest_sha256.hexdigest())
        if got != (md5, sha256):
            return (f"checksum mismatch ({size} bytes; md5 {got[0]}, expected {md5}; "
                    f"sha256 {got[1]}, expected {sha256})"), "checksum"
        os.chmod(tmp, 0o644)   # mkstemp makes it private; a cache is readable data
        os.replace(tmp, destination)
        tmp = None
        return None
    finally:
        if tmp is not None and os.path.exists(tmp):
            os.remove(tmp)


def download_dataset(name, directory=None, mirrors=None, timeout=DOWNLOAD_TIMEOUT):
    """Download the four files of data set ``name`` ("mnist" or "fashion-mnist") that
    are not already in ``directory`` (default: the cache, see ``cache_root``), trying
    each mirror in turn; returns the directory.

    Each file is verified against its published MD5 and SHA-256 and only then moved
    into place, so the directory never holds a partial or corrupt file. If some file
    cannot be fetched intact from any mirror, raises ``ChecksumError`` (a ValueError)
    when a mirror served wrong bytes, else ``DataNotFoundError``, naming every URL and
    what went wrong there. A mirror that cannot be reached is not tried again for the
    remaining files.

    >>> download_dataset("mnist")                    # doctest: +SKIP
    '/home/me/.cache/fastbp/mnist'
    """
    _check_name(name)
    mirrors = list(MIRRORS[name] if mirrors is None else mirrors)
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout must be a positive number of seconds, got {timeout!r}")
    directory = os.path.join(cache_root(), name) if directory is None else os.fspath(directory)
    title = DATASET_TITLES[name]
    if not mirrors:
        raise DataNotFoundError(f"cannot download {title}: no mirrors configured\n"
                                + _how_to_supply(name))
    created = []  # the folders made here, innermost first: removed again if nothing lands
    folder = os.path.abspath(directory)
    while not os.path.isdir(folder):
        created.append(folder)
        folder = os.path.dirname(folder)
    os.makedirs(directory, exist_ok=True)
    failures, unreachable, any_checksum = [], set(), False
    for file_name, (md5, sha256) in CHECKSUMS[name].items():
        destination = os.path.join(directory, file_name)
        if os.path.isfile(destination):
            continue
        file_failures = []
        for base in mirrors:
            url = base.rstrip("/") + "/" + file_name
            if base in unreachable:  # said once, at the first file
                continue
            print(f"fastbp: downloading {url}", file=sys.stderr)
            result = _fetch_verified(url, destination, md5, sha256, timeout)
            if result is None:
                break
            reason, kind = result
            any_checksum |= kind == "checksum"
            if kind == "unreachable":
                unreachable.add(base)
            file_failures.append(f"{url}: {reason}")
        else:
            failures += file_failures
    if failures:
        for folder in created:
            if os.listdir(folder):
                break
            os.rmdir(folder)
        error = ChecksumError if any_checksum else DataNotFoundError
        raise error(f"could not download {title} into {directory}:\n  "
                    + "\n  ".join(failures) + "\n" + _how_to_supply(name))
    return directory


def _how_to_supply(name):
    env = "$FASTBP_DATA" if name == "mnist" else "$FASTBP_DATA/fashion-mnist"
    files = ", ".join(CHECKSUMS[name])
    text = (f"To supply the files yourself, put {files} (gzipped or not) in a directory "
            f"and pass path=DIR, or use {env}=DIR, or copy them into "
            f"{os.path.join(cache_root(), name)}.")
    if name == "fashion-mnist":
        text += " On Debian/Ubuntu: apt-get install dataset-fashion-mnist."
    return text


def _load(name, path, kind, download, mirrors, timeout):
    _check_name(name)
    if kind not in MNIST_FILES:
        raise ValueError(f"kind must be 'train' or 'test', got {kind!r}")
    stems = MNIST_FILES[kind]
    title = DATASET_TITLES[name]
    looked = []
    for description, directory in search_dirs(name, path):
        if directory is None:
            looked.append(f"{description}: {'not set' if description.startswith('$') else 'not given'}")
            continue
        found = [_find(directory, s) for s in stems]
        if all(found):
            return _read_pair(*found)
        missing = [s for s, p in zip(stems, found) if p is None]
        state = "no such directory" if not os.path.isdir(directory) else \
            "missing " + ", ".join(m + "(.gz)" for m in missing)
        looked.append(f"{description}: {os.path.abspath(directory)} ({state})")
    where = f"{title} {kind} files not found. Looked in:\n  " + "\n  ".join(looked)
    if not download:
        raise DataNotFoundError(where + "\nDownloading is off (download=False). "
                                + _how_to_supply(name))
    try:
        directory = download_dataset(name, mirrors=mirrors, timeout=timeout)
    except (DataNotFoundError, ChecksumError) as e:
        raise type(e)(where + "\n" + str(e)) from None
    return _read_pair(*[_find(directory, s) for s in stems])


def _read_pair(images_path, labels_path):
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[1] != 28 * 28:
        raise ValueError(f"{images_path}: images have {images.shape[1]} pixels, expected 28x28")
    if len(images) != len(labels):
        raise ValueError(f"{images_path} has {len(images)} images but {labels_path} "
                         f"has {len(labels)} labels")
    if labels.size and labels.max() > 9:
        raise ValueError(f"{labels_path}: label {labels.max()} outside 0-9")
    return images, labels


def load_mnist(path: str | os.PathLike[str] | None = None, kind: str = "train",
               download: bool = True, *, mirrors: Sequence[str] | None = None,
               timeout: float = DOWNLOAD_TIMEOUT) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.uint8]]:
    """MNIST as (images uint8 (n, 784), labels uint8 (n,)).

    ``path`` is a directory holding the IDX files; without it (or if the files are not
    there) they are looked for in ``$FASTBP_DATA``, the cache and, with
    ``download=True``, downloaded from ``mirrors`` (default ``MIRRORS["mnist"]``) and
    verified. ``kind`` is "train" (60,000 images) or "test" (10,000).

    >>> X, y = load_mnist(kind="test")        # doctest: +SKIP
    >>> X.shape, y.shape
    ((10000, 784), (10000,))
    """
    return _load("mnist", path, kind, download, mirrors, timeout)


def load_fashion_mnist(path=None, kind="train", download=True, *, mirrors=None,
                       timeout=DOWNLOAD_TIMEOUT):
    """Fashion-MNIST (Zalando's clothing images, same format and sizes as MNIST) as
    (images uint8 (n, 784), labels uint8 (n,)).

    Looked for in ``path``, ``$FASTBP_DATA/fashion-mnist``, the cache, then Debian's
    ``/usr/share/datasets/fashion-mnist``; with ``download=True`` fetched from
    ``mirrors`` (default ``MIRRORS["fashion-mnist"]``) and verified.

    >>> X, y = load_fashion_mnist(kind="test")   # doctest: +SKIP
    >>> X.shape, y.shape
    ((10000, 784), (10000,))
    """
    return _load("fashion-mnist", path, kind, download, mirrors, timeout)
