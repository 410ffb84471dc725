// idoc-requires: cuda yaml hdf5 pcre2 utf8proc cjson png
// `idoc train` with device: cuda. The tiny stage-2 SFT (CoT + heatmap MSE, the decoder and the
// vision tower trained, two micro-batches per step) runs a few steps on the CPU and on cuda:0
// from the same config: every logged loss, CE, MSE and gradient norm within 1e-5 relative; the
// end-of-stage evaluation (greedy generation and heatmaps on the device) runs, and the device's
// final checkpoint loads on the CPU. Under the simulator a host dereference of device memory
// anywhere in the stack faults. Also: the `device` key's errors (a bad value, a device that does
// not exist). GRPO on a device: test_cuda_grpo.
//
// Skips (exit 0) when no GPU is present.
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "nn/util.h"
#include "stage/config.h"
#include "stage/model_setup.h"
#include "tests/test.h"
#include "tests/unit/trainer_test_util.h"
#include "train/sft_trainer.h"

#define DIR "test_cuda_train.tmp"
enum { STEPS = 2 };

static void config(idoc_train_config *c, const char *device, const char *out) {
  idoc_config_defaults(c);
  const char *kv[] = {"model_name_or_path=tiny",
                      "target=cot",
                      "decoder=tiny",
                      "freeze_vision_tower=false",
                      "freeze_multi_modal_projector=false",
                      "dataset=" DIR "/data/train.h5",
                      "eval_dataset=" DIR "/data/test.h5",
                      "eval_max_samples=1",
                      "max_new_tokens=6",
                      "image_size=56",
                      "cutoff_len=1024",
                      "learning_rate=1e-3",
                      "lr_scheduler_type=cosine",
                      "warmup_steps=0",
                      "max_steps=2",
                      "per_device_train_batch_size=1",
                      "gradient_accumulation_steps=2",
                      "logging_steps=1",
                      "save_steps=0",
                      "plot_loss=false",
                      "seed=7"};
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
    if (idoc_config_set(c, kv[i])) idoc_die("%s", idoc_last_error());
  char o[256];
  snprintf(o, sizeof o, "output_dir=%s", out);
  if (idoc_config_set(c, o)) idoc_die("%s", idoc_last_error());
  snprintf(o, sizeof o, "device=%s", device);
  if (idoc_config_set(c, o)) idoc_die("%s", idoc_last_error());
}

// The largest relative difference between two runs' values of `field` over the logged steps.
static double field_err(const char *field, int *n_out) {
  char a[STEPS][32], b[STEPS][32];
  int na = read_field(DIR "/cpu", field, 1, STEPS, a),
      nb = read_field(DIR "/cuda", field, 1, STEPS, b);
  T_CHECK(na == STEPS && nb == STEPS, "%s: %d and %d values logged (want %d)", field, na, nb,
          STEPS);
  double worst = 0;
  *n_out = na < nb ? na : nb;
  for (int i = 0; i < *n_out; i++) {
    double x = atof(a[i]), y = atof(b[i]);
    double e = fabs(x - y) / fmax(fabs(x), 1e-30);
    if (x == y) e = 0;
    printf("  step %d %s cpu %s cuda %s (rel %.3g)\n", i + 1, field, a[i], b[i], e);
    worst = fmax(worst, e);
  }
  return worst;
}

// A whole file as text (NULL when it cannot be read).
static char *read_text(const char *path) {
  char *d = NULL;
  size_t n;
  if (idoc_read_file(path, &d, &n)) return NULL;
  return d;
}

