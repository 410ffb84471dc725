// Checkpoints: a single safetensors file or a sharded Hugging Face directory with
// model.safetensors.index.json; tensor names normalised across the two Qwen2.5-VL schemes.
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "nn/json.h"
#include "nn/safetensors.h"
#include "nn/util.h"

#define INDEX_NAME "model.safetensors.index.json"
#define SINGLE_NAME "model.safetensors"

typedef struct {
  char *name; // normalised
  const idoc_st_tensor *t;
} ckpt_entry;

struct idoc_ckpt {
  char *path; // as given to idoc_ckpt_open, for messages
  idoc_st_file **files;
  int n_files;
  ckpt_entry *e; // sorted by normalised name
  int n;
};

char *idoc_ckpt_normalize_name(const char *name) {
  static const char *from[] = {"model.language_model.", "model.visual."};
  static const char *to[] = {"model.", "visual."};
  for (int i = 0; i < 2; i++) {
    size_t l = strlen(from[i]);
    if (strncmp(name, from[i], l) == 0) {
      size_t tl = strlen(to[i]), rest = strlen(name + l);
      char *out = idoc_xmalloc(tl + rest + 1);
      memcpy(out, to[i], tl);
      memcpy(out + tl, name + l, rest + 1);
      return out;
    }
  }
  return idoc_xstrdup(name);
}

static char *join(const char *dir, const char *name) {
  size_t n = strlen(dir) + strlen(name) + 2;
  char *p = idoc_xmalloc(n);
  snprintf(p, n, "%s/%s", dir, name);
  return p;
}

static bool ends_with(const char *s, const char *suffix) {
  size_t a = strlen(s), b = strlen(suffix);
  return a >= b && strcmp(s + a - b, suffix) == 0;
}

static int add_file(idoc_ckpt *c, const char *path) {
  idoc_st_file *f;
  if (idoc_st_open(&f, path)) return IDOC_ERR;
  c->files = idoc_xrealloc(c->files, (size_t)(c->n_files + 1) * sizeof *c->files);
  c->files[c->n_files++] = f;
  return IDOC_OK;
}

// Shards named by the index: plain file names in the index's folder, each opened once; every
// tensor the index maps must be in the shard it names.
static int open_index(idoc_ckpt *c, const char *index_path) {
  idoc_json_limits lim = {.max_bytes = 64u << 20};
  idoc_json_doc *doc = idoc_json_parse_file(index_path, &lim);
  if (!doc) return IDOC_ERR;
  char *dir = idoc_xstrdup(index_path);
  char *slash = strrchr(dir, '/');
  if (slash)
    *slash = 0;
  else
    strcpy(dir, ".");
  const idoc_json *root = idoc_json_root(doc), *wm = idoc_json_get(root, "weight_map");
  const char **shard_names = NULL; // parallel to c->files
  int rc = IDOC_OK;
  if (!idoc_json_is(wm, IDOC_JSON_OBJECT))
    rc = idoc_set_error("%s: missing \"weight_map\" object", index_path);
  for (uint32_t i = 0; rc == IDOC_OK && i < wm->n; i++) {
    const idoc_json *v = &wm->kids[i];
    const char *shard = idoc_json_string(v);
    if (!shard || !*shard || strlen(shard) != v->len || strchr(shard, '/') ||
        strcmp(shard, ".") == 0 || strcmp(shard, "..") == 0) {
      rc = idoc_set_error("%s: weight_map[\"%s\"] must be a plain file name in the same folder",
                          index_path, v->key);
      break;
    }
    int k = 0;
    while (k < c->n_files && strcmp(shard_names[k], shard) != 0)
      k++;
    if (k == c->n_files) {
      char *p = join(dir, shard);
      rc = add_file(c, p);
      free(p);
      if (rc) {
        idoc_wrap_error("%s", index_path);
        break;
      }
      shard_names = idoc_xrealloc(shard_names, (size_t)c->n_files * sizeof *shard_names);
      shard_names[k] = shard;
    }
    if (!idoc_st_find(c->files[k], v->key))
      rc = idoc_set_error("%s: weight_map maps '%s' to %s, which does not contain it", index_path,
                          v->key, shard);
  }
  if (rc == IDOC_OK && c->n_files == 0) rc = idoc_set_error("%s: empty weight_map", index_path);
  free(shard_names);
  free(dir);
  idoc_json_free(doc);
  return rc;
}

static int by_entry_name(const void *a, const void *b) {
  return strcmp(((const ckpt_entry *)a)->name, ((const ckpt_entry *)b)->name);
}

// All tensors of all files under their normalised names; a name seen twice is an error.
static int build_entries(idoc_ckpt *c) {
  int total = 0;
  for (int i = 0; i < c->n_files; i++)
    total += idoc_st_count(c->files[i]);
  c->e = idoc_xcalloc((size_t)total + 1, sizeof *c->e);
  for (int i = 0; i < c->n_files; i++)
    for (int j = 0; j < idoc_st_count(c->files[i]); j++) {
      const idoc_st_tensor *t = idoc_st_tensor_at(c->files[i], j);
      c->e[c->n].name = idoc_ckpt_normalize_name(t->name);
      c->e[c->n].t = t;
      c->n++;
    }
  qsort(c->e, (size_t)c->n, sizeof *c->e, by_entry_name);
  for (int i = 1; i < c->n; i++)
    if (strcmp(c->e[i - 1].name, c->e[i].name) == 0) {
      const idoc_st_tensor *a = c->e[i - 1].t, *b = c->e[i].t;
      return idoc_set_error("%s: tensor '%s' (%s) and '%s' (%s) are both '%s' after name "
                            "normalisation",
                            c->path, a->name, a->file, b->name, b->file, c->e[i].name);
    }
  return IDOC_OK;
}

