"""Peak memory of `fit` beyond the data: fit on float32 C-contiguous X must not copy X.

    FASTBP_DATA=../shared/data/mnist python benchmarks/memory.py

Linux only: resets the peak resident set size (VmHWM, via /proc/self/clear_refs) just
before fit and reads it after, so only what fit itself allocated shows.
"""
import gc
import sys

import numpy as np

import fastbp
from fastbp.datasets import load_mnist


def status_kb(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1])
    raise RuntimeError(f"{key} not in /proc/self/status")


def main():
    if not sys.platform.startswith("linux"):
        sys.exit("benchmarks/memory.py reads /proc/self: Linux only")
    images, labels = load_mnist(kind="train")
    X = (images / np.float32(255)).astype(np.float32)
    y = labels.astype(np.int64)
    del images
    gc.collect()
    for batch in (1, 32, 512):
        net = fastbp.Network([784, 256, 10], seed=0)
        model = sum(w.nbytes + b.nbytes for w, b in zip(net.weights, net.biases))
        before = status_kb("VmRSS")
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")   # the peak becomes the current RSS
        net.fit(X, y, epochs=1, batch_size=batch, lr=0.01)
        growth = (status_kb("VmHWM") - before) * 1024
        print(f"batch {batch:>3}: X {X.nbytes / 1e6:.1f} MB, model {model / 1e6:.2f} MB; peak RSS "
              f"grew {growth / 1e6:.2f} MB during fit = {growth / X.nbytes:.1%} of X "
              f"(target: < 10% of X plus the model and its buffers)")


if __name__ == "__main__":
    main()
