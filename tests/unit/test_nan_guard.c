// The NaN guard: a step whose loss or gradient norm is NaN/Inf is skipped (weights and moments
// untouched), max_nonfinite_steps of them in a row stop the run, and no checkpoint ever holds a
// non-finite tensor (the save refuses, naming it). Float keys are validated as the floats they
// are used as, and every trainer_log.jsonl line stays valid JSON (null for NaN/Inf).
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include <dirent.h>

#include "nn/json.h"
#include "nn/safetensors.h"
#include "nn/util.h"
#include "stage/checkpoint.h"
#include "tests/test.h"
#include "tests/unit/trainer_test_util.h"
#include "train/sft_trainer.h"

#define TDIR "test_nan_guard.tmp"

static void config(idoc_train_config *c, const char *out, const char *const *extra, int n) {
  idoc_config_defaults(c);
  const char *kv[] = {"model_name_or_path=tiny",
                      "target=cot",
                      "decoder=tiny",
                      "dataset=" TDIR "/data/train.h5",
                      "image_size=56",
                      "cutoff_len=1024",
                      "per_device_train_batch_size=1",
                      "logging_steps=1",
                      "save_steps=1",
                      "plot_loss=false",
                      "seed=11"};
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
    if (idoc_config_set(c, kv[i])) idoc_die("%s", idoc_last_error());
  for (int i = 0; i < n; i++)
    if (idoc_config_set(c, extra[i])) idoc_die("%s", idoc_last_error());
  char o[256];
  snprintf(o, sizeof o, "output_dir=%s", out);
  idoc_config_set(c, o);
}

// Non-finite values in every .safetensors file of every checkpoint-N and final/ of out.
static long nonfinite_in_checkpoints(const char *out, int *n_files) {
  long bad = 0;
  *n_files = 0;
  DIR *d = opendir(out);
  for (struct dirent *e; d && (e = readdir(d));) {
    if (strncmp(e->d_name, "checkpoint-", 11) && strcmp(e->d_name, "final")) continue;
    const char *files[2] = {"model.safetensors", "optimizer.safetensors"};
    for (int k = 0; k < 2; k++) {
      char p[600];
      snprintf(p, sizeof p, "%s/%s/%s", out, e->d_name, files[k]);
      idoc_st_file *f;
      if (!idoc_file_exists(p) || idoc_st_open(&f, p)) continue;
      (*n_files)++;
      for (int i = 0; i < idoc_st_count(f); i++) {
        const idoc_st_tensor *t = idoc_st_tensor_at(f, i);
        if (t->dtype != IDOC_F32) continue;
        for (int64_t j = 0; j < t->numel; j++) {
          float v;
          memcpy(&v, (const char *)t->data + 4 * j, 4);
          bad += !isfinite(v);
        }
      }
      idoc_st_close(f);
    }
  }
  if (d) closedir(d);
  return bad;
}

// Every line of trainer_log.jsonl parses; returns how many lines, -1 on a bad one.
static int log_lines_valid(const char *out, bool *has_null) {
  char p[512], *data;
  size_t n;
  snprintf(p, sizeof p, "%s/trainer_log.jsonl", out);
  if (idoc_read_file(p, &data, &n)) return -1;
  int k = 0;
  *has_null = strstr(data, "null") != NULL;
  for (char *s = data; s && *s;) {
    char *nl = strchr(s, '\n');
    size_t len = nl ? (size_t)(nl - s) : strlen(s);
    idoc_json_doc *doc = idoc_json_parse(s, len, p, NULL);
    if (!doc) {
      fprintf(stderr, "bad log line: %.*s\n", (int)len, s);
      k = -1;
      break;
    }
    idoc_json_free(doc);
    k++;
    s = nl ? nl + 1 : NULL;
  }
  free(data);
  return k;
}

