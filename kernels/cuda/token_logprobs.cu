// Per-token log-probabilities and entropies of softmax(logits), one block per row: a single
// pass with an online (max, sum of exp, sum of exp * offset) per thread merged across the block,
// then logp = z[target] - lse and H = log s - t / s; fp32 math whatever the storage.
#include <stdint.h>

#include "kernels/cuda/common.cuh"

#define TLP_THREADS 512

// Over the elements seen, relative to their max m: s = sum exp(z - m), t = sum exp(z - m)(z - m).
// Moving the reference from m to M > m scales both by exp(m - M) and shifts t by (m - M) s.
struct ent_acc {
  float m, s, t;
  __device__ __forceinline__ void add(float v) {
    if (v == -INFINITY) return; // p = 0: contributes nothing
    if (m == -INFINITY) {
      m = v, s = 1.0f, t = 0.0f;
    } else if (v > m) {
      float c = expf(m - v);
      t = c * (t + (m - v) * s);
      s = s * c + 1.0f;
      m = v;
    } else {
      float d = v - m, e = expf(d);
      s += e;
      t += e * d;
    }
  }
  __device__ __forceinline__ void merge(float m2, float s2, float t2) {
    if (m2 == -INFINITY) return;
    if (m == -INFINITY) {
      m = m2, s = s2, t = t2;
      return;
    }
    float M = fmaxf(m, m2), c1 = expf(m - M), c2 = expf(m2 - M);
    t = c1 * (t + (m - M) * s) + c2 * (t2 + (m2 - M) * s2);
    s = c1 * s + c2 * s2;
    m = M;
  }
};

// The whole block's accumulator (every thread gets it).
__device__ ent_acc block_ent(ent_acc a) {
  IDOC_SHARED(float, sm, [32]);
  IDOC_SHARED(float, ss, [32]);
  IDOC_SHARED(float, st, [32]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    a.merge(__shfl_xor_sync(0xffffffffu, a.m, o), __shfl_xor_sync(0xffffffffu, a.s, o),
            __shfl_xor_sync(0xffffffffu, a.t, o));
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) sm[wid] = a.m, ss[wid] = a.s, st[wid] = a.t;
  __syncthreads();
  ent_acc b = {-INFINITY, 0.0f, 0.0f};
  if (lane < nw) b = {sm[lane], ss[lane], st[lane]};
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    b.merge(__shfl_xor_sync(0xffffffffu, b.m, o), __shfl_xor_sync(0xffffffffu, b.s, o),
            __shfl_xor_sync(0xffffffffu, b.t, o));
  return b;
}

template <typename T>
__global__ void __launch_bounds__(TLP_THREADS)
    tlp_fwd_kernel(float *logp, float *lse, float *entropy, const T *logits, const int32_t *targets,
                   int64_t V) {
  int64_t r = blockIdx.x;
  const T *row = logits + r * V;
  ent_acc a = {-INFINITY, 0.0f, 0.0f};
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
    a.add(to_f(row[j]));
  ent_acc b = block_ent(a);
  if (threadIdx.x == 0) {
    float ls = logf(b.s), l = b.m + ls;
    int t = targets[r];
    lse[r] = l;
    if (entropy) entropy[r] = ls - b.t / b.s;
    // An out-of-range target cannot abort from the device: it makes logp NaN instead.
    logp[r] = t < 0 ? 0.0f : t < V ? to_f(row[t]) - l : NAN;
  }
}

