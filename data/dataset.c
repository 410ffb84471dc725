// idoc-requires: hdf5
// The HDF5 dataset schema (see dataset.h and docs/data_format.md): writer and validating reader.
#include "data/dataset.h"

#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zlib.h>

#include "data/prompt_words.h"
#include "nn/util.h"

// HDF5 prints its error stack to stderr by default; we report our own messages instead. In the
// thread-safe library the setting is per thread, so every entry point calls this.
static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t h5_walk(unsigned n, const H5E_error2_t *e, void *data) {
  char *buf = data;
  if (!buf[0] && e->desc && e->desc[0]) snprintf(buf, 256, "%s", e->desc);
  return 0;
}
// The innermost HDF5 message (where the problem was detected, e.g. "inflate() failed"). Every
// HDF5 call clears the error stack, so a failure is noted at once, before any cleanup call, and
// the message built afterwards uses h5_noted().
static _Thread_local char t_h5err[256];
static void h5_note(void) {
  t_h5err[0] = 0;
  H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, h5_walk, t_h5err);
}
static const char *h5_noted(void) { return t_h5err[0] ? t_h5err : "no detail from HDF5"; }

static const char *const k_str_names[4] = {"prompt", "response", "word_labels", "source_id"};
static const char *const k_score_names[4] = {"alignment", "aesthetics", "plausibility", "overall"};

static hid_t str_type(void) {
  hid_t t = H5Tcopy(H5T_C_S1);
  H5Tset_size(t, H5T_VARIABLE);
  H5Tset_cset(t, H5T_CSET_UTF8);
  return t;
}

// ---- writer -----------------------------------------------------------------------------------
struct idoc_encoded_sample {
  void *chunk[3]; // image, artifact map, misalignment map (deflated, or raw at level 0)
  size_t size[3];
  uint8_t empty[2]; // artifact, misalignment map all zero
  idoc_sample meta; // pixel pointers NULL; strings owned
};

struct idoc_dataset_writer {
  char *path, *tmp;
  idoc_dataset_info info;
  char *source, *split;
  hid_t file, d[3];
  size_t n, extent;
  size_t cap;
  float *scores, *boxes, *rule_scores;
  size_t n_rule; // samples with rule scores (the table is written when all have them)
  uint8_t *box_kind, *map_empty, *response_kind;
  int32_t *n_boxes, *orig_size;
  char **str[4];
};

// Messages leave out the file and index: idoc_dataset_append and its callers add them.
static int check_sample(const idoc_dataset_info *info, const idoc_sample *s) {
  if (!s->image || !s->artifact_map || !s->misalignment_map)
    return idoc_set_error("image and both maps are required");
  if (s->img_h != info->img_h || s->img_w != info->img_w)
    return idoc_set_error("image is %dx%d, the file holds %dx%d", s->img_h, s->img_w, info->img_h,
                          info->img_w);
  if (s->map_h != info->map_h || s->map_w != info->map_w)
    return idoc_set_error("maps are %dx%d, the file holds %dx%d", s->map_h, s->map_w, info->map_h,
                          info->map_w);
  for (int k = 0; k < 4; k++)
    if (!(s->scores[k] >= 0 && s->scores[k] <= 1))
      return idoc_set_error("score %s = %g is outside [0, 1]", k_score_names[k], s->scores[k]);
  if (s->n_boxes < 0 || s->n_boxes > IDOC_DS_MAX_BOXES)
    return idoc_set_error("%d boxes (at most %d)", s->n_boxes, IDOC_DS_MAX_BOXES);
  for (int b = 0; b < s->n_boxes; b++)
    if (s->box_kind[b] > 1 || !isfinite(s->boxes[b][0]) || !isfinite(s->boxes[b][1]) ||
        !isfinite(s->boxes[b][2]) || !isfinite(s->boxes[b][3]))
      return idoc_set_error("box %d is invalid", b);
  if (s->response_kind < 0 || s->response_kind > 2)
    return idoc_set_error("response_kind %d unknown", s->response_kind);
  const char *strs[4] = {s->prompt, s->response, s->word_labels, s->source_id};
  for (int k = 0; k < 4; k++)
    if (strs[k] && !idoc_utf8_is_valid(strs[k], strlen(strs[k])))
      return idoc_set_error("%s is not valid UTF-8", k_str_names[k]);
  return IDOC_OK;
}

static void *deflate_chunk(const uint8_t *p, size_t n, int level, size_t *out_n) {
  if (level <= 0) {
    void *c = idoc_xmalloc(n);
    memcpy(c, p, n);
    *out_n = n;
    return c;
  }
  uLongf m = compressBound((uLong)n);
  void *c = idoc_xmalloc(m);
  IDOC_CHECK(compress2(c, &m, p, (uLong)n, level) == Z_OK, "zlib compress2 failed");
  *out_n = m;
  return c;
}

