"""The one seam where a gradient becomes an update (csrc/optim.inc).

Every kernel hands its finished gradient values to the update rule, which alone knows
its maths and its state. A test-only rule with two state arrays per parameter array
(as Adam keeps), FBP_RULE_TEST_RMS,

    g' = g + weight_decay * w   (weights only)
    m = momentum * m + g';  s = momentum * s + g'^2;  w -= lr * m / (sqrt(s) + 1)

runs through every site - the small-batch rows, the packed GEMM's epilogue (one panel
of K and the last of several), the sparse input layer, the bias sums and the unfused
pass after a batch of several chunks - on every code path, and must match the same
rule applied in NumPy to the reference's gradients."""
import numpy as np
import pytest

from fastbp import _core, reference
from fastbp.network import ACTIVATIONS, LOSSES

from conftest import make_net, random_problem



# 159k multiply-adds per row: every batch below runs on two threads (csrc/threads.inc,
# threads_for: from 32k per step for 1-3 rows, 1M for more), so the threads' offsets
# into the parameters and both state arrays are exercised.
WIDE_ENOUGH_FOR_TWO_THREADS = [784, 200, 10]


def core_with_test_rule(net, max_batch, n_threads):
    acts = [ACTIVATIONS[a] for a in net.activations] + [ACTIVATIONS["identity"]]
    core = _core.CoreNet(net.layer_sizes, acts, LOSSES[net.loss], net._layout, net._params,
                         net._grads, max_batch, n_threads)
    core.set_state(net._layout.zeros(2), _core.RULE_TEST_RMS)
    return core


def numpy_rule(params, grads, m, s, lr, momentum, weight_decay):
    for p, g, mi, si, decay in zip(params, grads, m, s, weight_decay):
        g = g + decay * p
        mi[...] = momentum * mi + g
        si[...] = momentum * si + g * g
        p -= lr * mi / (np.sqrt(si) + 1)


def train_both(sizes, batch, max_batch, zero_fraction, n_threads=2, steps=3, seed=0):
    net = make_net(sizes, "relu", "cross_entropy", "float64", seed=seed)
    X, y = random_problem(sizes, "cross_entropy", batch, "float64", seed=seed + 1,
                          zero_fraction=zero_fraction or 0.0)
    if zero_fraction is None:  # compact: a third of the features zero in every row
        X[:, ::3] = 0
    weights = [w.copy() for w in net.weights]
    biases = [b.copy() for b in net.biases]
    m = [np.zeros_like(p) for p in weights + biases]
    s = [np.zeros_like(p) for p in weights + biases]
    core = core_with_test_rule(net, max_batch, n_threads)
    trainer = _core.Trainer()
    lr, momentum, weight_decay = 0.05, 0.9, 1e-2
    trainer.set_optimizer(lr, 0.0, momentum, weight_decay, False, 0)
    labels = y.astype(np.int32)
    for _ in range(steps):
        core.train_batch(trainer, X, labels, None)
        grads = reference.gradients(weights, biases, net.activations, X, y, net.loss)[1]
        numpy_rule(weights + biases, [g[0] for g in grads] + [g[1] for g in grads], m, s, lr,
                   momentum, [weight_decay] * len(weights) + [0.0] * len(biases))
    assert trainer.status == _core.STATUS_OK
    return net, weights, biases, core, m, s


@pytest.mark.parametrize("batch, max_batch, zeros", [
    (1, 1, 0.5),      # small-batch rows
    (3, 3, 0.0),      # small-batch rows, B = 3
    (8, 8, 0.0),      # packed GEMM epilogue, one panel of K
    (8, 8, 0.85),     # sparse input layer
    (20, 20, None),   # features no row has skipped (compact input)
    (300, 300, 0.0),  # the update fused into the last of two panels of K
    (40, 16, 0.0),    # three chunks: gradients first, then the unfused pass
])
def test_a_two_state_rule_runs_through_every_kernel_site(code_path, batch, max_batch, zeros):
    sizes = WIDE_ENOUGH_FOR_TWO_THREADS
    net, weights, biases, core, m, s = train_both(sizes, batch, max_batch, zeros)
    for l in range(net.n_layers):
        np.testing.assert_allclose(net.weights[l], weights[l], rtol=1e-10, atol=1e-12,
                                   err_msg=f"weights[{l}]")
        np.testing.assert_allclose(net.biases[l], biases[l], rtol=1e-10, atol=1e-12,
                                   err_msg=f"biases[{l}]")
        # The state is the rule's: both arrays hold what NumPy's steps left.
        n = net.n_layers
        m_views, s_views = [sum(net._layout.views(a), []) for a in core.state]
        np.testing.assert_allclose(m_views[l], m[l], rtol=1e-10, atol=1e-12, err_msg=f"m[{l}]")
        np.testing.assert_allclose(s_views[l], s[l], rtol=1e-10, atol=1e-12, err_msg=f"s[{l}]")
        np.testing.assert_allclose(m_views[n + l], m[n + l], rtol=1e-10, atol=1e-12, err_msg=f"mb[{l}]")
        np.testing.assert_allclose(s_views[n + l], s[n + l], rtol=1e-10, atol=1e-12, err_msg=f"sb[{l}]")
    for state in core.state:  # the padding between layers stays zero
        views = sum(net._layout.views(state), [])
        assert np.count_nonzero(state) == sum(np.count_nonzero(v) for v in views)


@pytest.mark.parametrize("batch, max_batch", [(2, 2), (8, 8), (24, 24), (300, 300), (40, 16)])
def test_the_two_state_rule_gives_the_same_bits_for_any_thread_count(code_path, batch, max_batch):
    sizes = WIDE_ENOUGH_FOR_TWO_THREADS
    results = [train_both(sizes, batch, max_batch, 0.3, n_threads=n)[0] for n in (1, 2, 3)]
    for net in results[1:]:
        for a, b in zip(net.weights + net.biases, results[0].weights + results[0].biases):
            np.testing.assert_array_equal(a, b)


def test_back_to_sgd_when_the_second_state_is_removed():
    sizes = [20, 9, 3]
    net = make_net(sizes, "tanh", "cross_entropy", "float64", seed=3)
    X, y = random_problem(sizes, "cross_entropy", 6, "float64", seed=4)
    core = core_with_test_rule(net, 6, 1)
    core.set_state(None)
    before = [w.copy() for w in net.weights]
    biases_before = [b.copy() for b in net.biases]
    trainer = _core.Trainer()
    trainer.set_optimizer(0.1, 0.0, 0.0, 0.0, False, 0)
    core.train_batch(trainer, X, y.astype(np.int32), None)
    grads = reference.gradients(before, biases_before, net.activations, X, y, net.loss)[1]
    for l, w in enumerate(before):
        np.testing.assert_allclose(net.weights[l], w - 0.1 * grads[l][0], rtol=1e-12, atol=1e-14)
