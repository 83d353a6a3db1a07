/* fastbp.c - the public entry points of fastbp.h. Each picks the build for the
 * network's dtype and this CPU (AVX-512, AVX2+FMA or generic) and calls it; the shuffle,
 * which does not depend on dtype, lives here too. */
#include "fastbp.h"
#include "fastbp_isa.h"
#include <pthread.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#if FBP_BUILD_AVX2 || FBP_BUILD_AVX512
#include <cpuid.h>
#endif

/* The entry points of one build (a dtype on a code path): impl_*.c and simd_*.c
 * define them as name_<dtype>_<isa> through EXPORT in real.h. */
typedef struct {
    size_t (*work_bytes)(const fbp_net *);
    long (*train_run)(const fbp_net *, fbp_train *, double);
    double (*train_batch)(const fbp_net *, fbp_train *, const void *, long, const int32_t *,
                          const void *, const void *);
    double (*gradients)(const fbp_net *, const void *, long, const int32_t *, const void *,
                        const void *);
    void (*predict)(const fbp_net *, const void *, long, void *);
    double (*evaluate)(const fbp_net *, const void *, long, const int32_t *, const void *, long *);
    int (*update)(const fbp_update_settings *, void *, const void *, void *, void *, long);
} build;

#define DECLARE_BUILD(dt, isa)                                                                 \
    size_t fbp_work_bytes_##dt##_##isa(const fbp_net *);                                       \
    long fbp_train_run_##dt##_##isa(const fbp_net *, fbp_train *, double);                      \
    double fbp_train_batch_##dt##_##isa(const fbp_net *, fbp_train *, const void *, long,       \
                                        const int32_t *, const void *, const void *);           \
    double fbp_gradients_##dt##_##isa(const fbp_net *, const void *, long, const int32_t *,     \
                                      const void *, const void *);                              \
    void fbp_predict_##dt##_##isa(const fbp_net *, const void *, long, void *);                 \
    double fbp_evaluate_##dt##_##isa(const fbp_net *, const void *, long, const int32_t *,      \
                                     const void *, long *);                                     \
    int fbp_update_##dt##_##isa(const fbp_update_settings *, void *, const void *, void *,     \
                                void *, long);
#define BUILD(dt, isa)                                                                    \
    {fbp_work_bytes_##dt##_##isa, fbp_train_run_##dt##_##isa, fbp_train_batch_##dt##_##isa, \
     fbp_gradients_##dt##_##isa, fbp_predict_##dt##_##isa, fbp_evaluate_##dt##_##isa,       \
     fbp_update_##dt##_##isa}

DECLARE_BUILD(f32, generic)
DECLARE_BUILD(f64, generic)
#if FBP_BUILD_AVX2
DECLARE_BUILD(f32, avx2)
DECLARE_BUILD(f64, avx2)
#endif
#if FBP_BUILD_AVX512
DECLARE_BUILD(f32, avx512)
DECLARE_BUILD(f64, avx512)
#endif

/* builds[isa][dtype]; a path this compiler cannot build falls back to generic. */
static const build builds[3][2] = {
    {BUILD(f32, generic), BUILD(f64, generic)},
#if FBP_BUILD_AVX2
    {BUILD(f32, avx2), BUILD(f64, avx2)},
#else
    {BUILD(f32, generic), BUILD(f64, generic)},
#endif
#if FBP_BUILD_AVX512
    {BUILD(f32, avx512), BUILD(f64, avx512)},
#else
    {BUILD(f32, generic), BUILD(f64, generic)},
#endif
};

int fbp_cpu_has_avx2(void)
{
#if FBP_BUILD_AVX2
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
    return 0;
#endif
}

/* AVX-512 needs the CPU's instructions (CPUID leaf 7: F, DQ, BW, VL) and the operating
 * system's consent to keep the wider state across context switches (XCR0 read by
 * XGETBV: SSE, AVX and the three AVX-512 state components, bits 1-2 and 5-7). */
int fbp_cpu_has_avx512(void)
{
#if FBP_BUILD_AVX512
    unsigned a, b, c, d;
    if (!fbp_cpu_has_avx2() || !__get_cpuid(1, &a, &b, &c, &d) || !(c & bit_OSXSAVE)) return 0;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d)) return 0;
    unsigned need = bit_AVX512F | bit_AVX512DQ | bit_AVX512BW | bit_AVX512VL;
    if ((b & need) != need) return 0;
    unsigned xcr0_lo, xcr0_hi;
    __asm__ volatile("xgetbv" : "=a"(xcr0_lo), "=d"(xcr0_hi) : "c"(0));
    return (xcr0_lo & 0xe6) == 0xe6;
