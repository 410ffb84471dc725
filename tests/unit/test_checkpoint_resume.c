// Checkpoints survive any kill, and resume is exact. A run is killed (nn/fs.h's IDOC_TEST_KILL_AT
// hook) at file-system mutations of its checkpoint writes, rotations (save_total_limit), the
// replacement of an existing checkpoint-N (resuming from checkpoint-4 while checkpoint-6
// exists) and the final save; each time, resume_from_checkpoint=true must finish the run with
// bitwise the losses of the uninterrupted run and leave no partial folder or temporary file.
// save_steps 2 and logging_steps 3 make every checkpoint fall inside a logging window. Also: a
// finished run resumed again is left untouched; a missing resume folder and an unwritable
// output_dir are errors naming the key and the OS reason.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include <dirent.h>
#include <sys/stat.h>

#include "nn/util.h"
#include "stage/checkpoint.h"
#include "stage/sealed_dir.h"
#include "tests/test.h"
#include "tests/unit/trainer_test_util.h"
#include "train/sft_trainer.h"

#define TDIR "test_checkpoint_resume.tmp"
// Kill points per scenario (IDOC_TEST_KILLS overrides it for a thorough run: 100 covers every
// rename and the first mutation of every file); fewer under the sanitizers, which are slower.
#if defined(__SANITIZE_ADDRESS__)
static int KILLS = 4;
#else
static int KILLS = 8;
#endif

static void config(idoc_train_config *c, const char *out, const char *resume) {
  idoc_config_defaults(c);
  const char *kv[] = {"model_name_or_path=tiny",
                      "target=answer",
                      "decoder=tiny",
                      "dataset=" TDIR "/data/train.h5",
                      "image_size=56",
                      "cutoff_len=1024",
                      "learning_rate=1e-3",
                      "lr_scheduler_type=cosine",
                      "warmup_steps=1",
                      "max_steps=6",
                      "per_device_train_batch_size=1",
                      "gradient_accumulation_steps=2",
                      "logging_steps=3",
                      "save_steps=2",
                      "save_total_limit=2",
                      "plot_loss=false",
                      "seed=3"};
  for (size_t i = 0; i < sizeof kv / sizeof kv[0]; i++)
    if (idoc_config_set(c, kv[i])) idoc_die("%s", idoc_last_error());
  char o[512];
  snprintf(o, sizeof o, "output_dir=%s", out);
  idoc_config_set(c, o);
  snprintf(o, sizeof o, "resume_from_checkpoint=%s", resume);
  idoc_config_set(c, o);
}

static int train(const char *out, const char *resume) {
  idoc_train_config c;
  idoc_stage_result r;
  config(&c, out, resume);
  int rc = idoc_train_sft(&c, &r);
  idoc_config_free(&c);
  return rc;
}

// The child: `--child OUT RESUME` trains with the hook the parent put in the environment.
static int child_run(const char *argv0, const char *out, const char *resume, const char *kill_at,
                     const char *ops_log) {
  fflush(stdout);
  pid_t pid = fork();
  if (pid == 0) {
    if (kill_at) setenv("IDOC_TEST_KILL_AT", kill_at, 1);
    // The child keeps the parent's thread counts: OpenBLAS's threaded GEMM blocks K differently
    // from its serial one on some CPUs (AMD EPYC, AVX2: loss 7.4093612 vs 7.40936112), and the
    // uninterrupted reference run is this process.
    if (ops_log) setenv("IDOC_TEST_OPS_LOG", ops_log, 1);
    if (!freopen("/dev/null", "w", stdout) || !freopen("/dev/null", "w", stderr)) _exit(5);
    execl("/proc/self/exe", argv0, "--child", out, resume, (char *)NULL);
    _exit(4);
  }
  int status;
  waitpid(pid, &status, 0);
  return status;
}

// Kill points among the mutations of checkpoint and final folders in an ops log: every rename
// (the steps that swap folders), the first mutation of each file, and an even spread of the
// rest (writes cut mid-buffer, fsyncs, unlinks and rmdirs of a rotation), `max` in all.
static int kill_points(const char *log, long *pts, int max) {
  char *data;
  size_t n;
  if (idoc_read_file(log, &data, &n)) return 0;
  int nc = 0, k = 0;
  long *cand = idoc_xmalloc(sizeof(long) * (n / 8 + 1));
  bool *must = idoc_xcalloc(n / 8 + 1, 1);
  char last_path[4400] = "";
  for (char *s = data; s && *s;) {
    char *nl = strchr(s, '\n');
    if (nl) *nl = 0;
    long idx;
    char kind[16], path[4400];
    if (sscanf(s, "%ld %15s %4399s", &idx, kind, path) == 3 &&
        (strstr(path, "/checkpoint-") || strstr(path, "/final"))) {
      must[nc] = !strcmp(kind, "rename") || strcmp(path, last_path) != 0;
      snprintf(last_path, sizeof last_path, "%s", path);
      cand[nc++] = idx;
    }
    s = nl ? nl + 1 : NULL;
  }
  int n_must = 0;
  for (int i = 0; i < nc; i++)
    n_must += must[i];
  if (n_must > max) { // more than asked: an even spread over the whole run of those
    for (int i = 0, m = 0; i < nc && k < max; i++)
      if (must[i] && (long)m++ * max / n_must == k) pts[k++] = cand[i];
  } else { // all of them, and every stride-th of the rest
    int room = max - n_must, stride = room > 0 ? (nc - n_must) / room + 1 : nc + 1;
    for (int i = 0, r = 0; i < nc && k < max; i++)
      if (must[i] || (++r % stride == 0)) pts[k++] = cand[i];
  }
  free(cand);
  free(must);
  free(data);
  return k;
}

