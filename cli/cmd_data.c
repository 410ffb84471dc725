// idoc-requires: hdf5 png
// `idoc data synth|convert-richhf|inspect|show`: make, convert and look at HDF5 datasets.
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/commands.h"
#include "data/boxes.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/synth.h"
#include "data/tfrecord.h"
#include "nn/json.h"
#include "nn/util.h"
#if IDOC_HAVE_PROTOBUFC
#include "data/richhf.h"
#endif

static void usage(FILE *f) {
  fprintf(f,
          "usage: idoc data COMMAND ...\n\n"
          "  synth --out DIR [--train N] [--val N] [--test N] [--size PX] [--seed S]\n"
          "        [--compression 0-9] [--misalign-prob P] [--artifact-prob P] [--label-noise S]\n"
          "      write DIR/{train,val,test}.h5 with synthetic samples (defaults: 1000/100/100,\n"
          "      512 px, seed 1, deflate 1); sample i of a split depends only on (seed, split, i)\n"
          "  convert-richhf --tfrecord FILE --images DIR --captions FILE --out FILE.h5\n"
          "        [--cot FILE.json] [--size PX] [--split NAME] [--score-scale auto|unit|likert5]\n"
          "      convert one RichHF-18K TFRecord split (docs/data_format.md)\n"
          "  inspect FILE [--dump INDEX]\n"
          "      schema, counts and score histograms; --dump prints one sample as JSON\n"
          "  show FILE INDEX --out PNG [--alpha A]\n"
          "      the image with the artifact (red) and misalignment (blue) maps overlaid and the\n"
          "      boxes drawn (artifact yellow, misalignment cyan)\n");
}

static int parse_long(const char *s, long lo, long hi, const char *flag, long *out) {
  char *end;
  long v = strtol(s, &end, 10);
  if (!*s || *end || v < lo || v > hi) {
    fprintf(stderr, "idoc data: %s expects an integer in [%ld, %ld], got '%s'\n", flag, lo, hi, s);
    return -1;
  }
  *out = v;
  return 0;
}
static int parse_double(const char *s, const char *flag, double *out) {
  char *end;
  double v = strtod(s, &end);
  if (!*s || *end || !isfinite(v)) {
    fprintf(stderr, "idoc data: %s expects a number, got '%s'\n", flag, s);
    return -1;
  }
  *out = v;
  return 0;
}

// ---- synth ------------------------------------------------------------------------------------
static int synth_split(const char *dir, const char *name, int split, long n, uint64_t seed,
                       const idoc_synth_opts *so, int level) {
  char path[4096];
  idoc_sfmt(path, sizeof path, "%s/%s.h5", dir, name);
  idoc_dataset_info info = {so->size, so->size, so->size, so->size, "synthetic", name, level};
  idoc_dataset_writer *w = idoc_dataset_create(path, &info);
  if (!w) return -1;
  const long B = 64;
  idoc_encoded_sample **enc = idoc_xcalloc((size_t)B, sizeof *enc);
  double t0 = idoc_now(), last = t0;
  int rc = 0;
  // Errors are per thread (idoc_last_error), so a worker's message is copied out here.
  char err[2048] = "";
  for (long b0 = 0; b0 < n && !rc; b0 += B) {
    long nb = n - b0 < B ? n - b0 : B;
    int failed = 0;
#pragma omp parallel for schedule(dynamic, 1) reduction(| : failed)
    for (long i = 0; i < nb; i++) {
      idoc_sample s;
      int bad = idoc_synth_sample(so, seed, split, (uint64_t)(b0 + i), &s, NULL) != IDOC_OK;
      if (!bad) {
        enc[i] = idoc_dataset_encode(&info, &s);
        bad = !enc[i];
        idoc_sample_free(&s);
      }
      if (bad) {
        failed = 1;
#pragma omp critical(synth_err)
        if (!err[0])
          snprintf(err, sizeof err, "%s: sample %ld: %s", path, b0 + i, idoc_last_error());
      }
    }
    if (failed) {
      idoc_set_error("%s", err);
      rc = -1;
    }
    // In order; after a failure only frees (append_encoded frees its argument either way).
    for (long i = 0; i < nb; i++) {
      if (!rc && idoc_dataset_append_encoded(w, enc[i]))
        rc = -1;
      else if (rc)
        idoc_encoded_sample_free(enc[i]);
      enc[i] = NULL;
    }
    double now = idoc_now();
    if (now - last > 5 || b0 + nb == n) {
      fprintf(stderr, "  %s: %ld/%ld samples, %.1f samples/s\n", name, b0 + nb, n,
              (b0 + nb) / (now - t0));
      last = now;
    }
  }
  free(enc);
  if (rc) {
    fprintf(stderr, "idoc data synth: %s\n", idoc_last_error());
    idoc_dataset_abort(w);
    return -1;
  }
  if (idoc_dataset_close(w)) {
    fprintf(stderr, "idoc data synth: %s\n", idoc_last_error());
    return -1;
  }
  double dt = idoc_now() - t0;
  FILE *f = fopen(path, "rb");
  long size = 0;
  if (f) {
    fseek(f, 0, SEEK_END);
    size = ftell(f);
    fclose(f);
  }
  printf("%s: %ld samples of %dx%d in %.1f s (%.1f samples/s, %d threads), %.1f MB\n", path, n,
         so->size, so->size, dt, n / (dt > 0 ? dt : 1), omp_get_max_threads(), size / 1e6);
  return 0;
}

