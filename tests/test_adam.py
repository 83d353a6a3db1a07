"""Adam, AdamW and scikit-learn's Adam (csrc/optim.inc, RULE_ADAM / RULE_ADAMW /
RULE_ADAM_SKLEARN): the rule on any arrays (fastbp.adam_update) and inside training, at
every kernel site that applies it, against the NumPy reference (fastbp.reference,
written out as PyTorch and scikit-learn document them) and against torch.optim.Adam,
AdamW (where torch is installed) and scikit-learn's AdamOptimizer themselves."""
import numpy as np
import pytest

import fastbp
from fastbp import _core, reference

from conftest import make_net, random_problem

TOL64 = dict(rtol=1e-10, atol=1e-13)


def assert_close(a, b, rel=1e-10, what=""):
    """max |a - b| <= rel * max |b|: relative error of the array. Element by element it
    cannot be asked of Adam where a gradient is near eps: there the step is lr/eps times
    the gradient, and two correct summation orders differ in its last bits."""
    err = np.max(np.abs(np.asarray(a) - np.asarray(b)))
    assert err <= rel * np.max(np.abs(b)), f"{what}: max error {err:.3g}, scale {np.max(np.abs(b)):.3g}"

# Every site that applies the rule: small-batch rows (1-3 rows), the packed GEMM's
# epilogue, the update fused into the last of two panels of K (over KC rows), the sparse
# input layer, and the unfused pass after a batch of several chunks (over 512 rows).
SITES = [(1, 0.0), (3, 0.5), (7, 0.0), (64, 0.0), (64, 0.85), (300, 0.0), (700, 0.3)]
WIDE_ENOUGH_FOR_TWO_THREADS = [784, 200, 10]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("decoupled", [False, True])
@pytest.mark.parametrize("weight_decay", [0.0, 0.05])
def test_adam_update_matches_the_reference(dtype, decoupled, weight_decay):
    rng = np.random.default_rng(1)
    param = rng.standard_normal(1037).astype(dtype)   # not a multiple of any vector width
    m, v = np.zeros_like(param), np.zeros_like(param)
    ref, rm, rv = param.copy(), m.copy(), v.copy()
    for step in range(1, 6):
        grad = rng.standard_normal(param.shape).astype(dtype)
        fastbp.adam_update(param, grad, m, v, step, lr=0.01, betas=(0.8, 0.99), eps=1e-6,
                           weight_decay=weight_decay, decoupled=decoupled)
        reference.adam_update(ref, grad, rm, rv, step, 0.01, 0.8, 0.99, 1e-6, weight_decay, decoupled)
    tol = TOL64 if dtype == "float64" else dict(rtol=2e-5, atol=1e-6)
    for a, b in ((param, ref), (m, rm), (v, rv)):
        np.testing.assert_allclose(a, b, **tol)


@pytest.mark.parametrize("decoupled", [False, True])
def test_adam_update_matches_pytorch(decoupled):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(2)
    param = rng.standard_normal(301)
    m, v = np.zeros_like(param), np.zeros_like(param)
    tp = torch.tensor(param.copy(), requires_grad=True)
    opt = (torch.optim.AdamW if decoupled else torch.optim.Adam)(
        [tp], lr=0.03, betas=(0.9, 0.95), eps=1e-7, weight_decay=0.1)
    for step in range(1, 8):
        grad = rng.standard_normal(param.shape)
        fastbp.adam_update(param, grad, m, v, step, lr=0.03, betas=(0.9, 0.95), eps=1e-7,
                           weight_decay=0.1, decoupled=decoupled)
        tp.grad = torch.tensor(grad)
        opt.step()
        np.testing.assert_allclose(param, tp.detach().numpy(), **TOL64)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_sklearn_adam_rule_matches_scikit_learns_optimizer(dtype):
    optimizers = pytest.importorskip("sklearn.neural_network._stochastic_optimizers")
    rng = np.random.default_rng(3)
    params = [rng.standard_normal((13, 7)).astype(dtype), rng.standard_normal(7).astype(dtype)]
    ours = [p.copy() for p in params]
    m = [np.zeros_like(p) for p in params]
    v = [np.zeros_like(p) for p in params]
    theirs = optimizers.AdamOptimizer(params, learning_rate_init=0.02, beta_1=0.8, beta_2=0.99,
                                      epsilon=1e-6)
    for step in range(1, 7):
        grads = [rng.standard_normal(p.shape).astype(dtype) for p in params]
        for p, g, mi, vi in zip(ours, grads, m, v):
            _core.update_raw(_core.RULE_ADAM_SKLEARN, p, g, mi, vi, 0.02, beta1=0.8, beta2=0.99,
                             eps=1e-6, step=step)
        theirs.update_params(params, grads)
        for a, b in zip(ours, params):
            if dtype == "float64":
                np.testing.assert_allclose(a, b, rtol=1e-14, atol=1e-15)
            else:   # scikit-learn's step size is a float64 scalar: its float32 arithmetic differs
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_sklearn_adam_differs_from_pytorchs_where_the_issue_says():
    # eps on the uncorrected sqrt(v): at step 1 PyTorch's step is lr g / (|g| + eps),
    # scikit-learn's lr g / (|g| + eps / sqrt(1 - beta2)); with a large eps they part
    g = np.array([1e-3])
    steps = {}
    for rule in (_core.RULE_ADAM, _core.RULE_ADAM_SKLEARN):
        p, m, v = np.zeros(1), np.zeros(1), np.zeros(1)
        _core.update_raw(rule, p, g, m, v, 1.0, beta1=0.9, beta2=0.999, eps=1e-3, step=1)
        steps[rule] = -p[0]
    assert steps[_core.RULE_ADAM] == pytest.approx(1e-3 / (1e-3 + 1e-3), rel=1e-12)
    assert steps[_core.RULE_ADAM_SKLEARN] == pytest.approx(
        np.sqrt(1 - 0.999) / (1 - 0.9) * 0.1 * 1e-3 / (np.sqrt(1 - 0.999) * 1e-3 + 1e-3), rel=1e-12)


