// Forward values and structural properties of rotary and variable-length attention:
// - outputs and lse against a naive double-precision reference (explicit softmax per query),
//   including segments longer than one 64-row kernel tile, GQA and cross attention;
// - segments are isolated, query head h reads kv head h / (Hq / Hkv) (GQA equals MHA with
//   repeated kv heads), causal row i ignores keys j > i + Lk - Lq (bottom-right alignment), a
//   single causal query row sees every key, rows that see no key give 0 and lse = -inf;
// - rotary: explicit 2x2 rotations, inverse(forward(x)) = x, cos = 1 / sin = 0 is the identity,
//   and the in-place (y == x) call.
#include <math.h>
#include <string.h>

#include "kernels/ops.h"
#include "nn/ops.h"
#include "tests/test.h"

static idoc_arena *A;
static idoc_rng R;

static idoc_tensor *rnd(int64_t r, int64_t c) {
  idoc_tensor *t = idoc_tensor_2d(A, IDOC_F32, r, c);
  idoc_tensor_uniform(t, &R, -1.5f, 1.5f);
  return t;
}

typedef struct {
  const int32_t *cu_q, *cu_k;
  int n_seg, hq, hkv;
  bool causal;
} geo;

// Naive attention in double from the definition: for each segment, head and query row, the
// scaled dot products with the visible keys, their softmax, and the weighted sum of values.
static void ref_attention(const idoc_tensor *q, const idoc_tensor *k, const idoc_tensor *v,
                          const geo *g, double scale, double *out, double *lse) {
  int64_t d = q->shape[1] / g->hq, tq = q->shape[0], ldq = q->shape[1], ldk = k->shape[1];
  const float *Q = IDOC_F(q), *K = IDOC_F(k), *V = IDOC_F(v);
  for (int s = 0; s < g->n_seg; s++) {
    int64_t q0 = g->cu_q[s], lq = g->cu_q[s + 1] - q0, k0 = g->cu_k[s], lk = g->cu_k[s + 1] - k0;
    double *p = malloc(sizeof(double) * (size_t)(lk > 0 ? lk : 1));
    for (int h = 0; h < g->hq; h++) {
      int kh = h / (g->hq / g->hkv);
      for (int64_t i = 0; i < lq; i++) {
        int64_t vis = g->causal ? i + lk - lq + 1 : lk;
        vis = vis < 0 ? 0 : vis > lk ? lk : vis;
        double mx = -INFINITY, z = 0;
        for (int64_t j = 0; j < vis; j++) {
          double dot = 0;
          for (int64_t e = 0; e < d; e++)
            dot += (double)Q[(q0 + i) * ldq + h * d + e] * K[(k0 + j) * ldk + kh * d + e];
          p[j] = dot * scale;
          mx = fmax(mx, p[j]);
        }
        for (int64_t j = 0; j < vis; j++)
          z += (p[j] = exp(p[j] - mx));
        for (int64_t e = 0; e < d; e++) {
          double o = 0;
          for (int64_t j = 0; j < vis; j++)
            o += p[j] / z * V[(k0 + j) * ldk + kh * d + e];
          out[(q0 + i) * ldq + h * d + e] = o;
        }
        if (lse) lse[h * tq + q0 + i] = vis ? mx + log(z) : -INFINITY;
      }
    }
    free(p);
  }
}

static idoc_tensor *attend(idoc_ctx *c, idoc_tensor *q, idoc_tensor *k, idoc_tensor *v,
                           const geo *g, idoc_tensor **lse) {
  float scale = 1.0f / sqrtf((float)(q->shape[1] / g->hq));
  idoc_segments sq = idoc_segments_new(c, g->cu_q, g->n_seg);
  idoc_segments sk = idoc_segments_new(c, g->cu_k, g->n_seg);
  if (!lse) return idoc_attention(c, q, k, v, &sq, &sk, g->hq, g->hkv, g->causal, scale);
  idoc_tensor *o = idoc_tensor_like(c->act, q);
  *lse = idoc_tensor_2d(c->act, IDOC_F32, g->hq, q->shape[0]);
  cpu_attention_fwd(o, *lse, q, k, v, sq.dev, sk.dev, g->hq, g->hkv, g->causal, scale);
  return o;
}

