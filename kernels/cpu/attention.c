// Multi-head attention over packed variable-length segments (fp32 reference, GQA, causal
// bottom-right aligned), flash-attention style: the forward keeps only the log-sum-exp of each
// query row, and the backward recomputes the probabilities from it. The segment offsets come as
// host i32 tensors [n_seg + 1], already validated by idoc_segments_new (nn/ops_attention.c).
//
// Work is split into tiles of ATT_TILE query rows (forward, dq) or key rows (dk, dv) of one head
// of one segment; OpenMP hands tiles to threads, and each thread owns one score buffer of
// ATT_TILE x (longest segment) floats, so memory never grows with T^2. Every gradient element is
// written by exactly one tile (dq by query tiles, dk/dv by key tiles of the kv head, looping over
// its query heads), so backward does not race and does not depend on the thread count.
#include <math.h>
#include <string.h>

#include "kernels/cpu/check.h"
#include "kernels/cpu/gemm.h"
#include "kernels/ops.h"

#define ATT_TILE 64

typedef struct {
  const float *q, *k, *v;
  const int32_t *cu_q, *cu_k;
  int64_t d, ldq, ldk, tq; // head dim, row strides of q/out and k/v, total query rows
  int group;               // query heads per kv head
  bool causal;
  float scale;
} att_geom;

typedef struct {
  int seg, head, tile;
} att_unit;

static att_geom geom(const idoc_tensor *q, const idoc_tensor *k, const idoc_tensor *v,
                     const int32_t *cu_q, const int32_t *cu_k, int n_heads, int n_kv_heads,
                     bool causal, float scale) {
  att_geom g = {IDOC_F(q), IDOC_F(k), IDOC_F(v), cu_q,        cu_k,
                0,         0,         0,         q->shape[0], n_heads / n_kv_heads,
                causal,    scale};
  g.ldq = q->shape[1];
  g.ldk = k->shape[1];
  g.d = g.ldq / n_heads;
  return g;
}

// Keys visible to local query row i of a segment with lq queries and lk keys: causal masking
// is bottom-right aligned, so row i sees keys j <= i + lk - lq.
static inline int64_t visible(const att_geom *g, int64_t lq, int64_t lk, int64_t i) {
  if (!g->causal) return lk;
  int64_t n = i + lk - lq + 1;
  return n < 0 ? 0 : n > lk ? lk : n;
}

// All (segment, head, tile) units over the rows given by `cu`; *max_len gets the longest
// segment of `cu_other` (the length of a score row).
static att_unit *units(const int32_t *cu, const int32_t *cu_other, int n_seg, int heads,
                       int64_t *n_units, int64_t *max_len) {
  int64_t n = 0, mx = 1;
  for (int s = 0; s < n_seg; s++) {
    n += (int64_t)heads * ((cu[s + 1] - cu[s] + ATT_TILE - 1) / ATT_TILE);
    if (cu_other[s + 1] - cu_other[s] > mx) mx = cu_other[s + 1] - cu_other[s];
  }
  att_unit *u = idoc_xmalloc((size_t)(n > 0 ? n : 1) * sizeof *u);
  int64_t k = 0;
  for (int s = 0; s < n_seg; s++)
    for (int h = 0; h < heads; h++)
      for (int t = 0; t * ATT_TILE < cu[s + 1] - cu[s]; t++)
        u[k++] = (att_unit){s, h, t};
  *n_units = n;
  *max_len = mx;
  return u;
}

// Number of segments of the offset tensors (which must have the same length).
static int seg_count(const char *kernel, const idoc_tensor *cu_q, const idoc_tensor *cu_k) {
  CPU_I32(kernel, cu_q, cu_k);
  IDOC_CHECK(cu_q && cu_k && idoc_numel(cu_q) >= 1 && idoc_numel(cu_q) == idoc_numel(cu_k),
             "cpu %s: cu_q and cu_k must be i32 [n_seg + 1] of the same length", kernel);
  return (int)(idoc_numel(cu_q) - 1);
}

