// Qwen2.5-VL against transformers (fixtures from scripts/make_qwen_fixtures.py): config
// loading, position ids, the processor's pixel_values from the raw images (when PNG decoding
// is built), vision features, logits, loss and parameter gradients; presets' parameter counts.
#include "data/image.h"
#include "nn/ops.h"
#include "nn/qwen_model.h"
#include "nn/safetensors.h"
#include "tests/test.h"

// max |a - b| / max |b| (the relative error of a whole tensor)
static double rel_err(const float *a, const float *b, int64_t n, double *maxabs) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    num = fmax(num, fabs((double)a[i] - b[i]));
    den = fmax(den, fabs((double)b[i]));
  }
  if (maxabs) *maxabs = num;
  return num / (den > 0 ? den : 1);
}

static idoc_tensor *expect(idoc_st_file *f, idoc_arena *a, const char *name, idoc_dtype dt) {
  const idoc_st_tensor *t = idoc_st_find(f, name);
  IDOC_CHECK(t, "fixture tensor %s missing", name);
  idoc_tensor *x = idoc_tensor_new(a, dt, t->ndim, t->shape);
  IDOC_CHECK(idoc_st_load(t, x) == IDOC_OK, "%s", idoc_last_error());
  return x;
}

static void check_fixture(const char *dir, int64_t max_pixels) {
  char path[512];
  printf("== fixture %s\n", dir);
  idoc_qwen_config cfg;
  snprintf(path, sizeof path, "%s/config.json", dir);
  T_CHECK(idoc_qwen_config_load(path, &cfg) == IDOC_OK, "%s", idoc_last_error());
  idoc_params *ps = idoc_params_new(IDOC_DEV_CPU);
  idoc_qwen *m = idoc_qwen_new(&cfg, ps, IDOC_F32);
  snprintf(path, sizeof path, "%s/model.safetensors", dir);
  T_CHECK(idoc_qwen_load(m, path) == IDOC_OK, "%s", idoc_last_error());
  idoc_params_alloc_grads(ps);
  idoc_qwen_counts cnt = idoc_qwen_param_counts(&cfg);
  T_CHECK(cnt.total == idoc_params_count(ps, false), "parameter count formula %lld vs created %lld",
          (long long)cnt.total, (long long)idoc_params_count(ps, false));

  idoc_st_file *ex;
  snprintf(path, sizeof path, "%s/expected.safetensors", dir);
  T_CHECK(idoc_st_open(&ex, path) == IDOC_OK, "%s", idoc_last_error());
  idoc_arena *A = idoc_arena_new("fixture", IDOC_DEV_CPU, 1 << 22);
  idoc_tensor *ids = expect(ex, A, "input_ids", IDOC_I32),
              *labels = expect(ex, A, "labels", IDOC_I32);
  idoc_tensor *grid = expect(ex, A, "image_grid_thw", IDOC_I32);
  idoc_tensor *pix = expect(ex, A, "pixel_values", IDOC_F32);
  idoc_tensor *posx = expect(ex, A, "position_ids", IDOC_I32);
  int T = (int)idoc_numel(ids), n_img = (int)grid->shape[0];
  ids = idoc_tensor_view(A, ids, 1, (int64_t[]){T});

  // position ids
  int32_t *pos = idoc_xmalloc((size_t)3 * T * sizeof *pos);
  int used = 0, delta = 0;
  T_CHECK(idoc_qwen_rope_index(&cfg, IDOC_I(ids), T, IDOC_I(grid), n_img, pos, &used, &delta) ==
              IDOC_OK,
          "%s", idoc_last_error());
  int bad = 0;
  for (int i = 0; i < 3 * T; i++)
    bad += pos[i] != IDOC_I(posx)[i];
  T_CHECK(bad == 0 && used == n_img, "position ids: %d differ", bad);
  T_CHECK(delta == IDOC_I(expect(ex, A, "rope_deltas", IDOC_I32))[0], "rope delta %d", delta);
  free(pos);

#if IDOC_HAVE_PNG
  { // our preprocessing of the raw images reproduces the processor's pixel_values
    int64_t row = 0;
    double worst = 0;
    for (int i = 0; i < n_img; i++) {
      idoc_image im;
      snprintf(path, sizeof path, "%s/image%d.png", dir, i);
      T_CHECK(idoc_image_load(path, &im) == IDOC_OK, "%s", idoc_last_error());
      idoc_qwen_image_opts o;
      idoc_qwen_image_opts_default(&o);
      o.min_pixels = 3136;
      o.max_pixels = max_pixels;
      float *pv = NULL;
      int64_t np = 0, g[3];
      T_CHECK(idoc_qwen_preprocess(&im, &o, path, &pv, &np, g) == IDOC_OK, "%s", idoc_last_error());
      T_CHECK(g[0] == IDOC_I(grid)[3 * i] && g[1] == IDOC_I(grid)[3 * i + 1] &&
                  g[2] == IDOC_I(grid)[3 * i + 2],
              "image %d grid", i);
      double e;
      rel_err(pv, IDOC_F(pix) + row * 1176, np * 1176, &e);
      worst = fmax(worst, e);
      row += np;
      free(pv);
      idoc_image_free(&im);
    }
    printf("pixel_values from raw images: max abs error %.3g\n", worst);
    T_CHECK(worst <= 1e-6, "pixel_values max abs error %.3g", worst);
  }
#endif

  // forward / loss / backward on the processor's pixel_values
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 24);
  int32_t cu[2] = {0, T};
  idoc_qwen_batch b = {ids, cu, 1, pix, IDOC_I(grid), n_img};
  idoc_tensor *feats = NULL;
  idoc_tensor *logits = idoc_qwen_forward(c, m, &b, NULL, &feats);
  idoc_tensor *want = expect(ex, A, "logits", IDOC_F32);
  double e_img = rel_err(IDOC_F(feats), IDOC_F(expect(ex, A, "image_embeds", IDOC_F32)),
                         idoc_numel(feats), NULL);
  double e_log = rel_err(IDOC_F(logits), IDOC_F(want), idoc_numel(want), NULL);
  printf("vision features rel error %.3g, logits rel error %.3g\n", e_img, e_log);
  T_CHECK(e_img <= 1e-5, "vision features rel error %.3g", e_img);
  T_CHECK(e_log <= 1e-4, "logits rel error %.3g", e_log);

  idoc_tensor *tgt = idoc_tensor_1d(A, IDOC_I32, T);
  idoc_qwen_shift_labels(IDOC_I(labels), cu, 1, IDOC_I(tgt), -100);
  idoc_tensor *loss = idoc_cross_entropy(c, logits, tgt, -100);
  double lw = idoc_tensor_get(expect(ex, A, "loss", IDOC_F32), 0), lg = idoc_tensor_get(loss, 0);
  printf("loss %.8f vs %.8f (rel %.3g)\n", lg, lw, fabs(lg - lw) / fabs(lw));
  T_CHECK(fabs(lg - lw) <= 1e-5 * fabs(lw), "loss %.8f vs %.8f", lg, lw);
  idoc_backward(c, loss);
  double worst_g = 0;
  for (int i = 0; i < idoc_st_count(ex); i++) {
    const idoc_st_tensor *t = idoc_st_tensor_at(ex, i);
    if (strncmp(t->name, "grad.", 5)) continue;
    idoc_param *p = idoc_params_find(ps, t->name + 5);
    T_CHECK(p != NULL, "gradient for unknown parameter %s", t->name);
    if (!p) continue;
    idoc_tensor *g = expect(ex, A, t->name, IDOC_F32);
    double e = rel_err(IDOC_F(p->w->grad), IDOC_F(g), idoc_numel(g), NULL);
    worst_g = fmax(worst_g, e);
    T_CHECK(e <= 1e-3, "gradient %s rel error %.3g", t->name + 5, e);
  }
  printf("gradients: worst rel error %.3g\n", worst_g);
  idoc_ctx_free(c);
  idoc_arena_free(A);
  idoc_st_close(ex);
  idoc_qwen_free(m);
  idoc_params_free(ps);
}