static double max_err(const float *a, const double *b, int64_t n) {
  double m = 0;
  for (int64_t i = 0; i < n; i++)
    if (!(isinf(b[i]) && a[i] == b[i])) m = fmax(m, fabs(a[i] - b[i]));
  return m;
}

static int64_t n_changed(const float *a, const float *b, int64_t from, int64_t to) {
  int64_t n = 0;
  for (int64_t i = from; i < to; i++)
    n += a[i] != b[i];
  return n;
}

static double worst_fwd = 0, worst_lse = 0;

static void test_values(idoc_ctx *c) {
  // Odd head dims, GQA 4/2 and 3/1, segment lengths 1, 3, 4 and multi-tile ones (70, 130),
  // cross attention with Tq < Tk and Tq > Tk (causal rows that see nothing).
  static const struct {
    int32_t cu_q[5], cu_k[5];
    int n_seg, hq, hkv, d;
  } cases[] = {
      {{0, 1, 4, 8}, {0, 1, 4, 8}, 3, 4, 2, 6},
      {{0, 3, 8}, {0, 3, 8}, 2, 3, 1, 10},
      {{0, 70, 73, 203, 204}, {0, 70, 73, 203, 204}, 4, 4, 2, 16},
      {{0, 2, 3}, {0, 5, 12}, 2, 2, 1, 4},
      {{0, 70, 71}, {0, 150, 155}, 2, 3, 1, 6},
      {{0, 130, 134}, {0, 66, 67}, 2, 2, 2, 8},
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++)
    for (int causal = 0; causal < 2; causal++) {
      geo g = {cases[k].cu_q, cases[k].cu_k, cases[k].n_seg, cases[k].hq, cases[k].hkv, causal};
      int64_t tq = g.cu_q[g.n_seg], tk = g.cu_k[g.n_seg], d = cases[k].d;
      idoc_tensor *q = rnd(tq, g.hq * d), *kk = rnd(tk, g.hkv * d), *v = rnd(tk, g.hkv * d), *lse;
      idoc_tensor *o = attend(c, q, kk, v, &g, &lse);
      double *ro = malloc(sizeof(double) * (size_t)idoc_numel(o));
      double *rl = malloc(sizeof(double) * (size_t)idoc_numel(lse));
      ref_attention(q, kk, v, &g, 1.0 / sqrt((double)d), ro, rl);
      double eo = max_err(IDOC_F(o), ro, idoc_numel(o)),
             el = max_err(IDOC_F(lse), rl, idoc_numel(lse));
      bool inf_ok = true;
      for (int64_t i = 0; i < idoc_numel(lse); i++)
        inf_ok &= isinf(rl[i]) == isinf(IDOC_F(lse)[i]);
      T_CHECK(eo < 1e-5 && el < 1e-5 && inf_ok, "case %zu causal %d: out err %.3g lse err %.3g", k,
              causal, eo, el);
      worst_fwd = fmax(worst_fwd, eo);
      worst_lse = fmax(worst_lse, el);
      // the public op gives the same output as the kernel
      idoc_tensor *o2 = attend(c, q, kk, v, &g, NULL);
      T_CHECK(n_changed(IDOC_F(o), IDOC_F(o2), 0, idoc_numel(o)) == 0, "idoc_attention = kernel");
      free(ro);
      free(rl);
      idoc_ctx_reset(c);
    }
}