static int cmd_synth(int argc, char **argv) {
  const char *out = NULL;
  long n[3] = {1000, 100, 100}, size = 512, level = 1, seed = 1;
  idoc_synth_opts so = idoc_synth_opts_default();
  for (int i = 1; i < argc; i += 2) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    }
    if (!v) {
      fprintf(stderr, "idoc data synth: %s needs a value (or is unknown)\n", a);
      return 2;
    }
    int bad = 0;
    if (!strcmp(a, "--out"))
      out = v;
    else if (!strcmp(a, "--train"))
      bad = parse_long(v, 0, 100000000, a, &n[0]);
    else if (!strcmp(a, "--val"))
      bad = parse_long(v, 0, 100000000, a, &n[1]);
    else if (!strcmp(a, "--test"))
      bad = parse_long(v, 0, 100000000, a, &n[2]);
    else if (!strcmp(a, "--size"))
      bad = parse_long(v, 16, 4096, a, &size);
    else if (!strcmp(a, "--seed"))
      bad = parse_long(v, 0, 0x7fffffffffffffffL, a, &seed);
    else if (!strcmp(a, "--compression"))
      bad = parse_long(v, 0, 9, a, &level);
    else if (!strcmp(a, "--misalign-prob"))
      bad = parse_double(v, a, &so.misalign_prob);
    else if (!strcmp(a, "--artifact-prob"))
      bad = parse_double(v, a, &so.artifact_prob);
    else if (!strcmp(a, "--label-noise"))
      bad = parse_double(v, a, &so.label_noise);
    else {
      fprintf(stderr, "idoc data synth: unknown option %s\n", a);
      return 2;
    }
    if (bad) return 2;
  }
  if (!out) {
    fprintf(stderr, "idoc data synth: --out DIR is required\n");
    return 2;
  }
  so.size = (int)size;
  idoc_sample probe;
  if (idoc_synth_sample(&so, (uint64_t)seed, 0, 0, &probe, NULL)) {
    fprintf(stderr, "idoc data synth: %s\n", idoc_last_error());
    return 2;
  }
  idoc_sample_free(&probe);
  if (idoc_mkdir_p(out)) {
    fprintf(stderr, "idoc data synth: %s\n", idoc_last_error());
    return 1;
  }
  static const char *const names[3] = {"train", "val", "test"};
  for (int s = 0; s < 3; s++)
    if (n[s] && synth_split(out, names[s], s, n[s], (uint64_t)seed, &so, (int)level)) return 1;
  return 0;
}

