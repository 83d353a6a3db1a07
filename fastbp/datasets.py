"""Reading the MNIST IDX files.

The files are the four originals (``train-images-idx3-ubyte.gz`` ...), gzipped or
raw. They are looked for in ``path``, else in ``$FASTBP_DATA``.
"""
import gzip
import os
import struct

import numpy as np

MNIST_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
IMAGES_MAGIC, LABELS_MAGIC = 0x00000803, 0x00000801


class DataNotFoundError(FileNotFoundError):
    """The data set's files are not where fastbp looked."""


def _open(path):
    with open(path, "rb") as f:
        gz = f.read(2) == b"\x1f\x8b"
    return gzip.open(path, "rb") if gz else open(path, "rb")


def read_idx(path, expected_magic):
    """The array in one IDX file (uint8 data), after checking its header against
    its length: images (n, rows*cols), labels (n,)."""
    try:
        with _open(path) as f:
            data = f.read()
    except (OSError, EOFError, gzip.BadGzipFile) as e:
        raise ValueError(f"{path}: cannot read ({e})") from None
    if len(data) < 8:
        raise ValueError(f"{path}: truncated IDX file ({len(data)} bytes, no header)")
    magic, n = struct.unpack(">II", data[:8])
    if magic != expected_magic:
        raise ValueError(f"{path}: wrong magic number 0x{magic:08x}, expected 0x{expected_magic:08x}")
    dims = [n]
    header = 8
    if magic == IMAGES_MAGIC:
        if len(data) < 16:
            raise ValueError(f"{path}: truncated IDX header")
        rows, cols = struct.unpack(">II", data[8:16])
        dims = [n, rows * cols]
        header = 16
    expected = header + int(np.prod(dims))
    if len(data) != expected:
        raise ValueError(f"{path}: header says {n} items ({expected} bytes) but the file has "
                         f"{len(data)} bytes: {'truncated' if len(data) < expected else 'trailing data'}")
    return np.frombuffer(data, dtype=np.uint8, offset=header).reshape(dims).copy()


def _find(directory, stem):
    for name in (stem + ".gz", stem):
        p = os.path.join(directory, name)
        if os.path.exists(p):
            return p
    return None


def load_mnist(path=None, kind="train"):
    """MNIST as (images uint8 (n, 784), labels uint8 (n,)).

    ``path`` is the directory holding the IDX files; it defaults to ``$FASTBP_DATA``.
    ``kind`` is "train" (60,000 images) or "test" (10,000).

    >>> X, y = load_mnist(kind="test")        # doctest: +SKIP
    >>> X.shape, y.shape
    ((10000, 784), (10000,))
    """
    if kind not in MNIST_FILES:
        raise ValueError(f"kind must be 'train' or 'test', got {kind!r}")
    directory = path if path is not None else os.environ.get("FASTBP_DATA")
    if not directory:
        raise DataNotFoundError(
            "no MNIST location given: pass path=DIR or set FASTBP_DATA to the directory "
            "holding train-images-idx3-ubyte.gz and the other three IDX files")
    stems = MNIST_FILES[kind]
    found = [_find(directory, s) for s in stems]
    missing = [s for s, p in zip(stems, found) if p is None]
    if missing:
        raise DataNotFoundError(
            f"MNIST {kind} files not found in {os.path.abspath(directory)}: missing "
            f"{', '.join(m + '(.gz)' for m in missing)}")
    images = read_idx(found[0], IMAGES_MAGIC)
    labels = read_idx(found[1], LABELS_MAGIC)
    if len(images) != len(labels):
        raise ValueError(f"{found[0]} has {len(images)} images but {found[1]} has {len(labels)} labels")
    return images, labels
