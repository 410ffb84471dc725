// The synthetic RichHF-like generator (data/synth.h): determinism per (seed, split, index),
// scores that follow the documented rules (recomputed here from the returned maps and the
// planted truth), boxes equal to data/boxes.h on the returned maps, word labels that match the
// prompt's RichHF word split, a response that parses back (data/imagedoctor_text.h) to the
// sample's scores and boxes. With HDF5 and PNG: `idoc data synth` (sample i independent of the
// split size and thread count, no temporaries left), `idoc data inspect` and `idoc data show`
// (the PNG decodes to the image size, overlays where the maps are set, boxes drawn).
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/boxes.h"
#include "data/imagedoctor_text.h"
#include "data/prompt_words.h"
#include "data/synth.h"
#include "nn/util.h"
#include "tests/test.h"

#if IDOC_HAVE_HDF5 && IDOC_HAVE_PNG
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>

#include "cli/commands.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/tfrecord.h"
#include "nn/json.h"
#endif

static bool map_empty(const uint8_t *m, size_t n) {
  for (size_t i = 0; i < n; i++)
    if (m[i]) return false;
  return true;
}

// Every field equal, pixels bitwise.
static bool same_sample(const idoc_sample *a, const idoc_sample *b) {
  if (a->img_h != b->img_h || a->img_w != b->img_w || a->map_h != b->map_h ||
      a->map_w != b->map_w || a->n_boxes != b->n_boxes || a->orig_h != b->orig_h ||
      a->orig_w != b->orig_w || a->response_kind != b->response_kind)
    return false;
  size_t ni = (size_t)a->img_h * a->img_w * 3, nm = (size_t)a->map_h * a->map_w;
  if (memcmp(a->image, b->image, ni) || memcmp(a->artifact_map, b->artifact_map, nm) ||
      memcmp(a->misalignment_map, b->misalignment_map, nm) ||
      memcmp(a->scores, b->scores, sizeof a->scores))
    return false;
  for (int i = 0; i < a->n_boxes; i++)
    if (memcmp(a->boxes[i], b->boxes[i], sizeof a->boxes[i]) || a->box_kind[i] != b->box_kind[i])
      return false;
  return !strcmp(a->prompt, b->prompt) && !strcmp(a->response, b->response) &&
         !strcmp(a->word_labels, b->word_labels) && !strcmp(a->source_id, b->source_id);
}

static void test_determinism(void) {
  idoc_synth_opts o = idoc_synth_opts_default();
  o.size = 80;
  for (uint64_t i = 0; i < 6; i++) {
    idoc_sample a, b, c, d;
    T_CHECK(idoc_synth_sample(&o, 1, 0, i, &a, NULL) == 0, "%s", idoc_last_error());
    T_CHECK(idoc_synth_sample(&o, 1, 0, i, &b, NULL) == 0, "%s", idoc_last_error());
    T_CHECK(same_sample(&a, &b), "sample %llu regenerates identically", (unsigned long long)i);
    idoc_synth_sample(&o, 2, 0, i, &c, NULL);
    T_CHECK(memcmp(a.image, c.image, (size_t)80 * 80 * 3) != 0, "seed 2 gives another image");
    idoc_synth_sample(&o, 1, 1, i, &d, NULL);
    T_CHECK(memcmp(a.image, d.image, (size_t)80 * 80 * 3) != 0, "split 1 gives another image");
    char want[32];
    snprintf(want, sizeof want, "synth/train/%llu", (unsigned long long)i);
    T_CHECK(!strcmp(a.source_id, want) && !strncmp(d.source_id, "synth/val/", 10), "source ids");
    idoc_sample_free(&a), idoc_sample_free(&b), idoc_sample_free(&c), idoc_sample_free(&d);
  }
  T_CHECK(idoc_synth_sample_seed(1, 0, 5) != idoc_synth_sample_seed(1, 0, 6) &&
              idoc_synth_sample_seed(1, 0, 5) != idoc_synth_sample_seed(1, 1, 5) &&
              idoc_synth_sample_seed(1, 0, 5) != idoc_synth_sample_seed(2, 0, 5),
          "per-sample seeds");
  // Bad options are refused.
  idoc_sample s;
  idoc_synth_opts bad = o;
  bad.size = 8;
  T_CHECK(idoc_synth_sample(&bad, 1, 0, 0, &s, NULL) == IDOC_ERR, "size 8");
  bad = o, bad.artifact_prob = 1.5;
  T_CHECK(idoc_synth_sample(&bad, 1, 0, 0, &s, NULL) == IDOC_ERR, "artifact_prob 1.5");
  bad = o, bad.misalign_prob = -0.1;
  T_CHECK(idoc_synth_sample(&bad, 1, 0, 0, &s, NULL) == IDOC_ERR, "misalign_prob -0.1");
}

