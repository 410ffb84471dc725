// Writing safetensors files and sharded Hugging Face checkpoints (model.safetensors, or
// model-0000k-of-0000n.safetensors + model.safetensors.index.json).
#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "nn/fs.h"
#include "nn/json.h"
#include "nn/safetensors_internal.h"
#include "nn/util.h"

typedef struct {
  const char *name;
  const idoc_tensor *t;
  idoc_dtype out; // dtype written
  uint64_t nbytes;
} witem;

static bool is_float(idoc_dtype dt) { return dt == IDOC_F32 || dt == IDOC_BF16 || dt == IDOC_F16; }

static int by_name(const void *a, const void *b) {
  return strcmp(((const witem *)a)->name, ((const witem *)b)->name);
}

// Resolves names and output dtypes, sorts by name, rejects empty/duplicate/reserved names.
static int prepare(const char *where, const idoc_st_item *items, int n, const idoc_st_save_opts *o,
                   witem **out) {
  witem *w = idoc_xcalloc((size_t)n + 1, sizeof *w);
  *out = w;
  for (int i = 0; i < n; i++) {
    const idoc_tensor *t = items[i].t;
    const char *nm = items[i].name ? items[i].name : t ? t->name : NULL;
    if (!t || !nm || !*nm) return idoc_set_error("%s: item %d has no tensor or no name", where, i);
    if (!idoc_json_utf8_valid(nm, strlen(nm)))
      return idoc_set_error("%s: tensor name #%d is not valid UTF-8", where, i);
    if (strcmp(nm, "__metadata__") == 0)
      return idoc_set_error("%s: \"__metadata__\" is reserved, not a tensor name", where);
    w[i].name = nm;
    w[i].t = t;
    w[i].out = t->dtype;
    if (o && o->dtype >= 0 && is_float(t->dtype)) {
      if (!is_float((idoc_dtype)o->dtype))
        return idoc_set_error("%s: can only convert float tensors to F32, BF16 or F16", where);
      w[i].out = (idoc_dtype)o->dtype;
    }
    w[i].nbytes = (uint64_t)idoc_numel(t) * idoc_dtype_size(w[i].out);
  }
  qsort(w, (size_t)n, sizeof *w, by_name);
  for (int i = 1; i < n; i++)
    if (strcmp(w[i - 1].name, w[i].name) == 0)
      return idoc_set_error("%s: tensor name '%s' given twice", where, w[i].name);
  return IDOC_OK;
}

static void header_json(idoc_json_buf *b, const witem *w, int n, const idoc_st_save_opts *o) {
  const char *const *meta = o ? o->metadata : NULL;
  bool own_format = false;
  for (int i = 0; meta && meta[i] && meta[i + 1]; i += 2)
    own_format |= !strcmp(meta[i], "format");
  idoc_json_buf_puts(b, "{\"__metadata__\":{");
  if (!own_format) idoc_json_buf_puts(b, "\"format\":\"pt\"");
  for (int i = 0; meta && meta[i] && meta[i + 1]; i += 2) {
    if (i || !own_format) idoc_json_buf_puts(b, ",");
    idoc_json_buf_string(b, meta[i], strlen(meta[i]));
    idoc_json_buf_puts(b, ":");
    idoc_json_buf_string(b, meta[i + 1], strlen(meta[i + 1]));
  }
  idoc_json_buf_puts(b, "}");
  uint64_t off = 0;
  for (int i = 0; i < n; i++) {
    idoc_json_buf_puts(b, ",");
    idoc_json_buf_string(b, w[i].name, strlen(w[i].name));
    idoc_json_buf_printf(b, ":{\"dtype\":\"%s\",\"shape\":[", idoc_st_dtype_name(w[i].out));
    for (int d = 0; d < w[i].t->ndim; d++)
      idoc_json_buf_printf(b, "%s%" PRId64, d ? "," : "", w[i].t->shape[d]);
    idoc_json_buf_printf(b, "],\"data_offsets\":[%" PRIu64 ",%" PRIu64 "]}", off,
                         off + w[i].nbytes);
    off += w[i].nbytes;
  }
  idoc_json_buf_puts(b, "}");
  while (b->len % 8)
    idoc_json_buf_puts(b, " "); // data starts 8-byte aligned
}

