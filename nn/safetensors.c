// Safetensors single files: header validation, lookup, loading into tensors with conversion.
#include "nn/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/json.h"
#include "nn/safetensors_internal.h"

#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "safetensors data is little-endian; this reader assumes a little-endian host"
#endif

// Every dtype of the format with a whole-byte element size. Ones without an idoc_dtype are
// validated like the rest but cannot be loaded.
static const struct {
  const char *name;
  unsigned size;
  int dtype;
} st_dtypes[] = {
    {"F32", 4, IDOC_F32}, {"BF16", 2, IDOC_BF16}, {"F16", 2, IDOC_F16}, {"I32", 4, IDOC_I32},
    {"I64", 8, IDOC_I64}, {"U8", 1, IDOC_U8},     {"F64", 8, -1},       {"I8", 1, -1},
    {"I16", 2, -1},       {"U16", 2, -1},         {"U32", 4, -1},       {"U64", 8, -1},
    {"BOOL", 1, -1},      {"F8_E4M3", 1, -1},     {"F8_E5M2", 1, -1},   {"F8_E8M0", 1, -1},
    {"C64", 8, -1},
};
#define N_DTYPES (sizeof st_dtypes / sizeof st_dtypes[0])

const char *idoc_st_dtype_name(idoc_dtype dt) {
  for (size_t i = 0; i < N_DTYPES; i++)
    if (st_dtypes[i].dtype == (int)dt) return st_dtypes[i].name;
  return "?";
}

struct idoc_st_file {
  char *path;
  void *map; // owned mapping (idoc_st_open), else NULL
  size_t map_size;
  const unsigned char *bytes;
  size_t size;
  const unsigned char *data; // data section
  uint64_t data_size;
  idoc_json_doc *doc; // names and metadata strings live here
  idoc_st_tensor *t;
  int n;
  int64_t *dims;     // every tensor's shape, back to back
  const char **meta; // key, value pairs
  int n_meta;
};

const char *idoc_st_format_shape(const int64_t *shape, int ndim, char *buf, size_t n) {
  size_t k = (size_t)snprintf(buf, n, "[");
  for (int i = 0; i < ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%" PRId64, i ? ", " : "", shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]");
  return buf;
}

static int too_short(const char *what, size_t n) {
  return idoc_set_error("%s: file of %zu bytes is too short for a safetensors header (needs 8)",
                        what, n);
}

static int parse_metadata(idoc_st_file *f, const idoc_json *m) {
  if (m->type != IDOC_JSON_OBJECT)
    return idoc_set_error("%s: \"__metadata__\" is %s %s, expected an object of strings", f->path,
                          m->type == IDOC_JSON_ARRAY ? "an" : "a", idoc_json_type_name(m->type));
  f->meta = idoc_xcalloc(2 * (size_t)m->n + 1, sizeof *f->meta);
  for (uint32_t i = 0; i < m->n; i++) {
    const idoc_json *v = &m->kids[i];
    if (v->type != IDOC_JSON_STRING)
      return idoc_set_error("%s: \"__metadata__\" value \"%s\" is %s %s, expected a string",
                            f->path, v->key,
                            v->type == IDOC_JSON_ARRAY || v->type == IDOC_JSON_OBJECT ? "an" : "a",
                            idoc_json_type_name(v->type));
    f->meta[2 * i] = v->key;
    f->meta[2 * i + 1] = v->str;
  }
  f->n_meta = (int)m->n;
  return IDOC_OK;
}

