// Scalar reference attention over packed variable-length segments (GQA, causal bottom-right
// aligned, cross attention, empty segments), fp32 softmax and accumulation whatever the storage.
// Tensor-core flash attention is to come; this one is the numerics it will be checked against.
//
// One warp per (query row, head) for the forward and dq, one per (key row, kv head) for dk/dv,
// so every output element is written by exactly one warp (no atomics, deterministic). A warp
// finds its row's segment by a binary search over the offsets on the device. Keys (or, for
// dk/dv, query rows) go 32 at a time: lane r computes the full dot product of the chunk's r-th
// row with the warp's own row (kept in shared memory), the chunk's softmax weights go through
// shared memory, and then each lane accumulates the weighted rows over the columns it owns.
// Columns are owned in units of W elements (W = 16 bytes of storage when the head dim and the
// pointers allow 128-bit loads, else 1): lane l owns units l, l + 32, ...; its accumulators live
// in a lane-private slice of shared memory, so any head dim fits (up to about 3000, where the
// 48 KiB of shared memory run out with one warp per block).
#include <stdint.h>

#include <initializer_list>

#include "kernels/cuda/common.cuh"

#define ATT_WARPS 4 // warps per block (at most; fewer when a huge head dim needs the memory)

struct att_geom {
  int64_t tq, tk, ldq, ldk; // rows of q and k, their row strides (elements)
  int d, n_heads, group, n_seg;
  bool causal;
  float scale;
  int nu, tu; // units of W per head row, and unit slots per lane (ceil(nu / 32))
};

// Per-warp shared memory layout (floats): own rows [rows * d], then `accs` lane-private
// accumulators of tu * W * 32 floats each, then `bufs` chunk buffers of 32 floats.
__host__ __device__ __forceinline__ int64_t att_warp_floats(const att_geom &g, int W, int rows,
                                                            int accs, int bufs) {
  return (int64_t)rows * g.d + (int64_t)accs * g.tu * W * 32 + 32 * bufs;
}

// Segment of `row`: the last s < n_seg with cu[s] <= row (empty segments are skipped over).
__device__ __forceinline__ int seg_of(const int32_t *cu, int n_seg, int64_t row) {
  int lo = 0, hi = n_seg - 1;
  while (lo < hi) {
    int mid = (lo + hi + 1) >> 1;
    if (cu[mid] <= row)
      lo = mid;
    else
      hi = mid - 1;
  }
  return lo;
}

// Keys visible to local query row i of a segment with lq queries and lk keys, as the CPU
// kernel's visible(): causal masking is bottom-right aligned (row i sees keys j <= i + lk - lq).
__device__ __forceinline__ int64_t n_visible(bool causal, int64_t lq, int64_t lk, int64_t i) {
  if (!causal) return lk;
  int64_t n = i + lk - lq + 1;
  return n < 0 ? 0 : n > lk ? lk : n;
}

// W consecutive elements as floats: one 16-byte load when W fills 16 bytes, else W scalar loads.
// _ro: through the read-only cache (only for tensors the kernel does not write).
template <typename T, int W> __device__ __forceinline__ void ld_ro(const T *p, float *f) {
  if constexpr (W * sizeof(T) == 16) {
    vec16<T> e = load16_ro(p);
#pragma unroll
    for (int i = 0; i < W; i++)
      f[i] = to_f(e.v[i]);
  } else {
#pragma unroll
    for (int i = 0; i < W; i++)
      f[i] = to_f(p[i]);
  }
}
template <typename T, int W> __device__ __forceinline__ void ld(const T *p, float *f) {
  if constexpr (W * sizeof(T) == 16) {
    vec16<T> e = load16(p);
#pragma unroll
    for (int i = 0; i < W; i++)
      f[i] = to_f(e.v[i]);
  } else {
#pragma unroll
    for (int i = 0; i < W; i++)
      f[i] = to_f(p[i]);
  }
}
template <typename T, int W> __device__ __forceinline__ void st(T *p, const float *f) {
  if constexpr (W * sizeof(T) == 16) {
    vec16<T> e;
#pragma unroll
    for (int i = 0; i < W; i++)
      e.v[i] = from_f<T>(f[i]);
    store16(p, e);
  } else {
#pragma unroll
    for (int i = 0; i < W; i++)
      p[i] = from_f<T>(f[i]);
  }
}

