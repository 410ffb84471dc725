// config.json keys that change the math are honoured or refused by name, each checked against
// transformers (fixtures from scripts/make_config_key_fixtures.py: fixture A's weights and
// inputs under a config with one key changed): the vision rotary base (nested and flat), the
// text hidden_act (refused: transformers' logits move by the recorded amount), and
// tie_word_embeddings given only inside text_config.
#include "nn/ops.h"
#include "nn/qwen_model.h"
#include "nn/safetensors.h"
#include "nn/util.h"
#include "tests/test.h"

#define A "tests/fixtures/qwen/A"
#define K "tests/fixtures/qwen_keys/"

static double rel_err(const float *a, const float *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    num = fmax(num, fabs((double)a[i] - b[i]));
    den = fmax(den, fabs((double)b[i]));
  }
  return num / (den > 0 ? den : 1);
}

static idoc_tensor *expect(idoc_st_file *f, idoc_arena *a, const char *name, idoc_dtype dt) {
  const idoc_st_tensor *t = idoc_st_find(f, name);
  IDOC_CHECK(t, "fixture tensor %s missing", name);
  idoc_tensor *x = idoc_tensor_new(a, dt, t->ndim, t->shape);
  IDOC_CHECK(idoc_st_load(t, x) == IDOC_OK, "%s", idoc_last_error());
  return x;
}

// Logits and image features of fixture A's inputs for the model of config `cfg_path` with A's
// weights, compared with the fixture `want_dir`'s; returns the logits' relative error.
static double run_case(const char *cfg_path, const char *want_dir, double *img_err, double *vs_a) {
  idoc_qwen_config cfg;
  if (idoc_qwen_config_load(cfg_path, &cfg)) return INFINITY;
  idoc_params *ps = idoc_params_new(IDOC_DEV_CPU);
  idoc_qwen *m = idoc_qwen_new(&cfg, ps, IDOC_F32);
  double e_log = INFINITY;
  idoc_st_file *in, *want;
  if (idoc_qwen_load(m, A "/model.safetensors") == IDOC_OK &&
      idoc_st_open(&in, A "/expected.safetensors") == IDOC_OK) {
    char p[512];
    snprintf(p, sizeof p, "%s/expected.safetensors", want_dir);
    IDOC_CHECK(idoc_st_open(&want, p) == IDOC_OK, "%s", idoc_last_error());
    idoc_arena *ar = idoc_arena_new("keys", IDOC_DEV_CPU, 1 << 22);
    idoc_tensor *ids = expect(in, ar, "input_ids", IDOC_I32);
    idoc_tensor *grid = expect(in, ar, "image_grid_thw", IDOC_I32);
    idoc_tensor *pix = expect(in, ar, "pixel_values", IDOC_F32);
    int T = (int)idoc_numel(ids);
    ids = idoc_tensor_view(ar, ids, 1, (int64_t[]){T});
    idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 24);
    int32_t cu[2] = {0, T};
    idoc_qwen_batch b = {ids, cu, 1, pix, IDOC_I(grid), (int)grid->shape[0]};
    idoc_tensor *feats = NULL, *logits = idoc_qwen_forward(c, m, &b, NULL, &feats);
    idoc_tensor *wl = expect(want, ar, "logits", IDOC_F32),
                *al = expect(in, ar, "logits", IDOC_F32);
    e_log = rel_err(IDOC_F(logits), IDOC_F(wl), idoc_numel(wl));
    *img_err = rel_err(IDOC_F(feats), IDOC_F(expect(want, ar, "image_embeds", IDOC_F32)),
                       idoc_numel(feats));
    *vs_a = rel_err(IDOC_F(wl), IDOC_F(al), idoc_numel(wl));
    idoc_ctx_free(c);
    idoc_arena_free(ar);
    idoc_st_close(want);
    idoc_st_close(in);
  }
  idoc_qwen_free(m);
  idoc_params_free(ps);
  return e_log;
}

