// Next-token choice on the device, one block per sequence, so only the token ids and their two
// log-probs cross to the host per decode step. The parallel parts are exact whatever the thread
// order: the processed values, the first maximum, the k-th largest value (a radix select on
// the floats' order-preserving bits) and an index-ordered compaction of the candidates. The
// order-dependent sums (top-p's masses, the draw) then run on one thread with the host's code
// (kernels/sample.h) over the compacted candidates: a few with top-k (50 in the paper's
// configs), the whole vocabulary without it. The log-probs sum in double over the block (their
// float results equal the host's unless a sum lies within an ulp of a rounding boundary).
#include <stdint.h>

#include "kernels/cuda/common.cuh"

#define SAMPLE_THREADS 512

// Order-preserving key of a float (larger value, larger key); NaN never reaches it.
__device__ __forceinline__ uint32_t f2key(float v) {
  uint32_t b = __float_as_uint(v);
  return b & 0x80000000u ? ~b : b | 0x80000000u;
}
__device__ __forceinline__ float key2f(uint32_t k) {
  return __uint_as_float(k & 0x80000000u ? k & 0x7fffffffu : ~k);
}

struct op_add {
  template <typename T> __device__ __forceinline__ T operator()(T a, T b) const { return a + b; }
};
struct op_max { // NaN never wins
  __device__ __forceinline__ float operator()(float a, float b) const { return b > a ? b : a; }
};

// op over the block in a fixed order (warp butterflies, then one warp over the warps' values);
// every thread gets the result.
template <typename T, class Op> __device__ __forceinline__ T block_all(T v, T identity, Op op) {
  IDOC_SHARED(T, sh, [32]);
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  __syncthreads(); // sh may still be read by a previous call
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : identity;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v = op(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}

// The first index of the maximum (NaN entries never win; INT32_MAX when all are NaN).
__device__ __forceinline__ int block_argmax(float v, int i) {
  IDOC_SHARED(float, sv, [32]);
  IDOC_SHARED(int, si, [32]);
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    float w = __shfl_xor_sync(0xffffffffu, v, o);
    int k = __shfl_xor_sync(0xffffffffu, i, o);
    if (w > v || (w == v && k < i)) v = w, i = k;
  }
  __syncthreads();
  if (lane == 0) sv[wid] = v, si[wid] = i;
  __syncthreads();
  v = lane < nw ? sv[lane] : -INFINITY;
  i = lane < nw ? si[lane] : INT32_MAX;
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    float w = __shfl_xor_sync(0xffffffffu, v, o);
    int k = __shfl_xor_sync(0xffffffffu, i, o);
    if (w > v || (w == v && k < i)) v = w, i = k;
  }
  return i;
}

// The k-th largest of x[0, V) (1 <= k <= V, no NaN), counting repeats: four 8-bit digits of
// the keys, most significant first, each narrowing to the bin that holds the k-th.
__device__ float kth_largest(const float *x, int64_t V, int k) {
  IDOC_SHARED(int, hist, [256]);
  IDOC_SHARED(uint32_t, s_prefix, [1]);
  IDOC_SHARED(int, s_k, [1]);
  uint32_t prefix = 0, mask = 0;
  for (int shift = 24; shift >= 0; shift -= 8) {
    for (int b = threadIdx.x; b < 256; b += blockDim.x)
      hist[b] = 0;
    __syncthreads();
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      uint32_t key = f2key(x[j]);
      if ((key & mask) == prefix) atomicAdd(&hist[(key >> shift) & 255u], 1);
    }
    __syncthreads();
    if (threadIdx.x == 0) {
      int b = 255;
      while (hist[b] < k) // the bins above hold fewer than k
        k -= hist[b--];
      s_prefix[0] = prefix | ((uint32_t)b << shift);
      s_k[0] = k;
    }
    __syncthreads();
    prefix = s_prefix[0];
    k = s_k[0];
    mask |= 255u << shift;
    __syncthreads();
  }
  return key2f(prefix);
}