int main(void) {
  // parameter counts of the presets equal the published figures (spec section 8.1)
  idoc_qwen_config cfg;
  T_CHECK(idoc_qwen_preset("3b", &cfg) == IDOC_OK, "3b");
  idoc_qwen_counts n3 = idoc_qwen_param_counts(&cfg);
  T_CHECK(n3.llm == 3085938688LL && n3.vision == 668684288LL && n3.total == 3754622976LL,
          "3b counts %lld %lld %lld", (long long)n3.llm, (long long)n3.vision, (long long)n3.total);
  T_CHECK(idoc_qwen_preset("7b", &cfg) == IDOC_OK, "7b");
  idoc_qwen_counts n7 = idoc_qwen_param_counts(&cfg);
  T_CHECK(n7.llm == 7615616512LL && n7.vision == 676550144LL && n7.total == 8292166656LL,
          "7b counts %lld %lld %lld", (long long)n7.llm, (long long)n7.vision, (long long)n7.total);
  T_CHECK(idoc_qwen_preset("13b", &cfg) == IDOC_ERR && strstr(idoc_last_error(), "13b"),
          "unknown preset named");
  T_CHECK(idoc_qwen_preset("tiny", &cfg) == IDOC_OK &&
              idoc_qwen_config_validate(&cfg, "tiny") == IDOC_OK,
          "tiny preset valid: %s", idoc_last_error());
  check_fixture("tests/fixtures/qwen/A", 50176);
  check_fixture("tests/fixtures/qwen/B", 15680);
  return t_summary("test_qwen");
}
