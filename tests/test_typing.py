"""Type information: the stubs of the compiled module match it, mypy reads them, and
`mypy --strict` accepts the README's Python examples.

mypy sees fastbp the way a user with the installed package does: the package has a
py.typed marker, and errors inside fastbp's own modules are not the user's, so they
are silenced (--follow-imports=silent); the examples' own lines are checked strictly.
"""
import os
import re
import subprocess
import sys

import pytest

from conftest import REPO_ROOT

pytest.importorskip("mypy", reason="mypy is not installed (pip install mypy)")

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")
PYTHON_BLOCKS = re.findall(r"^```python\n(.*?)^```", README, flags=re.S | re.M)

# Names Cython adds to every module; they are not fastbp's API.
CYTHON_ARTIFACTS = ("fastbp._core.__reduce_cython__", "fastbp._core.__setstate_cython__",
                    "fastbp._core.__test__")


@pytest.fixture(scope="module")
def mypy_cache(tmp_path_factory):
    return tmp_path_factory.mktemp("mypy_cache")


def run_mypy(args, cwd, cache_dir, module="mypy"):
    """mypy (or mypy.stubtest) in a subprocess that finds fastbp in this tree."""
    env = dict(os.environ, MYPYPATH=str(REPO_ROOT))
    if module == "mypy":
        args = ["--strict", "--follow-imports=silent", "--cache-dir", str(cache_dir), *args]
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def test_package_has_py_typed_marker_and_core_stub():
    assert (REPO_ROOT / "fastbp" / "py.typed").is_file()
    assert (REPO_ROOT / "fastbp" / "_core.pyi").is_file()


def test_core_stub_matches_the_compiled_module(tmp_path, mypy_cache):
    allowlist = tmp_path / "allowlist.txt"
    allowlist.write_text("\n".join(CYTHON_ARTIFACTS) + "\n")
    result = run_mypy(["fastbp._core", "--allowlist", str(allowlist)], tmp_path, mypy_cache,
                      module="mypy.stubtest")
    assert result.returncode == 0, result.stdout + result.stderr


def test_core_stub_types_reach_the_caller(tmp_path, mypy_cache):
    good = tmp_path / "uses_core.py"
    good.write_text("from fastbp import _core\n\n"
                    "path: str = _core.set_isa(_core.get_isa())\n"
                    "compiler: str = _core.build_info()['compiler']\n")
    bad = tmp_path / "misuses_core.py"
    bad.write_text("from fastbp import _core\n\n"
                   "path: int = _core.get_isa()\n"
                   "_core.set_isa(2)\n")
    ok = run_mypy([good.name], tmp_path, mypy_cache)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong = run_mypy([bad.name], tmp_path, mypy_cache)
    assert wrong.returncode == 1, wrong.stdout + wrong.stderr
    assert "misuses_core.py:3: error: Incompatible types in assignment" in wrong.stdout
    assert "misuses_core.py:4: error: Argument 1 to \"set_isa\"" in wrong.stdout


def test_readme_python_examples_pass_mypy_strict(tmp_path, mypy_cache):
    assert len(PYTHON_BLOCKS) >= 4, "the README's ```python examples moved?"
    files = []
    for index, source in enumerate(PYTHON_BLOCKS, start=1):
        path = tmp_path / f"readme_example_{index}.py"
        path.write_text(source)
        files.append(path.name)
    result = run_mypy(files, tmp_path, mypy_cache)
    assert result.returncode == 0, (
        "mypy --strict rejects the README's examples (readme_example_N.py is the N-th "
        "```python block):\n" + result.stdout + result.stderr)
