"""Bad input gets a ValueError/TypeError naming the argument, and a rejected call
leaves the weights as they were; convertible input is converted, with the same
result as the canonical form."""
import numpy as np
import pytest

import fastbp

from conftest import assert_params_equal, params_copy, random_problem, reference_of

SIZES = [5, 7, 3]
N = 20
BAD_INPUT = (ValueError, TypeError)


def classifier(dtype="float32"):
    return fastbp.Network(SIZES, activation="relu", loss="cross_entropy", dtype=dtype, seed=0)


def regressor(dtype="float32"):
    return fastbp.Network(SIZES, activation="tanh", loss="mse", dtype=dtype, seed=0)


def good_data(loss="cross_entropy", dtype="float32"):
    return random_problem(SIZES, loss, N, dtype, seed=1)


# -- the constructor --------------------------------------------------------------------

@pytest.mark.parametrize("kwargs,pattern", [
    (dict(layer_sizes=[5, 0, 3]), "layer.sizes"),
    (dict(layer_sizes=[5, -2, 3]), "layer.sizes"),
    (dict(layer_sizes=[0, 3]), "layer.sizes"),
    (dict(layer_sizes=[5, 3, 0]), "layer.sizes"),
    (dict(layer_sizes=[5, 2.5, 3]), "layer.sizes"),
    (dict(layer_sizes=[5]), "layer.sizes"),
    (dict(layer_sizes=[]), "layer.sizes"),
    (dict(layer_sizes="53"), "layer.sizes"),
    (dict(activation="softplus"), "activation"),
    (dict(activation="RELU"), "activation"),
    (dict(activation=None), "activation"),
    (dict(loss="hinge"), "loss"),
    (dict(loss=None), "loss"),
    (dict(dtype="float16"), "dtype"),
    (dict(dtype="int32"), "dtype"),
    (dict(dtype="banana"), "dtype"),
    (dict(dtype=np.complex64), "dtype"),
])
def test_constructor_rejects(kwargs, pattern):
    args = dict(layer_sizes=SIZES, activation="relu", loss="cross_entropy", dtype="float32", seed=0)
    args.update(kwargs)
    with pytest.raises(BAD_INPUT, match=pattern):
        fastbp.Network(**args)


def test_per_layer_activations_must_match_hidden_layers():
    with pytest.raises(ValueError, match="activation"):
        fastbp.Network([4, 5, 6, 2], activation=["relu"])
    with pytest.raises(ValueError, match="activation"):
        fastbp.Network([4, 5, 6, 2], activation=["relu", "cosine"])


def test_cross_entropy_needs_two_classes():
    with pytest.raises(ValueError, match="cross_entropy"):
        fastbp.Network([4, 5, 1], loss="cross_entropy")


# -- fit and train_step: bad data -----------------------------------------------------------

def bad_data_cases(loss):
    """(name, X, y, exception pattern) for data a network of SIZES must reject."""
    X, y = good_data(loss)
    nan_X, inf_X = X.copy(), X.copy()
    nan_X[3, 2] = np.nan
    inf_X[7, 0] = -np.inf
    cases = [
        ("X 1-D", X[0], y[:1], r"\bX\b.*2-D"),
        ("X 3-D", X.reshape(N, 5, 1), y, r"\bX\b.*2-D"),
        ("X scalar", np.float32(1.0), y, r"\bX\b"),
        ("too few features", X[:, :4], y, r"\bX\b.*features"),
        ("too many features", np.hstack([X, X]), y, r"\bX\b.*features"),
        ("empty X", X[:0], y[:0], r"\bX\b.*empty"),
        ("NaN in X", nan_X, y, r"\bX\b.*NaN"),
        ("inf in X", inf_X, y, r"\bX\b.*inf"),
        ("string X", np.array([["a"] * 5] * N), y, r"\bX\b"),
        ("y too short", X, y[:-1], r"\by\b"),
        ("y too long", X, np.concatenate([y, y[:1]]), r"\by\b"),
    ]
    if loss == "cross_entropy":
        cases += [
            ("negative label", X, np.where(np.arange(N) == 4, -1, y), r"\by\b.*label"),
            ("label = n_classes", X, np.where(np.arange(N) == 4, 3, y), r"\by\b.*label"),
            ("huge label", X, np.where(np.arange(N) == 4, 10**6, y), r"\by\b.*label"),
            ("label 0.5", X, np.where(np.arange(N) == 4, 0.5, y), r"\by\b.*integer"),
            ("NaN label", X, np.where(np.arange(N) == 4, np.nan, y), r"\by\b.*NaN"),
            ("inf label", X, np.where(np.arange(N) == 4, np.inf, y), r"\by\b.*inf"),
            ("string labels", X, np.array(["0"] * N), r"\by\b"),
            ("2-D labels", X, y.reshape(-1, 1), r"\by\b"),
        ]
    else:
        nan_y, inf_y = y.copy(), y.copy()
        nan_y[5, 1] = np.nan
        inf_y[6, 2] = np.inf
        cases += [
            ("NaN in y", X, nan_y, r"\by\b.*NaN"),
            ("inf in y", X, inf_y, r"\by\b.*inf"),
            ("wrong output count", X, y[:, :2], r"\by\b.*shape"),
            ("1-D y for 3 outputs", X, y[:, 0], r"\by\b.*shape"),
            ("string y", X, np.array([["a"] * 3] * N), r"\by\b"),
        ]
    return cases


