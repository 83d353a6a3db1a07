"""Models that leave fastbp: ONNX export (`Network.to_onnx`, ``fastbp export``) and
conversion to and from PyTorch (`Network.to_torch`, `Network.from_torch`).

The ONNX graph is the network as ONNX Runtime (or any ONNX runtime) runs it:

- input ``input``: (batch, n_inputs), float32 or float64 as the network, the batch
  dimension dynamic;
- one ``Gemm`` per layer (weights ``{2l}.weight`` stored as (n_out, n_in), ``transB=1``,
  the names and layout of the model file and of `to_torch`'s state_dict), then the
  hidden activation (``Relu``, ``Sigmoid``, ``Tanh``; none for identity);
- outputs of a classifier: ``probabilities`` (batch, n_outputs), what
  `Network.predict_proba` returns (``Softmax`` for cross_entropy, ``Sigmoid`` for
  binary_cross_entropy), and ``label`` (int64), what `Network.predict` returns:
  (batch,) class indices for cross_entropy (``ArgMax``), (batch, n_outputs) 0/1 for
  binary_cross_entropy (``predict`` drops the second axis when it is 1);
- output of a regressor: ``predictions`` (batch, n_outputs), what `Network.predict`
  returns before it drops the second axis of one output (identity for mse, ``Exp``
  for poisson).

`to_torch` gives the ``nn.Sequential`` ``Linear, activation, Linear, ..., Linear``: it
returns the last layer's pre-activations (logits), as PyTorch's losses
(``CrossEntropyLoss``, ``BCEWithLogitsLoss``, ``PoissonNLLLoss(log_input=True)``)
expect them; `from_torch` reads such a module.
"""
from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

import numpy as np

from . import io
from ._validation import check_integer
from ._version import __version__

if TYPE_CHECKING:
    from .network import Network

