// idoc-requires: protobufc png hdf5
// RichHF-18K converter: TFRecord + tf.train.Example (protobuf-c) + Pick-a-Pic images + captions
// (+ ImageDoctor CoT) -> the HDF5 schema.
#include "data/richhf.h"

#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>

#include "data/boxes.h"
#include "data/dataset.h"
#include "data/image.h"
#include "data/imagedoctor_text.h"
#include "data/prompt_words.h"
#include "data/strmap.h"
#include "data/tf_example.pb-c.h"
#include "data/tfrecord.h"
#include "nn/json.h"
#include "nn/util.h"

#define MAP_SIDE 512

void idoc_richhf_record_free(idoc_richhf_record *r) {
  free(r->filename);
  free(r->artifact_png);
  free(r->misalignment_png);
  free(r->labels);
  memset(r, 0, sizeof *r);
}

static const Tensorflow__Feature *feature(const Tensorflow__Example *ex, const char *key) {
  if (!ex->features) return NULL;
  for (size_t i = 0; i < ex->features->n_feature; i++)
    if (ex->features->feature[i]->key && !strcmp(ex->features->feature[i]->key, key))
      return ex->features->feature[i]->value;
  return NULL;
}

static const char *kind_name(int k) {
  return k == TENSORFLOW__FEATURE__KIND_BYTES_LIST   ? "bytes_list"
         : k == TENSORFLOW__FEATURE__KIND_FLOAT_LIST ? "float_list"
         : k == TENSORFLOW__FEATURE__KIND_INT64_LIST ? "int64_list"
                                                     : "empty";
}

static int get_float(const Tensorflow__Example *ex, const char *key, const char *where, float *v) {
  const Tensorflow__Feature *f = feature(ex, key);
  if (!f) return idoc_set_error("%s: feature '%s' is missing", where, key);
  if (f->kind_case != TENSORFLOW__FEATURE__KIND_FLOAT_LIST)
    return idoc_set_error("%s: feature '%s' is %s, expected float_list", where, key,
                          kind_name(f->kind_case));
  if (f->float_list->n_value != 1)
    return idoc_set_error("%s: feature '%s' has %zu values, expected 1", where, key,
                          f->float_list->n_value);
  *v = f->float_list->value[0];
  if (!isfinite(*v)) return idoc_set_error("%s: feature '%s' is not finite", where, key);
  return IDOC_OK;
}

static int get_bytes(const Tensorflow__Example *ex, const char *key, const char *where,
                     int allow_empty, uint8_t **out, size_t *len) {
  const Tensorflow__Feature *f = feature(ex, key);
  if (!f) return idoc_set_error("%s: feature '%s' is missing", where, key);
  if (f->kind_case != TENSORFLOW__FEATURE__KIND_BYTES_LIST)
    return idoc_set_error("%s: feature '%s' is %s, expected bytes_list", where, key,
                          kind_name(f->kind_case));
  size_t nv = f->bytes_list->n_value;
  if (nv > 1 || (nv == 0 && !allow_empty))
    return idoc_set_error("%s: feature '%s' has %zu values, expected 1", where, key, nv);
  size_t n = nv ? f->bytes_list->value[0].len : 0;
  *out = idoc_xmalloc(n + 1);
  if (n) memcpy(*out, f->bytes_list->value[0].data, n);
  (*out)[n] = 0;
  *len = n;
  return IDOC_OK;
}

