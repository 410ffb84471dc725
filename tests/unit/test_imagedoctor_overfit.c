// A tiny ImageDoctor (Qwen2.5-VL tiny + decoder) overfits 8 samples made here: each image is a
// background with one coloured square; the answer names the square's colour and carries the two
// task tokens; the misalignment map marks the square, the artifact map a fixed corner blob for
// half of the samples. CE and both MSE terms must fall by the factors measured when this test
// was written (see the bounds below), the total loss must never be NaN, and a sample with a
// missing task token contributes no heatmap loss.
#include "data/image.h"
#include "nn/imagedoctor.h"
#include "nn/ops.h"
#include "stage/optim.h"
#include "tests/test.h"

enum { NS = 8, IMG = 56, VOCAB = 64, MIS = 60, ART = 61, IMGTOK = 50, VSTART = 51, VEND = 52 };

typedef struct {
  int32_t ids[64], labels[64];
  int n;
  float *pix;
  float gt_mis[32 * 32], gt_art[32 * 32];
} sample;

static void make_sample(sample *s, int i, bool with_tokens) {
  idoc_image im = {IMG, IMG, idoc_xmalloc(IMG * IMG * 3)};
  int color = i % 4, x0 = 4 + (i * 11) % 36, y0 = 6 + (i * 7) % 34, sz = 14;
  static const uint8_t pal[4][3] = {{220, 30, 30}, {30, 200, 40}, {40, 60, 230}, {230, 220, 40}};
  for (int y = 0; y < IMG; y++)
    for (int x = 0; x < IMG; x++) {
      bool in = x >= x0 && x < x0 + sz && y >= y0 && y < y0 + sz;
      for (int ch = 0; ch < 3; ch++)
        im.rgb[(y * IMG + x) * 3 + ch] =
            in ? pal[color][ch] : (uint8_t)(90 + 20 * ch + (x + y) / 4);
    }
  s->pix = idoc_xmalloc(16 * 1176 * sizeof(float));
  idoc_qwen_patchify(&im, s->pix);
  idoc_image_free(&im);
  // maps at decoder resolution: 16 x the 2x2 merged grid = 32x32 over the 56-pixel image
  for (int y = 0; y < 32; y++)
    for (int x = 0; x < 32; x++) {
      float px = (x + 0.5f) * IMG / 32.0f, py = (y + 0.5f) * IMG / 32.0f;
      s->gt_mis[y * 32 + x] = px >= x0 && px < x0 + sz && py >= y0 && py < y0 + sz ? 1.0f : 0.0f;
      s->gt_art[y * 32 + x] = (i % 2 == 0 && x < 10 && y < 10) ? 0.8f : 0.0f;
    }
  // prompt: 5 text tokens, vision start, 4 image tokens, vision end; answer: colour token,
  // (mis), colour-dependent filler, (art), end.
  int n = 0;
  for (int k = 0; k < 5; k++)
    s->ids[n++] = 1 + k;
  s->ids[n++] = VSTART;
  for (int k = 0; k < 4; k++)
    s->ids[n++] = IMGTOK;
  s->ids[n++] = VEND;
  int ans = n;
  s->ids[n++] = 10 + color;
  if (with_tokens) s->ids[n++] = MIS;
  s->ids[n++] = 20 + color;
  if (with_tokens) s->ids[n++] = ART;
  s->ids[n++] = 30;
  s->n = n;
  for (int k = 0; k < n; k++)
    s->labels[k] = k >= ans ? s->ids[k] : -100;
}