def case_ids(cases):
    return [c[0] for c in cases]


CLASSIFIER_CASES = bad_data_cases("cross_entropy")
REGRESSOR_CASES = bad_data_cases("mse")


def check_rejected(net, call, pattern):
    """call(net) raises ValueError/TypeError matching pattern; net unchanged."""
    before = params_copy(net)
    with pytest.raises(BAD_INPUT, match=pattern):
        call(net)
    assert_params_equal(net, before)


@pytest.mark.parametrize("name,X,y,pattern", CLASSIFIER_CASES, ids=case_ids(CLASSIFIER_CASES))
def test_classifier_rejects_bad_data(name, X, y, pattern):
    net = classifier()
    check_rejected(net, lambda n: n.fit(X, y, epochs=1, momentum=0.9), pattern)
    check_rejected(net, lambda n: n.train_step(X, y, lr=0.1, momentum=0.9), pattern)
    check_rejected(net, lambda n: n.gradients(X, y), pattern)
    check_rejected(net, lambda n: n.evaluate(X, y), pattern)


@pytest.mark.parametrize("name,X,y,pattern", REGRESSOR_CASES, ids=case_ids(REGRESSOR_CASES))
def test_regressor_rejects_bad_data(name, X, y, pattern):
    net = regressor()
    check_rejected(net, lambda n: n.fit(X, y, epochs=1), pattern)
    check_rejected(net, lambda n: n.train_step(X, y, lr=0.1), pattern)
    check_rejected(net, lambda n: n.gradients(X, y), pattern)
    check_rejected(net, lambda n: n.evaluate(X, y), pattern)


def warmed_up(net, loss, momentum):
    """net after one good train_step on data shaped like the bad cases: its next
    train_step takes the checks done in C (try_train_step), not the Python ones."""
    X, y = good_data(loss)
    net.train_step(X, y, lr=0.1, momentum=momentum)
    return net


@pytest.mark.parametrize("name,X,y,pattern", CLASSIFIER_CASES, ids=case_ids(CLASSIFIER_CASES))
def test_train_step_fast_path_rejects_bad_data(name, X, y, pattern):
    net = warmed_up(classifier(), "cross_entropy", 0.9)
    check_rejected(net, lambda n: n.train_step(X, y, lr=0.1, momentum=0.9), pattern)


@pytest.mark.parametrize("name,X,y,pattern", REGRESSOR_CASES, ids=case_ids(REGRESSOR_CASES))
def test_train_step_fast_path_rejects_bad_targets(name, X, y, pattern):
    net = warmed_up(regressor(), "mse", 0.0)
    check_rejected(net, lambda n: n.train_step(X, y, lr=0.1), pattern)


@pytest.mark.parametrize("name,X,y,pattern", [c for c in CLASSIFIER_CASES if not c[3].startswith(r"\by")],
                         ids=[c[0] for c in CLASSIFIER_CASES if not c[3].startswith(r"\by")])
