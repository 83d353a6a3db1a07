/* fastbp_isa.h - whether this compiler can build the AVX2+FMA variant, and how.
 * GCC and Clang on x86-64 can; elsewhere only the generic build exists. */
#ifndef FASTBP_ISA_H
#define FASTBP_ISA_H
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define FBP_BUILD_AVX2 1
#else
#define FBP_BUILD_AVX2 0
#endif

#if defined(__clang__)
#define FBP_TARGET_AVX2_BEGIN \
    _Pragma("clang attribute push(__attribute__((target(\"avx2,fma\"))), apply_to = function)")
#define FBP_TARGET_AVX2_END _Pragma("clang attribute pop")
#else
#define FBP_TARGET_AVX2_BEGIN _Pragma("GCC push_options") _Pragma("GCC target(\"avx2,fma\")")
#define FBP_TARGET_AVX2_END _Pragma("GCC pop_options")
#endif
#endif
