// Gradient checks for rotary and attention beyond the small shapes of test_grad_ops: segments
// longer than the kernels' 64-row tiles (so dq tiles, dk/dv key tiles and the causal start of
// a key tile are all exercised), GQA 4/2 and 3/1, odd head dims, cross attention with Tq < Tk
// and Tq > Tk (causal rows that see no key). Also: the backward kernel accumulates into the
// gradients it is given and skips NULL ones without changing the others.
#include "kernels/ops.h"
#include "tests/gradcheck.h"

static idoc_arena *A;
static idoc_rng R;

typedef struct {
  const int32_t *cu_q, *cu_k;
  int n_seg, hq, hkv;
  bool causal;
} att_ud;

static idoc_tensor *f_att(idoc_ctx *c, idoc_tensor **in, void *ud) {
  att_ud *u = ud;
  int64_t d = in[0]->shape[1] / u->hq;
  idoc_segments sq = idoc_segments_new(c, u->cu_q, u->n_seg);
  idoc_segments sk = idoc_segments_new(c, u->cu_k, u->n_seg);
  return idoc_attention(c, in[0], in[1], in[2], &sq, &sk, u->hq, u->hkv, u->causal,
                        1.0f / sqrtf((float)d));
}

static idoc_tensor *f_rot(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_rotary(c, in[0], in[1], in[2], *(int *)ud);
}

// rotary followed by a product with a fixed tensor, so the rotation of dy is checked against
// a loss whose weights differ per element of each pair
static idoc_tensor *f_rot_mul(idoc_ctx *c, idoc_tensor **in, void *ud) {
  return idoc_mul(c, idoc_rotary(c, in[0], in[1], in[2], *(int *)ud), in[3]);
}

static void check_attention(void) {
  static const struct {
    int32_t cu_q[4], cu_k[4];
    int n_seg, hq, hkv, d;
    bool causal;
  } cases[] = {
      {{0, 70, 73, 74}, {0, 70, 73, 74}, 3, 4, 2, 6, true}, // self, multi-tile, lengths 70 3 1
      {{0, 66, 70}, {0, 66, 70}, 2, 3, 1, 10, false},       // GQA 3/1, head dim 10
      {{0, 67, 68}, {0, 131, 136}, 2, 2, 1, 4, true},       // cross Tq < Tk, causal
      {{0, 70, 73}, {0, 5, 9}, 2, 2, 2, 3, true},           // Tq > Tk: rows that see nothing
      {{0, 5, 6}, {0, 70, 71}, 2, 3, 3, 5, false},          // cross, one query sees 70 keys
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    att_ud u = {cases[k].cu_q, cases[k].cu_k, cases[k].n_seg,
                cases[k].hq,   cases[k].hkv,  cases[k].causal};
    int64_t tq = u.cu_q[u.n_seg], tk = u.cu_k[u.n_seg], d = cases[k].d;
    int64_t qs[2] = {tq, u.hq * d}, ks[2] = {tk, u.hkv * d};
    idoc_tensor *p[3] = {gc_input(A, &R, 2, qs, -1, 1, true), gc_input(A, &R, 2, ks, -1, 1, true),
                         gc_input(A, &R, 2, ks, -1, 1, true)};
    char name[64];
    snprintf(name, sizeof name, "attention case %zu%s", k, u.causal ? " causal" : "");
    GC_EXPECT(name, f_att, &u, p, 3);
    // only k and v need gradients: q gets none, the others are unchanged
    p[0]->requires_grad = false;
    snprintf(name, sizeof name, "attention case %zu k,v only", k);
    GC_EXPECT(name, f_att, &u, p, 3);
    p[0]->requires_grad = true;
  }
}

// A host i32 tensor over segment offsets (the kernels' operand form).
static idoc_tensor *offsets(const int32_t *cu, int n_seg) {
  return idoc_tensor_wrap(A, (void *)cu, IDOC_I32, IDOC_DEV_CPU, 1, (int64_t[]){n_seg + 1});
}