def train_both(sizes, batch, zero_fraction, optimizer, weight_decay, steps=3, n_threads=2, seed=0):
    net = make_net(sizes, "relu", "cross_entropy", "float64", seed=seed)
    ref = reference.ReferenceNetwork(net.weights, net.biases, net.activations, net.loss)
    X, y = random_problem(sizes, "cross_entropy", batch, "float64", seed=seed + 1,
                          zero_fraction=zero_fraction)
    for _ in range(steps):
        net.train_step(X, y, lr=0.01, weight_decay=weight_decay, optimizer=optimizer,
                       betas=(0.9, 0.99), eps=1e-6, n_threads=n_threads)
        ref.adam_step(X, y, 0.01, (0.9, 0.99), 1e-6, weight_decay, optimizer == "adamw",
                      sklearn=optimizer == "adam_sklearn")
    return net, ref


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "adam_sklearn"])
@pytest.mark.parametrize("batch, zeros", SITES)
def test_training_with_adam_matches_the_reference_at_every_site(code_path, optimizer, batch, zeros):
    net, ref = train_both(WIDE_ENOUGH_FOR_TWO_THREADS, batch, zeros, optimizer, 0.02)
    for i, (a, b) in enumerate(zip(net.weights + net.biases, ref.weights + ref.biases)):
        assert_close(a, b, what=f"parameter {i}")
    m = sum(net._layout.views(net._state[0]), [])
    v = sum(net._layout.views(net._state[1]), [])
    for i, (a, b) in enumerate(zip(m + v, ref.m + ref.v)):
        assert_close(a, b, what=f"moment {i}")


@pytest.mark.parametrize("optimizer", ["adam", "adamw", "adam_sklearn"])
@pytest.mark.parametrize("batch, zeros", [(2, 0.0), (64, 0.5), (700, 0.0)])
def test_adam_gives_the_same_bits_for_any_thread_count(optimizer, batch, zeros):
    nets = [train_both(WIDE_ENOUGH_FOR_TWO_THREADS, batch, zeros, optimizer, 0.02, n_threads=n)[0]
            for n in (1, 2, 3)]
    for net in nets[1:]:
        for a, b in zip(net.weights + net.biases, nets[0].weights + nets[0].biases):
            np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("optimizer", ["adam", "adamw"])
@pytest.mark.parametrize("batch, zeros", [(1, 0.0), (7, 0.5), (64, 0.0), (300, 0.85)])
def test_training_with_adam_matches_pytorch(optimizer, batch, zeros):
    torch = pytest.importorskip("torch")
    sizes = [30, 16, 12, 4]
    net = make_net(sizes, "tanh", "cross_entropy", "float64", seed=3)
    layers = []
    for l, (w, b) in enumerate(zip(net.weights, net.biases)):
        lin = torch.nn.Linear(*w.shape, dtype=torch.float64)
        with torch.no_grad():
            lin.weight.copy_(torch.tensor(w.T))
            lin.bias.copy_(torch.tensor(b))
        layers += [lin] + ([torch.nn.Tanh()] if l < net.n_layers - 1 else [])
    model = torch.nn.Sequential(*layers)
    decayed = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    opt = (torch.optim.AdamW if optimizer == "adamw" else torch.optim.Adam)(
        [{"params": decayed, "weight_decay": 0.01}, {"params": biases, "weight_decay": 0.0}],
        lr=0.02, betas=(0.85, 0.995), eps=1e-7)
    X, y = random_problem(sizes, "cross_entropy", batch, "float64", seed=4, zero_fraction=zeros)
    for _ in range(4):
        net.train_step(X, y, lr=0.02, weight_decay=0.01, optimizer=optimizer, betas=(0.85, 0.995),
                       eps=1e-7)
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(torch.tensor(X)), torch.tensor(y)).backward()
        opt.step()
    for l, lin in enumerate(model[::2]):
        assert_close(net.weights[l], lin.weight.detach().numpy().T, what=f"weights[{l}]")
        assert_close(net.biases[l], lin.bias.detach().numpy(), what=f"biases[{l}]")


