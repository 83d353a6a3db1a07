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


def loss_and_delta(output, y, loss):
    """Mean loss over the batch and its gradient with respect to the raw output."""
    B = len(output)
    if loss == "cross_entropy":
        logp = log_softmax(output)
        value = -logp[np.arange(B), y].mean()
        delta = np.exp(logp)
        delta[np.arange(B), y] -= 1
        return value, delta / B
    y = y.reshape(output.shape)
    diff = output - y
    return (diff ** 2).mean(), 2 * diff / diff.size


def gradients(weights, biases, activations, X, y, loss):
    """Backpropagation: returns (mean loss, [(dW, db), ...])."""
    outs = forward(weights, biases, activations, X)
    value, delta = loss_and_delta(outs[-1], y, loss)
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

    def train_step(self, X, y, lr, momentum=0.0, weight_decay=0.0, nesterov=False):
        value, grads = gradients(self.weights, self.biases, self.activations, X, y, self.loss)
        for l, (dW, db) in enumerate(grads):
            sgd_update(self.weights[l], dW, lr, momentum, self.vW[l], weight_decay, nesterov)
            sgd_update(self.biases[l], db, lr, momentum, self.vb[l], 0.0, nesterov)
        return value

    def adam_step(self, X, y, lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.0, decoupled=False):
        """One Adam (decoupled: AdamW) update on the batch; biases are not decayed."""
        value, grads = gradients(self.weights, self.biases, self.activations, X, y, self.loss)
        self.adam_steps += 1
        params = self.weights + self.biases
        flat = [g[0] for g in grads] + [g[1] for g in grads]
        for i, (p, g) in enumerate(zip(params, flat)):
            decay = weight_decay if i < len(self.weights) else 0.0
            adam_update(p, g, self.m[i], self.v[i], self.adam_steps, lr, betas[0], betas[1], eps,
                        decay, decoupled)
        return value