def test_predict_rejects_bad_X(name, X, y, pattern):
    net = classifier()
    check_rejected(net, lambda n: n.predict(X), pattern)
    check_rejected(net, lambda n: n.predict_proba(X), pattern)


def test_bad_validation_data_is_rejected_before_training():
    net = classifier()
    X, y = good_data()
    bad_X_val = X.copy()
    bad_X_val[0, 0] = np.nan
    for validation_data, pattern in [
        ((X,), "validation_data"),
        (X, "validation_data"),
        ((bad_X_val, y), "X_val"),
        ((X[:, :3], y), "X_val"),
        ((X, y[:-2]), "y_val"),
        ((X, np.full(N, 9)), "y_val"),
    ]:
        check_rejected(net, lambda n: n.fit(X, y, epochs=1, validation_data=validation_data), pattern)


# -- fit and train_step: bad settings ------------------------------------------------------

BAD_FIT_SETTINGS = [
    (dict(lr=0), ValueError, "lr"),
    (dict(lr=-0.1), ValueError, "lr"),
    (dict(lr=float("nan")), BAD_INPUT, "lr"),
    (dict(lr=float("inf")), BAD_INPUT, "lr"),
    (dict(lr="0.1"), TypeError, "lr"),
    (dict(lr=None), TypeError, "lr"),
    (dict(lr=True), TypeError, "lr"),
    (dict(batch_size=0), ValueError, "batch_size"),
    (dict(batch_size=-4), ValueError, "batch_size"),
    (dict(batch_size=2.5), TypeError, "batch_size"),
    (dict(batch_size="32"), TypeError, "batch_size"),
    (dict(epochs=0), ValueError, "epochs"),
    (dict(epochs=-1), ValueError, "epochs"),
    (dict(epochs=1.5), TypeError, "epochs"),
    (dict(epochs=None), TypeError, "epochs"),
    (dict(optimizer="rmsprop"), ValueError, "optimizer"),
    (dict(optimizer="adam", betas=(1.0, 0.999)), ValueError, r"betas\[0\]"),
    (dict(optimizer="adam", betas=(0.9, -0.1)), ValueError, r"betas\[1\]"),
    (dict(optimizer="adamw", betas=(0.9,)), TypeError, "betas"),
    (dict(optimizer="adam", betas="0.9"), TypeError, "betas"),
    (dict(optimizer="adam", eps=0.0), ValueError, "eps"),
    (dict(optimizer="adam", eps=float("nan")), BAD_INPUT, "eps"),
    (dict(optimizer="adam", eps=1e39), ValueError, "eps = 1e.39 overflows float32"),
    (dict(optimizer="adam", momentum=0.9), ValueError, "momentum and nesterov are SGD's"),
    (dict(optimizer="sgd", betas=(0.9, 0.99)), ValueError, "betas and eps are Adam's"),
    (dict(optimizer="gd", eps=1e-6), ValueError, "betas and eps are Adam's"),
    (dict(optimizer=None), ValueError, "optimizer"),
    (dict(schedule="cosine"), ValueError, "schedule"),
    (dict(schedule=None), ValueError, "schedule"),
    (dict(momentum=-0.1), ValueError, "momentum"),
    (dict(momentum=1.0), ValueError, "momentum"),
    (dict(momentum="0.9"), TypeError, "momentum"),
    (dict(weight_decay=-1e-4), ValueError, "weight_decay"),
    (dict(nesterov=True, momentum=0.0), ValueError, "nesterov"),
    (dict(n_iter_no_change=0), ValueError, "n_iter_no_change"),
    (dict(tol=-1.0), ValueError, "tol"),
    # finite as Python numbers, but not in the float32 parameters, or not in C's integers
    (dict(lr=1e39), ValueError, "lr = 1e.39 overflows float32"),
    (dict(weight_decay=1e39), ValueError, "weight_decay = 1e.39 overflows float32"),
    (dict(lr=10 ** 400), ValueError, "lr = 1000.* too large"),
    (dict(momentum=10 ** 400), ValueError, "momentum"),
    (dict(tol=10 ** 400), ValueError, "tol"),
    (dict(schedule="step", gamma=10 ** 400), ValueError, "gamma"),
    (dict(schedule="step", step_size=2 ** 70), ValueError, "step_size must be at most"),
    (dict(batch_size=2 ** 70), ValueError, "batch_size must be at most"),
    (dict(epochs=2 ** 70), ValueError, "epochs must be at most"),
    (dict(n_iter_no_change=2 ** 70), ValueError, "n_iter_no_change must be at most"),
    (dict(n_threads=2 ** 70), ValueError, "n_threads must be at most 1024"),
]


