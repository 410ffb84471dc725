// Training curves drawn by gnuplot (Debian: gnuplot-nox), run as a subprocess on a data file
// and a script written next to the log: training_loss.png for SFT (cross-entropy and total
// loss; both heatmap MSEs when the run has them), training_rewards.png for GRPO (mean reward,
// KL to the reference, completion length). Each panel has labelled axes, ticks and a legend; the
// raw logged values are drawn with a centred moving average over them (no lag). Without gnuplot
// the data and the script stay in output_dir and a message says how to draw them.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include <fcntl.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "nn/util.h"
#include "stage/stage.h"

// Is `prog` an executable on PATH? (its full path into out)
static bool find_on_path(const char *prog, char *out, size_t n) {
  const char *path = getenv("PATH");
  if (!path) path = "/usr/bin:/bin";
  while (*path) {
    const char *e = strchr(path, ':');
    size_t len = e ? (size_t)(e - path) : strlen(path);
    snprintf(out, n, "%.*s/%s", (int)len, path, prog);
    if (len && access(out, X_OK) == 0) return true;
    path += len + (e ? 1 : 0);
  }
  return false;
}

int idoc_gnuplot_run(const char *script) {
  char gp[4096];
  if (!find_on_path("gnuplot", gp, sizeof gp))
    return idoc_set_error("gnuplot not found on PATH (Debian: apt-get install gnuplot-nox); the "
                          "data and the script are kept: run `gnuplot %s` to draw them",
                          script);
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return idoc_set_error("gnuplot: cannot fork");
  if (pid == 0) {
    int dn = open("/dev/null", O_WRONLY);
    if (dn >= 0) dup2(dn, 1);
    execl(gp, "gnuplot", script, (char *)NULL);
    _exit(127);
  }
  int st = 0;
  if (waitpid(pid, &st, 0) < 0 || !WIFEXITED(st) || WEXITSTATUS(st) != 0)
    return idoc_set_error("gnuplot %s failed (status %d)", script, st);
  return IDOC_OK;
}

// One logged series: the value of "name" on each line with current_steps (NaN when absent or
// null).
typedef struct {
  const char *name, *title;
  double *v;
  bool any; // a finite, non-zero value somewhere
} series;

// The value after "\"name\": " in line s (NaN: absent or null).
static double field(const char *s, const char *name) {
  char key[80];
  snprintf(key, sizeof key, "\"%s\": ", name);
  const char *p = strstr(s, key);
  if (!p) return NAN;
  p += strlen(key);
  if (!strncmp(p, "null", 4)) return NAN;
  return strtod(p, NULL);
}

// Centred moving average of v[0..n) over 2h+1 points (fewer at the ends), NaNs skipped.
static void centred_mean(const double *v, int n, int h, double *out) {
  for (int i = 0; i < n; i++) {
    double s = 0;
    int k = 0;
    for (int j = i - h; j <= i + h; j++)
      if (j >= 0 && j < n && isfinite(v[j])) s += v[j], k++;
    out[i] = k ? s / k : NAN;
  }
}

