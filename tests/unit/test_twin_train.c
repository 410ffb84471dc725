// Our training against its PyTorch twin (scripts/twin_train.py: transformers' Qwen2.5-VL and a
// torch.nn heatmap decoder, torch.optim.AdamW, transformers' LR schedules, clip_grad_norm_):
// 20 optimizer steps each of stage 1 (CE), stage 2 (CE + both heatmap MSEs) and GRPO (fixed
// rollouts: the twin replays the completions and advantages our run sampled), from the same
// initial weights and batches. The twin's per-step losses and gradient norms are the fixture
// tests/fixtures/twin/losses.txt; ours must match each within a relative TOL (losses, KL,
// entropy) or TOL_NORM (gradient norms: where a freshly attached decoder has dead ReLU channels
// its RMSNorms (eps 1e-8) blow float32 rounding up, and Adam turns those near-zero gradients into
// full-size steps, so the two runs' norms drift apart by ~1e-4 after 10 steps of stage 2 while
// their losses stay within ~2e-5).
//
// `test_twin_train --dump DIR` runs the same three stages with dump_batches (stage/dump.h) into
// DIR/{stage1,stage2,grpo} and their logs in DIR/out: what the twin script reads.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "nn/util.h"
#include "rl/grpo_train.h"
#include "stage/config.h"
#include "tests/test.h"
#include "tests/unit/trainer_test_util.h"
#include "train/sft_trainer.h"

// The fixture was made on an Intel Xeon (AVX-512 BLAS kernels): there our logs match it to 2e-5
// (losses) and 1.7e-4 (gradient norms). On an AMD EPYC (AVX2 kernels) the same runs round
// differently and the trajectories drift apart: stage 1 1e-7 / 7.6e-6, stage 2 4.2e-5 / 1.4e-3
// (from step 13), GRPO 9.9e-4 / 5.1e-3 (its KL and loss are small differences). The bounds allow
// that drift; an optimizer setting off (adam_beta2 0.99 for 0.999) is far outside them.
#define TOL 3e-3
#define TOL_NORM 1.5e-2
#define STEPS 20
#define FIXTURE "tests/fixtures/twin/losses.txt"

static char g_root[256] = "test_twin_train.tmp";