int main(void) {
  idoc_qwen_config qc;
  idoc_qwen_preset("tiny", &qc);
  qc.vocab_size = VOCAB;
  qc.image_token_id = IMGTOK;
  qc.vision_start_token_id = VSTART;
  qc.vision_end_token_id = VEND;
  idoc_params *ps = idoc_params_new(IDOC_DEV_CPU);
  idoc_imagedoctor m = {idoc_qwen_new(&qc, ps, IDOC_F32), NULL, MIS, ART, 1.0f};
  idoc_decoder_config dc = idoc_decoder_config_tiny(qc.hidden_size);
  m.dec = idoc_decoder_new(&dc, ps);
  idoc_qwen_init_random(m.qwen, 11, 0.02f);
  idoc_decoder_init(m.dec, 12);

  sample S[NS];
  for (int i = 0; i < NS; i++)
    make_sample(&S[i], i, true);
  // batch of all 8 sequences, packed
  int32_t cu[NS + 1], grid[NS * 3], T = 0;
  for (int i = 0; i < NS; i++) {
    cu[i] = T;
    T += S[i].n;
    grid[3 * i] = 1, grid[3 * i + 1] = 4, grid[3 * i + 2] = 4;
  }
  cu[NS] = T;
  idoc_arena *A = idoc_arena_new("batch", IDOC_DEV_CPU, 1 << 20);
  idoc_tensor *ids = idoc_tensor_1d(A, IDOC_I32, T),
              *pix = idoc_tensor_2d(A, IDOC_F32, 16 * NS, 1176);
  int32_t *labels = idoc_xmalloc((size_t)T * sizeof *labels);
  const float *gm[NS], *ga[NS];
  for (int i = 0; i < NS; i++) {
    memcpy(IDOC_I(ids) + cu[i], S[i].ids, (size_t)S[i].n * 4);
    memcpy(labels + cu[i], S[i].labels, (size_t)S[i].n * 4);
    memcpy(IDOC_F(pix) + (int64_t)i * 16 * 1176, S[i].pix, 16 * 1176 * sizeof(float));
    gm[i] = S[i].gt_mis;
    ga[i] = S[i].gt_art;
  }
  idoc_id_batch b = {{ids, cu, NS, pix, grid, NS}, labels, gm, ga, NULL};

  idoc_adamw opt;
  idoc_adamw_cfg oc = IDOC_ADAMW_DEFAULT;
  idoc_adamw_init(&opt, oc, ps);
  idoc_ctx *c = idoc_ctx_new(IDOC_DEV_CPU, 1 << 24);
  idoc_id_loss first = {0}, last = {0};
  int steps = 200;
  float lr = 1e-3f; // 3e-3 saturates the sigmoid into all-zero maps; 3e-4 is too slow
  bool finite = true;
  for (int step = 0; step < steps; step++) {
    idoc_ctx_reset(c);
    idoc_id_loss L = idoc_imagedoctor_loss(c, &m, &b);
    idoc_backward(c, L.loss);
    idoc_adamw_step(&opt, ps, idoc_lr_at(IDOC_LR_COSINE, lr, step, 10, steps));
    idoc_params_zero_grad(ps);
    finite &= isfinite(idoc_tensor_get(L.loss, 0));
    if (step == 0) first = L;
    last = L;
    if (step % 25 == 0 || step == steps - 1)
      printf("step %3d  ce %.4f  mse_mis %.4f  mse_art %.4f\n", step, L.ce, L.mse_mis, L.mse_art);
  }
  printf("falls: ce x%.1f, mse_mis x%.1f, mse_art x%.1f\n", first.ce / last.ce,
         first.mse_mis / last.mse_mis, first.mse_art / last.mse_art);
  T_CHECK(finite, "loss stayed finite");
  T_CHECK(last.n_mis == NS && last.n_art == NS, "all maps used");
  // Measured when written (200 steps, seeds above): CE x47.9, MSE mis 0.0317 and MSE art 0.0088,
  // against all-zero-map baselines mean(GT^2) of 0.0625 and 0.03125. The maps must beat those
  // baselines clearly (an all-zero prediction, the usual failure, sits exactly on them).
  double base_mis = 196.0 / 3136.0, base_art = 0.5 * 0.64 * 100.0 / 1024.0;
  T_CHECK(first.ce / last.ce > 20, "CE fell x%.1f", first.ce / last.ce);
  T_CHECK(last.mse_mis < 0.7 * base_mis, "MSE mis %.4f vs zero-map %.4f", last.mse_mis, base_mis);
  T_CHECK(last.mse_art < 0.5 * base_art, "MSE art %.4f vs zero-map %.4f", last.mse_art, base_art);

  // A sample without task tokens: no heatmap loss, no NaN.
  sample bare;
  make_sample(&bare, 3, false);
  int32_t cu1[2] = {0, bare.n};
  idoc_tensor *ids1 = idoc_tensor_1d(A, IDOC_I32, bare.n),
              *pix1 = idoc_tensor_2d(A, IDOC_F32, 16, 1176);
  memcpy(ids1->data, bare.ids, (size_t)bare.n * 4);
  memcpy(pix1->data, bare.pix, 16 * 1176 * sizeof(float));
  const float *gm1[1] = {bare.gt_mis}, *ga1[1] = {bare.gt_art};
  idoc_id_batch b1 = {{ids1, cu1, 1, pix1, grid, 1}, bare.labels, gm1, ga1, NULL};
  idoc_ctx_reset(c);
  idoc_id_loss L1 = idoc_imagedoctor_loss(c, &m, &b1);
  T_CHECK(L1.n_mis == 0 && L1.n_art == 0 && L1.mse_mis < 0 && isfinite(idoc_tensor_get(L1.loss, 0)),
          "missing tokens: no heatmap loss, finite total");
  T_CLOSE(idoc_tensor_get(L1.loss, 0), L1.ce, 1e-6, 1e-6);
  free(bare.pix);

  for (int i = 0; i < NS; i++)
    free(S[i].pix);
  free(labels);
  idoc_ctx_free(c);
  idoc_adamw_free(&opt);
  idoc_arena_free(A);
  idoc_decoder_free(m.dec);
  idoc_qwen_free(m.qwen);
  idoc_params_free(ps);
  return t_summary("test_imagedoctor_overfit");
}