// The warp's head row (d elements at p) into shared memory (every lane reads all of it later).
template <typename T, int W>
__device__ __forceinline__ void row_to_shared(float *dst, const T *p, const att_geom &g, int lane) {
  for (int t = 0; t < g.tu; t++) {
    int u = lane + 32 * t;
    if (u < g.nu) ld_ro<T, W>(p + u * W, dst + u * W);
  }
}

// Dot product of a shared fp32 row with a head row in memory, in column order.
template <typename T, int W>
__device__ __forceinline__ float dot_row(const float *a, const T *p, const att_geom &g) {
  float s = 0.0f, f[W];
  for (int u = 0; u < g.nu; u++) {
    ld_ro<T, W>(p + u * W, f);
#pragma unroll
    for (int e = 0; e < W; e++)
      s += a[u * W + e] * f[e];
  }
  return s;
}

// acc += sum_{r < n} w[r] * row(r) over the lane's columns; row(r) points at the chunk's r-th
// head row. acc is the lane-private slice (index (t * W + e) * 32 + lane), scaled by `keep`
// first (the online softmax's rescaling; 1 elsewhere).
template <typename T, int W, class RowF>
__device__ __forceinline__ void acc_rows(float *acc, const float *w, int n, RowF row, float keep,
                                         const att_geom &g, int lane) {
  for (int t = 0; t < g.tu; t++) {
    int u = lane + 32 * t;
    if (u >= g.nu) break;
    float a[W], f[W];
#pragma unroll
    for (int e = 0; e < W; e++)
      a[e] = acc[(t * W + e) * 32 + lane] * keep;
    for (int r = 0; r < n; r++) {
      ld_ro<T, W>(row(r) + u * W, f);
      float wr = w[r];
#pragma unroll
      for (int e = 0; e < W; e++)
        a[e] += wr * f[e];
    }
#pragma unroll
    for (int e = 0; e < W; e++)
      acc[(t * W + e) * 32 + lane] = a[e];
  }
}

__device__ __forceinline__ void acc_zero(float *acc, const att_geom &g, int W, int lane) {
  for (int x = 0; x < g.tu * W; x++)
    acc[x * 32 + lane] = 0.0f;
}

// out[c] (+)= mul * acc[c] over the lane's columns (accumulate: gradients add onto out).
template <typename T, int W>
__device__ __forceinline__ void acc_store(T *out, const float *acc, float mul, bool accumulate,
                                          const att_geom &g, int lane) {
  for (int t = 0; t < g.tu; t++) {
    int u = lane + 32 * t;
    if (u >= g.nu) break;
    float f[W];
    if (accumulate) ld<T, W>(out + u * W, f);
#pragma unroll
    for (int e = 0; e < W; e++)
      f[e] = (accumulate ? f[e] : 0.0f) + mul * acc[(t * W + e) * 32 + lane];
    st<T, W>(out + u * W, f);
  }
}

