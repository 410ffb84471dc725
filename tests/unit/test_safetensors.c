// Safetensors IO: fixtures written by the reference Python library read with the expected values,
// malformed files rejected with precise messages (never a crash), sharded checkpoints with both
// Qwen naming schemes, and our writer round-tripping every dtype, single and sharded.
//
// IDOC_ST_KEEP_DIR=DIR keeps files our writer made for the Python cross-check
// (scripts/make_safetensors_fixtures.py --check DIR).
#include <dirent.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "kernels/ops.h"
#include "nn/json.h"
#include "nn/safetensors.h"
#include "nn/util.h"
#include "tests/test.h"

#define FIX "tests/fixtures/safetensors"

// ---- expected-values files ----------------------------------------------------------------------
typedef struct {
  char name[128], dtype[8];
  int ndim;
  int64_t shape[8];
  int64_t numel;
  double *v;
} expect;

static int read_expected(const char *path, expect **out) {
  FILE *f = fopen(path, "r");
  if (!f) return 0;
  int n = 0;
  expect *e = NULL;
  expect x;
  while (fscanf(f, "%127s %7s %d", x.name, x.dtype, &x.ndim) == 3) {
    x.numel = 1;
    for (int i = 0; i < x.ndim; i++) {
      if (fscanf(f, "%lld", (long long *)&x.shape[i]) != 1) break;
      x.numel *= x.shape[i];
    }
    x.v = calloc((size_t)x.numel + 1, sizeof(double));
    for (int64_t i = 0; i < x.numel; i++)
      if (fscanf(f, "%lf", &x.v[i]) != 1) break;
    e = realloc(e, (size_t)(n + 1) * sizeof *e);
    e[n++] = x;
  }
  fclose(f);
  *out = e;
  return n;
}

static void free_expected(expect *e, int n) {
  for (int i = 0; i < n; i++)
    free(e[i].v);
  free(e);
}

static bool same_float(float got, double want) {
  if (got != (float)want) return false;
  return (signbit(got) != 0) == (signbit(want) != 0); // -0.0 stays -0.0
}

// Values of a CPU tensor against expected doubles (floats exactly, ints exactly).
static bool values_match(const idoc_tensor *t, const expect *e, char *why, size_t n) {
  for (int64_t i = 0; i < e->numel; i++) {
    double w = e->v[i];
    bool ok;
    switch (t->dtype) {
    case IDOC_I32: ok = ((int32_t *)t->data)[i] == (int64_t)w; break;
    case IDOC_I64: ok = ((int64_t *)t->data)[i] == (int64_t)w; break;
    case IDOC_U8: ok = ((uint8_t *)t->data)[i] == (int64_t)w; break;
    case IDOC_F32: ok = same_float(((float *)t->data)[i], w); break;
    case IDOC_BF16: ok = ((uint16_t *)t->data)[i] == idoc_f32_to_bf16((float)w); break;
    case IDOC_F16: ok = ((uint16_t *)t->data)[i] == idoc_f32_to_f16((float)w); break;
    default: ok = false;
    }
    if (!ok) {
      snprintf(why, n, "%s[%lld]: got %g want %.9g", e->name, (long long)i, idoc_tensor_get(t, i),
               w);
      return false;
    }
  }
  return true;
}

static idoc_dtype dtype_of(const char *s) {
  const char *names[] = {"F32", "BF16", "F16", "I32", "I64", "U8"};
  for (int i = 0; i < 6; i++)
    if (!strcmp(names[i], s)) return (idoc_dtype)i;
  return IDOC_F32;
}

static bool is_float_dt(idoc_dtype d) { return d == IDOC_F32 || d == IDOC_BF16 || d == IDOC_F16; }

