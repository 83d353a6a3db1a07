"""Builds fastbp's one extension module, fastbp._core, from csrc/*.c and fastbp/_core.pyx.

No -march flag: the AVX2/FMA kernels are compiled by a target pragma inside
csrc/simd_avx2_*.c and chosen at run time, so the wheel runs on any x86-64 CPU.
"""
from glob import glob

import numpy as np
from Cython.Build import cythonize
from setuptools import Extension, setup

extension = Extension(
    "fastbp._core",
    sources=["fastbp/_core.pyx"] + sorted(glob("csrc/*.c")),
    include_dirs=["csrc", np.get_include()],
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_7_API_VERSION")],
    # gnu99: the kernels use GCC/Clang vector extensions; -O3 lets the compiler
    # unroll and contract a*b+c into FMA where the target has it.
    # -fopenmp: the threads of a training step (csrc/train.inc); without it the same
    # code runs in one thread.
    extra_compile_args=["-O3", "-std=gnu99", "-Wno-psabi", "-fopenmp"],
    extra_link_args=["-fopenmp"],
)

setup(ext_modules=cythonize([extension], language_level=3))
