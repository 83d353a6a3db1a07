"""The benchmark harness runs and reports what it claims; no timing is asserted.

Also checks that the PyTorch side of the comparison does the same maths as fastbp
(same loss on the same weights, same weights after one SGD step), so the comparison
is apples to apples.
"""
import json

import numpy as np
import pytest

import fastbp
from fastbp import bench

TINY = ["--quick", "--nets", "12-16-3", "10-8-8-4", "--batches", "1,5", "--repeats", "2",
        "--seconds", "0.002", "--no-sgemm"]


def run_bench(capsys, tmp_path, args):
    path = tmp_path / "bench.json"
    assert bench.main(args + ["--json", str(path)]) == 0
    return capsys.readouterr().out, json.loads(path.read_text())


def table_rows(text, header_start):
    """The data rows of the plain-text table whose header line starts with header_start."""
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    rows = []
    for line in lines[start + 2:]:
        if not line.strip() or line.startswith("("):
            break
        rows.append(line.split())
    return lines[start], rows


def test_quick_run_prints_one_row_per_net_and_batch(capsys, tmp_path):
    out, data = run_bench(capsys, tmp_path, TINY)
    header, rows = table_rows(out, "net ")
    for column in ("fastbp µs", "NumPy µs", "PyTorch µs", "fastbp samples/s", "fastbp GFLOP/s",
                   "speed-up vs NumPy", "speed-up vs PyTorch"):
        assert column in header
    assert [(r[0], r[1]) for r in rows] == [("12-16-3", "1"), ("12-16-3", "5"),
                                            ("10-8-8-4", "1"), ("10-8-8-4", "5")]
    assert [(r["net"], r["batch"]) for r in data["updates"]] == [
        ("12-16-3", 1), ("12-16-3", 5), ("10-8-8-4", 1), ("10-8-8-4", 5)]
    for row in data["updates"]:
        for tool in ("fastbp", "numpy"):
            res = row["tools"][tool]
            assert len(res["rounds_us"]) == 2 and res["us_per_update"] > 0
            assert res["samples_per_s"] == pytest.approx(row["batch"] / res["us_per_update"] * 1e6)
        assert row["speedup_vs_numpy"] == pytest.approx(bench.paired_speedup(
            row["tools"]["fastbp"]["rounds_us"], row["tools"]["numpy"]["rounds_us"]))
    assert data["machine"]["fastbp_isa"] == fastbp._core.get_isa()
    assert data["sgemm"] == []


def test_pytorch_column_says_not_installed_without_torch(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "import_torch", lambda: None)
    out, data = run_bench(capsys, tmp_path, ["--quick", "--nets", "12-16-3", "--batches", "1,2",
                                             "--repeats", "1", "--seconds", "0.002", "--no-sgemm"])
    _, rows = table_rows(out, "net ")
    assert len(rows) == 2
    assert "not installed" in out
    assert data["machine"]["torch"] == "not installed"
    assert all("torch" not in row["tools"] for row in data["updates"])
    assert all(row["speedup_vs_torch"] is None for row in data["updates"])


def test_markdown_table_has_a_row_per_config(capsys, tmp_path):
    out, _ = run_bench(capsys, tmp_path, TINY + ["--markdown", "--tools", "fastbp,numpy",
                                                 "--optimizers", "sgd"])
    lines = [line for line in out.splitlines() if line.startswith("| ")]
    assert lines[0].startswith("| net | batch | fastbp µs")
    assert len(lines) == 1 + 4    # header + 2 nets x 2 batches
    assert all(line.count("|") == lines[0].count("|") for line in lines)


def test_adam_rows_come_from_the_same_rounds_as_sgds(capsys, tmp_path):
    out, data = run_bench(capsys, tmp_path, TINY + ["--markdown"])
    assert data["optimizers"] == ["sgd", "adam"]
    tables = out.split("## Adam step")
    assert len(tables) == 2
    sgd_lines = [line for line in tables[0].splitlines() if line.startswith("| ")]
    adam_lines = [line for line in tables[1].splitlines() if line.startswith("| ")]
    assert len(sgd_lines) == len(adam_lines) == 1 + 4
    assert adam_lines[0] == sgd_lines[0][:-1] + "| fastbp Adam / SGD |"
    assert all(line.count("|") == adam_lines[0].count("|") for line in adam_lines)
    assert [(r["net"], r["batch"], r["optimizer"]) for r in data["adam_updates"]] == [
        (r["net"], r["batch"], "adam") for r in data["updates"]]
    for sgd, adam in zip(data["updates"], data["adam_updates"]):
        assert "fastbp_over_sgd" not in sgd
        assert adam["fastbp_over_sgd"] == pytest.approx(bench.paired_speedup(
            sgd["tools"]["fastbp"]["rounds_us"], adam["tools"]["fastbp"]["rounds_us"]))
        for tool in ("fastbp", "numpy", "torch"):
            assert len(adam["tools"][tool]["rounds_us"]) == 2
        assert adam["speedup_vs_torch"] == pytest.approx(bench.paired_speedup(
            adam["tools"]["fastbp"]["rounds_us"], adam["tools"]["torch"]["rounds_us"]))


