# cython: language_level=3, boundscheck=False, wraparound=False, initializedcheck=False
"""The only place Python meets C.

Python validates arguments and owns every array; this module checks that what it
hands to C has the right dtype, shape and layout, fills the C structs with
pointers into those arrays, and calls C with the GIL released.
"""
import threading

import numpy as np

from ._memory import aligned_zeros
cimport cython
cimport numpy as cnp
from cpython.mem cimport PyMem_Malloc, PyMem_Free
from libc.stdint cimport int32_t, int64_t, uint64_t
from libc.string cimport memset

cnp.import_array()

cdef extern from "fastbp.h" nogil:
    enum: FBP_FLOAT32, FBP_FLOAT64
    enum: FBP_OK, FBP_NONFINITE_LOSS, FBP_NONFINITE_WEIGHTS
    enum: FBP_ISA_GENERIC, FBP_ISA_AVX2, FBP_ISA_AVX512
    enum: FBP_CROSS_ENTROPY, FBP_MSE, FBP_BINARY_CROSS_ENTROPY, FBP_POISSON
    enum: FBP_RULE_SGD, FBP_RULE_TEST_RMS, FBP_RULE_ADAM, FBP_RULE_ADAMW, FBP_RULE_ADAM_SKLEARN
    ctypedef struct fbp_profile:
        double gather, forward, backward, update
        long steps
    ctypedef struct fbp_net:
        int dtype
        int n_layers
        const int *sizes
        const int *activations
        int loss
        long n_params, n_weights
        const long *w_offset
        const long *b_offset
        void *params
        void *grads
        int rule
        void *state[2]
        void *work
        int max_batch
        int n_threads
        fbp_profile *profile
    ctypedef struct fbp_train:
        const void *X
        long n_samples
        const int32_t *labels
        const void *targets
        const void *weights
        int64_t *order
        long batch_size
        int shuffle
        uint64_t rng
        double lr, decay, momentum, weight_decay
        int decay_on_sum
        int nesterov
        double beta1, beta2, eps
        long rule_steps
        long step, max_steps, pos
        double loss_sum
        long n_seen
        double weight_seen
        long step_rows
        double step_loss
        double last_lr
        int status
        double pacing[4]
    size_t fbp_work_bytes(const fbp_net *net)
    void fbp_epoch_begin(fbp_train *t)
    long fbp_train_run(const fbp_net *net, fbp_train *t, double max_seconds)
    double fbp_train_batch(const fbp_net *net, fbp_train *t, const void *X, long n,
                           const int32_t *labels, const void *targets, const void *weights)
    double fbp_gradients(const fbp_net *net, const void *X, long n,
                         const int32_t *labels, const void *targets, const void *weights)
    void fbp_predict(const fbp_net *net, const void *X, long n, void *out)
    double fbp_evaluate(const fbp_net *net, const void *X, long n, const int32_t *labels,
                        const void *targets, long *n_correct)
    ctypedef struct fbp_update_settings:
        int rule
        double lr, momentum, weight_decay
        int nesterov
        double beta1, beta2, eps
        long step
    int fbp_update(int dtype, const fbp_update_settings *s, void *param, const void *grad,
                   void *state0, void *state1, long n)
    long fbp_first_nonfinite(int dtype, const void *x, long n, int n_threads)
    long fbp_first_bad_label(const void *labels, int is_int64, long n, int n_classes)
    int fbp_test_fault_layer
    int fbp_test_regroup_every
    const char *fbp_compiler()
    int fbp_openmp()
    int fbp_cpu_has_avx2()
    int fbp_cpu_has_avx512()
    int fbp_get_isa()
    int fbp_threads_usable()
    int fbp_set_isa(int isa)

STATUS_OK = FBP_OK
STATUS_NONFINITE_LOSS = FBP_NONFINITE_LOSS
STATUS_NONFINITE_WEIGHTS = FBP_NONFINITE_WEIGHTS
RULE_SGD = FBP_RULE_SGD
RULE_TEST_RMS = FBP_RULE_TEST_RMS
RULE_ADAM = FBP_RULE_ADAM
RULE_ADAMW = FBP_RULE_ADAMW
RULE_ADAM_SKLEARN = FBP_RULE_ADAM_SKLEARN
ISA_NAMES = {FBP_ISA_GENERIC: "generic", FBP_ISA_AVX2: "avx2", FBP_ISA_AVX512: "avx512"}