@pytest.mark.parametrize("settings,error,pattern", BAD_FIT_SETTINGS,
                         ids=[f"{k}={v!r:.20}" for s, _, _ in BAD_FIT_SETTINGS for k, v in list(s.items())[-1:]])
def test_fit_rejects_bad_settings(settings, error, pattern):
    net = classifier()
    X, y = good_data()
    before = params_copy(net)
    with pytest.raises(error, match=pattern):
        net.fit(X, y, **settings)
    assert_params_equal(net, before)


TRAIN_STEP_SETTINGS = [s for s in BAD_FIT_SETTINGS
                       if set(s[0]) <= {"lr", "momentum", "weight_decay", "nesterov", "optimizer", "betas", "eps"}]


@pytest.mark.parametrize("settings,error,pattern", TRAIN_STEP_SETTINGS,
                         ids=[f"{k}={v!r:.20}" for s, _, _ in TRAIN_STEP_SETTINGS for k, v in list(s.items())[-1:]])
def test_train_step_rejects_bad_settings(settings, error, pattern):
    net = classifier()
    X, y = good_data()
    before = params_copy(net)
    with pytest.raises(error, match=pattern):
        net.train_step(X, y, **settings)
    assert_params_equal(net, before)


@pytest.mark.parametrize("settings,error,pattern", TRAIN_STEP_SETTINGS,
                         ids=[f"{k}={v!r:.20}" for s, _, _ in TRAIN_STEP_SETTINGS for k, v in list(s.items())[-1:]])
def test_train_step_fast_path_rejects_bad_settings(settings, error, pattern):
    net = warmed_up(classifier(), "cross_entropy", 0.0)
    X, y = good_data()
    before = params_copy(net)
    with pytest.raises(error, match=pattern):
        net.train_step(X, y, **settings)
    assert_params_equal(net, before)


def test_train_step_fast_path_matches_the_reference():
    # The same steps through the C checks (int64 and int32 labels, momentum switched
    # on and off between calls, a bigger batch that needs a new work buffer) and
    # through the Python ones (a list) land on the reference's weights.
    net = classifier("float64")
    X, y = good_data(dtype="float64")
    ref = reference_of(net)
    steps = [(X[:5], y[:5], 0.0), (X[:5], y[:5].astype(np.int32), 0.9), (X[:5], y[:5], 0.9),
             (X, y, 0.9), (X[:3].tolist(), list(y[:3]), 0.9), (X[:5], y[:5], 0.0)]
    for Xs, ys, momentum in steps:
        loss = net.train_step(Xs, ys, lr=0.1, momentum=momentum)
        expected = ref.train_step(np.asarray(Xs), np.asarray(ys), 0.1, momentum=momentum)
        if expected is not None:
            assert loss == pytest.approx(expected, rel=1e-9)
    for l in range(net.n_layers):
        np.testing.assert_allclose(net.weights[l], ref.weights[l], rtol=1e-9, atol=1e-12)
    assert net.n_updates_ == len(steps)


def test_a_rejected_call_leaves_the_velocity_alone():
    # After two momentum steps, a rejected call must not disturb the velocity: the
    # next step still matches the reference's third step.
    net = classifier("float64")
    X, y = good_data(dtype="float64")
    ref = reference_of(net)
    for _ in range(2):
        net.train_step(X, y, lr=0.1, momentum=0.9)
        ref.train_step(X, y, 0.1, momentum=0.9)
    bad_y = y.copy()
    bad_y[0] = 7
    for call in (lambda: net.train_step(X, bad_y, lr=0.1, momentum=0.9),
                 lambda: net.fit(X, bad_y, lr=0.1, momentum=0.9, epochs=1),
                 lambda: net.fit(X, y, lr=-1, momentum=0.9)):
        with pytest.raises(BAD_INPUT):
            call()
    net.train_step(X, y, lr=0.1, momentum=0.9)
    ref.train_step(X, y, 0.1, momentum=0.9)
    for l in range(net.n_layers):
        np.testing.assert_allclose(net.weights[l], ref.weights[l], rtol=1e-9, atol=1e-12)


