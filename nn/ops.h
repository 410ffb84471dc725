// Differentiable ops. Each computes its forward with a kernel (kernels/ops.h) on the inputs'
// device and, in grad mode, records one tape node. Shapes are checked; a mismatch aborts with
// the op name and the shapes (it is a programming error, not user input).
//
// Conventions: activations are row-major with tokens (or rows) first: [T, C] for sequences,
// [B, C, H, W] for image maps. Linear weights are PyTorch's [out, in]. Index tensors are i32 on
// the same device as the data. Segment offsets (cu_seqlens) are idoc_segments: host int32 arrays
// of n_seg + 1 entries starting at 0, with a copy on the context's device.
#pragma once
#include "nn/autograd.h"

// ---- shape ---------------------------------------------------------------------------------
// Same storage, new shape; gradients flow back (no copy when the input has no gradient yet).
idoc_tensor *idoc_reshape(idoc_ctx *c, idoc_tensor *x, int ndim, const int64_t *shape);
// x in dtype dt (f32 <-> bf16; x itself when it has dt already); the gradient flows back,
// rounded to x's dtype. Joins a bf16 model part to an f32 one (the LLM and the decoder).
idoc_tensor *idoc_cast(idoc_ctx *c, idoc_tensor *x, idoc_dtype dt);
// Concatenation of n tensors along `dim` (all other dims equal).
idoc_tensor *idoc_concat(idoc_ctx *c, idoc_tensor *const *xs, int n, int dim);
// x[..., start:start+len, ...] along `dim` (a copy).
idoc_tensor *idoc_slice(idoc_ctx *c, idoc_tensor *x, int dim, int64_t start, int64_t len);
// out[i, :] = x[idx[i], :] for x viewed as [N, inner] (inner = product of dims 1..);
// backward scatter-adds. Repeated indices are allowed.
idoc_tensor *idoc_gather_rows(idoc_ctx *c, idoc_tensor *x, idoc_tensor *idx);
// out = base with rows idx[i] replaced by src[i] (indices distinct). Gradient: base gets dout
// with those rows zeroed, src gets dout[idx].
idoc_tensor *idoc_scatter_rows(idoc_ctx *c, idoc_tensor *base, idoc_tensor *src, idoc_tensor *idx);
// [B, M, N] -> [B, N, M] (a 2-D x is treated as B = 1).
idoc_tensor *idoc_transpose(idoc_ctx *c, idoc_tensor *x);

// ---- linear algebra ------------------------------------------------------------------------
// y[N, O] = x[N, I] · w[O, I]^T + b[O]; b may be NULL. x may have any leading dims.
idoc_tensor *idoc_linear(idoc_ctx *c, idoc_tensor *x, idoc_tensor *w, idoc_tensor *b);
// Batched matmul: a [B, M, K] (or [B, K, M] if trans_a), b [B, K, N] (or [B, N, K] if trans_b)
// -> [B, M, N]. 2-D operands are B = 1.
idoc_tensor *idoc_matmul(idoc_ctx *c, idoc_tensor *a, idoc_tensor *b, bool trans_a, bool trans_b);
// out[t, :] = table[ids[t], :]; ids i32 [T] (any shape; output is ids.shape + [C]).
idoc_tensor *idoc_embedding(idoc_ctx *c, idoc_tensor *table, idoc_tensor *ids);

// ---- elementwise ---------------------------------------------------------------------------
// a + b, a * b: b has a's shape, or b's numel divides a's and b repeats over a's leading dims
// (a viewed as [outer, numel(b)]).
idoc_tensor *idoc_add(idoc_ctx *c, idoc_tensor *a, idoc_tensor *b);
idoc_tensor *idoc_mul(idoc_ctx *c, idoc_tensor *a, idoc_tensor *b);
idoc_tensor *idoc_scale(idoc_ctx *c, idoc_tensor *x, float s);
idoc_tensor *idoc_silu(idoc_ctx *c, idoc_tensor *x);
idoc_tensor *idoc_gelu(idoc_ctx *c, idoc_tensor *x); // exact (erf)
idoc_tensor *idoc_relu(idoc_ctx *c, idoc_tensor *x);
idoc_tensor *idoc_sigmoid(idoc_ctx *c, idoc_tensor *x);
idoc_tensor *idoc_sin(idoc_ctx *c, idoc_tensor *x); // elementwise, for positional encodings
idoc_tensor *idoc_cos(idoc_ctx *c, idoc_tensor *x);
// silu(gate) * up (same shapes).
idoc_tensor *idoc_swiglu(idoc_ctx *c, idoc_tensor *gate, idoc_tensor *up);

// ---- normalization -------------------------------------------------------------------------
// Over the last dim C: y = x * rsqrt(mean(x^2) + eps) * w.
idoc_tensor *idoc_rmsnorm(idoc_ctx *c, idoc_tensor *x, idoc_tensor *w, float eps);
// Over the last dim C: y = (x - mean) * rsqrt(var + eps) * w + b (biased variance).
idoc_tensor *idoc_layernorm(idoc_ctx *c, idoc_tensor *x, idoc_tensor *w, idoc_tensor *b, float eps);
// NCHW, over channels at each pixel: y[b,c,h,w] = x * rsqrt(mean_c(x^2) + eps) * scale[c].
idoc_tensor *idoc_rmsnorm_channels(idoc_ctx *c, idoc_tensor *x, idoc_tensor *scale, float eps);