// ---- inspect ----------------------------------------------------------------------------------
static void dump_sample(idoc_dataset *ds, const idoc_sample *s, long index) {
  idoc_json_buf b = {0};
  idoc_json_buf_printf(&b, "{\"index\": %ld, \"prompt\": ", index);
  idoc_json_buf_string(&b, s->prompt, strlen(s->prompt));
  idoc_json_buf_puts(&b, ", \"response\": ");
  idoc_json_buf_string(&b, s->response, strlen(s->response));
  idoc_json_buf_puts(&b, ", \"word_labels\": ");
  idoc_json_buf_string(&b, s->word_labels, strlen(s->word_labels));
  idoc_json_buf_puts(&b, ", \"source_id\": ");
  idoc_json_buf_string(&b, s->source_id, strlen(s->source_id));
  idoc_json_buf_printf(&b, ", \"scores\": [%.9g, %.9g, %.9g, %.9g], \"boxes\": [", s->scores[0],
                       s->scores[1], s->scores[2], s->scores[3]);
  for (int i = 0; i < s->n_boxes; i++)
    idoc_json_buf_printf(&b, "%s[%.9g, %.9g, %.9g, %.9g]", i ? ", " : "", s->boxes[i][0],
                         s->boxes[i][1], s->boxes[i][2], s->boxes[i][3]);
  idoc_json_buf_puts(&b, "], \"box_kind\": [");
  for (int i = 0; i < s->n_boxes; i++)
    idoc_json_buf_printf(&b, "%s%d", i ? ", " : "", s->box_kind[i]);
  size_t ni = (size_t)s->img_h * s->img_w * 3, nm = (size_t)s->map_h * s->map_w;
  idoc_json_buf_printf(&b,
                       "], \"response_kind\": %d, \"orig_size\": [%d, %d], \"image_crc32c\": %u, "
                       "\"artifact_map_crc32c\": %u, \"misalignment_map_crc32c\": %u, "
                       "\"map_empty\": [%d, %d]}",
                       s->response_kind, s->orig_h, s->orig_w, idoc_crc32c(s->image, ni),
                       idoc_crc32c(s->artifact_map, nm), idoc_crc32c(s->misalignment_map, nm),
                       idoc_dataset_map_empty(ds, (size_t)index, 0),
                       idoc_dataset_map_empty(ds, (size_t)index, 1));
  printf("%s\n", b.data);
  idoc_json_buf_free(&b);
}