def test_adam_alone_has_no_ratio_to_sgd(capsys, tmp_path):
    out, data = run_bench(capsys, tmp_path, TINY + ["--optimizers", "adam", "--tools", "fastbp,numpy"])
    assert "updates" not in data and len(data["adam_updates"]) == 4
    assert all("fastbp_over_sgd" not in row for row in data["adam_updates"])
    header, rows = table_rows(out, "net ")
    assert "Adam / SGD" not in header and len(rows) == 4


def test_sgemm_ceiling_is_reported(capsys, tmp_path):
    out, data = run_bench(capsys, tmp_path, ["--quick", "--nets", "6-4-2", "--batches", "1",
                                             "--repeats", "1", "--seconds", "0.002",
                                             "--tools", "fastbp"])
    assert [(s["m"], s["k"], s["n"]) for s in data["sgemm"]] == [(512, 784, 256)]
    assert data["sgemm"][0]["gflops"] > 0
    assert "sgemm ceiling" in out and "% sgemm" in out


def test_flop_count_follows_the_stated_convention():
    assert bench.update_flops((784, 256, 10), 1) == 4 * (784 * 256 + 256 * 10)
    assert bench.update_flops((784, 1024, 1024, 10), 32) == 4 * 32 * (784 * 1024 + 1024 * 1024 + 1024 * 10)
    assert "4·B·Σ" in bench.FLOP_CONVENTION and "no delta" in bench.FLOP_CONVENTION


@pytest.mark.parametrize("args, message", [
    (["--nets", "784-x-10"], "784-x-10"),
    (["--batches", "0"], "--batches"),
    (["--tools", "fastbp,jax"], "jax"),
    (["--optimizers", "sgd,lbfgs"], "lbfgs"),
    (["--seconds", "-1"], "--seconds"),
])
def test_bad_options_are_rejected_by_name(capsys, args, message):
    with pytest.raises(SystemExit) as exc:
        bench.main(args)
    assert exc.value.code == 2
    assert message in capsys.readouterr().err


def test_every_tool_starts_from_the_same_weights_and_learns():
    sizes = (6, 5, 3)
    net = fastbp.Network(sizes, seed=0)
    batches = bench.make_batches(sizes, 4)
    ref = bench.ReferenceNetwork(net.weights, net.biases, net.activations, net.loss)
    start = [w.copy() for w in net.weights]
    bench.make_update("fastbp", net, batches)()
    X, y = batches[0]
    ref.train_step(X, y, bench.LR)
    for l in range(net.n_layers):
        assert not np.array_equal(net.weights[l], start[l])
        np.testing.assert_allclose(net.weights[l], ref.weights[l], rtol=1e-5, atol=1e-6)


def test_every_tool_starts_from_the_same_weights_and_takes_the_same_adam_step():
    sizes = (6, 5, 3)
    net = fastbp.Network(sizes, seed=0)
    batches = bench.make_batches(sizes, 4)
    ref = bench.ReferenceNetwork(net.weights, net.biases, net.activations, net.loss)
    start = [w.copy() for w in net.weights]
    update = bench.make_update("fastbp", net, batches, optimizer="adam")
    X, y = batches[0]
    update()
    ref.adam_step(X, y, bench.LR)
    for l in range(net.n_layers):   # Adam's first step: lr for every weight with a gradient
        moved = np.abs(net.weights[l] - start[l])
        assert np.count_nonzero(moved) > moved.size // 2
        np.testing.assert_allclose(moved[moved > 0], bench.LR, rtol=1e-3)
        np.testing.assert_allclose(net.weights[l], ref.weights[l], rtol=1e-5, atol=1e-6)