DEFAULT_OPSET = 17
MIN_OPSET = 13             # Softmax over one axis (earlier opsets flatten its input first)
ONNX_ACTIVATIONS = {"relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "identity": None}
OUTPUT_FUNCTIONS = {"cross_entropy": "Softmax", "binary_cross_entropy": "Sigmoid", "poisson": "Exp",
                    "mse": None}
TORCH_ACTIVATIONS = {"relu": "ReLU", "sigmoid": "Sigmoid", "tanh": "Tanh", "identity": "Identity"}


def _require(module, install):
    try:
        return __import__(module)
    except ImportError:
        raise ImportError(f"this needs the {module} package: {install}") from None


def to_onnx(net: Network, path: str | os.PathLike[str] | None = None, opset: int = DEFAULT_OPSET,
            classes: Any = None) -> Any:
    """The ONNX model (an ``onnx.ModelProto``) of ``net``, written to ``path`` too when
    given (atomically: a failed write keeps the old file). See the module's docstring
    for the graph and its input and output names. ``classes`` (a classifier's labels,
    one per softmax output, or two for one sigmoid output; numbers or strings) makes
    ``label`` those labels, (batch,), instead of indices."""
    onnx = _require("onnx", 'pip install "fastbp[onnx]"')
    from onnx import TensorProto, helper, numpy_helper
    newest = onnx.defs.onnx_opset_version()
    opset = check_integer("opset", opset, MIN_OPSET)
    if opset > newest:
        raise ValueError(f"opset must be at most {newest}, the newest the installed onnx "
                         f"{onnx.__version__} knows; got {opset}")
    elem = TensorProto.FLOAT if net.dtype == np.float32 else TensorProto.DOUBLE
    nodes, initializers = [], []
    h = "input"
    with net._lock.reading:
        for l, (w, b) in enumerate(zip(net.weights, net.biases)):
            initializers += [numpy_helper.from_array(np.ascontiguousarray(w.T), f"{2 * l}.weight"),
                             numpy_helper.from_array(b.copy(), f"{2 * l}.bias")]
            out = f"linear{l}"
            nodes.append(helper.make_node("Gemm", [h, f"{2 * l}.weight", f"{2 * l}.bias"], [out],
                                          transB=1, name=f"layer{l}"))
            h = out
            act = ONNX_ACTIVATIONS[net.activations[l]] if l < net.n_layers - 1 else None
            if act is not None:
                nodes.append(helper.make_node(act, [h], [f"{act.lower()}{l}"], name=f"activation{l}"))
                h = f"{act.lower()}{l}"
    n_out = net.layer_sizes[-1]
    function = OUTPUT_FUNCTIONS[net.loss]
    if net.loss in ("cross_entropy", "binary_cross_entropy"):
        assert function is not None   # (Softmax, Sigmoid)
        nodes.append(helper.make_node(function, [h], ["probabilities"], axis=1) if function == "Softmax"
                     else helper.make_node(function, [h], ["probabilities"]))
        index = "label" if classes is None else "index"
        if net.loss == "cross_entropy":
            nodes.append(helper.make_node("ArgMax", ["probabilities"], [index], axis=1, keepdims=0))
            label_shape: list[str | int] = ["batch"]
        else:
            initializers.append(numpy_helper.from_array(np.array(0.5, dtype=net.dtype), "half"))
            nodes += [helper.make_node("Greater", ["probabilities", "half"], ["above_half"]),
                      helper.make_node("Cast", ["above_half"], [index], to=TensorProto.INT64)]
            label_shape = ["batch", n_out]
        label_type: int = TensorProto.INT64
        if classes is not None:
            classes = np.asarray(classes)
            n_classes = n_out if net.loss == "cross_entropy" else 2
            if classes.shape != (n_classes,) or (net.loss == "binary_cross_entropy" and n_out != 1):
                raise ValueError(f"classes must give one label per class ({n_classes}) of a "
                                 "cross_entropy network or of one sigmoid output, got "
                                 f"{classes.tolist()!r}")
            classes = classes.astype(object) if classes.dtype.kind in "UO" else classes.astype(np.int64)
            initializers += [numpy_helper.from_array(classes, "classes"),
                             numpy_helper.from_array(np.array([-1], dtype=np.int64), "flat")]
            nodes += [helper.make_node("Reshape", [index, "flat"], ["flat_index"]),
                      helper.make_node("Gather", ["classes", "flat_index"], ["label"])]
            label_shape = ["batch"]
            label_type = numpy_helper.from_array(classes).data_type
        outputs = [helper.make_tensor_value_info("probabilities", elem, ["batch", n_out]),
                   helper.make_tensor_value_info("label", label_type, label_shape)]
    else:
        nodes.append(helper.make_node(function or "Identity", [h], ["predictions"]))
        outputs = [helper.make_tensor_value_info("predictions", elem, ["batch", n_out])]
    graph = helper.make_graph(nodes, "fastbp.Network", [helper.make_tensor_value_info(
        "input", elem, ["batch", net.layer_sizes[0]])], outputs, initializers)
    model = helper.make_model_gen_version(graph, opset_imports=[helper.make_opsetid("", opset)],
                                          producer_name="fastbp", producer_version=__version__)
    helper.set_model_props(model, {"fastbp.loss": net.loss,
                                   "fastbp.layer_sizes": ",".join(map(str, net.layer_sizes))})
    if path is not None:
        io.write_atomically(path, model.SerializeToString())
    return model


def to_torch(net: Network) -> Any:
    """``net`` as a ``torch.nn.Sequential`` of ``nn.Linear`` and activation modules
    (logits out), in the network's dtype, with copies of its weights."""
    torch = _require("torch", "pip install torch (https://pytorch.org)")
    modules = []
    with net._lock.reading:
        for l, (w, b) in enumerate(zip(net.weights, net.biases)):
            linear = torch.nn.Linear(w.shape[0], w.shape[1], dtype=getattr(torch, net.dtype.name))
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))
                linear.bias.copy_(torch.from_numpy(b.copy()))
            modules.append(linear)
            if l < net.n_layers - 1:
                modules.append(getattr(torch.nn, TORCH_ACTIVATIONS[net.activations[l]])())
    return torch.nn.Sequential(*modules)