// The device run's final checkpoint loads on the CPU with every tensor of the CPU run's. (Its
// weights are not compared: several gradients are rounding noise at init, 1e-16 .. 1e-9 (key
// biases cannot shift a softmax; the decoder's attention sees two nearly equal tokens; see
// test_cuda_model), and AdamW turns noise into full learning-rate steps whose sign differs per
// device. The losses above, computed from the updated weights, are compared instead.)
static void check_final_checkpoint(void) {
  idoc_train_config c;
  config(&c, "cpu", DIR "/cpu");
  idoc_model_bundle m[2];
  const char *src[2] = {"model_name_or_path=" DIR "/cpu/final",
                        "model_name_or_path=" DIR "/cuda/final"};
  for (int k = 0; k < 2; k++) {
    idoc_config_set(&c, src[k]);
    T_CHECK(idoc_model_setup(&c, true, &m[k]) == IDOC_OK, "load %s on the cpu: %s", src[k],
            idoc_last_error());
  }
  int missing = 0;
  for (int i = 0; i < m[0].ps->n; i++)
    missing += !idoc_params_find(m[1].ps, m[0].ps->p[i].w->name);
  printf("final checkpoint of the cuda run on the cpu: %d tensors, %d missing\n", m[1].ps->n,
         missing);
  T_CHECK(m[0].ps->n == m[1].ps->n && missing == 0 && m[1].m.dec, "same tensors, decoder kept");
  for (int k = 0; k < 2; k++)
    idoc_model_bundle_free(&m[k]);
  idoc_config_free(&c);
}

static void check_errors(void) {
  idoc_train_config c;
  idoc_config_defaults(&c);
  T_CHECK(idoc_config_set(&c, "device=gpu") == IDOC_OK && idoc_config_validate(&c) == IDOC_ERR &&
              strstr(idoc_last_error(), "device") && strstr(idoc_last_error(), "gpu"),
          "a bad device value is named: %s", idoc_last_error());
  T_CHECK(idoc_config_set(&c, "device=cuda:x") == IDOC_OK && idoc_config_validate(&c) == IDOC_ERR,
          "cuda:x refused");
  idoc_config_free(&c);
  config(&c, "cuda:7", DIR "/none");
  idoc_device d;
  int n = idoc_cuda_device_count();
  if (n < 8) {
    T_CHECK(idoc_stage_device(&c, &d) == IDOC_ERR && strstr(idoc_last_error(), "cuda:7"),
            "a device that does not exist is refused: %s", idoc_last_error());
    printf("device=cuda:7: %s\n", idoc_last_error());
  }
  // The default picks a real GPU, never the simulator (a test tool, far slower than the CPU).
  idoc_config_set(&c, "device=auto");
  T_CHECK(idoc_stage_device(&c, &d) == IDOC_OK &&
              d.kind == (idoc_cuda_simulated() ? IDOC_CPU : IDOC_CUDA) && d.index == 0,
          "device auto: %s on %s", idoc_device_name(d), idoc_cuda_device_name());
  idoc_config_free(&c);
}

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (!idoc_cuda_available()) {
    T_SKIP("no CUDA device");
    return t_summary("test_cuda_train");
  }
  if (system("rm -rf " DIR) != 0) return 1;
  T_CHECK(make_small_split(DIR) == IDOC_OK, "synthetic split: %s", idoc_last_error());
  check_errors();

  const char *dev[2] = {"cpu", "cuda"};
  double secs[2];
  for (int k = 0; k < 2; k++) {
    idoc_train_config c;
    char out[64];
    snprintf(out, sizeof out, DIR "/%s", dev[k]);
    config(&c, dev[k], out);
    idoc_stage_result r;
    double t0 = idoc_now();
    T_CHECK(idoc_train_sft(&c, &r) == IDOC_OK, "sft on %s: %s", dev[k], idoc_last_error());
    secs[k] = idoc_now() - t0;
    T_CHECK(r.steps == STEPS, "%s: %lld steps", dev[k], (long long)r.steps);
    idoc_config_free(&c);
  }
  printf("stage 2, %d steps: cpu %.1f s, cuda (simulated or real) %.1f s\n", STEPS, secs[0],
         secs[1]);
  const char *fields[] = {
      "\"loss\": ", "\"ce\": ", "\"mse_art\": ", "\"mse_mis\": ", "\"grad_norm\": "};
  for (int f = 0; f < 5; f++) {
    int n;
    double e = field_err(fields[f], &n);
    T_CHECK(e <= 1e-5, "%s differs by %.3g relative between the devices", fields[f], e);
  }
  char *ea = read_text(DIR "/cpu/eval_results.json"),
       *eb = read_text(DIR "/cuda/eval_results.json");
  // The same greedy completion and maps give the same metrics file.
  T_CHECK(ea && eb && !strcmp(ea, eb), "both runs evaluated, with the same results");
  free(ea);
  free(eb);
  check_final_checkpoint();
  if (system("rm -rf " DIR) != 0) return 1;
  return t_summary("test_cuda_train");
}