void cpu_attention_fwd(idoc_tensor *out, idoc_tensor *lse, const idoc_tensor *q,
                       const idoc_tensor *k, const idoc_tensor *v, const idoc_tensor *cu_qt,
                       const idoc_tensor *cu_kt, int n_heads, int n_kv_heads, bool causal,
                       float scale) {
  CPU_F32("attention_fwd", out, lse, q, k, v);
  int n_seg = seg_count("attention_fwd", cu_qt, cu_kt);
  const int32_t *cu_q = IDOC_I(cu_qt), *cu_k = IDOC_I(cu_kt);
  att_geom g = geom(q, k, v, cu_q, cu_k, n_heads, n_kv_heads, causal, scale);
  int64_t n_units, max_lk;
  att_unit *u = units(cu_q, cu_k, n_seg, n_heads, &n_units, &max_lk);
  float *O = IDOC_F(out), *L = IDOC_F(lse);
  int blas_threads = idoc_sgemm_serial_begin();
#pragma omp parallel
  {
    float *s = idoc_xmalloc((size_t)(ATT_TILE * max_lk) * sizeof *s);
#pragma omp for schedule(dynamic)
    for (int64_t ui = 0; ui < n_units; ui++) {
      int sg = u[ui].seg, h = u[ui].head;
      int64_t q0 = cu_q[sg], lq = cu_q[sg + 1] - q0, k0 = cu_k[sg], lk = cu_k[sg + 1] - k0;
      int64_t i0 = (int64_t)u[ui].tile * ATT_TILE, nq = lq - i0 < ATT_TILE ? lq - i0 : ATT_TILE;
      int64_t nk = visible(&g, lq, lk, i0 + nq - 1), kvo = (int64_t)(h / g.group) * g.d;
      const float *qt = g.q + (q0 + i0) * g.ldq + h * g.d;
      float *ot = O + (q0 + i0) * g.ldq + h * g.d, *lt = L + h * g.tq + q0 + i0;
      if (nk == 0) { // no row of the tile sees a key: zero output, lse = -inf
        for (int64_t r = 0; r < nq; r++) {
          memset(ot + r * g.ldq, 0, (size_t)g.d * sizeof *ot);
          lt[r] = -INFINITY;
        }
        continue;
      }
      idoc_sgemm(false, true, nq, nk, g.d, scale, qt, g.ldq, g.k + k0 * g.ldk + kvo, g.ldk, 0.0f, s,
                 nk);
      for (int64_t r = 0; r < nq; r++) {
        float *sr = s + r * nk;
        int64_t vis = visible(&g, lq, lk, i0 + r);
        float mx = -INFINITY;
        for (int64_t j = 0; j < vis; j++)
          mx = sr[j] > mx ? sr[j] : mx;
        double sum = 0;
        for (int64_t j = 0; j < vis; j++) {
          sr[j] = expf(sr[j] - mx);
          sum += sr[j];
        }
        float inv = vis ? (float)(1.0 / sum) : 0.0f;
        for (int64_t j = 0; j < vis; j++)
          sr[j] *= inv;
        for (int64_t j = vis; j < nk; j++)
          sr[j] = 0.0f;
        lt[r] = vis ? mx + (float)log(sum) : -INFINITY;
      }
      idoc_sgemm(false, false, nq, g.d, nk, 1.0f, s, nk, g.v + k0 * g.ldk + kvo, g.ldk, 0.0f, ot,
                 g.ldq);
    }
    free(s);
  }
  idoc_sgemm_serial_end(blas_threads);
  free(u);
}