// dz_j += -p_j (g_logp + g_H (log p_j + H)) + [j == target] g_logp.
template <typename T>
__global__ void __launch_bounds__(TLP_THREADS)
    tlp_bwd_kernel(T *dlogits, const T *logits, const float *lse, const int32_t *targets,
                   const float *entropy, const float *dlogp, const float *dentropy, int64_t V) {
  int64_t r = blockIdx.x;
  int t = targets[r];
  float gl = dlogp && t >= 0 ? dlogp[r] : 0.0f, gh = dentropy ? dentropy[r] : 0.0f;
  if (gl == 0.0f && gh == 0.0f) return;
  float L = lse[r], h = gh != 0.0f ? entropy[r] : 0.0f;
  const T *row = logits + r * V;
  T *drow = dlogits + r * V;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    float lp = to_f(row[j]) - L, p = expf(lp);
    float d = (p > 0.0f ? -p * (gl + gh * (lp + h)) : 0.0f) + (j == t ? gl : 0.0f);
    drow[j] = from_f<T>(to_f(drow[j]) + d);
  }
}

static void tlp_check(const char *k, const idoc_tensor *logits, const idoc_tensor *targets) {
  cu_on_gpu(k, logits), cu_on_gpu(k, targets), cu_dtype_is(k, targets, IDOC_I32);
  IDOC_CHECK(logits->ndim == 2 && idoc_numel(targets) == logits->shape[0],
             "cuda %s: logits must be [N, V] and targets [N]", k);
  IDOC_CHECK(logits->shape[0] <= INT32_MAX, "cuda %s: too many rows", k);
}

extern "C" void cuda_token_logprobs_fwd(idoc_tensor *logp, idoc_tensor *lse, idoc_tensor *entropy,
                                        const idoc_tensor *logits, const idoc_tensor *targets) {
  const char *k = "token_logprobs_fwd";
  tlp_check(k, logits, targets);
  cu_on_gpu(k, logp), cu_on_gpu(k, lse), cu_on_gpu(k, entropy);
  cu_dtype_is(k, logp, IDOC_F32), cu_dtype_is(k, lse, IDOC_F32), cu_dtype_is(k, entropy, IDOC_F32);
  int64_t n = logits->shape[0], v = logits->shape[1];
  if (n == 0) return;
  IDOC_CU_DISPATCH(logits->dtype, k, T, {
    IDOC_LAUNCH(tlp_fwd_kernel<T>, (unsigned)n, TLP_THREADS, 0, idoc_cu_stream())
    ((float *)logp->data, (float *)lse->data, entropy ? (float *)entropy->data : nullptr,
     (const T *)logits->data, (const int32_t *)targets->data, v);
  });
  CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_token_logprobs_bwd(idoc_tensor *dlogits, const idoc_tensor *logits,
                                        const idoc_tensor *lse, const idoc_tensor *targets,
                                        const idoc_tensor *entropy, const idoc_tensor *dlogp,
                                        const idoc_tensor *dentropy) {
  const char *k = "token_logprobs_bwd";
  if (!dlogits || (!dlogp && !dentropy)) return;
  tlp_check(k, logits, targets);
  IDOC_CHECK(!dentropy || entropy, "cuda %s: dentropy needs the forward's entropy", k);
  cu_on_gpu(k, dlogits), cu_on_gpu(k, lse), cu_on_gpu(k, entropy), cu_on_gpu(k, dlogp),
      cu_on_gpu(k, dentropy);
  cu_same_dtype(k, dlogits, logits), cu_dtype_is(k, lse, IDOC_F32);
  cu_dtype_is(k, entropy, IDOC_F32), cu_dtype_is(k, dlogp, IDOC_F32);
  cu_dtype_is(k, dentropy, IDOC_F32);
  int64_t n = logits->shape[0], v = logits->shape[1];
  if (n == 0) return;
  IDOC_CU_DISPATCH(logits->dtype, k, T, {
    IDOC_LAUNCH(tlp_bwd_kernel<T>, (unsigned)n, TLP_THREADS, 0, idoc_cu_stream())
    ((T *)dlogits->data, (const T *)logits->data, (const float *)lse->data,
     (const int32_t *)targets->data, entropy ? (const float *)entropy->data : nullptr,
     dlogp ? (const float *)dlogp->data : nullptr,
     dentropy ? (const float *)dentropy->data : nullptr, v);
  });
  CUDA_LAUNCH_CHECK();
}
