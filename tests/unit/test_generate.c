// Generation with the KV cache (nn/qwen_decode.c, nn/generate.c) on small random Qwen2.5-VL
// models with images: against re-running the full forward on the whole sequence (tokens, log-
// probs, hidden states), against transformers' greedy generate() and sampling warpers
// (fixtures from scripts/make_generate_fixtures.py), shared prefills vs separate runs,
// seeding, stop tokens, length limits and forced prefixes. Prints the decode speed.
#include "data/image.h"
#include "kernels/sample.h"
#include "nn/generate.h"
#include "nn/json.h"
#include "nn/ops.h"
#include "nn/safetensors.h"
#include "tests/test.h"

#define NP 3 // prompts of the tiny model

typedef struct {
  int32_t ids[96];
  int n;
  float *pix; // host [P, 1176]
  int64_t n_patches;
  int32_t grid[3];
  idoc_tensor *pv;
} prompt_t;

static idoc_qwen_config g_cfg;
static idoc_params *g_ps;
static idoc_qwen *g_m;
static idoc_ctx *g_c, *g_ref; // generation; the reference full forward
static idoc_arena *g_A;       // test data
static prompt_t g_p[NP];

// ---- helpers -----------------------------------------------------------------------------------
static double max_abs_diff(const float *a, const float *b, int64_t n, double *scale) {
  double d = 0, s = 0;
  for (int64_t i = 0; i < n; i++) {
    d = fmax(d, fabs((double)a[i] - b[i]));
    s = fmax(s, fabs((double)b[i]));
  }
  if (scale) *scale = s;
  return d;
}

static float log_softmax_at(const float *row, int V, int32_t tok, float t) {
  double mx = -INFINITY, sum = 0;
  for (int i = 0; i < V; i++)
    mx = fmax(mx, (double)(row[i] / t));
  for (int i = 0; i < V; i++)
    sum += exp((double)(row[i] / t) - mx);
  return (float)((double)(row[tok] / t) - mx - log(sum));
}

// A synthetic RGB image through the Qwen processor (smart_resize keeps 56x84 -> grid 1x4x6).
static void make_image_prompt(prompt_t *p, int h, int w, int n_text, uint64_t seed) {
  idoc_rng r;
  idoc_rng_seed(&r, seed);
  idoc_image im = {h, w, idoc_xmalloc((size_t)h * w * 3)};
  for (int i = 0; i < h * w * 3; i++)
    im.rgb[i] = (uint8_t)((i * 7 + (int)idoc_rng_below(&r, 64)) & 255);
  idoc_qwen_image_opts o;
  idoc_qwen_image_opts_default(&o);
  o.min_pixels = 56 * 56;
  int64_t g[3];
  IDOC_CHECK(idoc_qwen_preprocess(&im, &o, "synthetic", &p->pix, &p->n_patches, g) == IDOC_OK, "%s",
             idoc_last_error());
  idoc_image_free(&im);
  for (int k = 0; k < 3; k++)
    p->grid[k] = (int32_t)g[k];
  p->pv = idoc_tensor_2d(g_A, IDOC_F32, p->n_patches, idoc_qwen_patch_dim(&g_cfg));
  idoc_tensor_from_host(p->pv, p->pix);
  // <|im_start|>user\n<|vision_start|><|image_pad|>*k<|vision_end|>text<|im_end|>\n
  // <|im_start|>assistant\n with words from the learned ids
  const idoc_qwen_config *c = &g_cfg;
  int n = 0, k = (int)(g[0] * g[1] * g[2] / 4);
  p->ids[n++] = 1001;
  p->ids[n++] = (int32_t)idoc_rng_below(&r, 1000);
  p->ids[n++] = c->vision_start_token_id;
  for (int i = 0; i < k; i++)
    p->ids[n++] = c->image_token_id;
  p->ids[n++] = c->vision_end_token_id;
  for (int i = 0; i < n_text; i++)
    p->ids[n++] = (int32_t)idoc_rng_below(&r, 1000);
  p->ids[n++] = c->eos_token_id;
  p->ids[n++] = 1001;
  p->ids[n++] = (int32_t)idoc_rng_below(&r, 1000);
  p->n = n;
}

static idoc_gen_prompt gen_prompt(const prompt_t *p, uint64_t id) {
  idoc_gen_prompt g = {p->ids, p->n, p->pv, p->grid, p->pv ? 1 : 0, NULL, 0, id};
  return g;
}

// The full forward of one sequence (prompt tokens + completion) with its image: logits [T, V]
// and final-norm hidden [T, H] copied to host buffers the caller frees.
static void full_forward(idoc_qwen *m, const int32_t *ids, int T, idoc_tensor *pv,
                         const int32_t *grid, float **logits, float **hidden, float **feats) {
  idoc_ctx *c = g_ref;
  bool prev = idoc_no_grad_begin(c);
  idoc_tensor *it = idoc_tensor_1d(c->act, IDOC_I32, T);
  idoc_tensor_from_host(it, ids);
  int32_t cu[2] = {0, T};
  idoc_qwen_batch b = {it, cu, 1, pv, grid, pv ? 1 : 0};
  idoc_tensor *h = NULL, *f = NULL;
  idoc_tensor *lg = idoc_qwen_forward(c, m, &b, &h, pv ? &f : NULL);
  *logits = idoc_xmalloc(idoc_nbytes(lg));
  idoc_tensor_to_host(lg, *logits);
  if (hidden) {
    *hidden = idoc_xmalloc(idoc_nbytes(h));
    idoc_tensor_to_host(h, *hidden);
  }
  if (feats) {
    *feats = f ? idoc_xmalloc(idoc_nbytes(f)) : NULL;
    if (f) idoc_tensor_to_host(f, *feats);
  }
  idoc_grad_restore(c, prev);
  idoc_ctx_reset(c);
}

// Greedy decoding by re-running the full forward on the whole sequence at every step.
static int ref_greedy(idoc_qwen *m, const prompt_t *p, const int32_t *forced, int nf, int max_new,
                      const int32_t *stops, int n_stop, const int32_t *supp, int n_supp,
                      int32_t *out) {
  int V = m->cfg.vocab_size, n = 0;
  int32_t seq[256];
  memcpy(seq, p->ids, (size_t)p->n * sizeof *seq);
  for (; n < nf && n < max_new; n++)
    out[n] = seq[p->n + n] = forced[n];
  while (n < max_new) {
    float *lg;
    full_forward(m, seq, p->n + n, p->pv, p->grid, &lg, NULL, NULL);
    float *row = lg + (size_t)(p->n + n - 1) * V;
    for (int i = 0; i < n_supp; i++)
      row[supp[i]] = -INFINITY;
    int best = 0;
    for (int i = 1; i < V; i++)
      if (row[i] > row[best]) best = i;
    free(lg);
    out[n] = seq[p->n + n] = best;
    n++;
    bool stop = false;
    for (int i = 0; i < n_stop; i++)
      stop |= best == stops[i];
    if (stop) break;
  }
  return n;
}