// ---- fixtures from the reference library
// ---------------------------------------------------------
static void test_single_fixture(void) {
  expect *e;
  int ne = read_expected(FIX "/single.expected.txt", &e);
  T_CHECK(ne == 8, "single.expected.txt has %d tensors", ne);
  idoc_st_file *f;
  if (idoc_st_open(&f, FIX "/single.safetensors")) {
    T_CHECK(0, "open: %s", idoc_last_error());
    free_expected(e, ne);
    return;
  }
  T_CHECK(idoc_st_count(f) == ne, "count %d", idoc_st_count(f));
  T_CHECK(idoc_st_metadata(f, "format") && !strcmp(idoc_st_metadata(f, "format"), "pt"), "format");
  T_CHECK(idoc_st_metadata(f, "note") && !strcmp(idoc_st_metadata(f, "note"), "fixture"), "note");
  T_CHECK(idoc_st_metadata(f, "nope") == NULL, "absent metadata");
  for (int i = 1; i < idoc_st_count(f); i++)
    T_CHECK(strcmp(idoc_st_tensor_at(f, i - 1)->name, idoc_st_tensor_at(f, i)->name) < 0,
            "sorted by name");
  idoc_arena *a = idoc_arena_new("st", IDOC_DEV_CPU, 1 << 20);
  char why[256];
  for (int k = 0; k < ne; k++) {
    const idoc_st_tensor *t = idoc_st_find(f, e[k].name);
    T_CHECK(t, "find %s", e[k].name);
    if (!t) continue;
    T_CHECK(!strcmp(t->st_dtype, e[k].dtype) && t->ndim == e[k].ndim && t->numel == e[k].numel,
            "%s: %s ndim %d numel %lld", e[k].name, t->st_dtype, t->ndim, (long long)t->numel);
    for (int d = 0; d < t->ndim; d++)
      T_CHECK(t->shape[d] == e[k].shape[d], "%s dim %d", e[k].name, d);
    idoc_dtype fd = dtype_of(e[k].dtype);
    // The file's dtype, and for floats every float dtype (converted on load).
    for (int dt = 0; dt < 6; dt++) {
      if (dt != (int)fd && !(is_float_dt(fd) && is_float_dt((idoc_dtype)dt))) continue;
      idoc_arena_mark m = idoc_arena_get_mark(a);
      idoc_tensor *x = idoc_tensor_new(a, (idoc_dtype)dt, e[k].ndim, e[k].shape);
      int rc = idoc_st_load(t, x);
      T_CHECK(rc == IDOC_OK, "%s -> %s: %s", e[k].name, idoc_dtype_name(x->dtype),
              idoc_last_error());
      if (rc == IDOC_OK) T_CHECK(values_match(x, &e[k], why, sizeof why), "%s", why);
      idoc_arena_reset_to(a, m);
    }
  }
  // Integer conversions: widening works, narrowing is range-checked, float<->int refused.
  int64_t s2x3[] = {2, 3}, s4[] = {4}, s9[] = {9}, s357[] = {3, 5, 7}, s356[] = {3, 5, 6};
  idoc_tensor *x = idoc_tensor_new(a, IDOC_I64, 2, s2x3);
  T_CHECK(!idoc_st_load(idoc_st_find(f, "i32.ids"), x) && ((int64_t *)x->data)[3] == INT32_MIN,
          "i32 -> i64");
  x = idoc_tensor_new(a, IDOC_I32, 1, s4);
  T_CHECK(idoc_st_load(idoc_st_find(f, "i64.big"), x) &&
              strstr(idoc_last_error(), "single.safetensors: tensor 'i64.big': element 0 = "
                                        "1099511627776 does not fit in i32"),
          "%s", idoc_last_error());
  x = idoc_tensor_new(a, IDOC_I32, 1, s9);
  T_CHECK(!idoc_st_load(idoc_st_find(f, "u8.bytes"), x) && ((int32_t *)x->data)[8] == 2,
          "u8 -> i32 (258 wrapped to 2 by numpy)");
  x = idoc_tensor_new(a, IDOC_I32, 3, s357);
  T_CHECK(idoc_st_load(idoc_st_find(f, "f32.odd"), x) &&
              strstr(idoc_last_error(), "tensor 'f32.odd': cannot convert F32 to i32"),
          "%s", idoc_last_error());
  x = idoc_tensor_new(a, IDOC_F32, 3, s356);
  T_CHECK(idoc_st_load(idoc_st_find(f, "f32.odd"), x) &&
              strstr(idoc_last_error(), "single.safetensors: tensor 'f32.odd': shape [3, 5, 7] in "
                                        "the file, the model expects [3, 5, 6]"),
          "%s", idoc_last_error());
  x = idoc_tensor_new(a, IDOC_F32, 1, s357);
  T_CHECK(idoc_st_load(idoc_st_find(f, "scalar"), x) && strstr(idoc_last_error(), "shape [] in"),
          "a 0-d tensor is not a [3]: %s", idoc_last_error());
  idoc_st_close(f);

  // A valid file whose dtype we cannot hold: opens, refuses to load with the reason.
  T_CHECK(!idoc_st_open(&f, FIX "/f64.safetensors"), "f64 opens: %s", idoc_last_error());
  if (f) {
    const idoc_st_tensor *t = idoc_st_find(f, "f64.values");
    T_CHECK(t && t->dtype == -1 && !strcmp(t->st_dtype, "F64") && t->numel == 2, "f64 entry");
    x = idoc_tensor_new(a, IDOC_F32, 1, (int64_t[]){2});
    T_CHECK(t && idoc_st_load(t, x) &&
                strstr(idoc_last_error(), "f64.safetensors: tensor 'f64.values': dtype F64 is not "
                                          "supported"),
            "%s", idoc_last_error());
    idoc_st_close(f);
  }
  idoc_arena_free(a);
  free_expected(e, ne);
}