cdef int dtype_code(dtype) except -1:
    if dtype == np.float32:
        return FBP_FLOAT32
    if dtype == np.float64:
        return FBP_FLOAT64
    raise TypeError(f"dtype must be float32 or float64, got {dtype}")


cdef void *data_of(object a, dtype, shape, str name) except NULL:
    """Pointer to a's data after checking what C will assume about it."""
    if a.dtype != dtype or not a.flags.c_contiguous or tuple(a.shape) != tuple(shape):
        raise ValueError(f"internal: {name} must be a C-contiguous {np.dtype(dtype).name} "
                         f"array of shape {tuple(shape)}, got {a.dtype} {a.shape}")
    if not a.flags.writeable:
        raise ValueError(f"{name} must be writeable")
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef const void *rdata_of(object a, dtype, shape, str name) except NULL:
    if a.dtype != dtype or not a.flags.c_contiguous or tuple(a.shape) != tuple(shape):
        raise ValueError(f"internal: {name} must be a C-contiguous {np.dtype(dtype).name} "
                         f"array of shape {tuple(shape)}, got {a.dtype} {a.shape}")
    return cnp.PyArray_DATA(<cnp.ndarray>a)


cdef class CoreNet:
    """An fbp_net over arrays that Python owns: the flat parameters and their gradients
    (laid out by a fastbp._memory.ParamLayout), the update rule's state, and the work
    buffer for max_batch rows."""
    cdef fbp_net net
    cdef fbp_profile prof
    cdef int *c_sizes
    cdef int *c_acts
    cdef long *c_offsets          # (2L,): each layer's weight offset, then its bias offset
    cdef readonly object params, grads, state
    cdef readonly object dtype
    cdef readonly int max_batch, n_threads
    cdef readonly tuple sizes
    cdef readonly long n_in, n_out
    cdef readonly object work     # uint8: the training calls' work space (csrc/train.inc)
    cdef list spare_work          # work spaces of the same size for inference calls, which
                                  # may run in several threads at once, each with its own
    cdef int type_num             # NumPy's number for dtype
    cdef double biggest           # the largest finite value of dtype
    cdef object step_labels       # int32 (max_batch,): try_train_step's copy of the labels

    def __cinit__(self):
        self.c_sizes = NULL
        self.c_acts = NULL
        self.c_offsets = NULL

    def __init__(self, sizes, activations, int loss, layout, object params, object grads,
                 int max_batch, int n_threads=1):
        cdef int L = len(sizes) - 1, l
        cdef long n_params = layout.n_params, n_weights = layout.n_weights, end = 0
        self.dtype = params.dtype
        self.sizes = tuple(int(s) for s in sizes)
        self.n_in, self.n_out = self.sizes[0], self.sizes[L]
        self.max_batch = max_batch
        self.c_sizes = <int *>PyMem_Malloc((L + 1) * sizeof(int))
        self.c_acts = <int *>PyMem_Malloc(L * sizeof(int))
        self.c_offsets = <long *>PyMem_Malloc(2 * L * sizeof(long))
        if self.c_sizes == NULL or self.c_acts == NULL or self.c_offsets == NULL:
            raise MemoryError()
        for l in range(L + 1):
            self.c_sizes[l] = sizes[l]
        for l in range(L):
            self.c_acts[l] = activations[l]
        # C writes each layer's values at its offsets: they must lie inside the arrays,
        # apart, the weights below n_weights and the biases above.
        offsets = list(layout.w_offset) + list(layout.b_offset)
        for l in range(2 * L):
            size = self.sizes[l % L] * self.sizes[l % L + 1] if l < L else self.sizes[l % L + 1]
            self.c_offsets[l] = offsets[l]
            if self.c_offsets[l] < end or self.c_offsets[l] + size > (n_weights if l < L else n_params):
                raise ValueError(f"internal: the parameter layout overlaps or overflows at {l}")
            end = n_weights if l == L - 1 else self.c_offsets[l] + size
        self.params = params
        self.grads = grads
        self.state = None
        self.net.dtype = dtype_code(self.dtype)
        self.net.n_layers = L
        self.net.sizes = self.c_sizes
        self.net.activations = self.c_acts
        self.net.loss = loss
        self.net.n_params, self.net.n_weights = n_params, n_weights
        self.net.w_offset, self.net.b_offset = self.c_offsets, self.c_offsets + L
        self.net.params = data_of(params, self.dtype, (n_params,), "params")
        self.net.grads = data_of(grads, self.dtype, (n_params,), "grads")
        self.net.rule = FBP_RULE_SGD
        self.net.state[0] = self.net.state[1] = NULL
        self.net.max_batch = max_batch
        self.net.n_threads = n_threads
        self.n_threads = n_threads
        self.net.work = NULL
        self.net.profile = NULL
        self.work = aligned_zeros(fbp_work_bytes(&self.net), np.uint8)
        self.net.work = cnp.PyArray_DATA(self.work)
        self.spare_work = []
        self.type_num = np.dtype(self.dtype).num
        self.biggest = float(np.finfo(self.dtype).max)
        self.step_labels = np.empty(max_batch, dtype=np.int32)

    def __dealloc__(self):
        PyMem_Free(self.c_sizes)
        PyMem_Free(self.c_acts)
        PyMem_Free(self.c_offsets)

    def set_state(self, object state, int rule=FBP_RULE_SGD):
        """Update by `rule` with these state arrays: None, or (k, n_params) with the
        parameters' layout. RULE_SGD: no state (no momentum) or its velocity in row 0;
        RULE_ADAM, RULE_ADAMW: the moments m and v; RULE_TEST_RMS (testing only,
        csrc/optim.inc): two rows."""
        cdef int k, rows = 0 if state is None else state.shape[0]
        if rule == FBP_RULE_SGD and rows > 1 or rule != FBP_RULE_SGD and rows != 2 or \
                rule not in (FBP_RULE_SGD, FBP_RULE_TEST_RMS, FBP_RULE_ADAM, FBP_RULE_ADAMW,
                             FBP_RULE_ADAM_SKLEARN):
            raise ValueError(f"internal: rule {rule} with {rows} state arrays")
        for k in range(2):
            self.net.state[k] = NULL if k >= rows else \
                data_of(state[k], self.dtype, (self.net.n_params,), "state")
        self.net.rule = rule
        self.state = state

    def profile_start(self):
        self.prof.gather = self.prof.forward = self.prof.backward = self.prof.update = 0
        self.prof.steps = 0
        self.net.profile = &self.prof

    def profile_stop(self):
        self.net.profile = NULL
        return {"gather": self.prof.gather, "forward": self.prof.forward,
                "backward": self.prof.backward, "update": self.prof.update,
                "steps": self.prof.steps}

    cdef object take_work(self, fbp_net *net):
        """A work space for one inference call, into net (a copy of self.net): one of the
        spares, or a new one. list.pop and append are atomic under the GIL."""
        try:
            work = self.spare_work.pop()
        except IndexError:
            work = aligned_zeros(self.work.nbytes, np.uint8)
        net.work = cnp.PyArray_DATA(work)
        return work

    cdef const int32_t *labels_ptr(self, labels, long n) except? NULL:
        if labels is None:
            return NULL
        return <const int32_t *>rdata_of(labels, np.int32, (n,), "labels")

    cdef const void *targets_ptr(self, targets, long n) except? NULL:
        if targets is None:
            return NULL
        return rdata_of(targets, self.dtype, (n, self.n_out), "targets")

    cdef const void *weights_ptr(self, weights, long n) except? NULL:
        if weights is None:
            return NULL
        return rdata_of(weights, self.dtype, (n,), "sample_weight")

    # Inference: gradients, predict and evaluate only read the parameters, so any number
    # of threads may run them at once, each on a copy of the fbp_net with a work space
    # (and for gradients, an output array) of its own.

    def gradients(self, object X, labels, targets, object grads, weights=None):
        """Backpropagation over all rows of X into grads (laid out like self.grads);
        the (weighted) mean loss."""
        cdef long n = X.shape[0]
        cdef const void *x = rdata_of(X, self.dtype, (n, self.n_in), "X")
        cdef const int32_t *lab = self.labels_ptr(labels, n)
        cdef const void *tgt = self.targets_ptr(targets, n)
        cdef const void *wts = self.weights_ptr(weights, n)
        cdef double loss
        cdef fbp_net net = self.net
        net.grads = data_of(grads, self.dtype, (self.net.n_params,), "grads")
        work = self.take_work(&net)
        with nogil:
            loss = fbp_gradients(&net, x, n, lab, tgt, wts)
        self.spare_work.append(work)
        return loss

    def predict(self, object X, object out):
        cdef long n = X.shape[0]
        cdef const void *x = rdata_of(X, self.dtype, (n, self.n_in), "X")
        cdef void *o = data_of(out, self.dtype, (n, self.n_out), "out")
        cdef fbp_net net = self.net
        work = self.take_work(&net)
        with nogil:
            fbp_predict(&net, x, n, o)
        self.spare_work.append(work)

    def evaluate(self, object X, labels, targets):
        """(sum of per-sample losses, number of correct predictions)."""
        cdef long n = X.shape[0], correct = 0
        cdef const void *x = rdata_of(X, self.dtype, (n, self.n_in), "X")
        cdef const int32_t *lab = self.labels_ptr(labels, n)
        cdef const void *tgt = self.targets_ptr(targets, n)
        cdef double total
        cdef fbp_net net = self.net
        work = self.take_work(&net)
        with nogil:
            total = fbp_evaluate(&net, x, n, lab, tgt, &correct)
        self.spare_work.append(work)
        return total, correct

    # Training changes the parameters: one call at a time (Network serialises them).

    def train_batch(self, Trainer trainer, object X, labels, targets, weights=None):
        """One update on all rows of X with trainer's optimizer settings; the (weighted)
        mean loss."""
        cdef long n = X.shape[0]
        cdef const void *x = rdata_of(X, self.dtype, (n, self.n_in), "X")
        cdef const int32_t *lab = self.labels_ptr(labels, n)
        cdef const void *tgt = self.targets_ptr(targets, n)
        cdef const void *wts = self.weights_ptr(weights, n)
        cdef double loss
        with nogil:
            loss = fbp_train_batch(&self.net, &trainer.t, x, n, lab, tgt, wts)
        return loss

    def try_train_step(self, Trainer trainer, object X, object y, object lr, object momentum,
                       object weight_decay, object nesterov, int rule=FBP_RULE_SGD,
                       object betas=None, object eps=None, long rule_steps=0):
        """train_step's common case at C speed: when X, y and the settings are already
        exactly what C takes (C-contiguous arrays of the network's dtype, int32/int64
        labels, plain numbers) and valid (finite X, labels in range, lr > 0, momentum in
        [0, 1), the velocities set up for this momentum; for Adam (rule RULE_ADAM,
        RULE_ADAMW or RULE_ADAM_SKLEARN, the one the state is set up for) no momentum, betas None or a pair
        of floats in [0, 1), eps None or a float > 0 that the dtype holds, rule_steps
        the steps the moments saw), one update on all rows of X and its mean loss.
        Otherwise None, changing nothing: the caller then runs the full checks, which
        convert what can be converted and name what is wrong."""
        cdef cnp.ndarray Xa, ya
        cdef long n, i
        cdef double r, m, wd, loss, b1 = 0.9, b2 = 0.999, e = 1e-8
        cdef int is64, nest
        cdef const void *x
        cdef const void *tgt = NULL
        cdef const int32_t *lab = NULL
        cdef int32_t *copy
        if type(X) is not np.ndarray or type(y) is not np.ndarray:
            return None
        if (type(lr) is not float and type(lr) is not int) or \
                (type(momentum) is not float and type(momentum) is not int) or \
                (type(weight_decay) is not float and type(weight_decay) is not int) or \
                type(nesterov) is not bool:
            return None
        try:
            r, m, wd, nest = lr, momentum, weight_decay, nesterov
        except OverflowError:  # an int beyond a double: the full checks name it
            return None
        if not (0 < r <= self.biggest and 0 <= m < 1 and 0 <= wd <= self.biggest) or (nest and m == 0):
            return None
        if rule != self.net.rule:
            return None
        if rule == FBP_RULE_SGD:
            if (m > 0) != (self.net.state[0] != NULL) or betas is not None or eps is not None:
                return None
        elif rule == FBP_RULE_ADAM or rule == FBP_RULE_ADAMW or rule == FBP_RULE_ADAM_SKLEARN:
            if m != 0 or nest or self.net.state[1] == NULL or rule_steps < 0:
                return None
            if betas is not None:
                if type(betas) is not tuple or len(betas) != 2 or type(betas[0]) is not float or \
                        type(betas[1]) is not float:
                    return None
                b1, b2 = betas
            if eps is not None:
                if type(eps) is not float:
                    return None
                e = eps
            if not (0 <= b1 < 1 and 0 <= b2 < 1 and 0 < e <= self.biggest) or \
                    (self.net.dtype == FBP_FLOAT32 and <float>e == 0):
                return None
        else:
            return None
        Xa = <cnp.ndarray>X
        if cnp.PyArray_NDIM(Xa) != 2 or cnp.PyArray_TYPE(Xa) != self.type_num or \
                not cnp.PyArray_ISNOTSWAPPED(Xa) or not cnp.PyArray_IS_C_CONTIGUOUS(Xa) or \
                cnp.PyArray_DIM(Xa, 1) != self.n_in:
            return None
        n = cnp.PyArray_DIM(Xa, 0)
        if n < 1 or n > self.max_batch:
            return None
        ya = <cnp.ndarray>y
        if cnp.PyArray_NDIM(ya) < 1 or not cnp.PyArray_ISNOTSWAPPED(ya) or \
                not cnp.PyArray_IS_C_CONTIGUOUS(ya) or cnp.PyArray_DIM(ya, 0) != n:
            return None
        x = cnp.PyArray_DATA(Xa)
        if self.net.loss == FBP_CROSS_ENTROPY:
            is64 = cnp.PyArray_TYPE(ya) == cnp.NPY_INT64
            if cnp.PyArray_NDIM(ya) != 1 or not (is64 or cnp.PyArray_TYPE(ya) == cnp.NPY_INT32):
                return None
            if fbp_first_bad_label(cnp.PyArray_DATA(ya), is64, n, <int>self.n_out) >= 0:
                return None
            copy = <int32_t *>cnp.PyArray_DATA(self.step_labels)
            for i in range(n):
                copy[i] = (<int64_t *>cnp.PyArray_DATA(ya))[i] if is64 else \
                    (<int32_t *>cnp.PyArray_DATA(ya))[i]
            lab = copy
        elif self.net.loss == FBP_MSE:  # (the other losses' targets have ranges to check)
            if cnp.PyArray_NDIM(ya) != 2 or cnp.PyArray_TYPE(ya) != self.type_num or \
                    cnp.PyArray_DIM(ya, 1) != self.n_out:
                return None
            tgt = cnp.PyArray_DATA(ya)
            if fbp_first_nonfinite(self.net.dtype, tgt, n * self.n_out, 1) >= 0:
                return None
        else:
            return None
        if fbp_first_nonfinite(self.net.dtype, x, n * self.n_in, 1) >= 0:
            return None
        trainer.t.lr, trainer.t.decay, trainer.t.step = r, 0, 0
        trainer.t.momentum, trainer.t.weight_decay, trainer.t.nesterov = m, wd, nest
        trainer.t.beta1, trainer.t.beta2, trainer.t.eps, trainer.t.rule_steps = b1, b2, e, rule_steps
        with nogil:
            loss = fbp_train_batch(&self.net, &trainer.t, x, n, lab, tgt, NULL)
        return loss

    def run(self, Trainer trainer, double max_seconds):
        """Updates of trainer's current epoch for about max_seconds; how many."""
        cdef long steps
        if trainer.t.X == NULL:
            raise ValueError("internal: trainer has no data")
        with nogil:
            steps = fbp_train_run(&self.net, &trainer.t, max_seconds)
        return steps