static double round2(double x) { return round(x * 100) / 100; }
static double clamp01(double x) { return x < 0 ? 0 : (x > 1 ? 1 : x); }

// The rules of synth.h, checked on n samples; returns the mean scores per group in *means:
// [0] plausibility without artifacts, [1] with, [2] alignment without misalignment, [3] with.
static void check_rules(const idoc_synth_opts *o, uint64_t seed, int n, double means[4],
                        int counts[4]) {
  const int S = o->size;
  const size_t np = (size_t)S * S;
  static const double penalty[4] = {0, 1.0, 0.6, 0.7}; // none, missing, colour, shape
  memset(means, 0, 4 * sizeof *means);
  memset(counts, 0, 4 * sizeof *counts);
  for (int i = 0; i < n; i++) {
    idoc_sample s;
    idoc_synth_truth tr;
    if (idoc_synth_sample(o, seed, 0, (uint64_t)i, &s, &tr)) {
      T_CHECK(0, "%s", idoc_last_error());
      continue;
    }
    T_CHECK(s.img_h == S && s.img_w == S && s.map_h == S && s.map_w == S, "%d sizes", i);
    T_CHECK(s.response_kind == 1 && s.orig_h == S && s.orig_w == S, "%d kind/orig", i);
    // Plausibility from the artifact mass of the returned map.
    double mass = 0;
    for (size_t k = 0; k < np; k++)
      mass += s.artifact_map[k];
    mass /= 255.0 * (double)np;
    T_CLOSE(tr.artifact_mass, mass, 1e-12, 0);
    T_CLOSE(tr.clean_scores[2], exp(-100 * mass), 1e-12, 0);
    T_CHECK((tr.n_artifacts == 0) == map_empty(s.artifact_map, np), "%d artifact map <-> truth", i);
    // Alignment from the misalignment kind; the misalignment map and the 0 labels mark it.
    T_CHECK(tr.n_objects >= 1 && tr.n_objects <= 3, "%d objects", i);
    T_CLOSE(tr.clean_scores[0], 1 - penalty[tr.mis_kind] / tr.n_objects, 1e-12, 0);
    bool mis = tr.mis_kind != IDOC_MIS_NONE;
    T_CHECK(mis == !map_empty(s.misalignment_map, np), "%d misalignment map <-> truth", i);
    T_CHECK(mis == (strchr(s.word_labels, '0') != NULL), "%d word labels <-> truth", i);
    T_CHECK(tr.n_drawn == tr.n_objects - (tr.mis_kind == IDOC_MIS_MISSING), "%d drawn", i);
    T_CHECK(tr.clean_scores[1] >= 0.15 && tr.clean_scores[1] <= 1, "%d aesthetics range", i);
    T_CLOSE(tr.clean_scores[3],
            0.4 * tr.clean_scores[2] + 0.35 * tr.clean_scores[0] + 0.25 * tr.clean_scores[1], 1e-12,
            0);
    // Stored scores: clean + noise, clamped, two decimals.
    for (int k = 0; k < 4; k++) {
      double v = s.scores[k];
      T_CHECK(v >= 0 && v <= 1, "%d score %d = %g", i, k, v);
      T_CHECK(fabs(v * 100 - round(v * 100)) < 1e-4, "%d score %d = %g has 2 decimals", i, k, v);
      if (o->label_noise == 0)
        T_CHECK(s.scores[k] == (float)round2(clamp01(tr.clean_scores[k])), "%d exact %d", i, k);
      else
        T_CHECK(fabs(v - clamp01(tr.clean_scores[k])) <= 5 * o->label_noise + 0.005,
                "%d score %d = %g vs clean %g", i, k, v, tr.clean_scores[k]);
    }
    means[tr.n_artifacts ? 1 : 0] += s.scores[2], counts[tr.n_artifacts ? 1 : 0]++;
    means[mis ? 3 : 2] += s.scores[0], counts[mis ? 3 : 2]++;
    // Word labels: one per word of the prompt as RichHF splits it.
    int nw = idoc_prompt_words(s.prompt, NULL, NULL, 0);
    int nl = idoc_parse_word_labels(s.word_labels, NULL, 0);
    T_CHECK(nw > 0 && nl == nw, "%d: %d labels for %d words: '%s' / '%s'", i, nl, nw, s.prompt,
            s.word_labels);
    T_CHECK(strstr(s.prompt, " background") != NULL, "%d prompt names the background", i);
    // Boxes: in the 512 frame, misalignment first, exactly data/boxes.h on the returned maps.
    idoc_box_opts bo = idoc_box_opts_default();
    idoc_flaw_box fb[IDOC_DS_MAX_BOXES];
    int nm = idoc_boxes_from_map(s.misalignment_map, S, S, &bo, fb, IDOC_DS_MAX_BOXES / 2);
    int na = idoc_boxes_from_map(s.artifact_map, S, S, &bo, fb + nm, IDOC_DS_MAX_BOXES - nm);
    T_CHECK(s.n_boxes == nm + na, "%d: %d boxes, data/boxes gives %d", i, s.n_boxes, nm + na);
    T_CHECK((nm > 0) == mis && (na > 0) == (tr.n_artifacts > 0), "%d: a box per non-empty map", i);
    for (int b = 0; b < s.n_boxes && b < nm + na; b++) {
      const float *x = s.boxes[b];
      T_CHECK(x[0] >= 0 && x[1] >= 0 && x[2] <= 512 && x[3] <= 512 && x[0] < x[2] && x[1] < x[3],
              "%d box %d [%g %g %g %g] outside the frame", i, b, x[0], x[1], x[2], x[3]);
      T_CHECK(x[0] == fb[b].x1 && x[1] == fb[b].y1 && x[2] == fb[b].x2 && x[3] == fb[b].y2,
              "%d box %d differs from data/boxes", i, b);
      T_CHECK(s.box_kind[b] == (b < nm ? IDOC_BOX_MISALIGNMENT : IDOC_BOX_ARTIFACT), "%d kind", i);
    }
    // The response parses back to the sample's scores and boxes.
    idoc_parsed_response p;
    idoc_parse_response(s.response, strlen(s.response), NULL, &p);
    T_CHECK(p.has_think && p.has_answer && p.n_mis == 1 && p.n_art == 1, "%d response shape", i);
    for (int k = 0; k < 4; k++)
      T_CHECK(p.score_valid[k] && fabs(p.score[k] - s.scores[k]) < 1e-6, "%d parsed score %d", i,
              k);
    T_CHECK(p.n_boxes == (size_t)s.n_boxes, "%d parsed %zu boxes of %d", i, p.n_boxes, s.n_boxes);
    for (size_t b = 0; b < p.n_boxes && b < (size_t)s.n_boxes; b++)
      T_CHECK(p.boxes[b].x1 == s.boxes[b][0] && p.boxes[b].y1 == s.boxes[b][1] &&
                  p.boxes[b].x2 == s.boxes[b][2] && p.boxes[b].y2 == s.boxes[b][3],
              "%d parsed box %zu", i, b);
    idoc_parsed_response_free(&p);
    idoc_sample_free(&s);
  }
  for (int g = 0; g < 4; g++)
    means[g] = counts[g] ? means[g] / counts[g] : NAN;
}