// With P = softmax(scale Q K^T) (recomputed as exp(S - lse)), O = P V and dO:
//   dV = P^T dO,  dP = dO V^T,  dS = P * (dP - D) with D_i = rowsum(dO * O)_i,
//   dQ = scale dS K,  dK = scale dS^T Q.
static void attention_dq(float *DQ, const float *DO, const float *L, const float *Dr,
                         const att_geom *g, int n_seg, int n_heads) {
  int64_t n_units, max_lk;
  att_unit *u = units(g->cu_q, g->cu_k, n_seg, n_heads, &n_units, &max_lk);
#pragma omp parallel
  {
    float *s = idoc_xmalloc((size_t)(2 * ATT_TILE * max_lk) * sizeof *s),
          *dp = s + ATT_TILE * max_lk;
#pragma omp for schedule(dynamic)
    for (int64_t ui = 0; ui < n_units; ui++) {
      int sg = u[ui].seg, h = u[ui].head;
      int64_t q0 = g->cu_q[sg], lq = g->cu_q[sg + 1] - q0;
      int64_t k0 = g->cu_k[sg], lk = g->cu_k[sg + 1] - k0;
      int64_t i0 = (int64_t)u[ui].tile * ATT_TILE, nq = lq - i0 < ATT_TILE ? lq - i0 : ATT_TILE;
      int64_t nk = visible(g, lq, lk, i0 + nq - 1), kvo = (int64_t)(h / g->group) * g->d;
      if (nk == 0) continue;
      int64_t qo = (q0 + i0) * g->ldq + h * g->d;
      const float *kt = g->k + k0 * g->ldk + kvo, *lt = L + h * g->tq + q0 + i0;
      const float *dt = Dr + h * g->tq + q0 + i0;
      idoc_sgemm(false, true, nq, nk, g->d, g->scale, g->q + qo, g->ldq, kt, g->ldk, 0.0f, s, nk);
      idoc_sgemm(false, true, nq, nk, g->d, 1.0f, DO + qo, g->ldq, g->v + k0 * g->ldk + kvo, g->ldk,
                 0.0f, dp, nk);
      for (int64_t r = 0; r < nq; r++) {
        float *sr = s + r * nk, *dpr = dp + r * nk;
        int64_t vis = visible(g, lq, lk, i0 + r);
        for (int64_t j = 0; j < vis; j++)
          sr[j] = expf(sr[j] - lt[r]) * (dpr[j] - dt[r]);
        for (int64_t j = vis; j < nk; j++)
          sr[j] = 0.0f;
      }
      idoc_sgemm(false, false, nq, g->d, nk, g->scale, s, nk, kt, g->ldk, 1.0f, DQ + qo, g->ldq);
    }
    free(s);
  }
  free(u);
}

