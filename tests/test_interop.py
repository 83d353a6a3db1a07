"""Models that leave fastbp: the ONNX export run in ONNX Runtime against predict_proba
and predict, fastbp export on the command line, and the conversions to and from
PyTorch's nn.Sequential."""
import os
import sys

import numpy as np
import pytest

import fastbp
from fastbp import cli, interop

try:
    import onnx
    import onnxruntime as ort
except ImportError:   # the test extra brings both: CI must run these tests
    if os.environ.get("CI"):
        raise
    onnx = ort = None
needs_onnx = pytest.mark.skipif(onnx is None, reason="needs onnx and onnxruntime (pip install .[test])")

ACTIVATIONS = ["relu", "sigmoid", "tanh", "identity"]
LOSSES = ["cross_entropy", "mse", "binary_cross_entropy", "poisson"]
TOLERANCE = {"float32": 1e-5, "float64": 1e-12}


def random_network(loss, activation, n_hidden, dtype, seed=0):
    """A network of n_hidden layers whose weights are random numbers of the size
    training leaves (the initial ones are too small to tell layers apart)."""
    rng = np.random.default_rng(seed)
    sizes = [7] + [9, 8, 6, 5][:n_hidden] + [4]
    net = fastbp.Network(sizes, activation=activation, loss=loss, dtype=dtype, seed=seed)
    scale = 0.3 if loss == "poisson" else 1.0   # exp outputs: keep them in range
    net.set_weights([rng.normal(0, scale / np.sqrt(w.shape[0]), w.shape) for w in net.weights],
                    [rng.normal(0, scale * 0.3, b.shape) for b in net.biases])
    return net


def assert_close_to_scale(actual, desired, rtol):
    """Within rtol of the largest output: an identity output can be a sum that cancels
    to near zero, where rounding in another order differs by more than rtol of itself."""
    np.testing.assert_allclose(actual, desired, rtol=rtol, atol=rtol * np.abs(desired).max())


def run_onnx(model, X):
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    names = [o.name for o in session.get_outputs()]
    return dict(zip(names, session.run(None, {"input": X})))


@needs_onnx
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("n_hidden", [1, 2, 3, 4])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_onnx_runtime_gives_predict_proba_and_predict(loss, activation, n_hidden, dtype):
    net = random_network(loss, activation, n_hidden, dtype)
    model = net.to_onnx()
    onnx.checker.check_model(model, full_check=True)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    for n in (1, 1000):
        X = np.random.default_rng(n).normal(size=(n, 7)).astype(dtype)
        got = run_onnx(model, X)
        if loss in fastbp.network.CLASSIFIER_LOSSES:
            assert sorted(got) == ["label", "probabilities"]
            assert got["probabilities"].dtype == np.dtype(dtype)
            np.testing.assert_allclose(got["probabilities"], net.predict_proba(X), rtol=TOLERANCE[dtype])
            np.testing.assert_array_equal(got["label"].reshape(n, -1), net.predict(X).reshape(n, -1))
        else:
            assert sorted(got) == ["predictions"]
            assert_close_to_scale(got["predictions"], net.predict(X).reshape(n, -1), TOLERANCE[dtype])


@needs_onnx
def test_a_network_without_hidden_layers_exports(tmp_path):
    net = fastbp.Network([5, 3], seed=1, dtype="float64")
    X = np.random.default_rng(0).normal(size=(20, 5))
    model = net.to_onnx(tmp_path / "m.onnx")
    assert onnx.load(tmp_path / "m.onnx") == model
    np.testing.assert_allclose(run_onnx(model, X)["probabilities"], net.predict_proba(X), rtol=1e-12)


@needs_onnx
@pytest.mark.parametrize("opset", [interop.MIN_OPSET, "newest"])
def test_the_opset_is_the_one_asked_for(opset):
    opset = onnx.defs.onnx_opset_version() if opset == "newest" else opset
    model = random_network("cross_entropy", "relu", 1, "float32").to_onnx(opset=opset)
    onnx.checker.check_model(model, full_check=True)
    assert [(o.domain, o.version) for o in model.opset_import] == [("", opset)]


@needs_onnx
@pytest.mark.parametrize("opset, message", [(12, "opset must be >= 13"), (10_000, "opset must be at most"),
                                            ("17", "opset")])
def test_an_opset_onnx_cannot_give_is_refused(opset, message):
    with pytest.raises((ValueError, TypeError), match=message):
        fastbp.Network([3, 2]).to_onnx(opset=opset)


@needs_onnx
def test_fastbp_export_writes_the_onnx_model(tmp_path, capsys):
    net = random_network("cross_entropy", "tanh", 2, "float32")
    net.save(tmp_path / "m.fbp")
    assert cli.main(["export", str(tmp_path / "m.fbp"), str(tmp_path / "m.onnx"), "--opset", "15"]) == 0
    assert "input 'input', outputs 'probabilities' and 'label'" in capsys.readouterr().out
    model = onnx.load(tmp_path / "m.onnx")
    assert model.opset_import[0].version == 15
    X = np.random.default_rng(0).normal(size=(30, 7)).astype(np.float32)
    np.testing.assert_allclose(run_onnx(model, X)["probabilities"], net.predict_proba(X), rtol=1e-5)


