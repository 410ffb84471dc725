// idoc-requires: cuda yaml hdf5 pcre2 utf8proc cjson png
// GRPO with device: cuda. From a small model that has memorised two samples' answers (so the
// rollouts' rewards differ within a group and the policy gradient is not zero), a few GRPO steps
// with the k3 KL against the frozen reference and the entropy bonus run on the CPU and on cuda:0
// from the same config: the same sampled rollouts (every logged reward and completion length
// equal), every logged loss, KL, entropy and gradient norm within 1e-5 relative. Then the device
// run is SIGKILLed once its step-2 checkpoint exists and resumed on the device: it logs bitwise
// the losses and rewards of the uninterrupted device run. A CPU run with head_chunk_tokens and
// gradient_checkpointing matches the CPU run within the same bounds. Under the simulator a host
// dereference of device memory anywhere in the stack faults.
//
// Skips (exit 0) when no GPU is present.
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"
#include "nn/util.h"
#include "rl/grpo_train.h"
#include "stage/config.h"
#include "tests/test.h"
#include "tests/unit/trainer_test_util.h"
#include "train/sft_trainer.h"

#define DIR "test_cuda_grpo.tmp"
enum { STEPS = 3 };

static void set(idoc_train_config *c, const char *fmt, ...) {
  char kv[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(kv, sizeof kv, fmt, ap);
  va_end(ap);
  if (idoc_config_set(c, kv)) idoc_die("%s", idoc_last_error());
}

static void common(idoc_train_config *c, const char *out) {
  idoc_config_defaults(c);
  set(c, "dataset=" DIR "/data/train.h5");
  set(c, "output_dir=%s", out);
  set(c, "max_samples=2");
  set(c, "image_size=56");
  set(c, "cutoff_len=1024");
  set(c, "freeze_vision_tower=false");
  set(c, "freeze_multi_modal_projector=false");
  set(c, "logging_steps=1");
  set(c, "plot_loss=false");
  set(c, "seed=11");
}

// The memorising warm-up (CPU), as test_twin_train's.
static int warm_up(void) {
  idoc_train_config c;
  common(&c, DIR "/warm");
  set(&c, "model_name_or_path=tiny");
  set(&c, "target=answer");
  set(&c, "decoder=none");
  set(&c, "task_tokens=false");
  set(&c, "max_steps=100");
  set(&c, "logging_steps=50");
  set(&c, "save_steps=0");
  set(&c, "learning_rate=5e-3");
  set(&c, "lr_scheduler_type=constant");
  set(&c, "per_device_train_batch_size=2");
  idoc_stage_result r;
  int rc = idoc_train_sft(&c, &r);
  idoc_config_free(&c);
  return rc;
}

static void grpo_config(idoc_train_config *c, const char *device, const char *out) {
  common(c, out);
  set(c, "model_name_or_path=" DIR "/warm/final");
  set(c, "stage=grpo");
  set(c, "decoder=tiny");
  set(c, "freeze_language_model=false");
  set(c, "learning_rate=3e-4");
  set(c, "lr_scheduler_type=linear");
  set(c, "warmup_steps=0");
  set(c, "max_steps=%d", STEPS);
  set(c, "save_steps=2");
  set(c, "per_device_train_batch_size=2");
  set(c, "num_generations=3");
  set(c, "max_completion_length=48");
  set(c, "beta=0.04");
  set(c, "entropy_coef=0.01");
  set(c, "completions_log_steps=1");
  set(c, "device=%s", device);
}

// The largest relative difference between two runs' values of `field` over the logged steps.
static double field_err(const char *a_dir, const char *b_dir, const char *field, bool exact) {
  char a[STEPS][32], b[STEPS][32];
  int na = read_field(a_dir, field, 1, STEPS, a), nb = read_field(b_dir, field, 1, STEPS, b);
  T_CHECK(na == STEPS && nb == STEPS, "%s: %d and %d values logged (want %d)", field, na, nb,
          STEPS);
  double worst = 0;
  for (int i = 0; i < na && i < nb; i++) {
    double x = atof(a[i]), y = atof(b[i]);
    double e = x == y ? 0 : fabs(x - y) / fmax(fabs(x), 1e-30);
    if (exact && strcmp(a[i], b[i])) e = INFINITY;
    printf("  step %d %s %s %s %s (rel %.3g)\n", i + 1, field, a[i], b[i], exact ? "[bitwise]" : "",
           e);
    worst = fmax(worst, e);
  }
  return worst;
}

int main(int argc, char **argv) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (argc > 1 && !strcmp(argv[1], "--child")) { // the device run that gets killed
    idoc_train_config k;
    idoc_stage_result r;
    grpo_config(&k, "cuda", DIR "/killed");
    return idoc_train_grpo(&k, &r) ? 3 : 0;
  }
  if (!idoc_cuda_available()) {
    T_SKIP("no CUDA device");
    return t_summary("test_cuda_grpo");
  }
  if (system("rm -rf " DIR) != 0) return 1;
  T_CHECK(make_small_split(DIR) == IDOC_OK, "synthetic split: %s", idoc_last_error());
  T_CHECK(warm_up() == IDOC_OK, "warm-up: %s", idoc_last_error());

  const char *dev[2] = {"cpu", "cuda"};
  double secs[2];
  for (int k = 0; k < 2; k++) {
    idoc_train_config c;
    char out[64];
    snprintf(out, sizeof out, DIR "/%s", dev[k]);
    grpo_config(&c, dev[k], out);
    idoc_stage_result r;
    double t0 = idoc_now();
    T_CHECK(idoc_train_grpo(&c, &r) == IDOC_OK, "grpo on %s: %s", dev[k], idoc_last_error());
    secs[k] = idoc_now() - t0;
    T_CHECK(r.steps == STEPS, "%s: %lld steps", dev[k], (long long)r.steps);
    idoc_config_free(&c);
  }
  printf("grpo, %d steps: cpu %.1f s, cuda (simulated or real) %.1f s\n", STEPS, secs[0], secs[1]);
  // The rollouts are the same: rewards and lengths are functions of the sampled tokens.
  const char *same[] = {"\"reward\": ", "\"completion_length\": ", "\"adv_std\": "};
  for (int f = 0; f < 3; f++)
    T_CHECK(field_err(DIR "/cpu", DIR "/cuda", same[f], true) == 0,
            "%s: the devices sampled different rollouts", same[f]);
  // KL and entropy are logged to 6 significant digits: one unit of the last is up to 1e-5.
  const char *close[] = {"\"loss\": ", "\"kl\": ", "\"entropy\": ", "\"grad_norm\": "};
  double tol[] = {1e-5, 2e-5, 2e-5, 1e-5};
  for (int f = 0; f < 4; f++) {
    double e = field_err(DIR "/cpu", DIR "/cuda", close[f], false);
    T_CHECK(e <= tol[f], "%s differs by %.3g relative between the devices (bound %g)", close[f], e,
            tol[f]);
  }
  char ga[STEPS][32];
  T_CHECK(read_field(DIR "/cpu", "\"grad_norm\": ", 1, STEPS, ga) == STEPS && atof(ga[0]) > 1e-3,
          "the policy gradient is not zero (step 1 grad norm %s)", ga[0]);

  // The memory keys change rounding only: the head applied 16 tokens at a time (chunked
  // log-probs, recomputed in backward) and recomputed blocks, on the CPU, against the CPU run.
  {
    idoc_train_config c;
    grpo_config(&c, "cpu", DIR "/cpu_mem");
    set(&c, "head_chunk_tokens=16");
    set(&c, "gradient_checkpointing=true");
    idoc_stage_result r;
    T_CHECK(idoc_train_grpo(&c, &r) == IDOC_OK, "grpo with the memory keys: %s", idoc_last_error());
    idoc_config_free(&c);
    for (int f = 0; f < 3; f++)
      T_CHECK(field_err(DIR "/cpu", DIR "/cpu_mem", same[f], true) == 0,
              "%s: the memory keys changed the rollouts", same[f]);
    for (int f = 0; f < 4; f++) {
      double e = field_err(DIR "/cpu", DIR "/cpu_mem", close[f], false);
      T_CHECK(e <= tol[f], "%s differs by %.3g relative with the memory keys (bound %g)", close[f],
              e, tol[f]);
    }
  }

  // Killed on the device after its step-2 checkpoint, resumed on the device.
  int status = run_and_kill(argv[0], DIR "/killed/checkpoint-2");
  T_CHECK(WIFSIGNALED(status), "the first device run was killed (not finished)");
  idoc_train_config c;
  grpo_config(&c, "cuda", DIR "/killed");
  set(&c, "resume_from_checkpoint=true");
  idoc_stage_result r;
  T_CHECK(idoc_train_grpo(&c, &r) == IDOC_OK, "resume on the device: %s", idoc_last_error());
  idoc_config_free(&c);
  const char *exact[] = {"\"loss\": ", "\"reward\": ", "\"grad_norm\": "};
  for (int f = 0; f < 3; f++)
    T_CHECK(field_err(DIR "/cuda", DIR "/killed", exact[f], true) == 0,
            "%s: the resumed device run differs from the uninterrupted one", exact[f]);
  if (system("rm -rf " DIR) != 0) return 1;
  return t_summary("test_cuda_grpo");
}