// ---- forward ----------------------------------------------------------------------------------
// Online softmax over the visible keys of row i, head h: per chunk of 32 keys the running max m
// moves to max(m, chunk max), and the accumulators and the sum l rescale by exp(m_old - m).
// Every lane reduces the chunk's scores and weights from shared memory in the same order, so m
// and l agree across the warp without shuffles. The chunk buffers alternate between two sets:
// a lane may write the next chunk's before the others finished reading this chunk's weights.
template <typename T, int W>
__global__ void att_fwd_kernel(T *out, float *lse, const T *q, const T *k, const T *v,
                               const int32_t *cu_q, const int32_t *cu_k, att_geom g) {
  IDOC_DYN_SHARED(float, sm);
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  int64_t w = (int64_t)blockIdx.x * (blockDim.x >> 5) + wid;
  if (w >= g.tq * g.n_heads) return; // the whole warp leaves together
  int64_t i = w / g.n_heads;
  int h = (int)(w % g.n_heads);
  int s = seg_of(cu_q, g.n_seg, i);
  int64_t q0 = cu_q[s], lq = cu_q[s + 1] - q0, k0 = cu_k[s], lk = cu_k[s + 1] - k0;
  int64_t vis = n_visible(g.causal, lq, lk, i - q0), kvo = (int64_t)(h / g.group) * g.d;
  T *orow = out + i * g.ldq + (int64_t)h * g.d;
  if (vis == 0) { // no key: zero output, lse = -inf
    float z[W] = {};
    for (int t = 0; t < g.tu; t++)
      if (lane + 32 * t < g.nu) st<T, W>(orow + (lane + 32 * t) * W, z);
    if (lane == 0) lse[(int64_t)h * g.tq + i] = -INFINITY;
    return;
  }
  float *qs = sm + wid * att_warp_floats(g, W, 1, 1, 4), *acc = qs + g.d;
  float *bufs = acc + g.tu * W * 32; // [2][scores 32, weights 32]
  row_to_shared<T, W>(qs, q + i * g.ldq + (int64_t)h * g.d, g, lane);
  acc_zero(acc, g, W, lane);
  __syncwarp(); // qs is read by every lane
  const T *kb = k + k0 * g.ldk + kvo, *vb = v + k0 * g.ldk + kvo;
  float m = -INFINITY, l = 0.0f;
  int par = 0;
  for (int64_t j0 = 0; j0 < vis; j0 += 32, par ^= 1) {
    float *ss = bufs + 64 * par, *ps = ss + 32;
    int64_t j = j0 + lane;
    int n = vis - j0 < 32 ? (int)(vis - j0) : 32;
    float sc = j < vis ? g.scale * dot_row<T, W>(qs, kb + j * g.ldk, g) : -INFINITY;
    ss[lane] = sc;
    __syncwarp();
    float mn = m;
    for (int r = 0; r < n; r++)
      mn = fmaxf(mn, ss[r]);
    float keep = expf(m - mn); // exp(-inf) = 0 on the first chunk
    ps[lane] = j < vis ? expf(sc - mn) : 0.0f;
    __syncwarp();
    float cs = 0.0f;
    for (int r = 0; r < n; r++)
      cs += ps[r];
    l = l * keep + cs;
    acc_rows<T, W>(
        acc, ps, n, [&](int r) { return vb + (j0 + r) * g.ldk; }, keep, g, lane);
    m = mn;
  }
  acc_store<T, W>(orow, acc, 1.0f / l, false, g, lane);
  if (lane == 0) lse[(int64_t)h * g.tq + i] = m + logf(l);
}

// ---- backward ---------------------------------------------------------------------------------
// With P = exp(S - lse), dP = dO V^T and D_i = rowsum(dO * O)_i:
//   dV = P^T dO,  dS = P * (dP - D),  dQ = scale dS K,  dK = scale dS^T Q.
// D [Hq, Tq], one thread per (head, row).
template <typename T, int W>
__global__ void att_rowdot_kernel(float *D, const T *dout, const T *out, att_geom g) {
  for (int64_t x = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; x < g.tq * g.n_heads;
       x += (int64_t)gridDim.x * blockDim.x) {
    int64_t o = (x % g.tq) * g.ldq + (x / g.tq) * g.d;
    float s = 0.0f, a[W], b[W];
    for (int u = 0; u < g.nu; u++) {
      ld_ro<T, W>(dout + o + u * W, a);
      ld_ro<T, W>(out + o + u * W, b);
#pragma unroll
      for (int e = 0; e < W; e++)
        s += a[e] * b[e];
    }
    D[x] = s;
  }
}