int idoc_plot_training(const char *output_dir, bool grpo) {
  char p[4200];
  snprintf(p, sizeof p, "%s/trainer_log.jsonl", output_dir);
  char *data;
  size_t len;
  if (idoc_read_file(p, &data, &len)) return IDOC_ERR;
  series sft[] = {{"loss", "total loss", 0, 0},
                  {"ce", "cross-entropy", 0, 0},
                  {"mse_art", "artifact heatmap MSE", 0, 0},
                  {"mse_mis", "misalignment heatmap MSE", 0, 0}};
  series rl[] = {{"reward", "mean reward", 0, 0},
                 {"kl", "KL to the reference", 0, 0},
                 {"completion_length", "mean completion length", 0, 0},
                 {"completion_length_max", "longest completion", 0, 0}};
  series *S = grpo ? rl : sft;
  const int NS = 4;
  int cap = 256, n = 0;
  double *steps = idoc_xmalloc((size_t)cap * sizeof(double));
  for (int k = 0; k < NS; k++)
    S[k].v = idoc_xmalloc((size_t)cap * sizeof(double));
  for (char *s = data; s && s < data + len;) {
    char *nl = memchr(s, '\n', (size_t)(data + len - s));
    if (nl) *nl = 0;
    double st = field(s, "current_steps");
    if (isfinite(st) && !strstr(s, "\"eval\"")) {
      if (n == cap) {
        cap *= 2;
        steps = idoc_xrealloc(steps, (size_t)cap * sizeof(double));
        for (int k = 0; k < NS; k++)
          S[k].v = idoc_xrealloc(S[k].v, (size_t)cap * sizeof(double));
      }
      steps[n] = st;
      for (int k = 0; k < NS; k++) {
        S[k].v[n] = field(s, S[k].name);
        if (isfinite(S[k].v[n]) && S[k].v[n] != 0) S[k].any = true;
      }
      n++;
    }
    s = nl ? nl + 1 : NULL;
  }
  free(data);
  int rc = IDOC_OK;
  const char *base = grpo ? "training_rewards" : "training_loss";
  if (n < 2) goto out;
  // The data file: step, then raw and smoothed columns of each series.
  snprintf(p, sizeof p, "%s/%s.tsv", output_dir, base);
  FILE *f = fopen(p, "w");
  if (!f) {
    rc = idoc_set_error("%s: cannot write", p);
    goto out;
  }
  int h = n >= 15 ? n / 15 : 0;
  double *sm = idoc_xmalloc((size_t)NS * n * sizeof(double));
  for (int k = 0; k < NS; k++)
    centred_mean(S[k].v, n, h, sm + (size_t)k * n);
  fprintf(f, "# step");
  for (int k = 0; k < NS; k++)
    fprintf(f, "\t%s\t%s_smoothed", S[k].name, S[k].name);
  fprintf(f, "\n");
  for (int i = 0; i < n; i++) {
    fprintf(f, "%.0f", steps[i]);
    for (int k = 0; k < NS; k++) {
      double a = S[k].v[i], b = sm[(size_t)k * n + i];
      fprintf(f, isfinite(a) ? "\t%.9g" : "\tNaN", a);
      fprintf(f, isfinite(b) ? "\t%.9g" : "\tNaN", b);
    }
    fprintf(f, "\n");
  }
  free(sm);
  bool failed = fclose(f) != 0;
  // The script: one panel per quantity (the two MSEs share one; both lengths share one).
  char gp[4200];
  snprintf(gp, sizeof gp, "%s/%s.gp", output_dir, base);
  f = fopen(gp, "w");
  if (!f || failed) {
    if (f) fclose(f);
    rc = idoc_set_error("%s: cannot write", f ? p : gp);
    goto out;
  }
  bool maps = !grpo && (S[2].any || S[3].any);
  int panels = grpo ? 3 : (maps ? 2 : 1);
  char smooth[64];
  snprintf(smooth, sizeof smooth, h ? "centred mean of %d points" : "raw", 2 * h + 1);
  fprintf(f,
          "# Drawn by idoc (stage/plots.c) from %s.tsv; rerun with `gnuplot %s.gp` in this "
          "folder.\n"
          "set terminal pngcairo size %d,480 font 'sans,10'\n"
          "set output '%s/%s.png'\n"
          "set datafile separator '\\t'\nset datafile missing 'NaN'\n"
          "set grid\nset key below\nset xlabel 'optimizer step'\n"
          "set multiplot layout 1,%d title '%s'\n",
          base, base, 520 * panels, output_dir, base, panels, grpo ? "GRPO" : "SFT training loss");
  const char *data_path = p;
  if (!grpo) {
    fprintf(f,
            "set title 'token cross-entropy'\nset ylabel 'loss'\n"
            "plot '%s' using 1:2 with lines lw 1 lc rgb '#a0b8e0' title 'total loss (raw)', \\\n"
            "     '' using 1:3 with lines lw 2 lc rgb '#1f4fb0' title 'total loss (%s)', \\\n"
            "     '' using 1:4 with lines lw 1 lc rgb '#f0b890' title 'cross-entropy (raw)', \\\n"
            "     '' using 1:5 with lines lw 2 lc rgb '#c05010' title 'cross-entropy (%s)'\n",
            data_path, smooth, smooth);
    if (maps)
      fprintf(f,
              "set title 'heatmap MSE (post-sigmoid)'\nset ylabel 'MSE'\n"
              "plot '%s' using 1:6 with lines lw 1 lc rgb '#e0a0a0' title 'artifact (raw)', \\\n"
              "     '' using 1:7 with lines lw 2 lc rgb '#b01010' title 'artifact (%s)', \\\n"
              "     '' using 1:8 with lines lw 1 lc rgb '#a0d0a0' title 'misalignment (raw)', \\\n"
              "     '' using 1:9 with lines lw 2 lc rgb '#108010' title 'misalignment (%s)'\n",
              data_path, smooth, smooth);
  } else {
    fprintf(f,
            "set title 'reward'\nset ylabel 'mean reward over the step'\n"
            "plot '%s' using 1:2 with lines lw 1 lc rgb '#a0b8e0' title 'raw', \\\n"
            "     '' using 1:3 with lines lw 2 lc rgb '#1f4fb0' title '%s'\n"
            "set title 'KL to the reference (k3)'\nset ylabel 'mean per token'\n"
            "plot '%s' using 1:4 with lines lw 1 lc rgb '#e0a0a0' title 'raw', \\\n"
            "     '' using 1:5 with lines lw 2 lc rgb '#b01010' title '%s'\n"
            "set title 'completion length'\nset ylabel 'tokens'\nset yrange [0:*]\n"
            "plot '%s' using 1:6 with lines lw 1 lc rgb '#a0d0a0' title 'mean (raw)', \\\n"
            "     '' using 1:7 with lines lw 2 lc rgb '#108010' title 'mean (%s)', \\\n"
            "     '' using 1:8 with points pt 7 ps 0.4 lc rgb '#606060' title 'longest'\n",
            data_path, smooth, data_path, smooth, data_path, smooth);
  }
  fprintf(f, "unset multiplot\n");
  if (fclose(f)) {
    rc = idoc_set_error("%s: cannot write", gp);
    goto out;
  }
  rc = idoc_gnuplot_run(gp);
out:
  free(steps);
  for (int k = 0; k < NS; k++)
    free(S[k].v);
  return rc;
}