// One header entry: dtype, shape, offsets, all checked against the data section.
static int parse_entry(idoc_st_file *f, const idoc_json *e, idoc_st_tensor *t, int64_t *dims) {
  const char *nm = e->key, *path = f->path;
  char sb[256];
  if (strlen(nm) != e->key_len)
    return idoc_set_error("%s: a tensor name contains a NUL character", path);
  t->name = nm;
  t->file = f->path;
  if (e->type != IDOC_JSON_OBJECT)
    return idoc_set_error("%s: tensor '%s': entry is %s %s, expected an object", path, nm,
                          e->type == IDOC_JSON_ARRAY ? "an" : "a", idoc_json_type_name(e->type));
  const char *dt = idoc_json_string(idoc_json_get(e, "dtype"));
  if (!dt) return idoc_set_error("%s: tensor '%s': missing or non-string \"dtype\"", path, nm);
  size_t k = 0;
  while (k < N_DTYPES && strcmp(st_dtypes[k].name, dt) != 0)
    k++;
  if (k == N_DTYPES) return idoc_set_error("%s: tensor '%s': unknown dtype \"%s\"", path, nm, dt);
  t->st_dtype = st_dtypes[k].name;
  t->dtype = st_dtypes[k].dtype;

  const idoc_json *sh = idoc_json_get(e, "shape");
  if (!idoc_json_is(sh, IDOC_JSON_ARRAY))
    return idoc_set_error("%s: tensor '%s': missing or non-array \"shape\"", path, nm);
  uint64_t numel = 1;
  bool overflow = false;
  for (uint32_t i = 0; i < sh->n; i++) {
    if (idoc_json_as_int64(&sh->kids[i], 0, INT64_MAX, &dims[i]))
      return idoc_wrap_error("%s: tensor '%s': shape[%u]", path, nm, i);
    uint64_t d = (uint64_t)dims[i];
    if (d && numel > (uint64_t)INT64_MAX / d)
      overflow = true;
    else
      numel *= d;
  }
  t->ndim = (int)sh->n;
  t->shape = dims;
  uint64_t es = st_dtypes[k].size;
  if (overflow || numel > UINT64_MAX / es)
    return idoc_set_error("%s: tensor '%s': shape %s has too many elements", path, nm,
                          idoc_st_format_shape(dims, t->ndim, sb, sizeof sb));
  t->numel = (int64_t)numel;
  uint64_t nbytes = numel * es;

  const idoc_json *off = idoc_json_get(e, "data_offsets");
  if (!idoc_json_is(off, IDOC_JSON_ARRAY) || off->n != 2)
    return idoc_set_error("%s: tensor '%s': \"data_offsets\" must be an array of two integers",
                          path, nm);
  int64_t be[2];
  for (int i = 0; i < 2; i++)
    if (idoc_json_as_int64(&off->kids[i], 0, INT64_MAX, &be[i]))
      return idoc_wrap_error("%s: tensor '%s': data_offsets[%d]", path, nm, i);
  t->begin = (uint64_t)be[0];
  t->end = (uint64_t)be[1];
  if (t->begin > t->end)
    return idoc_set_error("%s: tensor '%s': data_offsets begin %" PRIu64 " > end %" PRIu64, path,
                          nm, t->begin, t->end);
  if (t->end > f->data_size)
    return idoc_set_error("%s: tensor '%s': data_offsets end %" PRIu64
                          " past the data section (%" PRIu64 " bytes)",
                          path, nm, t->end, f->data_size);
  if (t->end - t->begin != nbytes)
    return idoc_set_error(
        "%s: tensor '%s': data_offsets span %" PRIu64 " bytes but %s %s needs %" PRIu64, path, nm,
        t->end - t->begin, t->st_dtype, idoc_st_format_shape(dims, t->ndim, sb, sizeof sb), nbytes);
  t->data = f->data + t->begin;
  return IDOC_OK;
}

static int by_name(const void *a, const void *b) {
  return strcmp(((const idoc_st_tensor *)a)->name, ((const idoc_st_tensor *)b)->name);
}
static int by_offset(const void *a, const void *b) {
  const idoc_st_tensor *x = *(const idoc_st_tensor *const *)a,
                       *y = *(const idoc_st_tensor *const *)b;
  if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
  return x->end < y->end ? -1 : x->end > y->end;
}