static int cmd_inspect(int argc, char **argv) {
  const char *path = NULL;
  long dump = -1;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--dump") && i + 1 < argc) {
      if (parse_long(argv[++i], 0, 0x7fffffffL, "--dump", &dump)) return 2;
    } else if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return 0;
    } else if (!path && argv[i][0] != '-') {
      path = argv[i];
    } else {
      fprintf(stderr, "idoc data inspect: unexpected argument %s\n", argv[i]);
      return 2;
    }
  }
  if (!path) {
    fprintf(stderr, "idoc data inspect: FILE is required\n");
    return 2;
  }
  idoc_dataset *ds = idoc_dataset_open(path);
  if (!ds) {
    fprintf(stderr, "idoc data inspect: %s\n", idoc_last_error());
    return 1;
  }
  size_t n = idoc_dataset_len(ds);
  if (dump >= 0) {
    idoc_sample s;
    int rc = idoc_dataset_read(ds, (size_t)dump, true, &s);
    if (rc)
      fprintf(stderr, "idoc data inspect: %s\n", idoc_last_error());
    else
      dump_sample(ds, &s, dump);
    idoc_sample_free(&s);
    idoc_dataset_close_reader(ds);
    return rc ? 1 : 0;
  }
  idoc_dataset_info in;
  idoc_dataset_get_info(ds, &in);
  printf("%s: %s v%d, source \"%s\", split \"%s\", %zu samples\n", path, IDOC_DS_FORMAT,
         IDOC_DS_VERSION, in.source, in.split, n);
  printf("  /image             uint8   [%zu, %d, %d, 3]\n", n, in.img_h, in.img_w);
  printf("  /artifact_map      uint8   [%zu, %d, %d]\n", n, in.map_h, in.map_w);
  printf("  /misalignment_map  uint8   [%zu, %d, %d]\n", n, in.map_h, in.map_w);
  printf("  /scores float32 [%zu, 4], /boxes float32 [%zu, %d, 4], /box_kind, /n_boxes, "
         "/map_empty, /orig_size, /response_kind, /prompt, /response, /word_labels, "
         "/source_id\n",
         n, n, IDOC_DS_MAX_BOXES);
  static const char *const sn[4] = {"alignment", "aesthetics", "plausibility", "overall"};
  for (int k = 0; k < 4; k++) {
    long h[10] = {0};
    double sum = 0, sq = 0;
    for (size_t i = 0; i < n; i++) {
      double v = idoc_dataset_scores(ds, i)[k];
      int bin = (int)(v * 10);
      h[bin > 9 ? 9 : bin]++;
      sum += v, sq += v * v;
    }
    double mean = n ? sum / n : 0, sd = n ? sqrt(fmax(0, sq / n - mean * mean)) : 0;
    printf("  %-13s mean %.3f sd %.3f |", sn[k], mean, sd);
    for (int b = 0; b < 10; b++)
      printf(" %ld", h[b]);
    printf(" | (bins of 0.1)\n");
  }
  long empty[2] = {0, 0}, kinds[3] = {0, 0, 0}, boxes[IDOC_DS_MAX_BOXES + 1] = {0}, labels = 0;
  for (size_t i = 0; i < n; i++) {
    empty[0] += idoc_dataset_map_empty(ds, i, 0);
    empty[1] += idoc_dataset_map_empty(ds, i, 1);
    kinds[idoc_dataset_response_kind(ds, i)]++;
    boxes[idoc_dataset_n_boxes(ds, i)]++;
  }
  idoc_sample s;
  for (size_t i = 0; i < n; i++)
    if (!idoc_dataset_read(ds, i, false, &s)) {
      labels += s.word_labels[0] != 0;
      idoc_sample_free(&s);
    }
  printf("  empty maps: artifact %ld, misalignment %ld of %zu\n", empty[0], empty[1], n);
  printf("  boxes per sample:");
  for (int b = 0; b <= IDOC_DS_MAX_BOXES; b++)
    printf(" %d:%ld", b, boxes[b]);
  printf("\n  responses: none %ld, built from labels %ld, external %ld; word labels: %ld\n",
         kinds[0], kinds[1], kinds[2], labels);
  idoc_dataset_close_reader(ds);
  return 0;
}

// ---- show -------------------------------------------------------------------------------------
static void draw_rect(uint8_t *img, int h, int w, int x1, int y1, int x2, int y2, const uint8_t *c,
                      int t) {
  for (int y = y1; y < y2; y++)
    for (int x = x1; x < x2; x++) {
      if (x < 0 || y < 0 || x >= w || y >= h) continue;
      if (x >= x1 + t && x < x2 - t && y >= y1 + t && y < y2 - t) continue;
      memcpy(img + ((size_t)y * w + x) * 3, c, 3);
    }
}