// The backward kernel accumulates (dx += ...) and skips NULL outputs independently.
static void check_accumulate(void) {
  static const int32_t cq_[3] = {0, 70, 75}, ck_[3] = {0, 80, 83};
  idoc_tensor *cq = offsets(cq_, 2), *ck = offsets(ck_, 2);
  int hq = 4, hkv = 2;
  int64_t d = 6, tq = 75, tk = 83;
  idoc_tensor *q = gc_input(A, &R, 2, (int64_t[]){tq, hq * d}, -1, 1, false);
  idoc_tensor *k = gc_input(A, &R, 2, (int64_t[]){tk, hkv * d}, -1, 1, false);
  idoc_tensor *v = gc_input(A, &R, 2, (int64_t[]){tk, hkv * d}, -1, 1, false);
  idoc_tensor *dout = gc_input(A, &R, 2, (int64_t[]){tq, hq * d}, -1, 1, false);
  idoc_tensor *o = idoc_tensor_like(A, q), *lse = idoc_tensor_2d(A, IDOC_F32, hq, tq);
  float sc = 0.4f;
  cpu_attention_fwd(o, lse, q, k, v, cq, ck, hq, hkv, true, sc);
  idoc_tensor *g[3] = {idoc_tensor_zeros_like(A, q), idoc_tensor_zeros_like(A, k),
                       idoc_tensor_zeros_like(A, v)};
  cpu_attention_bwd(g[0], g[1], g[2], dout, o, lse, q, k, v, cq, ck, hq, hkv, true, sc);
  for (int which = 0; which < 3; which++) {
    idoc_tensor *acc = idoc_tensor_like(A, g[which]);
    idoc_tensor_fill(acc, 0.25f);
    idoc_tensor *dq = which == 0 ? acc : NULL, *dk = which == 1 ? acc : NULL;
    idoc_tensor *dv = which == 2 ? acc : NULL;
    cpu_attention_bwd(dq, dk, dv, dout, o, lse, q, k, v, cq, ck, hq, hkv, true, sc);
    double e = 0;
    for (int64_t i = 0; i < idoc_numel(acc); i++)
      e = fmax(e, fabs(IDOC_F(acc)[i] - 0.25 - IDOC_F(g[which])[i]));
    T_CHECK(e < 1e-6, "gradient %d alone accumulates onto 0.25: %.3g", which, e);
  }
}

static void check_rotary(void) {
  static const int64_t shapes[3][3] = {{5, 2, 6}, {7, 1, 10}, {3, 3, 2}}; // T, heads, head dim
  for (int s = 0; s < 3; s++) {
    int64_t t = shapes[s][0], h = shapes[s][1], hd = shapes[s][2], xs[2] = {t, h * hd};
    int64_t ts[2] = {t, hd / 2};
    idoc_tensor *co = idoc_tensor_new(A, IDOC_F32, 2, ts),
                *si = idoc_tensor_new(A, IDOC_F32, 2, ts);
    for (int64_t i = 0; i < t * hd / 2; i++) {
      double ang = idoc_rng_uniform(&R) * 6.283;
      IDOC_F(co)[i] = (float)cos(ang);
      IDOC_F(si)[i] = (float)sin(ang);
    }
    int heads = (int)h;
    idoc_tensor *p[4] = {gc_input(A, &R, 2, xs, -1, 1, true), co, si,
                         gc_input(A, &R, 2, xs, -2, 2, false)};
    GC_EXPECT("rotary", f_rot, &heads, p, 3);
    GC_EXPECT("rotary * w", f_rot_mul, &heads, p, 4);
  }
}

int main(void) {
  A = idoc_arena_new("test", IDOC_DEV_CPU, 1 << 20);
  idoc_rng_seed(&R, 5);
  check_attention();
  check_accumulate();
  check_rotary();
  idoc_arena_free(A);
  return t_summary("test_grad_attention");
}