// dq for query row i, head h: sum over the visible keys of dS_ij k_j.
template <typename T, int W>
__global__ void att_dq_kernel(T *dq, const T *dout, const float *lse, const float *D, const T *q,
                              const T *k, const T *v, const int32_t *cu_q, const int32_t *cu_k,
                              att_geom g) {
  IDOC_DYN_SHARED(float, sm);
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  int64_t w = (int64_t)blockIdx.x * (blockDim.x >> 5) + wid;
  if (w >= g.tq * g.n_heads) return;
  int64_t i = w / g.n_heads;
  int h = (int)(w % g.n_heads);
  int s = seg_of(cu_q, g.n_seg, i);
  int64_t q0 = cu_q[s], lq = cu_q[s + 1] - q0, k0 = cu_k[s], lk = cu_k[s + 1] - k0;
  int64_t vis = n_visible(g.causal, lq, lk, i - q0), kvo = (int64_t)(h / g.group) * g.d;
  if (vis == 0) return; // no key, no gradient
  float *qs = sm + wid * att_warp_floats(g, W, 2, 1, 2), *dos = qs + g.d, *acc = dos + g.d;
  float *bufs = acc + g.tu * W * 32; // [2][dS 32]
  int64_t ro = i * g.ldq + (int64_t)h * g.d;
  row_to_shared<T, W>(qs, q + ro, g, lane);
  row_to_shared<T, W>(dos, dout + ro, g, lane);
  acc_zero(acc, g, W, lane);
  __syncwarp();
  float L = lse[(int64_t)h * g.tq + i], Di = D[(int64_t)h * g.tq + i];
  const T *kb = k + k0 * g.ldk + kvo, *vb = v + k0 * g.ldk + kvo;
  int par = 0;
  for (int64_t j0 = 0; j0 < vis; j0 += 32, par ^= 1) {
    float *ps = bufs + 32 * par;
    int64_t j = j0 + lane;
    float ds = 0.0f;
    if (j < vis) {
      float p = expf(g.scale * dot_row<T, W>(qs, kb + j * g.ldk, g) - L);
      ds = p * (dot_row<T, W>(dos, vb + j * g.ldk, g) - Di);
    }
    ps[lane] = ds;
    __syncwarp();
    int n = vis - j0 < 32 ? (int)(vis - j0) : 32;
    acc_rows<T, W>(
        acc, ps, n, [&](int r) { return kb + (j0 + r) * g.ldk; }, 1.0f, g, lane);
  }
  acc_store<T, W>(dq + ro, acc, g.scale, true, g, lane);
}