int idoc_richhf_parse(const uint8_t *buf, size_t n, const char *where, idoc_richhf_record *rec) {
  memset(rec, 0, sizeof *rec);
  Tensorflow__Example *ex = tensorflow__example__unpack(NULL, n, buf);
  if (!ex) return idoc_set_error("%s: not a valid tf.train.Example protobuf", where);
  size_t len;
  int rc = get_bytes(ex, "filename", where, 0, (uint8_t **)&rec->filename, &len) ||
           get_float(ex, "misalignment_score", where, &rec->scores[0]) ||
           get_float(ex, "aesthetics_score", where, &rec->scores[1]) ||
           get_float(ex, "artifact_score", where, &rec->scores[2]) ||
           get_float(ex, "overall_score", where, &rec->scores[3]) ||
           get_bytes(ex, "artifact_map", where, 0, &rec->artifact_png, &rec->artifact_png_len) ||
           get_bytes(ex, "misalignment_map", where, 0, &rec->misalignment_png,
                     &rec->misalignment_png_len) ||
           get_bytes(ex, "prompt_misalignment_label", where, 1, (uint8_t **)&rec->labels, &len);
  tensorflow__example__free_unpacked(ex, NULL);
  if (!rc &&
      (strlen(rec->filename) == 0 || !idoc_utf8_is_valid(rec->filename, strlen(rec->filename))))
    rc = idoc_set_error("%s: feature 'filename' is empty or not UTF-8", where);
  if (!rc && idoc_parse_word_labels(rec->labels, NULL, 0) < 0)
    rc = idoc_set_error("%s: feature 'prompt_misalignment_label' is not a list of 0/1: \"%.60s\"",
                        where, rec->labels);
  if (rc) idoc_richhf_record_free(rec);
  return rc ? IDOC_ERR : IDOC_OK;
}

// "train/1140cc3a-....png" -> "1140cc3a-..." (malloc'ed).
static char *uid_of(const char *path) {
  const char *b = strrchr(path, '/');
  b = b ? b + 1 : path;
  const char *dot = strrchr(b, '.');
  size_t n = dot && dot > b ? (size_t)(dot - b) : strlen(b);
  char *u = idoc_xmalloc(n + 1);
  memcpy(u, b, n);
  u[n] = 0;
  return u;
}

// A table uid -> text.
typedef struct {
  idoc_strmap map;
  char **text;
  size_t n, cap;
} text_table;

static void table_put(text_table *t, const char *uid, const char *text) {
  int32_t old = idoc_strmap_get(&t->map, uid, strlen(uid));
  if (old >= 0) {
    free(t->text[old]);
    t->text[old] = idoc_xstrdup(text);
    return;
  }
  if (t->n == t->cap) {
    t->cap = t->cap ? 2 * t->cap : 64;
    t->text = idoc_xrealloc(t->text, t->cap * sizeof *t->text);
  }
  t->text[t->n] = idoc_xstrdup(text);
  idoc_strmap_put(&t->map, uid, strlen(uid), (int32_t)t->n++);
}
static const char *table_get(const text_table *t, const char *uid) {
  int32_t i = idoc_strmap_get(&t->map, uid, strlen(uid));
  return i >= 0 ? t->text[i] : NULL;
}
static void table_free(text_table *t) {
  for (size_t i = 0; i < t->n; i++)
    free(t->text[i]);
  free(t->text);
  idoc_strmap_free(&t->map);
}

// Calls fn on each JSON value of a file that is either one JSON array or JSON lines.
typedef int (*json_fn)(const idoc_json *v, const char *where, void *ctx);
static int each_json(const char *path, json_fn fn, void *ctx) {
  char *data;
  size_t n;
  if (idoc_read_file(path, &data, &n)) return IDOC_ERR;
  size_t i = 0;
  while (i < n && (data[i] == ' ' || data[i] == '\n' || data[i] == '\r' || data[i] == '\t'))
    i++;
  int rc = IDOC_OK;
  char where[4200];
  if (i < n && data[i] == '[') {
    idoc_json_limits lim = {.max_nodes = 1u << 28};
    idoc_json_doc *doc = idoc_json_parse(data, n, path, &lim);
    if (!doc) rc = IDOC_ERR;
    const idoc_json *root = doc ? idoc_json_root(doc) : NULL;
    for (uint32_t k = 0; root && k < root->n && !rc; k++) {
      snprintf(where, sizeof where, "%s: element %u", path, k);
      rc = fn(&root->kids[k], where, ctx);
    }
    idoc_json_free(doc);
  } else {
    long line = 0;
    for (size_t b = 0; b < n && !rc;) {
      size_t e = b;
      while (e < n && data[e] != '\n')
        e++;
      line++;
      size_t s = b;
      while (s < e && (data[s] == ' ' || data[s] == '\r' || data[s] == '\t'))
        s++;
      if (s < e) {
        snprintf(where, sizeof where, "%s: line %ld", path, line);
        idoc_json_doc *doc = idoc_json_parse(data + b, e - b, where, NULL);
        if (!doc)
          rc = IDOC_ERR;
        else
          rc = fn(idoc_json_root(doc), where, ctx);
        idoc_json_free(doc);
      }
      b = e + 1;
    }
  }
  free(data);
  return rc;
}