static int check_overlaps(idoc_st_file *f) {
  const idoc_st_tensor **o = idoc_xmalloc((size_t)f->n * sizeof *o + 1);
  for (int i = 0; i < f->n; i++)
    o[i] = &f->t[i];
  qsort(o, (size_t)f->n, sizeof *o, by_offset);
  const idoc_st_tensor *prev = NULL; // the non-empty tensor reaching furthest so far
  int rc = IDOC_OK;
  for (int i = 0; i < f->n && rc == IDOC_OK; i++) {
    if (o[i]->begin == o[i]->end) continue;
    if (prev && o[i]->begin < prev->end)
      rc = idoc_set_error(
          "%s: tensors '%s' [%" PRIu64 ", %" PRIu64 ") and '%s' [%" PRIu64 ", %" PRIu64 ") overlap",
          f->path, prev->name, prev->begin, prev->end, o[i]->name, o[i]->begin, o[i]->end);
    if (!prev || o[i]->end > prev->end) prev = o[i];
  }
  free(o);
  return rc;
}

static bool is_metadata(const idoc_json *e) {
  return e->key_len == 12 && memcmp(e->key, "__metadata__", 12) == 0;
}

static int parse_header(idoc_st_file *f) {
  if (f->size < 8) return too_short(f->path, f->size);
  uint64_t hn = 0;
  for (int i = 7; i >= 0; i--)
    hn = (hn << 8) | f->bytes[i];
  if (hn > IDOC_ST_MAX_HEADER)
    return idoc_set_error("%s: header length %" PRIu64 " exceeds the limit of %llu bytes", f->path,
                          hn, IDOC_ST_MAX_HEADER);
  if (hn > f->size - 8)
    return idoc_set_error("%s: header length %" PRIu64 " runs past the end of the file (%zu bytes)",
                          f->path, hn, f->size);
  f->data = f->bytes + 8 + hn;
  f->data_size = f->size - 8 - hn;
  f->doc = idoc_json_parse((const char *)f->bytes + 8, (size_t)hn, f->path, NULL);
  if (!f->doc) return IDOC_ERR;
  const idoc_json *root = idoc_json_root(f->doc);
  if (root->type != IDOC_JSON_OBJECT)
    return idoc_set_error("%s: header is a JSON %s, expected an object", f->path,
                          idoc_json_type_name(root->type));
  size_t ndims = 0, nt = 0;
  for (uint32_t i = 0; i < root->n; i++) {
    const idoc_json *e = &root->kids[i];
    if (is_metadata(e)) continue;
    nt++;
    const idoc_json *sh = idoc_json_get(e, "shape");
    if (idoc_json_is(sh, IDOC_JSON_ARRAY)) ndims += sh->n;
  }
  f->t = idoc_xcalloc(nt + 1, sizeof *f->t);
  f->dims = idoc_xcalloc(ndims + 1, sizeof *f->dims);
  size_t di = 0;
  for (uint32_t i = 0; i < root->n; i++) {
    const idoc_json *e = &root->kids[i];
    if (is_metadata(e)) {
      if (parse_metadata(f, e)) return IDOC_ERR;
      continue;
    }
    if (parse_entry(f, e, &f->t[f->n], f->dims + di)) return IDOC_ERR;
    di += (size_t)f->t[f->n].ndim;
    f->n++;
  }
  qsort(f->t, (size_t)f->n, sizeof *f->t, by_name);
  return check_overlaps(f);
}

int idoc_st_parse(idoc_st_file **out, const void *bytes, size_t n, const char *what) {
  *out = NULL;
  idoc_st_file *f = idoc_xcalloc(1, sizeof *f);
  f->path = idoc_xstrdup(what ? what : "<safetensors>");
  f->bytes = bytes;
  f->size = n;
  if (parse_header(f)) {
    idoc_st_close(f);
    return IDOC_ERR;
  }
  *out = f;
  return IDOC_OK;
}

