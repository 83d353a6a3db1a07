/* The portable build of the kernels in double: runs on any CPU the compiler targets. */
#define FBP_REAL double
#define FBP_DT f64
#define FBP_ISA_NAME generic
#include "real.h"
#include "optim.inc"
#include "gemm.inc"
#include "layers.inc"
#include "small_batch.inc"
#include "threads.inc"
#include "sparse.inc"
#include "loss.inc"
#include "train.inc"