// Streams one tensor's data in chunks (device tensors are staged through host memory).
static bool write_data(FILE *f, const witem *w, const char *path) {
  const idoc_tensor *t = w->t;
  int64_t numel = idoc_numel(t);
  if (numel == 0) return true;
  if (t->dev.kind == IDOC_CPU && t->dtype == w->out)
    return idoc_fs_write(f, t->data, w->nbytes, path) == w->nbytes;
  const int64_t chunk = (int64_t)1 << 20;
  size_t ss = idoc_dtype_size(t->dtype), ds = idoc_dtype_size(w->out);
  void *src = idoc_xmalloc((size_t)chunk * ss), *dst = idoc_xmalloc((size_t)chunk * ds);
  bool ok = true;
  for (int64_t i = 0; i < numel && ok; i += chunk) {
    int64_t n = numel - i < chunk ? numel - i : chunk;
    idoc_tensor v = *t; // 1-d view of this chunk
    v.data = (char *)t->data + (size_t)i * ss;
    v.ndim = 1;
    v.shape[0] = n;
    idoc_tensor_to_host(&v, src);
    const void *out = src;
    if (t->dtype != w->out) {
      idoc_st_convert_floats(dst, (int)w->out, src, (int)t->dtype, n);
      out = dst;
    }
    ok = idoc_fs_write(f, out, (size_t)n * ds, path) == (size_t)n * ds;
  }
  free(src);
  free(dst);
  return ok;
}

static int write_items(const char *path, const witem *w, int n, const idoc_st_save_opts *o) {
  idoc_json_buf h = {0};
  header_json(&h, w, n, o);
  unsigned char len[8];
  for (int i = 0; i < 8; i++)
    len[i] = (unsigned char)((uint64_t)h.len >> (8 * i));
  idoc_atomic_file af;
  if (idoc_atomic_open(&af, path)) {
    idoc_json_buf_free(&h);
    return IDOC_ERR;
  }
  bool ok = idoc_fs_write(af.f, len, 8, af.tmp) == 8 &&
            idoc_fs_write(af.f, h.data, h.len, af.tmp) == h.len;
  for (int i = 0; i < n && ok; i++)
    ok = write_data(af.f, &w[i], af.tmp);
  idoc_json_buf_free(&h);
  if (!ok) {
    int e = errno;
    idoc_atomic_abort(&af);
    return idoc_set_error("%s: write failed: %s", path, strerror(e));
  }
  return idoc_atomic_commit(&af);
}

int idoc_st_write_file(const char *path, const idoc_st_item *items, int n,
                       const idoc_st_save_opts *opts) {
  witem *w;
  int rc = prepare(path, items, n, opts, &w);
  if (rc == IDOC_OK) rc = write_items(path, w, n, opts);
  free(w);
  return rc;
}

// "model-00001-of-00002.safetensors" with any digits.
static bool is_shard_name(const char *s) {
  const char *pat = "model-#####-of-#####.safetensors";
  if (strlen(s) != strlen(pat)) return false;
  for (size_t i = 0; pat[i]; i++)
    if (pat[i] == '#' ? !(s[i] >= '0' && s[i] <= '9') : s[i] != pat[i]) return false;
  return true;
}

static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = idoc_xmalloc(n);
  snprintf(p, n, "%s/%s", dir, name);
  return p;
}