// dk, dv for key row j, kv head kh: over the group's query heads and the query rows that see
// key j (causal: local rows i >= j - (lk - lq)). dk or dv may be NULL.
template <typename T, int W>
__global__ void att_dkv_kernel(T *dk, T *dv, const T *dout, const float *lse, const float *D,
                               const T *q, const T *k, const T *v, const int32_t *cu_q,
                               const int32_t *cu_k, att_geom g) {
  IDOC_DYN_SHARED(float, sm);
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5;
  int n_kv = g.n_heads / g.group;
  int64_t w = (int64_t)blockIdx.x * (blockDim.x >> 5) + wid;
  if (w >= g.tk * n_kv) return;
  int64_t j = w / n_kv;
  int kh = (int)(w % n_kv);
  int s = seg_of(cu_k, g.n_seg, j);
  int64_t q0 = cu_q[s], lq = cu_q[s + 1] - q0, k0 = cu_k[s], lk = cu_k[s + 1] - k0;
  int64_t first = g.causal ? j - k0 - (lk - lq) : 0;
  first = first < 0 ? 0 : first;
  if (first >= lq) return; // no query row sees this key
  float *ks = sm + wid * att_warp_floats(g, W, 2, 2, 4), *vs = ks + g.d, *acck = vs + g.d;
  float *accv = acck + g.tu * W * 32, *bufs = accv + g.tu * W * 32; // [2][P 32, dS 32]
  int64_t ro = j * g.ldk + (int64_t)kh * g.d;
  row_to_shared<T, W>(ks, k + ro, g, lane);
  row_to_shared<T, W>(vs, v + ro, g, lane);
  acc_zero(acck, g, W, lane);
  acc_zero(accv, g, W, lane);
  __syncwarp();
  int par = 0; // runs on across heads: the buffers alternate chunk after chunk
  for (int t = 0; t < g.group; t++) {
    int h = kh * g.group + t;
    const T *qb = q + q0 * g.ldq + (int64_t)h * g.d, *db = dout + q0 * g.ldq + (int64_t)h * g.d;
    const float *lb = lse + (int64_t)h * g.tq + q0, *Db = D + (int64_t)h * g.tq + q0;
    for (int64_t i0 = first; i0 < lq; i0 += 32, par ^= 1) {
      float *ps = bufs + 64 * par, *dss = ps + 32;
      int64_t i = i0 + lane;
      float p = 0.0f, ds = 0.0f;
      if (i < lq) {
        p = expf(g.scale * dot_row<T, W>(ks, qb + i * g.ldq, g) - lb[i]);
        if (dk) ds = p * (dot_row<T, W>(vs, db + i * g.ldq, g) - Db[i]);
      }
      ps[lane] = p;
      dss[lane] = ds;
      __syncwarp();
      int n = lq - i0 < 32 ? (int)(lq - i0) : 32;
      if (dv)
        acc_rows<T, W>(
            accv, ps, n, [&](int r) { return db + (i0 + r) * g.ldq; }, 1.0f, g, lane);
      if (dk)
        acc_rows<T, W>(
            acck, dss, n, [&](int r) { return qb + (i0 + r) * g.ldq; }, 1.0f, g, lane);
    }
  }
  if (dk) acc_store<T, W>(dk + ro, acck, g.scale, true, g, lane);
  if (dv) acc_store<T, W>(dv + ro, accv, 1.0f, true, g, lane);
}

// ---- host side --------------------------------------------------------------------------------
static att_geom att_check(const char *kn, const idoc_tensor *q, const idoc_tensor *k,
                          const idoc_tensor *v, const idoc_tensor *cu_q, const idoc_tensor *cu_k,
                          int n_heads, int n_kv_heads, bool causal, float scale) {
  cu_on_gpu(kn, q), cu_on_gpu(kn, k), cu_on_gpu(kn, v), cu_on_gpu(kn, cu_q), cu_on_gpu(kn, cu_k);
  cu_same_dtype(kn, q, k), cu_same_dtype(kn, k, v);
  cu_dtype_is(kn, cu_q, IDOC_I32), cu_dtype_is(kn, cu_k, IDOC_I32);
  IDOC_CHECK(q->ndim == 2 && k->ndim == 2 && idoc_same_shape(k, v) && n_heads > 0 &&
                 n_kv_heads > 0 && n_heads % n_kv_heads == 0 && q->shape[1] % n_heads == 0 &&
                 k->shape[1] == q->shape[1] / n_heads * n_kv_heads,
             "cuda %s: q must be [Tq, Hq*D] and k, v [Tk, Hkv*D] (Hq %d, Hkv %d)", kn, n_heads,
             n_kv_heads);
  IDOC_CHECK(cu_q && cu_k && idoc_numel(cu_q) >= 1 && idoc_numel(cu_q) == idoc_numel(cu_k) &&
                 idoc_numel(cu_q) <= INT32_MAX,
             "cuda %s: cu_q and cu_k must be i32 [n_seg + 1] of the same length", kn);
  att_geom g = {};
  g.tq = q->shape[0], g.tk = k->shape[0], g.ldq = q->shape[1], g.ldk = k->shape[1];
  g.d = (int)(q->shape[1] / n_heads), g.n_heads = n_heads, g.group = n_heads / n_kv_heads;
  g.n_seg = (int)(idoc_numel(cu_q) - 1), g.causal = causal, g.scale = scale;
  // The offsets stay on the device, so only their count can be checked here.
  IDOC_CHECK(g.n_seg >= 1 || (g.tq == 0 && g.tk == 0), "cuda %s: no segments for %lld rows", kn,
             (long long)(g.tq + g.tk));
  return g;
}