static void test_malformed(void) {
  FILE *tsv = fopen(FIX "/malformed/EXPECTED.tsv", "r");
  T_CHECK(tsv, "EXPECTED.tsv");
  if (!tsv) return;
  char line[1024];
  int n = 0;
  while (fgets(line, sizeof line, tsv)) {
    if (line[0] == '#') continue;
    char *file = strtok(line, "\t"), *frag = strtok(NULL, "\t");
    if (!file || !frag) continue;
    char path[512];
    snprintf(path, sizeof path, FIX "/malformed/%s", file);
    idoc_st_file *f = (idoc_st_file *)1;
    idoc_clear_error();
    int rc = idoc_st_open(&f, path);
    T_CHECK(rc == IDOC_ERR && f == NULL, "%s opened", file);
    T_CHECK(strstr(idoc_last_error(), path) && strstr(idoc_last_error(), frag),
            "%s: message '%s' lacks '%s'", file, idoc_last_error(), frag);
    // The in-memory parser gives the same verdict.
    char *bytes;
    size_t len;
    if (idoc_read_file(path, &bytes, &len) == IDOC_OK) {
      rc = idoc_st_parse(&f, bytes, len, file);
      T_CHECK(rc == IDOC_ERR && strstr(idoc_last_error(), frag), "%s parse: %s", file,
              idoc_last_error());
      free(bytes);
    }
    n++;
  }
  fclose(tsv);
  T_CHECK(n >= 20, "%d malformed fixtures", n);

  // Every strict prefix of a valid file is rejected; flipping any header bit never crashes.
  char *bytes;
  size_t len;
  T_CHECK(!idoc_read_file(FIX "/single.safetensors", &bytes, &len), "read single");
  int accepted = 0, flips_ok = 0;
  for (size_t k = 0; k < len; k++) {
    idoc_st_file *f;
    if (idoc_st_parse(&f, bytes, k, "prefix") == IDOC_OK) {
      accepted++;
      idoc_st_close(f);
    }
  }
  T_CHECK(accepted == 0, "%d truncated copies accepted", accepted);
  uint64_t hlen = 0;
  for (int i = 7; i >= 0; i--)
    hlen = (hlen << 8) | (unsigned char)bytes[i];
  for (size_t k = 0; k < 8 + hlen && k < len; k++)
    for (int bit = 0; bit < 8; bit++) {
      bytes[k] ^= (char)(1 << bit);
      idoc_st_file *f;
      if (idoc_st_parse(&f, bytes, len, "flip") == IDOC_OK) {
        flips_ok++;
        // Whatever still parses must lie inside the buffer.
        for (int i = 0; i < idoc_st_count(f); i++) {
          const idoc_st_tensor *t = idoc_st_tensor_at(f, i);
          T_CHECK((const char *)t->data >= bytes && t->end <= len &&
                      (const char *)t->data + (t->end - t->begin) <= bytes + len,
                  "tensor inside the file");
        }
        idoc_st_close(f);
      }
      bytes[k] ^= (char)(1 << bit);
    }
  printf("bit flips over the %llu-byte header: %d of %llu still valid\n",
         (unsigned long long)(8 + hlen), flips_ok, (unsigned long long)(8 + hlen) * 8);
  free(bytes);

  idoc_st_file *f;
  T_CHECK(idoc_st_open(&f, FIX "/no_such.safetensors") &&
              strstr(idoc_last_error(), "no_such.safetensors: cannot open"),
          "%s", idoc_last_error());
  T_CHECK(idoc_st_open(&f, FIX) && strstr(idoc_last_error(), "not a regular file"), "%s",
          idoc_last_error());
}

