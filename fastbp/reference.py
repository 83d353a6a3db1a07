"""The same maths in plain NumPy: the oracle of the tests and the baseline of the
benchmarks. Written to be read, not to be fast.

Shapes: X (B, n_in); weights[l] (n_l, n_{l+1}); biases[l] (n_{l+1},).
"""
import numpy as np

ACTIVATION = {
    "identity": lambda z: z,
    "relu": lambda z: np.maximum(z, 0),
    "sigmoid": lambda z: 1 / (1 + np.exp(-z)),
    "tanh": np.tanh,
}

# Each activation's derivative written in terms of its output a = f(z).
ACTIVATION_GRAD = {
    "identity": lambda a: np.ones_like(a),
    "relu": lambda a: (a > 0).astype(a.dtype),
    "sigmoid": lambda a: a * (1 - a),
    "tanh": lambda a: 1 - a * a,
}


def log_softmax(z):
    z = z - z.max(axis=1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=1, keepdims=True))


def forward(weights, biases, activations, X):
    """All layer outputs [X, A_1, ..., A_L]; the last is the raw output (logits)."""
    outs = [X]
    for l, (W, b) in enumerate(zip(weights, biases)):
        z = outs[-1] @ W + b
        outs.append(ACTIVATION[activations[l]](z) if l < len(activations) else z)
    return outs


def per_sample_loss(output, y, loss):
    """Each sample's loss C_i (B,) and dC_i/dz, the gradient with respect to the raw
    output z of its own loss (B, C)."""
    B = len(output)
    if loss == "cross_entropy":
        logp = log_softmax(output)
        delta = np.exp(logp)
        delta[np.arange(B), y] -= 1
        return -logp[np.arange(B), y], delta
    y = y.reshape(output.shape)
    if loss == "binary_cross_entropy":   # log(1 + e^z) - y z per output, summed
        return (np.logaddexp(0, output) - y * output).sum(axis=1), 1 / (1 + np.exp(-output)) - y
    if loss == "poisson":                # e^z - y z per output, summed
        return (np.exp(output) - y * output).sum(axis=1), np.exp(output) - y
    diff = output - y                    # mse: the mean over outputs of (z - y)²
    return (diff ** 2).mean(axis=1), 2 * diff / diff.shape[1]


def loss_and_delta(output, y, loss, sample_weight=None):
    """The (weighted) mean loss over the batch, Σ s_i C_i / Σ s_i, and its gradient
    with respect to the raw output."""
    s = np.ones(len(output)) if sample_weight is None else np.asarray(sample_weight, float)
    losses, dz = per_sample_loss(output, y, loss)
    return (s * losses).sum() / s.sum(), dz * (s / s.sum())[:, None]


def gradients(weights, biases, activations, X, y, loss, sample_weight=None):
    """Backpropagation: returns (mean loss, [(dW, db), ...])."""
    outs = forward(weights, biases, activations, X)
    value, delta = loss_and_delta(outs[-1], y, loss, sample_weight)
    grads = [None] * len(weights)
    for l in range(len(weights) - 1, -1, -1):
        grads[l] = (outs[l].T @ delta, delta.sum(axis=0))
        if l > 0:
            delta = (delta @ weights[l].T) * ACTIVATION_GRAD[activations[l - 1]](outs[l])
    return value, grads


def sgd_update(param, grad, lr, momentum=0.0, velocity=None, weight_decay=0.0, nesterov=False):
    """w <- w - lr * (g + weight_decay * w), with PyTorch-style momentum; in place."""
    g = grad + weight_decay * param
    if momentum:
        velocity *= momentum
        velocity += g
        g = g + momentum * velocity if nesterov else velocity
    param -= lr * g
    return param


def adam_update(param, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0,
                decoupled=False):
    """PyTorch's Adam (decoupled: AdamW) step ``step`` (1-based), in place, written out."""
    if decoupled:
        param *= 1 - lr * weight_decay
        g = grad
    else:
        g = grad + weight_decay * param
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    param -= lr / (1 - beta1 ** step) * m / (np.sqrt(v) / np.sqrt(1 - beta2 ** step) + eps)
    return param


def adam_sklearn_update(param, grad, m, v, step, lr, beta1=0.9, beta2=0.999, eps=1e-8,
                        weight_decay=0.0):
    """scikit-learn's AdamOptimizer step ``step`` (1-based), in place: eps is added to
    the uncorrected sqrt(v), the bias corrections folded into the step size."""
    g = grad + weight_decay * param
    m *= beta1
    m += (1 - beta1) * g
    v *= beta2
    v += (1 - beta2) * g * g
    step_size = lr * np.sqrt(1 - beta2 ** step) / (1 - beta1 ** step)
    param -= step_size * m / (np.sqrt(v) + eps)
    return param


def predict_proba(weights, biases, activations, X):
    return np.exp(log_softmax(forward(weights, biases, activations, X)[-1]))


class ReferenceNetwork:
    """A minimal trainer over the functions above: the baseline of the benchmarks."""

    def __init__(self, weights, biases, activations, loss):
        self.weights = [w.copy() for w in weights]
        self.biases = [b.copy() for b in biases]
        self.activations = list(activations)
        self.loss = loss
        self.vW = [np.zeros_like(w) for w in weights]
        self.vb = [np.zeros_like(b) for b in biases]
        self.m = [np.zeros_like(p) for p in self.weights + self.biases]   # Adam's moments
        self.v = [np.zeros_like(p) for p in self.weights + self.biases]
        self.adam_steps = 0

    def train_step(self, X, y, lr, momentum=0.0, weight_decay=0.0, nesterov=False,
                   sample_weight=None):
        value, grads = gradients(self.weights, self.biases, self.activations, X, y, self.loss,
                                 sample_weight)
        for l, (dW, db) in enumerate(grads):
            sgd_update(self.weights[l], dW, lr, momentum, self.vW[l], weight_decay, nesterov)
            sgd_update(self.biases[l], db, lr, momentum, self.vb[l], 0.0, nesterov)
        return value

    def adam_step(self, X, y, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False,
                  sklearn=False, sample_weight=None):
        """One Adam (decoupled: AdamW; sklearn: scikit-learn's variant) update on the
        batch; biases are not decayed."""
        value, grads = gradients(self.weights, self.biases, self.activations, X, y, self.loss,
                                 sample_weight)
        self.adam_steps += 1
        params = self.weights + self.biases
        flat = [g[0] for g in grads] + [g[1] for g in grads]
        for i, (p, g) in enumerate(zip(params, flat)):
            decay = weight_decay if i < len(self.weights) else 0.0
            if sklearn:
                adam_sklearn_update(p, g, self.m[i], self.v[i], self.adam_steps, lr, betas[0],
                                    betas[1], eps, decay)
            else:
                adam_update(p, g, self.m[i], self.v[i], self.adam_steps, lr, betas[0], betas[1],
                            eps, decay, decoupled)
        return value