cdef class Trainer:
    """An fbp_train: the data of one fit (by reference), the optimizer settings and
    the position in the epoch. Holds references to the arrays it points into."""
    cdef fbp_train t
    cdef object X, labels, targets, weights, order

    def __init__(self, X=None, labels=None, targets=None, long batch_size=1, bint shuffle=True,
                 uint64_t rng=0, weights=None):
        cdef long n = 0 if X is None else X.shape[0]
        self.t.X = NULL
        self.t.labels = NULL
        self.t.targets = NULL
        self.t.weights = NULL
        self.t.order = NULL
        self.t.n_samples = n
        if X is not None:
            self.X = X
            self.t.X = rdata_of(X, X.dtype, X.shape, "X")
            self.order = np.empty(n, dtype=np.int64)
            self.t.order = <int64_t *>cnp.PyArray_DATA(self.order)
            if labels is not None:
                self.labels = labels
                self.t.labels = <const int32_t *>rdata_of(labels, np.int32, (n,), "labels")
            if targets is not None:
                self.targets = targets
                self.t.targets = rdata_of(targets, X.dtype, (n, targets.shape[1]), "targets")
            if weights is not None:
                self.weights = weights
                self.t.weights = rdata_of(weights, X.dtype, (n,), "sample_weight")
        self.t.batch_size = batch_size
        self.t.shuffle = shuffle
        self.t.rng = rng
        self.t.lr = 0.01
        self.t.decay = 0
        self.t.momentum = 0
        self.t.weight_decay = 0
        self.t.decay_on_sum = 0
        self.t.nesterov = 0
        self.t.beta1, self.t.beta2, self.t.eps, self.t.rule_steps = 0.9, 0.999, 1e-8, 0
        self.t.step = 0
        self.t.max_steps = 0
        self.t.pos = n
        self.t.loss_sum = 0
        self.t.n_seen = 0
        self.t.weight_seen = 0
        self.t.step_rows = 0
        self.t.step_loss = 0
        self.t.last_lr = 0
        self.t.status = FBP_OK
        memset(self.t.pacing, 0, sizeof(self.t.pacing))

    def set_optimizer(self, double lr, double decay, double momentum, double weight_decay,
                      bint nesterov, long step, double beta1=0.9, double beta2=0.999,
                      double eps=1e-8, long rule_steps=0, bint decay_on_sum=False):
        """The rule's settings (the rule itself is the CoreNet's); step: updates so far
        in this fit; rule_steps: updates the rule's state saw before it (Adam);
        decay_on_sum: weight_decay penalises each batch's summed loss (fastbp.h)."""
        self.t.lr, self.t.decay = lr, decay
        self.t.momentum, self.t.weight_decay, self.t.nesterov = momentum, weight_decay, nesterov
        self.t.beta1, self.t.beta2, self.t.eps, self.t.rule_steps = beta1, beta2, eps, rule_steps
        self.t.decay_on_sum = decay_on_sum
        self.t.step = step

    def position(self):
        """Where the epoch is, for set_position: a tuple of plain numbers."""
        return (self.t.pos, self.t.step, self.t.loss_sum, self.t.n_seen, self.t.weight_seen,
                self.t.last_lr, self.t.step_rows, self.t.step_loss, self.t.status)

    def set_position(self, tuple position):
        """Back to a position() of the same epoch (same order, same settings)."""
        (self.t.pos, self.t.step, self.t.loss_sum, self.t.n_seen, self.t.weight_seen,
         self.t.last_lr, self.t.step_rows, self.t.step_loss, self.t.status) = position

    def set_max_steps(self, long max_steps):
        """Stop after this many updates in total (0: no limit)."""
        self.t.max_steps = max_steps

    def epoch_begin(self):
        with nogil:  # fills (and shuffles) the order of all samples: no other thread waits
            fbp_epoch_begin(&self.t)

    @property
    def epoch_done(self):
        return self.t.pos >= self.t.n_samples

    @property
    def status(self):
        return self.t.status

    @property
    def step(self):
        return self.t.step

    @property
    def rng(self):
        return self.t.rng

    @property
    def epoch_loss(self):
        return self.t.loss_sum / self.t.weight_seen if self.t.weight_seen > 0 else float("nan")

    @property
    def last_lr(self):
        return self.t.last_lr

    @property
    def pos(self):
        return self.t.pos

    @property
    def step_rows(self):
        """Rows of a paused step of several chunks whose gradients are in (0: none)."""
        return self.t.step_rows


