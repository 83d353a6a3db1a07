/* fastbp.h - the C API of fastbp: one header, every symbol prefixed fbp_.
 *
 * A network is a stack of dense layers. Layer l maps activations A_l (B, sizes[l])
 * to A_{l+1} (B, sizes[l+1]) through W_l (sizes[l], sizes[l+1]) and b_l (sizes[l+1]).
 * All arrays are row-major and owned by the caller (Python): C allocates nothing and
 * frees nothing. Every array of one network has the same dtype
 * (float32 or float64), chosen by fbp_net.dtype; the implementation for that dtype
 * and for the best instruction set of this CPU is selected at run time.
 */
#ifndef FASTBP_H
#define FASTBP_H

#include <stdint.h>
#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

enum fbp_dtype { FBP_FLOAT32 = 0, FBP_FLOAT64 = 1 };

/* Hidden activations; the output layer uses FBP_IDENTITY and the loss adds softmax. */
enum fbp_activation { FBP_IDENTITY = 0, FBP_RELU = 1, FBP_SIGMOID = 2, FBP_TANH = 3 };

/* Each loss is a per-sample loss C_i, averaged over a batch (weighted by the sample
 * weights when there are some); csrc/loss.inc has the formulas.
 * Cross-entropy: softmax output, integer labels.
 * MSE: identity output, the mean over the outputs of (yhat - y)^2.
 * Binary cross-entropy: a sigmoid per output, targets in [0, 1], summed over outputs.
 * Poisson: exp outputs (the predicted means), targets >= 0, e^z - y z summed over outputs. */
enum fbp_loss { FBP_CROSS_ENTROPY = 0, FBP_MSE = 1, FBP_BINARY_CROSS_ENTROPY = 2, FBP_POISSON = 3 };

enum fbp_status {
    FBP_OK = 0,
    FBP_NONFINITE_LOSS = 1,    /* a batch gave a NaN/inf loss; no update was applied */
    FBP_NONFINITE_WEIGHTS = 2  /* an update overflowed to NaN/inf */
};

/* What turns a gradient into an update (csrc/optim.inc has the formulas). SGD keeps
 * its momentum velocity in state[0] (none without momentum); Adam, AdamW and
 * scikit-learn's Adam keep the moments m and v in state[0] and state[1].
 * FBP_RULE_TEST_RMS, testing only, is a rule of two state arrays that no kernel knows
 * about. */
enum fbp_rule { FBP_RULE_SGD = 0, FBP_RULE_TEST_RMS = 1, FBP_RULE_ADAM = 2, FBP_RULE_ADAMW = 3,
                FBP_RULE_ADAM_SKLEARN = 4 };

/* Code paths, for fbp_set_isa / fbp_get_isa. */
enum fbp_isa { FBP_ISA_GENERIC = 0, FBP_ISA_AVX2 = 1, FBP_ISA_AVX512 = 2 };

/* Time spent inside C per phase, in seconds, accumulated while fbp_net.profile != NULL. */
typedef struct {
    double gather, forward, backward, update;
    long steps;
} fbp_profile;

typedef struct {
    int dtype;               /* enum fbp_dtype */
    int n_layers;            /* L */
    const int *sizes;        /* (L + 1,) */
    const int *activations;  /* (L,) enum fbp_activation; the last is FBP_IDENTITY */
    int loss;                /* enum fbp_loss */
    /* The parameters, their gradients and the update rule's state are flat arrays of
     * n_params values with one layout (llm.c's params_memory/grads_memory): layer l's
     * W_l (sizes[l], sizes[l+1]) starts at w_offset[l] and its b_l (sizes[l+1],) at
     * b_offset[l]. Every weight comes before every bias, in [0, n_weights), so a rule
     * that decays weights only is still one pass over each part. The values between
     * layers (padding that starts each layer on a cache line) are zero in every array
     * and stay zero: a zero gradient at a zero parameter with zero state is no step. */
    long n_params, n_weights;
    const long *w_offset, *b_offset;  /* (L,) each */
    void *params;            /* (n_params,) */
    void *grads;             /* (n_params,) */
    int rule;                /* enum fbp_rule */
    void *state[2];          /* (n_params,) each, or NULL where the rule keeps none (SGD:
                                state[0] the momentum velocity, NULL without momentum) */
    void *work;              /* fbp_work_bytes(net) bytes: activations and deltas */
    int max_batch;           /* rows processed at once; larger batches go in chunks */
    int n_threads;           /* threads that share each layer's products (>= 1) */
    fbp_profile *profile;    /* NULL, or where to accumulate phase times */
} fbp_net;