int idoc_ckpt_open(idoc_ckpt **out, const char *path) {
  *out = NULL;
  struct stat st;
  if (stat(path, &st) != 0) return idoc_set_error("%s: cannot open: %s", path, strerror(errno));
  idoc_ckpt *c = idoc_xcalloc(1, sizeof *c);
  c->path = idoc_xstrdup(path);
  int rc;
  if (S_ISDIR(st.st_mode)) {
    char *index = join(path, INDEX_NAME), *single = join(path, SINGLE_NAME);
    if (idoc_file_exists(index))
      rc = open_index(c, index);
    else if (idoc_file_exists(single))
      rc = add_file(c, single);
    else
      rc = idoc_set_error("%s: no %s or %s in this folder", path, INDEX_NAME, SINGLE_NAME);
    free(index);
    free(single);
  } else if (ends_with(path, ".index.json")) {
    rc = open_index(c, path);
  } else {
    rc = add_file(c, path);
  }
  if (rc == IDOC_OK) rc = build_entries(c);
  if (rc != IDOC_OK) {
    idoc_ckpt_close(c);
    return IDOC_ERR;
  }
  *out = c;
  return IDOC_OK;
}

void idoc_ckpt_close(idoc_ckpt *c) {
  if (!c) return;
  for (int i = 0; i < c->n; i++)
    free(c->e[i].name);
  free(c->e);
  for (int i = 0; i < c->n_files; i++)
    idoc_st_close(c->files[i]);
  free(c->files);
  free(c->path);
  free(c);
}

int idoc_ckpt_count(const idoc_ckpt *c) { return c->n; }
int idoc_ckpt_file_count(const idoc_ckpt *c) { return c->n_files; }
const char *idoc_ckpt_name_at(const idoc_ckpt *c, int i) {
  return i >= 0 && i < c->n ? c->e[i].name : NULL;
}
const idoc_st_tensor *idoc_ckpt_tensor_at(const idoc_ckpt *c, int i) {
  return i >= 0 && i < c->n ? c->e[i].t : NULL;
}

const idoc_st_tensor *idoc_ckpt_find(const idoc_ckpt *c, const char *name) {
  ckpt_entry key = {.name = idoc_ckpt_normalize_name(name)};
  const ckpt_entry *e = bsearch(&key, c->e, (size_t)c->n, sizeof *c->e, by_entry_name);
  free(key.name);
  return e ? e->t : NULL;
}

int idoc_ckpt_load(const idoc_ckpt *c, const char *name, idoc_tensor *dst) {
  const idoc_st_tensor *t = idoc_ckpt_find(c, name);
  if (!t) return idoc_set_error("%s: no tensor '%s'", c->path, name);
  return idoc_st_load(t, dst);
}

int idoc_ckpt_load_new(const idoc_ckpt *c, const char *name, idoc_arena *a, int dt,
                       idoc_tensor **out) {
  *out = NULL;
  const idoc_st_tensor *t = idoc_ckpt_find(c, name);
  if (!t) return idoc_set_error("%s: no tensor '%s'", c->path, name);
  if (t->dtype < 0 || t->ndim > IDOC_MAX_DIMS)
    return idoc_set_error("%s: tensor '%s': %s with %d dims cannot be held in a tensor", t->file,
                          t->name, t->st_dtype, t->ndim);
  idoc_tensor *x =
      idoc_tensor_new(a, dt < 0 ? (idoc_dtype)t->dtype : (idoc_dtype)dt, t->ndim, t->shape);
  if (idoc_st_load(t, x)) return IDOC_ERR;
  *out = x;
  return IDOC_OK;
}

static int cmp_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

int idoc_ckpt_check_names(const idoc_ckpt *c, const char *const *expected, int n,
                          bool allow_unexpected) {
  char **want = idoc_xcalloc((size_t)n + 1, sizeof *want);
  for (int i = 0; i < n; i++)
    want[i] = idoc_ckpt_normalize_name(expected[i]);
  qsort(want, (size_t)n, sizeof *want, cmp_str);
  int nw = 0; // distinct expected names
  for (int i = 0; i < n; i++) {
    if (nw && strcmp(want[nw - 1], want[i]) == 0)
      free(want[i]);
    else
      want[nw++] = want[i];
  }
  // Merge the two sorted lists, keeping a count and the first few names of each difference.
  char lists[2][400] = {"", ""};
  int cnt[2] = {0, 0}, i = 0, j = 0; // [0]: missing, [1]: unexpected
  while (i < nw || j < c->n) {
    int d = i == nw ? 1 : j == c->n ? -1 : strcmp(want[i], c->e[j].name);
    if (d == 0) {
      i++;
      j++;
      continue;
    }
    int k = d < 0 ? 0 : 1;
    const char *name = k == 0 ? want[i++] : c->e[j++].name;
    if (k == 1 && allow_unexpected) continue;
    if (++cnt[k] <= 5) {
      size_t l = strlen(lists[k]);
      snprintf(lists[k] + l, sizeof lists[k] - l, "%s'%s'", l ? ", " : "", name);
    }
  }
  for (int k = 0; k < nw; k++)
    free(want[k]);
  free(want);
  if (!cnt[0] && !cnt[1]) return IDOC_OK;
  char parts[2][512];
  for (int k = 0; k < 2; k++)
    snprintf(parts[k], sizeof parts[k], "%d %s tensor%s%s%.399s%s", cnt[k],
             k ? "unexpected" : "missing", cnt[k] == 1 ? "" : "s", cnt[k] ? " (" : "", lists[k],
             cnt[k] > 5 ? ", ...)"
             : cnt[k]   ? ")"
                        : "");
  return idoc_set_error("%s: %s; %s", c->path, parts[0], parts[1]);
}