// ---- sharded checkpoints ---------------------------------------------------------------------
static void test_normalize(void) {
  const char *cases[][2] = {
      {"model.language_model.layers.3.mlp.up_proj.weight", "model.layers.3.mlp.up_proj.weight"},
      {"model.visual.blocks.0.norm1.weight", "visual.blocks.0.norm1.weight"},
      {"model.layers.0.input_layernorm.weight", "model.layers.0.input_layernorm.weight"},
      {"visual.merger.ln_q.weight", "visual.merger.ln_q.weight"},
      {"lm_head.weight", "lm_head.weight"},
      {"model.language_model.", "model."},
      {"model.visualx", "model.visualx"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    char *s = idoc_ckpt_normalize_name(cases[i][0]);
    T_CHECK(!strcmp(s, cases[i][1]), "%s -> %s", cases[i][0], s);
    free(s);
  }
}

static void test_sharded_fixture(void) {
  expect *e;
  int ne = read_expected(FIX "/sharded.expected.txt", &e);
  T_CHECK(ne == 9, "sharded.expected.txt has %d tensors", ne);
  const char *paths[] = {FIX "/sharded", FIX "/sharded/model.safetensors.index.json"};
  idoc_arena *a = idoc_arena_new("st", IDOC_DEV_CPU, 1 << 20);
  char why[256];
  for (int p = 0; p < 2; p++) {
    idoc_ckpt *c;
    if (idoc_ckpt_open(&c, paths[p])) {
      T_CHECK(0, "open %s: %s", paths[p], idoc_last_error());
      continue;
    }
    T_CHECK(idoc_ckpt_count(c) == ne && idoc_ckpt_file_count(c) == 2, "%d tensors in %d files",
            idoc_ckpt_count(c), idoc_ckpt_file_count(c));
    for (int k = 0; k < ne; k++) {
      T_CHECK(!strcmp(idoc_ckpt_name_at(c, k), e[k].name), "name %d: %s vs %s", k,
              idoc_ckpt_name_at(c, k), e[k].name);
      idoc_tensor *x;
      int rc = idoc_ckpt_load_new(c, e[k].name, a, -1, &x);
      T_CHECK(rc == IDOC_OK, "load %s: %s", e[k].name, idoc_last_error());
      if (rc == IDOC_OK) {
        T_CHECK(x->dtype == dtype_of(e[k].dtype) && x->ndim == e[k].ndim, "%s dtype/ndim",
                e[k].name);
        T_CHECK(values_match(x, &e[k], why, sizeof why), "%s", why);
      }
      rc = idoc_ckpt_load_new(c, e[k].name, a, IDOC_F32, &x);
      T_CHECK(rc == IDOC_OK && values_match(x, &e[k], why, sizeof why), "%s as f32: %s", e[k].name,
              rc ? idoc_last_error() : why);
    }
    // Both namings find the same tensor; the file keeps its own name.
    const idoc_st_tensor *t1 = idoc_ckpt_find(c, "model.norm.weight"),
                         *t2 = idoc_ckpt_find(c, "model.language_model.norm.weight");
    T_CHECK(t1 && t1 == t2 && !strcmp(t1->name, "model.language_model.norm.weight"),
            "language_model naming");
    t1 = idoc_ckpt_find(c, "visual.merger.mlp.0.bias");
    t2 = idoc_ckpt_find(c, "model.visual.merger.mlp.0.bias");
    T_CHECK(t1 && t1 == t2 && strstr(t1->file, "model-00002-of-00002"), "visual naming");
    t1 = idoc_ckpt_find(c, "model.visual.patch_embed.proj.weight");
    T_CHECK(t1 && t1->ndim == 5 && !strcmp(t1->name, "visual.patch_embed.proj.weight"),
            "old naming found through the new one");
    T_CHECK(idoc_ckpt_find(c, "lm_head.weight") != NULL, "lm_head");
    idoc_tensor *x;
    T_CHECK(idoc_ckpt_load_new(c, "model.layers.9.mlp.up_proj.weight", a, -1, &x) &&
                strstr(idoc_last_error(), "no tensor 'model.layers.9.mlp.up_proj.weight'"),
            "%s", idoc_last_error());

    // Name checks against a model's list.
    const char *names[16];
    for (int k = 0; k < ne; k++)
      names[k] = e[k].name;
    T_CHECK(!idoc_ckpt_check_names(c, names, ne, false), "all present: %s", idoc_last_error());
    for (int k = 0; k < ne; k++) // the other naming counts the same
      if (!strcmp(names[k], "model.embed_tokens.weight"))
        names[k] = "model.language_model.embed_tokens.weight";
    T_CHECK(!idoc_ckpt_check_names(c, names, ne, false), "either naming: %s", idoc_last_error());
    names[ne] = "model.layers.1.mlp.up_proj.weight";
    T_CHECK(idoc_ckpt_check_names(c, names, ne + 1, false) &&
                strstr(idoc_last_error(),
                       "1 missing tensor ('model.layers.1.mlp.up_proj.weight'); 0 unexpected"),
            "%s", idoc_last_error());
    int li = -1; // drop lm_head from the expected list (a tied model)
    for (int k = 0; k < ne; k++)
      if (!strcmp(e[k].name, "lm_head.weight")) li = k;
    names[li] = names[ne - 1];
    T_CHECK(
        idoc_ckpt_check_names(c, names, ne - 1, false) &&
            strstr(idoc_last_error(), "0 missing tensors; 1 unexpected tensor ('lm_head.weight')"),
        "%s", idoc_last_error());
    T_CHECK(!idoc_ckpt_check_names(c, names, ne - 1, true), "unexpected allowed");
    idoc_ckpt_close(c);
  }
  idoc_arena_free(a);
  free_expected(e, ne);
}

// A scratch folder under /tmp, removed (files only) at the end.
static char g_tmp[256];
static void tmp_path(char *out, size_t n, const char *name) {
  snprintf(out, n, "%s/%s", g_tmp, name);
}
static void rm_tree(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return;
  for (struct dirent *e; (e = readdir(d));) {
    if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    struct stat st;
    if (lstat(p, &st) == 0 && S_ISDIR(st.st_mode))
      rm_tree(p);
    else
      unlink(p);
  }
  closedir(d);
  rmdir(dir);
}

static void write_text(const char *path, const char *text) {
  T_CHECK(!idoc_write_file_atomic(path, text, strlen(text)), "write %s", path);
}

static void test_index_errors(void) {
  char dir[512], p[600];
  idoc_ckpt *c;
  tmp_path(dir, sizeof dir, "bad_index");
  idoc_mkdir_p(dir);
  T_CHECK(idoc_ckpt_open(&c, dir) && strstr(idoc_last_error(), "no model.safetensors.index.json "
                                                               "or model.safetensors"),
          "%s", idoc_last_error());
  // A real shard to point at.
  char *bytes;
  size_t len;
  idoc_read_file(FIX "/sharded/model-00001-of-00002.safetensors", &bytes, &len);
  snprintf(p, sizeof p, "%s/s1.safetensors", dir);
  idoc_write_file_atomic(p, bytes, len);
  free(bytes);
  struct {
    const char *index, *frag;
  } cases[] = {
      {"{\"metadata\": {}}", "missing \"weight_map\" object"},
      {"{\"weight_map\": {}}", "empty weight_map"},
      {"{\"weight_map\": {\"model.norm.weight\": \"../s1.safetensors\"}}",
       "weight_map[\"model.norm.weight\"] must be a plain file name"},
      {"{\"weight_map\": {\"model.norm.weight\": 3}}", "must be a plain file name"},
      {"{\"weight_map\": {\"lm_head.weight\": \"s2.safetensors\"}}", "s2.safetensors: cannot open"},
      {"{\"weight_map\": {\"lm_head.weight\": \"s1.safetensors\"}}",
       "weight_map maps 'lm_head.weight' to s1.safetensors, which does not contain it"},
      {"{\"weight_map\": {\"model.embed_tokens.weight\": \"s1.safetensors\",}}", "trailing comma"},
  };
  snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    write_text(p, cases[i].index);
    T_CHECK(idoc_ckpt_open(&c, dir) && strstr(idoc_last_error(), cases[i].frag) &&
                strstr(idoc_last_error(), "model.safetensors.index.json"),
            "index case %zu: %s", i, idoc_last_error());
  }
  // A shard may hold tensors the index does not list; they still load.
  write_text(p, "{\"weight_map\": {\"model.embed_tokens.weight\": \"s1.safetensors\"}}");
  T_CHECK(!idoc_ckpt_open(&c, dir) && idoc_ckpt_count(c) == 4, "partial weight_map: %s",
          idoc_last_error());
  idoc_ckpt_close(c);

  // Two names that normalise to one tensor are ambiguous.
  idoc_arena *a = idoc_arena_new("st", IDOC_DEV_CPU, 1 << 16);
  idoc_tensor *t1 = idoc_tensor_1d(a, IDOC_F32, 2), *t2 = idoc_tensor_1d(a, IDOC_F32, 2);
  idoc_tensor_fill(t1, 1);
  idoc_tensor_fill(t2, 2);
  idoc_st_item items[] = {{"model.norm.weight", t1}, {"model.language_model.norm.weight", t2}};
  snprintf(p, sizeof p, "%s/dup.safetensors", dir);
  T_CHECK(!idoc_st_write_file(p, items, 2, NULL), "write dup: %s", idoc_last_error());
  T_CHECK(idoc_ckpt_open(&c, p) &&
              strstr(idoc_last_error(), "are both 'model.norm.weight' after name normalisation"),
          "%s", idoc_last_error());
  idoc_arena_free(a);
}

