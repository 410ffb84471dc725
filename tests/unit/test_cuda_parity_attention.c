// idoc-requires: cuda
// CUDA attention against the CPU reference (harness: tests/unit/cuda_parity_util.h): forward
// (out, lse) and backward (dq, dk, dv accumulated onto nonzero values, and with NULL outputs),
// f32 and bf16, over packed variable-length segments with empty ones (no queries, no keys, or
// neither) and ones longer than 64 rows, causal and not, GQA, cross attention, head dims 64, 80,
// 128, 40 and odd ones (the scalar, non-vector path), the vision tower's windows, the LLM's
// causal GQA, a decode step against a KV cache with gaps, the heatmap decoder's token/image
// cross attention, and empty query or key sets. Finally idoc_attention end to end on a GPU
// context: segments made once, shared by two calls, saved for the backward.
#include "tests/unit/cuda_parity_util.h"

static idoc_tensor *offsets(const int32_t *cu, int n_seg) {
  idoc_tensor *t = idoc_tensor_1d(H, IDOC_I32, n_seg + 1);
  memcpy(t->data, cu, (size_t)(n_seg + 1) * sizeof *cu);
  return t;
}

// A random initial gradient on the scale of the gradient `g` that will be added to it (rounded
// to bf16 in bf16 cases): with initial values much larger than the update the comparison would
// mostly measure the initial values.
static idoc_tensor *init_like(idoc_dtype dt, const idoc_tensor *g) {
  double ss = 0;
  int64_t n = idoc_numel(g);
  for (int64_t i = 0; i < n; i++)
    ss += (double)IDOC_F(g)[i] * IDOC_F(g)[i];
  float rms = n && ss > 0 ? (float)sqrt(ss / (double)n) : 1.0f;
  return hrand(dt, g->ndim, g->shape, rms);
}

enum { G_DQ = 1, G_DK = 2, G_DV = 4, G_ALL = 7 };

static void case_att(idoc_dtype dt, const char *tag, int n_seg, const int32_t *cu_q,
                     const int32_t *cu_k, int hq, int hkv, int d, bool causal, int grads) {
  char shape[64];
  snprintf(shape, sizeof shape, "%s %d/%d d%d%s%s%s%s%s", tag, hq, hkv, d, causal ? " causal" : "",
           grads == G_ALL ? "" : " only", grads != G_ALL && grads & G_DQ ? " dq" : "",
           grads != G_ALL && grads & G_DK ? " dk" : "",
           grads != G_ALL && grads & G_DV ? " dv" : "");
  int64_t tq = cu_q[n_seg], tk = cu_k[n_seg];
  int64_t qs[2] = {tq, (int64_t)hq * d}, ks[2] = {tk, (int64_t)hkv * d}, ls[2] = {hq, tq};
  float sc = 1.0f / sqrtf((float)d);
  // q a little larger than k, so the softmax is peaked enough to differ from a mean.
  idoc_tensor *q = hrand(dt, 2, qs, 1.5f), *k = hrand(dt, 2, ks, 1.0f), *v = hrand(dt, 2, ks, 1.0f);
  idoc_tensor *hcq = offsets(cu_q, n_seg), *hck = offsets(cu_k, n_seg);
  idoc_tensor *o = idoc_tensor_new(H, IDOC_F32, 2, qs), *lse = idoc_tensor_new(H, IDOC_F32, 2, ls);
  cpu_attention_fwd(o, lse, q, k, v, hcq, hck, hq, hkv, causal, sc);
  idoc_tensor *gq = up(q, dt), *gk = up(k, dt), *gv = up(v, dt);
  idoc_tensor *gcq = up(hcq, dt), *gck = up(hck, dt);
  idoc_tensor *go = dev_new(dt, 2, qs), *glse = dev_new(IDOC_F32, 2, ls);
  IDOC_K(GPU, attention_fwd)(go, glse, gq, gk, gv, gcq, gck, hq, hkv, causal, sc);
  compare("attention_fwd", dt, shape, "out", go, o, tol(dt));
  compare("attention_fwd", dt, shape, "lse", glse, lse, 1e-5); // f32 output either way

  // Both backwards read the same out (the CPU's, rounded to bf16 in bf16 cases) and lse, so the
  // backward kernel is measured on its own.
  if (dt == IDOC_BF16) round_bf16(o);
  idoc_tensor *dout = hrand(dt, 2, qs, 1.0f);
  idoc_tensor *zero[3] = {idoc_tensor_zeros(H, IDOC_F32, 2, qs),
                          idoc_tensor_zeros(H, IDOC_F32, 2, ks),
                          idoc_tensor_zeros(H, IDOC_F32, 2, ks)};
  cpu_attention_bwd(zero[0], zero[1], zero[2], dout, o, lse, q, k, v, hcq, hck, hq, hkv, causal,
                    sc);
  idoc_tensor *g[3], *gg[3];
  for (int i = 0; i < 3; i++) {
    g[i] = grads & (1 << i) ? init_like(dt, zero[i]) : NULL;
    gg[i] = g[i] ? up(g[i], dt) : NULL;
  }
  cpu_attention_bwd(g[0], g[1], g[2], dout, o, lse, q, k, v, hcq, hck, hq, hkv, causal, sc);
  IDOC_K(GPU, attention_bwd)
  (gg[0], gg[1], gg[2], up(dout, dt), up(o, dt), up(lse, IDOC_F32), gq, gk, gv, gcq, gck, hq, hkv,
   causal, sc);
  static const char *names[3] = {"dq", "dk", "dv"};
  for (int i = 0; i < 3; i++)
    if (g[i]) compare("attention_bwd", dt, shape, names[i], gg[i], g[i], tol(dt));
  reset();
}