static void test_rules(void) {
  idoc_synth_opts o = idoc_synth_opts_default();
  o.size = 96;
  double m[4];
  int c[4];
  check_rules(&o, 3, 50, m, c);
  T_CHECK(c[0] >= 5 && c[1] >= 5 && c[2] >= 5 && c[3] >= 5, "groups %d %d %d %d", c[0], c[1], c[2],
          c[3]);
  T_CHECK(m[0] >= 0.9, "plausibility without artifacts %.3f", m[0]);
  T_CHECK(m[0] > m[1] + 0.1, "plausibility: clean %.3f vs with artifacts %.3f", m[0], m[1]);
  T_CHECK(m[2] >= 0.9, "alignment without misalignment %.3f", m[2]);
  T_CHECK(m[2] > m[3] + 0.1, "alignment: aligned %.3f vs misaligned %.3f", m[2], m[3]);
  printf("synth means over 50: plausibility %.3f (clean, %d) vs %.3f (artifacts, %d); alignment "
         "%.3f (%d) vs %.3f (misaligned, %d)\n",
         m[0], c[0], m[1], c[1], m[2], c[2], m[3], c[3]);
  // Without noise the stored scores are the rules, rounded; the probabilities switch the flaws.
  o.label_noise = 0;
  o.size = 64;
  check_rules(&o, 4, 12, m, c);
  o.artifact_prob = 0, o.misalign_prob = 0;
  check_rules(&o, 5, 12, m, c);
  T_CHECK(c[1] == 0 && c[3] == 0 && m[0] == 1 && m[2] == 1, "no flaws: scores 1");
  o.artifact_prob = 1, o.misalign_prob = 1;
  check_rules(&o, 6, 12, m, c);
  T_CHECK(c[0] == 0 && c[2] == 0, "every sample flawed");
}

