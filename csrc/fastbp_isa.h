/* fastbp_isa.h - which vector variants this compiler can build, and how.
 * GCC and Clang on x86-64 build the AVX2+FMA and the AVX-512 variants (each through
 * a target pragma over its own translation unit, never a global -march flag);
 * elsewhere only the generic build exists. */
#ifndef FASTBP_ISA_H
#define FASTBP_ISA_H
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FBP_BUILD_AVX2 1
#define FBP_BUILD_AVX512 1
#else
#define FBP_BUILD_AVX2 0
#define FBP_BUILD_AVX512 0
#endif

/* AVX-512 as Skylake-SP and later, Zen 4 and later have it: F for the 512-bit
 * registers, VL for compress on 256-bit index vectors, BW/DQ for the mask moves. */
#define FBP_AVX2_FEATURES "avx2,fma"
#define FBP_AVX512_FEATURES "avx2,fma,avx512f,avx512vl,avx512bw,avx512dq"

#if defined(__clang__)
#define FBP_TARGET_BEGIN_(features) \
    _Pragma(FBP_STR_(clang attribute push(__attribute__((target(features))), apply_to = function)))
#define FBP_TARGET_END _Pragma("clang attribute pop")
#else
#define FBP_TARGET_BEGIN_(features) _Pragma("GCC push_options") _Pragma(FBP_STR_(GCC target(features)))
#define FBP_TARGET_END _Pragma("GCC pop_options")
#endif
#define FBP_STR_(x) #x
#define FBP_TARGET_AVX2_BEGIN FBP_TARGET_BEGIN_(FBP_AVX2_FEATURES)
#define FBP_TARGET_AVX512_BEGIN FBP_TARGET_BEGIN_(FBP_AVX512_FEATURES)
#define FBP_TARGET_AVX2_END FBP_TARGET_END
#define FBP_TARGET_AVX512_END FBP_TARGET_END
#endif