def test_set_weights_rejects_wrong_shapes_and_non_finite_values():
    net = classifier()
    before = params_copy(net)
    weights, biases = params_copy(net)
    with pytest.raises(ValueError, match="weight"):
        net.set_weights(weights[:1], biases)
    with pytest.raises(ValueError, match="layer 0"):
        net.set_weights([weights[0].T, weights[1]], biases)
    weights[1][0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        net.set_weights(weights, biases)
    assert_params_equal(net, before)


def test_set_weights_checks_the_values_after_the_cast_to_the_network_dtype():
    net = classifier("float32")
    before = params_copy(net)
    weights, biases = [w.astype(np.float64) for w in before[0]], [b.astype(np.float64) for b in before[1]]
    weights[0][2, 1] = 1e39      # finite in float64, inf in float32
    with pytest.raises(ValueError, match="layer 0.*beyond the range of float32"):
        net.set_weights(weights, biases)
    assert_params_equal(net, before)
    fastbp.Network(SIZES, dtype="float64", seed=0).set_weights(weights, biases)  # fine there


def test_ragged_or_mixed_arrays_are_named():
    net = classifier()
    ragged = [[0.0] * SIZES[0], [0.0] * (SIZES[0] - 1)]
    for call in (lambda: net.fit(ragged, [0, 1], epochs=1), lambda: net.predict(ragged)):
        with pytest.raises(ValueError, match="^X must be a 2-D array"):
            call()
    X, _ = good_data()
    with pytest.raises(ValueError, match="^y must be a 1-D array"):
        net.fit(X[:2], [[0], [1, 2]], epochs=1)


def test_number_types_that_are_reals_work_as_settings():
    from fractions import Fraction
    X, y = good_data()
    a, b = classifier(), classifier()
    a.fit(X, y, lr=Fraction(1, 20), momentum=Fraction(1, 2), epochs=2)
    b.fit(X, y, lr=0.05, momentum=0.5, epochs=2)
    assert_params_equal(a, params_copy(b))


def test_huge_thread_counts_and_step_counts_are_named(monkeypatch):
    X, y = good_data()
    with pytest.raises(ValueError, match="steps must be at most"):
        classifier().profile(X, y, steps=2 ** 70)
    with pytest.raises(ValueError, match="n_threads must be at most"):
        fastbp.Network(SIZES, n_threads=10 ** 30)
    monkeypatch.setenv("FASTBP_NUM_THREADS", str(10 ** 30))
    with pytest.raises(ValueError, match=r"FASTBP_NUM_THREADS must be an integer in \[1, 1024\]"):
        fastbp.Network(SIZES)


def test_sgd_update_refuses_an_lr_that_overflows_the_arrays_dtype():
    param, grad = np.ones(5, np.float32), np.ones(5, np.float32)
    with pytest.raises(ValueError, match="lr = 1e.39 overflows float32"):
        fastbp.sgd_update(param, grad, 1e39)
    assert (param == 1).all()
    p64 = np.ones(5)
    fastbp.sgd_update(p64, np.ones(5), 1e39)   # finite in float64
    assert np.isfinite(p64).all()


def test_predict_proba_needs_a_classifier():
    with pytest.raises(ValueError, match="predict_proba"):
        regressor().predict_proba(good_data("mse")[0])


# -- input that is converted, not rejected ------------------------------------------------

def fit_result(X, y, loss="cross_entropy", dtype="float32"):
    net = (classifier if loss == "cross_entropy" else regressor)(dtype)
    hist = net.fit(X, y, lr=0.1, batch_size=6, epochs=2, momentum=0.9)
    return net, hist


def assert_same_training(X_other, y_other, X, y, loss="cross_entropy", dtype="float32"):
    a, hist_a = fit_result(X_other, y_other, loss, dtype)
    b, hist_b = fit_result(X, y, loss, dtype)
    for l in range(a.n_layers):
        np.testing.assert_array_equal(a.weights[l], b.weights[l])
        np.testing.assert_array_equal(a.biases[l], b.biases[l])
    assert hist_a.loss == hist_b.loss


def converted_forms(X):
    """The same values as X in other layouts and dtypes."""
    wide = np.zeros((X.shape[0], 2 * X.shape[1]), dtype=X.dtype)
    wide[:, ::2] = X
    return {
        "strided columns": wide[:, ::2],
        "Fortran order": np.asfortranarray(X),
        "every other row": np.repeat(X, 2, axis=0)[::2],
        "float64": X.astype(np.float64),
        "list": X.tolist(),
    }


@pytest.mark.parametrize("form", ["strided columns", "Fortran order", "every other row", "float64", "list"])
def test_non_contiguous_and_other_dtype_X_is_converted(form):
    X, y = good_data()
    other = converted_forms(X)[form]
    if isinstance(other, np.ndarray) and form != "float64":
        assert not other.flags.c_contiguous
    assert_same_training(other, y, X, y)
    net = classifier()
    np.testing.assert_array_equal(net.predict_proba(other), net.predict_proba(X))
    for (dW, db), (eW, eb) in zip(net.gradients(other, y), net.gradients(X, y)):
        np.testing.assert_array_equal(dW, eW)
        np.testing.assert_array_equal(db, eb)
    assert net.evaluate(other, y) == net.evaluate(X, y)


def test_float32_X_is_converted_for_a_float64_network():
    X, y = good_data(dtype="float32")
    assert_same_training(X, y, X.astype(np.float64), y, dtype="float64")


@pytest.mark.parametrize("int_dtype", [np.int64, np.int32, np.uint8])
def test_integer_X_is_converted(int_dtype):
    rng = np.random.default_rng(2)
    X_int = rng.integers(0, 5, size=(N, 5)).astype(int_dtype)
    y = rng.integers(0, 3, size=N)
    assert_same_training(X_int, y, X_int.astype(np.float32), y)


def test_float_labels_with_integral_values_are_accepted():
    X, y = good_data()
    assert_same_training(X, y.astype(np.float64), X, y)
    assert_same_training(X, y.astype(np.float32), X, y)
    assert_same_training(X, list(y), X, y)


def test_regression_targets_in_other_forms_are_accepted():
    X, y = good_data("mse")
    assert_same_training(X, y.astype(np.float64), X, y, loss="mse")
    assert_same_training(X, np.asfortranarray(y), X, y, loss="mse")
    assert_same_training(X, y.tolist(), X, y, loss="mse")


def test_integer_values_of_numpy_types_are_accepted_as_settings():
    X, y = good_data()
    a, _ = fit_result(X, y)
    b = classifier()
    b.fit(X, y, lr=np.float64(0.1), batch_size=np.int64(6), epochs=np.int32(2), momentum=np.float64(0.9))
    for l in range(a.n_layers):
        np.testing.assert_array_equal(a.weights[l], b.weights[l])


@pytest.mark.parametrize("n_threads", [1, 2, 3])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_a_large_X_is_scanned_for_nan_in_parts_and_names_the_first(n_threads, dtype):
    """Over 2^20 values, fit scans X in one part per thread (csrc/fastbp.c); the error
    still names the first bad value, whichever part holds it, and no weight changes."""
    rows, n_in = 2600, 500   # 1.3M values
    X = np.random.default_rng(0).random((rows, n_in)).astype(dtype)
    y = np.arange(rows) % 3
    for first in [(5, 1), (1500, 7), (2599, 499)]:
        bad = X.copy()
        bad[first] = np.nan
        bad[-1, -1] = np.inf if first != (2599, 499) else np.nan   # a later one, in the last part
        net = fastbp.Network([n_in, 4, 3], dtype=dtype, seed=0, n_threads=n_threads)
        before = params_copy(net)
        with pytest.raises(ValueError, match=rf"\bX\b contains NaN or inf \(first at index \({first[0]}, {first[1]}\)\)"):
            net.fit(bad, y, epochs=1)
        assert_params_equal(net, before)
    assert fastbp._core.first_nonfinite(X, n_threads) == -1
