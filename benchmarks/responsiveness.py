"""How quickly fastbp answers Ctrl-C, and how long it keeps other Python threads waiting.

    python benchmarks/responsiveness.py [--samples 200000] [--rounds 5]

1. Ctrl-C during full-batch gradient descent: fit(optimizer="gd") on `samples` rows of
   784 features (784-256-10, one update is seconds of work), interrupted from a timer
   thread at a random moment; prints the delay from the interrupt to KeyboardInterrupt
   in the caller (median and worst of `rounds`).
2. The GIL: a thread that wakes every millisecond records its longest gap while the main
   thread runs fit (SGD, its start fills and shuffles the order of all samples), fit
   with optimizer="gd", predict, and load of a model file; prints the longest gap of
   each (other Python threads stall that long).
Measurements, not tests: the machine and its load decide the numbers.
"""
import argparse
import os
import platform
import tempfile
import threading
import time
import _thread

import numpy as np

import fastbp


def ctrl_c_delays(X, y, rounds, rng):
    delays = []
    for _ in range(rounds):
        net = fastbp.Network([784, 256, 10], seed=0)
        fired = []

        def interrupt():
            fired.append(time.perf_counter())
            _thread.interrupt_main()

        timer = threading.Timer(float(rng.uniform(0.3, 1.0)), interrupt)
        timer.start()
        try:
            net.fit(X, y, optimizer="gd", lr=0.1, epochs=1000)
        except KeyboardInterrupt:
            delays.append(time.perf_counter() - fired[0])
        finally:
            timer.cancel()
    return delays


class GapWatch:
    """A thread that sleeps 1 ms at a time and keeps the longest time between wake-ups."""

    def __init__(self):
        self.longest = 0.0
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        last = time.perf_counter()
        while not self.stop.is_set():
            time.sleep(0.001)
            now = time.perf_counter()
            self.longest = max(self.longest, now - last)
            last = now

    def __enter__(self):
        self.thread.start()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--samples", type=int, default=200_000)
    ap.add_argument("--rounds", type=int, default=5)
    a = ap.parse_args()
    info = fastbp.info()
    print(f"## fastbp {info['version']} responsiveness: {info['cpu']}, code path {info['code_path']}, "
          f"{info['threads']} threads, Python {platform.python_version()}")
    rng = np.random.default_rng(0)
    X = rng.random((a.samples, 784), dtype=np.float32)
    y = rng.integers(0, 10, a.samples)

    delays = ctrl_c_delays(X, y, a.rounds, rng)
    print(f"Ctrl-C during full-batch GD on {a.samples} x 784 (784-256-10): delay to "
          f"KeyboardInterrupt median {1e3 * np.median(delays):.1f} ms, worst {1e3 * max(delays):.1f} ms "
          f"({len(delays)} rounds)")

    net = fastbp.Network([784, 256, 10], seed=0)
    path = os.path.join(tempfile.mkdtemp(), "model.fbp")
    big = fastbp.Network([784, 2048, 2048, 10], seed=0)
    big.save(path)
    wide = rng.random((20_000_000, 2), dtype=np.float32)   # many samples: the order is long
    wide_y = rng.integers(0, 2, len(wide))
    small = fastbp.Network([2, 4, 2], seed=0)
    cases = [
        ("fit, SGD, 20M samples of 2 features, 1 epoch",
         lambda: small.fit(wide, wide_y, batch_size=100_000, epochs=1)),
        (f"fit, GD, {a.samples} x 784, 2 epochs",
         lambda: net.fit(X, y, optimizer="gd", epochs=2)),
        (f"predict_proba, {a.samples} x 784", lambda: net.predict_proba(X)),
        ("load, 784-2048-2048-10 (23 MB)", lambda: fastbp.load(path)),
    ]
    for name, call in cases:
        with GapWatch() as watch:
            start = time.perf_counter()
            call()
            seconds = time.perf_counter() - start
        print(f"longest stall of another Python thread during {name} ({seconds:.2f} s): "
              f"{1e3 * watch.longest:.1f} ms")


if __name__ == "__main__":
    main()