static int gen(const idoc_gen_prompt *ps, int n, const idoc_gen_opts *o, idoc_gen_result *r) {
  int rc = idoc_generate(g_c, g_m, ps, n, o, r);
  T_CHECK(rc == IDOC_OK, "generate: %s", idoc_last_error());
  return rc;
}

static bool same_tokens(const idoc_gen_completion *a, const idoc_gen_completion *b) {
  return a->n_tokens == b->n_tokens && a->finish == b->finish &&
         !memcmp(a->tokens, b->tokens, (size_t)a->n_tokens * sizeof *a->tokens);
}

// Completion checked against the full forward of prompt + completion: both log-probs per token
// and (when kept) the hidden rows. Returns the worst log-prob and hidden errors.
static void check_against_forward(const idoc_gen_completion *C, const prompt_t *p, float temp,
                                  double *worst_lp, double *worst_h) {
  int V = g_cfg.vocab_size, T = p->n + C->n_tokens;
  int32_t seq[256];
  memcpy(seq, p->ids, (size_t)p->n * sizeof *seq);
  memcpy(seq + p->n, C->tokens, (size_t)C->n_tokens * sizeof *seq);
  float *lg, *hid;
  full_forward(g_m, seq, T, p->pv, p->grid, &lg, &hid, NULL);
  for (int j = 0; j < C->n_tokens; j++) {
    const float *row = lg + (size_t)(p->n - 1 + j) * V;
    double e1 = fabs(C->logp[j] - log_softmax_at(row, V, C->tokens[j], 1.0f));
    double e2 = fabs(C->logp_scaled[j] - log_softmax_at(row, V, C->tokens[j], temp));
    *worst_lp = fmax(*worst_lp, fmax(e1, e2));
  }
  if (C->hidden) {
    T_CHECK(C->hidden->shape[0] == T && C->hidden->shape[1] == g_cfg.hidden_size,
            "hidden rows %lld, want %d", (long long)C->hidden->shape[0], T);
    float *h = idoc_xmalloc(idoc_nbytes(C->hidden));
    idoc_tensor_to_host(C->hidden, h);
    double s, d = max_abs_diff(h, hid, (int64_t)T * g_cfg.hidden_size, &s);
    *worst_h = fmax(*worst_h, d / s);
    free(h);
  }
  free(lg);
  free(hid);
}