// ---- writer -------------------------------------------------------------------------------------
static bool same_bytes(const idoc_tensor *x, const idoc_st_tensor *t) {
  return (size_t)(t->end - t->begin) == idoc_nbytes(x) && !memcmp(x->data, t->data, idoc_nbytes(x));
}

static void test_writer_roundtrip(void) {
  idoc_arena *a = idoc_arena_new("st", IDOC_DEV_CPU, 1 << 20);
  idoc_rng r;
  idoc_rng_seed(&r, 42);
  int64_t sh_a[] = {3, 1, 7}, sh_b[] = {5, 3}, sh_c[] = {13}, sh_d[] = {2, 3, 1, 1, 2, 2},
          sh_e[] = {0, 4};
  idoc_tensor *ts[8];
  ts[0] = idoc_tensor_new(a, IDOC_F32, 3, sh_a);
  ts[1] = idoc_tensor_new(a, IDOC_BF16, 2, sh_b);
  ts[2] = idoc_tensor_new(a, IDOC_F16, 1, sh_c);
  ts[3] = idoc_tensor_new(a, IDOC_I32, 6, sh_d);
  ts[4] = idoc_tensor_new(a, IDOC_I64, 1, sh_c);
  ts[5] = idoc_tensor_new(a, IDOC_U8, 2, sh_b);
  ts[6] = idoc_tensor_new(a, IDOC_F32, 0, sh_a); // 0-d
  ts[7] = idoc_tensor_new(a, IDOC_F32, 2, sh_e); // empty
  for (int i = 0; i < 8; i++) {
    unsigned char *b = ts[i]->data;
    for (size_t k = 0; k < idoc_nbytes(ts[i]); k++)
      b[k] = (unsigned char)idoc_rng_u64(&r);
    if (is_float_dt(ts[i]->dtype)) idoc_tensor_normal(ts[i], &r, 0, 3); // no NaN payloads
  }
  const char *names[] = {"zeta.w", "alpha.b", "mid.f16", "ids", "big", "bytes", "s", "e"};
  idoc_st_item items[8];
  for (int i = 0; i < 8; i++)
    items[i] = (idoc_st_item){names[i], ts[i]};
  char path[512];
  tmp_path(path, sizeof path, "rt.safetensors");
  const char *meta[] = {"step", "12", NULL};
  idoc_st_save_opts o = {.dtype = -1, .metadata = meta};
  T_CHECK(!idoc_st_write_file(path, items, 8, &o), "write: %s", idoc_last_error());
  idoc_st_file *f;
  T_CHECK(!idoc_st_open(&f, path), "reopen: %s", idoc_last_error());
  if (f) {
    T_CHECK(idoc_st_count(f) == 8, "count");
    for (int i = 0; i < 8; i++) {
      const idoc_st_tensor *t = idoc_st_find(f, names[i]);
      T_CHECK(t && t->dtype == (int)ts[i]->dtype && t->ndim == ts[i]->ndim && same_bytes(ts[i], t),
              "%s round trip", names[i]);
    }
    // Layout: 8-byte aligned data, sorted names, contiguous offsets, metadata kept.
    uint64_t hl;
    char *raw;
    size_t len;
    idoc_read_file(path, &raw, &len);
    memcpy(&hl, raw, 8);
    size_t end = 8 + hl;
    while (end > 8 && raw[end - 1] == ' ')
      end--; // padding is spaces after the closing brace
    T_CHECK(hl % 8 == 0 && raw[8] == '{' && raw[end - 1] == '}' && 8 + hl - end < 8,
            "header length %llu, %zu spaces", (unsigned long long)hl, (size_t)(8 + hl - end));
    T_CHECK(!strncmp(raw + 8, "{\"__metadata__\":{\"format\":\"pt\",\"step\":\"12\"}", 41),
            "metadata first: %.60s", raw + 8);
    uint64_t off = 0;
    for (int i = 0; i < 8; i++) {
      const idoc_st_tensor *t = idoc_st_tensor_at(f, i);
      T_CHECK(t->begin == off, "%s at %llu", t->name, (unsigned long long)t->begin);
      off = t->end;
    }
    T_CHECK(8 + hl + off == len, "file ends with the data");
    T_CHECK(!strcmp(idoc_st_metadata(f, "step"), "12"), "metadata");
    free(raw);
    idoc_st_close(f);
  }

  // Converting float tensors to BF16 on write: round to nearest even, ints untouched.
  o.dtype = IDOC_BF16;
  o.metadata = NULL;
  T_CHECK(!idoc_st_write_file(path, items, 8, &o), "write bf16: %s", idoc_last_error());
  T_CHECK(!idoc_st_open(&f, path), "reopen bf16: %s", idoc_last_error());
  if (f) {
    const idoc_st_tensor *t = idoc_st_find(f, "zeta.w");
    bool ok = t && t->dtype == IDOC_BF16;
    for (int64_t i = 0; ok && i < idoc_numel(ts[0]); i++) {
      uint16_t h;
      memcpy(&h, (const char *)t->data + 2 * i, 2);
      ok = h == idoc_f32_to_bf16(IDOC_F(ts[0])[i]);
    }
    T_CHECK(ok, "f32 -> bf16 on write");
    t = idoc_st_find(f, "mid.f16");
    ok = t && t->dtype == IDOC_BF16;
    for (int64_t i = 0; ok && i < 13; i++) {
      uint16_t h, src = ((uint16_t *)ts[2]->data)[i];
      memcpy(&h, (const char *)t->data + 2 * i, 2);
      ok = h == idoc_f32_to_bf16(idoc_f16_to_f32(src));
    }
    T_CHECK(ok, "f16 -> bf16 on write");
    T_CHECK(idoc_st_find(f, "ids")->dtype == IDOC_I32 && same_bytes(ts[3], idoc_st_find(f, "ids")),
            "ints kept");
    T_CHECK(idoc_st_find(f, "alpha.b")->dtype == IDOC_BF16 &&
                same_bytes(ts[1], idoc_st_find(f, "alpha.b")),
            "bf16 kept bit-exact");
    idoc_st_close(f);
  }

  // Bad writer inputs.
  idoc_st_item bad[3] = {{"x", ts[0]}, {"x", ts[1]}, {NULL, ts[2]}};
  T_CHECK(idoc_st_write_file(path, bad, 2, NULL) && strstr(idoc_last_error(), "'x' given twice"),
          "%s", idoc_last_error());
  T_CHECK(idoc_st_write_file(path, bad + 2, 1, NULL) && strstr(idoc_last_error(), "no name"), "%s",
          idoc_last_error());
  idoc_st_item meta_name = {"__metadata__", ts[0]}, bad_utf8 = {"a\xff", ts[0]};
  T_CHECK(idoc_st_write_file(path, &meta_name, 1, NULL) && strstr(idoc_last_error(), "reserved"),
          "%s", idoc_last_error());
  T_CHECK(idoc_st_write_file(path, &bad_utf8, 1, NULL) && strstr(idoc_last_error(), "UTF-8"), "%s",
          idoc_last_error());
  idoc_st_save_opts to_int = {.dtype = IDOC_I32};
  T_CHECK(idoc_st_write_file(path, items, 1, &to_int) &&
              strstr(idoc_last_error(), "only convert float tensors"),
          "%s", idoc_last_error());
  char nodir[600];
  snprintf(nodir, sizeof nodir, "%s/missing/dir/x.safetensors", g_tmp);
  T_CHECK(idoc_st_write_file(nodir, items, 1, NULL) && strstr(idoc_last_error(), "cannot create"),
          "%s", idoc_last_error());
  idoc_arena_free(a);
}