// Captions: {"uid": U, "caption": C} or a Pick-a-Pic row {"image_0_uid", "image_1_uid", "caption"}.
static int caption_row(const idoc_json *v, const char *where, void *ctx) {
  text_table *t = ctx;
  const char *cap = idoc_json_string(idoc_json_get(v, "caption"));
  if (!cap) return idoc_set_error("%s: no string \"caption\"", where);
  const char *keys[3] = {"uid", "image_0_uid", "image_1_uid"};
  int found = 0;
  for (int k = 0; k < 3; k++) {
    const char *u = idoc_json_string(idoc_json_get(v, keys[k]));
    if (u) table_put(t, u, cap), found = 1;
  }
  return found ? IDOC_OK
               : idoc_set_error("%s: no \"uid\" / \"image_0_uid\" / \"image_1_uid\"", where);
}

// ImageDoctor CoT (ShareGPT / LLaMA-Factory style): the uid is the stem of the first image; the
// response is the last assistant turn ("from": "gpt"/"assistant", or "role": "assistant";
// without roles, the last turn).
static int cot_row(const idoc_json *v, const char *where, void *ctx) {
  text_table *t = ctx;
  const idoc_json *imgs = idoc_json_get(v, "images");
  if (!imgs) imgs = idoc_json_get(v, "image");
  const char *img = idoc_json_is(imgs, IDOC_JSON_ARRAY) ? idoc_json_string(idoc_json_at(imgs, 0))
                                                        : idoc_json_string(imgs);
  if (!img) return idoc_set_error("%s: no \"images\" list naming the image", where);
  const idoc_json *turns = idoc_json_get(v, "conversations");
  if (!turns) turns = idoc_json_get(v, "messages");
  if (!idoc_json_is(turns, IDOC_JSON_ARRAY) || turns->n == 0)
    return idoc_set_error("%s: no \"conversations\" / \"messages\" list", where);
  const char *resp = NULL;
  for (uint32_t k = 0; k < turns->n; k++) {
    const idoc_json *m = &turns->kids[k];
    const char *who = idoc_json_string(idoc_json_get(m, "from"));
    if (!who) who = idoc_json_string(idoc_json_get(m, "role"));
    const char *text = idoc_json_string(idoc_json_get(m, "value"));
    if (!text) text = idoc_json_string(idoc_json_get(m, "content"));
    if (!text) continue;
    if (!who || !strcmp(who, "gpt") || !strcmp(who, "assistant"))
      if (who || k == turns->n - 1) resp = text;
  }
  if (!resp) return idoc_set_error("%s: no assistant turn", where);
  char *uid = uid_of(img);
  table_put(t, uid, resp);
  free(uid);
  return IDOC_OK;
}

// Finds the Pick-a-Pic image for a RichHF filename; returns a malloc'ed path or NULL with the
// candidates tried in *tried.
static char *find_image(const char *dir, const char *filename, const char *uid, char *tried,
                        size_t tn) {
  static const char *const ext[3] = {"png", "jpg", "jpeg"};
  char cand[5][4200];
  const char *base = strrchr(filename, '/');
  snprintf(cand[0], sizeof cand[0], "%s/%s", dir, filename);
  for (int e = 0; e < 3; e++)
    snprintf(cand[1 + e], sizeof cand[1], "%s/%s.%s", dir, uid, ext[e]);
  snprintf(cand[4], sizeof cand[4], "%s/%s", dir, base ? base + 1 : filename);
  tried[0] = 0;
  for (int k = 0; k < 5; k++) {
    int dup = 0; // "DIR/uid.png" is both the by-uid and the by-basename candidate
    for (int j = 0; j < k && !dup; j++)
      dup = !strcmp(cand[j], cand[k]);
    if (dup) continue;
    if (idoc_file_exists(cand[k])) return idoc_xstrdup(cand[k]);
    size_t l = strlen(tried);
    snprintf(tried + l, tn - l, "%s%s", k ? ", " : "", cand[k]);
  }
  return NULL;
}

