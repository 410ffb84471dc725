// The CUDA kernel table: entries for the kernels implemented in kernels/cuda/*.cu, NULL for
// the rest (IDOC_K then dies naming the missing kernel and device).
#include "kernels/cuda/common.cuh"

static idoc_kernel_table make_table(void) {
  idoc_kernel_table t = {};
#define SET(name) t.name = cuda_##name
  SET(linear_fwd);
  SET(linear_bwd);
  SET(rmsnorm_fwd);
  SET(rmsnorm_bwd);
  SET(cross_entropy_fwd);
  SET(cross_entropy_bwd);
  SET(token_logprobs_fwd);
  SET(token_logprobs_bwd);
  SET(add_fwd);
  SET(add_bwd);
  SET(scale_fwd);
  SET(axpy);
  SET(sum);
  SET(attention_fwd);
  SET(attention_bwd);
#undef SET
  return t;
}

static const idoc_kernel_table g_table = make_table();

extern "C" const idoc_kernel_table *idoc_cuda_kernels(void) { return &g_table; }
