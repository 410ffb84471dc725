// Kernel signatures shared by both backends. cpu_X lives in kernels/cpu/ (fp32 reference,
// OpenMP, BLAS for GEMM) and cuda_X in kernels/cuda/ (bf16 or fp32 storage, fp32 accumulation),
// with identical parameters; nn/ops*.c picks one by the tensors' device.
//
// Each kernel is one X(name, (params)) entry below; idoc_kernels(dev) returns the table of the
// device's backend, whose entries are NULL where that backend lacks the kernel.
//
// Rules: outputs are preallocated by the caller with the right shape. Backward kernels
// ACCUMULATE into gradient outputs (dx += ...), and a NULL gradient output is skipped.
#pragma once
#include "kernels/sample.h"
#include "kernels/tensor.h"

// sin and cos build positional encodings from device data (the heatmap decoder's Fourier features).
enum {
  IDOC_ACT_SILU = 0,
  IDOC_ACT_GELU,
  IDOC_ACT_RELU,
  IDOC_ACT_SIGMOID,
  IDOC_ACT_SIN,
  IDOC_ACT_COS
};

#define IDOC_KERNELS(X)                                                                            \
  /* y[N,O] = x[N,I] w[O,I]^T (+ b) */                                                             \
  X(linear_fwd,                                                                                    \
    (idoc_tensor * y, const idoc_tensor *x, const idoc_tensor *w, const idoc_tensor *b))           \
  X(linear_bwd, (idoc_tensor * dx, idoc_tensor * dw, idoc_tensor * db, const idoc_tensor *dy,      \
                 const idoc_tensor *x, const idoc_tensor *w))                                      \
  /* Batched C[B,M,N] (+)= op(A) op(B); `accumulate` adds into C instead of overwriting. */        \
  X(matmul, (idoc_tensor * out, const idoc_tensor *a, const idoc_tensor *b, bool trans_a,          \
             bool trans_b, bool accumulate))                                                       \
  X(embedding_fwd, (idoc_tensor * out, const idoc_tensor *table, const idoc_tensor *ids))          \
  X(embedding_bwd, (idoc_tensor * dtable, const idoc_tensor *dout, const idoc_tensor *ids))        \
  /* Elementwise. add/mul broadcast b over a's leading dims as in nn/ops.h. */                     \
  X(add_fwd, (idoc_tensor * y, const idoc_tensor *a, const idoc_tensor *b))                        \
  X(add_bwd, (idoc_tensor * da, idoc_tensor * db, const idoc_tensor *dy))                          \
  X(mul_fwd, (idoc_tensor * y, const idoc_tensor *a, const idoc_tensor *b))                        \
  X(mul_bwd, (idoc_tensor * da, idoc_tensor * db, const idoc_tensor *dy, const idoc_tensor *a,     \
              const idoc_tensor *b))                                                               \
  X(scale_fwd, (idoc_tensor * y, const idoc_tensor *x, float s))                                   \
  /* Accumulating axpy: y += s * x (used by backward passes and the optimizer). */                 \
  X(axpy, (idoc_tensor * y, const idoc_tensor *x, float s))                                        \
  /* Unary activations: kind is one of the IDOC_ACT_* values. */                                   \
  X(act_fwd, (idoc_tensor * y, const idoc_tensor *x, int kind))                                    \
  /* dx += dy * act'(x); y (the forward output) is given for kinds that use it (sigmoid). */       \
  X(act_bwd, (idoc_tensor * dx, const idoc_tensor *dy, const idoc_tensor *x, const idoc_tensor *y, \
              int kind))                                                                           \
  X(swiglu_fwd, (idoc_tensor * y, const idoc_tensor *gate, const idoc_tensor *up))                 \
  X(swiglu_bwd, (idoc_tensor * dgate, idoc_tensor * dup, const idoc_tensor *dy,                    \
                 const idoc_tensor *gate, const idoc_tensor *up))                                  \
  /* Norms. rstd (and mean for layernorm) are f32 [rows] saved for backward. */                    \
  X(rmsnorm_fwd,                                                                                   \
    (idoc_tensor * y, idoc_tensor * rstd, const idoc_tensor *x, const idoc_tensor *w, float eps))  \
  X(rmsnorm_bwd, (idoc_tensor * dx, idoc_tensor * dw, const idoc_tensor *dy, const idoc_tensor *x, \
                  const idoc_tensor *w, const idoc_tensor *rstd))                                  \
  X(layernorm_fwd, (idoc_tensor * y, idoc_tensor * mean, idoc_tensor * rstd, const idoc_tensor *x, \
                    const idoc_tensor *w, const idoc_tensor *b, float eps))                        \
  X(layernorm_bwd, (idoc_tensor * dx, idoc_tensor * dw, idoc_tensor * db, const idoc_tensor *dy,   \
                    const idoc_tensor *x, const idoc_tensor *w, const idoc_tensor *mean,           \
                    const idoc_tensor *rstd))                                                      \
  /* rstd f32 [B, H*W] */                                                                          \
  X(rmsnorm_channels_fwd, (idoc_tensor * y, idoc_tensor * rstd, const idoc_tensor *x,              \
                           const idoc_tensor *scale, float eps))                                   \
  X(rmsnorm_channels_bwd,                                                                          \
    (idoc_tensor * dx, idoc_tensor * dscale, const idoc_tensor *dy, const idoc_tensor *x,          \
     const idoc_tensor *scale, const idoc_tensor *rstd))                                           \
  /* Rotary: `inverse` rotates by -angle (the backward of the forward rotation). y may equal x. */ \
  X(rotary, (idoc_tensor * y, const idoc_tensor *x, const idoc_tensor *cos,                        \
             const idoc_tensor *sin, int n_heads, bool inverse))                                   \
  /* Attention over packed segments (semantics: idoc_attention in nn/ops.h). cu_q, cu_k are i32    \
   * [n_seg + 1] segment offsets on q's device (validated by the caller); lse f32 [Hq, Tq]         \
   * (log-sum-exp of the scaled, masked scores; -inf for rows that see no key) is saved for        \
   * backward. */                                                                                  \
  X(attention_fwd,                                                                                 \
    (idoc_tensor * out, idoc_tensor * lse, const idoc_tensor *q, const idoc_tensor *k,             \
     const idoc_tensor *v, const idoc_tensor *cu_q, const idoc_tensor *cu_k, int n_heads,          \
     int n_kv_heads, bool causal, float scale))                                                    \
  X(attention_bwd,                                                                                 \
    (idoc_tensor * dq, idoc_tensor * dk, idoc_tensor * dv, const idoc_tensor *dout,                \
     const idoc_tensor *out, const idoc_tensor *lse, const idoc_tensor *q, const idoc_tensor *k,   \
     const idoc_tensor *v, const idoc_tensor *cu_q, const idoc_tensor *cu_k, int n_heads,          \
     int n_kv_heads, bool causal, float scale))                                                    \
  /* Convolutions (NCHW). */                                                                       \
  X(conv2d_fwd,                                                                                    \
    (idoc_tensor * y, const idoc_tensor *x, const idoc_tensor *w, const idoc_tensor *b, int pad))  \
  X(conv2d_bwd, (idoc_tensor * dx, idoc_tensor * dw, idoc_tensor * db, const idoc_tensor *dy,      \
                 const idoc_tensor *x, const idoc_tensor *w, int pad))                             \
  X(conv_transpose2d_fwd, (idoc_tensor * y, const idoc_tensor *x, const idoc_tensor *w,            \
                           const idoc_tensor *b, int stride, int pad))                             \
  X(conv_transpose2d_bwd,                                                                          \
    (idoc_tensor * dx, idoc_tensor * dw, idoc_tensor * db, const idoc_tensor *dy,                  \
     const idoc_tensor *x, const idoc_tensor *w, int stride, int pad))                             \
  /* Shape kernels. Concat/slice view tensors as [outer, dim, inner]. */                           \
  X(slice_copy, (idoc_tensor * dst, int64_t dst_off, const idoc_tensor *src, int64_t src_off,      \
                 int dim, int64_t len, bool accumulate))                                           \
  X(gather_rows,                                                                                   \
    (idoc_tensor * out, const idoc_tensor *x, const idoc_tensor *idx, bool accumulate))            \
  X(scatter_rows,                                                                                  \
    (idoc_tensor * out, const idoc_tensor *src, const idoc_tensor *idx, bool accumulate))          \
  /* Sets rows idx of out to zero. */                                                              \
  X(zero_rows, (idoc_tensor * out, const idoc_tensor *idx))                                        \
  X(transpose, (idoc_tensor * out, const idoc_tensor *x, bool accumulate))                         \
  /* Losses. cross_entropy_fwd writes the per-row loss (0 for ignored rows) to losses f32 [N] and  \
   */                                                                                              \
  /* lse f32 [N]; cross_entropy_bwd accumulates dlogits = dscale * (softmax - onehot) for kept     \
   * rows. */                                                                                      \
  X(cross_entropy_fwd, (idoc_tensor * losses, idoc_tensor * lse, const idoc_tensor *logits,        \
                        const idoc_tensor *targets, int ignore_index))                             \
  X(cross_entropy_bwd, (idoc_tensor * dlogits, const idoc_tensor *logits, const idoc_tensor *lse,  \
                        const idoc_tensor *targets, int ignore_index, float dscale))               \
  /* cross_entropy_bwd for the mean over n kept rows, its upstream gradient dout (f32 scalar on    \
   * the kernel's device) read there: dscale = dout[0] / n (0 when n <= 0), so a backward pass     \
   * never reads a gradient back to the host. */                                                   \
  X(cross_entropy_mean_bwd,                                                                        \
    (idoc_tensor * dlogits, const idoc_tensor *logits, const idoc_tensor *lse,                     \
     const idoc_tensor *targets, int ignore_index, const idoc_tensor *dout, float n))              \
  /* Per-token log-probabilities of the targets: logp[t] = logits[t, targets[t]] - lse[t] (f32     \
   * [T]); entropy (f32 [T], may be NULL) = -sum_j p_j log p_j of softmax(logits[t]). Rows with a  \
   * negative target get logp 0. bwd accumulates dlogits from dlogp and/or dentropy (either may be \
   * NULL; dentropy needs the forward's entropy). */                                               \
  X(token_logprobs_fwd, (idoc_tensor * logp, idoc_tensor * lse, idoc_tensor * entropy,             \
                         const idoc_tensor *logits, const idoc_tensor *targets))                   \
  X(token_logprobs_bwd, (idoc_tensor * dlogits, const idoc_tensor *logits, const idoc_tensor *lse, \
                         const idoc_tensor *targets, const idoc_tensor *entropy,                   \
                         const idoc_tensor *dlogp, const idoc_tensor *dentropy))                   \
  /* out (f32 scalar) = sum(x) (accumulated in double on CPU). */                                  \
  X(sum, (idoc_tensor * out, const idoc_tensor *x))                                                \
  /* out (f32 scalar) = sum((p - t)^2); bwd: dp += dscale * 2 (p - t). */                          \
  X(sq_diff_sum, (idoc_tensor * out, const idoc_tensor *p, const idoc_tensor *t))                  \
  X(sq_diff_bwd, (idoc_tensor * dp, const idoc_tensor *p, const idoc_tensor *t, float dscale))     \
  /* The mean's backward, dout read on the device: dp += (dout[0] / n) * 2 (p - t). */             \
  X(sq_diff_mean_bwd, (idoc_tensor * dp, const idoc_tensor *p, const idoc_tensor *t,               \
                       const idoc_tensor *dout, float n))                                          \
  /* dx += s * broadcast(scalar dout) over all elements: s * dout[0]. */                           \
  X(fill_grad, (idoc_tensor * dx, const idoc_tensor *dout, float s))                               \
  /* Optimizer: AdamW on one parameter (fp32 master weights/state; w may be bf16 on CUDA with an   \
   */                                                                                              \
  /* fp32 master copy kept by the caller). sum of squares of g into *out (f32 scalar,              \
   * accumulated). */                                                                              \
  X(adamw_step,                                                                                    \
    (idoc_tensor * w, const idoc_tensor *g, idoc_tensor *m, idoc_tensor *v, float lr, float beta1, \
     float beta2, float eps, float weight_decay, float grad_scale, int step))                      \
  X(sumsq, (idoc_tensor * out, const idoc_tensor *x))                                              \
  /* A step's gradient sums (stage/dist.c): acc (f64 or f32) += g (f32; bf16 on CUDA), then        \
   * g = 0; and g (f32) = (f32) acc (f64). */                                                      \
  X(grad_accumulate, (idoc_tensor * acc, idoc_tensor * g))                                         \
  X(grad_round_f64, (idoc_tensor * g, const idoc_tensor *acc))                                     \
  /* Next-token choice for n sequences (kernels/sample.h). Output i reads logits row rows[i]       \
   * (f32; bf16 on CUDA) [R, V]. With forced (i32 [n]) it takes token forced[i]; else the          \
   * repetition penalty on the tokens marked in seen[slots[i]] (u8 [S, V]; NULL: none), -inf on    \
   * suppressed (u8 [V] or NULL), then the first maximum (greedy) or the warpers and the draw at   \
   * u[i] (f64 [n] in [0, 1)), with work (f32, 7 V per row) as scratch. tok i32 [n]; logp,         \
   * logp_scaled f32 [n]: log_softmax of the raw row and of row / temperature at the token; and    \
   * seen[slots[i]][tok[i]] = 1. */                                                                \
  X(sample_tokens,                                                                                 \
    (idoc_tensor * tok, idoc_tensor * logp, idoc_tensor * logp_scaled, idoc_tensor * seen,         \
     idoc_tensor * work, const idoc_tensor *logits, const idoc_tensor *rows,                       \
     const idoc_tensor *slots, const idoc_tensor *forced, const idoc_tensor *suppressed,           \
     const idoc_tensor *u, const idoc_sample_opts *o))

