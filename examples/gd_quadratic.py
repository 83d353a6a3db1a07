"""Gradient descent on f(x) = x², from x₀ = -3, with fastbp.sgd_update.

The step is x <- x - γ·f'(x) = x - 2γx = (1 - 2γ)·x, so the iterates are
x₀·(1 - 2γ)^t: γ = 1 flips the sign each step and oscillates exactly between -3
and 3, 0 < γ < 1 shrinks |x| towards the minimum at 0 (γ = 0.5 lands on it in one
step), and γ > 1 grows |x| without bound.

    python examples/gd_quadratic.py                       # print the trajectories
    python examples/gd_quadratic.py --plot docs/gd_quadratic.png
"""
import argparse

import numpy as np

import fastbp

LEARNING_RATES = (0.1, 1.0, 1.1)


def trajectory(lr, steps, x0=-3.0):
    """[x₀, x₁, ..., x_steps] for gradient descent with learning rate ``lr`` on
    f(x) = x², each step taken by `fastbp.sgd_update` with the gradient 2x.

    >>> trajectory(1.0, 3)
    [-3.0, 3.0, -3.0, 3.0]
    """
    if isinstance(steps, bool) or not isinstance(steps, int) or steps < 0:
        raise ValueError(f"steps must be an integer >= 0, got {steps!r}")
    x = np.array([x0], dtype=np.float64)
    xs = [float(x[0])]
    for _ in range(steps):
        fastbp.sgd_update(x, 2.0 * x, lr=lr)
        xs.append(float(x[0]))
    return xs


def plot(trajectories, path):
    from fastbp.plot import figure
    try:
        fig = figure(9, 3.6, dpi=100)
    except ImportError:
        raise SystemExit("--plot needs matplotlib: pip install matplotlib") from None
    left, right = fig.subplots(1, 2)
    grid = np.linspace(-4.5, 4.5, 200)
    left.plot(grid, grid ** 2, color="0.7", lw=1)
    for lr, xs in trajectories.items():
        shown = [x for x in xs if abs(x) <= 4.5][:12]
        left.plot(shown, [x * x for x in shown], "o-", ms=3, lw=0.8, label=f"γ = {lr:g}")
        right.plot(range(len(xs)), xs, "o-", ms=3, lw=0.8, label=f"γ = {lr:g}")
    left.set(xlabel="x", ylabel="f(x) = x²", title="iterates on f", ylim=(-0.5, 21))
    right.set(xlabel="step t", ylabel="x_t", title="x_t = x₀·(1 - 2γ)^t", yscale="symlog")
    right.axhline(0, color="0.7", lw=0.8)
    left.legend()
    right.legend()
    fig.tight_layout()
    fig.savefig(path)
    print(f"wrote {path}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--lr", type=float, nargs="+", default=list(LEARNING_RATES),
                        help="learning rates γ (default: %(default)s)")
    parser.add_argument("--plot", metavar="PATH", help="write a PNG of the trajectories")
    parser.add_argument("--quick", action="store_true", help="a few steps (smoke test)")
    args = parser.parse_args(argv)
    steps = 5 if args.quick else args.steps
    trajectories = {lr: trajectory(lr, steps) for lr in args.lr}
    for lr, xs in trajectories.items():
        factor = 1 - 2 * lr
        verdict = ("oscillates" if abs(factor) == 1 else
                   "converges" if abs(factor) < 1 else "diverges")
        print(f"γ = {lr:g}: x <- {factor:g}·x, {verdict}")
        print("  " + ", ".join(f"{x:.4g}" for x in xs))
    if args.plot:
        plot(trajectories, args.plot)


if __name__ == "__main__":
    main()