// ---- model level
// ---------------------------------------------------------------------------------
static void test_model_level(void) {
  printf("== prefill / decode\n");
  int V = g_cfg.vocab_size, H = g_cfg.hidden_size;
  idoc_qwen_cache *kv = idoc_qwen_cache_new(g_m, 6, 80);
  T_CHECK(kv != NULL, "%s", idoc_last_error());
  prompt_t *p = &g_p[0];
  // prefill's hidden states are the full forward's, bit for bit
  float *lg_full, *hid_full, *feat_full;
  full_forward(g_m, p->ids, p->n, p->pv, p->grid, &lg_full, &hid_full, &feat_full);
  idoc_arena_mark mk = idoc_arena_get_mark(g_c->act);
  idoc_tensor *it = idoc_tensor_1d(g_c->act, IDOC_I32, p->n);
  idoc_tensor_from_host(it, p->ids);
  int32_t cu[2] = {0, p->n}, slot = 2, nl = 4;
  idoc_qwen_batch b = {it, cu, 1, p->pv, p->grid, 1};
  idoc_tensor *lg, *hid, *feats;
  T_CHECK(idoc_qwen_prefill(g_c, g_m, kv, &b, &slot, &nl, &lg, &hid, &feats) == IDOC_OK, "%s",
          idoc_last_error());
  T_CHECK(lg->shape[0] == 4 && lg->shape[1] == V, "prefill logits rows %lld",
          (long long)lg->shape[0]);
  double s, dh = max_abs_diff(IDOC_F(hid), hid_full, (int64_t)p->n * H, NULL);
  double df = max_abs_diff(IDOC_F(feats), feat_full, idoc_numel(feats), NULL);
  double dl = max_abs_diff(IDOC_F(lg), lg_full + (size_t)(p->n - 4) * V, 4 * (int64_t)V, &s);
  printf("prefill vs forward: hidden max diff %.3g, image features %.3g, logits %.3g (of %.3g)\n",
         dh, df, dl, s);
  T_CHECK(dh == 0 && df == 0, "prefill hidden/features differ from the forward: %g %g", dh, df);
  T_CHECK(dl <= 1e-5 * s, "prefill logits differ by %g", dl);
  int delta = 0;
  int32_t pos[3 * 96];
  idoc_qwen_rope_index(&g_cfg, p->ids, p->n, p->grid, 1, pos, NULL, &delta);
  T_CHECK(kv->len[2] == p->n && kv->rope_delta[2] == delta && delta < 0,
          "slot length %d rope delta %d (want %d, %d)", kv->len[2], kv->rope_delta[2], p->n, delta);
  idoc_arena_reset_to(g_c->act, mk);

  // Decode steps on slots 2 and 5 (5 a copy of 2) feed the same tokens: identical rows; after k
  // steps the logits equal the full forward's last row of prompt + fed tokens.
  T_CHECK(idoc_qwen_cache_copy(g_c, kv, 2, 5) == IDOC_OK, "copy");
  int32_t seq[96 + 40], slots[2] = {2, 5};
  memcpy(seq, p->ids, (size_t)p->n * sizeof *seq);
  size_t allocs0 = 0;
  double worst = 0;
  for (int step = 0; step < 30; step++) {
    int32_t tok = (int32_t)((step * 37 + 11) % 1000), ids[2] = {tok, tok};
    seq[p->n + step] = tok;
    mk = idoc_arena_get_mark(g_c->act);
    idoc_tensor *dlg, *dh2;
    T_CHECK(idoc_qwen_decode(g_c, g_m, kv, slots, ids, 2, &dlg, &dh2) == IDOC_OK, "%s",
            idoc_last_error());
    T_CHECK(!memcmp(IDOC_F(dlg), IDOC_F(dlg) + V, (size_t)V * sizeof(float)),
            "copied slots diverge at step %d", step);
    if (step % 7 == 0 || step == 29) {
      float *want;
      full_forward(g_m, seq, p->n + step + 1, p->pv, p->grid, &want, NULL, NULL);
      double sc, d = max_abs_diff(IDOC_F(dlg), want + (size_t)(p->n + step) * V, V, &sc);
      worst = fmax(worst, d / sc);
      free(want);
    }
    idoc_arena_reset_to(g_c->act, mk);
    if (step == 1) allocs0 = idoc_arena_system_allocs(g_c->act);
  }
  printf("decode vs forward: worst logits rel diff %.3g over 30 steps\n", worst);
  T_CHECK(worst <= 1e-5, "decode logits rel diff %g", worst);
  T_CHECK(idoc_arena_system_allocs(g_c->act) == allocs0,
          "the step arena grew during decoding (%zu -> %zu blocks)", allocs0,
          idoc_arena_system_allocs(g_c->act));

  // packed prefill of two prompts == two separate prefills
  {
    prompt_t *q = &g_p[1];
    int T = p->n + q->n;
    int32_t ids[192], cu2[3] = {0, p->n, T}, sl[2] = {0, 1}, grid[6];
    memcpy(ids, p->ids, (size_t)p->n * 4);
    memcpy(ids + p->n, q->ids, (size_t)q->n * 4);
    memcpy(grid, p->grid, 12);
    memcpy(grid + 3, q->grid, 12);
    mk = idoc_arena_get_mark(g_c->act);
    idoc_tensor *pv = idoc_tensor_2d(g_c->act, IDOC_F32, p->n_patches + q->n_patches, 1176);
    memcpy(IDOC_F(pv), p->pix, (size_t)p->n_patches * 1176 * 4);
    memcpy(IDOC_F(pv) + p->n_patches * 1176, q->pix, (size_t)q->n_patches * 1176 * 4);
    idoc_tensor *it2 = idoc_tensor_1d(g_c->act, IDOC_I32, T);
    idoc_tensor_from_host(it2, ids);
    idoc_qwen_batch b2 = {it2, cu2, 2, pv, grid, 2};
    idoc_tensor *lg2;
    T_CHECK(idoc_qwen_prefill(g_c, g_m, kv, &b2, sl, NULL, &lg2, NULL, NULL) == IDOC_OK, "%s",
            idoc_last_error());
    float *lq;
    full_forward(g_m, q->ids, q->n, q->pv, q->grid, &lq, NULL, NULL);
    double s1, s2, d1 = max_abs_diff(IDOC_F(lg2), lg_full + (size_t)(p->n - 1) * V, V, &s1);
    double d2 = max_abs_diff(IDOC_F(lg2) + V, lq + (size_t)(q->n - 1) * V, V, &s2);
    printf("packed prefill of 2 prompts: next-token logits diff %.3g, %.3g\n", d1, d2);
    T_CHECK(d1 <= 1e-5 * s1 && d2 <= 1e-5 * s2, "packed prefill logits %g %g", d1, d2);
    free(lq);
    idoc_arena_reset_to(g_c->act, mk);
  }

  // bad input is refused with a message
  int32_t bad_slots[2] = {5, 2}, ids2[2] = {1, 2};
  idoc_tensor *x;
  T_CHECK(idoc_qwen_decode(g_c, g_m, kv, bad_slots, ids2, 2, &x, NULL) == IDOC_ERR &&
              strstr(idoc_last_error(), "ascending"),
          "unsorted slots: %s", idoc_last_error());
  int32_t empty = 3;
  T_CHECK(idoc_qwen_decode(g_c, g_m, kv, &empty, ids2, 1, &x, NULL) == IDOC_ERR &&
              strstr(idoc_last_error(), "slot 3"),
          "empty slot: %s", idoc_last_error());
  int32_t oov[1] = {V}, s2 = 2;
  T_CHECK(idoc_qwen_decode(g_c, g_m, kv, &s2, oov, 1, &x, NULL) == IDOC_ERR &&
              strstr(idoc_last_error(), "vocabulary"),
          "token outside the vocabulary: %s", idoc_last_error());
  mk = idoc_arena_get_mark(g_c->act);
  it = idoc_tensor_1d(g_c->act, IDOC_I32, p->n - 1); // one placeholder short of the grid
  int32_t short_ids[96];
  int k = 0;
  for (int i = 0, j = 0; i < p->n; i++) {
    if (p->ids[i] == g_cfg.image_token_id && k++ == 0) continue;
    short_ids[j++] = p->ids[i];
  }
  idoc_tensor_from_host(it, short_ids);
  int32_t cu3[2] = {0, p->n - 1};
  idoc_qwen_batch b3 = {it, cu3, 1, p->pv, p->grid, 1};
  T_CHECK(idoc_qwen_prefill(g_c, g_m, kv, &b3, &slot, NULL, &x, NULL, NULL) == IDOC_ERR &&
              strstr(idoc_last_error(), "sequence 0") && strstr(idoc_last_error(), "grid"),
          "placeholder mismatch: %s", idoc_last_error());
  int32_t odd_grid[3] = {1, 3, 6}; // not a multiple of the merge size
  b3.grid_thw = odd_grid;
  T_CHECK(idoc_qwen_prefill(g_c, g_m, kv, &b3, &slot, NULL, &x, NULL, NULL) == IDOC_ERR &&
              strstr(idoc_last_error(), "merge size"),
          "odd grid: %s", idoc_last_error());
  idoc_qwen_cache *small = idoc_qwen_cache_new(g_m, 1, 8);
  int32_t s0 = 0;
  it = idoc_tensor_1d(g_c->act, IDOC_I32, p->n);
  idoc_tensor_from_host(it, p->ids);
  b.ids = it;
  T_CHECK(idoc_qwen_prefill(g_c, g_m, small, &b, &s0, NULL, &x, NULL, NULL) == IDOC_ERR &&
              strstr(idoc_last_error(), "1..8"),
          "too long for the cache: %s", idoc_last_error());
  idoc_arena_reset_to(g_c->act, mk);
  T_CHECK(idoc_qwen_cache_new(g_m, 0, 8) == NULL && strstr(idoc_last_error(), "n_slots"),
          "zero slots: %s", idoc_last_error());
  idoc_qwen_cache_free(small);
  idoc_qwen_cache_free(kv);
  free(lg_full);
  free(hid_full);
  free(feat_full);
}

