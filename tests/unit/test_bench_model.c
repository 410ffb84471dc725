// The whole-model benchmarks (train/bench_model.h) on a tiny shape: what they dump is what they
// ran (the saved model and batch reproduce the first step's loss; the saved prompts give the
// first generated token by a full forward), training lowers the loss on its batch, generation
// is deterministic, the image benchmark's pixel values fit its grid. No timing is asserted.
#include <unistd.h>

#include "nn/ops.h"
#include "nn/qwen_model.h"
#include "nn/safetensors.h"
#include "tests/test.h"
#include "train/bench_model.h"

static idoc_bench_shape tiny_shape(void) {
  idoc_bench_shape s;
  idoc_bench_shape_default(&s);
  s.hidden = 64, s.layers = 2, s.heads = 4, s.kv_heads = 2, s.intermediate = 128;
  s.vocab = 2048, s.v_depth = 2, s.v_hidden = 32, s.v_heads = 2, s.v_intermediate = 64;
  s.image = 56, s.n_seq = 2, s.seq_len = 48, s.gen_seqs = 3, s.gen_prompt = 24, s.gen_new = 6;
  s.warmup = 1, s.iters = 3, s.lr = 2e-3f, s.init_std = 0.05f;
  s.image_h = 90, s.image_w = 130;
  return s;
}

static idoc_tensor *load(idoc_st_file *f, idoc_arena *a, const char *name, idoc_dtype dt) {
  const idoc_st_tensor *t = idoc_st_find(f, name);
  IDOC_CHECK(t, "dumped tensor %s missing", name);
  idoc_tensor *x = idoc_tensor_new(a, dt, t->ndim, t->shape);
  IDOC_CHECK(idoc_st_load(t, x) == IDOC_OK, "%s", idoc_last_error());
  return x;
}

static idoc_qwen *reload(const char *dir, idoc_params **ps) {
  char path[512];
  idoc_qwen_config cfg;
  snprintf(path, sizeof path, "%s/config.json", dir);
  IDOC_CHECK(idoc_qwen_config_load(path, &cfg) == IDOC_OK, "%s", idoc_last_error());
  *ps = idoc_params_new(IDOC_DEV_CPU);
  idoc_qwen *m = idoc_qwen_new(&cfg, *ps, IDOC_F32);
  IDOC_CHECK(idoc_qwen_load(m, dir) == IDOC_OK, "%s", idoc_last_error());
  return m;
}

static void check_train(const char *dir) {
  idoc_bench_shape s = tiny_shape();
  idoc_bench_result r;
  T_CHECK(idoc_bench_train(&s, dir, &r) == IDOC_OK, "%s", idoc_last_error());
  T_CHECK(r.n == 3 && r.n_losses == 4 && r.tokens == 96, "counts %d %d %g", r.n, r.n_losses,
          r.tokens);
  T_CHECK(r.median_ms > 0 && r.mean_ms > 0, "times %g %g", r.median_ms, r.mean_ms);
  for (int i = 1; i < r.n_losses; i++)
    T_CHECK(r.losses[i] < r.losses[i - 1],
            "loss does not fall on its own batch: step %d %.6f "
            "after %.6f",
            i, r.losses[i], r.losses[i - 1]);
  // the dumped weights (before the first step) and batch give the first step's loss
  idoc_params *ps;
  idoc_qwen *m = reload(dir, &ps);
  T_CHECK(m->cfg.hidden_size == 64 && m->cfg.vocab_size == 2048 && m->cfg.v_depth == 2,
          "dumped config %d %d %d", m->cfg.hidden_size, m->cfg.vocab_size, m->cfg.v_depth);
  T_CHECK(idoc_params_count(ps, false) == r.params, "parameters %lld vs %lld",
          (long long)idoc_params_count(ps, false), (long long)r.params);
  char path[512];
  snprintf(path, sizeof path, "%s/train_batch.safetensors", dir);
  idoc_st_file *f;
  T_CHECK(idoc_st_open(&f, path) == IDOC_OK, "%s", idoc_last_error());
  idoc_arena *A = idoc_arena_new("test", IDOC_DEV_CPU, 1 << 20);
  idoc_tensor *ids = load(f, A, "input_ids", IDOC_I32), *lab = load(f, A, "labels", IDOC_I32);
  idoc_tensor *pv = load(f, A, "pixel_values", IDOC_F32);
  idoc_tensor *grid = load(f, A, "image_grid_thw", IDOC_I32);
  T_CHECK(ids->shape[0] == 2 && ids->shape[1] == 48 && grid->shape[0] == 2, "batch shape");
  int T = 96;
  int32_t cu[3] = {0, 48, 96};
  idoc_tensor *flat = idoc_tensor_view(A, ids, 1, (int64_t[]){T});
  idoc_tensor *tgt = idoc_tensor_1d(A, IDOC_I32, T);
  idoc_qwen_shift_labels(IDOC_I(lab), cu, 2, IDOC_I(tgt), -100);
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 22);
  idoc_qwen_batch b = {flat, cu, 2, pv, IDOC_I(grid), 2};
  float loss =
      idoc_tensor_get(idoc_cross_entropy(c, idoc_qwen_forward(c, m, &b, NULL, NULL), tgt, -100), 0);
  T_CLOSE(loss, r.losses[0], 0, 1e-6);
  idoc_ctx_free(c);
  idoc_arena_free(A);
  idoc_st_close(f);
  idoc_qwen_free(m);
  idoc_params_free(ps);
  idoc_bench_result_free(&r);
}