// A PNG heatmap to one 8-bit channel (gray, or PIL's "L" conversion of colour).
static int decode_map(const uint8_t *png, size_t n, const char *name, uint8_t **out) {
  idoc_image im;
  if (idoc_image_decode(png, n, name, &im)) return IDOC_ERR;
  if (im.h != MAP_SIDE || im.w != MAP_SIDE) {
    int h = im.h, w = im.w;
    idoc_image_free(&im);
    return idoc_set_error("%s is %dx%d, expected %dx%d", name, h, w, MAP_SIDE, MAP_SIDE);
  }
  size_t np = (size_t)im.h * im.w;
  *out = idoc_xmalloc(np);
  for (size_t i = 0; i < np; i++) {
    const uint8_t *p = im.rgb + 3 * i;
    (*out)[i] = (p[0] == p[1] && p[1] == p[2])
                    ? p[0]
                    : (uint8_t)((p[0] * 19595u + p[1] * 38470u + p[2] * 7471u + 0x8000u) >> 16);
  }
  idoc_image_free(&im);
  return IDOC_OK;
}

// The reference format built from the labels (when no CoT response is given).
static char *template_response(const idoc_sample *s, const char *prompt, const uint8_t *labels,
                               int nl) {
  idoc_json_buf why = {0};
  int nm = 0, na = 0;
  for (int i = 0; i < s->n_boxes; i++) {
    if (s->box_kind[i] == IDOC_BOX_MISALIGNMENT)
      nm++;
    else
      na++;
  }
  size_t st[256], ln[256];
  int nw = idoc_prompt_words(prompt, st, ln, 256), bad = 0;
  for (int i = 0; i < nl && i < nw && i < 256; i++)
    if (!labels[i]) {
      idoc_json_buf_printf(&why, "%s\"%.*s\"", bad ? ", " : "The caption words ", (int)ln[i],
                           prompt + st[i]);
      bad++;
    }
  if (bad)
    idoc_json_buf_printf(&why, " are not depicted faithfully");
  else
    idoc_json_buf_printf(&why, "The image follows the caption");
  if (nm) idoc_json_buf_printf(&why, nm > 1 ? " (regions 1-%d)" : " (region %d)", nm);
  idoc_json_buf_puts(&why, ". ");
  if (na == 1)
    idoc_json_buf_printf(&why, "Region %d shows an implausible artifact.", nm + 1);
  else if (na > 1)
    idoc_json_buf_printf(&why, "Regions %d-%d show implausible artifacts.", nm + 1, nm + na);
  else
    idoc_json_buf_puts(&why, "There are no visible artifacts.");
  double bx[IDOC_DS_MAX_BOXES][4];
  idoc_response r = {.n_boxes = (size_t)s->n_boxes, .reasoning = why.data};
  for (int i = 0; i < s->n_boxes; i++)
    for (int k = 0; k < 4; k++)
      bx[i][k] = s->boxes[i][k];
  r.boxes = (const double(*)[4])bx;
  for (int k = 0; k < 4; k++)
    r.scores[k] = round(s->scores[k] * 1e4) / 1e4;
  idoc_response_opts o = idoc_response_opts_default(2);
  char *text = idoc_build_response(&r, &o, NULL);
  idoc_json_buf_free(&why);
  return text;
}