#else
    return 0;
#endif
}

int fbp_test_fault_layer = -1;
int fbp_test_regroup_every = 0;

/* Threads after fork(). libgomp keeps its pool of threads from one parallel region to
 * the next; a forked child inherits the pool's bookkeeping but not its threads, and its
 * next region with more than one thread waits for them for ever. So a process forked
 * after this library ran such a region runs every call in one thread (one-thread
 * regions do not touch the pool). A process forked before that keeps its threads. */
static int ran_threads, forked_after_threads;

static void at_fork_in_child(void) { forked_after_threads = ran_threads; }

__attribute__((constructor)) static void watch_forks(void) { pthread_atfork(NULL, NULL, at_fork_in_child); }

int fbp_threads_usable(void) { return !forked_after_threads; }

int fbp_claim_threads(int n)
{
    if (n <= 1 || forked_after_threads) return 1;
    __atomic_store_n(&ran_threads, 1, __ATOMIC_RELAXED);
    return n;
}

static int isa = -1;  /* -1: not chosen yet */

static int best_isa(void)
{
    return fbp_cpu_has_avx512() ? FBP_ISA_AVX512 : fbp_cpu_has_avx2() ? FBP_ISA_AVX2 : FBP_ISA_GENERIC;
}

int fbp_get_isa(void)
{
    if (isa < 0) isa = best_isa();
    return isa;
}

/* The requested path if this CPU has it, else the best one below it. */
int fbp_set_isa(int requested)
{
    if (requested == FBP_ISA_AVX512 && fbp_cpu_has_avx512()) isa = FBP_ISA_AVX512;
    else if (requested >= FBP_ISA_AVX2 && fbp_cpu_has_avx2()) isa = FBP_ISA_AVX2;
    else isa = FBP_ISA_GENERIC;
    return isa;
}

static const build *build_for(int dtype)
{
    return &builds[fbp_get_isa()][dtype == FBP_FLOAT32 ? 0 : 1];
}

/* The most any code path this CPU can run needs, so that a network's work buffer stays
 * large enough when the path is changed after it was allocated (the avx512 build packs
 * wider strips). Only those paths are asked: a build for an instruction set the CPU
 * lacks may use its instructions anywhere, its size function included. */
size_t fbp_work_bytes(const fbp_net *net)
{
    size_t most = 0;
    int best = best_isa();
    for (int i = 0; i <= best; i++) {
        size_t bytes = builds[i][net->dtype == FBP_FLOAT32 ? 0 : 1].work_bytes(net);
        if (bytes > most) most = bytes;
    }
    return most;
}

long fbp_train_run(const fbp_net *net, fbp_train *t, double max_seconds)
{
    return build_for(net->dtype)->train_run(net, t, max_seconds);
}

double fbp_train_batch(const fbp_net *net, fbp_train *t, const void *X, long n,
                       const int32_t *labels, const void *targets, const void *weights)
{
    return build_for(net->dtype)->train_batch(net, t, X, n, labels, targets, weights);
}

double fbp_gradients(const fbp_net *net, const void *X, long n, const int32_t *labels,
                     const void *targets, const void *weights)
{
    return build_for(net->dtype)->gradients(net, X, n, labels, targets, weights);
}

void fbp_predict(const fbp_net *net, const void *X, long n, void *out)
{
    build_for(net->dtype)->predict(net, X, n, out);
}

double fbp_evaluate(const fbp_net *net, const void *X, long n, const int32_t *labels,
                    const void *targets, long *n_correct)
{
    return build_for(net->dtype)->evaluate(net, X, n, labels, targets, n_correct);
}

int fbp_update(int dtype, const fbp_update_settings *s, void *param, const void *grad,
               void *state0, void *state1, long n)
{
    return build_for(dtype)->update(s, param, grad, state0, state1, n);
}

const char *fbp_compiler(void)
{
#if defined(__clang__)
    return "clang " __clang_version__;
#elif defined(__GNUC__)
    return "gcc " __VERSION__;
#else
    return "unknown";
#endif
}

