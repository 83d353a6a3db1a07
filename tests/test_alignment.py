"""The arrays the C kernels stream through start on a cache line (fastbp/_memory.py):
NumPy alone puts large arrays 16 bytes past one, which made the batch-1 step 45%
slower. Correctness does not depend on it; these tests keep it from regressing."""
import numpy as np
import pytest

import fastbp
from fastbp._memory import ALIGNMENT, ParamLayout, aligned_zeros


def offsets(arrays):
    return [a.ctypes.data % ALIGNMENT for a in arrays]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes", [(784, 256, 10), (3, 5, 2), (1000, 7, 7, 3)])
def test_parameters_and_buffers_start_on_a_cache_line(sizes, dtype):
    net = fastbp.Network(sizes, dtype=dtype, seed=0)
    X = np.random.default_rng(0).random((4, sizes[0])).astype(dtype)
    y = np.arange(4) % sizes[-1]
    net.train_step(X, y, lr=0.01, momentum=0.9)
    core = net._core
    velocity = net._layout.views(net._state[0])
    gradients = net._layout.views(net._grads)
    for arrays in (net.weights, net.biases, *velocity, *gradients, [core.work]):
        assert offsets(arrays) == [0] * len(arrays)


def test_aligned_zeros():
    for n in (1, 3, 17, 4096 + 5):
        a = aligned_zeros((n, 3), np.float64)
        assert a.ctypes.data % ALIGNMENT == 0 and a.shape == (n, 3) and not a.any()
        assert a.flags.c_contiguous and a.flags.writeable


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("sizes", [(784, 256, 10), (3, 5, 2), (1000, 7, 7, 3), (1, 1)])
def test_the_layout_gives_each_layer_its_own_aligned_place_weights_before_biases(sizes, dtype):
    lay = ParamLayout(sizes, dtype)
    flat = lay.zeros(3)
    assert flat.shape == (3, lay.n_params) and offsets(flat) == [0, 0, 0]
    weights, biases = lay.views(flat[1])
    assert offsets(weights + biases) == [0] * len(weights + biases)
    assert [w.shape for w in weights] == [(a, b) for a, b in zip(sizes[:-1], sizes[1:])]
    assert [b.shape for b in biases] == [(b,) for b in sizes[1:]]
    for i, a in enumerate(weights + biases):   # no two views share a value
        a[...] = i + 1
    counts = np.bincount(flat[1].astype(np.int64), minlength=len(weights) + len(biases) + 1)
    assert list(counts[1:]) == [a.size for a in weights + biases]
    assert not flat[0].any() and not flat[2].any()
    # every weight before every bias: a rule that decays weights only is two passes
    assert max(lay.w_offset[l] + w.size for l, w in enumerate(weights)) <= lay.n_weights
    assert min(lay.b_offset) >= lay.n_weights


def test_set_weights_keeps_the_aligned_arrays():
    net = fastbp.Network([30, 20, 4], seed=0)
    before = [w.ctypes.data for w in net.weights]
    net.set_weights([np.ones((30, 20)), np.ones((20, 4))], [np.zeros(20), np.zeros(4)])
    assert [w.ctypes.data for w in net.weights] == before
    assert offsets(net.weights) == [0, 0]


def test_weights_biases_gradients_and_velocity_are_views_of_the_flat_arrays():
    net = fastbp.Network([6, 5, 3], seed=0, dtype="float64")
    X = np.random.default_rng(1).random((4, 6))
    net.train_step(X, np.arange(4) % 3, lr=0.1, momentum=0.9)
    for arrays, flat in ((net.weights + net.biases, net._params),
                         (sum(net._layout.views(net._grads), []), net._grads),
                         (sum(net._layout.views(net._state[0]), []), net._state[0])):
        assert all(np.shares_memory(a, flat) for a in arrays)
    grads = net.gradients(X, np.arange(4) % 3)   # a flat array of its own, same layout
    assert offsets([g for pair in grads for g in pair]) == [0] * 4
    assert not any(np.shares_memory(g, net._grads) for pair in grads for g in pair)


def test_the_core_refuses_a_layout_whose_layers_overlap_or_overflow():
    from fastbp import _core
    net = fastbp.Network([6, 5, 3], seed=0)
    for broken in ({"w_offset": [0, 16]}, {"b_offset": [net._layout.n_weights - 1, 80]},
                   {"b_offset": [net._layout.n_weights, net._layout.n_params - 1]}):
        lay = ParamLayout(net.layer_sizes, net.dtype)
        for name, value in broken.items():
            setattr(lay, name, value)
        with pytest.raises(ValueError, match="layout"):
            _core.CoreNet(net.layer_sizes, [1, 0], 0, lay, net._params, net._grads, 4)
    _core.CoreNet(net.layer_sizes, [1, 0], 0, net._layout, net._params, net._grads, 4)


@pytest.mark.parametrize("copy", ["pickle", "deepcopy"])
def test_a_copied_network_keeps_one_layout_of_its_own(copy):
    import copy as copying
    import pickle
    X = np.random.default_rng(2).random((8, 6))
    y = np.arange(8) % 3
    net = fastbp.Network([6, 5, 3], seed=0, dtype="float64")
    net.train_step(X, y, lr=0.1, momentum=0.9)
    twin = pickle.loads(pickle.dumps(net)) if copy == "pickle" else copying.deepcopy(net)
    for a in twin.weights + twin.biases:   # views of its own flat parameters, aligned
        assert np.shares_memory(a, twin._params) and not np.shares_memory(a, net._params)
        assert a.ctypes.data % ALIGNMENT == 0
    np.testing.assert_array_equal(twin._state, net._state)
    # the same next step (velocity included), and neither disturbs the other
    net.train_step(X, y, lr=0.1, momentum=0.9)
    twin.train_step(X, y, lr=0.1, momentum=0.9)
    for a, b in zip(twin.weights + twin.biases, net.weights + net.biases):
        np.testing.assert_array_equal(a, b)
