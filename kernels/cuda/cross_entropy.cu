// Fused softmax cross-entropy, one block per row: a single pass over the logits with an online
// (max, sum of exp) per thread, merged across the block; fp32 math whatever the storage. The
// aligned middle of each row is read with 16-byte loads.
#include <stdint.h>

#include "kernels/cuda/common.cuh"

#define CE_THREADS 512

// (m, s) represents s * exp(m): the sum of exp over the elements seen, relative to their max.
struct lse_acc {
  float m, s;
  __device__ __forceinline__ void add(float v) {
    if (v > m) {
      s = s * expf(m - v) + 1.0f; // m = -inf: s is 0 and expf(-inf) is 0
      m = v;
    } else if (m != -INFINITY) {
      s += expf(v - m);
    }
  }
  __device__ __forceinline__ void merge(float m2, float s2) {
    float M = fmaxf(m, m2);
    if (M == -INFINITY) return; // both empty
    s = s * expf(m - M) + s2 * expf(m2 - M);
    m = M;
  }
};

// log(sum exp) of the whole block's accumulators (every thread gets it).
__device__ float block_lse(lse_acc a) {
  IDOC_SHARED(float, sm, [32]);
  IDOC_SHARED(float, ss, [32]);
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    a.merge(__shfl_xor_sync(0xffffffffu, a.m, o), __shfl_xor_sync(0xffffffffu, a.s, o));
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (lane == 0) sm[wid] = a.m, ss[wid] = a.s;
  __syncthreads();
  lse_acc b = {-INFINITY, 0.0f};
  if (lane < nw) b = {sm[lane], ss[lane]};
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    b.merge(__shfl_xor_sync(0xffffffffu, b.m, o), __shfl_xor_sync(0xffffffffu, b.s, o));
  return b.m + logf(b.s);
}

// Elements before the first 16-byte boundary of p (all of n when there is none in range).
template <typename T> __device__ __forceinline__ int64_t head_len(const T *p, int64_t n) {
  int64_t h = (int64_t)(((16 - ((uintptr_t)p & 15)) & 15) / sizeof(T));
  return h < n ? h : n;
}

template <typename T>
__global__ void __launch_bounds__(CE_THREADS)
    ce_fwd_kernel(float *losses, float *lse, const T *logits, const int32_t *targets, int64_t V,
                  int ignore_index) {
  constexpr int VN = 16 / sizeof(T);
  int64_t r = blockIdx.x;
  const T *row = logits + r * V;
  lse_acc a = {-INFINITY, 0.0f};
  int64_t head = head_len(row, V), nvec = (V - head) / VN;
  for (int64_t j = threadIdx.x; j < head; j += blockDim.x)
    a.add(to_f(row[j]));
  for (int64_t q = threadIdx.x; q < nvec; q += blockDim.x) {
    vec16<T> e = load16_ro(row + head + q * VN);
#pragma unroll
    for (int i = 0; i < VN; i++)
      a.add(to_f(e.v[i]));
  }
  for (int64_t j = head + nvec * VN + threadIdx.x; j < V; j += blockDim.x)
    a.add(to_f(row[j]));
  float l = block_lse(a);
  if (threadIdx.x == 0) {
    int t = targets[r];
    lse[r] = l;
    // An out-of-range target cannot abort from the device: it makes the loss NaN instead.
    losses[r] = t == ignore_index ? 0.0f : (t >= 0 && t < V) ? l - to_f(row[t]) : NAN;
  }
}

// dlogits += dscale * (softmax - onehot(target)) for kept rows; with dout non-NULL the scale is
// dout[0] / n instead (the mean's backward, its upstream gradient read on the device).
template <typename T>
__global__ void __launch_bounds__(CE_THREADS)
    ce_bwd_kernel(T *dlogits, const T *logits, const float *lse, const int32_t *targets, int64_t V,
                  int ignore_index, float dscale, const float *dout, float n) {
  constexpr int VN = 16 / sizeof(T);
  int64_t r = blockIdx.x;
  int t = targets[r];
  if (t == ignore_index) return;
  if (dout) dscale = n > 0 ? dout[0] / n : 0.0f;
  const T *row = logits + r * V;
  T *drow = dlogits + r * V;
  float L = lse[r];
  auto upd = [&](int64_t j, float v, float d) {
    return d + dscale * (expf(v - L) - (j == t ? 1.0f : 0.0f));
  };
  // 16-byte accesses only when both rows share their alignment (the usual case).
  bool vec = ((uintptr_t)row & 15) == ((uintptr_t)drow & 15);
  int64_t head = vec ? head_len(row, V) : V, nvec = vec ? (V - head) / VN : 0;
  for (int64_t j = threadIdx.x; j < head; j += blockDim.x)
    drow[j] = from_f<T>(upd(j, to_f(row[j]), to_f(drow[j])));
  for (int64_t q = threadIdx.x; q < nvec; q += blockDim.x) {
    int64_t j0 = head + q * VN;
    vec16<T> el = load16_ro(row + j0), ed = load16(drow + j0);
#pragma unroll
    for (int i = 0; i < VN; i++)
      ed.v[i] = from_f<T>(upd(j0 + i, to_f(el.v[i]), to_f(ed.v[i])));
    store16(drow + j0, ed);
  }
  for (int64_t j = head + nvec * VN + threadIdx.x; j < V; j += blockDim.x)
    drow[j] = from_f<T>(upd(j, to_f(row[j]), to_f(drow[j])));
}