def from_torch(module: Any, loss: str = "cross_entropy", n_threads: int | None = None) -> Network:
    """A `fastbp.Network` with the weights of ``module``, an ``nn.Sequential`` of
    ``nn.Linear`` layers with at most one ReLU, Sigmoid, Tanh or Identity between two
    of them and a Linear last (its output is the logits the loss's output function
    takes: softmax for cross_entropy, ...). Its parameters' dtype (float32 or float64)
    is the network's. TypeError or ValueError naming the module that does not fit."""
    torch = _require("torch", "pip install torch (https://pytorch.org)")
    from .network import Network
    if not isinstance(module, torch.nn.Sequential):
        raise TypeError(f"from_torch: module must be a torch.nn.Sequential, got {type(module).__name__}")
    names = {getattr(torch.nn, cls): name for name, cls in TORCH_ACTIVATIONS.items()}
    sizes: list[int] = []
    activations: list[str] = []
    weights: list[Any] = []
    biases: list[Any] = []
    dtypes: set[Any] = set()
    pending = None   # the activation after the last Linear seen
    for i, m in enumerate(module):
        if isinstance(m, torch.nn.Linear):
            if sizes and m.in_features != sizes[-1]:
                raise ValueError(f"from_torch: module[{i}] takes {m.in_features} inputs, the layer "
                                 f"before gives {sizes[-1]}")
            if weights:
                activations.append(pending or "identity")
            pending = None
            if not sizes:
                sizes.append(m.in_features)
            sizes.append(m.out_features)
            dtypes.update(p.dtype for p in m.parameters())
            if not dtypes <= {torch.float32, torch.float64}:
                raise ValueError(f"from_torch: module[{i}]'s parameters are "
                                 f"{sorted(map(str, dtypes))}; fastbp takes float32 or float64")
            weights.append(m.weight.detach().cpu().numpy().T)
            biases.append(np.zeros(m.out_features, dtype=weights[-1].dtype) if m.bias is None
                          else m.bias.detach().cpu().numpy())
        elif type(m) in names and weights and pending is None:
            pending = names[type(m)]
        else:
            raise ValueError(f"from_torch: module[{i}] is {type(m).__name__}: fastbp reads an "
                             "nn.Sequential of nn.Linear layers with at most one ReLU, Sigmoid, Tanh "
                             "or Identity between two of them, a Linear first and last")
    if not weights or pending is not None:
        raise ValueError("from_torch: the module must end with an nn.Linear (the loss gives the "
                         f"output function); got {type(module[-1]).__name__ if len(module) else 'nothing'}")
    if len(dtypes) != 1:
        raise ValueError(f"from_torch: the parameters must all be float32 or all float64, got "
                         f"{sorted(map(str, dtypes))}")
    net = Network(sizes, activation=activations, loss=loss, dtype=weights[0].dtype.name,
                  n_threads=n_threads)
    net.set_weights(weights, biases)
    return net


# -- scikit-learn ------------------------------------------------------------------------
# fastbp's hidden activation names -> scikit-learn's
SKLEARN_ACTIVATIONS = {"identity": "identity", "sigmoid": "logistic", "tanh": "tanh", "relu": "relu"}
# fastbp's loss -> scikit-learn's output activation (cross_entropy: softmax, or one
# logistic output for two classes, as scikit-learn has it)
SKLEARN_OUTPUTS = {"cross_entropy": "softmax", "binary_cross_entropy": "logistic", "mse": "identity",
                   "poisson": "exp"}


