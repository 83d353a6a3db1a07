"""The README's examples run, its test command is what CI runs, and the flags and
files it mentions exist."""
import importlib.util
import os
import re
import shutil
import subprocess
import sys

import pytest

from conftest import REPO_ROOT, mnist_dir
from fastbp import cli

README = (REPO_ROOT / "README.md").read_text(encoding="utf-8")


def code_blocks(language):
    return re.findall(rf"^```{language}\n(.*?)^```", README, flags=re.S | re.M)


PYTHON_BLOCKS = code_blocks("python")


def test_readme_has_python_examples():
    assert len(PYTHON_BLOCKS) >= 4


@pytest.mark.parametrize("index", range(len(PYTHON_BLOCKS)))
def test_readme_python_example_runs(index, tmp_path, monkeypatch):
    source = PYTHON_BLOCKS[index]
    if "fastbp.plot" in source and importlib.util.find_spec("matplotlib") is None:
        pytest.skip("this example draws with matplotlib (pip install fastbp[plot])")
    for module in ("onnxruntime", "torch", "sklearn"):   # Deploying: the test extra and CI have them
        if f"import {module}" in source or f"from {module}" in source or \
                (module == "sklearn" and "to_sklearn" in source):
            if importlib.util.find_spec(module) is None and not os.environ.get("CI"):
                pytest.skip(f"this example needs {module}")
    if "load_mnist" in source:
        monkeypatch.setenv("FASTBP_DATA", mnist_dir())   # fails under CI if MNIST is missing
    monkeypatch.chdir(tmp_path)                           # examples may write files
    exec(compile(source, f"README.md python block {index + 1}", "exec"), {"__name__": "__readme__"})


def test_readme_test_command_is_what_ci_runs():
    heading = README.index("Install and run the tests")
    block = code_blocks("bash")
    command = next(b for b in block if README.index(b) > heading)
    ci_lines = {line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()}
    for line in command.strip().splitlines():
        assert line.strip() in ci_lines, f"README's {line!r} is not a line of .ci/run"
    assert any(line.startswith("FASTBP_CPU=generic pytest tests") for line in ci_lines)


def test_readme_train_command_comes_first_and_ci_runs_it():
    first = code_blocks("bash")[0]
    assert "pip install ." in first and "fastbp train" in first
    ci_lines = {line.strip() for line in (REPO_ROOT / ".ci" / "run").read_text().splitlines()}
    assert first.strip() in ci_lines, "README's first command is not a line of .ci/run"


def test_flags_in_readme_exist():
    parser = cli.build_parser()
    subparsers = next(a for a in parser._actions if a.dest == "command").choices
    known = {opt for sub in subparsers.values() for action in sub._actions for opt in action.option_strings}
    commands = next(b for b in code_blocks("bash") if "fastbp evaluate" in b)
    mentioned = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", commands))
    mentioned |= set(re.findall(r"`(--[a-z][a-z0-9-]*)", README))
    assert mentioned, "no flags found: the README's command-line section moved?"
    assert mentioned - known == set()


def test_recipe_in_readme_matches_the_code():
    text = " ".join(README[README.index("`--recipe fast98` stands for"):].split("and reaches")[0].split())
    for key, value in cli.RECIPES["fast98"].items():
        assert f"--{key.replace('_', '-')} {value}" in text, key


def test_linked_docs_exist():
    links = re.findall(r"\]\(((?:docs/)[^)#]+)\)", README)
    assert links
    for link in links:
        assert (REPO_ROOT / link).is_file(), link


def test_importing_an_uncompiled_source_tree_says_what_happened_and_what_to_do(tmp_path):
    # What `python -m fastbp train` from the root of a fresh clone meets: ./fastbp first
    # on sys.path, with its sources but no compiled core.
    tree = tmp_path / "fastbp"
    tree.mkdir()
    for source in (REPO_ROOT / "fastbp").iterdir():
        if source.suffix in (".py", ".pyx", ".pyi"):
            shutil.copy(source, tree / source.name)
    result = subprocess.run([sys.executable, "-c", "import fastbp"], cwd=tmp_path,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: fastbp was imported from its source tree")
    assert "`fastbp` command" in last and "pip install -e ." in last
