"""fastbp.plot: training curves and first-layer weight tiles as PNG files."""
import builtins
import importlib.util
import sys

import numpy as np
import pytest

import fastbp
from fastbp import cli, plot

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
needs_matplotlib = pytest.mark.skipif(importlib.util.find_spec("matplotlib") is None,
                                      reason="matplotlib is not installed (pip install fastbp[plot])")


def png_size(path):
    """(width, height) from a PNG's IHDR chunk."""
    data = path.read_bytes()
    assert data[:8] == PNG_SIGNATURE, f"{path} is not a PNG"
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def test_missing_matplotlib_says_how_to_install(tmp_path, monkeypatch):
    real_import = builtins.__import__

    def no_matplotlib(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(builtins, "__import__", no_matplotlib)
    with pytest.raises(ImportError, match=r"pip install fastbp\[plot\]"):
        plot.history({"loss": [1.0, 0.5]}, tmp_path / "run.png")
    assert not (tmp_path / "run.png").exists()


@needs_matplotlib
def test_history_from_fit_writes_a_png(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 4))
    y = (X[:, 0] > 0).astype(int)
    net = fastbp.Network([4, 8, 2], seed=0)
    hist = net.fit(X, y, lr=0.1, epochs=4, validation_data=(X[:20], y[:20]))
    path = tmp_path / "run.png"
    plot.history(hist, path)
    width, height = png_size(path)
    assert (width, height) == (1000, 400)


@needs_matplotlib
def test_history_draws_each_series_it_is_given(tmp_path):
    """Different data must give different pictures: the curves really are drawn."""
    base = {"loss": [1.0, 0.6, 0.4], "val_loss": [1.1, 0.7, 0.5]}
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    plot.history(base, a)
    plot.history(dict(base, accuracy=[0.5, 0.8, 0.9], val_accuracy=[0.4, 0.7, 0.85]), b)
    assert a.read_bytes() != b.read_bytes()


@needs_matplotlib
def test_history_without_any_series_is_refused(tmp_path):
    with pytest.raises(ValueError, match="hist"):
        plot.history({}, tmp_path / "run.png")


@needs_matplotlib
def test_weights_tiles_up_to_64_units(tmp_path):
    path = tmp_path / "w.png"
    plot.weights(fastbp.Network([784, 100, 10], seed=0), path)
    assert png_size(path)[0] == 880          # 8 columns of 1.1 inches at 100 dpi
    small = tmp_path / "w9.png"
    plot.weights(fastbp.Network([784, 9, 10], seed=0), small)
    assert png_size(small)[0] == 330         # 3 columns


@needs_matplotlib
def test_weights_show_the_weights(tmp_path):
    net = fastbp.Network([784, 4, 10], seed=0)
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    plot.weights(net, a)
    w = net.weights[0]
    w[:392] = 0.0                            # blank the top half of every tile
    plot.weights(net, b)
    assert a.read_bytes() != b.read_bytes()


@needs_matplotlib
def test_weights_need_a_square_input(tmp_path):
    with pytest.raises(ValueError, match="not a square"):
        plot.weights(fastbp.Network([10, 4, 2], seed=0), tmp_path / "w.png")


@needs_matplotlib
def test_cli_writes_both_pictures(tmp_path, capsys, monkeypatch):
    from test_cli import N_TEST, N_TRAIN, synthetic_digits, write_idx
    d = tmp_path / "digits"
    d.mkdir()
    for stem, n, seed in (("train", N_TRAIN, 1), ("t10k", N_TEST, 2)):
        images, labels = synthetic_digits(n, seed)
        write_idx(d / f"{stem}-images-idx3-ubyte", images, gz=False)
        write_idx(d / f"{stem}-labels-idx1-ubyte", labels, gz=False)
    monkeypatch.setenv("FASTBP_CACHE", str(tmp_path / "cache"))
    run_png, weights_png = tmp_path / "run.png", tmp_path / "weights.png"
    status = cli.main(["train", "--data", str(d), "--no-download", "--epochs", "2",
                              "--layers", "784,16,10", "--plot", str(run_png),
                              "--plot-weights", str(weights_png)])
    assert status == 0, capsys.readouterr().err
    assert png_size(run_png) == (1000, 400)
    assert png_size(weights_png)[0] == 440    # 16 units: 4 columns