// ---- (a) greedy with the cache == greedy by full re-forward -------------------------------------
static void test_greedy(void) {
  printf("== greedy vs full re-forward\n");
  idoc_gen_prompt ps[NP];
  for (int i = 0; i < NP; i++)
    ps[i] = gen_prompt(&g_p[i], (uint64_t)i);
  int32_t supp[2];
  idoc_gen_opts o;
  idoc_gen_opts_default(&o);
  o.group_size = 2;
  o.max_new_tokens = 20;
  o.n_suppress = idoc_gen_vision_suppress(&g_cfg, supp);
  o.suppress_ids = supp;
  idoc_gen_result r;
  if (gen(ps, NP, &o, &r)) return;
  T_CHECK(r.n == 2 * NP, "completions %d", r.n);
  for (int i = 0; i < NP; i++) {
    int32_t want[64];
    int n = ref_greedy(g_m, &g_p[i], NULL, 0, 20, NULL, 0, supp, 2, want);
    const idoc_gen_completion *C = &r.c[2 * i];
    bool ok = C->n_tokens == n && !memcmp(C->tokens, want, (size_t)n * sizeof *want);
    T_CHECK(ok, "prompt %d: cached greedy differs from full re-forward greedy", i);
    T_CHECK(same_tokens(C, &r.c[2 * i + 1]), "prompt %d: greedy completions of a group differ", i);
    T_CHECK(C->finish == IDOC_FINISH_LENGTH && C->prompt == i && C->n_prompt == g_p[i].n,
            "prompt %d: finish %d", i, C->finish);
    int distinct = 0;
    for (int j = 0; j < n; j++)
      distinct += j == 0 || want[j] != want[j - 1];
    printf("prompt %d: %d greedy tokens match (%d runs)\n", i, n, distinct);
  }
  idoc_gen_result_free(&r);
}

// ---- (b) log-probs and hidden states vs the full forward; (c) shared prefill vs separate -------
static void test_sampled_vs_forward(void) {
  printf("== sampled completions vs full forward\n");
  idoc_gen_prompt ps[NP];
  for (int i = 0; i < NP; i++)
    ps[i] = gen_prompt(&g_p[i], 100 + (uint64_t)i);
  int32_t supp[2], stops[2];
  idoc_gen_opts o;
  idoc_gen_opts_default(&o);
  o.group_size = 4;
  o.max_new_tokens = 24;
  o.do_sample = true;
  o.temperature = 0.8f;
  o.top_k = 200;
  o.top_p = 0.95f;
  o.seed = 1234;
  o.n_suppress = idoc_gen_vision_suppress(&g_cfg, supp);
  o.suppress_ids = supp;
  o.n_stop = idoc_gen_default_stops(&g_cfg, stops);
  o.stop_ids = stops;
  o.keep_hidden = o.keep_image_feats = true;
  idoc_gen_result r;
  if (gen(ps, NP, &o, &r)) return;
  double wl = 0, wh = 0;
  int distinct = 0;
  for (int ci = 0; ci < r.n; ci++) {
    const idoc_gen_completion *C = &r.c[ci];
    check_against_forward(C, &g_p[C->prompt], o.temperature, &wl, &wh);
    if (C->index > 0) distinct += !same_tokens(C, &r.c[ci - 1]);
  }
  printf("%d completions: worst log-prob error %.3g, worst hidden rel error %.3g\n", r.n, wl, wh);
  T_CHECK(wl <= 1e-5, "log-prob error %g", wl);
  T_CHECK(wh <= 1e-5, "hidden rel error %g", wh);
  T_CHECK(distinct >= NP * 2, "sampled completions of a group should differ (%d distinct pairs)",
          distinct);
  T_CHECK(r.image_feats[2] == NULL, "a text-only prompt has no image features");
  for (int i = 0; i < 2; i++) { // image features as the forward's
    float *lg, *feats;
    full_forward(g_m, g_p[i].ids, g_p[i].n, g_p[i].pv, g_p[i].grid, &lg, NULL, &feats);
    T_CHECK(r.image_feats[i] && max_abs_diff(IDOC_F(r.image_feats[i]), feats,
                                             idoc_numel(r.image_feats[i]), NULL) == 0,
            "prompt %d image features", i);
    free(lg);
    free(feats);
  }

  // (c) each completion alone (G = 1, its index as first_completion), each prompt alone
  double wc = 0;
  bool all_same = true;
  for (int ci = 0; ci < r.n; ci++) {
    const idoc_gen_completion *C = &r.c[ci];
    idoc_gen_opts o1 = o;
    o1.group_size = 1;
    o1.first_completion = C->index;
    idoc_gen_result r1;
    if (gen(&ps[C->prompt], 1, &o1, &r1)) break;
    all_same &= same_tokens(C, &r1.c[0]) && r1.c[0].index == C->index;
    for (int j = 0; j < C->n_tokens && j < r1.c[0].n_tokens; j++)
      wc = fmax(wc, fabs(C->logp[j] - r1.c[0].logp[j]));
    double s;
    float *h0 = idoc_xmalloc(idoc_nbytes(C->hidden)), *h1 = idoc_xmalloc(idoc_nbytes(C->hidden));
    idoc_tensor_to_host(C->hidden, h0);
    if (idoc_same_shape(C->hidden, r1.c[0].hidden)) {
      idoc_tensor_to_host(r1.c[0].hidden, h1);
      wc = fmax(wc, max_abs_diff(h0, h1, idoc_numel(C->hidden), &s) / s);
    } else {
      all_same = false;
    }
    free(h0);
    free(h1);
    idoc_gen_result_free(&r1);
  }
  printf("shared prefill vs separate runs: tokens %s, worst log-prob/hidden diff %.3g\n",
         all_same ? "identical" : "DIFFER", wc);
  T_CHECK(all_same, "completions from a shared prefill differ from separate runs");
  T_CHECK(wc <= 1e-5, "shared vs separate diff %g", wc);
  // a group split over two calls (first_completion 0 and 2) gives the same completions
  idoc_gen_opts o2 = o;
  o2.group_size = 2;
  o2.first_completion = 2;
  o2.keep_hidden = o2.keep_image_feats = false;
  idoc_gen_result r2;
  if (gen(&ps[1], 1, &o2, &r2) == IDOC_OK) {
    T_CHECK(same_tokens(&r2.c[0], &r.c[4 + 2]) && same_tokens(&r2.c[1], &r.c[4 + 3]) &&
                r2.c[0].hidden == NULL,
            "group split over calls");
    idoc_gen_result_free(&r2);
  }
  idoc_gen_result_free(&r);
}

