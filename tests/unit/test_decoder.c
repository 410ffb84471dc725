// The heatmap decoder against a PyTorch reference (scripts/make_decoder_fixtures.py): heatmaps,
// the MSE loss and gradients; and the parameter counts of the 3B-release configuration.
#include "nn/heatmap_decoder.h"
#include "nn/ops.h"
#include "nn/safetensors.h"
#include "tests/test.h"

static double rel_err(const float *a, const float *b, int64_t n) {
  double num = 0, den = 0;
  for (int64_t i = 0; i < n; i++) {
    num = fmax(num, fabs((double)a[i] - b[i]));
    den = fmax(den, fabs((double)b[i]));
  }
  return num / (den > 0 ? den : 1);
}

static int64_t count_prefix(idoc_params *ps, const char *prefix) {
  int64_t n = 0;
  for (int i = 0; i < ps->n; i++)
    if (!strncmp(ps->p[i].w->name, prefix, strlen(prefix))) n += idoc_numel(ps->p[i].w);
  return n;
}

static void test_counts(void) {
  idoc_params *ps = idoc_params_new(IDOC_DEV_CPU);
  idoc_decoder_config cfg = idoc_decoder_config_release();
  idoc_decoder *d = idoc_decoder_new(&cfg, ps);
  // imagedoctor.md section 1.1: MaskDecoder 50,468,224 (HeatmapPredictor 32,195,136; two-way
  // transformer 16,943,488; mask token + hypernetwork 1,329,600), each projection MLP 5,769,984,
  // prompt encoder about 18.0K learnable plus the 768-value Gaussian buffer.
  T_CHECK(count_prefix(ps, "heatmap.") == 50468224, "MaskDecoder %lld",
          (long long)count_prefix(ps, "heatmap."));
  T_CHECK(count_prefix(ps, "heatmap.output_upscaling.") == 32195136, "HeatmapPredictor");
  T_CHECK(count_prefix(ps, "heatmap.transformer.") == 16943488, "TwoWayTransformer");
  T_CHECK(count_prefix(ps, "text_hidden_fcs.") == 5769984, "text_hidden_fcs");
  T_CHECK(count_prefix(ps, "image_hidden_fcs.") == 5769984, "image_hidden_fcs");
  int64_t pe = count_prefix(ps, "prompt_encoder.");
  T_CHECK(pe - 768 == 17996, "prompt encoder learnable %lld", (long long)(pe - 768));
  T_CHECK(idoc_decoder_param_count(d) == 62026956, "decoder total %lld",
          (long long)idoc_decoder_param_count(d));
  idoc_decoder_free(d);
  idoc_params_free(ps);
}

static idoc_tensor *load(idoc_st_file *f, idoc_arena *a, const char *name) {
  const idoc_st_tensor *t = idoc_st_find(f, name);
  IDOC_CHECK(t, "fixture tensor %s missing", name);
  idoc_tensor *x = idoc_tensor_new(a, IDOC_F32, t->ndim, t->shape);
  IDOC_CHECK(idoc_st_load(t, x) == IDOC_OK, "%s", idoc_last_error());
  return x;
}