/* The training state of one fit: the data, the optimizer settings and where the
 * epoch is. Python fills it once per fit; C advances it. */
typedef struct {
    const void *X;            /* (n_samples, sizes[0]) */
    long n_samples;
    const int32_t *labels;    /* (n_samples,) cross-entropy labels, or NULL */
    const void *targets;      /* (n_samples, sizes[L]) the other losses' targets, or NULL */
    const void *weights;      /* (n_samples,) sample weights >= 0, or NULL (all 1): a batch's
                                 loss is Σ s_i C_i / Σ s_i over its samples */
    int64_t *order;           /* (n_samples,) sample order of the epoch, written by C */
    long batch_size;          /* samples per update; n_samples means full-batch GD */
    int shuffle;              /* reshuffle order at the start of each epoch */
    uint64_t rng;             /* state of the shuffle generator (splitmix64) */
    double lr;                /* learning rate of this epoch, before per-step decay */
    double decay;             /* invscaling: lr_t = lr / (1 + decay * step) */
    double momentum, weight_decay;
    int decay_on_sum;         /* 1: weight_decay is an L2 penalty on a batch's summed loss
                                 (scikit-learn's alpha), so each step's decay is weight_decay
                                 / Σ s_i over its batch (its size without weights) */
    int nesterov;
    double beta1, beta2, eps; /* Adam's and AdamW's */
    long rule_steps;          /* updates the rule's state had seen before this fit (Adam's
                                 bias correction counts from there) */
    long step;                /* updates done so far, over all epochs */
    long max_steps;           /* stop once step reaches this (0: no limit) */
    long pos;                 /* next position in order within the epoch */
    double loss_sum;          /* sum of per-sample losses over the epoch so far (weighted) */
    long n_seen;              /* samples seen in the epoch so far */
    double weight_seen;       /* and their summed weights (n_seen without weights) */
    long step_rows;           /* a step of several chunks (more than max_batch samples) that
                                 fbp_train_run paused at its time limit: the rows of it whose
                                 gradients net->grads holds (0: no step under way) */
    double step_loss;         /* and their summed (weighted) loss */
    double last_lr;           /* learning rate of the last update */
    int status;               /* enum fbp_status */
    double pacing[4];         /* C's own between fbp_train_run calls (the thread count
                                 its busy-machine watch chose): all zero before a fit */
} fbp_train;

/* Bytes of fbp_net.work needed for the sizes, max_batch and n_threads in net. */
size_t fbp_work_bytes(const fbp_net *net);

/* Starts an epoch: (re)fills t->order, shuffled when t->shuffle, and resets the
 * epoch's counters. */
void fbp_epoch_begin(fbp_train *t);

/* Runs updates of the current epoch until it ends, a non-finite value appears
 * (t->status) or about max_seconds have passed (so the caller can look for
 * Ctrl-C). Returns the number of updates done; the epoch is over when
 * t->pos == t->n_samples. Each update is complete or not started: a step of several
 * chunks (full-batch GD) that reaches the time limit pauses between chunks, its
 * gradients so far kept in net->grads (t->step_rows), and the next call goes on with
 * it; nothing else may use net->grads in between. */
long fbp_train_run(const fbp_net *net, fbp_train *t, double max_seconds);