int main(void) {
  if (system("rm -rf " TDIR) != 0) return 1;
  idoc_mkdir_p(TDIR);
  if (make_small_split(TDIR)) return 1;

  // Float keys in their own type: 1e39 is a finite double but an infinite float.
  idoc_train_config c;
  idoc_config_defaults(&c);
  T_CHECK(idoc_config_set(&c, "learning_rate=1e39") == IDOC_ERR &&
              strstr(idoc_last_error(), "learning_rate") && strstr(idoc_last_error(), "float"),
          "learning_rate 1e39: %s", idoc_last_error());
  T_CHECK(idoc_config_set(&c, "adam_epsilon=1e-50") == IDOC_ERR &&
              strstr(idoc_last_error(), "adam_epsilon"),
          "adam_epsilon 1e-50 (0 as a float): %s", idoc_last_error());
  T_CHECK(idoc_config_set(&c, "heatmap_weight=3e38") == IDOC_OK, "3e38 is a float");
  idoc_config_free(&c);

  // An overflowing heatmap loss at learning rate 0: the gradient norm is not finite, the steps
  // are skipped, the checkpoints hold the untouched (finite) weights and zero moments.
  const char *hw[] = {"heatmap_weight=3e38", "learning_rate=0", "max_steps=2"};
  config(&c, TDIR "/hw", hw, 3);
  idoc_stage_result r;
  T_CHECK(idoc_train_sft(&c, &r) == IDOC_OK, "heatmap_weight 3e38: %s", idoc_last_error());
  idoc_config_free(&c);
  int nf = 0;
  long bad = nonfinite_in_checkpoints(TDIR "/hw", &nf);
  T_CHECK(nf >= 5 && bad == 0, "heatmap_weight 3e38: %ld non-finite values in %d files", bad, nf);
  bool has_null = false;
  T_CHECK(log_lines_valid(TDIR "/hw", &has_null) == 2 && has_null,
          "trainer_log.jsonl: valid JSON lines with null for the non-finite values");
  char sk[8][32];
  T_CHECK(read_field(TDIR "/hw", "\"skipped_steps\": ", 1, 2, sk) == 2 && atoi(sk[0]) == 1,
          "the step is logged as skipped");

  // A learning rate that blows the weights up: every later step is non-finite and skipped, the
  // run stops after max_nonfinite_steps of them, and no checkpoint holds a NaN.
  const char *lr[] = {"learning_rate=1e6", "max_steps=8", "max_nonfinite_steps=3",
                      "max_grad_norm=0"};
  config(&c, TDIR "/lr", lr, 4);
  int rc = idoc_train_sft(&c, &r);
  idoc_config_free(&c);
  T_CHECK(rc == IDOC_ERR && strstr(idoc_last_error(), "max_nonfinite_steps"),
          "lr 1e6 stops on the guard: %s", rc ? idoc_last_error() : "it finished");
  bad = nonfinite_in_checkpoints(TDIR "/lr", &nf);
  T_CHECK(nf >= 2 && bad == 0, "lr 1e6: %ld non-finite values in %d checkpoint files", bad, nf);
  T_CHECK(log_lines_valid(TDIR "/lr", &has_null) >= 1, "trainer_log.jsonl stays valid JSON");

  // The save itself refuses a non-finite tensor and names it.
  config(&c, TDIR "/nan", NULL, 0);
  idoc_model_bundle mb;
  T_CHECK(idoc_model_setup(&c, true, &mb) == IDOC_OK, "%s", idoc_last_error());
  idoc_params_init_adam(mb.ps);
  idoc_tensor *w = idoc_params_find(mb.ps, "model.norm.weight")->w;
  IDOC_F(w)[3] = NAN;
  idoc_trainer_state st = {.global_step = 1};
  T_CHECK(idoc_checkpoint_save(TDIR "/nan", &c, &mb, &st, NULL, NULL) == IDOC_ERR &&
              strstr(idoc_last_error(), "model.norm.weight") &&
              !idoc_file_exists(TDIR "/nan/checkpoint-1"),
          "non-finite weight refused: %s", idoc_last_error());
  idoc_model_bundle_free(&mb);
  idoc_config_free(&c);
  if (system("rm -rf " TDIR) != 0) return 1;
  return t_summary("test_nan_guard");
}
