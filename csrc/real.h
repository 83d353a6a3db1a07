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
#include <float.h>
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
/* The first n lanes of p (1 <= n <= VL), the other lanes 0; and the store of the
 * first n lanes of v: rows whose length is not a whole number of vectors, in vector
 * code, never touching memory past the row. A masked load or store where the compiler
 * says the instructions are there (GCC defines __AVX2__ and __AVX512F__ under the
 * builds' target pragmas, and so does a global -mavx2 for the generic build; Clang
 * under a pragma does not), else lane by lane. */
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif
INLINE vreal vload_first(const real *p, int n)
{
#if defined(__AVX512F__) && FBP_VBYTES == 64
    unsigned lanes = (1u << n) - 1;
    if (sizeof(real) == 4) return (vreal)_mm512_maskz_loadu_ps((__mmask16)lanes, p);
    return (vreal)_mm512_maskz_loadu_pd((__mmask8)lanes, p);
#elif defined(__AVX2__) && FBP_VBYTES == 32
    if (sizeof(real) == 4)
        return (vreal)_mm256_maskload_ps((const float *)p, _mm256_cmpgt_epi32(
            _mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)));
    return (vreal)_mm256_maskload_pd((const double *)p, _mm256_cmpgt_epi64(
        _mm256_set1_epi64x(n), _mm256_setr_epi64x(0, 1, 2, 3)));
#else
    if (n == VL) return vload(p);
    vreal v = vbroadcast(0);
    for (int k = 0; k < n; k++) v[k] = p[k];
    return v;
#endif
}
INLINE void vstore_first(real *p, vreal v, int n)
{
#if defined(__AVX512F__) && FBP_VBYTES == 64
    unsigned lanes = (1u << n) - 1;
    if (sizeof(real) == 4) _mm512_mask_storeu_ps(p, (__mmask16)lanes, (__m512)v);
    else _mm512_mask_storeu_pd(p, (__mmask8)lanes, (__m512d)v);
#elif defined(__AVX2__) && FBP_VBYTES == 32
    if (sizeof(real) == 4)
        _mm256_maskstore_ps((float *)p, _mm256_cmpgt_epi32(_mm256_set1_epi32(n),
                            _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7)), (__m256)v);
    else
        _mm256_maskstore_pd((double *)p, _mm256_cmpgt_epi64(_mm256_set1_epi64x(n),
                            _mm256_setr_epi64x(0, 1, 2, 3)), (__m256d)v);
#else
    memcpy(p, &v, sizeof(real) * (size_t)n);
#endif
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
