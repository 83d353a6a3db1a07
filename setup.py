"""Builds fastbp's one extension module, fastbp._core, from csrc/*.c and fastbp/_core.pyx.

No -march flag: the AVX2/FMA kernels are compiled by a target pragma inside
csrc/simd_avx2_*.c and chosen at run time, so the wheel runs on any x86-64 CPU.
"""
import os
import tempfile
from glob import glob

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup
from setuptools.command.build_ext import build_ext
from setuptools.errors import CompileError, LinkError

OPENMP_FLAGS = ["-fopenmp"]
OPENMP_PROBE = "#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n"


class BuildExt(build_ext):
    """Adds -fopenmp only where the compiler and linker accept it: Apple's clang and a
    clang without libomp do not, and the same code then runs in one thread."""

    def build_extensions(self):
        if self._accepts(OPENMP_FLAGS):
            for ext in self.extensions:
                ext.extra_compile_args += OPENMP_FLAGS
                ext.extra_link_args += OPENMP_FLAGS
        else:
            print("fastbp: the compiler has no OpenMP; building single-threaded kernels")
        super().build_extensions()

    def _accepts(self, flags):
        with tempfile.TemporaryDirectory() as tmp:
            source = os.path.join(tmp, "omp_probe.c")
            with open(source, "w") as f:
                f.write(OPENMP_PROBE)
            try:
                objects = self.compiler.compile([source], output_dir=tmp, extra_postargs=flags)
                self.compiler.link_executable(objects, "omp_probe", output_dir=tmp,
                                              extra_postargs=flags)
            except (CompileError, LinkError):
                return False
        return True


extension = Extension(
    "fastbp._core",
    sources=["fastbp/_core.pyx"] + sorted(glob("csrc/*.c")),
    # The kernels' .inc and .h files: without them here, build_ext keeps a stale module
    # when only those changed.
    depends=sorted(glob("csrc/*.inc") + glob("csrc/*.h")),
    include_dirs=["csrc", np.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    # gnu99: the kernels use GCC/Clang vector extensions; -O3 lets the compiler
    # unroll and contract a*b+c into FMA where the target has it.
    # -fopenmp (added by BuildExt where the compiler has it): the threads of a training
    # step (csrc/train.inc); without it the same code runs in one thread.
    # -fno-math-errno: sqrt (Adam's) then compiles to the vector instruction; nothing
    # here reads errno.
    extra_compile_args=["-O3", "-std=gnu99", "-Wno-psabi", "-fno-math-errno"],
)

setup(ext_modules=cythonize([extension], language_level=3), cmdclass={"build_ext": BuildExt})
