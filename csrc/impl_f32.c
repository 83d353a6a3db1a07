/* The portable build of the kernels in float: runs on any CPU the compiler targets. */
#define FBP_REAL float
#define FBP_DT f32
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
