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
  SET(cross_entropy_mean_bwd);
  SET(token_logprobs_fwd);
  SET(token_logprobs_bwd);
  SET(sample_tokens);
  SET(add_fwd);
  SET(add_bwd);
  SET(scale_fwd);
  SET(axpy);
  SET(sum);
  SET(mul_fwd);
  SET(mul_bwd);
  SET(act_fwd);
  SET(act_bwd);
  SET(swiglu_fwd);
  SET(swiglu_bwd);
  SET(sq_diff_sum);
  SET(sq_diff_bwd);
  SET(sq_diff_mean_bwd);
  SET(fill_grad);
  SET(sumsq);
  SET(adamw_step);
  SET(grad_accumulate);
  SET(grad_round_f64);
  SET(embedding_fwd);
  SET(embedding_bwd);
  SET(matmul);
  SET(layernorm_fwd);
  SET(layernorm_bwd);
  SET(rmsnorm_channels_fwd);
  SET(rmsnorm_channels_bwd);
  SET(rotary);
  SET(slice_copy);
  SET(gather_rows);
  SET(scatter_rows);
  SET(zero_rows);
  SET(transpose);
#if IDOC_HAVE_CUDNN // kernels/cuda/conv.cu is built only with cuDNN
  SET(conv2d_fwd);
  SET(conv2d_bwd);
  SET(conv_transpose2d_fwd);
  SET(conv_transpose2d_bwd);
#endif
  SET(attention_fwd);
  SET(attention_bwd);
#undef SET
  return t;
}

static const idoc_kernel_table g_table = make_table();

extern "C" const idoc_kernel_table *idoc_cuda_kernels(void) { return &g_table; }