static void set(idoc_train_config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void set(idoc_train_config *c, const char *fmt, ...) {
  char kv[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(kv, sizeof kv, fmt, ap);
  va_end(ap);
  if (idoc_config_set(c, kv)) idoc_die("%s", idoc_last_error());
}

// What the three stages share: 56 px images, a warmup then cosine (SFT) or linear (GRPO) decay,
// weight decay and clipping that bites (the gradient norms are above 1 at the start).
static void common(idoc_train_config *c, const char *name, const char *dump) {
  idoc_config_defaults(c);
  set(c, "dataset=%s/data/train.h5", g_root);
  set(c, "output_dir=%s/out/%s", g_root, name);
  set(c, "image_size=56");
  set(c, "cutoff_len=1024");
  set(c, "freeze_vision_tower=false");
  set(c, "freeze_multi_modal_projector=false");
  set(c, "max_steps=%d", STEPS);
  set(c, "warmup_steps=2");
  set(c, "weight_decay=0.01");
  set(c, "max_grad_norm=1.0");
  set(c, "logging_steps=1");
  set(c, "save_steps=0");
  set(c, "plot_loss=false");
  set(c, "overwrite_output_dir=true");
  set(c, "seed=11");
  if (dump) set(c, "dump_batches=%s/%s", dump, name);
}

static int run_stages(const char *dump) {
  idoc_train_config c;
  idoc_stage_result r;
  common(&c, "stage1", dump);
  set(&c, "model_name_or_path=tiny");
  set(&c, "target=answer");
  set(&c, "decoder=none");
  set(&c, "task_tokens=false");
  set(&c, "learning_rate=2e-3");
  set(&c, "lr_scheduler_type=cosine");
  set(&c, "per_device_train_batch_size=2");
  set(&c, "gradient_accumulation_steps=2");
  int rc = idoc_train_sft(&c, &r);
  idoc_config_free(&c);
  if (rc) return idoc_wrap_error("stage 1");

  common(&c, "stage2", dump);
  set(&c, "model_name_or_path=%s/out/stage1/final", g_root);
  set(&c, "target=cot");
  set(&c, "decoder=tiny");
  set(&c, "task_tokens=true");
  set(&c, "heatmap_weight=2.0");
  set(&c, "learning_rate=1e-3");
  set(&c, "lr_scheduler_type=cosine");
  set(&c, "per_device_train_batch_size=2");
  set(&c, "gradient_accumulation_steps=2");
  rc = idoc_train_sft(&c, &r);
  idoc_config_free(&c);
  if (rc) return idoc_wrap_error("stage 2");

  // GRPO needs rollouts whose rewards differ within a group (else every advantage is 0 and the
  // policy-gradient term has no gradient): a model that has memorised the answers of two
  // samples writes parseable, varying scores. Its run is not compared; the GRPO one starts from
  // it with a fresh decoder attached (frozen in GRPO, it only feeds the heatmap rewards).
  common(&c, "warm", NULL);
  set(&c, "model_name_or_path=tiny");
  set(&c, "target=answer");
  set(&c, "decoder=none");
  set(&c, "task_tokens=false");
  set(&c, "max_samples=2");
  set(&c, "max_steps=100");
  set(&c, "logging_steps=50");
  set(&c, "weight_decay=0");
  set(&c, "learning_rate=5e-3");
  set(&c, "lr_scheduler_type=constant");
  set(&c, "per_device_train_batch_size=2");
  rc = idoc_train_sft(&c, &r);
  idoc_config_free(&c);
  if (rc) return idoc_wrap_error("warm-up for grpo");

  common(&c, "grpo", dump);
  set(&c, "model_name_or_path=%s/out/warm/final", g_root);
  set(&c, "max_samples=2");
  set(&c, "stage=grpo");
  set(&c, "decoder=tiny");
  set(&c, "freeze_language_model=false");
  set(&c, "learning_rate=3e-4");
  set(&c, "lr_scheduler_type=linear");
  set(&c, "per_device_train_batch_size=2");
  set(&c, "num_generations=3");
  set(&c, "max_completion_length=64");
  set(&c, "beta=0.04");
  set(&c, "entropy_coef=0.01");
  set(&c, "completions_log_steps=0");
  rc = idoc_train_grpo(&c, &r);
  idoc_config_free(&c);
  if (rc) return idoc_wrap_error("grpo");
  return IDOC_OK;
}

typedef struct {
  char stage[16], field[16];
  int step;
  double value;
} row;

// The fixture: "stage step field value" lines after '#' comments.
static int read_fixture(row **out) {
  FILE *f = fopen(FIXTURE, "r");
  if (!f) return idoc_set_error("%s: cannot open (make it with scripts/twin_train.py)", FIXTURE);
  int n = 0, cap = 0, line = 0;
  row *rows = NULL;
  char buf[256];
  while (fgets(buf, sizeof buf, f)) {
    line++;
    if (buf[0] == '#' || buf[0] == '\n') continue;
    row r;
    if (sscanf(buf, "%15s %d %15s %lf", r.stage, &r.step, r.field, &r.value) != 4) {
      fclose(f);
      free(rows);
      return idoc_set_error("%s:%d: want 'stage step field value'", FIXTURE, line);
    }
    if (n == cap) rows = idoc_xrealloc(rows, (size_t)(cap = cap ? 2 * cap : 256) * sizeof *rows);
    rows[n++] = r;
  }
  fclose(f);
  *out = rows;
  return n;
}

int main(int argc, char **argv) {
  if (argc > 2 && !strcmp(argv[1], "--dump")) {
    snprintf(g_root, sizeof g_root, "%s", argv[2]);
    char cmd[1100];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", g_root);
    if (system(cmd) != 0 || idoc_mkdir_p(g_root) || make_small_split(g_root) ||
        run_stages(g_root)) {
      fprintf(stderr, "test_twin_train --dump: %s\n", idoc_last_error());
      return 1;
    }
    return 0;
  }
  if (system("rm -rf test_twin_train.tmp") != 0) return 1;
  idoc_mkdir_p(g_root);
  T_CHECK(make_small_split(g_root) == 0, "synthetic split: %s", idoc_last_error());
  T_CHECK(run_stages(NULL) == IDOC_OK, "%s", idoc_last_error());
  row *rows = NULL;
  int n = read_fixture(&rows);
  T_CHECK(n >= 3 * STEPS * 3, "%s: %d rows: %s", FIXTURE, n, n < 0 ? idoc_last_error() : "");
  double worst[3] = {0, 0, 0}, worst_norm[3] = {0, 0, 0};
  const char *stages[3] = {"stage1", "stage2", "grpo"};
  for (int i = 0; i < n; i++) {
    char out[400], field[40], vals[STEPS + 1][32];
    snprintf(out, sizeof out, "%s/out/%s", g_root, rows[i].stage);
    snprintf(field, sizeof field, "\"%s\": ", rows[i].field);
    int k = read_field(out, field, rows[i].step, rows[i].step, vals);
    T_CHECK(k == 1, "%s step %d: no %s in our log", rows[i].stage, rows[i].step, rows[i].field);
    if (k != 1) continue;
    double ours = atof(vals[0]), want = rows[i].value;
    // GRPO's loss is a mean of advantage-weighted ratios whose O(1) terms cancel to ~1e-3: its
    // error is measured against the terms' scale (0.01), not against the small difference.
    bool grpo_loss = !strcmp(rows[i].stage, "grpo") && !strcmp(rows[i].field, "loss");
    double rel = fabs(ours - want) / fmax(fabs(want), grpo_loss ? 1e-2 : 1e-6);
    bool norm = !strcmp(rows[i].field, "grad_norm");
    for (int s = 0; s < 3; s++)
      if (!strcmp(rows[i].stage, stages[s]))
        norm ? (worst_norm[s] = fmax(worst_norm[s], rel)) : (worst[s] = fmax(worst[s], rel));
    T_CHECK(rel <= (norm ? TOL_NORM : TOL), "%s step %d %s: ours %.9g, twin %.9g (relative %.2e)",
            rows[i].stage, rows[i].step, rows[i].field, ours, want, rel);
  }
  printf("largest relative difference to the twin (losses; gradient norms): stage 1 %.2e; %.2e, "
         "stage 2 %.2e; %.2e, grpo %.2e; %.2e\n",
         worst[0], worst_norm[0], worst[1], worst_norm[1], worst[2], worst_norm[2]);
  free(rows);
  if (!t_fail && system("rm -rf test_twin_train.tmp") != 0) return 1;
  return t_summary("test_twin_train");
}