def to_sklearn(net: Network, classes: Any = None) -> Any:
    """A fitted ``sklearn.neural_network.MLPClassifier`` (cross_entropy,
    binary_cross_entropy) or ``MLPRegressor`` (mse, poisson) that computes what ``net``
    does: the same ``coefs_`` and ``intercepts_`` (in net's dtype), so the same
    predictions. ``classes``: the labels of a classifier's outputs, in order (default
    0, 1, ...); a cross_entropy network of two classes becomes scikit-learn's one
    logistic output (its logit is the difference of the two), a binary_cross_entropy
    one of one output a binary classifier, of several a multi-label one. Needs one
    hidden activation for every layer, as scikit-learn has."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor  # type: ignore[import-untyped]
    from sklearn.preprocessing import LabelBinarizer  # type: ignore[import-untyped]
    if len(set(net.activations)) > 1:
        raise ValueError(f"to_sklearn: scikit-learn's MLPs have one hidden activation, this network "
                         f"has {list(net.activations)}")
    activation = SKLEARN_ACTIVATIONS[net.activations[0] if net.activations else "relu"]
    with net._lock.reading:
        coefs = [w.copy() for w in net.weights]
        intercepts = [b.copy() for b in net.biases]
    n_out = net.layer_sizes[-1]
    out_activation = SKLEARN_OUTPUTS[net.loss]
    if net.loss in ("mse", "poisson"):
        if classes is not None:
            raise ValueError(f"to_sklearn: classes are for classifiers; this network's loss is {net.loss!r}")
        est = MLPRegressor(hidden_layer_sizes=net.layer_sizes[1:-1], activation=activation,
                           loss="squared_error" if net.loss == "mse" else "poisson")
    else:
        est = MLPClassifier(hidden_layer_sizes=net.layer_sizes[1:-1], activation=activation)
        multilabel = net.loss == "binary_cross_entropy" and n_out > 1
        n_classes = n_out if multilabel or net.loss == "cross_entropy" else 2
        classes = np.arange(n_classes) if classes is None else np.asarray(classes)
        if classes.shape != (n_classes,) or len(np.unique(classes)) != n_classes:
            raise ValueError(f"to_sklearn: classes must be {n_classes} distinct labels, one per "
                             f"class of the network, got {classes.tolist()!r}")
        if multilabel and not np.array_equal(classes, np.arange(n_out)):
            raise ValueError("to_sklearn: a multi-label classifier's classes are its outputs' "
                             "indices 0, 1, ..., as scikit-learn's")
        if net.loss == "cross_entropy" and n_out == 2:
            # softmax over (z0, z1) is sigmoid(z1 - z0): scikit-learn's binary model
            coefs[-1] = coefs[-1][:, 1:] - coefs[-1][:, :1]
            intercepts[-1] = intercepts[-1][1:] - intercepts[-1][:1]
            out_activation = "logistic"
        est._label_binarizer = LabelBinarizer().fit(np.eye(n_out, dtype=int) if multilabel else classes)
        est.classes_ = est._label_binarizer.classes_
    est.coefs_, est.intercepts_ = coefs, intercepts
    est.n_features_in_ = net.layer_sizes[0]
    est.n_layers_ = len(net.layer_sizes)
    est.n_outputs_ = coefs[-1].shape[1]
    est.out_activation_ = out_activation
    est.n_iter_, est.t_ = 0, 0   # (t_ counts samples seen, which a Network does not know)
    return est


def from_sklearn(est: Any) -> tuple[Network, Any]:
    """(Network, classes) from a fitted scikit-learn ``MLPClassifier`` or
    ``MLPRegressor``: the same weights in their dtype; classes is the classifier's
    ``classes_`` (None for a regressor). A binary classifier's one logistic output
    becomes a binary_cross_entropy network of one output."""
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from .network import Network
    if not isinstance(est, (MLPClassifier, MLPRegressor)):
        raise TypeError(f"from_sklearn: est must be scikit-learn's MLPClassifier or MLPRegressor, "
                        f"got {type(est).__name__}")
    if not hasattr(est, "coefs_"):
        raise ValueError(f"from_sklearn: this {type(est).__name__} is not fitted")
    losses = {v: k for k, v in SKLEARN_OUTPUTS.items()}
    loss = losses[est.out_activation_]
    coefs, intercepts = est.coefs_, est.intercepts_
    dtype = coefs[0].dtype
    sizes = [coefs[0].shape[0]] + [w.shape[1] for w in coefs]
    activation = {v: k for k, v in SKLEARN_ACTIVATIONS.items()}[est.activation]
    net = Network(sizes, activation=activation, loss=loss, dtype=dtype.name)
    net.set_weights(coefs, intercepts)
    return net, (est.classes_ if isinstance(est, MLPClassifier) else None)
