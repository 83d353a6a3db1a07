"""Which compiled code path runs, with how many threads: `fastbp.info()` and the
FASTBP_CPU switch."""
import os
import platform
import warnings

import numpy as np

from . import _core
from ._version import __version__


CODE_PATHS = ("generic", "avx2", "avx512")


def select_code_path():
    """Honour $FASTBP_CPU at import: "generic", "avx2" or "avx512" forces that code
    path (a path this CPU cannot run warns and falls back to the best one below it);
    unset or "auto" picks the best this CPU supports."""
    wanted = os.environ.get("FASTBP_CPU", "auto").strip().lower() or "auto"
    if wanted == "auto":
        _core.set_isa("avx512")
    elif wanted in CODE_PATHS:
        got = _core.set_isa(wanted)
        if got != wanted:
            warnings.warn(f"FASTBP_CPU={wanted} but this CPU cannot run it; using {got}",
                          RuntimeWarning, stacklevel=2)
    else:
        warnings.warn(f"FASTBP_CPU={wanted!r} is not one of 'auto', 'generic', 'avx2', 'avx512'; "
                      "using auto", RuntimeWarning, stacklevel=2)
        _core.set_isa("avx512")


def info():
    """How fastbp runs here: version, code path, threads, build.

    >>> import fastbp
    >>> sorted(fastbp.info())[:3]
    ['code_path', 'compiler', 'cpu']
    """
    from .network import default_threads
    build = _core.build_info()
    return {
        "version": __version__,
        "code_path": _core.get_isa(),
        "cpu_has_avx2_fma": _core.cpu_has_avx2(),
        "cpu_has_avx512": _core.cpu_has_avx512(),
        "cpu": cpu_name(),
        "threads": default_threads() if _core.threads_usable() else 1,
        "threads_after_fork": "one thread: this process was forked after fastbp ran threads"
                              if not _core.threads_usable() else "all",
        "openmp": bool(build["openmp"]),
        "compiler": build["compiler"],
        "compile_flags": "-O3 -std=gnu99" + (" -fopenmp" if build["openmp"] else "")
                         + "; AVX2+FMA and AVX-512 kernels by target pragma, chosen at run time",
        "blas": "none: fastbp's own kernels (NumPy's BLAS is used only by the NumPy reference)",
        "numpy": np.__version__,
        "python": platform.python_version(),
    }


def cpu_name():
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def numpy_blas():
    """NumPy's BLAS, with its thread count when threadpoolctl is installed."""
    try:
        from threadpoolctl import threadpool_info  # type: ignore[import-untyped, import-not-found, unused-ignore]
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        pools = [p for p in threadpool_info() if p.get("user_api") == "blas"]
        if pools:
            return "; ".join(f"{p.get('internal_api')} {p.get('version')} "
                             f"({p.get('architecture')}, {p.get('num_threads')} threads)" for p in pools)
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{blas.get('name')} {blas.get('version')} (thread count unknown: no threadpoolctl)"
    except Exception:   # older numpy: show_config has no dict mode
        return "unknown (install threadpoolctl to see it)"