static void test_structure(idoc_ctx *c) {
  { // segments are isolated: changing keys/values of segment 1 changes only its own rows
    static const int32_t cu[4] = {0, 40, 107, 111};
    geo g = {cu, cu, 3, 4, 2, false};
    int64_t d = 6, w = g.hq * d;
    idoc_tensor *q = rnd(111, w), *k = rnd(111, g.hkv * d), *v = rnd(111, g.hkv * d);
    idoc_tensor *o = attend(c, q, k, v, &g, NULL);
    for (int64_t i = 40 * g.hkv * d; i < 107 * g.hkv * d; i++) {
      IDOC_F(k)[i] += 0.7f;
      IDOC_F(v)[i] -= 1.3f;
    }
    idoc_tensor *o2 = attend(c, q, k, v, &g, NULL);
    T_CHECK(n_changed(IDOC_F(o), IDOC_F(o2), 0, 40 * w) == 0, "segment 0 isolated");
    T_CHECK(n_changed(IDOC_F(o), IDOC_F(o2), 107 * w, 111 * w) == 0, "segment 2 isolated");
    T_CHECK(n_changed(IDOC_F(o), IDOC_F(o2), 40 * w, 107 * w) == 67 * w, "segment 1 changed");
    idoc_ctx_reset(c);
  }
  { // GQA: query head h uses kv head h / (Hq/Hkv); equals MHA with kv heads repeated
    static const int32_t cu[3] = {0, 5, 75};
    int64_t d = 10, hq = 6, hkv = 2, grp = hq / hkv;
    geo g = {cu, cu, 2, (int)hq, (int)hkv, true}, gm = {cu, cu, 2, (int)hq, (int)hq, true};
    idoc_tensor *q = rnd(75, hq * d), *k = rnd(75, hkv * d), *v = rnd(75, hkv * d);
    idoc_tensor *kr = idoc_tensor_2d(A, IDOC_F32, 75, hq * d), *vr = idoc_tensor_like(A, kr);
    for (int64_t t = 0; t < 75; t++)
      for (int64_t h = 0; h < hq; h++)
        for (int64_t e = 0; e < d; e++) {
          IDOC_F(kr)[t * hq * d + h * d + e] = IDOC_F(k)[t * hkv * d + (h / grp) * d + e];
          IDOC_F(vr)[t * hq * d + h * d + e] = IDOC_F(v)[t * hkv * d + (h / grp) * d + e];
        }
    idoc_tensor *o = attend(c, q, k, v, &g, NULL), *om = attend(c, q, kr, vr, &gm, NULL);
    double e = 0;
    for (int64_t i = 0; i < idoc_numel(o); i++)
      e = fmax(e, fabs(IDOC_F(o)[i] - IDOC_F(om)[i]));
    T_CHECK(e < 1e-6, "GQA = MHA with repeated kv heads: %.3g", e);
    // changing kv head 1 changes query heads 3..5 only
    for (int64_t t = 0; t < 75; t++)
      for (int64_t x = 0; x < d; x++)
        IDOC_F(v)[t * hkv * d + d + x] += 1.0f;
    idoc_tensor *o2 = attend(c, q, k, v, &g, NULL);
    int64_t lo = 0, hi = 0;
    for (int64_t t = 0; t < 75; t++) {
      lo += n_changed(IDOC_F(o), IDOC_F(o2), t * hq * d, t * hq * d + grp * d);
      hi += n_changed(IDOC_F(o), IDOC_F(o2), t * hq * d + grp * d, (t + 1) * hq * d);
    }
    T_CHECK(lo == 0 && hi == 75 * grp * d, "kv head 1 feeds query heads 3..5 only (%lld, %lld)",
            (long long)lo, (long long)hi);
    idoc_ctx_reset(c);
  }
  { // causal: row i of a segment ignores keys j > i + Lk - Lq (self and cross, multi-tile)
    static const int32_t cq[2][2] = {{0, 150}, {0, 90}}, ck[2][2] = {{0, 150}, {0, 160}};
    for (int s = 0; s < 2; s++) {
      geo g = {cq[s], ck[s], 1, 3, 1, true};
      int64_t d = 6, w = g.hq * d, lq = cq[s][1], lk = ck[s][1], off = lk - lq, j = off + 77;
      idoc_tensor *q = rnd(lq, w), *k = rnd(lk, d), *v = rnd(lk, d);
      idoc_tensor *o = attend(c, q, k, v, &g, NULL);
      for (int64_t e = 0; e < d; e++) {
        IDOC_F(k)[j * d + e] += 2.0f;
        IDOC_F(v)[j * d + e] += 2.0f;
      }
      idoc_tensor *o2 = attend(c, q, k, v, &g, NULL);
      // rows i < j - off = 77 do not see key j; every later row does
      T_CHECK(n_changed(IDOC_F(o), IDOC_F(o2), 0, 77 * w) == 0, "causal: earlier rows untouched");
      int64_t later = 0;
      for (int64_t i = 77; i < lq; i++)
        later += n_changed(IDOC_F(o), IDOC_F(o2), i * w, (i + 1) * w) > 0;
      T_CHECK(later == lq - 77, "causal: rows >= 77 see key %lld (%lld of %lld)", (long long)j,
              (long long)later, (long long)(lq - 77));
      idoc_ctx_reset(c);
    }
  }
  { // bottom-right alignment: one causal query row sees every key (= non-causal), and the
    // first of two rows sees all but the last key
    static const int32_t cq[3] = {0, 1, 3}, ck[3] = {0, 5, 10};
    geo gc = {cq, ck, 2, 2, 1, true}, gn = {cq, ck, 2, 2, 1, false};
    int64_t d = 4;
    idoc_tensor *q = rnd(3, 2 * d), *k = rnd(10, d), *v = rnd(10, d);
    idoc_tensor *oc = attend(c, q, k, v, &gc, NULL), *on = attend(c, q, k, v, &gn, NULL);
    T_CHECK(n_changed(IDOC_F(oc), IDOC_F(on), 0, 2 * d) == 0, "single causal row sees all keys");
    T_CHECK(n_changed(IDOC_F(oc), IDOC_F(on), 4 * d, 6 * d) == 0, "last row sees all keys");
    // row 1 (first of segment 1) = attention over keys 5..8 only
    static const int32_t q1[2] = {0, 1}, k1[2] = {0, 4};
    geo g1 = {q1, k1, 1, 2, 1, false};
    idoc_tensor *qs = idoc_tensor_rows(A, q, 1, 1), *ks = idoc_tensor_rows(A, k, 5, 4);
    idoc_tensor *vs = idoc_tensor_rows(A, v, 5, 4), *o1 = attend(c, qs, ks, vs, &g1, NULL);
    double e1 = 0;
    for (int64_t i = 0; i < 2 * d; i++)
      e1 = fmax(e1, fabs(IDOC_F(oc)[2 * d + i] - IDOC_F(o1)[i]));
    T_CHECK(e1 < 1e-6, "first of two rows sees Lk - 1 keys: %.3g", e1);
    T_CHECK(n_changed(IDOC_F(oc), IDOC_F(on), 2 * d, 4 * d) > 0, "and differs from non-causal");
    idoc_ctx_reset(c);
  }
  { // Tq > Tk causal: the first Lq - Lk rows see no key: output 0, lse -inf, finite gradients
    static const int32_t cq[2] = {0, 6}, ck[2] = {0, 2};
    geo g = {cq, ck, 1, 2, 2, true};
    int64_t d = 3;
    idoc_tensor *q = rnd(6, 2 * d), *k = rnd(2, 2 * d), *v = rnd(2, 2 * d), *lse;
    idoc_tensor *o = attend(c, q, k, v, &g, &lse);
    int zeros = 0, infs = 0;
    for (int64_t i = 0; i < 4 * 2 * d; i++)
      zeros += IDOC_F(o)[i] == 0.0f;
    for (int h = 0; h < 2; h++)
      for (int i = 0; i < 4; i++)
        infs += isinf(IDOC_F(lse)[h * 6 + i]) && IDOC_F(lse)[h * 6 + i] < 0;
    T_CHECK(zeros == 4 * 2 * d && infs == 8, "rows without keys: %d zeros, %d -inf", zeros, infs);
    idoc_tensor *dout = rnd(6, 2 * d), *dq = idoc_tensor_zeros_like(A, q);
    idoc_tensor *dk = idoc_tensor_zeros_like(A, k), *dv = idoc_tensor_zeros_like(A, v);
    cpu_attention_bwd(dq, dk, dv, dout, o, lse, q, k, v, idoc_segments_new(c, cq, 1).dev,
                      idoc_segments_new(c, ck, 1).dev, 2, 2, true, 1.0f / sqrtf((float)d));
    bool finite = true;
    for (int64_t i = 0; i < idoc_numel(dq); i++)
      finite &= isfinite(IDOC_F(dq)[i]);
    for (int64_t i = 0; i < idoc_numel(dk); i++)
      finite &= isfinite(IDOC_F(dk)[i]) && isfinite(IDOC_F(dv)[i]);
    int dq_zero = 0;
    for (int64_t i = 0; i < 4 * 2 * d; i++)
      dq_zero += IDOC_F(dq)[i] == 0.0f;
    T_CHECK(finite && dq_zero == 4 * 2 * d, "gradients finite, zero for keyless rows");
    idoc_ctx_reset(c);
  }
}