// ---- the eval sheet ----------------------------------------------------------------------------
static int write_bin(const char *path, const void *p, size_t n) {
  FILE *f = fopen(path, "wb");
  if (!f) return idoc_set_error("%s: cannot write", path);
  bool ok = fwrite(p, 1, n, f) == n;
  if (fclose(f) || !ok) return idoc_set_error("%s: cannot write", path);
  return IDOC_OK;
}

int idoc_eval_sheet(const char *out_dir, const char *tag, const idoc_sheet_row *rows, int n) {
  if (n <= 0) return IDOC_OK;
  char dir[4200], gp[4300], p[4400];
  snprintf(dir, sizeof dir, "%s/eval_sheet_%s", out_dir, tag);
  if (idoc_mkdir_p(dir)) return IDOC_ERR;
  snprintf(gp, sizeof gp, "%s/eval_sheet_%s.gp", out_dir, tag);
  FILE *f = fopen(gp, "w");
  if (!f) return idoc_set_error("%s: cannot write", gp);
  const int cols = 5, cw = 210, rh = 250;
  fprintf(f,
          "# Drawn by idoc (stage/plots.c): test images, ground-truth vs predicted heatmaps and\n"
          "# scores; the pictures' raw data is in eval_sheet_%s/.\n"
          "set terminal pngcairo size %d,%d font 'sans,8'\n"
          "set output '%s/eval_sheet_%s.png'\n"
          "unset border\nunset tics\nunset key\nunset colorbox\nset size ratio -1\n"
          "set palette defined (0 'black', 0.5 '#d04000', 1 '#ffff80')\nset cbrange [0:1]\n"
          "set multiplot layout %d,%d title \"%s: held-out samples (scores: plausibility / "
          "aesthetics / alignment / overall; maps 0..1)\"\n",
          tag, cols * cw, n * rh + 30, out_dir, tag, n, cols, tag);
  static const char *const heads[4] = {"GT artifact", "predicted artifact", "GT misalignment",
                                       "predicted misalignment"};
  static const int order[4] = {2, 1, 0, 3}; // dataset order -> plausibility, aesthetics, ...
  int rc = IDOC_OK;
  for (int i = 0; i < n && rc == IDOC_OK; i++) {
    const idoc_sheet_row *r = &rows[i];
    char gt[64], pr[64];
    int k = 0, kk = 0;
    for (int j = 0; j < 4; j++) {
      int d = order[j];
      k += snprintf(gt + k, sizeof gt - (size_t)k, "%s%.2f", j ? "/" : "", r->gt[d]);
      kk += r->parsed[d]
                ? snprintf(pr + kk, sizeof pr - (size_t)kk, "%s%.2f", j ? "/" : "", r->pred[d])
                : snprintf(pr + kk, sizeof pr - (size_t)kk, "%s-", j ? "/" : "");
    }
    snprintf(p, sizeof p, "%s/image_%d.rgb", dir, i);
    rc = write_bin(p, r->image, (size_t)r->img_h * r->img_w * 3);
    if (rc) break;
    fprintf(f,
            "set title \"#%d  GT %s\\npredicted %s\"\n"
            "plot '%s' binary array=(%d,%d) format='%%uchar%%uchar%%uchar' flipy with rgbimage\n",
            r->index, gt, pr, p, r->img_w, r->img_h);
    // artifact GT, artifact predicted, misalignment GT, misalignment predicted
    const float *maps[4] = {r->gt_map[0], r->pred_map[0], r->gt_map[1], r->pred_map[1]};
    for (int m = 0; m < 4 && rc == IDOC_OK; m++) {
      fprintf(f, "set title '%s'\n", heads[m]);
      if (!maps[m]) {
        fprintf(f, "set label 1 'no map' at graph 0.5,0.5 center\nplot [0:1][0:1] NaN notitle\n"
                   "unset label 1\n");
        continue;
      }
      snprintf(p, sizeof p, "%s/map_%d_%d.f32", dir, i, m);
      rc = write_bin(p, maps[m], (size_t)r->map_h * r->map_w * sizeof(float));
      fprintf(f, "plot '%s' binary array=(%d,%d) format='%%float' flipy with image\n", p, r->map_w,
              r->map_h);
    }
  }
  fprintf(f, "unset multiplot\n");
  if (fclose(f) && rc == IDOC_OK) rc = idoc_set_error("%s: cannot write", gp);
  if (rc == IDOC_OK) rc = idoc_gnuplot_run(gp);
  return rc;
}