def update_raw(int rule, object param, object grad, state0, state1, double lr,
               double momentum=0, double weight_decay=0, bint nesterov=False, double beta1=0.9,
               double beta2=0.999, double eps=1e-8, long step=1):
    """fbp_update on arrays already checked by fastbp.optim (sgd_update, adam_update):
    1 if an updated value is NaN or inf."""
    cdef int code = dtype_code(param.dtype)
    cdef fbp_update_settings s
    cdef void *p = data_of(param, param.dtype, param.shape, "param")
    cdef const void *g = rdata_of(grad, param.dtype, param.shape, "grad")
    cdef void *s0 = NULL
    cdef void *s1 = NULL
    cdef long n = param.size
    cdef int bad
    if state0 is not None:
        s0 = data_of(state0, param.dtype, param.shape, "state")
    if state1 is not None:
        s1 = data_of(state1, param.dtype, param.shape, "state")
    s.rule, s.lr, s.momentum, s.weight_decay, s.nesterov = rule, lr, momentum, weight_decay, nesterov
    s.beta1, s.beta2, s.eps, s.step = beta1, beta2, eps, step
    with nogil:
        bad = fbp_update(code, &s, p, g, s0, s1, n)
    return bad


def first_nonfinite(a, int n_threads=1):
    """Flat index of the first NaN/inf in a C-contiguous float32/float64 array, or -1;
    a large array is scanned by up to n_threads threads."""
    cdef int code = dtype_code(a.dtype)
    cdef const void *x = rdata_of(a, a.dtype, a.shape, "array")
    cdef long n = a.size, i
    with nogil:
        i = fbp_first_nonfinite(code, x, n, n_threads)
    return i


