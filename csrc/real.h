/* real.h - what one instantiation of the kernels sees.
 *
 * The kernels (the .inc files: see README.md beside this file) are written once over the
 * type `real` and a vector `vreal` of FBP_VBYTES bytes, and compiled six times: float
 * and double, each for the portable x86-64/any-CPU baseline, for AVX2+FMA and for
 * AVX-512 (see impl_*.c and simd_*.c). Before including this file an instantiation
 * defines
 *   FBP_REAL      float or double
 *   FBP_DT        f32 or f64
 *   FBP_ISA_NAME  generic, avx2 or avx512
 *   FBP_VBYTES    bytes of one vector: 64 for avx512, else 32 (the default)
 */
#include <math.h>
#include <string.h>
#include <time.h>
#include "fastbp.h"

typedef FBP_REAL real;

#define FBP_CAT_(a, b, c) a##_##b##_##c
#define FBP_CAT(a, b, c) FBP_CAT_(a, b, c)
/* EXPORT(fbp_train_run) -> fbp_train_run_f32_avx2: the only non-static names. */
#define EXPORT(name) FBP_CAT(name, FBP_DT, FBP_ISA_NAME)

/* A vector of FBP_VBYTES bytes through GCC/Clang vector extensions: one ZMM register
 * on the avx512 build (16 floats or 8 doubles), one YMM register on the avx2 build and
 * two SSE registers on the generic one (8 floats or 4 doubles). Loads and stores go
 * through memcpy, so no alignment is assumed. */
#ifndef FBP_VBYTES
#define FBP_VBYTES 32
#endif
#define VL ((int)(FBP_VBYTES / sizeof(real)))
typedef real vreal __attribute__((vector_size(FBP_VBYTES)));
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wpsabi" /* the helpers below are always inlined */
#endif
#define INLINE static inline __attribute__((always_inline))

INLINE vreal vload(const real *p) { vreal v; memcpy(&v, p, sizeof v); return v; }
INLINE void vstore(real *p, vreal v) { memcpy(p, &v, sizeof v); }
/* x in every lane. Written as x - 0 (exactly x for every x, -0 included), which gcc
 * compiles to one broadcast; a loop over the lanes became 8 inserts in some loops. */
INLINE vreal vbroadcast(real x) { return x - (vreal){0}; }
/* max(x, 0) lane by lane, NaN -> 0 (as the scalar relu): a comparison gives an
 * all-ones/all-zeros integer mask, and-ed with x's bits. */
INLINE vreal vrelu(vreal x)
{
    __typeof__(x > x) mask = x > vbroadcast(0);
    return (vreal)((__typeof__(mask))x & mask);
}
INLINE real vsum(vreal v) { real s = 0; for (int i = 0; i < VL; i++) s += v[i]; return s; }
/* 1 if every lane of x is 0 (or -0): its bits, sign bits masked off, or-ed together
 * as 64-bit lanes (cheaper than testing the lanes one by one). */
INLINE int vall_zero(vreal x)
{
    typedef unsigned long long u64v __attribute__((vector_size(FBP_VBYTES)));
    u64v bits;
    memcpy(&bits, &x, sizeof bits);
    bits &= sizeof(real) == 4 ? 0x7fffffff7fffffffULL : 0x7fffffffffffffffULL;
    unsigned long long any = 0;
    for (int k = 0; k < FBP_VBYTES / 8; k++) any |= bits[k];
    return any == 0;
}

static inline double seconds_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

#define FBP_MAX_LAYERS 64

/* Math in the precision of real (expf for float, exp for double). */
#define rexp(x) (sizeof(real) == 4 ? (real)expf((float)(x)) : (real)exp((double)(x)))
#define rlog(x) (sizeof(real) == 4 ? (real)logf((float)(x)) : (real)log((double)(x)))
#define rlog1p(x) (sizeof(real) == 4 ? (real)log1pf((float)(x)) : (real)log1p((double)(x)))
#define rtanh(x) (sizeof(real) == 4 ? (real)tanhf((float)(x)) : (real)tanh((double)(x)))
