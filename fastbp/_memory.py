"""Arrays whose data starts on a cache line (64 bytes).

NumPy gives large arrays the alignment of malloc: 16 bytes past a page boundary on
glibc. A row of weights then starts 16 bytes into a cache line, every other 32-byte
vector load or store of the kernels straddles two lines, and a batch-1 SGD step over
a 784x256 layer took 45% longer (csrc/dense.inc, rows_step_B). So the arrays that the
C kernels stream through - weights, biases, their gradients and velocities, the work
buffer - are allocated here. Users' arrays (X, y) are read as they are.
"""
import numpy as np

ALIGNMENT = 64   # bytes: an x86-64 cache line


def aligned_zeros(shape, dtype):
    """A C-contiguous array of zeros whose data starts on an ALIGNMENT-byte boundary.

    >>> a = aligned_zeros((3, 5), np.float32)
    >>> a.ctypes.data % ALIGNMENT, a.shape, a.dtype.name, a.flags.c_contiguous, a.sum()
    (0, (3, 5), 'float32', True, 0.0)
    """
    dtype = np.dtype(dtype)
    shape = (shape,) if np.isscalar(shape) else tuple(shape)
    nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    raw = np.zeros(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


def aligned_copy(a):
    """A copy of ``a`` in an aligned_zeros array of its shape and dtype."""
    a = np.asarray(a)
    out = aligned_zeros(a.shape, a.dtype)
    out[...] = a
    return out
