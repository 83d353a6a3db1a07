/* The same kernels in float, compiled for AVX-512 (F, VL, BW, DQ) with 64-byte vectors
 * and the wider register tile of gemm.inc. Only this file gets those instructions
 * (through the target pragma, not a global -march flag), and fastbp.c calls it only
 * on a CPU, and under an operating system, that support them. */
#include "fastbp_isa.h"
#if FBP_BUILD_AVX512
#define FBP_REAL float
#define FBP_DT f32
#define FBP_ISA_NAME avx512
#define FBP_VBYTES 64
/* System headers first, so that only fastbp code is compiled for AVX-512. */
#include <immintrin.h>
#include <math.h>
#include <string.h>
#include <time.h>
FBP_TARGET_AVX512_BEGIN
#include "real.h"
#include "optim.inc"
#include "gemm.inc"
#include "layers.inc"
#include "small_batch.inc"
#include "threads.inc"
#include "sparse.inc"
#include "loss.inc"
#include "train.inc"
FBP_TARGET_AVX512_END
#endif