// No partial folder or temporary file is left: every checkpoint-N and final/ is complete.
static bool clean(const char *out, char *bad, size_t n) {
  DIR *d = opendir(out);
  bool ok = d != NULL;
  for (struct dirent *e; d && (e = readdir(d));) {
    char p[4400], why[512];
    snprintf(p, sizeof p, "%s/%s", out, e->d_name);
    if (strstr(e->d_name, ".tmp") || strstr(e->d_name, ".old") || strstr(e->d_name, ".del")) {
      snprintf(bad, n, "%.400s left over", p);
      ok = false;
    } else if ((!strncmp(e->d_name, "checkpoint-", 11) || !strcmp(e->d_name, "final")) &&
               !idoc_sealed_complete(p, NULL, NULL, why, sizeof why)) {
      snprintf(bad, n, "%.200s incomplete: %.300s", p, why);
      ok = false;
    } else if (!strcmp(e->d_name, "final") || !strncmp(e->d_name, "checkpoint-", 11)) {
      DIR *f = opendir(p);
      for (struct dirent *g; f && (g = readdir(f));)
        if (strstr(g->d_name, ".tmp")) {
          snprintf(bad, n, "%.200s/%.200s left over", p, g->d_name);
          ok = false;
        }
      if (f) closedir(f);
    }
  }
  if (d) closedir(d);
  return ok;
}

static bool same_losses(const char *out, char ref[][32], char *msg, size_t n) {
  char got[8][32];
  int k = read_field(out, "\"loss\": ", 1, 6, got);
  if (k != 2) {
    snprintf(msg, n, "%d loss lines", k);
    return false;
  }
  for (int i = 0; i < 2; i++)
    if (strcmp(got[i], ref[i])) {
      snprintf(msg, n, "loss %d: %s vs %s uninterrupted", i, got[i], ref[i]);
      return false;
    }
  return true;
}