idoc_encoded_sample *idoc_dataset_encode(const idoc_dataset_info *info, const idoc_sample *s) {
  if (check_sample(info, s)) return NULL;
  idoc_encoded_sample *e = idoc_xcalloc(1, sizeof *e);
  size_t ni = (size_t)info->img_h * info->img_w * 3, nm = (size_t)info->map_h * info->map_w;
  e->chunk[0] = deflate_chunk(s->image, ni, info->compression, &e->size[0]);
  e->chunk[1] = deflate_chunk(s->artifact_map, nm, info->compression, &e->size[1]);
  e->chunk[2] = deflate_chunk(s->misalignment_map, nm, info->compression, &e->size[2]);
  e->meta = *s;
  e->meta.image = e->meta.artifact_map = e->meta.misalignment_map = NULL;
  uint8_t flags = 0;
  for (size_t i = 0; i < nm && flags != 3; i++) {
    if (s->artifact_map[i]) flags |= 1;
    if (s->misalignment_map[i]) flags |= 2;
  }
  e->meta.orig_h = s->orig_h > 0 ? s->orig_h : s->img_h;
  e->meta.orig_w = s->orig_w > 0 ? s->orig_w : s->img_w;
  e->empty[0] = !(flags & 1);
  e->empty[1] = !(flags & 2);
  e->meta.prompt = idoc_xstrdup(s->prompt ? s->prompt : "");
  e->meta.response = idoc_xstrdup(s->response ? s->response : "");
  e->meta.word_labels = idoc_xstrdup(s->word_labels ? s->word_labels : "");
  e->meta.source_id = idoc_xstrdup(s->source_id ? s->source_id : "");
  return e;
}

void idoc_encoded_sample_free(idoc_encoded_sample *e) {
  if (!e) return;
  for (int k = 0; k < 3; k++)
    free(e->chunk[k]);
  idoc_sample_free(&e->meta);
  free(e);
}

static hid_t create_pixels(hid_t file, const char *name, int rank, const hsize_t *inner,
                           int level) {
  hsize_t dims[4] = {0}, maxd[4] = {H5S_UNLIMITED}, chunk[4] = {1};
  for (int k = 1; k < rank; k++)
    dims[k] = maxd[k] = chunk[k] = inner[k - 1];
  hid_t sp = H5Screate_simple(rank, dims, maxd);
  hid_t pl = H5Pcreate(H5P_DATASET_CREATE);
  H5Pset_chunk(pl, rank, chunk);
  if (level > 0) H5Pset_deflate(pl, (unsigned)level);
  hid_t d = H5Dcreate2(file, name, H5T_STD_U8LE, sp, H5P_DEFAULT, pl, H5P_DEFAULT);
  if (d < 0) h5_note();
  H5Pclose(pl);
  H5Sclose(sp);
  return d;
}

idoc_dataset_writer *idoc_dataset_create(const char *path, const idoc_dataset_info *info) {
  h5_quiet();
  if (info->img_h < 1 || info->img_w < 1 || info->map_h < 1 || info->map_w < 1 ||
      info->compression < 0 || info->compression > 9) {
    idoc_set_error("%s: bad dataset geometry %dx%d / maps %dx%d / deflate %d", path, info->img_h,
                   info->img_w, info->map_h, info->map_w, info->compression);
    return NULL;
  }
  idoc_dataset_writer *w = idoc_xcalloc(1, sizeof *w);
  w->path = idoc_xstrdup(path);
  size_t n = strlen(path) + 32;
  w->tmp = idoc_xmalloc(n);
  snprintf(w->tmp, n, "%s.tmp.%ld", path, (long)getpid());
  w->info = *info;
  w->source = idoc_xstrdup(info->source ? info->source : "");
  w->split = idoc_xstrdup(info->split ? info->split : "");
  w->info.source = w->source;
  w->info.split = w->split;
  w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
  if (w->file < 0) {
    h5_note();
    idoc_set_error("%s: cannot create HDF5 file (%s)", w->tmp, h5_noted());
    free(w->path), free(w->tmp), free(w->source), free(w->split), free(w);
    return NULL;
  }
  hsize_t img[3] = {(hsize_t)info->img_h, (hsize_t)info->img_w, 3};
  hsize_t map[2] = {(hsize_t)info->map_h, (hsize_t)info->map_w};
  w->d[0] = create_pixels(w->file, "image", 4, img, info->compression);
  w->d[1] = create_pixels(w->file, "artifact_map", 3, map, info->compression);
  w->d[2] = create_pixels(w->file, "misalignment_map", 3, map, info->compression);
  if (w->d[0] < 0 || w->d[1] < 0 || w->d[2] < 0) {
    idoc_set_error("%s: cannot create datasets (%s)", w->tmp, h5_noted());
    idoc_dataset_abort(w);
    return NULL;
  }
  return w;
}