// Device memory primitives (kernels/cuda/device.cu; abort with a clear message when the build
// has no CUDA or no GPU is present).
bool idoc_cuda_available(void); // built with CUDA and a device is present
bool idoc_cuda_simulated(void); // the device is the host SIMT simulator (a test tool)
int idoc_cuda_device_count(void);
void *idoc_cuda_malloc(size_t n);
void idoc_cuda_free(void *p);
void idoc_cuda_memcpy(void *dst, const void *src, size_t n, int kind); // 0 h2d, 1 d2h, 2 d2d
void idoc_cuda_memset0(void *p, size_t n);
void idoc_cuda_sync(void);
const char *idoc_cuda_device_name(void);
// Total memory of the device this process uses, in bytes (0 without CUDA or a device).
size_t idoc_cuda_device_memory(void);

// One function pointer per kernel.
typedef struct {
#define IDOC_KERNEL_FIELD(name, params) void(*name) params;
  IDOC_KERNELS(IDOC_KERNEL_FIELD)
#undef IDOC_KERNEL_FIELD
} idoc_kernel_table;

#define IDOC_KERNEL_DECL(name, params) void cpu_##name params;
IDOC_KERNELS(IDOC_KERNEL_DECL)
#undef IDOC_KERNEL_DECL

extern const idoc_kernel_table idoc_cpu_kernels;
// The CUDA table (kernels/cuda/table.cu), or NULL when the build has no CUDA.
const idoc_kernel_table *idoc_cuda_kernels(void);
const idoc_kernel_table *idoc_kernels(idoc_device dev);
// The named kernel for `dev`, aborting with a clear message if that backend lacks it:
// IDOC_K(dev, linear_fwd)(y, x, w, b);
#define IDOC_K(dev, name) (*idoc_kernel_or_die(idoc_kernels(dev)->name, #name, dev))
// (helper for IDOC_K: returns fn, or dies naming the kernel and device when fn is NULL)
#define idoc_kernel_or_die(fn, nm, dev) ((fn) ? (fn) : (idoc_kernel_missing(nm, dev), (fn)))
IDOC_NORETURN void idoc_kernel_missing(const char *name, idoc_device dev);