// 128-bit access needs 16-byte aligned head rows: the head dim a multiple of 16 bytes and
// every tensor's base 16-byte aligned (row strides are then multiples of 16 bytes too).
static bool att_vec_ok(int d, size_t elem, std::initializer_list<const idoc_tensor *> ts) {
  if ((d * elem) % 16) return false;
  for (const idoc_tensor *t : ts)
    if (t && ((uintptr_t)t->data & 15)) return false;
  return true;
}

// Warps per block and dynamic shared memory for `floats` per warp (fewer warps for huge heads).
static void att_config(const char *kn, int64_t floats, int *warps, size_t *smem) {
  const size_t limit = 48 * 1024;
  int wp = ATT_WARPS;
  while (wp > 1 && (size_t)(wp * floats) * sizeof(float) > limit)
    wp /= 2;
  IDOC_CHECK((size_t)(wp * floats) * sizeof(float) <= limit,
             "cuda %s: head dim too large for the scalar kernel's shared memory", kn);
  *warps = wp;
  *smem = (size_t)(wp * floats) * sizeof(float);
}

static unsigned att_grid(int64_t n_warps, int warps) {
  return (unsigned)((n_warps + warps - 1) / warps);
}

template <typename T, int W>
static void att_fwd_launch(idoc_tensor *out, idoc_tensor *lse, const idoc_tensor *q,
                           const idoc_tensor *k, const idoc_tensor *v, const idoc_tensor *cu_q,
                           const idoc_tensor *cu_k, att_geom g) {
  g.nu = g.d / W, g.tu = (g.nu + 31) / 32;
  int warps;
  size_t smem;
  att_config("attention_fwd", att_warp_floats(g, W, 1, 1, 4), &warps, &smem);
  IDOC_LAUNCH((att_fwd_kernel<T, W>), att_grid(g.tq * g.n_heads, warps), 32 * warps, smem,
              idoc_cu_stream())
  ((T *)out->data, (float *)lse->data, (const T *)q->data, (const T *)k->data, (const T *)v->data,
   (const int32_t *)cu_q->data, (const int32_t *)cu_k->data, g);
  CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_attention_fwd(idoc_tensor *out, idoc_tensor *lse, const idoc_tensor *q,
                                   const idoc_tensor *k, const idoc_tensor *v,
                                   const idoc_tensor *cu_q, const idoc_tensor *cu_k, int n_heads,
                                   int n_kv_heads, bool causal, float scale) {
  const char *kn = "attention_fwd";
  att_geom g = att_check(kn, q, k, v, cu_q, cu_k, n_heads, n_kv_heads, causal, scale);
  cu_on_gpu(kn, out), cu_on_gpu(kn, lse), cu_same_dtype(kn, out, q), cu_dtype_is(kn, lse, IDOC_F32);
  IDOC_CHECK(idoc_same_shape(out, q) && idoc_numel(lse) == n_heads * g.tq,
             "cuda %s: out must be shaped as q and lse f32 [Hq, Tq]", kn);
  if (g.tq == 0) return;
  IDOC_CU_DISPATCH(q->dtype, kn, T, {
    constexpr int VN = 16 / sizeof(T);
    if (att_vec_ok(g.d, sizeof(T), {out, q, k, v}))
      att_fwd_launch<T, VN>(out, lse, q, k, v, cu_q, cu_k, g);
    else
      att_fwd_launch<T, 1>(out, lse, q, k, v, cu_q, cu_k, g);
  });
}

template <typename T, int W>
static void att_bwd_launch(idoc_tensor *dq, idoc_tensor *dk, idoc_tensor *dv,
                           const idoc_tensor *dout, const idoc_tensor *out, const idoc_tensor *lse,
                           const idoc_tensor *q, const idoc_tensor *k, const idoc_tensor *v,
                           const idoc_tensor *cu_q, const idoc_tensor *cu_k, att_geom g) {
  g.nu = g.d / W, g.tu = (g.nu + 31) / 32;
  const T *DO = (const T *)dout->data, *Q = (const T *)q->data, *Kp = (const T *)k->data;
  const T *V = (const T *)v->data;
  const int32_t *cq = (const int32_t *)cu_q->data, *ck = (const int32_t *)cu_k->data;
  const float *L = (const float *)lse->data;
  // D [Hq, Tq] in scratch (the only scratch buffer held), read by both gradient kernels.
  float *D = (float *)idoc_cu_scratch((size_t)(g.n_heads * g.tq) * sizeof(float));
  IDOC_LAUNCH((att_rowdot_kernel<T, W>), cu_blocks(g.tq * g.n_heads), 256, 0, idoc_cu_stream())
  (D, DO, (const T *)out->data, g);
  CUDA_LAUNCH_CHECK();
  int warps;
  size_t smem;
  if (dq && g.tq > 0) {
    att_config("attention_bwd", att_warp_floats(g, W, 2, 1, 2), &warps, &smem);
    IDOC_LAUNCH((att_dq_kernel<T, W>), att_grid(g.tq * g.n_heads, warps), 32 * warps, smem,
                idoc_cu_stream())
    ((T *)dq->data, DO, L, D, Q, Kp, V, cq, ck, g);
    CUDA_LAUNCH_CHECK();
  }
  if ((dk || dv) && g.tk > 0) {
    att_config("attention_bwd", att_warp_floats(g, W, 2, 2, 4), &warps, &smem);
    IDOC_LAUNCH((att_dkv_kernel<T, W>), att_grid(g.tk * (g.n_heads / g.group), warps), 32 * warps,
                smem, idoc_cu_stream())
    (dk ? (T *)dk->data : nullptr, dv ? (T *)dv->data : nullptr, DO, L, D, Q, Kp, V, cq, ck, g);
    CUDA_LAUNCH_CHECK();
  }
}

extern "C" void cuda_attention_bwd(idoc_tensor *dq, idoc_tensor *dk, idoc_tensor *dv,
                                   const idoc_tensor *dout, const idoc_tensor *out,
                                   const idoc_tensor *lse, const idoc_tensor *q,
                                   const idoc_tensor *k, const idoc_tensor *v,
                                   const idoc_tensor *cu_q, const idoc_tensor *cu_k, int n_heads,
                                   int n_kv_heads, bool causal, float scale) {
  const char *kn = "attention_bwd";
  att_geom g = att_check(kn, q, k, v, cu_q, cu_k, n_heads, n_kv_heads, causal, scale);
  if (!dq && !dk && !dv) return;
  cu_on_gpu(kn, dq), cu_on_gpu(kn, dk), cu_on_gpu(kn, dv), cu_on_gpu(kn, dout), cu_on_gpu(kn, out),
      cu_on_gpu(kn, lse);
  cu_same_dtype(kn, dq, q), cu_same_dtype(kn, dk, q), cu_same_dtype(kn, dv, q);
  cu_same_dtype(kn, dout, q), cu_same_dtype(kn, out, q), cu_dtype_is(kn, lse, IDOC_F32);
  IDOC_CHECK(idoc_same_shape(dout, q) && idoc_same_shape(out, q) &&
                 idoc_numel(lse) == n_heads * g.tq && (!dq || idoc_same_shape(dq, q)) &&
                 (!dk || idoc_same_shape(dk, k)) && (!dv || idoc_same_shape(dv, v)),
             "cuda %s: gradients must be shaped as their inputs, dout and out as q, lse [Hq, Tq]",
             kn);
  if (g.tq == 0) return; // no query row: every gradient term is empty
  IDOC_CU_DISPATCH(q->dtype, kn, T, {
    constexpr int VN = 16 / sizeof(T);
    if (att_vec_ok(g.d, sizeof(T), {dq, dk, dv, dout, out, q, k, v}))
      att_bwd_launch<T, VN>(dq, dk, dv, dout, out, lse, q, k, v, cu_q, cu_k, g);
    else
      att_bwd_launch<T, 1>(dq, dk, dv, dout, out, lse, q, k, v, cu_q, cu_k, g);
  });
}
