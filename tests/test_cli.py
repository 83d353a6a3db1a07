"""The `fastbp` command, run in-process on small synthetic IDX files, plus one
`python -m fastbp` subprocess."""
import gzip
import importlib.machinery
import io
import json
import os
import struct
import subprocess
import sys
import types

import numpy as np
import pytest

import fastbp
from fastbp import cli

N_TRAIN, N_TEST = 200, 100


def synthetic_digits(n, seed):
    """28x28 uint8 images whose class k is a bright bar at rows 2k..2k+5 over noise:
    easy enough that a few epochs separate the classes, so a CLI that does not
    really train fails the accuracy checks."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    images = rng.integers(0, 60, (n, 28, 28)).astype(np.uint8)
    for i, k in enumerate(labels):
        images[i, 2 * k:2 * k + 6, 4:24] = 230
    return images, labels


def write_idx(path, array, gz):
    magic = 0x803 if array.ndim == 3 else 0x801
    header = struct.pack(">II", magic, len(array))
    if array.ndim == 3:
        header += struct.pack(">II", *array.shape[1:])
    payload = header + array.astype(np.uint8).tobytes()
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(payload)


@pytest.fixture
def digits_dir(tmp_path):
    """A directory laid out like MNIST: gzipped training files, raw test files."""
    d = tmp_path / "digits"
    d.mkdir()
    for stem, n, seed, gz in (("train", N_TRAIN, 1, True), ("t10k", N_TEST, 2, False)):
        images, labels = synthetic_digits(n, seed)
        suffix = ".gz" if gz else ""
        write_idx(d / f"{stem}-images-idx3-ubyte{suffix}", images, gz)
        write_idx(d / f"{stem}-labels-idx1-ubyte{suffix}", labels, gz)
    return d


@pytest.fixture(autouse=True)
def no_outside_data(monkeypatch, tmp_path):
    """No test sees the real MNIST or a download cache unless it sets one up."""
    monkeypatch.delenv("FASTBP_DATA", raising=False)
    monkeypatch.setenv("FASTBP_CACHE", str(tmp_path / "empty-cache"))


def run(capsys, *argv):
    """(exit status, stdout, stderr) of `fastbp ARGV`."""
    status = cli.main([str(a) for a in argv])
    captured = capsys.readouterr()
    return status, captured.out, captured.err


def assert_one_line_error(status, err, *fragments):
    assert status == 2
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for fragment in fragments:
        assert fragment in err, err


def test_train_learns_synthetic_digits_and_writes_model_and_summary(capsys, digits_dir, tmp_path):
    model, summary = tmp_path / "m.fbp", tmp_path / "s.json"
    status, out, err = run(capsys, "train", "--data", digits_dir, "--no-download", "--epochs", 4,
                           "--layers", "784,32,10", "--save", model, "--json", summary)
    assert status == 0, err
    epoch_lines = [line for line in out.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 4
    assert all("loss" in line and "train acc" in line and "test acc" in line for line in epoch_lines)
    assert "µs per update" in out
    report = json.loads(summary.read_text())
    assert report["test_accuracy"] >= 0.9
    assert report["n_updates"] == 4 * -(-N_TRAIN // 32)
    assert [row["epoch"] for row in report["epochs"]] == [1, 2, 3, 4]
    assert report["epochs"][-1]["loss"] < report["epochs"][0]["loss"]
    net = fastbp.load(model)
    assert net.layer_sizes == (784, 32, 10)
    images, labels = synthetic_digits(N_TEST, 2)
    X = images.reshape(N_TEST, -1) / np.float32(255)
    assert net.evaluate(X.astype(np.float32), labels)["accuracy"] == pytest.approx(report["test_accuracy"])


def test_train_reads_FASTBP_DATA_when_no_data_flag(capsys, digits_dir, monkeypatch):
    monkeypatch.setenv("FASTBP_DATA", str(digits_dir))
    status, out, err = run(capsys, "train", "--no-download", "--epochs", 1, "--layers", "784,8,10")
    assert status == 0, err
    assert f"{N_TRAIN} train, {N_TEST} test images" in out


def test_train_with_validation_split_and_gd(capsys, digits_dir, tmp_path):
    summary = tmp_path / "s.json"
    status, out, err = run(capsys, "train", "--data", digits_dir, "--no-download", "--epochs", 3,
                           "--optimizer", "gd", "--lr", 0.5, "--val-size", 50, "--layers", "784,8,10",
                           "--json", summary)
    assert status == 0, err
    assert "150 train, 50 val images" in out
    assert json.loads(summary.read_text())["n_updates"] == 3      # one full-batch step per epoch


def test_recipe_sets_flags_and_explicit_flags_win():
    args = cli.build_parser().parse_args(["train", "--recipe", "fast98", "--epochs", "2"])
    settings = cli.resolve_train_settings(args)
    assert settings["epochs"] == 2
    for key, value in cli.RECIPES["fast98"].items():
        if key != "epochs":
            assert settings[key] == value
    plain = cli.resolve_train_settings(cli.build_parser().parse_args(["train"]))
    assert plain["layer_sizes"] == [784, 256, 10] and plain["epochs"] == 5


@pytest.mark.parametrize("schedule", ["constant", "invscaling", "step"])
def test_progress_callback_does_not_change_training(schedule):
    """The CLI draws its progress bar from fit's callback; watching must not change
    the batches, the learning rates or the weights."""
    X, y = synthetic_digits(300, 3)
    X = (X.reshape(300, -1) / np.float32(255)).astype(np.float32)
    kwargs = dict(lr=0.05, batch_size=7, epochs=2, momentum=0.9, schedule=schedule, step_size=1,
                  gamma=0.5, decay=0.01, n_threads=1)
    seen = []
    watched = fastbp.Network([784, 16, 10], seed=5)
    hist = watched.fit(X, y, callback=lambda p: seen.append((p.epoch, p.samples, p.end_of_epoch)),
                       **kwargs)
    plain = fastbp.Network([784, 16, 10], seed=5)
    plain.fit(X, y, **kwargs)
    for a, b in zip(watched.weights, plain.weights):
        np.testing.assert_array_equal(a, b)
    assert [s for s in seen if s[2]] == [(1, 300, True), (2, 300, True)]
    assert hist.n_updates == 2 * -(-300 // 7)


def test_progress_bar_reports_rate_and_running_loss():
    stream = io.StringIO()
    progress = cli.Progress(stream, enabled=True)
    progress.update(2, 5, 300, 600, 0.5, 0.25, force=True)
    assert "epoch 2/5" in stream.getvalue() and "600 samples/s" in stream.getvalue()
    assert "loss 0.2500" in stream.getvalue()


def test_a_data_folder_that_does_not_exist_is_reported_as_such(capsys, tmp_path):
    missing = tmp_path / "nothing-here"
    status, out, err = run(capsys, "train", "--data", missing)   # downloads allowed: none tried
    assert_one_line_error(status, err, f"--data {missing}: no such directory")
    assert "downloading" not in err


def assert_short_error_then_details(status, err, first_has, details_have):
    lines = err.strip().splitlines()
    assert status == 2 and lines[0].startswith("fastbp train: error: ")
    assert len(lines[0]) < 300, "the first line is the short message"
    for text in first_has:
        assert text in lines[0]
    for text in details_have:
        assert text in "\n".join(lines[1:])


def test_train_in_a_folder_without_the_files_says_where_it_looked(capsys, tmp_path):
    status, out, err = run(capsys, "train", "--data", tmp_path)
    assert_short_error_then_details(status, err, [f"--data {tmp_path}", "FASTBP_DATA=DIR"],
                                    [str(tmp_path), "train-images-idx3-ubyte"])
    assert "downloading" not in err


def test_train_without_data_or_FASTBP_DATA_says_so(capsys):
    status, out, err = run(capsys, "train", "--no-download")
    assert_short_error_then_details(status, err, ["the cache", "--data DIR", "FASTBP_DATA=DIR"],
                                    ["$FASTBP_DATA: not set", "cache: "])


@pytest.mark.parametrize("layers", ["784,x", "784", "784,0,10", "", "784,,10"])
def test_bad_layer_string_is_one_line(capsys, digits_dir, layers):
    status, out, err = run(capsys, "train", "--data", digits_dir, "--layers", layers)
    assert_one_line_error(status, err, "--layers")


def test_layers_that_do_not_fit_the_data_are_one_line(capsys, digits_dir):
    status, out, err = run(capsys, "train", "--data", digits_dir, "--no-download", "--layers", "100,10")
    assert_one_line_error(status, err, "--layers 100,10", "784 inputs")


@pytest.mark.parametrize("argv", [["train", "--lr", "-1"], ["train", "--epochs", "0"],
                                  ["train", "--threads", "0"], ["train", "--epochs", "two"],
                                  ["train", "--activation", "swish"], ["frobnicate"], [],
                                  ["profile", "--steps", "-3"]])
def test_argument_errors_are_one_line_with_exit_2(capsys, argv):
    status, out, err = run(capsys, *argv)
    assert_one_line_error(status, err, "error")
    assert "usage:" not in err and "--help" in err


def test_every_option_has_help_text_and_recipes_read_as_flags():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    for name, sub in subparsers.items():
        for action in sub._actions:
            if action.option_strings and name != "bench" or action.dest in ("model", "images"):
                assert action.help, f"fastbp {name} {action.option_strings or action.dest} has no help"
    text = " ".join(subparsers["train"].format_help().split())
    assert "--recipe fast98 stands for --layers 784,512,10" in text
    assert "{'" not in text and "--weight-decay 0.0" in text


def test_one_epoch_is_one_epoch(capsys, digits_dir):
    status, out, err = run(capsys, "train", "--data", digits_dir, "--no-download", "--epochs", 1,
                           "--layers", "784,8,10")
    assert status == 0, err
    assert ", 1 epoch\n" in out


def test_a_loss_that_grew_by_orders_of_magnitude_exits_1_and_saves_nothing(capsys, digits_dir,
                                                                            tmp_path):
    model = tmp_path / "m.fbp"
    status, out, err = run(capsys, "train", "--data", digits_dir, "--no-download", "--lr", "50",
                           "--epochs", 2, "--save", model)
    assert status == 1, (out, err)
    assert "training diverged: the training loss rose from" in err and "not saved" in err
    assert not model.exists()


def test_predict_into_a_closed_pipe_ends_quietly(tmp_path, saved_model):
    net, path = saved_model
    images = (synthetic_digits(3000, 5)[0]).astype(np.uint8)
    npy = tmp_path / "many.npy"
    np.save(npy, images)
    result = subprocess.run(f'"{sys.executable}" -m fastbp predict "{path}" "{npy}" | head -n 2',
                            shell=True, capture_output=True, text=True, timeout=120, cwd=tmp_path,
                            executable="/bin/bash")
    assert result.stdout.splitlines()[0] == "index label probability"
    assert "Traceback" not in result.stderr and "BrokenPipe" not in result.stderr, result.stderr


def test_predict_on_a_file_of_another_kind_says_what_it_reads(capsys, tmp_path, saved_model):
    net, path = saved_model
    status, out, err = run(capsys, "predict", path, path)
    assert_one_line_error(status, err, "predict reads an IDX image file", ".npy array")


def test_save_into_missing_directory_is_refused_before_training(capsys, digits_dir, tmp_path):
    status, out, err = run(capsys, "train", "--data", digits_dir, "--no-download",
                           "--save", tmp_path / "no" / "such" / "m.fbp")
    assert_one_line_error(status, err, "--save", "does not exist")
    assert "epoch" not in out


def test_divergence_exits_1_with_a_message(capsys, digits_dir):
    status, out, err = run(capsys, "train", "--data", digits_dir, "--no-download", "--layers", "784,8,10",
                           "--activation", "identity", "--lr", "1e30", "--epochs", 3)
    assert status == 1
    assert "diverged" in err and "Traceback" not in err


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    images, labels = synthetic_digits(N_TRAIN, 1)
    X = (images.reshape(N_TRAIN, -1) / np.float32(255)).astype(np.float32)
    net = fastbp.Network([784, 32, 10], seed=0)
    net.fit(X, labels, lr=0.05, momentum=0.9, epochs=5)
    path = tmp_path_factory.mktemp("model") / "model.fbp"
    net.save(path)
    return net, path


def test_evaluate_prints_loss_accuracy_and_confusion_matrix(capsys, digits_dir, saved_model):
    net, path = saved_model
    status, out, err = run(capsys, "evaluate", path, "--data", digits_dir, "--no-download")
    assert status == 0, err
    images, labels = synthetic_digits(N_TEST, 2)
    X = (images.reshape(N_TEST, -1) / np.float32(255)).astype(np.float32)
    scores = net.evaluate(X, labels)
    assert f"accuracy {scores['accuracy']:.4f}" in out and f"loss {scores['loss']:.4f}" in out
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("confusion matrix"))
    matrix = np.array([[int(v) for v in line.split()[1:]] for line in lines[start + 2:start + 12]])
    expected = np.zeros((10, 10), dtype=int)
    np.add.at(expected, (labels, net.predict(X)), 1)
    np.testing.assert_array_equal(matrix, expected)


def test_evaluate_refuses_a_model_that_does_not_fit_the_data(capsys, digits_dir, tmp_path):
    path = tmp_path / "small.fbp"
    fastbp.Network([10, 4, 3], seed=0).save(path)
    status, out, err = run(capsys, "evaluate", path, "--data", digits_dir, "--no-download")
    assert_one_line_error(status, err, "10 inputs", "784")
    fastbp.Network([784, 4, 3], seed=0).save(path)
    status, out, err = run(capsys, "evaluate", path, "--data", digits_dir, "--no-download")
    assert_one_line_error(status, err, "3 cross_entropy outputs", "10-class")


@pytest.mark.parametrize("content", [None, b"not a model at all"])
def test_evaluate_refuses_missing_or_corrupt_model_file(capsys, digits_dir, tmp_path, content):
    path = tmp_path / "model.fbp"
    if content is not None:
        path.write_bytes(content)
    status, out, err = run(capsys, "evaluate", path, "--data", digits_dir, "--no-download")
    assert_one_line_error(status, err, str(path))


@pytest.mark.parametrize("form", ["idx", "idx.gz", "npy-3d", "npy-2d-float"])
def test_predict_prints_labels_and_probabilities(capsys, tmp_path, saved_model, form):
    net, path = saved_model
    images, _ = synthetic_digits(12, 4)
    if form.startswith("idx"):
        source = tmp_path / f"images.{form}"
        write_idx(source, images, gz=form.endswith(".gz"))
    else:
        source = tmp_path / "images.npy"
        np.save(source, images if form == "npy-3d" else images.reshape(12, -1) / np.float32(255))
    status, out, err = run(capsys, "predict", path, source, "--all")
    assert status == 0, err
    proba = net.predict_proba((images.reshape(12, -1) / np.float32(255)).astype(np.float32))
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [int(r[0]) for r in rows] == list(range(12))
    assert [int(r[1]) for r in rows] == proba.argmax(axis=1).tolist()
    np.testing.assert_allclose(np.array([[float(v) for v in r[2:]] for r in rows]), proba, atol=1e-4)


def test_predict_refuses_pickled_npy_and_wrong_sizes(capsys, tmp_path, saved_model):
    _, path = saved_model
    pickled = tmp_path / "objects.npy"
    np.save(pickled, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    status, out, err = run(capsys, "predict", path, pickled)
    assert_one_line_error(status, err, str(pickled))
    small = tmp_path / "small.npy"
    np.save(small, np.zeros((3, 100), dtype=np.uint8))
    status, out, err = run(capsys, "predict", path, small)
    assert_one_line_error(status, err, "784 inputs", "100 pixels")
    status, out, err = run(capsys, "predict", path, tmp_path / "absent.idx")
    assert_one_line_error(status, err, "no such file")
    labels_file = tmp_path / "labels.idx"
    write_idx(labels_file, np.zeros(5, dtype=np.uint8), gz=False)
    status, out, err = run(capsys, "predict", path, labels_file)
    assert_one_line_error(status, err, "magic")


def test_info_reports_version_and_code_path(capsys):
    status, out, err = run(capsys, "info", "--json")
    assert status == 0, err
    details = json.loads(out)
    assert details["version"] == fastbp.__version__
    assert details["code_path"] == fastbp._core.get_isa()
    assert details["numpy"] == np.__version__
    assert isinstance(details["cpu_has_avx2_fma"], bool)


def test_profile_prints_each_phase_and_the_total(capsys):
    status, out, err = run(capsys, "profile", "--layers", "64,32,10", "--batch-size", "8",
                           "--steps", "20", "--threads", "1")
    assert status == 0, err
    rows = {line.split()[0]: line.split()[1] for line in out.splitlines()[2:7]}
    assert set(rows) == {"gather", "forward", "backward", "update", "total"}
    parts = sum(float(rows[k]) for k in ("gather", "forward", "backward", "update"))
    assert abs(parts - float(rows["total"])) <= 0.2 + 1e-3 * parts
    assert "20 updates" in out


def test_profile_rejects_bad_layers(capsys):
    status, out, err = run(capsys, "profile", "--layers", "64,x")
    assert status == 2 and "--layers" in err and "Traceback" not in err


def test_python_dash_m_fastbp_info_runs(tmp_path):
    result = subprocess.run([sys.executable, "-m", "fastbp", "info"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert fastbp.__version__ in result.stdout and "code_path" in result.stdout


def test_bench_dispatches_to_fastbp_bench_main(capsys, monkeypatch):
    received = []
    fake = types.ModuleType("fastbp.bench")
    fake.__spec__ = importlib.machinery.ModuleSpec("fastbp.bench", None)
    fake.main = lambda argv, prog: received.append((argv, prog)) or 3
    monkeypatch.setitem(sys.modules, "fastbp.bench", fake)
    status, out, err = run(capsys, "bench", "--quick", "x")
    assert status == 3 and received == [(["--quick", "x"], "fastbp bench")]


def test_bench_without_module_is_one_line(capsys, monkeypatch):
    monkeypatch.setattr(cli.importlib.util, "find_spec", lambda name: None)
    status, out, err = run(capsys, "bench")
    assert_one_line_error(status, err, "fastbp.bench")


def test_fashion_mnist_flag_uses_its_loader(capsys, digits_dir):
    if not hasattr(fastbp.datasets, "load_fashion_mnist"):
        status, out, err = run(capsys, "train", "--dataset", "fashion-mnist", "--data", digits_dir)
        assert_one_line_error(status, err, "load_fashion_mnist")
    else:
        status, out, err = run(capsys, "train", "--dataset", "fashion-mnist", "--data", digits_dir,
                               "--no-download", "--epochs", 1, "--layers", "784,8,10")
        assert status == 0, err
        assert "on fashion-mnist" in out


def test_threads_flag_is_accepted(capsys, digits_dir):
    status, out, err = run(capsys, "train", "--data", digits_dir, "--no-download", "--epochs", 1,
                           "--layers", "784,8,10", "--threads", 1)
    assert status == 0, err


def test_ci_tests_the_installed_package():
    """.ci/run sets FASTBP_EXPECT_INSTALLED_IN to its virtual environment: the tests
    must then import fastbp from there, not from the source tree."""
    venv = os.environ.get("FASTBP_EXPECT_INSTALLED_IN")
    if not venv:
        pytest.skip("only meaningful under .ci/run")
    assert os.path.realpath(fastbp.__file__).startswith(os.path.realpath(venv) + os.sep), fastbp.__file__


def test_train_epoch_matches_the_numpy_reference_on_pixel_data(monkeypatch):
    """What `fastbp train` asks of fit - an epoch of SGD with momentum over 784-pixel
    images with many exact zeros, as MNIST has - equals the reference's SGD steps
    over the same batches."""
    from fastbp import reference
    monkeypatch.setenv("FASTBP_NUM_THREADS", "1")
    rng = np.random.default_rng(7)
    X = rng.random((128, 784))
    X[rng.random(X.shape) < 0.8] = 0.0
    y = rng.integers(0, 10, 128)
    net = fastbp.Network([784, 64, 10], dtype="float64", seed=0)
    ref = reference.ReferenceNetwork([w.copy() for w in net.weights], [b.copy() for b in net.biases],
                                     net.activations, net.loss)
    order = np.random.default_rng(0).permutation(128)
    net.fit(X[order], y[order], lr=0.05, batch_size=32, epochs=1, momentum=0.9, shuffle=False)
    for start in range(0, 128, 32):
        rows = order[start:start + 32]
        ref.train_step(X[rows], y[rows], 0.05, momentum=0.9)
    for l in range(net.n_layers):
        np.testing.assert_allclose(net.weights[l], ref.weights[l], rtol=1e-9, atol=1e-12)
        np.testing.assert_allclose(net.biases[l], ref.biases[l], rtol=1e-9, atol=1e-12)


def test_profile_says_when_the_step_is_fused_and_when_it_is_not(capsys):
    # The step is fused while a batch is one chunk of rows (512): at 600 it is a phase
    # of its own.
    for batch, fused in ((8, True), (512, True), (600, False)):
        status, out, err = run(capsys, "profile", "--layers", "16,8,3", "--batch-size", batch,
                               "--steps", "5", "--threads", "1")
        assert status == 0, err
        assert (f"at batch {batch} the SGD step is fused" in out) == fused


def test_profile_times_real_images_of_the_dataset_asked_for(capsys, digits_dir, tmp_path):
    status, out, err = run(capsys, "profile", "--dataset", "mnist", "--data", digits_dir,
                           "--batch-size", "4", "--steps", "5", "--threads", "1")
    assert status == 0, err
    assert "mnist training images" in out.splitlines()[0]
    status, out, err = run(capsys, "profile", "--dataset", "fashion-mnist", "--data", tmp_path,
                           "--steps", "5")
    assert status == 2 and "fashion-mnist" in err   # not silently MNIST or random


def test_the_profile_is_taken_after_a_warm_up_and_over_enough_updates():
    X = np.random.default_rng(0).random((256, 16), dtype=np.float32)
    net = fastbp.Network([16, 8, 3], seed=0, n_threads=1)
    p = net.profile(X, np.arange(256) % 3, batch_size=4)
    assert p["steps"] >= 50 and p["fused"]
    assert net.profile(X, np.arange(256) % 3, batch_size=4, steps=7)["steps"] == 7


def test_bench_names_itself_as_it_was_run(capsys):
    from fastbp import bench
    installed = " ".join(bench.build_parser().format_help().split())
    assert "env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE fastbp bench" in installed
    assert "benchmarks/compare.py" not in installed
    tree = " ".join(bench.build_parser("python benchmarks/compare.py").format_help().split())
    assert "OPENBLAS_L2_SIZE python benchmarks/compare.py" in tree


def test_train_with_adam_uses_its_defaults_and_learns(capsys, digits_dir):
    status, out, err = run(capsys, "train", "--data", digits_dir, "--no-download", "--optimizer", "adam",
                           "--epochs", 4, "--layers", "784,32,10")
    assert status == 0, err
    assert "adam lr 0.001 betas (0.9, 0.999) eps 1e-08" in out.splitlines()[0]
    assert float(out.split("test accuracy ")[1].split()[0]) > 0.8


@pytest.mark.parametrize("optimizer, first_line", [
    ("adam_sklearn", "adam_sklearn lr 0.001 betas (0.9, 0.999) eps 1e-08"),
    ("lbfgs", "lbfgs (full batch) at most 8 iterations"),
])
def test_train_with_scikit_learns_optimizers_learns(capsys, digits_dir, optimizer, first_line):
    status, out, err = run(capsys, "train", "--data", digits_dir, "--no-download", "--optimizer",
                           optimizer, "--epochs", 8 if optimizer == "lbfgs" else 4,
                           "--layers", "784,32,10")
    assert status == 0, err
    assert first_line in out.splitlines()[0]
    assert float(out.split("test accuracy ")[1].split()[0]) > 0.8


@pytest.mark.parametrize("argv, message", [
    (["--beta1", "0.8"], "betas and eps are Adam's"),
    (["--optimizer", "adamw", "--momentum", "0.9"], "momentum and nesterov are SGD's"),
    (["--optimizer", "adam", "--beta2", "1.5"], "--beta2"),
    (["--optimizer", "adam", "--eps", "0"], "--eps"),
])
def test_adam_flags_that_do_not_fit_are_one_line(capsys, digits_dir, argv, message):
    status, out, err = run(capsys, "train", "--data", digits_dir, "--no-download", *argv)
    assert_one_line_error(status, err, message)


def test_train_checkpoint_and_resume_give_the_run_left_alone(capsys, digits_dir, tmp_path):
    common = ["train", "--data", digits_dir, "--no-download", "--layers", "784,16,10",
              "--optimizer", "adam"]
    ckpt, alone, resumed = tmp_path / "run.ckpt", tmp_path / "alone.fbp", tmp_path / "resumed.fbp"
    assert run(capsys, *common, "--epochs", 4, "--save", alone)[0] == 0
    status, out, err = run(capsys, *common, "--epochs", 2, "--checkpoint", ckpt,
                           "--checkpoint-every", 2)
    assert status == 0, err
    status, out, err = run(capsys, *common, "--epochs", 4, "--resume", ckpt, "--checkpoint", ckpt,
                           "--save", resumed)
    assert status == 0, err
    assert [line.split()[1] for line in out.splitlines() if line.startswith("epoch")] == ["3/4", "4/4"]
    for a, b in zip(fastbp.load(alone).weights, fastbp.load(resumed).weights):
        np.testing.assert_array_equal(a, b)
    status, out, err = run(capsys, *common, "--epochs", 4, "--resume", ckpt, "--lr", "0.01")
    assert_one_line_error(status, err, "is not this run: its arguments differ: lr=0.01")
    status, out, err = run(capsys, *common, "--resume", tmp_path / "none.ckpt")
    assert_one_line_error(status, err, "none.ckpt")
