"""benchmarks/time_to_accuracy.py runs end to end in its smoke mode (--quick)."""
import json
import os
import subprocess
import sys

from conftest import REPO_ROOT, mnist_dir

SCRIPT = REPO_ROOT / "benchmarks" / "time_to_accuracy.py"


def test_quick_run_reports_both_tools_and_writes_json(tmp_path):
    data = mnist_dir()   # fails under CI when MNIST is missing, skips elsewhere
    env = dict(os.environ, FASTBP_DATA=data)
    out_json = tmp_path / "result.json"
    # cwd=tmp_path: import the installed fastbp, not a directory next to the script.
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--threads", "1",
                           "--json", str(out_json)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any(line.startswith("fastbp ") and "to 50.0%" in line for line in lines), proc.stdout
    assert any(line.startswith("PyTorch") and "to 50.0%" in line for line in lines) \
        or "torch is not installed" in proc.stdout, proc.stdout

    report = json.loads(out_json.read_text())
    assert report["samples"] == 5000 and report["target"] == 0.5
    fastbp_result = report["results"][0]
    assert fastbp_result["tool"] == "fastbp"
    assert 1 <= fastbp_result["epochs"] <= 2
    assert fastbp_result["final_accuracy"] >= 0.5, fastbp_result   # a working MLP gets ~88% here
    for result in report["results"]:
        assert [e["epoch"] for e in result["per_epoch"]] == list(range(1, result["epochs"] + 1))
        assert result["seconds_to_target"] == result["per_epoch"][-1]["seconds"]


def test_bad_threads_is_a_usage_error(tmp_path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--threads", "0"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 2
    assert "--threads" in proc.stderr