// Writes the entries of x[0, V) above -inf to out[] in index order; returns their number.
__device__ int compact(const float *x, int64_t V, idoc_sample_cand *out) {
  IDOC_SHARED(int, warp_n, [32]);
  IDOC_SHARED(int, s_base, [1]);
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  if (threadIdx.x == 0) s_base[0] = 0;
  __syncthreads();
  for (int64_t j0 = 0; j0 < V; j0 += blockDim.x) {
    int64_t j = j0 + threadIdx.x;
    float v = j < V ? x[j] : -INFINITY;
    bool keep = v > -INFINITY;
    unsigned bal = __ballot_sync(0xffffffffu, keep);
    if (lane == 0) warp_n[wid] = __popc(bal);
    __syncthreads();
    int before = s_base[0];
    for (int w = 0; w < wid; w++)
      before += warp_n[w];
    if (keep) out[before + __popc(bal & ((1u << lane) - 1u))] = {v, 0.0f, (int32_t)j};
    __syncthreads();
    if (threadIdx.x == 0)
      for (int w = 0; w < nw; w++)
        s_base[0] += warp_n[w];
    __syncthreads();
  }
  return s_base[0];
}

template <typename T>
__global__ void __launch_bounds__(SAMPLE_THREADS)
    sample_kernel(int32_t *tok, float *logp, float *logps, uint8_t *seen, float *work,
                  const T *logits, const int32_t *rows, const int32_t *slots, const int32_t *forced,
                  const uint8_t *sup, const double *u, idoc_sample_opts o, int64_t V) {
  IDOC_SHARED(int, s_tok, [1]);
  int64_t i = blockIdx.x;
  const T *row = logits + (int64_t)rows[i] * V;
  int t = forced ? forced[i] : -1;
  if (!forced) {
    float *x = work + i * 7 * V;
    idoc_sample_cand *L = reinterpret_cast<idoc_sample_cand *>(x + V), *L2 = L + V;
    const uint8_t *si = seen ? seen + (int64_t)slots[i] * V : nullptr;
    int best = INT32_MAX, finite = 0;
    float bv = -INFINITY;
    for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
      float v = to_f(row[j]);
      if (si && si[j]) v = v < 0 ? v * o.penalty : v / o.penalty;
      if (sup && sup[j]) v = -INFINITY;
      if (o.do_sample) {
        // NaN is out like -inf; the temperature divides the finite entries.
        v = v > -INFINITY ? v / o.temperature : -INFINITY;
        finite += v > -INFINITY;
      } else if (v == v && (best == INT32_MAX || v > bv)) {
        bv = v, best = (int)j; // the thread's first maximum
      }
      x[j] = v;
    }
    if (!o.do_sample) {
      best = block_argmax(bv, best);
      if (threadIdx.x == 0) {
        float x0 = x[0];
        s_tok[0] = best == INT32_MAX || x0 != x0 ? 0 : best; // the host's scan keeps a NaN x[0]
      }
    } else {
      int kept = block_all(finite, 0, op_add());
      __syncthreads(); // x complete
      if (o.top_k > 0 && o.top_k < kept) {
        float kth = kth_largest(x, V, o.top_k);
        for (int64_t j = threadIdx.x; j < V; j += blockDim.x)
          if (x[j] < kth) x[j] = -INFINITY;
        __syncthreads();
      }
      int n = compact(x, V, L);
      if (threadIdx.x == 0) {
        if (o.top_p < 1.0f && n > 1) {
          for (int k = 0; k < n; k++)
            L2[k] = L[k];
          float thr = idoc_sample_top_p(L2, n, (double)o.top_p);
          for (int k = 0; k < n && thr > -INFINITY; k++)
            if (L[k].v < thr) L[k].v = -INFINITY;
        }
        int pos = n > 0 ? idoc_sample_draw_strided(&L[0].v, n, 3, u[i]) : -1;
        s_tok[0] = pos >= 0 ? L[pos].i : 0; // 0: every token suppressed
      }
    }
    __syncthreads();
    t = s_tok[0];
  }
  // log_softmax of the raw row, and of row / temperature, at the token.
  float mx = -INFINITY;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    float v = to_f(row[j]);
    mx = v > mx ? v : mx;
  }
  mx = block_all(mx, -INFINITY, op_max());
  float tt = o.temperature;
  bool scaled = tt > 0 && tt != 1.0f;
  float mxs = scaled ? mx / tt : mx;
  double s = 0, ss = 0;
  for (int64_t j = threadIdx.x; j < V; j += blockDim.x) {
    float v = to_f(row[j]);
    s += expf(v - mx);
    if (scaled) ss += expf(v / tt - mxs);
  }
  s = block_all(s, 0.0, op_add());
  if (scaled) ss = block_all(ss, 0.0, op_add());
  if (threadIdx.x == 0) {
    float v = to_f(row[t]);
    float lp = (float)((double)v - mx - log(s));
    tok[i] = t;
    logp[i] = lp;
    logps[i] = scaled ? (float)((double)(v / tt) - mxs - log(ss)) : lp;
  }
}