size_t idoc_dataset_writer_count(const idoc_dataset_writer *w) { return w->n; }

int idoc_dataset_append_encoded(idoc_dataset_writer *w, idoc_encoded_sample *e) {
  h5_quiet();
  if (!e) return IDOC_ERR;
  if (w->n == w->extent) { // grow in blocks; trimmed at close
    w->extent += 256;
    for (int k = 0; k < 3; k++) {
      hsize_t dims[4] = {w->extent, (hsize_t)(k ? w->info.map_h : w->info.img_h),
                         (hsize_t)(k ? w->info.map_w : w->info.img_w), 3};
      if (H5Dset_extent(w->d[k], dims) < 0) {
        h5_note();
        idoc_encoded_sample_free(e);
        return idoc_set_error("%s: cannot extend datasets (%s)", w->tmp, h5_noted());
      }
    }
  }
  for (int k = 0; k < 3; k++) {
    hsize_t off[4] = {w->n, 0, 0, 0};
    if (H5Dwrite_chunk(w->d[k], H5P_DEFAULT, 0, off, e->size[k], e->chunk[k]) < 0) {
      h5_note();
      idoc_encoded_sample_free(e);
      return idoc_set_error("%s: writing sample %zu failed (%s)", w->tmp, w->n, h5_noted());
    }
  }
  if (w->n == w->cap) {
    w->cap = w->cap ? 2 * w->cap : 256;
    w->scores = idoc_xrealloc(w->scores, w->cap * 4 * sizeof(float));
    w->rule_scores = idoc_xrealloc(w->rule_scores, w->cap * 4 * sizeof(float));
    w->boxes = idoc_xrealloc(w->boxes, w->cap * IDOC_DS_MAX_BOXES * 4 * sizeof(float));
    w->box_kind = idoc_xrealloc(w->box_kind, w->cap * IDOC_DS_MAX_BOXES);
    w->map_empty = idoc_xrealloc(w->map_empty, w->cap * 2);
    w->response_kind = idoc_xrealloc(w->response_kind, w->cap);
    w->n_boxes = idoc_xrealloc(w->n_boxes, w->cap * sizeof(int32_t));
    w->orig_size = idoc_xrealloc(w->orig_size, w->cap * 2 * sizeof(int32_t));
    for (int k = 0; k < 4; k++)
      w->str[k] = idoc_xrealloc(w->str[k], w->cap * sizeof(char *));
  }
  const idoc_sample *s = &e->meta;
  size_t i = w->n;
  memcpy(w->scores + 4 * i, s->scores, 4 * sizeof(float));
  memcpy(w->rule_scores + 4 * i, s->rule_scores, 4 * sizeof(float));
  w->n_rule += s->has_rule_scores != 0;
  float *b = w->boxes + i * IDOC_DS_MAX_BOXES * 4;
  uint8_t *bk = w->box_kind + i * IDOC_DS_MAX_BOXES;
  memset(b, 0, IDOC_DS_MAX_BOXES * 4 * sizeof(float));
  memset(bk, 0, IDOC_DS_MAX_BOXES);
  for (int j = 0; j < s->n_boxes; j++) {
    memcpy(b + 4 * j, s->boxes[j], 4 * sizeof(float));
    bk[j] = s->box_kind[j];
  }
  w->n_boxes[i] = s->n_boxes;
  w->map_empty[2 * i] = e->empty[0];
  w->map_empty[2 * i + 1] = e->empty[1];
  w->orig_size[2 * i] = s->orig_h;
  w->orig_size[2 * i + 1] = s->orig_w;
  w->response_kind[i] = (uint8_t)s->response_kind;
  w->str[0][i] = e->meta.prompt;
  w->str[1][i] = e->meta.response;
  w->str[2][i] = e->meta.word_labels;
  w->str[3][i] = e->meta.source_id;
  e->meta.prompt = e->meta.response = e->meta.word_labels = e->meta.source_id = NULL;
  idoc_encoded_sample_free(e);
  w->n++;
  return IDOC_OK;
}

int idoc_dataset_append(idoc_dataset_writer *w, const idoc_sample *s) {
  idoc_encoded_sample *e = idoc_dataset_encode(&w->info, s);
  if (!e) return idoc_wrap_error("%s: sample %zu", w->path, w->n);
  return idoc_dataset_append_encoded(w, e);
}