def test_pytorch_adam_is_fastbps_adam():
    torch = pytest.importorskip("torch")
    sizes = (12, 16, 9, 4)
    net = fastbp.Network(sizes, seed=3)
    model = bench.torch_model(net)
    step = bench.torch_update_fn(model, lr=0.01, optimizer="adam")
    for X, y in bench.make_batches(sizes, 7, n_batches=3):
        torch_loss = step(torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))).item()
        assert torch_loss == pytest.approx(net.train_step(X, y, lr=0.01, optimizer="adam"), rel=1e-5)
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    for l, linear in enumerate(linears):
        np.testing.assert_allclose(linear.weight.detach().numpy().T, net.weights[l], rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(linear.bias.detach().numpy(), net.biases[l], rtol=1e-4, atol=1e-6)


def test_pytorch_model_computes_fastbp_loss_and_update():
    torch = pytest.importorskip("torch")
    sizes = (12, 16, 9, 4)
    net = fastbp.Network(sizes, seed=3)
    rng = np.random.default_rng(1)
    net.set_weights(net.weights, [rng.uniform(-0.1, 0.1, b.shape) for b in net.biases])
    model = bench.torch_model(net)
    step = bench.torch_update_fn(model, lr=0.1)
    X, y = bench.make_batches(sizes, 7)[0]

    torch_loss = step(torch.from_numpy(X), torch.from_numpy(y.astype(np.int64))).item()
    fastbp_loss = net.train_step(X, y, lr=0.1)   # the loss before the update, as torch's
    assert torch_loss == pytest.approx(fastbp_loss, rel=1e-5)

    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert len(linears) == net.n_layers
    for l, linear in enumerate(linears):
        np.testing.assert_allclose(linear.weight.detach().numpy().T, net.weights[l], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(linear.bias.detach().numpy(), net.biases[l], rtol=1e-5, atol=1e-6)


def load_scaling_script():
    import importlib.util
    from pathlib import Path
    path = Path(__file__).resolve().parent.parent / "benchmarks" / "scaling.py"
    spec = importlib.util.spec_from_file_location("fastbp_scaling_benchmark", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_scaling_sweeps_widths_and_depths_and_fits_slopes(capsys, tmp_path):
    scaling = load_scaling_script()
    path = tmp_path / "scaling.json"
    assert scaling.main(["--quick", "--widths", "4,8,16", "--depths", "1,2", "--depth-width", "6",
                         "--batch", "3", "--repeats", "1", "--seconds", "0.002",
                         "--json", str(path)]) == 0
    data = json.loads(path.read_text())
    assert [(r["sweep"], r["net"]) for r in data["rows"]] == [
        ("width", "784-4-10"), ("width", "784-8-10"), ("width", "784-16-10"),
        ("depth", "784-6-10"), ("depth", "784-6-6-10")]
    assert data["rows"][0]["params"] == 784 * 4 + 4 + 4 * 10 + 10
    assert set(data["fits"]) == {"width/fastbp", "width/numpy", "depth/fastbp", "depth/numpy"}
    assert all(np.isfinite(f["loglog_slope_vs_params"]) for f in data["fits"].values())
    assert "log-log slope" in capsys.readouterr().out


def test_loglog_slope_recovers_the_exponent():
    scaling = load_scaling_script()
    x = np.array([10.0, 100.0, 1000.0, 10000.0])
    assert scaling.loglog_slope(x, 3 * x) == pytest.approx(1.0)
    assert scaling.loglog_slope(x, 0.5 * x ** 2) == pytest.approx(2.0)


def test_epoch_comparison_says_when_pytorch_is_extrapolated():
    pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    X = rng.random((96, 784), dtype=np.float32)
    y = rng.integers(0, 10, 96).astype(np.int32)
    rows = bench.run_mnist(X, y, batches=[32, 8], repeats=1, torch_updates=5, n_threads=1)
    assert [(r["batch"], r["updates"], r["torch_updates_measured"]) for r in rows] == [(32, 3, 3), (8, 12, 5)]
    _, table = bench.mnist_table(rows, torch_missing=False)
    assert table[0][5] == "all 3 updates"
    assert table[1][5] == "5 of 12 updates, extrapolated"
    for row in rows:
        assert row["speedup_vs_torch"] == pytest.approx(
            bench.paired_speedup(row["fastbp_rounds_s"], row["torch_rounds_s"]))



def test_the_benchmark_suites_run_from_the_repository_root():
    # After the README's install command, from the root of the clone: the `pytest`
    # command (not `python -m pytest`, which would import the uncompiled ./fastbp).
    import shutil
    import subprocess
    import sys
    from pathlib import Path
    root = Path(__file__).resolve().parent.parent
    pytest_command = shutil.which("pytest", path=str(Path(sys.executable).parent)) or shutil.which("pytest")
    result = subprocess.run([pytest_command, "benchmarks/test_bench_update.py", "-q", "-p", "no:cacheprovider",
                             "--benchmark-disable", "-k", "784-128-10-b1-fastbp or 784-128-10-b1-numpy"],
                            cwd=root, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 passed" in result.stdout