int fbp_openmp(void)
{
#ifdef _OPENMP
    return _OPENMP;
#else
    return 0;
#endif
}

/* NaN and inf are the values whose exponent bits are all ones; testing the bits with
 * integer operations lets the compiler vectorize the scan (a float comparison
 * reduction it may not reorder). Blocks keep the early exit cheap. */
#define FIRST_NONFINITE(UINT, MASK)                                          \
    do {                                                                     \
        const UINT *bits = (const UINT *)x;                                  \
        for (long start = lo; start < hi; start += 4096) {                   \
            long end = hi - start < 4096 ? hi : start + 4096;                \
            UINT any = 0;                                                    \
            for (long i = start; i < end; i++) any |= (UINT)((bits[i] & MASK) == MASK); \
            if (any)                                                         \
                for (long i = start; i < end; i++)                           \
                    if ((bits[i] & MASK) == MASK) return i;                  \
        }                                                                    \
        return -1;                                                           \
    } while (0)

static long first_nonfinite_in(int dtype, const void *x, long lo, long hi)
{
    if (dtype == FBP_FLOAT32) FIRST_NONFINITE(uint32_t, 0x7f800000u);
    FIRST_NONFINITE(uint64_t, 0x7ff0000000000000ull);
}

/* A data set is scanned before each fit: one core reads MNIST's 188 MB in about 12
 * ms, two in about 7. Below this many values one thread is quicker than waking more. */
#define SCAN_SPLIT_VALUES (1L << 20)

long fbp_first_nonfinite(int dtype, const void *x, long n, int n_threads)
{
    if (n_threads <= 1 || n < SCAN_SPLIT_VALUES) return first_nonfinite_in(dtype, x, 0, n);
    n_threads = fbp_claim_threads(n_threads > 64 ? 64 : n_threads);  /* 64: as threads_of */
    long first = -1;
#ifdef _OPENMP
#pragma omp parallel num_threads(n_threads)
#endif
    {
        int tid = 0, nth = 1;
#ifdef _OPENMP
        tid = omp_get_thread_num();
        nth = omp_get_num_threads();
#endif
        long found = first_nonfinite_in(dtype, x, n * tid / nth, n * (tid + 1) / nth);
#ifdef _OPENMP
#pragma omp critical
#endif
        if (found >= 0 && (first < 0 || found < first)) first = found;
    }
    return first;
}

#define FIRST_BAD_LABEL(UINT)                                                \
    do {                                                                     \
        const UINT *u = (const UINT *)labels; /* negative labels wrap to huge */ \
        for (long start = 0; start < n; start += 4096) {                     \
            long end = n - start < 4096 ? n : start + 4096;                  \
            int any = 0;                                                     \
            for (long i = start; i < end; i++) any |= u[i] >= (UINT)n_classes; \
            if (any)                                                         \
                for (long i = start; i < end; i++)                           \
                    if (u[i] >= (UINT)n_classes) return i;                   \
        }                                                                    \
        return -1;                                                           \
    } while (0)

long fbp_first_bad_label(const void *labels, int is_int64, long n, int n_classes)
{
    if (is_int64) FIRST_BAD_LABEL(uint64_t);
    FIRST_BAD_LABEL(uint32_t);
}

/* splitmix64: small, fast, and the same sequence on every platform. */
static uint64_t next_random(uint64_t *state)
{
    uint64_t z = (*state += 0x9E3779B97F4A7C15ULL);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ULL;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBULL;
    return z ^ (z >> 31);
}

void fbp_epoch_begin(fbp_train *t)
{
    for (long i = 0; i < t->n_samples; i++) t->order[i] = i;
    if (t->shuffle) /* Fisher-Yates; the modulo bias is below 2^-30 for any real n */
        for (long i = t->n_samples - 1; i > 0; i--) {
            long j = (long)(next_random(&t->rng) % (uint64_t)(i + 1));
            int64_t tmp = t->order[i];
            t->order[i] = t->order[j];
            t->order[j] = tmp;
        }
    t->pos = 0;
    t->loss_sum = 0;
    t->n_seen = 0;
    t->weight_seen = 0;
    t->step_rows = 0;
    t->step_loss = 0;
}