static double worst_rot = 0;

static void test_rotary(idoc_ctx *c) {
  for (int hd = 6; hd <= 10; hd += 4) {
    int64_t t = 5, heads = 3, half = hd / 2, w = heads * hd;
    idoc_tensor *x = rnd(t, w), *co = idoc_tensor_2d(A, IDOC_F32, t, half);
    idoc_tensor *si = idoc_tensor_like(A, co);
    for (int64_t i = 0; i < t; i++) // per-token, per-pair angles (M-RoPE-like arbitrary table)
      for (int64_t j = 0; j < half; j++) {
        double ang = 0.9 * (double)i * pow(10.0, -(double)j / (double)half) + 0.3 * (double)j;
        IDOC_F(co)[i * half + j] = (float)cos(ang);
        IDOC_F(si)[i * half + j] = (float)sin(ang);
      }
    idoc_tensor *y = idoc_rotary(c, x, co, si, (int)heads);
    double e = 0;
    for (int64_t i = 0; i < t; i++)
      for (int64_t h = 0; h < heads; h++)
        for (int64_t j = 0; j < half; j++) { // explicit 2x2 rotation [c -s; s c] of the pair
          int64_t a = i * w + h * hd + j, b = a + half;
          double cc = IDOC_F(co)[i * half + j], ss = IDOC_F(si)[i * half + j];
          double ra = cc * IDOC_F(x)[a] - ss * IDOC_F(x)[b],
                 rb = ss * IDOC_F(x)[a] + cc * IDOC_F(x)[b];
          e = fmax(e, fmax(fabs(ra - IDOC_F(y)[a]), fabs(rb - IDOC_F(y)[b])));
        }
    T_CHECK(e < 1e-6, "rotary = 2x2 rotations (hd %d): %.3g", hd, e);
    worst_rot = fmax(worst_rot, e);
    // inverse(forward(x)) = x, computed in place (y == x)
    idoc_tensor *z = idoc_tensor_like(A, y);
    idoc_tensor_copy(z, y);
    cpu_rotary(z, z, co, si, (int)heads, true);
    double ei = 0;
    for (int64_t i = 0; i < idoc_numel(x); i++)
      ei = fmax(ei, fabs(IDOC_F(z)[i] - IDOC_F(x)[i]));
    T_CHECK(ei < 1e-6, "inverse(forward(x)) = x in place: %.3g", ei);
    // in-place forward equals out-of-place forward
    idoc_tensor_copy(z, x);
    cpu_rotary(z, z, co, si, (int)heads, false);
    T_CHECK(n_changed(IDOC_F(z), IDOC_F(y), 0, idoc_numel(y)) == 0, "in-place forward");
    // cos = 1, sin = 0 is the identity
    idoc_tensor_fill(co, 1.0f);
    idoc_tensor_fill(si, 0.0f);
    idoc_tensor *id = idoc_rotary(c, x, co, si, (int)heads);
    T_CHECK(n_changed(IDOC_F(id), IDOC_F(x), 0, idoc_numel(x)) == 0, "cos=1 sin=0 is identity");
    idoc_ctx_reset(c);
  }
}

int main(void) {
  A = idoc_arena_new("test", IDOC_DEV_CPU, 1 << 20);
  idoc_rng_seed(&R, 11);
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 4 << 20);
  test_values(c);
  test_structure(c);
  test_rotary(c);
  printf("attention forward max err %.3g, lse max err %.3g; rotary max err %.3g\n", worst_fwd,
         worst_lse, worst_rot);
  idoc_ctx_free(c);
  idoc_arena_free(A);
  return t_summary("test_attention");
}