// ---- attention -----------------------------------------------------------------------------
// Rotary embedding on x [T, H * D] with per-token tables cos/sin [T, D/2]: for each head and
// j < D/2, (x_j, x_{j+D/2}) is rotated by the angle whose cos/sin are at [t, j] (NeoX /
// rotate_half convention). 1-D RoPE, Qwen's 3-D M-RoPE and the 2-D vision rotary differ only in
// how the tables are built.
idoc_tensor *idoc_rotary(idoc_ctx *c, idoc_tensor *x, idoc_tensor *cos, idoc_tensor *sin,
                         int n_heads);
// Packed-segment offsets (cu_seqlens), made once per forward and shared by every attention call
// over the same rows: `cu` is the host copy (n_seg + 1 entries, in the step arena) and `dev` the
// same offsets as an i32 [n_seg + 1] tensor on the context's device, so no layer uploads them.
typedef struct {
  const int32_t *cu;
  idoc_tensor *dev;
  int n_seg;
} idoc_segments;
// Checks the offsets (n_seg >= 1, cu[0] == 0, non-decreasing; empty segments allowed) and copies
// them to the context's step arena (host and device), so they live until the context is reset.
idoc_segments idoc_segments_new(idoc_ctx *c, const int32_t *cu, int n_seg);

// Multi-head attention over packed variable-length segments. q [Tq, Hq*D], k and v [Tk, Hkv*D],
// Hq a multiple of Hkv (query head h uses kv head h / (Hq/Hkv)). Segment s covers query rows
// sq->cu[s]..sq->cu[s+1] and key rows sk->cu[s]..sk->cu[s+1] (sq and sk have the same n_seg and
// may be the same object; sq->cu[n_seg] = Tq, sk->cu[n_seg] = Tk). Causal masking is bottom-right
// aligned (query i of a segment with Lq queries and Lk keys sees keys j <= i + Lk - Lq); a row
// that sees no key gives 0. Softmax in fp32 with the given scale. Output [Tq, Hq*D].
idoc_tensor *idoc_attention(idoc_ctx *c, idoc_tensor *q, idoc_tensor *k, idoc_tensor *v,
                            const idoc_segments *sq, const idoc_segments *sk, int n_heads,
                            int n_kv_heads, bool causal, float scale);

// ---- convolution (NCHW) --------------------------------------------------------------------
// Stride-1 conv with kernel k x k and zero padding `pad` (pad = k/2 is "same" for odd k).
// w [Cout, Cin, k, k], b [Cout] or NULL.
idoc_tensor *idoc_conv2d(idoc_ctx *c, idoc_tensor *x, idoc_tensor *w, idoc_tensor *b, int pad);
// Transposed conv, PyTorch semantics: w [Cin, Cout, k, k], out = (H-1)*stride - 2*pad + k +
// output_padding. Covers k3 s2 p1 op1 (the heatmap upsampler) and k2 s2 (SAM).
idoc_tensor *idoc_conv_transpose2d(idoc_ctx *c, idoc_tensor *x, idoc_tensor *w, idoc_tensor *b,
                                   int stride, int pad, int output_padding);

// ---- losses and reductions -----------------------------------------------------------------
// Mean softmax cross-entropy of logits [N, V] against targets i32 [N]; rows whose target is
// ignore_index are skipped (fp32 math; returns a scalar f32 tensor; 0 when every row is ignored).
// The kept rows are counted on the host: targets on the host are counted there and uploaded
// once; targets on the logits' device are read back for the count.
idoc_tensor *idoc_cross_entropy(idoc_ctx *c, idoc_tensor *logits, idoc_tensor *targets,
                                int ignore_index);
// Log-probability of each row's target under softmax(logits): logits [T, V] (f32 or, on CUDA,
// bf16), targets i32 [T] -> logp f32 [T] = logits[t, targets[t]] - logsumexp(logits[t, :]), fp32
// math (double on the CPU). A row whose target is negative is not scored: logp 0, no gradient.
// With `entropy` non-NULL, *entropy receives f32 [T] = -sum_j p_j log p_j of each row's softmax,
// differentiable as well (one tape node serves both outputs).
idoc_tensor *idoc_token_logprobs(idoc_ctx *c, idoc_tensor *logits, idoc_tensor *targets,
                                 idoc_tensor **entropy);
// The LM head fused with its loss: idoc_cross_entropy / idoc_token_logprobs of h [N, H] w^T
// (w [V, H], no bias) computed `chunk` rows at a time, so no [N, V] logits buffer exists; the
// chunk's logits are recomputed in backward. chunk <= 0 or >= N: the plain linear + loss ops
// (the same values bit for bit); otherwise the same math, with the head's weight gradient
// accumulated chunk by chunk (rounding differs from one GEMM over all rows).
idoc_tensor *idoc_head_cross_entropy(idoc_ctx *c, idoc_tensor *h, idoc_tensor *w,
                                     idoc_tensor *targets, int ignore_index, int64_t chunk);
idoc_tensor *idoc_head_token_logprobs(idoc_ctx *c, idoc_tensor *h, idoc_tensor *w,
                                      idoc_tensor *targets, idoc_tensor **entropy, int64_t chunk);
// mean((pred - target)^2) over all elements; target gets no gradient.
idoc_tensor *idoc_mse(idoc_ctx *c, idoc_tensor *pred, idoc_tensor *target);
idoc_tensor *idoc_sum(idoc_ctx *c, idoc_tensor *x);
idoc_tensor *idoc_mean(idoc_ctx *c, idoc_tensor *x);