#if IDOC_HAVE_HDF5 && IDOC_HAVE_PNG
static int run_data(int argc, const char **argv) { return idoc_cmd_data(argc, (char **)argv); }

// Runs `idoc data ...` with stdout sent to `out_path`.
static int run_captured(int argc, const char **argv, const char *out_path) {
  fflush(stdout);
  int saved = dup(1), fd = open(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
  dup2(fd, 1);
  close(fd);
  int rc = run_data(argc, argv);
  fflush(stdout);
  dup2(saved, 1);
  close(saved);
  return rc;
}

static void test_cli(void) {
  char dir[64] = "/tmp/idoc_test_synth_XXXXXX";
  if (!mkdtemp(dir)) {
    T_CHECK(0, "mkdtemp");
    return;
  }
  char d1[128], d2[128], p[256], q[256];
  snprintf(d1, sizeof d1, "%s/a", dir);
  snprintf(d2, sizeof d2, "%s/b", dir);
  const char *a1[] = {"data", "synth",  "--out", d1,       "--train", "3",      "--val",
                      "2",    "--test", "0",     "--size", "64",      "--seed", "9"};
  const char *a2[] = {"data", "synth",  "--out", d2,       "--train", "6",      "--val",
                      "0",    "--test", "0",     "--size", "64",      "--seed", "9"};
  T_CHECK(run_data(14, a1) == 0, "synth a");
  T_CHECK(run_data(14, a2) == 0, "synth b");
  // Sample i of a split is the same whatever the split size (and the thread schedule), and is
  // the library's sample (seed, split, i).
  snprintf(p, sizeof p, "%s/train.h5", d1);
  snprintf(q, sizeof q, "%s/train.h5", d2);
  idoc_dataset *A = idoc_dataset_open(p), *B = idoc_dataset_open(q);
  T_CHECK(A && B, "%s", idoc_last_error());
  idoc_synth_opts o = idoc_synth_opts_default();
  o.size = 64;
  if (A && B) {
    T_CHECK(idoc_dataset_len(A) == 3 && idoc_dataset_len(B) == 6, "lengths");
    for (size_t i = 0; i < 3; i++) {
      idoc_sample x, y, z;
      idoc_dataset_read(A, i, true, &x);
      idoc_dataset_read(B, i, true, &y);
      idoc_synth_sample(&o, 9, 0, i, &z, NULL);
      T_CHECK(same_sample(&x, &y), "train sample %zu independent of the split size", i);
      T_CHECK(same_sample(&x, &z), "train sample %zu = idoc_synth_sample", i);
      idoc_sample_free(&x), idoc_sample_free(&y), idoc_sample_free(&z);
    }
    idoc_dataset_info in;
    idoc_dataset_get_info(A, &in);
    T_CHECK(!strcmp(in.source, "synthetic") && !strcmp(in.split, "train"), "attributes");
  }
  idoc_dataset_close_reader(A);
  snprintf(p, sizeof p, "%s/val.h5", d1);
  idoc_dataset *V = idoc_dataset_open(p);
  T_CHECK(V && idoc_dataset_len(V) == 2, "val split");
  if (V) {
    idoc_sample x, z;
    idoc_dataset_read(V, 1, true, &x);
    idoc_synth_sample(&o, 9, 1, 1, &z, NULL);
    T_CHECK(same_sample(&x, &z), "val sample 1 = idoc_synth_sample(split 1)");
    idoc_sample_free(&x), idoc_sample_free(&z);
    idoc_dataset_close_reader(V);
  }
  // Only the finished files are there (no temporaries, no empty test split).
  DIR *dd = opendir(d1);
  int files = 0, stray = 0;
  for (struct dirent *e; dd && (e = readdir(dd));) {
    if (e->d_name[0] == '.') continue;
    files++;
    stray += strcmp(e->d_name, "train.h5") != 0 && strcmp(e->d_name, "val.h5") != 0;
  }
  if (dd) closedir(dd);
  T_CHECK(files == 2 && stray == 0, "%d files, %d unexpected", files, stray);

  // inspect: summary and --dump of one sample.
  char out[256];
  snprintf(out, sizeof out, "%s/stdout.txt", dir);
  const char *ai[] = {"data", "inspect", q};
  T_CHECK(run_captured(3, ai, out) == 0, "inspect");
  char *text = NULL;
  size_t n;
  if (idoc_read_file(out, &text, &n) == 0) {
    T_CHECK(strstr(text, "6 samples") && strstr(text, "split \"train\"") &&
                strstr(text, "plausibility") && strstr(text, "[6, 64, 64, 3]"),
            "inspect output:\n%s", text);
    free(text);
  }
  const char *ad[] = {"data", "inspect", q, "--dump", "4"};
  T_CHECK(run_captured(5, ad, out) == 0, "inspect --dump");
  idoc_json_doc *doc = idoc_json_parse_file(out, NULL);
  T_CHECK(doc != NULL, "dump is JSON: %s", idoc_last_error());
  if (doc && B) {
    const idoc_json *r = idoc_json_root(doc);
    idoc_sample s;
    idoc_dataset_read(B, 4, true, &s);
    T_CHECK(idoc_json_get(r, "index")->num == 4, "dump index");
    T_CHECK(!strcmp(idoc_json_string(idoc_json_get(r, "prompt")), s.prompt), "dump prompt");
    T_CHECK(!strcmp(idoc_json_string(idoc_json_get(r, "response")), s.response), "dump response");
    T_CHECK((uint32_t)idoc_json_get(r, "image_crc32c")->num ==
                idoc_crc32c(s.image, (size_t)64 * 64 * 3),
            "dump image CRC");
    const idoc_json *sc = idoc_json_get(r, "scores");
    for (int k = 0; k < 4; k++)
      T_CHECK((float)sc->kids[k].num == s.scores[k], "dump score %d", k);
    T_CHECK(idoc_json_get(r, "boxes")->n == (uint32_t)s.n_boxes, "dump boxes");
    idoc_sample_free(&s);
  }
  idoc_json_free(doc);

  // show: a PNG of the image size; untouched where both maps are 0 and no box is drawn, changed
  // where the maps are set, box corners in the box colour.
  char png[256];
  snprintf(png, sizeof png, "%s/show.png", dir);
  int shown = 0;
  for (size_t idx = 0; B && idx < 6 && !shown; idx++) {
    idoc_sample s;
    idoc_dataset_read(B, idx, true, &s);
    if (s.n_boxes == 0) {
      idoc_sample_free(&s);
      continue;
    }
    shown = 1;
    char is[16];
    snprintf(is, sizeof is, "%zu", idx);
    const char *as[] = {"data", "show", q, is, "--out", png};
    T_CHECK(run_captured(6, as, out) == 0, "show");
    idoc_image im = {0};
    T_CHECK(idoc_image_load(png, &im) == 0, "%s", idoc_last_error());
    T_CHECK(im.h == 64 && im.w == 64, "PNG is %dx%d", im.h, im.w);
    if (im.rgb && im.h == 64 && im.w == 64) {
      uint8_t *onbox = idoc_xcalloc(64 * 64, 1);
      for (int b = 0; b < s.n_boxes; b++) // every pixel a box outline may touch
        for (int y = (int)floorf(s.boxes[b][1] / 8) - 1; y <= (int)ceilf(s.boxes[b][3] / 8); y++)
          for (int x = (int)floorf(s.boxes[b][0] / 8) - 1; x <= (int)ceilf(s.boxes[b][2] / 8); x++)
            if (x >= 0 && y >= 0 && x < 64 && y < 64) onbox[y * 64 + x] = 1;
      long same_clear = 0, clear = 0, changed_marked = 0, marked = 0;
      for (int k = 0; k < 64 * 64; k++) {
        int diff = memcmp(im.rgb + 3 * k, s.image + 3 * k, 3) != 0;
        if (!s.artifact_map[k] && !s.misalignment_map[k] && !onbox[k]) clear++, same_clear += !diff;
        if ((s.artifact_map[k] > 128 || s.misalignment_map[k] > 128) && !onbox[k])
          marked++, changed_marked += diff;
      }
      T_CHECK(clear > 0 && same_clear == clear, "%ld of %ld clear pixels unchanged", same_clear,
              clear);
      T_CHECK(marked == 0 || changed_marked == marked, "%ld of %ld marked pixels overlaid",
              changed_marked, marked);
      static const uint8_t yellow[3] = {255, 230, 0}, cyan[3] = {0, 255, 255};
      int b = s.n_boxes - 1; // drawn last, so nothing covers its corner
      int x = (int)floorf(s.boxes[b][0] / 8), y = (int)floorf(s.boxes[b][1] / 8);
      const uint8_t *want = s.box_kind[b] == IDOC_BOX_ARTIFACT ? yellow : cyan;
      T_CHECK(!memcmp(im.rgb + 3 * (y * 64 + x), want, 3), "box %d corner colour", b);
      free(onbox);
    }
    idoc_image_free(&im);
    idoc_sample_free(&s);
  }
  T_CHECK(shown, "a sample with boxes to show");
  idoc_dataset_close_reader(B);

  // Errors: exit codes, and no output for a failed command.
  char missing[256];
  snprintf(missing, sizeof missing, "%s/nope.h5", dir);
  const char *e1[] = {"data", "inspect", missing};
  T_CHECK(run_captured(3, e1, out) == 1, "inspect of a missing file");
  const char *e2[] = {"data", "show", q, "99", "--out", png};
  unlink(png);
  T_CHECK(run_captured(6, e2, out) == 1 && !idoc_file_exists(png), "show index out of range");
  const char *e3[] = {"data", "synth", "--train", "2"};
  T_CHECK(run_captured(4, e3, out) == 2, "synth without --out");
  const char *e4[] = {"data", "synth", "--out", d1, "--size", "8"};
  T_CHECK(run_captured(6, e4, out) == 2, "synth --size 8");
  const char *e5[] = {"data", "synth", "--out", d1, "--bogus", "1"};
  T_CHECK(run_captured(6, e5, out) == 2, "synth unknown option");

  // Clean up.
  const char *names[] = {"a/train.h5", "a/val.h5", "b/train.h5", "stdout.txt", "show.png"};
  for (size_t k = 0; k < sizeof names / sizeof *names; k++) {
    snprintf(p, sizeof p, "%s/%s", dir, names[k]);
    unlink(p);
  }
  rmdir(d1), rmdir(d2), rmdir(dir);
}
#endif

int main(void) {
  test_determinism();
  test_rules();
#if IDOC_HAVE_HDF5 && IDOC_HAVE_PNG
  test_cli();
#else
  T_SKIP("SKIP SKIP SKIP: idoc data synth/inspect/show not checked (built without HDF5 or PNG)");
#endif
  return t_summary("test_synth");
}