@needs_onnx
def test_fastbp_export_says_in_one_line_what_is_wrong(tmp_path, capsys, monkeypatch):
    assert cli.main(["export", str(tmp_path / "none.fbp"), str(tmp_path / "m.onnx")]) == 2
    assert "no such model file" in capsys.readouterr().err
    fastbp.Network([3, 2]).save(tmp_path / "m.fbp")
    assert cli.main(["export", str(tmp_path / "m.fbp"), str(tmp_path / "m.onnx"), "--opset", "9"]) == 2
    assert "expected an integer >= 13, got '9'" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnx", None)    # onnx not installed
    assert cli.main(["export", str(tmp_path / "m.fbp"), str(tmp_path / "m.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and 'pip install "fastbp[onnx]"' in err
    assert not (tmp_path / "m.onnx").exists()


# -- PyTorch ---------------------------------------------------------------------------
def torch_outputs(torch, seq, loss, X):
    with torch.no_grad():
        z = seq(torch.from_numpy(X))
    return {"cross_entropy": lambda: torch.softmax(z, dim=1), "binary_cross_entropy": z.sigmoid,
            "poisson": z.exp, "mse": lambda: z}[loss]().numpy()


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss", LOSSES)
def test_to_torch_predicts_what_the_network_does(loss, dtype):
    torch = pytest.importorskip("torch")
    net = random_network(loss, ["relu", "sigmoid", "tanh", "identity"], 4, dtype)
    seq = net.to_torch()
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear", "Sigmoid", "Linear", "Tanh",
                                               "Linear", "Identity", "Linear"]
    X = np.random.default_rng(1).normal(size=(200, 7)).astype(dtype)
    assert_close_to_scale(torch_outputs(torch, seq, loss, X), net._outputs(X), TOLERANCE[dtype])
    seq[0].weight.data += 1          # the module's own copy of the weights
    assert not np.array_equal(seq[0].weight.detach().numpy().T, net.weights[0])


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_from_torch_predicts_what_the_module_does(activation, dtype):
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    act = getattr(torch.nn, interop.TORCH_ACTIVATIONS[activation])
    seq = torch.nn.Sequential(torch.nn.Linear(7, 9), act(), torch.nn.Linear(9, 6), act(),
                              torch.nn.Linear(6, 4)).to(getattr(torch, dtype))
    net = fastbp.Network.from_torch(seq, loss="cross_entropy")
    assert (net.layer_sizes, net.activations, net.dtype) == ((7, 9, 6, 4), (activation,) * 2,
                                                             np.dtype(dtype))
    X = np.random.default_rng(2).normal(size=(200, 7)).astype(dtype)
    np.testing.assert_allclose(net.predict_proba(X), torch_outputs(torch, seq, "cross_entropy", X),
                               rtol=TOLERANCE[dtype])
    back = net.to_torch()
    for a, b in zip(seq.state_dict().values(), back.state_dict().values()):
        assert torch.equal(a, b)


def test_from_torch_reads_linear_layers_without_activation_or_bias():
    torch = pytest.importorskip("torch")
    seq = torch.nn.Sequential(torch.nn.Linear(3, 5, bias=False), torch.nn.Linear(5, 2)).double()
    net = fastbp.Network.from_torch(seq, loss="mse")
    assert net.activations == ("identity",)
    np.testing.assert_array_equal(net.biases[0], 0)
    X = np.random.default_rng(3).normal(size=(10, 3))
    np.testing.assert_allclose(net.predict(X), torch_outputs(torch, seq, "mse", X), rtol=1e-12)


@pytest.mark.parametrize("build, error, message", [
    (lambda nn: nn.Linear(3, 2), TypeError, "must be a torch.nn.Sequential, got Linear"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.ReLU(), nn.Linear(4, 2)), ValueError,
     r"module\[2\] is ReLU"),
    (lambda nn: nn.Sequential(nn.ReLU(), nn.Linear(3, 2)), ValueError, r"module\[0\] is ReLU"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.GELU(), nn.Linear(4, 2)), ValueError,
     r"module\[1\] is GELU"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.ReLU()), ValueError, "must end with an nn.Linear"),
    (lambda nn: nn.Sequential(), ValueError, "must end with an nn.Linear"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.Linear(5, 2)), ValueError,
     r"module\[1\] takes 5 inputs, the layer before gives 4"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4).half(), nn.Linear(4, 2)), ValueError,
     r"module\[0\]'s parameters are \['torch.float16'\]"),
    (lambda nn: nn.Sequential(nn.Linear(3, 4), nn.Linear(4, 2).double()), ValueError,
     "must all be float32 or all float64"),
])
def test_from_torch_refuses_what_fastbp_cannot_hold(build, error, message):
    torch = pytest.importorskip("torch")
    with pytest.raises(error, match=message):
        fastbp.Network.from_torch(build(torch.nn))