// Kills the run `resume` (from a copy of `start`, or from nothing) at each selected mutation,
// resumes with resume_from_checkpoint=true, checks losses and leftovers.
static void kill_matrix(const char *argv0, const char *phase, const char *start, const char *resume,
                        char ref[][32], int max) {
  char out[256], log[256], cmd[1024];
  snprintf(out, sizeof out, TDIR "/%s", phase);
  snprintf(log, sizeof log, TDIR "/%s.ops", phase);
  snprintf(cmd, sizeof cmd, "rm -rf %s %s%s%s%s", out, log, start ? " && cp -a " : "",
           start ? start : "", start ? " " TDIR "/tmpl" : "");
  if (system(cmd) != 0) return;
  if (start) {
    snprintf(cmd, sizeof cmd, "mv " TDIR "/tmpl %s", out);
    if (system(cmd) != 0) return;
  }
  int st = child_run(argv0, out, resume, NULL, log);
  T_CHECK(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: the reference child run failed", phase);
  // Without a kill the losses are already those of the uninterrupted run: when resuming from
  // checkpoint-4, the step-6 loss needs step 4's part of the window from trainer_state.json.
  char msg0[600] = "";
  T_CHECK(same_losses(out, ref, msg0, sizeof msg0), "%s without a kill: %s", phase, msg0);
  long pts[400];
  int np = kill_points(log, pts, max < 400 ? max : 400);
  printf("%s: %d kill points\n", phase, np);
  T_CHECK(np >= (KILLS < 20 ? KILLS : 20), "%s: only %d kill points", phase, np);
  int failures = 0;
  for (int i = 0; i < np && failures < 3; i++) {
    snprintf(cmd, sizeof cmd, "rm -rf %s%s%s%s", out, start ? " && cp -a " : "", start ? start : "",
             start ? " " : "");
    if (start) snprintf(cmd + strlen(cmd), sizeof cmd - strlen(cmd), "%s", out);
    if (system(cmd) != 0) return;
    char at[32];
    snprintf(at, sizeof at, "%ld", pts[i]);
    st = child_run(argv0, out, resume, at, NULL);
    bool killed = WIFSIGNALED(st) && WTERMSIG(st) == SIGKILL;
    char msg[600] = "";
    bool ok = killed && train(out, "true") == IDOC_OK && same_losses(out, ref, msg, sizeof msg) &&
              clean(out, msg, sizeof msg);
    T_CHECK(ok, "%s: killed at mutation %ld (%s): %s %s", phase, pts[i],
            killed ? "killed" : "not killed", msg, idoc_last_error());
    failures += !ok;
  }
}

int main(int argc, char **argv) {
  if (argc == 4 && !strcmp(argv[1], "--child")) return train(argv[2], argv[3]) ? 3 : 0;
  if (getenv("IDOC_TEST_KILLS")) KILLS = atoi(getenv("IDOC_TEST_KILLS"));
  if (system("rm -rf " TDIR) != 0) return 1;
  idoc_mkdir_p(TDIR);
  if (make_small_split(TDIR)) return 1;

  // The uninterrupted run.
  T_CHECK(train(TDIR "/ref", "") == IDOC_OK, "reference run: %s", idoc_last_error());
  char ref[8][32];
  T_CHECK(read_field(TDIR "/ref", "\"loss\": ", 1, 6, ref) == 2, "two logged losses (steps 3, 6)");
  char bad[600] = "";
  T_CHECK(clean(TDIR "/ref", bad, sizeof bad), "%s", bad);
  T_CHECK(!idoc_file_exists(TDIR "/ref/checkpoint-2") &&
              idoc_file_exists(TDIR "/ref/checkpoint-4/manifest.json") &&
              idoc_file_exists(TDIR "/ref/checkpoint-6/manifest.json"),
          "save_total_limit 2 keeps checkpoint-4 and -6");

  // Kills during fresh checkpoint writes, rotations and the final save.
  kill_matrix(argv[0], "fresh", NULL, "", ref, KILLS);
  // Kills while resuming from checkpoint-4 replaces the existing checkpoint-6 and final/.
  kill_matrix(argv[0], "replace", TDIR "/ref", TDIR "/replace/checkpoint-4", ref, KILLS);

  // The case by hand: the newest checkpoint lost files (tokenizer.json,
  // training_args.yaml) and final/ is gone: resume takes checkpoint-4, saying why it skipped -6.
  if (system("rm -rf " TDIR "/cut && cp -a " TDIR "/ref " TDIR "/cut && rm -rf " TDIR
             "/cut/final " TDIR "/cut/checkpoint-6/tokenizer.json " TDIR
             "/cut/checkpoint-6/training_args.yaml") == 0) {
    char latest[512], msg[600] = "";
    T_CHECK(idoc_checkpoint_latest(TDIR "/cut", latest, sizeof latest, false) == IDOC_OK &&
                strstr(latest, "checkpoint-4"),
            "newest complete: %s", latest);
    T_CHECK(train(TDIR "/cut", "true") == IDOC_OK && same_losses(TDIR "/cut", ref, msg, sizeof msg),
            "resume past a damaged checkpoint-6: %s %s", msg, idoc_last_error());
  }

  // A finished run resumed again: said to be complete, nothing touched.
  char *before, *after;
  size_t nb, na;
  struct stat s0, s1;
  T_CHECK(idoc_read_file(TDIR "/ref/trainer_log.jsonl", &before, &nb) == IDOC_OK &&
              stat(TDIR "/ref/final/manifest.json", &s0) == 0,
          "log and final");
  idoc_train_config c;
  idoc_stage_result r;
  config(&c, TDIR "/ref", "true");
  T_CHECK(idoc_train_sft(&c, &r) == IDOC_OK && r.already_complete && r.steps == 6,
          "a complete run resumes as complete: %s", idoc_last_error());
  idoc_config_free(&c);
  T_CHECK(idoc_read_file(TDIR "/ref/trainer_log.jsonl", &after, &na) == IDOC_OK && na == nb &&
              !memcmp(before, after, nb) && stat(TDIR "/ref/final/manifest.json", &s1) == 0 &&
              s1.st_mtim.tv_sec == s0.st_mtim.tv_sec && s1.st_mtim.tv_nsec == s0.st_mtim.tv_nsec,
          "a complete run is left untouched");
  free(before);
  free(after);

  // A missing resume folder names the key the user set and the OS reason.
  T_CHECK(train(TDIR "/ref", TDIR "/nowhere") == IDOC_ERR &&
              strstr(idoc_last_error(), "resume_from_checkpoint") &&
              strstr(idoc_last_error(), "No such file"),
          "missing resume folder: %s", idoc_last_error());
  // An output_dir that cannot be written says why (here trainer_log.jsonl is a folder).
  idoc_mkdir_p(TDIR "/ro/trainer_log.jsonl/x");
  T_CHECK(train(TDIR "/ro", "") == IDOC_ERR && strstr(idoc_last_error(), "trainer_log.jsonl") &&
              strstr(idoc_last_error(), "Is a directory"),
          "unwritable output: %s", idoc_last_error());
  if (system("rm -rf " TDIR) != 0) return 1;
  return t_summary("test_checkpoint_resume");
}