// Removes the other layout's files: stale shards (those not of `keep_of` total), the index when
// unsharded, model.safetensors when sharded.
static int remove_stale(const char *dir, int keep_of) {
  char *p = join(dir, keep_of ? "model.safetensors" : "model.safetensors.index.json");
  int rc = IDOC_OK;
  if (idoc_fs_unlink(p) != 0 && errno != ENOENT)
    rc = idoc_set_error("%s: cannot remove stale file: %s", p, strerror(errno));
  free(p);
  DIR *d = opendir(dir);
  if (!d) return rc;
  char of[8];
  snprintf(of, sizeof of, "%05d", keep_of);
  for (struct dirent *e; (e = readdir(d));) {
    if (!is_shard_name(e->d_name) || (keep_of && memcmp(e->d_name + 15, of, 5) == 0)) continue;
    p = join(dir, e->d_name);
    if (idoc_fs_unlink(p) != 0 && errno != ENOENT && rc == IDOC_OK)
      rc = idoc_set_error("%s: cannot remove stale shard: %s", p, strerror(errno));
    free(p);
  }
  closedir(d);
  return rc;
}

static int write_index(const char *dir, const witem *w, int n, const int *shard_of, int n_shards,
                       uint64_t total) {
  idoc_json_buf b = {0};
  idoc_json_buf_printf(
      &b, "{\n  \"metadata\": {\n    \"total_size\": %" PRIu64 "\n  },\n  \"weight_map\": {",
      total);
  for (int i = 0; i < n; i++) {
    idoc_json_buf_puts(&b, i ? ",\n    " : "\n    ");
    idoc_json_buf_string(&b, w[i].name, strlen(w[i].name));
    idoc_json_buf_printf(&b, ": \"model-%05d-of-%05d.safetensors\"", shard_of[i] + 1, n_shards);
  }
  idoc_json_buf_puts(&b, "\n  }\n}\n");
  char *p = join(dir, "model.safetensors.index.json");
  int rc = idoc_write_file_atomic(p, b.data, b.len);
  free(p);
  idoc_json_buf_free(&b);
  return rc;
}

int idoc_st_save(const char *dir, const idoc_st_item *items, int n, const idoc_st_save_opts *opts) {
  if (idoc_mkdir_p(dir)) return IDOC_ERR;
  witem *w;
  if (prepare(dir, items, n, opts, &w)) {
    free(w);
    return IDOC_ERR;
  }
  // Greedy split in name order, as transformers does: a new shard when the next tensor would
  // push the current one past the limit.
  int *shard_of = idoc_xcalloc((size_t)n + 1, sizeof *shard_of), n_shards = 1;
  uint64_t cur = 0, total = 0, max = opts ? opts->max_shard_bytes : 0;
  for (int i = 0; i < n; i++) {
    if (max && cur > 0 && cur + w[i].nbytes > max) {
      n_shards++;
      cur = 0;
    }
    cur += w[i].nbytes;
    total += w[i].nbytes;
    shard_of[i] = n_shards - 1;
  }
  int rc = IDOC_OK;
  if (n_shards > 99999)
    rc = idoc_set_error("%s: %d shards is more than the naming allows", dir, n_shards);
  if (rc == IDOC_OK && n_shards == 1) {
    char *p = join(dir, "model.safetensors");
    rc = write_items(p, w, n, opts);
    free(p);
    if (rc == IDOC_OK) rc = remove_stale(dir, 0);
  } else if (rc == IDOC_OK) {
    // Shards first, the index (what loaders look for) last.
    for (int s = 0, i = 0; s < n_shards && rc == IDOC_OK; s++) {
      int j = i;
      while (j < n && shard_of[j] == s)
        j++;
      char name[64];
      snprintf(name, sizeof name, "model-%05d-of-%05d.safetensors", s + 1, n_shards);
      char *p = join(dir, name);
      rc = write_items(p, w + i, j - i, opts);
      free(p);
      i = j;
    }
    if (rc == IDOC_OK) rc = write_index(dir, w, n, shard_of, n_shards, total);
    if (rc == IDOC_OK) rc = remove_stale(dir, n_shards);
  }
  free(shard_of);
  free(w);
  return rc;
}