int idoc_st_open(idoc_st_file **out, const char *path) {
  *out = NULL;
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return idoc_set_error("%s: cannot open: %s", path, strerror(errno));
  struct stat st;
  if (fstat(fd, &st) != 0 || !S_ISREG(st.st_mode)) {
    close(fd);
    return idoc_set_error("%s: not a regular file", path);
  }
  size_t size = (size_t)st.st_size;
  if (size < 8) {
    close(fd);
    return too_short(path, size);
  }
  void *map = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
  int e = errno;
  close(fd);
  if (map == MAP_FAILED) return idoc_set_error("%s: mmap failed: %s", path, strerror(e));
  if (idoc_st_parse(out, map, size, path)) {
    munmap(map, size);
    return IDOC_ERR;
  }
  (*out)->map = map;
  (*out)->map_size = size;
  return IDOC_OK;
}

void idoc_st_close(idoc_st_file *f) {
  if (!f) return;
  if (f->map) munmap(f->map, f->map_size);
  idoc_json_free(f->doc);
  free(f->t);
  free(f->dims);
  free(f->meta);
  free(f->path);
  free(f);
}

int idoc_st_count(const idoc_st_file *f) { return f->n; }
const idoc_st_tensor *idoc_st_tensor_at(const idoc_st_file *f, int i) {
  return i >= 0 && i < f->n ? &f->t[i] : NULL;
}
const idoc_st_tensor *idoc_st_find(const idoc_st_file *f, const char *name) {
  idoc_st_tensor key = {.name = name};
  return bsearch(&key, f->t, (size_t)f->n, sizeof *f->t, by_name);
}
int idoc_st_metadata_count(const idoc_st_file *f) { return f->n_meta; }
void idoc_st_metadata_at(const idoc_st_file *f, int i, const char **key, const char **value) {
  IDOC_CHECK(i >= 0 && i < f->n_meta, "metadata index %d out of range", i);
  *key = f->meta[2 * i];
  *value = f->meta[2 * i + 1];
}
const char *idoc_st_metadata(const idoc_st_file *f, const char *key) {
  for (int i = 0; i < f->n_meta; i++)
    if (strcmp(f->meta[2 * i], key) == 0) return f->meta[2 * i + 1];
  return NULL;
}

// ---- loading ----------------------------------------------------------------------------------
static bool is_float(int dt) { return dt == IDOC_F32 || dt == IDOC_BF16 || dt == IDOC_F16; }

// Float elements between F32/BF16/F16 on the host; src may be unaligned.
void idoc_st_convert_floats(void *dst, int ddt, const void *src, int sdt, int64_t n) {
  const unsigned char *s = src;
  unsigned char *d = dst;
  size_t ss = idoc_dtype_size((idoc_dtype)sdt), ds = idoc_dtype_size((idoc_dtype)ddt);
  for (int64_t i = 0; i < n; i++, s += ss, d += ds) {
    float x;
    uint16_t h;
    if (sdt == IDOC_F32) {
      memcpy(&x, s, 4);
    } else {
      memcpy(&h, s, 2);
      x = sdt == IDOC_BF16 ? idoc_bf16_to_f32(h) : idoc_f16_to_f32(h);
    }
    if (ddt == IDOC_F32) {
      memcpy(d, &x, 4);
    } else {
      h = ddt == IDOC_BF16 ? idoc_f32_to_bf16(x) : idoc_f32_to_f16(x);
      memcpy(d, &h, 2);
    }
  }
}

static int64_t read_int(const unsigned char *p, int dt) {
  int32_t i32;
  int64_t i64;
  switch (dt) {
  case IDOC_I32: memcpy(&i32, p, 4); return i32;
  case IDOC_I64: memcpy(&i64, p, 8); return i64;
  default: return *p; // U8
  }
}