// ---- (d) seeding
// ---------------------------------------------------------------------------------
static void test_seeds(void) {
  printf("== seeds\n");
  idoc_gen_prompt ps[2] = {gen_prompt(&g_p[0], 7), gen_prompt(&g_p[2], 8)};
  int32_t supp[2];
  idoc_gen_opts o;
  idoc_gen_opts_default(&o);
  o.group_size = 3;
  o.max_new_tokens = 16;
  o.do_sample = true;
  o.temperature = 1.0f;
  o.seed = 99;
  o.n_suppress = idoc_gen_vision_suppress(&g_cfg, supp);
  o.suppress_ids = supp;
  idoc_gen_result a, b, c, d;
  if (gen(ps, 2, &o, &a) || gen(ps, 2, &o, &b)) return;
  o.seed = 100;
  if (gen(ps, 2, &o, &c)) return;
  o.seed = 99;
  ps[0].id = 70; // another prompt id re-seeds that prompt's completions only
  if (gen(ps, 2, &o, &d)) return;
  int same_ab = 0, same_ac = 0, same_ad0 = 0, same_ad1 = 0;
  for (int i = 0; i < 6; i++) {
    same_ab += same_tokens(&a.c[i], &b.c[i]) &&
               !memcmp(a.c[i].logp, b.c[i].logp, (size_t)a.c[i].n_tokens * sizeof(float));
    same_ac += same_tokens(&a.c[i], &c.c[i]);
    if (i < 3)
      same_ad0 += same_tokens(&a.c[i], &d.c[i]);
    else
      same_ad1 += same_tokens(&a.c[i], &d.c[i]);
  }
  printf("same seed: %d/6 identical; other seed: %d/6; other prompt id: %d/3 and %d/3\n", same_ab,
         same_ac, same_ad0, same_ad1);
  T_CHECK(same_ab == 6, "same seed gave different samples");
  T_CHECK(same_ac == 0, "a different seed repeated %d completions", same_ac);
  T_CHECK(same_ad0 == 0 && same_ad1 == 3, "prompt id seeding");
  idoc_gen_result_free(&a);
  idoc_gen_result_free(&b);
  idoc_gen_result_free(&c);
  idoc_gen_result_free(&d);
}

// ---- (e) top-k = 1 == greedy; warpers
// ------------------------------------------------------------
static int kept_set(const float *x, int V, int32_t *ids) {
  int n = 0;
  for (int i = 0; i < V; i++)
    if (x[i] > -INFINITY) ids[n++] = i;
  return n;
}