static void ce_check(const char *k, const idoc_tensor *logits, const idoc_tensor *targets) {
  cu_on_gpu(k, logits), cu_on_gpu(k, targets), cu_dtype_is(k, targets, IDOC_I32);
  IDOC_CHECK(logits->ndim == 2 && idoc_numel(targets) == logits->shape[0],
             "cuda %s: logits must be [N, V] and targets [N]", k);
  IDOC_CHECK(logits->shape[0] <= INT32_MAX, "cuda %s: too many rows", k);
}

extern "C" void cuda_cross_entropy_fwd(idoc_tensor *losses, idoc_tensor *lse,
                                       const idoc_tensor *logits, const idoc_tensor *targets,
                                       int ignore_index) {
  const char *k = "cross_entropy_fwd";
  ce_check(k, logits, targets);
  cu_on_gpu(k, losses), cu_on_gpu(k, lse);
  cu_dtype_is(k, losses, IDOC_F32), cu_dtype_is(k, lse, IDOC_F32);
  int64_t n = logits->shape[0], v = logits->shape[1];
  if (n == 0) return;
  IDOC_CU_DISPATCH(logits->dtype, k, T, {
    IDOC_LAUNCH(ce_fwd_kernel<T>, (unsigned)n, CE_THREADS, 0, idoc_cu_stream())
    ((float *)losses->data, (float *)lse->data, (const T *)logits->data,
     (const int32_t *)targets->data, v, ignore_index);
  });
  CUDA_LAUNCH_CHECK();
}

static void ce_bwd(const char *k, idoc_tensor *dlogits, const idoc_tensor *logits,
                   const idoc_tensor *lse, const idoc_tensor *targets, int ignore_index,
                   float dscale, const idoc_tensor *dout, float dn) {
  ce_check(k, logits, targets);
  cu_on_gpu(k, dlogits), cu_on_gpu(k, lse);
  cu_same_dtype(k, dlogits, logits), cu_dtype_is(k, lse, IDOC_F32);
  if (dout) {
    cu_on_gpu(k, dout), cu_dtype_is(k, dout, IDOC_F32);
    IDOC_CHECK(idoc_numel(dout) >= 1, "cuda %s: dout is empty", k);
  }
  int64_t n = logits->shape[0], v = logits->shape[1];
  if (n == 0 || !dlogits) return;
  IDOC_CU_DISPATCH(logits->dtype, k, T, {
    IDOC_LAUNCH(ce_bwd_kernel<T>, (unsigned)n, CE_THREADS, 0, idoc_cu_stream())
    ((T *)dlogits->data, (const T *)logits->data, (const float *)lse->data,
     (const int32_t *)targets->data, v, ignore_index, dscale,
     dout ? (const float *)dout->data : (const float *)NULL, dn);
  });
  CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_cross_entropy_bwd(idoc_tensor *dlogits, const idoc_tensor *logits,
                                       const idoc_tensor *lse, const idoc_tensor *targets,
                                       int ignore_index, float dscale) {
  ce_bwd("cross_entropy_bwd", dlogits, logits, lse, targets, ignore_index, dscale, NULL, 0.0f);
}

extern "C" void cuda_cross_entropy_mean_bwd(idoc_tensor *dlogits, const idoc_tensor *logits,
                                            const idoc_tensor *lse, const idoc_tensor *targets,
                                            int ignore_index, const idoc_tensor *dout, float n) {
  IDOC_CHECK(dout, "cuda cross_entropy_mean_bwd: dout is NULL");
  ce_bwd("cross_entropy_mean_bwd", dlogits, logits, lse, targets, ignore_index, 0.0f, dout, n);
}