static int cmd_show(int argc, char **argv) {
  const char *path = NULL, *out = NULL;
  long index = -1;
  double alpha = 0.6;
  for (int i = 1; i < argc; i++) {
    if (!strcmp(argv[i], "--out") && i + 1 < argc)
      out = argv[++i];
    else if (!strcmp(argv[i], "--alpha") && i + 1 < argc) {
      if (parse_double(argv[++i], "--alpha", &alpha)) return 2;
      if (alpha < 0 || alpha > 1) {
        fprintf(stderr, "idoc data show: --alpha expects a number in [0, 1], got %g\n", alpha);
        return 2;
      }
    } else if (!path && argv[i][0] != '-')
      path = argv[i];
    else if (index < 0 && argv[i][0] != '-') {
      if (parse_long(argv[i], 0, 0x7fffffffL, "INDEX", &index)) return 2;
    } else {
      fprintf(stderr, "idoc data show: unexpected argument %s\n", argv[i]);
      return 2;
    }
  }
  if (!path || index < 0 || !out) {
    fprintf(stderr, "idoc data show: FILE INDEX --out PNG are required\n");
    return 2;
  }
  idoc_dataset *ds = idoc_dataset_open(path);
  if (!ds) {
    fprintf(stderr, "idoc data show: %s\n", idoc_last_error());
    return 1;
  }
  idoc_sample s;
  if (idoc_dataset_read(ds, (size_t)index, true, &s)) {
    fprintf(stderr, "idoc data show: %s\n", idoc_last_error());
    idoc_dataset_close_reader(ds);
    return 1;
  }
  int h = s.img_h, w = s.img_w;
  uint8_t *img = s.image;
  for (int y = 0; y < h; y++)
    for (int x = 0; x < w; x++) {
      size_t m = (size_t)(y * s.map_h / h) * s.map_w + (size_t)(x * s.map_w / w);
      double a = alpha * s.artifact_map[m] / 255.0, b = alpha * s.misalignment_map[m] / 255.0;
      uint8_t *p = img + ((size_t)y * w + x) * 3;
      p[0] = (uint8_t)lround(p[0] * (1 - a) + 255 * a);
      p[1] = (uint8_t)lround(p[1] * (1 - a));
      p[2] = (uint8_t)lround(p[2] * (1 - a));
      p[0] = (uint8_t)lround(p[0] * (1 - b));
      p[1] = (uint8_t)lround(p[1] * (1 - b) + 64 * b);
      p[2] = (uint8_t)lround(p[2] * (1 - b) + 255 * b);
    }
  static const uint8_t cyan[3] = {0, 255, 255}, yellow[3] = {255, 230, 0};
  int t = w / 256 + 1;
  for (int i = 0; i < s.n_boxes; i++) {
    double sx = (double)w / IDOC_DS_BOX_FRAME, sy = (double)h / IDOC_DS_BOX_FRAME;
    draw_rect(img, h, w, (int)floor(s.boxes[i][0] * sx), (int)floor(s.boxes[i][1] * sy),
              (int)ceil(s.boxes[i][2] * sx), (int)ceil(s.boxes[i][3] * sy),
              s.box_kind[i] == IDOC_BOX_ARTIFACT ? yellow : cyan, t);
  }
  int rc = idoc_image_write_png(out, img, h, w, 3);
  if (rc)
    fprintf(stderr, "idoc data show: %s\n", idoc_last_error());
  else {
    printf("%s: sample %ld -> %s\nprompt: %s\nscores: alignment %.3f aesthetics %.3f "
           "plausibility %.3f overall %.3f\nword labels: %s\nsource: %s\nresponse:\n%s\n",
           path, index, out, s.prompt, s.scores[0], s.scores[1], s.scores[2], s.scores[3],
           s.word_labels, s.source_id, s.response);
  }
  idoc_sample_free(&s);
  idoc_dataset_close_reader(ds);
  return rc ? 1 : 0;
}

int idoc_cmd_data(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return 2;
  }
  for (int i = 1; i < argc; i++) // `idoc data show --help` and the like: the usage of all four
    if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
      usage(stdout);
      return 0;
    }
  if (!strcmp(argv[1], "synth")) return cmd_synth(argc - 1, argv + 1);
  if (!strcmp(argv[1], "inspect")) return cmd_inspect(argc - 1, argv + 1);
  if (!strcmp(argv[1], "show")) return cmd_show(argc - 1, argv + 1);
  if (!strcmp(argv[1], "convert-richhf")) {
#if IDOC_HAVE_PROTOBUFC
    return idoc_cmd_convert_richhf(argc - 1, argv + 1);
#else
    fprintf(stderr, "idoc data convert-richhf: this build has no protobuf-c (libprotobuf-c-dev)\n");
    return 1;
#endif
  }
  fprintf(stderr, "idoc data: unknown command '%s'\n\n", argv[1]);
  usage(stderr);
  return 2;
}