int main(void) {
  const char *rope[] = {K "vision_rope_theta", K "vision_rope_theta_flat"};
  for (int i = 0; i < 2; i++) {
    char p[512];
    snprintf(p, sizeof p, "%s/config.json", rope[i]);
    idoc_qwen_config cfg;
    T_CHECK(idoc_qwen_config_load(p, &cfg) == IDOC_OK && cfg.v_rope_theta == 5000.0,
            "%s: vision rope_theta read: %s", rope[i], idoc_last_error());
    double img = 0, vs_a = 0, e = run_case(p, rope[i], &img, &vs_a);
    printf("%s: logits rel error %.3g, image features %.3g (transformers moved %.3g)\n", rope[i], e,
           img, vs_a);
    T_CHECK(vs_a > 1e-3, "%s: the key must matter (%.3g)", rope[i], vs_a);
    T_CHECK(e <= 1e-4 && img <= 1e-5, "%s: logits %.3g, image features %.3g", rope[i], e, img);
    // Our config.json carries the base, so a save/load keeps it.
    T_CHECK(idoc_qwen_config_save(&cfg, "test_qwen_config_keys.json") == IDOC_OK, "save");
    idoc_qwen_config back;
    T_CHECK(idoc_qwen_config_load("test_qwen_config_keys.json", &back) == IDOC_OK &&
                back.v_rope_theta == 5000.0,
            "vision rope_theta round trip");
    remove("test_qwen_config_keys.json");
  }
  // gelu_pytorch_tanh changes transformers' logits; we refuse it, naming the key.
  idoc_qwen_config cfg;
  T_CHECK(idoc_qwen_config_load(K "text_hidden_act/config.json", &cfg) == IDOC_ERR &&
              strstr(idoc_last_error(), "text_config.hidden_act") &&
              strstr(idoc_last_error(), "gelu_pytorch_tanh"),
          "hidden_act refused: %s", idoc_last_error());
  {
    idoc_st_file *w, *a;
    T_CHECK(idoc_st_open(&w, K "text_hidden_act/expected.safetensors") == IDOC_OK &&
                idoc_st_open(&a, A "/expected.safetensors") == IDOC_OK,
            "fixtures");
    idoc_arena *ar = idoc_arena_new("act", IDOC_DEV_CPU, 1 << 22);
    idoc_tensor *wl = expect(w, ar, "logits", IDOC_F32), *al = expect(a, ar, "logits", IDOC_F32);
    double moved = rel_err(IDOC_F(wl), IDOC_F(al), idoc_numel(wl));
    T_CHECK(moved > 1e-2, "transformers honours hidden_act (logits moved %.3g)", moved);
    idoc_arena_free(ar);
    idoc_st_close(w);
    idoc_st_close(a);
  }
  // tie_word_embeddings only in text_config: tied, so A's weights (no lm_head) load and match.
  T_CHECK(idoc_qwen_config_load(K "tie_in_text_config/config.json", &cfg) == IDOC_OK &&
              cfg.tie_word_embeddings,
          "tie_word_embeddings from text_config: %s", idoc_last_error());
  double img = 0, vs_a = 0,
         e = run_case(K "tie_in_text_config/config.json", K "tie_in_text_config", &img, &vs_a);
  T_CHECK(e <= 1e-4, "tied model from text_config: logits rel error %.3g (%s)", e,
          idoc_last_error());
  // Float keys are checked as the floats they become: 1e-50 is 0 as a float.
  {
    char *text;
    size_t n;
    IDOC_CHECK(idoc_read_file(A "/config.json", &text, &n) == IDOC_OK, "%s", idoc_last_error());
    char *at = strstr(text, "\"rms_norm_eps\": 1e-06");
    T_CHECK(at != NULL, "fixture A has rms_norm_eps");
    if (at) {
      memcpy(at + 16, "1e-50", 5);
      idoc_write_file_atomic("test_qwen_config_keys.json", text, n);
      T_CHECK(idoc_qwen_config_load("test_qwen_config_keys.json", &cfg) == IDOC_ERR &&
                  strstr(idoc_last_error(), "text_config.rms_norm_eps"),
              "rms_norm_eps 1e-50: %s", idoc_last_error());
      remove("test_qwen_config_keys.json");
    }
    free(text);
  }
  return t_summary("test_qwen_config_keys");
}
