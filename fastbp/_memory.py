"""Arrays whose data starts on a cache line (64 bytes).

NumPy gives large arrays the alignment of malloc: 16 bytes past a page boundary on
glibc. A row of weights then starts 16 bytes into a cache line, every other 32-byte
vector load or store of the kernels straddles two lines, and a batch-1 SGD step over
a 784x256 layer took 45% longer (csrc/small_batch.inc). So the arrays that the C
kernels stream through - the parameters, their gradients and the optimizer's state
(laid out by ParamLayout), the work buffer - are allocated here. Users' arrays (X, y)
are read as they are.
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


class ParamLayout:
    """Where each layer's weights and biases sit in a network's flat arrays (fbp_net
    in csrc/fastbp.h): every weight matrix, then every bias vector, each starting on a
    cache line, the padding between them zero. The parameters, their gradients and
    each array of optimizer state share this layout, so an update, a NaN check or a
    sum across processes is one pass over one array, and the state of parameter i is
    at index i of each state array.

    >>> lay = ParamLayout([3, 5, 2], np.float32)   # 16 float32 values per cache line
    >>> lay.w_offset, lay.b_offset, lay.n_weights, lay.n_params
    ([0, 16], [32, 48], 32, 64)
    >>> flat = lay.zeros(1)[0]
    >>> weights, biases = lay.views(flat)
    >>> weights[1][...] = 7; int(flat.sum()), [w.shape for w in weights], biases[0].shape
    (70, [(3, 5), (5, 2)], (5,))
    """

    def __init__(self, sizes, dtype):
        self.dtype = np.dtype(dtype)
        self.shapes = [((n_in, n_out), (n_out,)) for n_in, n_out in zip(sizes[:-1], sizes[1:])]
        per_line = ALIGNMENT // self.dtype.itemsize
        end = 0
        self.w_offset, self.b_offset = [], []
        for offsets, part in ((self.w_offset, 0), (self.b_offset, 1)):
            for shape in self.shapes:
                offsets.append(end)
                end += -(-int(np.prod(shape[part])) // per_line) * per_line
            if part == 0:
                self.n_weights = end
        self.n_params = end

    def zeros(self, rows):
        """(rows, n_params) zeros, every row on a cache line: that many flat arrays."""
        return aligned_zeros((rows, self.n_params), self.dtype)

    def copy(self, flat):
        """A copy of (rows, n_params) flat arrays (a pickled or saved state), aligned."""
        out = self.zeros(len(flat))
        out[...] = flat
        return out

    def views(self, flat):
        """The per-layer arrays in one flat array: (weights, biases), two lists of views."""
        weights = [flat[o:o + w[0] * w[1]].reshape(w) for o, (w, _) in zip(self.w_offset, self.shapes)]
        biases = [flat[o:o + b[0]] for o, (_, b) in zip(self.b_offset, self.shapes)]
        return weights, biases