static int count_files(const char *dir, const char *needle) {
  DIR *d = opendir(dir);
  int n = 0;
  if (!d) return 0;
  for (struct dirent *e; (e = readdir(d));)
    n += strstr(e->d_name, needle) != NULL;
  closedir(d);
  return n;
}

// The sharded fixture loaded by us and saved by us, sharded and then not, loads back identical.
static void test_save_checkpoint(const char *keep) {
  idoc_ckpt *c;
  if (idoc_ckpt_open(&c, FIX "/sharded")) {
    T_CHECK(0, "open: %s", idoc_last_error());
    return;
  }
  int n = idoc_ckpt_count(c);
  idoc_arena *a = idoc_arena_new("st", IDOC_DEV_CPU, 1 << 20);
  idoc_st_item *items = calloc((size_t)n, sizeof *items);
  uint64_t total = 0, biggest = 0;
  for (int i = 0; i < n; i++) {
    idoc_tensor *x;
    T_CHECK(!idoc_ckpt_load_new(c, idoc_ckpt_name_at(c, i), a, -1, &x), "load");
    items[i] = (idoc_st_item){idoc_ckpt_name_at(c, i), x};
    total += idoc_nbytes(x);
    if (idoc_nbytes(x) > biggest) biggest = idoc_nbytes(x);
  }
  char dir[512];
  if (keep)
    snprintf(dir, sizeof dir, "%s/sharded", keep);
  else
    tmp_path(dir, sizeof dir, "ckpt");
  // A max that forces three shards (greedy in name order, as transformers splits).
  idoc_st_save_opts o = {.dtype = -1, .max_shard_bytes = total / 3 + 1};
  T_CHECK(!idoc_st_save(dir, items, n, &o), "save sharded: %s", idoc_last_error());
  char p[600];
  snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
  idoc_json_doc *idx = idoc_json_parse_file(p, NULL);
  T_CHECK(idx, "index: %s", idoc_last_error());
  int64_t ts = 0;
  T_CHECK(idx &&
              !idoc_json_get_int64(idoc_json_get(idoc_json_root(idx), "metadata"), "total_size", 0,
                                   INT64_MAX, -1, &ts) &&
              ts == (int64_t)total,
          "total_size %lld vs %llu", (long long)ts, (unsigned long long)total);
  const idoc_json *wm = idoc_json_get(idoc_json_root(idx), "weight_map");
  T_CHECK(wm && (int)wm->n == n, "weight_map size");
  idoc_json_free(idx);
  int shards = count_files(dir, "-of-");
  T_CHECK(shards >= 3, "%d shards", shards);
  T_CHECK(count_files(dir, ".tmp.") == 0, "no temporaries left");
  idoc_ckpt *c2;
  T_CHECK(!idoc_ckpt_open(&c2, dir), "reopen sharded: %s", idoc_last_error());
  if (c2) {
    T_CHECK(idoc_ckpt_count(c2) == n && idoc_ckpt_file_count(c2) == shards, "counts");
    for (int i = 0; i < n; i++) {
      const idoc_st_tensor *t = idoc_ckpt_find(c2, items[i].name);
      T_CHECK(t && same_bytes(items[i].t, t) && t->dtype == (int)items[i].t->dtype, "%s",
              items[i].name);
    }
    // Each shard stays under the limit unless it holds one tensor bigger than the limit.
    for (int s = 1; s <= shards; s++) {
      char sp[700];
      snprintf(sp, sizeof sp, "%s/model-%05d-of-%05d.safetensors", dir, s, shards);
      idoc_st_file *f;
      if (idoc_st_open(&f, sp)) {
        T_CHECK(0, "%s", idoc_last_error());
        continue;
      }
      uint64_t bytes = 0;
      for (int i = 0; i < idoc_st_count(f); i++)
        bytes += idoc_st_tensor_at(f, i)->end - idoc_st_tensor_at(f, i)->begin;
      T_CHECK(bytes <= o.max_shard_bytes || idoc_st_count(f) == 1, "shard %d: %llu bytes", s,
              (unsigned long long)bytes);
      idoc_st_close(f);
    }
    idoc_ckpt_close(c2);
  }
  if (!keep) {
    // Saving unsharded over it removes the index and shards; the result loads the same.
    o.max_shard_bytes = 0;
    T_CHECK(!idoc_st_save(dir, items, n, &o), "save single: %s", idoc_last_error());
    T_CHECK(!idoc_file_exists(p) && count_files(dir, "-of-") == 0,
            "stale index and shards removed");
    T_CHECK(!idoc_ckpt_open(&c2, dir) && idoc_ckpt_file_count(c2) == 1, "reopen single: %s",
            idoc_last_error());
    for (int i = 0; c2 && i < n; i++)
      T_CHECK(same_bytes(items[i].t, idoc_ckpt_find(c2, items[i].name)), "%s", items[i].name);
    idoc_ckpt_close(c2);
    // And sharded again removes model.safetensors.
    o.max_shard_bytes = biggest;
    T_CHECK(!idoc_st_save(dir, items, n, &o), "save sharded again: %s", idoc_last_error());
    snprintf(p, sizeof p, "%s/model.safetensors", dir);
    T_CHECK(!idoc_file_exists(p) && count_files(dir, "-of-") >= 4, "single file removed");
  }
  free(items);
  idoc_arena_free(a);
  idoc_ckpt_close(c);
}