def test_fit_with_adam_is_train_steps_in_order_and_the_step_count_carries_over():
    sizes = [12, 9, 3]
    X, y = random_problem(sizes, "cross_entropy", 40, "float64", seed=5)
    a = make_net(sizes, seed=1)
    b = make_net(sizes, seed=1)
    a.fit(X, y, optimizer="adamw", lr=0.01, weight_decay=0.1, batch_size=8, epochs=1, shuffle=False)
    a.fit(X, y, optimizer="adamw", lr=0.01, weight_decay=0.1, batch_size=8, epochs=1, shuffle=False)
    for _ in range(2):
        for i in range(0, 40, 8):
            b.train_step(X[i:i + 8], y[i:i + 8], lr=0.01, weight_decay=0.1, optimizer="adamw")
    assert a._rule_steps == b._rule_steps == 10
    for p, q in zip(a.weights + a.biases, b.weights + b.biases):
        np.testing.assert_array_equal(p, q)


def test_reset_optimizer_starts_adam_afresh_and_a_rule_change_replaces_the_state():
    sizes = [6, 5, 3]
    X, y = random_problem(sizes, "cross_entropy", 10, "float64", seed=6)
    net = make_net(sizes, seed=2)
    for _ in range(3):
        net.train_step(X, y, lr=0.05, optimizer="adam")
    net.reset_optimizer()
    fresh = make_net(sizes, seed=2)
    fresh.set_weights(net.weights, net.biases)
    net.train_step(X, y, lr=0.05, optimizer="adam")
    fresh.train_step(X, y, lr=0.05, optimizer="adam")
    for p, q in zip(net.weights, fresh.weights):
        np.testing.assert_array_equal(p, q)
    net.train_step(X, y, lr=0.05, momentum=0.9)   # SGD with momentum: a velocity, not moments
    assert net._state_kind == "velocity" and net._state.shape[0] == 1
    assert net._rule_steps == 0


def test_plain_sgd_steps_between_adam_steps_do_not_count_as_adam_steps():
    sizes = [6, 5, 3]
    X, y = random_problem(sizes, "cross_entropy", 10, "float64", seed=7)
    net = make_net(sizes, seed=2)
    net.train_step(X, y, lr=0.05, optimizer="adam")
    net.fit(X, y, lr=0.05, epochs=2, batch_size=5)          # plain SGD: no state of its own
    net.train_step(X, y, lr=0.05)
    assert net._rule_steps == 1 and net._state_kind == "moments"
    m = net._state.copy()
    ref = reference.ReferenceNetwork(net.weights, net.biases, net.activations, net.loss)
    ref.m = [a.copy() for a in sum(net._layout.views(m[0]), [])]
    ref.v = [a.copy() for a in sum(net._layout.views(m[1]), [])]
    ref.adam_steps = 1
    net.train_step(X, y, lr=0.05, optimizer="adam")          # Adam's step 2, not 6
    ref.adam_step(X, y, 0.05)
    for a, b in zip(net.weights + net.biases, ref.weights + ref.biases):
        assert_close(a, b)


def test_adam_update_rejects_bad_arrays_and_settings():
    p, g = np.zeros(4), np.ones(4)
    with pytest.raises(ValueError, match="m must match"):
        fastbp.adam_update(p, g, np.zeros(3), np.zeros(4), 1, 0.1)
    with pytest.raises(ValueError, match="step must be positive"):
        fastbp.adam_update(p, g, np.zeros(4), np.zeros(4), 0, 0.1)
    with pytest.raises(ValueError, match=r"betas\[1\]"):
        fastbp.adam_update(p, g, np.zeros(4), np.zeros(4), 1, 0.1, betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="v must be writeable"):
        v = np.zeros(4)
        v.flags.writeable = False
        fastbp.adam_update(p, g, np.zeros(4), v, 1, 0.1)
    assert (p == 0).all()