static int write_table(hid_t file, const char *name, hid_t type, int rank, const hsize_t *dims,
                       const void *data) {
  hid_t sp = H5Screate_simple(rank, dims, NULL);
  hid_t d = H5Dcreate2(file, name, type, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
  int ok = d >= 0 && (dims[0] == 0 || H5Dwrite(d, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0);
  if (!ok) h5_note();
  if (d >= 0) H5Dclose(d);
  H5Sclose(sp);
  return ok ? IDOC_OK : IDOC_ERR;
}

static int write_str_attr(hid_t obj, const char *name, const char *value) {
  hid_t t = str_type(), sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
  int ok = a >= 0 && H5Awrite(a, t, &value) >= 0;
  if (!ok) h5_note();
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  H5Tclose(t);
  return ok ? IDOC_OK : IDOC_ERR;
}

static int write_int_attr(hid_t obj, const char *name, int32_t v) {
  hid_t sp = H5Screate(H5S_SCALAR);
  hid_t a = H5Acreate2(obj, name, H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT);
  int ok = a >= 0 && H5Awrite(a, H5T_NATIVE_INT32, &v) >= 0;
  if (!ok) h5_note();
  if (a >= 0) H5Aclose(a);
  H5Sclose(sp);
  return ok ? IDOC_OK : IDOC_ERR;
}

static void writer_free(idoc_dataset_writer *w) {
  for (int k = 0; k < 4; k++) {
    for (size_t i = 0; i < w->n && w->str[k]; i++)
      free(w->str[k][i]);
    free(w->str[k]);
  }
  free(w->scores), free(w->rule_scores), free(w->boxes), free(w->box_kind), free(w->map_empty);
  free(w->response_kind), free(w->n_boxes), free(w->orig_size);
  free(w->path), free(w->tmp), free(w->source), free(w->split);
  free(w);
}

void idoc_dataset_abort(idoc_dataset_writer *w) {
  if (!w) return;
  h5_quiet();
  for (int k = 0; k < 3; k++)
    if (w->d[k] > 0) H5Dclose(w->d[k]);
  if (w->file > 0) H5Fclose(w->file);
  unlink(w->tmp);
  writer_free(w);
}

int idoc_dataset_close(idoc_dataset_writer *w) {
  h5_quiet();
  t_h5err[0] = 0;
  int rc = IDOC_OK;
  hsize_t n = w->n, K = IDOC_DS_MAX_BOXES;
  for (int k = 0; k < 3 && rc == IDOC_OK; k++) {
    hsize_t dims[4] = {n, (hsize_t)(k ? w->info.map_h : w->info.img_h),
                       (hsize_t)(k ? w->info.map_w : w->info.img_w), 3};
    if (H5Dset_extent(w->d[k], dims) < 0) {
      h5_note();
      rc = IDOC_ERR;
    }
  }
  hsize_t d1[1] = {n}, d2[2] = {n, 2}, d4[2] = {n, 4}, dk[2] = {n, K}, dk4[3] = {n, K, 4};
  if (rc == IDOC_OK)
    rc = write_table(w->file, "scores", H5T_IEEE_F32LE, 2, d4, w->scores) ||
         write_table(w->file, "boxes", H5T_IEEE_F32LE, 3, dk4, w->boxes) ||
         write_table(w->file, "box_kind", H5T_STD_U8LE, 2, dk, w->box_kind) ||
         write_table(w->file, "n_boxes", H5T_STD_I32LE, 1, d1, w->n_boxes) ||
         write_table(w->file, "map_empty", H5T_STD_U8LE, 2, d2, w->map_empty) ||
         write_table(w->file, "orig_size", H5T_STD_I32LE, 2, d2, w->orig_size) ||
         write_table(w->file, "response_kind", H5T_STD_U8LE, 1, d1, w->response_kind);
  if (rc == IDOC_OK && w->n > 0 && w->n_rule == w->n)
    rc = write_table(w->file, "rule_scores", H5T_IEEE_F32LE, 2, d4, w->rule_scores);
  // The tables above are written from the native layout into little-endian file types: on
  // x86/ARM (little endian) the memory and file types coincide.
  hid_t st = str_type();
  for (int k = 0; k < 4 && rc == IDOC_OK; k++)
    rc = write_table(w->file, k_str_names[k], st, 1, d1, w->str[k]);
  H5Tclose(st);
  if (rc == IDOC_OK) {
    hid_t root = H5Gopen2(w->file, "/", H5P_DEFAULT);
    rc = write_str_attr(root, "idoc_format", IDOC_DS_FORMAT) ||
         write_int_attr(root, "idoc_version", IDOC_DS_VERSION) ||
         write_str_attr(root, "source", w->source) || write_str_attr(root, "split", w->split) ||
         write_str_attr(root, "score_names", "alignment,aesthetics,plausibility,overall") ||
         write_int_attr(root, "box_frame", IDOC_DS_BOX_FRAME);
    H5Gclose(root);
  }
  for (int k = 0; k < 3; k++)
    if (H5Dclose(w->d[k]) < 0 && rc == IDOC_OK) {
      h5_note();
      rc = IDOC_ERR;
    }
  w->d[0] = w->d[1] = w->d[2] = 0;
  if (H5Fclose(w->file) < 0 && rc == IDOC_OK) {
    h5_note();
    rc = IDOC_ERR;
  }
  w->file = 0;
  if (rc != IDOC_OK) {
    idoc_set_error("%s: writing the dataset failed (%s)", w->tmp, h5_noted());
  } else {
    int fd = open(w->tmp, O_RDONLY);
    if (fd < 0 || fsync(fd) != 0) rc = idoc_set_error("%s: fsync failed", w->tmp);
    if (fd >= 0) close(fd);
    if (rc == IDOC_OK && rename(w->tmp, w->path) != 0)
      rc = idoc_set_error("%s: cannot rename into place", w->path);
  }
  if (rc != IDOC_OK) unlink(w->tmp);
  writer_free(w);
  return rc;
}

// ---- reader -----------------------------------------------------------------------------------
struct idoc_dataset {
  char *path;
  hid_t file, d[3];
  idoc_dataset_info info;
  char *source, *split;
  size_t n;
  float *scores, *boxes, *rule_scores; // rule_scores NULL when the file has none
  uint8_t *box_kind, *map_empty, *response_kind;
  int32_t *n_boxes, *orig_size;
  char **str[4]; // each string malloc'ed
};

void idoc_dataset_close_reader(idoc_dataset *ds) {
  if (!ds) return;
  h5_quiet();
  for (int k = 0; k < 3; k++)
    if (ds->d[k] > 0) H5Dclose(ds->d[k]);
  if (ds->file > 0) H5Fclose(ds->file);
  for (int k = 0; k < 4; k++) {
    for (size_t i = 0; i < ds->n && ds->str[k]; i++)
      free(ds->str[k][i]);
    free(ds->str[k]);
  }
  free(ds->scores), free(ds->rule_scores), free(ds->boxes), free(ds->box_kind);
  free(ds->map_empty), free(ds->response_kind), free(ds->n_boxes), free(ds->orig_size);
  free(ds->source), free(ds->split), free(ds->path);
  free(ds);
}

static int read_str_attr(idoc_dataset *ds, const char *name, char **out) {
  hid_t a = H5Aopen(ds->file, name, H5P_DEFAULT);
  if (a < 0) return idoc_set_error("%s: attribute /%s is missing", ds->path, name);
  hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
  int ok = H5Tget_class(ft) == H5T_STRING && H5Tis_variable_str(ft) > 0 &&
           H5Sget_simple_extent_npoints(sp) == 1;
  char *v = NULL;
  hid_t t = str_type();
  if (ok) ok = H5Aread(a, t, &v) >= 0 && v;
  if (ok) {
    *out = idoc_xstrdup(v);
    H5free_memory(v);
  }
  H5Tclose(t), H5Tclose(ft), H5Sclose(sp), H5Aclose(a);
  return ok ? IDOC_OK : idoc_set_error("%s: attribute /%s is not a string", ds->path, name);
}

static int read_int_attr(idoc_dataset *ds, const char *name, int32_t *out) {
  hid_t a = H5Aopen(ds->file, name, H5P_DEFAULT);
  if (a < 0) return idoc_set_error("%s: attribute /%s is missing", ds->path, name);
  hid_t ft = H5Aget_type(a), sp = H5Aget_space(a);
  int ok = H5Tget_class(ft) == H5T_INTEGER && H5Sget_simple_extent_npoints(sp) == 1 &&
           H5Aread(a, H5T_NATIVE_INT32, out) >= 0;
  H5Tclose(ft), H5Sclose(sp), H5Aclose(a);
  return ok ? IDOC_OK : idoc_set_error("%s: attribute /%s is not an integer", ds->path, name);
}

// Opens /name and checks its element type (class, size; for integers signedness) and shape
// (dims[k] < 0 takes any extent, then reports it).
static hid_t open_checked(idoc_dataset *ds, const char *name, H5T_class_t cls, size_t size,
                          int is_signed, int rank, long long *dims) {
  if (H5Lexists(ds->file, name, H5P_DEFAULT) <= 0) {
    idoc_set_error("%s: dataset /%s is missing", ds->path, name);
    return -1;
  }
  hid_t d = H5Dopen2(ds->file, name, H5P_DEFAULT);
  if (d < 0) {
    idoc_set_error("%s: dataset /%s cannot be opened", ds->path, name);
    return -1;
  }
  hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
  int ok = H5Tget_class(t) == cls;
  if (ok && cls == H5T_STRING)
    ok = H5Tis_variable_str(t) > 0;
  else if (ok)
    ok = H5Tget_size(t) == size;
  if (ok && cls == H5T_INTEGER) ok = (H5Tget_sign(t) == H5T_SGN_2) == (is_signed != 0);
  hsize_t got[8];
  int r = H5Sget_simple_extent_ndims(sp);
  if (ok && r != rank) ok = 0;
  if (ok) {
    H5Sget_simple_extent_dims(sp, got, NULL);
    for (int k = 0; k < rank; k++) {
      if (dims[k] >= 0 && (long long)got[k] != dims[k]) {
        idoc_set_error("%s: dataset /%s has extent %llu on axis %d, expected %lld", ds->path, name,
                       (unsigned long long)got[k], k, dims[k]);
        H5Tclose(t), H5Sclose(sp), H5Dclose(d);
        return -1;
      }
      dims[k] = (long long)got[k];
    }
  }
  H5Tclose(t), H5Sclose(sp);
  if (!ok) {
    H5Dclose(d);
    idoc_set_error("%s: dataset /%s has the wrong type or rank (schema: docs/data_format.md)",
                   ds->path, name);
    return -1;
  }
  return d;
}

static int read_table(idoc_dataset *ds, const char *name, H5T_class_t cls, size_t size,
                      int is_signed, hid_t mem, int rank, long long *dims, void **out) {
  hid_t d = open_checked(ds, name, cls, size, is_signed, rank, dims);
  if (d < 0) return IDOC_ERR;
  size_t count = 1;
  for (int k = 0; k < rank; k++)
    count *= (size_t)dims[k];
  *out = idoc_xcalloc(count ? count : 1, cls == H5T_STRING ? sizeof(char *) : size);
  int ok = count == 0 || H5Dread(d, mem, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) >= 0;
  if (!ok) h5_note();
  H5Dclose(d);
  if (!ok) {
    return idoc_set_error("%s: dataset /%s cannot be read (%s)", ds->path, name, h5_noted());
  }
  return IDOC_OK;
}

idoc_dataset *idoc_dataset_open(const char *path) {
  h5_quiet();
  if (!idoc_file_exists(path)) {
    idoc_set_error("%s: no such file", path);
    return NULL;
  }
  if (H5Fis_hdf5(path) <= 0) {
    idoc_set_error("%s: not an HDF5 file", path);
    return NULL;
  }
  idoc_dataset *ds = idoc_xcalloc(1, sizeof *ds);
  ds->path = idoc_xstrdup(path);
  ds->file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
  if (ds->file < 0) {
    h5_note();
    idoc_set_error("%s: cannot open HDF5 file (%s)", path, h5_noted());
    goto fail;
  }
  char *fmt = NULL;
  int32_t ver = 0, frame = 0;
  if (read_str_attr(ds, "idoc_format", &fmt)) goto fail;
  int bad = strcmp(fmt, IDOC_DS_FORMAT) != 0;
  free(fmt);
  if (bad) {
    idoc_set_error("%s: attribute /idoc_format is not \"%s\"", path, IDOC_DS_FORMAT);
    goto fail;
  }
  if (read_int_attr(ds, "idoc_version", &ver)) goto fail;
  if (ver != IDOC_DS_VERSION) {
    idoc_set_error("%s: dataset format version %d, this build reads version %d", path, ver,
                   IDOC_DS_VERSION);
    goto fail;
  }
  if (read_int_attr(ds, "box_frame", &frame)) goto fail;
  if (frame != IDOC_DS_BOX_FRAME) {
    idoc_set_error("%s: attribute /box_frame is %d, expected %d", path, frame, IDOC_DS_BOX_FRAME);
    goto fail;
  }
  if (read_str_attr(ds, "source", &ds->source) || read_str_attr(ds, "split", &ds->split)) goto fail;
  long long di[4] = {-1, -1, -1, 3}, dm[3] = {-1, -1, -1}, dm2[3] = {-1, -1, -1};
  ds->d[0] = open_checked(ds, "image", H5T_INTEGER, 1, 0, 4, di);
  if (ds->d[0] < 0) goto fail;
  dm[0] = dm2[0] = di[0];
  ds->d[1] = open_checked(ds, "artifact_map", H5T_INTEGER, 1, 0, 3, dm);
  if (ds->d[1] < 0) goto fail;
  dm2[1] = dm[1], dm2[2] = dm[2];
  ds->d[2] = open_checked(ds, "misalignment_map", H5T_INTEGER, 1, 0, 3, dm2);
  if (ds->d[2] < 0) goto fail;
  ds->n = (size_t)di[0];
  ds->info =
      (idoc_dataset_info){(int)di[1], (int)di[2], (int)dm[1], (int)dm[2], ds->source, ds->split, 0};
  long long n = (long long)ds->n, K = IDOC_DS_MAX_BOXES;
  long long s4[2] = {n, 4}, bx[3] = {n, K, 4}, bk[2] = {n, K}, n1[1] = {n}, n2[2] = {n, 2},
            o2[2] = {n, 2}, rk[1] = {n};
  if (read_table(ds, "scores", H5T_FLOAT, 4, 0, H5T_NATIVE_FLOAT, 2, s4, (void **)&ds->scores) ||
      read_table(ds, "boxes", H5T_FLOAT, 4, 0, H5T_NATIVE_FLOAT, 3, bx, (void **)&ds->boxes) ||
      read_table(ds, "box_kind", H5T_INTEGER, 1, 0, H5T_NATIVE_UINT8, 2, bk,
                 (void **)&ds->box_kind) ||
      read_table(ds, "n_boxes", H5T_INTEGER, 4, 1, H5T_NATIVE_INT32, 1, n1,
                 (void **)&ds->n_boxes) ||
      read_table(ds, "map_empty", H5T_INTEGER, 1, 0, H5T_NATIVE_UINT8, 2, n2,
                 (void **)&ds->map_empty) ||
      read_table(ds, "orig_size", H5T_INTEGER, 4, 1, H5T_NATIVE_INT32, 2, o2,
                 (void **)&ds->orig_size) ||
      read_table(ds, "response_kind", H5T_INTEGER, 1, 0, H5T_NATIVE_UINT8, 1, rk,
                 (void **)&ds->response_kind))
    goto fail;
  if (H5Lexists(ds->file, "rule_scores", H5P_DEFAULT) > 0 &&
      read_table(ds, "rule_scores", H5T_FLOAT, 4, 0, H5T_NATIVE_FLOAT, 2, s4,
                 (void **)&ds->rule_scores))
    goto fail;
  hid_t st = str_type();
  for (int k = 0; k < 4; k++) {
    long long d1[1] = {n};
    char **raw = NULL;
    if (read_table(ds, k_str_names[k], H5T_STRING, 0, 0, st, 1, d1, (void **)&raw)) {
      H5Tclose(st);
      goto fail;
    }
    ds->str[k] = idoc_xcalloc(ds->n ? ds->n : 1, sizeof(char *));
    for (size_t i = 0; i < ds->n; i++) {
      ds->str[k][i] = idoc_xstrdup(raw[i] ? raw[i] : "");
      if (raw[i]) H5free_memory(raw[i]);
    }
    free(raw);
  }
  H5Tclose(st);
  for (size_t i = 0; i < ds->n; i++) {
    for (int k = 0; k < 4; k++)
      if (!(ds->scores[4 * i + k] >= 0 && ds->scores[4 * i + k] <= 1)) {
        idoc_set_error("%s: sample %zu: /scores %s = %g is outside [0, 1]", path, i,
                       k_score_names[k], ds->scores[4 * i + k]);
        goto fail;
      }
    if (ds->n_boxes[i] < 0 || ds->n_boxes[i] > IDOC_DS_MAX_BOXES) {
      idoc_set_error("%s: sample %zu: /n_boxes = %d (0..%d)", path, i, ds->n_boxes[i],
                     IDOC_DS_MAX_BOXES);
      goto fail;
    }
    for (int b = 0; b < ds->n_boxes[i]; b++) {
      if (ds->box_kind[i * K + b] > 1) {
        idoc_set_error("%s: sample %zu: /box_kind[%d] = %d (0 or 1)", path, i, b,
                       ds->box_kind[i * K + b]);
        goto fail;
      }
      const float *bx = ds->boxes + (i * K + b) * 4;
      if (!isfinite(bx[0]) || !isfinite(bx[1]) || !isfinite(bx[2]) || !isfinite(bx[3])) {
        idoc_set_error("%s: sample %zu: /boxes[%d] is not finite", path, i, b);
        goto fail;
      }
    }
    if (ds->orig_size[2 * i] < 1 || ds->orig_size[2 * i + 1] < 1) {
      idoc_set_error("%s: sample %zu: /orig_size = [%d, %d] (sides must be >= 1)", path, i,
                     ds->orig_size[2 * i], ds->orig_size[2 * i + 1]);
      goto fail;
    }
    if (ds->response_kind[i] > 2) {
      idoc_set_error("%s: sample %zu: /response_kind = %d (0..2)", path, i, ds->response_kind[i]);
      goto fail;
    }
    for (int k = 0; k < 4; k++)
      if (!idoc_utf8_is_valid(ds->str[k][i], strlen(ds->str[k][i]))) {
        idoc_set_error("%s: sample %zu: /%s is not valid UTF-8", path, i, k_str_names[k]);
        goto fail;
      }
  }
  return ds;
fail:
  idoc_dataset_close_reader(ds);
  return NULL;
}

size_t idoc_dataset_len(const idoc_dataset *ds) { return ds->n; }
void idoc_dataset_get_info(const idoc_dataset *ds, idoc_dataset_info *info) { *info = ds->info; }
const char *idoc_dataset_path(const idoc_dataset *ds) { return ds->path; }
const float *idoc_dataset_scores(const idoc_dataset *ds, size_t i) { return ds->scores + 4 * i; }
const float *idoc_dataset_rule_scores(const idoc_dataset *ds, size_t i) {
  return ds->rule_scores ? ds->rule_scores + 4 * i : NULL;
}
const char *idoc_dataset_prompt(const idoc_dataset *ds, size_t i) { return ds->str[0][i]; }
int idoc_dataset_n_boxes(const idoc_dataset *ds, size_t i) { return ds->n_boxes[i]; }
bool idoc_dataset_map_empty(const idoc_dataset *ds, size_t i, int which) {
  return ds->map_empty[2 * i + (which ? 1 : 0)] != 0;
}
int idoc_dataset_response_kind(const idoc_dataset *ds, size_t i) { return ds->response_kind[i]; }

static int read_slab(idoc_dataset *ds, int k, size_t i, uint8_t *buf) {
  int rank = k ? 3 : 4;
  hsize_t off[4] = {i, 0, 0, 0};
  hsize_t cnt[4] = {1, (hsize_t)(k ? ds->info.map_h : ds->info.img_h),
                    (hsize_t)(k ? ds->info.map_w : ds->info.img_w), 3};
  hid_t fs = H5Dget_space(ds->d[k]);
  H5Sselect_hyperslab(fs, H5S_SELECT_SET, off, NULL, cnt, NULL);
  hid_t ms = H5Screate_simple(rank, cnt, NULL);
  herr_t e = H5Dread(ds->d[k], H5T_NATIVE_UINT8, ms, fs, H5P_DEFAULT, buf);
  if (e < 0) h5_note();
  H5Sclose(ms), H5Sclose(fs);
  if (e < 0) {
    static const char *const names[3] = {"image", "artifact_map", "misalignment_map"};
    return idoc_set_error("%s: sample %zu: /%s cannot be read (%s)", ds->path, i, names[k],
                          h5_noted());
  }
  return IDOC_OK;
}

int idoc_dataset_read(idoc_dataset *ds, size_t i, bool with_pixels, idoc_sample *out) {
  h5_quiet();
  memset(out, 0, sizeof *out);
  if (i >= ds->n)
    return idoc_set_error("%s: sample %zu out of range (%zu samples)", ds->path, i, ds->n);
  out->img_h = ds->info.img_h, out->img_w = ds->info.img_w;
  out->map_h = ds->info.map_h, out->map_w = ds->info.map_w;
  if (with_pixels) {
    out->image = idoc_xmalloc((size_t)out->img_h * out->img_w * 3);
    out->artifact_map = idoc_xmalloc((size_t)out->map_h * out->map_w);
    out->misalignment_map = idoc_xmalloc((size_t)out->map_h * out->map_w);
    if (read_slab(ds, 0, i, out->image) || read_slab(ds, 1, i, out->artifact_map) ||
        read_slab(ds, 2, i, out->misalignment_map)) {
      idoc_sample_free(out);
      return IDOC_ERR;
    }
  }
  memcpy(out->scores, ds->scores + 4 * i, sizeof out->scores);
  out->has_rule_scores = ds->rule_scores != NULL;
  if (ds->rule_scores) memcpy(out->rule_scores, ds->rule_scores + 4 * i, sizeof out->rule_scores);
  out->n_boxes = ds->n_boxes[i];
  memcpy(out->boxes, ds->boxes + i * IDOC_DS_MAX_BOXES * 4, sizeof out->boxes);
  memcpy(out->box_kind, ds->box_kind + i * IDOC_DS_MAX_BOXES, sizeof out->box_kind);
  out->orig_h = ds->orig_size[2 * i], out->orig_w = ds->orig_size[2 * i + 1];
  out->response_kind = ds->response_kind[i];
  out->prompt = idoc_xstrdup(ds->str[0][i]);
  out->response = idoc_xstrdup(ds->str[1][i]);
  out->word_labels = idoc_xstrdup(ds->str[2][i]);
  out->source_id = idoc_xstrdup(ds->str[3][i]);
  return IDOC_OK;
}