def first_bad_label(labels, int n_classes):
    """Index of the first label outside [0, n_classes) in a C-contiguous 1-D int32 or
    int64 array, or -1."""
    cdef long n = labels.shape[0], i
    cdef int is64 = labels.dtype == np.int64
    cdef const void *lab = rdata_of(labels, np.int64 if is64 else np.int32, (n,), "labels")
    with nogil:
        i = fbp_first_bad_label(lab, is64, n, n_classes)
    return i


def build_info():
    return {"compiler": fbp_compiler().decode(), "openmp": fbp_openmp()}


def threads_usable():
    """False in a process forked after fastbp ran threads: every call then runs in one
    thread (csrc/fastbp.c)."""
    return bool(fbp_threads_usable())


def cpu_has_avx2():
    return bool(fbp_cpu_has_avx2())


def cpu_has_avx512():
    return bool(fbp_cpu_has_avx512())


def get_isa():
    return ISA_NAMES[fbp_get_isa()]


def set_isa(str name):
    """Use code path 'generic', 'avx2' or 'avx512': the one asked for if this CPU has
    it, else the best below it. Returns the path in use."""
    codes = {v: k for k, v in ISA_NAMES.items()}
    if name not in codes:
        raise ValueError(f"unknown code path {name!r}; expected one of {sorted(codes)}")
    return ISA_NAMES[fbp_set_isa(codes[name])]