static void attention_dkv(float *DK, float *DV, const float *DO, const float *L, const float *Dr,
                          const att_geom *g, int n_seg, int n_kv_heads) {
  int64_t n_units, max_lq;
  att_unit *u = units(g->cu_k, g->cu_q, n_seg, n_kv_heads, &n_units, &max_lq);
#pragma omp parallel
  {
    float *st = idoc_xmalloc((size_t)(2 * ATT_TILE * max_lq) * sizeof *st);
    float *dpt = st + ATT_TILE * max_lq;
#pragma omp for schedule(dynamic)
    for (int64_t ui = 0; ui < n_units; ui++) {
      int sg = u[ui].seg, kvh = u[ui].head;
      int64_t q0 = g->cu_q[sg], lq = g->cu_q[sg + 1] - q0;
      int64_t k0 = g->cu_k[sg], lk = g->cu_k[sg + 1] - k0, off = lk - lq;
      int64_t j0 = (int64_t)u[ui].tile * ATT_TILE, nk = lk - j0 < ATT_TILE ? lk - j0 : ATT_TILE;
      // Query rows before `is` see none of these keys.
      int64_t is = g->causal && j0 - off > 0 ? j0 - off : 0, nq = lq - is;
      if (nq <= 0) continue;
      int64_t ko = (k0 + j0) * g->ldk + kvh * g->d;
      for (int t = 0; t < g->group; t++) {
        int h = kvh * g->group + t;
        int64_t qo = (q0 + is) * g->ldq + h * g->d;
        const float *lt = L + h * g->tq + q0 + is, *dt = Dr + h * g->tq + q0 + is;
        idoc_sgemm(false, true, nk, nq, g->d, g->scale, g->k + ko, g->ldk, g->q + qo, g->ldq, 0.0f,
                   st, nq);
        for (int64_t jr = 0; jr < nk; jr++) {
          float *sr = st + jr * nq;
          // key j0 + jr is seen by query rows i >= j0 + jr - off
          int64_t first = g->causal ? j0 + jr - off - is : 0;
          first = first < 0 ? 0 : first > nq ? nq : first;
          for (int64_t ir = 0; ir < first; ir++)
            sr[ir] = 0.0f;
          for (int64_t ir = first; ir < nq; ir++)
            sr[ir] = expf(sr[ir] - lt[ir]);
        }
        if (DV)
          idoc_sgemm(false, false, nk, g->d, nq, 1.0f, st, nq, DO + qo, g->ldq, 1.0f, DV + ko,
                     g->ldk);
        if (!DK) continue;
        idoc_sgemm(false, true, nk, nq, g->d, 1.0f, g->v + ko, g->ldk, DO + qo, g->ldq, 0.0f, dpt,
                   nq);
        for (int64_t jr = 0; jr < nk; jr++)
          for (int64_t ir = 0; ir < nq; ir++)
            st[jr * nq + ir] *= dpt[jr * nq + ir] - dt[ir];
        idoc_sgemm(false, false, nk, g->d, nq, g->scale, st, nq, g->q + qo, g->ldq, 1.0f, DK + ko,
                   g->ldk);
      }
    }
    free(st);
  }
  free(u);
}

void cpu_attention_bwd(idoc_tensor *dq, idoc_tensor *dk, idoc_tensor *dv, const idoc_tensor *dout,
                       const idoc_tensor *out, const idoc_tensor *lse, const idoc_tensor *q,
                       const idoc_tensor *k, const idoc_tensor *v, const idoc_tensor *cu_qt,
                       const idoc_tensor *cu_kt, int n_heads, int n_kv_heads, bool causal,
                       float scale) {
  CPU_F32("attention_bwd", dq, dk, dv, dout, out, lse, q, k, v);
  int n_seg = seg_count("attention_bwd", cu_qt, cu_kt);
  if (!dq && !dk && !dv) return;
  const int32_t *cu_q = IDOC_I(cu_qt), *cu_k = IDOC_I(cu_kt);
  att_geom g = geom(q, k, v, cu_q, cu_k, n_heads, n_kv_heads, causal, scale);
  const float *DO = IDOC_F(dout), *O = IDOC_F(out), *L = IDOC_F(lse);
  int64_t nd = (int64_t)n_heads * g.tq;
  float *Dr = idoc_xmalloc((size_t)(nd > 0 ? nd : 1) * sizeof *Dr); // D [Hq, Tq]
#pragma omp parallel for schedule(static)
  for (int64_t e = 0; e < nd; e++) {
    int64_t h = e / g.tq, i = e % g.tq, o = i * g.ldq + h * g.d;
    double s = 0;
    for (int64_t c = 0; c < g.d; c++)
      s += (double)DO[o + c] * O[o + c];
    Dr[e] = (float)s;
  }
  int blas_threads = idoc_sgemm_serial_begin();
  if (dq) attention_dq(IDOC_F(dq), DO, L, Dr, &g, n_seg, n_heads);
  if (dk || dv)
    attention_dkv(dk ? IDOC_F(dk) : NULL, dv ? IDOC_F(dv) : NULL, DO, L, Dr, &g, n_seg, n_kv_heads);
  idoc_sgemm_serial_end(blas_threads);
  free(Dr);
}