@needs_onnx
@pytest.mark.parametrize("loss, n_out, classes", [
    ("cross_entropy", 3, ["cat", "dog", "eel"]), ("cross_entropy", 2, [-1, 7]),
    ("binary_cross_entropy", 1, ["no", "yes"])])
def test_onnx_labels_can_be_the_classes(loss, n_out, classes):
    net = fastbp.Network([7, 9, n_out], loss=loss, seed=3)
    model = interop.to_onnx(net, classes=classes)
    onnx.checker.check_model(model, full_check=True)
    X = np.random.default_rng(4).normal(size=(300, 7)).astype(np.float32)
    got = run_onnx(model, X)
    np.testing.assert_array_equal(got["label"], np.asarray(classes)[net.predict(X)])


@needs_onnx
def test_onnx_classes_that_do_not_fit_are_refused():
    with pytest.raises(ValueError, match="one label per class"):
        interop.to_onnx(fastbp.Network([3, 4]), classes=["a", "b"])
    with pytest.raises(ValueError, match="one label per class"):
        interop.to_onnx(fastbp.Network([3, 2], loss="binary_cross_entropy"), classes=[0, 1])


# -- scikit-learn ------------------------------------------------------------------------
SKLEARN_CASES = [("cross_entropy", 4, None), ("cross_entropy", 2, ["neg", "pos"]),
                 ("binary_cross_entropy", 1, None), ("binary_cross_entropy", 3, None),
                 ("mse", 2, None), ("poisson", 1, None)]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("loss, n_out, classes", SKLEARN_CASES)
def test_to_sklearn_predicts_what_the_network_does(loss, n_out, classes, dtype):
    pytest.importorskip("sklearn")
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    net = fastbp.Network([7, 9, 8, n_out], activation="tanh", loss=loss, dtype=dtype)
    rng = np.random.default_rng(5)
    net.set_weights([rng.normal(0, 0.5, w.shape) for w in net.weights],
                    [rng.normal(0, 0.2, b.shape) for b in net.biases])
    est = interop.to_sklearn(net, classes)
    assert type(est) is (MLPRegressor if loss in ("mse", "poisson") else MLPClassifier)
    X = rng.normal(size=(500, 7)).astype(dtype)
    if loss in ("mse", "poisson"):
        assert_close_to_scale(est.predict(X), net.predict(X), TOLERANCE[dtype])
    else:
        labels = net.predict(X) if classes is None else np.asarray(classes)[net.predict(X)]
        np.testing.assert_array_equal(est.predict(X), labels)
        proba = net.predict_proba(X)
        if proba.shape[1] == 1:
            proba = np.hstack([1 - proba, proba])
        np.testing.assert_allclose(est.predict_proba(X), proba, rtol=TOLERANCE[dtype],
                                   atol=TOLERANCE[dtype] * 1e-3)
    if not (loss == "cross_entropy" and n_out == 2):   # (that one's two logits become one)
        for w, c in zip(net.weights + net.biases, est.coefs_ + est.intercepts_):
            np.testing.assert_array_equal(w, c)
    back, back_classes = interop.from_sklearn(est)
    assert back.dtype == net.dtype and back.activations == net.activations
    if classes is not None:
        np.testing.assert_array_equal(back_classes, classes)
    if loss in ("mse", "poisson"):
        assert_close_to_scale(back.predict(X), net.predict(X), TOLERANCE[dtype])
    else:
        np.testing.assert_array_equal(back.predict(X), net.predict(X))


def test_from_sklearn_reads_a_model_scikit_learn_trained():
    pytest.importorskip("sklearn")
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPClassifier
    rng = np.random.default_rng(6)
    X = rng.normal(size=(300, 5))
    y = np.array(["a", "b", "c"])[(X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)]
    with pytest.warns(ConvergenceWarning):
        est = MLPClassifier((8, 6), activation="relu", max_iter=20, random_state=0).fit(X, y)
    net, classes = interop.from_sklearn(est)
    assert net.layer_sizes == (5, 8, 6, 3) and net.loss == "cross_entropy"
    np.testing.assert_array_equal(classes[net.predict(X)], est.predict(X))
    np.testing.assert_allclose(net.predict_proba(X), est.predict_proba(X), rtol=1e-12)


def test_sklearn_conversions_refuse_what_the_other_side_cannot_hold():
    pytest.importorskip("sklearn")
    from sklearn.neural_network import MLPRegressor
    from sklearn.linear_model import LinearRegression
    with pytest.raises(ValueError, match="one hidden activation"):
        interop.to_sklearn(fastbp.Network([3, 4, 4, 2], activation=["relu", "tanh"]))
    with pytest.raises(ValueError, match="classes must be 3 distinct labels"):
        interop.to_sklearn(fastbp.Network([3, 4, 3]), classes=["a", "a", "b"])
    with pytest.raises(ValueError, match="classes are for classifiers"):
        interop.to_sklearn(fastbp.Network([3, 1], loss="mse"), classes=[0])
    with pytest.raises(TypeError, match="got LinearRegression"):
        interop.from_sklearn(LinearRegression())
    with pytest.raises(ValueError, match="not fitted"):
        interop.from_sklearn(MLPRegressor())
