"""The example scripts and the backprop-vs-naive benchmark: the quadratic's exact
trajectories, and each script run end to end in its --quick smoke mode."""
import importlib.util
import os
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, mnist_dir

SCRIPT_TIMEOUT = 300   # seconds; a smoke run takes a few, more means it hangs


def load_script(relative_path):
    """Import a script (not a package module) by its path in the repository."""
    path = REPO_ROOT / relative_path
    spec = importlib.util.spec_from_file_location(path.stem, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run_script(relative_path, *args, env=None):
    """Run a script with this interpreter; fails the test with its output unless it
    exits 0. Returns its stdout."""
    environment = dict(os.environ, **(env or {}))
    result = subprocess.run([sys.executable, str(REPO_ROOT / relative_path), *args],
                            cwd=REPO_ROOT, env=environment, capture_output=True, text=True,
                            timeout=SCRIPT_TIMEOUT)
    assert result.returncode == 0, (f"{relative_path} {' '.join(args)} exited "
                                    f"{result.returncode}\n{result.stdout}\n{result.stderr}")
    return result.stdout


@pytest.fixture(scope="module")
def gd_quadratic():
    return load_script("examples/gd_quadratic.py")


def test_lr_one_oscillates_exactly_between_minus_three_and_three(gd_quadratic):
    xs = gd_quadratic.trajectory(1.0, 50)
    assert xs == [-3.0, 3.0] * 25 + [-3.0]


def test_small_lr_converges_and_large_lr_diverges(gd_quadratic):
    converging = gd_quadratic.trajectory(0.1, 60)
    assert converging[0] == -3.0
    assert all(abs(b) < abs(a) for a, b in zip(converging, converging[1:]))
    assert abs(converging[-1]) < 1e-5
    assert converging[1] == pytest.approx(-3.0 * 0.8)
    diverging = gd_quadratic.trajectory(1.1, 30)
    assert all(abs(b) > abs(a) for a, b in zip(diverging, diverging[1:]))
    assert abs(diverging[-1]) == pytest.approx(3.0 * 1.2 ** 30, rel=1e-9)
    assert gd_quadratic.trajectory(0.5, 1) == [-3.0, 0.0]


def test_trajectory_starts_where_asked_and_checks_steps(gd_quadratic):
    assert gd_quadratic.trajectory(0.25, 2, x0=4.0) == [4.0, 2.0, 1.0]
    with pytest.raises(ValueError, match="steps"):
        gd_quadratic.trajectory(0.1, -1)
    with pytest.raises(ValueError, match="lr"):
        gd_quadratic.trajectory(-0.1, 3)


def test_gd_quadratic_script_runs(tmp_path):
    out = run_script("examples/gd_quadratic.py", "--quick")
    assert "γ = 1: x <- -1·x, oscillates" in out
    assert "-3, 3, -3, 3, -3, 3" in out


def test_gd_quadratic_plot_is_written(tmp_path):
    pytest.importorskip("matplotlib")
    target = tmp_path / "quadratic.png"
    run_script("examples/gd_quadratic.py", "--quick", "--plot", str(target))
    assert target.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_plotting_without_matplotlib_says_what_to_install(tmp_path):
    # sys.modules[name] = None makes `import name` raise ImportError
    code = ("import sys, runpy; sys.modules['matplotlib'] = None; "
            f"sys.argv = ['gd_quadratic.py', '--quick', '--plot', {str(tmp_path / 'x.png')!r}]; "
            f"runpy.run_path({str(REPO_ROOT / 'examples' / 'gd_quadratic.py')!r}, run_name='__main__')")
    # cwd outside the source tree: `python -c` puts the cwd on sys.path, and the
    # source tree's fastbp has no compiled core in a clean clone
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=SCRIPT_TIMEOUT, cwd=tmp_path)
    assert result.returncode != 0
    assert "pip install matplotlib" in result.stderr
    assert "oscillates" in result.stdout      # the trajectories were still printed


def test_bp_vs_naive_benchmark_runs_and_the_two_gradients_agree():
    out = run_script("benchmarks/bp_vs_naive.py", "--quick")
    rows = [line.split() for line in out.splitlines() if line[:1].isdigit()]
    assert len(rows) == 6                  # 3 depths + 3 widths
    for row in rows:
        # after "full"/"sampled": naive/(2P·fwd), speed-up, max |naive - bp| (full only), claim
        marker = row.index("full") if "full" in row else row.index("sampled")
        assert float(row[marker + 2]) > 1              # backprop is faster
        if row[marker] == "full":
            assert float(row[marker + 3]) < 1e-6       # the two gradients agree (float64)
    depth_rows = rows[:3]
    assert [float(r[-1]) for r in depth_rows] == pytest.approx([2.72, 3.69, 13.6], rel=1e-2)
    assert "growth (log-log least-squares slopes)" in out


def test_gd_vs_sgd_example_runs_on_mnist():
    data = mnist_dir()          # fails under CI when the data is missing, skips elsewhere
    out = run_script("examples/gd_vs_sgd.py", "--quick", env={"FASTBP_DATA": data})
    table = [line for line in out.splitlines() if line.startswith("| ") and "method" not in line]
    methods = [line.split("|")[1].strip() for line in table]
    assert methods == ["gd", "sgd b=1", "sgd b=16", "sgd b=128"]
    for line in table:
        cells = [c.strip() for c in line.split("|")[1:-1]]
        assert int(cells[2]) >= 1                        # updates made within the budget
        assert 0.0 <= float(cells[6].split()[0]) <= 1.0  # test accuracy
    # one sample per update makes many more updates than one pass of the data per update
    updates = {m: int(line.split("|")[3]) for m, line in zip(methods, table)}
    assert updates["sgd b=1"] > updates["gd"]