static void test_fixture(void) {
  idoc_decoder_config cfg = {.llm_hidden = 24,
                             .dim = 16,
                             .heads = 4,
                             .depth = 2,
                             .mlp_dim = 32,
                             .downsample = 2,
                             .c1 = 12,
                             .c2 = 8,
                             .c3 = 6};
  int B = 2, H = 3, W = 4;
  idoc_params *ps = idoc_params_new(IDOC_DEV_CPU);
  idoc_decoder *d = idoc_decoder_new(&cfg, ps);
  idoc_params_alloc_grads(ps);
  idoc_st_file *wf, *ex;
  T_CHECK(idoc_st_open(&wf, "tests/fixtures/decoder/decoder.safetensors") == IDOC_OK, "%s",
          idoc_last_error());
  T_CHECK(idoc_st_open(&ex, "tests/fixtures/decoder/expected.safetensors") == IDOC_OK, "%s",
          idoc_last_error());
  int loaded = 0;
  for (int i = 0; i < ps->n; i++) {
    const idoc_st_tensor *t = idoc_st_find(wf, ps->p[i].w->name);
    if (!t) { // only the prompt encoder's unused pieces may be absent
      T_CHECK(!ps->p[i].trainable || strstr(ps->p[i].w->name, "pe_layer"),
              "used parameter %s missing from the fixture", ps->p[i].w->name);
      continue;
    }
    T_CHECK(idoc_st_load(t, ps->p[i].w) == IDOC_OK, "%s", idoc_last_error());
    loaded++;
  }
  T_CHECK(loaded == idoc_st_count(wf), "loaded %d of %d fixture tensors", loaded,
          idoc_st_count(wf));

  idoc_arena *A = idoc_arena_new("fx", IDOC_DEV_CPU, 1 << 20);
  idoc_tensor *feats = load(ex, A, "image_feats"), *tok = load(ex, A, "tokens");
  idoc_tensor *gt = load(ex, A, "gt"), *want = load(ex, A, "pred");
  feats->requires_grad = tok->requires_grad = true;
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 22);
  int kinds[2] = {0, 1};
  idoc_tensor *pred = idoc_decoder_forward(c, d, feats, tok, kinds, B, H, W);
  T_CHECK(pred->shape[0] == B && pred->shape[1] == 16 * H && pred->shape[2] == 16 * W,
          "output is 16x the grid");
  double e = rel_err(IDOC_F(pred), IDOC_F(want), idoc_numel(want));
  printf("heatmaps rel error %.3g\n", e);
  T_CHECK(e <= 1e-5, "heatmaps rel error %.3g", e);

  int64_t hw = 16 * H * 16 * W;
  idoc_tensor *pm = idoc_slice(c, pred, 0, 0, 1), *pa = idoc_slice(c, pred, 0, 1, 1);
  idoc_tensor *gm = idoc_tensor_rows(A, gt, 0, 1), *ga = idoc_tensor_rows(A, gt, 1, 1);
  idoc_tensor *loss = idoc_add(c, idoc_mse(c, pa, ga), idoc_mse(c, pm, gm));
  double lw = idoc_tensor_get(load(ex, A, "loss"), 0), lg = idoc_tensor_get(loss, 0);
  printf("loss %.9f vs %.9f\n", lg, lw);
  T_CHECK(fabs(lg - lw) <= 1e-5 * fabs(lw), "loss %.9f vs %.9f (%lld px)", lg, lw, (long long)hw);
  idoc_backward(c, loss);
  double worst = 0;
  const char *worst_name = "";
  for (int i = 0; i < idoc_st_count(ex); i++) {
    const idoc_st_tensor *t = idoc_st_tensor_at(ex, i);
    if (strncmp(t->name, "grad.", 5)) continue;
    idoc_tensor *g = load(ex, A, t->name), *mine = NULL;
    if (!strcmp(t->name, "grad.image_feats"))
      mine = feats->grad;
    else if (!strcmp(t->name, "grad.tokens"))
      mine = tok->grad;
    else {
      idoc_param *p = idoc_params_find(ps, t->name + 5);
      T_CHECK(p != NULL, "no parameter for %s", t->name);
      if (p) mine = p->w->grad;
    }
    if (!mine) continue;
    double ref_max = 0, mine_max = 0;
    for (int64_t j = 0; j < idoc_numel(g); j++) {
      ref_max = fmax(ref_max, fabs(IDOC_F(g)[j]));
      mine_max = fmax(mine_max, fabs(IDOC_F(mine)[j]));
    }
    if (ref_max < 1e-9) {
      // Key-projection biases: adding a constant to every key shifts a query's scores by the
      // same amount, which softmax ignores, so the exact gradient is 0 (the fp64 reference
      // holds ~1e-17 of rounding); ours must be zero up to fp32 rounding too.
      T_CHECK(strstr(t->name, "k_proj.bias") != NULL, "%s: unexpected all-zero gradient", t->name);
      T_CHECK(mine_max <= 1e-6, "%s should be ~0, max %.3g", t->name, mine_max);
      continue;
    }
    double eg = rel_err(IDOC_F(mine), IDOC_F(g), idoc_numel(g));
    if (eg > worst) worst = eg, worst_name = t->name;
    T_CHECK(eg <= 1e-3, "%s rel error %.3g", t->name, eg);
  }
  printf("gradients: worst rel error %.3g (%s)\n", worst, worst_name);
  idoc_ctx_free(c);
  idoc_arena_free(A);
  idoc_st_close(wf);
  idoc_st_close(ex);
  idoc_decoder_free(d);
  idoc_params_free(ps);
}

int main(void) {
  test_counts();
  test_fixture();
  return t_summary("test_decoder");
}
