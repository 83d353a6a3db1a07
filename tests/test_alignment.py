"""The arrays the C kernels stream through start on a cache line (fastbp/_memory.py):
NumPy alone puts large arrays 16 bytes past one, which made the batch-1 step 45%
slower. Correctness does not depend on it; these tests keep it from regressing."""
import numpy as np
import pytest

import fastbp
from fastbp._memory import ALIGNMENT, aligned_copy, aligned_zeros


def offsets(arrays):
    return [a.ctypes.data % ALIGNMENT for a in arrays]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes", [(784, 256, 10), (3, 5, 2), (1000, 7, 7, 3)])
def test_parameters_and_buffers_start_on_a_cache_line(sizes, dtype):
    net = fastbp.Network(sizes, dtype=dtype, seed=0)
    X = np.random.default_rng(0).random((4, sizes[0])).astype(dtype)
    y = np.arange(4) % sizes[-1]
    net.train_step(X, y, lr=0.01, momentum=0.9)
    vW, vb = net._velocity
    core = net._core
    for arrays in (net.weights, net.biases, vW, vb, core.dW, core.db, [core.work]):
        assert offsets(arrays) == [0] * len(arrays)


def test_aligned_zeros_and_copy():
    for n in (1, 3, 17, 4096 + 5):
        a = aligned_zeros((n, 3), np.float64)
        assert a.ctypes.data % ALIGNMENT == 0 and a.shape == (n, 3) and not a.any()
        assert a.flags.c_contiguous and a.flags.writeable
    src = np.arange(12, dtype=np.float32).reshape(3, 4)[:, ::2]   # not contiguous
    out = aligned_copy(src)
    assert out.ctypes.data % ALIGNMENT == 0 and out.flags.c_contiguous
    np.testing.assert_array_equal(out, src)
    out[0, 0] = 99
    assert src[0, 0] == 0   # a copy, not a view


def test_set_weights_keeps_the_aligned_arrays():
    net = fastbp.Network([30, 20, 4], seed=0)
    before = [w.ctypes.data for w in net.weights]
    net.set_weights([np.ones((30, 20)), np.ones((20, 4))], [np.zeros(20), np.zeros(4)])
    assert [w.ctypes.data for w in net.weights] == before
    assert offsets(net.weights) == [0, 0]