// a = attention(q, k, v) and b = attention(p, k, v) through idoc_attention on a CPU and a GPU
// context: the segments made once per context serve both calls (two tape nodes saving the same
// offset tensors), k and v gradients accumulate over both nodes; backward from random da, db.
static void case_e2e(idoc_dtype dt, int n_seg, const int32_t *cu_q, const int32_t *cu_k, int hq,
                     int hkv, int d, bool causal) {
  char shape[64];
  snprintf(shape, sizeof shape, "Tq=%d Tk=%d %d/%d d%d%s", cu_q[n_seg], cu_k[n_seg], hq, hkv, d,
           causal ? " causal" : "");
  int64_t qs[2] = {cu_q[n_seg], (int64_t)hq * d}, ks[2] = {cu_k[n_seg], (int64_t)hkv * d};
  float sc = 1.0f / sqrtf((float)d);
  idoc_tensor *x[2][4], *y[2][2], *dy[2] = {hrand(dt, 2, qs, 1.0f), hrand(dt, 2, qs, 1.0f)};
  x[0][0] = hrand(dt, 2, qs, 1.5f), x[0][1] = hrand(dt, 2, ks, 1.0f);
  x[0][2] = hrand(dt, 2, ks, 1.0f), x[0][3] = hrand(dt, 2, qs, 1.5f);
  for (int i = 0; i < 4; i++)
    x[1][i] = up(x[0][i], dt);
  for (int dv = 0; dv < 2; dv++) {
    idoc_ctx *c = idoc_ctx_new(dv ? GPU : IDOC_DEV_CPU, 0);
    for (int i = 0; i < 4; i++)
      x[dv][i]->requires_grad = true;
    idoc_segments sq = idoc_segments_new(c, cu_q, n_seg), sk = idoc_segments_new(c, cu_k, n_seg);
    T_CHECK(sq.dev->dev.kind == (dv ? IDOC_CUDA : IDOC_CPU) && sq.dev->dtype == IDOC_I32,
            "segments live on the context's device");
    for (int o = 0; o < 2; o++) {
      y[dv][o] =
          idoc_attention(c, x[dv][o ? 3 : 0], x[dv][1], x[dv][2], &sq, &sk, hq, hkv, causal, sc);
      idoc_tensor_convert(idoc_grad(c, y[dv][o]), dy[o]);
    }
    idoc_backward_range(c, 0);
    if (dv == 0) { // keep the CPU results in the host arena past the context
      for (int o = 0; o < 2; o++)
        y[0][o] = hcopy(y[0][o]);
      for (int i = 0; i < 4; i++)
        x[0][i]->grad = hcopy(x[0][i]->grad);
    } else {
      compare("e2e_attention", dt, shape, "a", y[1][0], y[0][0], tol(dt));
      compare("e2e_attention", dt, shape, "b", y[1][1], y[0][1], tol(dt));
      static const char *names[4] = {"dq", "dk", "dv", "dp"};
      for (int i = 0; i < 4; i++)
        compare("e2e_attention", dt, shape, names[i], x[1][i]->grad, x[0][i]->grad, tol(dt));
    }
    idoc_ctx_free(c);
  }
  reset();
}