def _set_test_fault(int layer):
    """Testing only: plant an error in layer's dW during backpropagation (-1: none)."""
    global fbp_test_fault_layer
    fbp_test_fault_layer = layer


def _set_test_regroup(int every):
    """Testing only: the epoch loop switches between all threads and one every `every`
    steps (0: only when other processes hold the cores)."""
    global fbp_test_regroup_every
    fbp_test_regroup_every = every


SIGNAL_POLL_SECONDS = 0.05   # how often a thread waiting for its turn looks for a Ctrl-C


@cython.auto_pickle(False)
cdef class ParameterLock:
    """How one Network is shared between Python threads.

    Inference (predict, predict_proba, evaluate, gradients) only reads the parameters,
    and each CoreNet call of it takes a work space of its own, so any number of threads
    run it at once (`with lock.reading`). Training writes the parameters: one training
    call (fit, train_step) at a time on a network (train_acquire refuses a second with
    a RuntimeError: two interleaved trainings would give neither caller what it asked
    for), and while a training C call runs (`with lock.writing`; fit makes one per ~50
    ms of updates) no inference reads, so every answer comes from the weights of a
    complete update. Turns alternate: a writer's release hands the turn to the readers
    that waited through its update (or else to a writer that waited), so fit, which asks
    again at once, cannot starve them, and a waiting writer goes before new readers.

    The counts are C ints changed only while holding the GIL, so the uncontended paths
    are a few C operations (train_step at batch 1 takes ~10 us: a lock in Python cost
    it 1.3-1.7 us); a thread that must wait sleeps on a Condition.

    >>> lock = ParameterLock()
    >>> with lock.reading, lock.reading:     # readers share
    ...     pass
    >>> lock.train_acquire("fit")
    >>> lock.train_acquire("train_step")
    Traceback (most recent call last):
    ...
    RuntimeError: this Network is already being trained by a fit or train_step that has not returned (in another thread, or whose callback this is); train_step cannot run until it does. To train in parallel, train copies (set_weights on a new Network).
    >>> lock.train_release()
    """
    cdef int n_readers        # inference calls under way
    cdef int writer_in        # a training C call under way (or handed to a waiting writer)
    cdef int readers_waiting, writers_waiting
    cdef int sleepers         # threads waiting on cond
    cdef long read_grants     # releases that admitted the waiting readers (counted in n_readers)
    cdef long write_grants    # releases that handed the turn to a writer that was waiting
    cdef int handoff          # 1: the last such hand-over is not taken yet
    cdef int training         # a fit or train_step under way
    cdef object cond
    cdef readonly object reading, writing

    def __cinit__(self):
        self.cond = threading.Condition(threading.Lock())
        self.reading = _LockSide(self, 0)
        self.writing = _LockSide(self, 1)

    # No Python code runs between a test of the counts and the change it allows (the
    # GIL could pass to another thread there), so the slow path tests and takes its
    # turn in one step, inside the Condition.
    cdef void wait_for_turn(self, bint writer) except *:
        cdef long read_gen, write_gen
        with self.cond:
            self.sleepers += 1
            read_gen, write_gen = self.read_grants, self.write_grants
            if writer:
                self.writers_waiting += 1
            else:
                self.readers_waiting += 1
            try:
                while True:
                    if writer:
                        if self.handoff and self.write_grants != write_gen:  # waited through it
                            self.handoff = 0      # writer_in stays 1: the turn is this one's
                            self.writers_waiting -= 1
                            break
                        if not self.writer_in and not self.n_readers:
                            self.writer_in = 1
                            self.writers_waiting -= 1
                            break
                    else:
                        if self.read_grants != read_gen:  # admitted and counted by a release
                            break
                        if not self.writer_in and not self.writers_waiting:
                            self.readers_waiting -= 1
                            self.n_readers += 1
                            break
                    # Timed: a Ctrl-C that lands after Python's last look at pending signals
                    # but before the sleep would otherwise wait for the next notify (seen
                    # under load as a test that hung in this wait).
                    self.cond.wait(SIGNAL_POLL_SECONDS)
            except BaseException:  # interrupted while waiting: give up the place or the turn
                if writer:
                    self.writers_waiting -= 1
                    if self.handoff and self.writers_waiting == 0:
                        self.handoff = 0
                        self.writer_in = 0
                elif self.read_grants != read_gen:
                    self.n_readers -= 1
                else:
                    self.readers_waiting -= 1
                self.cond.notify_all()
                raise
            finally:
                self.sleepers -= 1

    cdef void wake(self) except *:
        if self.sleepers:
            with self.cond:
                self.cond.notify_all()

    def read_acquire(self):
        if self.writer_in or self.writers_waiting:
            self.wait_for_turn(False)
        else:
            self.n_readers += 1

    def read_release(self):
        self.n_readers -= 1
        if self.n_readers == 0:
            self.wake()

    def write_acquire(self):
        if self.writer_in or self.n_readers or self.sleepers:  # anyone waiting goes first
            self.wait_for_turn(True)
        else:
            self.writer_in = 1

    def write_release(self):
        if self.readers_waiting:      # the readers that waited through this update
            self.writer_in = 0
            self.n_readers += self.readers_waiting
            self.readers_waiting = 0
            self.read_grants += 1
        elif self.writers_waiting:    # else a writer that waited: writer_in stays 1
            self.handoff = 1
            self.write_grants += 1
        else:
            self.writer_in = 0
        self.wake()

    def train_acquire(self, str what):
        if self.training:
            raise RuntimeError(
                "this Network is already being trained by a fit or train_step that has not "
                "returned (in another thread, or whose callback this is); "
                f"{what} cannot run until it does. To train in parallel, train copies "
                "(set_weights on a new Network).")
        self.training = 1

    def step_acquire(self):
        """train_acquire("train_step") and write_acquire in one call (train_step's
        per-call cost is a few microseconds: each call into the lock shows)."""
        self.train_acquire("train_step")
        try:
            self.write_acquire()
        except BaseException:
            self.training = 0
            raise

    def step_release(self):
        self.write_release()
        self.training = 0

    def train_release(self):
        self.training = 0


@cython.auto_pickle(False)
cdef class _LockSide:
    """`with lock.reading:` / `with lock.writing:`."""
    cdef ParameterLock lock
    cdef bint write

    def __cinit__(self, ParameterLock lock, bint write):
        self.lock, self.write = lock, write

    def __enter__(self):
        if self.write:
            self.lock.write_acquire()
        else:
            self.lock.read_acquire()

    def __exit__(self, *exc):
        if self.write:
            self.lock.write_release()
        else:
            self.lock.read_release()