static void test_warpers(void) {
  printf("== warpers\n");
  idoc_sample_cand scratch[512];
  int32_t ids[512];
  // probabilities 0.5, 0.2, 0.15, 0.1, 0.05 at shuffled positions
  const float pr[5] = {0.2f, 0.1f, 0.5f, 0.05f, 0.15f};
  struct {
    float t, p;
    int k, n;
    int32_t want[5];
  } cases[] = {
      // top-p: ascending cumulative 0.05, 0.15, 0.30, 0.50, 1.0; drop while <= 1 - p
      {1.0f, 0.75f, 0, 3, {0, 2, 4}}, // 0.05, 0.1 go (0.15 <= 0.25)
      {1.0f, 0.6f, 0, 2, {0, 2}},     // 0.30 <= 0.4
      {1.0f, 0.4f, 0, 1, {2}},        // 0.50 <= 0.6: only the top token
      {1.0f, 1.0f, 0, 5, {0, 1, 2, 3, 4}},
      // temperature 2 first: probabilities sqrt(p)/sum = .3397 .2149 .1861 .1519 .1074;
      // ascending cumulative .1074 .2593 .4454: top_p 0.6 drops two
      {2.0f, 0.6f, 0, 3, {0, 2, 4}},
      // top-k before top-p: k = 4 drops 0.05; renormalised .526 .211 .158 .105, p = 0.8:
      // ascending cumulative .105 .263 <= 0.2? no: only 0.1 goes
      {1.0f, 0.8f, 4, 3, {0, 2, 4}},
      {1.0f, 1.0f, 2, 2, {0, 2}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
    float x[5];
    for (int i = 0; i < 5; i++)
      x[i] = logf(pr[i]);
    int n = idoc_sample_warp(x, 5, cases[c].t, cases[c].k, cases[c].p, scratch);
    int m = kept_set(x, 5, ids);
    bool ok = n == cases[c].n && m == n && !memcmp(ids, cases[c].want, (size_t)n * sizeof *ids);
    for (int i = 0; i < m; i++)
      ok &= fabsf(x[ids[i]] - logf(pr[ids[i]]) / cases[c].t) <= 1e-6f;
    T_CHECK(ok, "hand case %zu (t %g, k %d, p %g): kept %d", c, (double)cases[c].t, cases[c].k,
            (double)cases[c].p, n);
  }
  { // ties with the k-th value stay; -inf entries stay out
    float x[6] = {1, 3, 2, 2, 0, -INFINITY};
    int n = idoc_sample_warp(x, 6, 1.0f, 2, 1.0f, scratch);
    T_CHECK(n == 3 && kept_set(x, 6, ids) == 3 && ids[0] == 1 && ids[1] == 2 && ids[2] == 3,
            "top-k ties: kept %d", n);
    float y[3] = {-INFINITY, -INFINITY, -INFINITY};
    T_CHECK(idoc_sample_warp(y, 3, 1.0f, 1, 0.5f, scratch) == 0 &&
                idoc_sample_draw(y, 3, 0.5) == -1,
            "all removed");
  }
  // transformers' warpers on random vectors (V = 300)
  idoc_st_file *f;
  if (idoc_st_open(&f, "tests/fixtures/generate/warpers.safetensors") != IDOC_OK) {
    T_CHECK(0, "%s", idoc_last_error());
    return;
  }
  idoc_arena *A = idoc_arena_new("warpers", IDOC_DEV_CPU, 1 << 20);
  const idoc_st_tensor *tp = idoc_st_find(f, "params"), *tl = idoc_st_find(f, "logits"),
                       *tw = idoc_st_find(f, "warped");
  T_CHECK(tp && tl && tw, "warpers fixture tensors");
  if (tp && tl && tw) {
    idoc_tensor *P = idoc_tensor_new(A, IDOC_F32, tp->ndim, tp->shape);
    idoc_tensor *L = idoc_tensor_new(A, IDOC_F32, tl->ndim, tl->shape);
    idoc_tensor *W = idoc_tensor_new(A, IDOC_F32, tw->ndim, tw->shape);
    idoc_st_load(tp, P);
    idoc_st_load(tl, L);
    idoc_st_load(tw, W);
    int n = (int)L->shape[0], V = (int)L->shape[1], bad = 0;
    double worst = 0;
    for (int c = 0; c < n; c++) {
      float x[512];
      const float *pp = IDOC_F(P) + 3 * c, *want = IDOC_F(W) + (size_t)c * V;
      memcpy(x, IDOC_F(L) + (size_t)c * V, (size_t)V * sizeof *x);
      int kept = idoc_sample_warp(x, V, pp[0], (int)pp[1], pp[2], scratch), kw = 0;
      for (int i = 0; i < V; i++) {
        kw += want[i] > -INFINITY;
        if ((x[i] > -INFINITY) != (want[i] > -INFINITY))
          bad++;
        else if (x[i] > -INFINITY)
          worst = fmax(worst, fabs((double)x[i] - want[i]));
      }
      T_CHECK(kept == kw, "case %d (t %g k %d p %g): kept %d, transformers %d", c, (double)pp[0],
              (int)pp[1], (double)pp[2], kept, kw);
    }
    printf("transformers warpers, %d cases: %d membership differences, worst value diff %.3g\n", n,
           bad, worst);
    T_CHECK(bad == 0 && worst <= 1e-6, "warpers differ from transformers");
  }
  idoc_arena_free(A);
  idoc_st_close(f);

  { // draws follow the softmax: 40000 draws over probabilities .5 .25 .125 .125
    float x[5] = {logf(0.5f), logf(0.25f), -INFINITY, logf(0.125f), logf(0.125f)};
    int cnt[5] = {0};
    idoc_rng r;
    idoc_rng_seed(&r, 5);
    for (int i = 0; i < 40000; i++)
      cnt[idoc_sample_draw(x, 5, idoc_rng_uniform(&r))]++;
    const double want[5] = {0.5, 0.25, 0, 0.125, 0.125};
    double worst = 0; // in standard deviations of a binomial count
    for (int i = 0; i < 5; i++)
      if (want[i] > 0)
        worst = fmax(worst, fabs(cnt[i] - 40000 * want[i]) / sqrt(40000 * want[i] * (1 - want[i])));
    printf("draw frequencies %d %d %d %d %d (worst %.2f sd)\n", cnt[0], cnt[1], cnt[2], cnt[3],
           cnt[4], worst);
    T_CHECK(cnt[2] == 0 && worst < 4.5, "draw frequencies off by %.2f sd", worst);
    T_CHECK(idoc_sample_draw(x, 5, 0.0) == 0 && idoc_sample_draw(x, 5, 0.999999) == 4, "draw ends");
  }

  // top-k = 1 sampling is greedy
  idoc_gen_prompt ps[NP];
  for (int i = 0; i < NP; i++)
    ps[i] = gen_prompt(&g_p[i], (uint64_t)i);
  idoc_gen_opts o;
  idoc_gen_opts_default(&o);
  o.group_size = 2;
  o.max_new_tokens = 16;
  idoc_gen_result g, s;
  if (gen(ps, NP, &o, &g)) return;
  o.do_sample = true;
  o.temperature = 1.3f;
  o.top_k = 1;
  o.seed = 3;
  if (gen(ps, NP, &o, &s)) return;
  bool same = true;
  for (int i = 0; i < g.n; i++)
    same &= same_tokens(&g.c[i], &s.c[i]);
  T_CHECK(same, "top-k 1 sampling differs from greedy");
  double wd = 0; // logp_scaled is at temperature 1.3, logp at 1 (greedy: scaled == raw at t 1)
  for (int j = 0; j < s.c[0].n_tokens; j++)
    wd = fmax(wd, fabs(s.c[0].logp[j] - g.c[0].logp[j]));
  T_CHECK(wd <= 1e-6 && fabsf(s.c[0].logp_scaled[0] - s.c[0].logp[0]) > 1e-4,
          "top-k 1 log-probs %g", wd);
  idoc_gen_result_free(&g);
  idoc_gen_result_free(&s);
}

// ---- (f) stops and length; (g) forced prefix
// ------------------------------------------------------
static int32_t added_token_id(const char *content) {
  idoc_json_doc *d = idoc_json_parse_file("configs/tiny/tokenizer.json", NULL);
  IDOC_CHECK(d, "%s", idoc_last_error());
  const idoc_json *at = idoc_json_get(idoc_json_root(d), "added_tokens");
  int32_t id = -1;
  for (uint32_t i = 0; at && i < at->n; i++) {
    const idoc_json *e = idoc_json_at(at, i), *cn = idoc_json_get(e, "content");
    if (cn && !strcmp(cn->str, content)) id = (int32_t)idoc_json_get(e, "id")->num;
  }
  idoc_json_free(d);
  return id;
}

static void test_stops_forced(void) {
  printf("== stops, length, forced prefix\n");
  int32_t st[2];
  idoc_gen_default_stops(&g_cfg, st);
  T_CHECK(st[0] == added_token_id("<|im_end|>") && st[1] == added_token_id("<|endoftext|>") &&
              st[0] >= 0 && st[1] >= 0,
          "default stops %d %d", st[0], st[1]);
  prompt_t *p = &g_p[1];
  idoc_gen_prompt ps = gen_prompt(p, 0);
  int32_t supp[2];
  idoc_gen_opts o;
  idoc_gen_opts_default(&o);
  o.max_new_tokens = 14;
  o.n_suppress = idoc_gen_vision_suppress(&g_cfg, supp);
  o.suppress_ids = supp;
  idoc_gen_result r;
  if (gen(&ps, 1, &o, &r)) return;
  int32_t base[32];
  int nb = r.c[0].n_tokens;
  memcpy(base, r.c[0].tokens, (size_t)nb * sizeof *base);
  T_CHECK(nb == 14 && r.c[0].finish == IDOC_FINISH_LENGTH, "length: %d tokens", nb);
  idoc_gen_result_free(&r);
  // stop at the first token that did not occur before it (past the first few)
  int j = 3;
  for (; j < nb; j++) {
    bool seen = false;
    for (int i = 0; i < j; i++)
      seen |= base[i] == base[j];
    if (!seen) break;
  }
  T_CHECK(j < nb, "no fresh token to stop on");
  int32_t stops[2] = {base[j], 1023};
  o.stop_ids = stops;
  o.n_stop = 2;
  o.keep_hidden = true;
  if (gen(&ps, 1, &o, &r)) return;
  T_CHECK(r.c[0].n_tokens == j + 1 && r.c[0].finish == IDOC_FINISH_STOP &&
              !memcmp(r.c[0].tokens, base, (size_t)(j + 1) * sizeof *base) &&
              r.c[0].hidden->shape[0] == p->n + j + 1,
          "stop: %d tokens (want %d), finish %d", r.c[0].n_tokens, j + 1, r.c[0].finish);
  double wl = 0, wh = 0;
  check_against_forward(&r.c[0], p, 1.0f, &wl, &wh);
  T_CHECK(wl <= 1e-5 && wh <= 1e-5, "stopped completion vs forward %g %g", wl, wh);
  idoc_gen_result_free(&r);
  { // in a batch, completions that stop early leave the decode batch while the others go on
    idoc_gen_prompt all[NP];
    for (int i = 0; i < NP; i++)
      all[i] = gen_prompt(&g_p[i], (uint64_t)i);
    idoc_gen_opts ob = o;
    ob.group_size = 2;
    if (gen(all, NP, &ob, &r)) return;
    int lens[NP];
    bool ok = true;
    wl = wh = 0;
    for (int i = 0; i < NP; i++) {
      int32_t want[32];
      int n = ref_greedy(g_m, &g_p[i], NULL, 0, 14, stops, 2, supp, 2, want);
      lens[i] = n;
      for (int g = 0; g < 2; g++) {
        const idoc_gen_completion *C = &r.c[2 * i + g];
        ok &= C->n_tokens == n && !memcmp(C->tokens, want, (size_t)n * sizeof *want) &&
              C->finish == (n < 14 ? IDOC_FINISH_STOP : IDOC_FINISH_LENGTH);
        check_against_forward(C, &g_p[i], 1.0f, &wl, &wh);
      }
    }
    printf("batch with stops: lengths %d %d %d, log-prob error %.3g, hidden %.3g\n", lens[0],
           lens[1], lens[2], wl, wh);
    T_CHECK(ok && lens[1] == j + 1, "batched stops differ from the reference");
    T_CHECK(wl <= 1e-5 && wh <= 1e-5, "batched stops vs forward %g %g", wl, wh);
    idoc_gen_result_free(&r);
  }
  o.max_new_tokens = 5;
  o.keep_hidden = false;
  o.n_stop = 0;
  if (gen(&ps, 1, &o, &r)) return;
  T_CHECK(r.c[0].n_tokens == 5 && r.c[0].finish == IDOC_FINISH_LENGTH &&
              !memcmp(r.c[0].tokens, base, 5 * sizeof *base),
          "max_new_tokens 5: %d tokens, finish %d", r.c[0].n_tokens, r.c[0].finish);
  idoc_gen_result_free(&r);

  // forced prefix: kept verbatim (a stop id inside it does not stop), log-probs as the forward's,
  // continuation greedy from prompt + prefix
  int32_t forced[3] = {17, base[j], 404};
  ps.forced = forced;
  ps.n_forced = 3;
  o.n_stop = 2;
  o.max_new_tokens = 12;
  o.keep_hidden = true;
  if (gen(&ps, 1, &o, &r)) return;
  const idoc_gen_completion *C = &r.c[0];
  int32_t want[32];
  int nw = ref_greedy(g_m, p, forced, 3, 12, stops, 2, supp, 2, want);
  T_CHECK(C->n_forced == 3 && C->n_tokens == nw &&
              !memcmp(C->tokens, want, (size_t)nw * sizeof *want),
          "forced prefix: %d tokens (want %d)", C->n_tokens, nw);
  wl = wh = 0;
  check_against_forward(C, p, 1.0f, &wl, &wh);
  printf("forced prefix + %d generated tokens: log-prob error %.3g, hidden %.3g\n", nw - 3, wl, wh);
  T_CHECK(wl <= 1e-5 && wh <= 1e-5, "forced completion vs forward %g %g", wl, wh);
  idoc_gen_result_free(&r);
  o.max_new_tokens = 2; // the prefix alone exceeds the limit
  if (gen(&ps, 1, &o, &r)) return;
  T_CHECK(r.c[0].n_tokens == 2 && r.c[0].n_forced == 2 && r.c[0].finish == IDOC_FINISH_LENGTH &&
              r.c[0].tokens[1] == forced[1] && r.c[0].hidden->shape[0] == p->n + 2,
          "forced prefix longer than max_new_tokens: %d tokens", r.c[0].n_tokens);
  idoc_gen_result_free(&r);

  // bad options are refused by name
  o.max_new_tokens = 0;
  T_CHECK(idoc_generate(g_c, g_m, &ps, 1, &o, &r) == IDOC_ERR &&
              strstr(idoc_last_error(), "max_new_tokens"),
          "%s", idoc_last_error());
  o.max_new_tokens = 4;
  o.do_sample = true;
  o.temperature = 0;
  T_CHECK(idoc_generate(g_c, g_m, &ps, 1, &o, &r) == IDOC_ERR &&
              strstr(idoc_last_error(), "temperature"),
          "%s", idoc_last_error());
  o.temperature = 1;
  int32_t bad_stop = g_cfg.vocab_size;
  o.stop_ids = &bad_stop;
  o.n_stop = 1;
  T_CHECK(idoc_generate(g_c, g_m, &ps, 1, &o, &r) == IDOC_ERR &&
              strstr(idoc_last_error(), "stop_ids[0]"),
          "%s", idoc_last_error());
  o.n_stop = 0;
  idoc_gen_prompt bad = ps;
  bad.n_images = 0; // placeholders without an image
  T_CHECK(idoc_generate(g_c, g_m, &bad, 1, &o, &r) == IDOC_ERR &&
              strstr(idoc_last_error(), "prompt 0"),
          "%s", idoc_last_error());
}

// ---- transformers' greedy generate() on the Qwen fixtures
// ----------------------------------------
static void test_hf_greedy(const char *name, const char *variant) {
  char path[256];
  printf("== transformers generate(), fixture %s%s\n", name, variant);
  idoc_qwen_config cfg;
  snprintf(path, sizeof path, "tests/fixtures/qwen/%s/config.json", name);
  T_CHECK(idoc_qwen_config_load(path, &cfg) == IDOC_OK, "%s", idoc_last_error());
  idoc_params *ps = idoc_params_new(IDOC_DEV_CPU);
  idoc_qwen *m = idoc_qwen_new(&cfg, ps, IDOC_F32);
  snprintf(path, sizeof path, "tests/fixtures/qwen/%s/model.safetensors", name);
  T_CHECK(idoc_qwen_load(m, path) == IDOC_OK, "%s", idoc_last_error());
  idoc_st_file *ex, *gf;
  snprintf(path, sizeof path, "tests/fixtures/qwen/%s/expected.safetensors", name);
  T_CHECK(idoc_st_open(&ex, path) == IDOC_OK, "%s", idoc_last_error());
  snprintf(path, sizeof path, "tests/fixtures/generate/greedy_%s%s.safetensors", name, variant);
  T_CHECK(idoc_st_open(&gf, path) == IDOC_OK, "%s", idoc_last_error());
  idoc_arena *A = idoc_arena_new("hf", IDOC_DEV_CPU, 1 << 22);
  const char *names[7] = {"pixel_values", "image_grid_thw", "prompt_ids",        "generated",
                          "logits",       "stops",          "repetition_penalty"};
  idoc_tensor *t[7];
  for (int i = 0; i < 7; i++) {
    const idoc_st_tensor *s = idoc_st_find(i < 2 ? ex : gf, names[i]);
    IDOC_CHECK(s, "fixture tensor %s missing", names[i]);
    t[i] = idoc_tensor_new(A, s->dtype == IDOC_F32 ? IDOC_F32 : IDOC_I32, s->ndim, s->shape);
    IDOC_CHECK(idoc_st_load(s, t[i]) == IDOC_OK, "%s", idoc_last_error());
  }
  int n_img = (int)t[1]->shape[0], N = (int)idoc_numel(t[3]), V = cfg.vocab_size;
  idoc_gen_prompt p = {IDOC_I(t[2]), (int)idoc_numel(t[2]), t[0], IDOC_I(t[1]), n_img, NULL, 0, 0};
  idoc_gen_opts o;
  idoc_gen_opts_default(&o);
  o.max_new_tokens = N;
  o.suppress_ids = IDOC_I(t[5]); // generate() ran with min_new_tokens = N: stop ids masked
  o.n_suppress = 2;
  o.repetition_penalty = IDOC_F(t[6])[0];
  idoc_gen_result r;
  int rc = idoc_generate(g_c, m, &p, 1, &o, &r);
  T_CHECK(rc == IDOC_OK, "%s", idoc_last_error());
  if (rc == IDOC_OK) {
    const idoc_gen_completion *C = &r.c[0];
    bool same = C->n_tokens == N && !memcmp(C->tokens, IDOC_I(t[3]), (size_t)N * sizeof(int32_t));
    double worst = 0;
    for (int j = 0; j < C->n_tokens && j < N; j++)
      worst = fmax(worst, fabs(C->logp[j] - log_softmax_at(IDOC_F(t[4]) + (size_t)j * V, V,
                                                           IDOC_I(t[3])[j], 1.0f)));
    printf("repetition penalty %g: %d tokens %s transformers', worst log-prob diff %.3g\n",
           (double)o.repetition_penalty, N, same ? "equal" : "DIFFER from", worst);
    T_CHECK(same, "greedy tokens differ from transformers' generate()");
    T_CHECK(worst <= 1e-5, "log-probs differ from transformers' by %g", worst);
    idoc_gen_result_free(&r);
  }
  idoc_arena_free(A);
  idoc_st_close(ex);
  idoc_st_close(gf);
  idoc_qwen_free(m);
  idoc_params_free(ps);
}

// ---- decode speed -------------------------------------------------------------------------------
static void bench(void) {
  idoc_gen_prompt ps[4];
  for (int i = 0; i < 4; i++)
    ps[i] = gen_prompt(&g_p[i % NP], 500 + (uint64_t)i);
  int32_t supp[4];
  idoc_gen_opts o;
  idoc_gen_opts_default(&o);
  o.group_size = 8;
  o.max_new_tokens = 32;
  o.do_sample = true;
  o.temperature = 1.0f;
  o.top_p = 0.95f;
  o.n_suppress = idoc_gen_vision_suppress(&g_cfg, supp);
  supp[2] = g_cfg.eos_token_id; // full-length completions for a fixed amount of work
  supp[3] = g_cfg.bos_token_id;
  o.n_suppress = 4;
  o.suppress_ids = supp;
  idoc_gen_result r;
  if (gen(ps, 4, &o, &r)) return;
  const char *th = getenv("OMP_NUM_THREADS");
  printf("decode speed (tiny model, CPU, OMP_NUM_THREADS=%s): 4 prompts x G 8 x 32 tokens: "
         "prefill %.1f ms, decode %d steps %.1f ms = %.0f tokens/s (%.2f ms per batched step)\n",
         th ? th : "unset", 1e3 * r.prefill_s, r.decode_steps, 1e3 * r.decode_s,
         (double)r.decode_rows / r.decode_s, 1e3 * r.decode_s / r.decode_steps);
  T_CHECK(r.decode_rows == 32 * 31 && r.decode_steps == 31, "decode rows %lld steps %d",
          (long long)r.decode_rows, r.decode_steps);
  idoc_gen_result_free(&r);
}

int main(void) {
  T_CHECK(idoc_qwen_preset("tiny", &g_cfg) == IDOC_OK, "tiny preset");
  g_ps = idoc_params_new(IDOC_DEV_CPU);
  g_m = idoc_qwen_new(&g_cfg, g_ps, IDOC_F32);
  idoc_qwen_init_random(g_m, 2024, 0.1f);
  g_c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 22);
  g_ref = idoc_ctx_new(IDOC_DEV_CPU, 1 << 22);
  g_A = idoc_arena_new("test data", IDOC_DEV_CPU, 1 << 22);
  make_image_prompt(&g_p[0], 56, 84, 5, 1);  // grid 1x4x6: 6 image tokens
  make_image_prompt(&g_p[1], 112, 56, 9, 2); // grid 1x8x4: 8 image tokens
  g_p[2].n = 0;                              // text only
  for (int i = 0; i < 23; i++)
    g_p[2].ids[g_p[2].n++] = i == 0 ? 1001 : (int32_t)((i * 131 + 7) % 1000);

  test_model_level();
  test_greedy();
  test_sampled_vs_forward();
  test_seeds();
  test_warpers();
  test_stops_forced();
  test_hf_greedy("A", "");
  test_hf_greedy("B", "");
  test_hf_greedy("A", "_rep");
  test_hf_greedy("B", "_rep");
  bench();

  for (int i = 0; i < NP; i++)
    free(g_p[i].pix);
  idoc_arena_free(g_A);
  idoc_ctx_free(g_c);
  idoc_ctx_free(g_ref);
  idoc_qwen_free(g_m);
  idoc_params_free(g_ps);
  return t_summary("test_generate");
}