static void check_generate(const char *dir) {
  idoc_bench_shape s = tiny_shape();
  idoc_bench_result r, r2;
  T_CHECK(idoc_bench_generate(&s, dir, &r) == IDOC_OK, "%s", idoc_last_error());
  T_CHECK(idoc_bench_generate(&s, NULL, &r2) == IDOC_OK, "%s", idoc_last_error());
  T_CHECK(r.n == 3 && r.tokens == 18 && r.median_ms > 0, "counts %d %g", r.n, r.tokens);
  T_CHECK(!memcmp(r.generated, r2.generated, 18 * sizeof *r.generated),
          "two runs generate different tokens");
  // the first new token of each prompt is the argmax of a full forward on the dumped prompt
  idoc_params *ps;
  idoc_qwen *m = reload(dir, &ps);
  char path[512];
  snprintf(path, sizeof path, "%s/generate_batch.safetensors", dir);
  idoc_st_file *f;
  T_CHECK(idoc_st_open(&f, path) == IDOC_OK, "%s", idoc_last_error());
  idoc_arena *A = idoc_arena_new("test", IDOC_DEV_CPU, 1 << 20);
  idoc_tensor *ids = load(f, A, "input_ids", IDOC_I32), *gen = load(f, A, "generated", IDOC_I32);
  idoc_tensor *pv = load(f, A, "pixel_values", IDOC_F32);
  idoc_tensor *grid = load(f, A, "image_grid_thw", IDOC_I32);
  T_CHECK(!memcmp(IDOC_I(gen), r.generated, 18 * sizeof(int32_t)), "dumped tokens");
  int n = (int)ids->shape[1], V = m->cfg.vocab_size;
  int64_t per = pv->shape[0] / 3;
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 22);
  for (int q = 0; q < 3; q++) {
    idoc_ctx_reset(c);
    idoc_tensor *row = idoc_tensor_view(A, idoc_tensor_rows(A, ids, q, 1), 1, (int64_t[]){n});
    int32_t cu[2] = {0, n};
    idoc_qwen_batch b = {row, cu, 1, idoc_tensor_rows(A, pv, q * per, per), IDOC_I(grid) + 3 * q,
                         1};
    idoc_tensor *lg = idoc_qwen_forward(c, m, &b, NULL, NULL);
    const float *last = IDOC_F(lg) + (int64_t)(n - 1) * V;
    int best = 0;
    for (int v = 1; v < V; v++)
      if (last[v] > last[best]) best = v;
    T_CHECK(best == r.generated[q * 6], "prompt %d: first token %d, full forward argmax %d", q,
            r.generated[q * 6], best);
  }
  idoc_ctx_free(c);
  idoc_arena_free(A);
  idoc_st_close(f);
  idoc_qwen_free(m);
  idoc_params_free(ps);
  idoc_bench_result_free(&r);
  idoc_bench_result_free(&r2);
}

static void check_image(const char *dir) {
  idoc_bench_shape s = tiny_shape();
  idoc_bench_result r;
  T_CHECK(idoc_bench_image(&s, dir, &r) == IDOC_OK, "%s", idoc_last_error());
  char path[512];
  snprintf(path, sizeof path, "%s/image.safetensors", dir);
  idoc_st_file *f;
  T_CHECK(idoc_st_open(&f, path) == IDOC_OK, "%s", idoc_last_error());
  idoc_arena *A = idoc_arena_new("test", IDOC_DEV_CPU, 1 << 20);
  idoc_tensor *img = load(f, A, "image", IDOC_U8), *pv = load(f, A, "pixel_values", IDOC_F32);
  idoc_tensor *g = load(f, A, "image_grid_thw", IDOC_I32);
  T_CHECK(img->shape[0] == 90 && img->shape[1] == 130, "picture %lldx%lld",
          (long long)img->shape[0], (long long)img->shape[1]);
  // 90x130 -> smart_resize 84x140 -> grid 1 x 6 x 10
  T_CHECK(IDOC_I(g)[0] == 1 && IDOC_I(g)[1] == 6 && IDOC_I(g)[2] == 10, "grid %d %d %d",
          IDOC_I(g)[0], IDOC_I(g)[1], IDOC_I(g)[2]);
  T_CHECK(pv->shape[0] == 60 && r.tokens == 60, "rows %lld, result %g", (long long)pv->shape[0],
          r.tokens);
  idoc_arena_free(A);
  idoc_st_close(f);
  idoc_bench_result_free(&r);
}

int main(void) {
  char dir[] = "/tmp/idoc_bench_model_XXXXXX";
  IDOC_CHECK(mkdtemp(dir), "mkdtemp");
  idoc_bench_shape bad = tiny_shape();
  bad.seq_len = 10; // shorter than its image
  idoc_qwen_config cfg;
  T_CHECK(idoc_bench_config(&bad, &cfg) == IDOC_ERR && strstr(idoc_last_error(), "sequences"),
          "a too-short sequence is refused: %s", idoc_last_error());
  check_train(dir);
  check_generate(dir);
  check_image(dir);
  T_CHECK(idoc_bench_peak_rss_mib() > 1, "peak RSS");
  char cmd[600];
  snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
  T_CHECK(system(cmd) == 0, "cleanup");
  return t_summary("test_bench_model");
}