// Integer elements between I32/I64/U8, failing on the first value the target cannot hold.
static int convert_ints(void *dst, int ddt, const idoc_st_tensor *t, int64_t from, int64_t n) {
  size_t ss = idoc_dtype_size((idoc_dtype)t->dtype), ds = idoc_dtype_size((idoc_dtype)ddt);
  const unsigned char *s = (const unsigned char *)t->data + (size_t)from * ss;
  unsigned char *d = dst;
  int64_t lo = ddt == IDOC_U8 ? 0 : ddt == IDOC_I32 ? INT32_MIN : INT64_MIN;
  int64_t hi = ddt == IDOC_U8 ? 255 : ddt == IDOC_I32 ? INT32_MAX : INT64_MAX;
  for (int64_t i = 0; i < n; i++, s += ss, d += ds) {
    int64_t v = read_int(s, t->dtype);
    if (v < lo || v > hi)
      return idoc_set_error("%s: tensor '%s': element %" PRId64 " = %" PRId64 " does not fit in %s",
                            t->file, t->name, from + i, v, idoc_dtype_name((idoc_dtype)ddt));
    if (ddt == IDOC_I32) {
      int32_t x = (int32_t)v;
      memcpy(d, &x, 4);
    } else if (ddt == IDOC_I64) {
      memcpy(d, &v, 8);
    } else {
      *d = (unsigned char)v;
    }
  }
  return IDOC_OK;
}

int idoc_st_load(const idoc_st_tensor *t, idoc_tensor *dst) {
  char b1[256], b2[256];
  idoc_progress_tick();
  if (t->dtype < 0)
    return idoc_set_error(
        "%s: tensor '%s': dtype %s is not supported (F32 BF16 F16 I32 I64 U8 are)", t->file,
        t->name, t->st_dtype);
  bool same = dst->ndim == t->ndim;
  for (int i = 0; same && i < t->ndim; i++)
    same = dst->shape[i] == t->shape[i];
  if (!same)
    return idoc_set_error("%s: tensor '%s': shape %s in the file, the model expects %s", t->file,
                          t->name, idoc_st_format_shape(t->shape, t->ndim, b1, sizeof b1),
                          idoc_st_format_shape(dst->shape, dst->ndim, b2, sizeof b2));
  int sdt = t->dtype, ddt = (int)dst->dtype;
  if (is_float(sdt) != is_float(ddt))
    return idoc_set_error("%s: tensor '%s': cannot convert %s to %s", t->file, t->name, t->st_dtype,
                          idoc_dtype_name(dst->dtype));
  if (t->numel == 0) return IDOC_OK;
  if (sdt == ddt) {
    idoc_tensor_from_host(dst, t->data);
    return IDOC_OK;
  }
  // Convert in chunks: straight into host memory, or through a bounded staging buffer.
  const int64_t chunk = (int64_t)1 << 20;
  size_t ds = idoc_dtype_size(dst->dtype), ss = idoc_dtype_size((idoc_dtype)sdt);
  bool host = dst->dev.kind == IDOC_CPU;
  void *stage = host ? NULL : idoc_xmalloc((size_t)chunk * ds);
  int rc = IDOC_OK;
  for (int64_t i = 0; i < t->numel && rc == IDOC_OK; i += chunk) {
    int64_t n = t->numel - i < chunk ? t->numel - i : chunk;
    void *out = host ? (char *)dst->data + (size_t)i * ds : stage;
    if (is_float(sdt))
      idoc_st_convert_floats(out, ddt, (const char *)t->data + (size_t)i * ss, sdt, n);
    else
      rc = convert_ints(out, ddt, t, i, n);
    if (!host && rc == IDOC_OK) {
      idoc_tensor v = *dst; // a 1-d view of this chunk, for the host-to-device copy
      v.data = (char *)dst->data + (size_t)i * ds;
      v.ndim = 1;
      v.shape[0] = n;
      idoc_tensor_from_host(&v, stage);
    }
  }
  free(stage);
  return rc;
}