int main(void) {
  if (!parity_init(4321)) return t_summary("test_cuda_parity_attention");
  // Packed self-attention: odd lengths, empty segments (also the last), one longer than 64 rows.
  static const int32_t packed[] = {0, 5, 5, 72, 73, 86, 86};
  // The vision tower: windows of 64 patches (4 x 4 merged tokens of 2 x 2) and a partial one.
  static const int32_t windows[] = {0, 64, 128, 144};
  // The LLM: two packed sequences and an empty one.
  static const int32_t seqs[] = {0, 37, 37, 107};
  // Cross attention, segment by segment (lq, lk): (3, 7), (0, 2), (9, 0), (10, 4), (70, 100):
  // keys nobody queries, queries without keys, and (causal) rows before the last lk that see none.
  static const int32_t xq[] = {0, 3, 3, 12, 22, 92}, xk[] = {0, 7, 9, 9, 13, 113};
  // A decode step: one new row per slot against its cached rows, with key-only gaps between the
  // slots of a 3 x 32 cache (as idoc_qwen_decode lays it out).
  static const int32_t dec_q[] = {0, 1, 1, 2, 2, 3}, dec_k[] = {0, 21, 32, 38, 64, 96};
  // The heatmap decoder: 2 tokens per query against its 8 x 8 image rows, and back.
  static const int32_t tok[] = {0, 2, 4}, img[] = {0, 64, 128};
  // A smaller cross attention for the NULL-gradient cases: (10, 4), (0, 5), (21, 35).
  static const int32_t sxq[] = {0, 10, 10, 31}, sxk[] = {0, 4, 9, 44};
  // No query rows; no key rows.
  static const int32_t none[] = {0, 0, 0}, some[] = {0, 5, 9};
  for (int di = 0; di < 2; di++) {
    idoc_dtype dt = di ? IDOC_BF16 : IDOC_F32;
    for (int causal = 0; causal < 2; causal++) {
      PARITY(case_att(dt, "packed", 6, packed, packed, 4, 4, 40, causal, G_ALL));
      PARITY(case_att(dt, "packed", 3, packed, packed, 3, 1, 33, causal, G_ALL)); // odd head dim
      PARITY(case_att(dt, "cross", 5, xq, xk, 6, 3, 64, causal, G_ALL));
      PARITY(case_att(dt, "empty q", 2, none, some, 4, 2, 64, causal, G_ALL));
      PARITY(case_att(dt, "empty k", 2, some, none, 4, 2, 64, causal, G_ALL));
    }
    PARITY(case_att(dt, "packed", 4, packed, packed, 2, 2, 5, true, G_ALL)); // d < one unit row
    PARITY(case_att(dt, "vision", 3, windows, windows, 16, 16, 80, false, G_ALL));
    PARITY(case_att(dt, "llm", 3, seqs, seqs, 16, 2, 128, true, G_ALL));
    PARITY(case_att(dt, "decode", 5, dec_q, dec_k, 16, 2, 128, true, G_ALL));
    PARITY(case_att(dt, "t2i", 2, tok, img, 8, 8, 16, false, G_ALL));
    PARITY(case_att(dt, "i2t", 2, img, tok, 8, 8, 16, false, G_ALL));
    // NULL gradient outputs: each alone, and dk + dv without dq.
    PARITY(case_att(dt, "cross", 3, sxq, sxk, 4, 2, 24, true, G_DQ));
    PARITY(case_att(dt, "cross", 3, sxq, sxk, 4, 2, 24, true, G_DK));
    PARITY(case_att(dt, "cross", 3, sxq, sxk, 4, 2, 24, true, G_DV));
    PARITY(case_att(dt, "cross", 3, sxq, sxk, 4, 2, 24, true, G_DK | G_DV));

    PARITY(case_e2e(dt, 6, packed, packed, 4, 2, 64, true));
  }
  return parity_finish("test_cuda_parity_attention");
}