// Re-writes single.safetensors with our writer (dtypes kept, and floats as BF16) for the Python
// cross-check.
static void write_python_check_files(const char *keep) {
  idoc_ckpt *c;
  if (idoc_ckpt_open(&c, FIX "/single.safetensors")) return;
  idoc_arena *a = idoc_arena_new("st", IDOC_DEV_CPU, 1 << 20);
  int n = idoc_ckpt_count(c);
  idoc_st_item *items = calloc((size_t)n, sizeof *items);
  for (int i = 0; i < n; i++) {
    idoc_tensor *x;
    idoc_ckpt_load_new(c, idoc_ckpt_name_at(c, i), a, -1, &x);
    items[i] = (idoc_st_item){idoc_ckpt_name_at(c, i), x};
  }
  char p[600];
  idoc_st_save_opts o = {.dtype = -1};
  snprintf(p, sizeof p, "%s/single_keep.safetensors", keep);
  T_CHECK(!idoc_st_write_file(p, items, n, &o), "%s", idoc_last_error());
  o.dtype = IDOC_BF16;
  snprintf(p, sizeof p, "%s/single_bf16.safetensors", keep);
  T_CHECK(!idoc_st_write_file(p, items, n, &o), "%s", idoc_last_error());
  printf("wrote files for the Python cross-check under %s\n", keep);
  free(items);
  idoc_arena_free(a);
  idoc_ckpt_close(c);
}