/* One update on the n rows of X (all of them, one batch; weights as in fbp_train,
 * or NULL): forward, backward, the rule's step. Returns the (weighted) mean loss of
 * the batch before the update; sets t->status. Uses t's optimizer fields and step
 * counter only. */
double fbp_train_batch(const fbp_net *net, fbp_train *t, const void *X, long n,
                       const int32_t *labels, const void *targets, const void *weights);

/* Gradients of the (weighted) mean loss over the n rows of X into net->grads
 * (backpropagation only: the weights are not touched). Returns that mean loss. */
double fbp_gradients(const fbp_net *net, const void *X, long n,
                     const int32_t *labels, const void *targets, const void *weights);

/* Network outputs for the n rows of X into out (n, sizes[L]): probabilities for
 * the cross-entropies, means for Poisson, raw outputs for MSE. */
void fbp_predict(const fbp_net *net, const void *X, long n, void *out);

/* Sum of per-sample losses over the n rows of X; for the cross-entropies also the
 * number of correct predictions in *n_correct (binary: every output right). */
double fbp_evaluate(const fbp_net *net, const void *X, long n,
                    const int32_t *labels, const void *targets, long *n_correct);

/* The settings of one update by a rule, for fbp_update. */
typedef struct {
    int rule;                 /* enum fbp_rule (not FBP_RULE_TEST_RMS) */
    double lr, momentum, weight_decay;
    int nesterov;
    double beta1, beta2, eps; /* Adam, AdamW */
    long step;                /* Adam, AdamW: this update's 1-based count */
} fbp_update_settings;

/* One update in place of n parameters of dtype from their gradient, by the rule in s
 * (formulas in csrc/optim.inc), its state in state0 and state1 (laid out like param;
 * NULL where the rule keeps none: SGD without momentum has no state0, only Adam has a
 * state1). Returns 1 if any updated value is NaN or inf, else 0. */
int fbp_update(int dtype, const fbp_update_settings *s, void *param, const void *grad,
               void *state0, void *state1, long n);

/* Checks of the data, for the Python side: the index of the first NaN/inf among the
 * n values (scanned by up to n_threads threads when n is large), or of the first
 * label (int32, or int64 when is_int64) outside [0, n_classes); -1 when there is none. */
long fbp_first_nonfinite(int dtype, const void *x, long n, int n_threads);
long fbp_first_bad_label(const void *labels, int is_int64, long n, int n_classes);

/* Testing only: when >= 0, backpropagation adds 1e-3 to dW[0] of that layer, a
 * planted bug that fastbp.gradcheck must catch. Not part of the Python API. */
extern int fbp_test_fault_layer;

/* Testing only: when > 0, the epoch loop changes its thread count (all <-> one) every
 * that many steps, as it does on its own when other processes hold the cores. */
extern int fbp_test_regroup_every;

/* Instruction-set selection: the best this CPU supports unless forced. */
int fbp_cpu_has_avx2(void);   /* AVX2 and FMA */
int fbp_cpu_has_avx512(void); /* AVX-512 F, DQ, BW and VL, with the OS saving ZMM state */
int fbp_get_isa(void);
int fbp_set_isa(int isa);   /* the requested path, or the best below it that the CPU has;
                               returns the ISA in use after the call */

/* Threads and fork(): 0 in a process forked after this library ran threads (OpenMP's
 * thread pool does not survive fork), where every call runs in one thread; else 1. */
int fbp_threads_usable(void);

/* Internal, for the builds: the thread count for a parallel region that wants n, with
 * the fork rule above applied and noted. */
int fbp_claim_threads(int n);

/* How this library was built: the compiler and whether it has OpenMP threads. */
const char *fbp_compiler(void);
int fbp_openmp(void);       /* _OPENMP's date (e.g. 201511), 0 without OpenMP */

#ifdef __cplusplus
}
#endif
#endif