// The marks after every block's choice (a block reads its own slot's marks only, but two
// outputs may share a slot when forced tokens are appended).
__global__ void mark_seen_kernel(uint8_t *seen, const int32_t *slots, const int32_t *tok, int64_t n,
                                 int64_t V) {
  int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) seen[(int64_t)slots[i] * V + tok[i]] = 1;
}

extern "C" void cuda_sample_tokens(idoc_tensor *tok, idoc_tensor *logp, idoc_tensor *logp_scaled,
                                   idoc_tensor *seen, idoc_tensor *work, const idoc_tensor *logits,
                                   const idoc_tensor *rows, const idoc_tensor *slots,
                                   const idoc_tensor *forced, const idoc_tensor *suppressed,
                                   const idoc_tensor *u, const idoc_sample_opts *o) {
  const char *k = "sample_tokens";
  cu_on_gpu(k, tok), cu_on_gpu(k, logp), cu_on_gpu(k, logp_scaled), cu_on_gpu(k, seen);
  cu_on_gpu(k, work), cu_on_gpu(k, logits), cu_on_gpu(k, rows), cu_on_gpu(k, slots);
  cu_on_gpu(k, forced), cu_on_gpu(k, suppressed), cu_on_gpu(k, u);
  cu_dtype_is(k, tok, IDOC_I32), cu_dtype_is(k, rows, IDOC_I32), cu_dtype_is(k, slots, IDOC_I32);
  cu_dtype_is(k, forced, IDOC_I32), cu_dtype_is(k, logp, IDOC_F32);
  cu_dtype_is(k, logp_scaled, IDOC_F32), cu_dtype_is(k, work, IDOC_F32);
  cu_dtype_is(k, seen, IDOC_U8), cu_dtype_is(k, suppressed, IDOC_U8), cu_dtype_is(k, u, IDOC_F64);
  int64_t n = idoc_numel(tok), V = logits->shape[1];
  IDOC_CHECK(logits->ndim == 2 && V <= INT32_MAX && n <= INT32_MAX,
             "cuda %s: logits must be [R, V] with V < 2^31", k);
  IDOC_CHECK(forced || (work && idoc_numel(work) >= n * 7 * V),
             "cuda %s: work holds %lld floats, need %lld", k,
             work ? (long long)idoc_numel(work) : 0LL, (long long)(n * 7 * V));
  IDOC_CHECK(!seen || slots, "cuda %s: seen without slots", k);
  IDOC_CHECK(forced || !o->do_sample || u, "cuda %s: sampling without uniform draws", k);
  if (n == 0) return;
  IDOC_CU_DISPATCH(logits->dtype, k, T, {
    IDOC_LAUNCH(sample_kernel<T>, (unsigned)n, SAMPLE_THREADS, 0, idoc_cu_stream())
    ((int32_t *)tok->data, (float *)logp->data, (float *)logp_scaled->data,
     seen ? (uint8_t *)seen->data : nullptr, work ? (float *)work->data : nullptr,
     (const T *)logits->data, (const int32_t *)rows->data,
     slots ? (const int32_t *)slots->data : nullptr,
     forced ? (const int32_t *)forced->data : nullptr,
     suppressed ? (const uint8_t *)suppressed->data : nullptr,
     u ? (const double *)u->data : nullptr, *o, V);
  });
  CUDA_LAUNCH_CHECK();
  if (!seen) return;
  IDOC_LAUNCH(mark_seen_kernel, cu_blocks(n), 256, 0, idoc_cu_stream())
  ((uint8_t *)seen->data, (const int32_t *)slots->data, (const int32_t *)tok->data, n, V);
  CUDA_LAUNCH_CHECK();
}