static void skip(FILE *log, long *counter, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
static void skip(FILE *log, long *counter, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  fprintf(log, "skipped: ");
  vfprintf(log, fmt, ap);
  fprintf(log, "\n");
  va_end(ap);
  (*counter)++;
}

static int scale_ok(const float *sc, int scale) {
  for (int k = 0; k < 4; k++)
    if (scale == IDOC_SCALE_UNIT ? !(sc[k] >= 0 && sc[k] <= 1) : !(sc[k] >= 1 && sc[k] <= 5))
      return 0;
  return 1;
}

// Pass 1: framing and CRC of the whole file, and the score scale.
static int scan_scores(const idoc_richhf_opts *o, long *records, int *scale) {
  idoc_tfrecord_reader r;
  if (idoc_tfrecord_open(&r, o->tfrecord)) return IDOC_ERR;
  const uint8_t *d;
  size_t n;
  int rc, unit = 1, likert = 1, any_above1 = 0;
  long first_bad_unit = -1, first_bad_likert = -1;
  char where[4300];
  while ((rc = idoc_tfrecord_next(&r, &d, &n)) == 1) {
    long i = r.index - 1;
    snprintf(where, sizeof where, "%s: record %ld", o->tfrecord, i);
    idoc_richhf_record rec;
    if (idoc_richhf_parse(d, n, where, &rec)) continue; // reported in pass 2
    if (!scale_ok(rec.scores, IDOC_SCALE_UNIT) && first_bad_unit < 0) first_bad_unit = i, unit = 0;
    if (!scale_ok(rec.scores, IDOC_SCALE_LIKERT5) && first_bad_likert < 0)
      first_bad_likert = i, likert = 0;
    for (int k = 0; k < 4; k++)
      any_above1 |= rec.scores[k] > 1;
    idoc_richhf_record_free(&rec);
  }
  *records = r.index;
  idoc_tfrecord_close(&r);
  if (rc < 0) return IDOC_ERR;
  int want = o->score_scale;
  if (want == IDOC_SCALE_AUTO) want = unit ? IDOC_SCALE_UNIT : IDOC_SCALE_LIKERT5;
  if (want == IDOC_SCALE_UNIT && !unit)
    return idoc_set_error(
        "%s: record %ld has a score outside [0, 1]%s", o->tfrecord, first_bad_unit,
        likert && any_above1 ? " (the file looks 1-5: --score-scale likert5)" : "");
  if (want == IDOC_SCALE_LIKERT5 && !likert)
    return idoc_set_error("%s: record %ld has a score outside both [0, 1] and [1, 5]", o->tfrecord,
                          first_bad_likert);
  *scale = want;
  return IDOC_OK;
}

int idoc_richhf_convert(const idoc_richhf_opts *opts, idoc_richhf_stats *st) {
  idoc_richhf_opts o = *opts;
  memset(st, 0, sizeof *st);
  if (!o.tfrecord || !o.images_dir || !o.captions || !o.out)
    return idoc_set_error(
        "convert-richhf: --tfrecord, --images, --captions and --out are required");
  if (!o.size) o.size = 512;
  if (o.size < 16 || o.size > 4096) return idoc_set_error("convert-richhf: bad --size %d", o.size);
  FILE *log = o.log ? o.log : stderr;
  char *split = o.split ? idoc_xstrdup(o.split) : uid_of(o.tfrecord);
  text_table caps = {0}, cot = {0};
  idoc_strmap_init(&caps.map);
  idoc_strmap_init(&cot.map);
  idoc_dataset_writer *w = NULL;
  idoc_tfrecord_reader r = {0};
  int rc = IDOC_ERR;
  if (each_json(o.captions, caption_row, &caps)) goto done;
  if (o.cot && each_json(o.cot, cot_row, &cot)) goto done;
  long records;
  if (scan_scores(&o, &records, &st->scale)) goto done;
  idoc_dataset_info info = {o.size,
                            o.size,
                            MAP_SIDE,
                            MAP_SIDE,
                            "richhf-18k",
                            split,
                            o.compression < 0 ? 0 : (o.compression ? o.compression : 1)};
  if (!(w = idoc_dataset_create(o.out, &info))) goto done;
  if (idoc_tfrecord_open(&r, o.tfrecord)) goto done;
  const uint8_t *d;
  size_t n;
  int got;
  char where[4400], tried[22000];
  while ((got = idoc_tfrecord_next(&r, &d, &n)) == 1) {
    long i = r.index - 1;
    st->records++;
    snprintf(where, sizeof where, "%s: record %ld", o.tfrecord, i);
    idoc_richhf_record rec;
    if (idoc_richhf_parse(d, n, where, &rec)) {
      skip(log, &st->skipped_bad_record, "%s", idoc_last_error());
      continue;
    }
    snprintf(where, sizeof where, "%s: record %ld (%s)", o.tfrecord, i, rec.filename);
    char *uid = uid_of(rec.filename), *img_path = NULL;
    idoc_sample s = {0};
    uint8_t lab[1024];
    const char *caption = table_get(&caps, uid);
    int nl = idoc_parse_word_labels(rec.labels, lab, 1024), nw = 0;
    if (!caption) {
      skip(log, &st->skipped_no_caption, "%s: no caption for uid %s in %s", where, uid, o.captions);
      goto next;
    }
    nw = idoc_prompt_words(caption, NULL, NULL, 0);
    if (nl > 0 && nl != nw) {
      skip(log, &st->skipped_labels, "%s: %d word labels but the caption has %d words: \"%s\"",
           where, nl, nw, caption);
      goto next;
    }
    if (decode_map(rec.artifact_png, rec.artifact_png_len, "artifact_map", &s.artifact_map) ||
        decode_map(rec.misalignment_png, rec.misalignment_png_len, "misalignment_map",
                   &s.misalignment_map)) {
      skip(log, &st->skipped_bad_record, "%s: %s", where, idoc_last_error());
      goto next;
    }
    if (!(img_path = find_image(o.images_dir, rec.filename, uid, tried, sizeof tried))) {
      skip(log, &st->skipped_no_image, "%s: image not found (tried %s)", where, tried);
      goto next;
    }
    idoc_image im, rs;
    if (idoc_image_load(img_path, &im)) {
      skip(log, &st->skipped_bad_record, "%s: %s", where, idoc_last_error());
      goto next;
    }
    s.orig_h = im.h, s.orig_w = im.w;
    if (im.h != o.size || im.w != o.size) {
      if (idoc_image_resize(&im, o.size, o.size, IDOC_RESAMPLE_BICUBIC, &rs)) {
        idoc_image_free(&im);
        skip(log, &st->skipped_bad_record, "%s: %s", where, idoc_last_error());
        goto next;
      }
      idoc_image_free(&im);
      im = rs;
    }
    s.image = im.rgb;
    s.img_h = s.img_w = o.size;
    s.map_h = s.map_w = MAP_SIDE;
    for (int k = 0; k < 4; k++)
      s.scores[k] = st->scale == IDOC_SCALE_LIKERT5 ? (rec.scores[k] - 1) / 4 : rec.scores[k];
    idoc_box_opts bo = idoc_box_opts_default();
    idoc_flaw_box fb[IDOC_DS_MAX_BOXES];
    int nm =
        idoc_boxes_from_map(s.misalignment_map, MAP_SIDE, MAP_SIDE, &bo, fb, IDOC_DS_MAX_BOXES / 2);
    int na = idoc_boxes_from_map(s.artifact_map, MAP_SIDE, MAP_SIDE, &bo, fb + nm,
                                 IDOC_DS_MAX_BOXES - nm);
    for (int b = 0; b < nm + na; b++) {
      s.boxes[b][0] = fb[b].x1, s.boxes[b][1] = fb[b].y1;
      s.boxes[b][2] = fb[b].x2, s.boxes[b][3] = fb[b].y2;
      s.box_kind[b] = b < nm ? IDOC_BOX_MISALIGNMENT : IDOC_BOX_ARTIFACT;
    }
    s.n_boxes = nm + na;
    s.prompt = idoc_xstrdup(caption);
    s.word_labels = idoc_xstrdup(rec.labels);
    s.source_id = idoc_xstrdup(rec.filename);
    const char *ext = table_get(&cot, uid);
    if (ext) {
      s.response = idoc_xstrdup(ext);
      s.response_kind = IDOC_RESPONSE_EXTERNAL;
      st->with_cot++;
    } else {
      s.response = template_response(&s, caption, lab, nl);
      s.response_kind = IDOC_RESPONSE_TEMPLATE;
    }
    if (idoc_dataset_append(w, &s)) {
      idoc_wrap_error("%s", where);
      idoc_sample_free(&s);
      idoc_richhf_record_free(&rec);
      free(uid);
      free(img_path);
      goto done;
    }
    st->written++;
  next:
    idoc_sample_free(&s);
    idoc_richhf_record_free(&rec);
    free(uid);
    free(img_path);
  }
  if (got < 0) goto done;
  st->skipped =
      st->skipped_bad_record + st->skipped_labels + st->skipped_no_caption + st->skipped_no_image;
  if (st->written == 0) {
    idoc_set_error("%s: no record could be converted (%ld records, %ld skipped)", o.tfrecord,
                   st->records, st->skipped);
    goto done;
  }
  rc = idoc_dataset_close(w);
  w = NULL;
done:
  (void)records;
  if (w) idoc_dataset_abort(w);
  idoc_tfrecord_close(&r);
  table_free(&caps);
  table_free(&cot);
  free(split);
  return rc;
}

int idoc_cmd_convert_richhf(int argc, char **argv) {
  idoc_richhf_opts o = {.size = 512, .compression = 1};
  for (int i = 1; i < argc; i += 2) {
    const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      printf("usage: idoc data convert-richhf --tfrecord FILE --images DIR --captions FILE\n"
             "       --out FILE.h5 [--cot FILE.json] [--size PX] [--split NAME]\n"
             "       [--score-scale auto|unit|likert5] [--compression 0-9]\n"
             "See docs/data_format.md for the inputs.\n");
      return 0;
    }
    if (!v) {
      fprintf(stderr, "idoc data convert-richhf: %s needs a value (or is unknown)\n", a);
      return 2;
    }
    if (!strcmp(a, "--tfrecord"))
      o.tfrecord = v;
    else if (!strcmp(a, "--images"))
      o.images_dir = v;
    else if (!strcmp(a, "--captions"))
      o.captions = v;
    else if (!strcmp(a, "--cot"))
      o.cot = v;
    else if (!strcmp(a, "--out"))
      o.out = v;
    else if (!strcmp(a, "--split"))
      o.split = v;
    else if (!strcmp(a, "--size") || !strcmp(a, "--compression")) {
      int is_size = a[2] == 's';
      long hi = is_size ? 4096 : 9, lo = is_size ? 16 : 0;
      char *end;
      long x = strtol(v, &end, 10);
      if (!*v || *end || x < lo || x > hi) {
        fprintf(stderr, "idoc data convert-richhf: %s expects an integer in [%ld, %ld], got '%s'\n",
                a, lo, hi, v);
        return 2;
      }
      if (is_size)
        o.size = (int)x;
      else
        o.compression = x ? (int)x : -1; // the library reads 0 as "default"
    } else if (!strcmp(a, "--score-scale")) {
      if (!strcmp(v, "auto"))
        o.score_scale = IDOC_SCALE_AUTO;
      else if (!strcmp(v, "unit"))
        o.score_scale = IDOC_SCALE_UNIT;
      else if (!strcmp(v, "likert5"))
        o.score_scale = IDOC_SCALE_LIKERT5;
      else {
        fprintf(stderr, "idoc data convert-richhf: --score-scale is auto, unit or likert5\n");
        return 2;
      }
    } else {
      fprintf(stderr, "idoc data convert-richhf: unknown option %s\n", a);
      return 2;
    }
  }
  idoc_richhf_stats st;
  if (idoc_richhf_convert(&o, &st)) {
    fprintf(stderr, "idoc data convert-richhf: %s\n", idoc_last_error());
    return 1;
  }
  printf("%s: %ld records, %ld written (%ld with CoT), %ld skipped (no image %ld, no caption %ld, "
         "label count %ld, bad record %ld); scores %s\n",
         o.out, st.records, st.written, st.with_cot, st.skipped, st.skipped_no_image,
         st.skipped_no_caption, st.skipped_labels, st.skipped_bad_record,
         st.scale == IDOC_SCALE_LIKERT5 ? "mapped from 1-5 by (s-1)/4" : "in [0, 1] as stored");
  return 0;
}