# Adam's step reads a first moment below the smallest normal number as 0 (csrc/optim.inc,
# vtiny_to_zero): the moment itself keeps its exact value. Weights are planted small
# enough (1e-30, 1e-295) that the IEEE step, step_size / eps times a subnormal moment,
# would still change them: so a kernel that skipped the rule, or applied it to the
# stored moment, fails here. The smallest normal moment (finfo.tiny) is not read as 0.
TINY = {"float32": (1e-39, 1e-30), "float64": (1e-310, 1e-295)}   # (subnormal m, tiny w)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("rule", [_core.RULE_ADAM, _core.RULE_ADAMW, _core.RULE_ADAM_SKLEARN])
def test_a_subnormal_first_moment_moves_no_weight(code_path, dtype, rule):
    subnormal, w0 = TINY[dtype]
    n = 37                                   # vectors and a tail on every code path
    m = np.where(np.arange(n) % 2 == 0, subnormal, 1e-3).astype(dtype)
    m[1::4] *= -1
    m[::4] *= -1                             # subnormal moments of both signs
    m[3] = np.finfo(dtype).tiny / np.asarray(0.9, dtype)   # after the decay: about tiny,
    m[7] = -m[3]                                           # normal, so it moves w
    m[5] = np.nan
    w0 = np.asarray(w0, dtype)
    w = np.full(n, w0, dtype=dtype)
    v = np.where(np.abs(m) < 1e-30, 0, 1e-2).astype(dtype)   # the step there: lr / eps * m
    grad = np.zeros(n, dtype=dtype)
    expected_m = m * np.asarray(0.9, dtype)
    expected_v = v * np.asarray(0.999, dtype)
    ref_w, ref_m, ref_v = w.copy(), m.copy(), v.copy()
    if rule == _core.RULE_ADAM_SKLEARN:
        reference.adam_sklearn_update(ref_w, grad, ref_m, ref_v, 3, 1e-3)
    else:
        reference.adam_update(ref_w, grad, ref_m, ref_v, 3, 1e-3, decoupled=rule == _core.RULE_ADAMW)
    _core.update_raw(rule, w, grad, m, v, 1e-3, 0.0, 0.0, False, 0.9, 0.999, 1e-8, 3)
    np.testing.assert_array_equal(m, expected_m)   # the stored moments: exact, NaN kept
    np.testing.assert_array_equal(v, expected_v)
    tiny = np.abs(expected_m) < np.finfo(dtype).tiny
    assert tiny.sum() == 19 and (ref_w[tiny] != w0).all()   # IEEE would move them
    np.testing.assert_array_equal(w[tiny], w0)
    assert (np.abs(expected_m[[3, 7]]) >= np.finfo(dtype).tiny).all() and (w[[3, 7]] != w0).all()
    normal = ~tiny & ~np.isnan(m)
    np.testing.assert_allclose(w[normal], ref_w[normal], rtol=1e-6 if dtype == "float32" else 1e-13)
    assert np.isnan(w[5])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("optimizer", ["adam", "adamw", "adam_sklearn"])
@pytest.mark.parametrize("batch, zeros", SITES)
def test_a_subnormal_first_moment_moves_no_weight_at_every_site(code_path, dtype, optimizer,
                                                                 batch, zeros):
    sizes = [784, 203, 10]   # 203: a tail of values after the vectors on every code path
    subnormal, w0 = TINY[dtype]
    w0 = np.asarray(w0, dtype)
    net = make_net(sizes, "relu", "cross_entropy", dtype, seed=5)
    X, y = random_problem(sizes, "cross_entropy", batch, dtype, seed=6, zero_fraction=zeros)
    X[:, 7] = 0                              # input 7's row of W gets a zero gradient
    settings = dict(lr=1e-3, optimizer=optimizer, n_threads=2)
    net.train_step(X, y, **settings)         # makes the moments
    weights, _ = net._layout.views(net._params)
    m = net._layout.views(net._state[0])[0][0]
    v = net._layout.views(net._state[1])[0][0]
    weights[0][7] = w0
    m[7] = subnormal * np.where(np.arange(sizes[1]) % 3 == 0, -1, 1)
    v[7] = 0
    expected_m = m[7].copy()
    row_8 = weights[0][8].copy()
    for _ in range(2):
        net.train_step(X, y, **settings)
        expected_m *= np.asarray(0.9, dtype)
    np.testing.assert_array_equal(m[7], expected_m)
    np.testing.assert_array_equal(v[7], 0)
    np.testing.assert_array_equal(weights[0][7], w0)
    assert np.isfinite(weights[0]).all() and (weights[0][8] != row_8).any()   # the views are live