// Loading straight into device memory (with conversion) and saving from it.
static void test_cuda(void) {
  if (!idoc_cuda_available()) {
    T_SKIP("no CUDA device: device load/save not tested here");
    return;
  }
  idoc_ckpt *c;
  if (idoc_ckpt_open(&c, FIX "/single.safetensors")) return;
  idoc_arena *g = idoc_arena_new("gpu", idoc_dev_cuda(0), 1 << 20);
  idoc_arena *h = idoc_arena_new("cpu", IDOC_DEV_CPU, 1 << 20);
  for (int dt = 0; dt < 3; dt++) {
    idoc_tensor *xg, *xh;
    T_CHECK(!idoc_ckpt_load_new(c, "f32.odd", g, dt, &xg), "gpu load: %s", idoc_last_error());
    T_CHECK(!idoc_ckpt_load_new(c, "f32.odd", h, dt, &xh), "cpu load: %s", idoc_last_error());
    void *back = malloc(idoc_nbytes(xg));
    idoc_tensor_to_host(xg, back);
    T_CHECK(!memcmp(back, xh->data, idoc_nbytes(xh)), "device load as %s equals host load",
            idoc_dtype_name((idoc_dtype)dt));
    free(back);
    char p[600];
    tmp_path(p, sizeof p, "gpu.safetensors");
    idoc_st_item it = {"w", xg};
    idoc_st_save_opts o = {.dtype = IDOC_F32};
    T_CHECK(!idoc_st_write_file(p, &it, 1, &o), "gpu save: %s", idoc_last_error());
    idoc_ckpt *c2;
    idoc_tensor *y;
    T_CHECK(!idoc_ckpt_open(&c2, p) && !idoc_ckpt_load_new(c2, "w", h, dt, &y) &&
                !memcmp(y->data, xh->data, idoc_nbytes(xh)),
            "saved from the device, reloaded equal");
    idoc_ckpt_close(c2);
  }
  idoc_arena_free(g);
  idoc_arena_free(h);
  idoc_ckpt_close(c);
}

int main(void) {
  snprintf(g_tmp, sizeof g_tmp, "/tmp/idoc_test_safetensors.%ld", (long)getpid());
  idoc_mkdir_p(g_tmp);
  test_single_fixture();
  test_malformed();
  test_normalize();
  test_sharded_fixture();
  test_index_errors();
  test_writer_roundtrip();
  test_save_checkpoint(NULL);
  test_cuda();
  const char *keep = getenv("IDOC_ST_KEEP_DIR");
  if (keep && *keep) {
    idoc_mkdir_p(keep);
    test_save_checkpoint(keep);
    write_python_check_files(keep);
  }
  rm_tree(g_tmp);
  return t_summary("test_safetensors");
}
