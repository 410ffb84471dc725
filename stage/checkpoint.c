// idoc-requires: yaml pcre2 utf8proc cjson
#define _DEFAULT_SOURCE
#include "stage/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/json.h"
#include "nn/safetensors.h"
#include "nn/util.h"

static int rm_rf(const char *path) {
  struct stat st;
  if (lstat(path, &st)) return errno == ENOENT ? IDOC_OK : IDOC_ERR;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (!d) return IDOC_ERR;
    struct dirent *e;
    int rc = IDOC_OK;
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char p[4096];
      snprintf(p, sizeof p, "%s/%s", path, e->d_name);
      if (rm_rf(p)) rc = IDOC_ERR;
    }
    closedir(d);
    if (rmdir(path)) rc = IDOC_ERR;
    return rc;
  }
  return unlink(path) ? IDOC_ERR : IDOC_OK;
}

static int save_optimizer(const char *path, const idoc_model_bundle *b, int adam_step) {
  const idoc_params *ps = b->ps;
  idoc_st_item *items = idoc_xcalloc((size_t)ps->n * 2 + 1, sizeof *items);
  char **names = idoc_xcalloc((size_t)ps->n * 2 + 1, sizeof *names);
  int n = 0;
  for (int i = 0; i < ps->n; i++) {
    if (!ps->p[i].trainable || !ps->p[i].m) continue;
    const char *nm = ps->p[i].w->name;
    size_t L = strlen(nm) + 16;
    names[n] = idoc_xmalloc(L);
    snprintf(names[n], L, "exp_avg.%s", nm);
    items[n] = (idoc_st_item){names[n], ps->p[i].m};
    n++;
    names[n] = idoc_xmalloc(L);
    snprintf(names[n], L, "exp_avg_sq.%s", nm);
    items[n] = (idoc_st_item){names[n], ps->p[i].v};
    n++;
  }
  char step[32];
  snprintf(step, sizeof step, "%d", adam_step);
  const char *meta[] = {"adam_step", step, NULL};
  idoc_st_save_opts o = {.dtype = -1, .metadata = meta};
  int rc = idoc_st_write_file(path, items, n, &o);
  for (int i = 0; i < n; i++)
    free(names[i]);
  free(names);
  free(items);
  return rc;
}

static char *state_json(const idoc_trainer_state *st) {
  idoc_json_buf b = {0};
  const idoc_loader_cursor *c = &st->cursor;
  idoc_json_buf_printf(&b,
                       "{\n  \"global_step\": %lld,\n  \"epoch\": %.17g,\n  \"adam_step\": %d,\n"
                       "  \"elapsed\": %.17g,\n  \"loader\": {\"seed\": \"%llu\", \"epoch\": "
                       "\"%llu\", \"pos\": \"%llu\", \"n\": \"%llu\", \"rank\": %d, \"world\": "
                       "%d, \"drop_last\": %d, \"shuffle\": %d},\n  \"rng\": [",
                       (long long)st->global_step, st->epoch, st->adam_step, st->elapsed,
                       (unsigned long long)c->seed, (unsigned long long)c->epoch,
                       (unsigned long long)c->pos, (unsigned long long)c->n, c->rank, c->world,
                       c->drop_last, c->shuffle);
  for (int i = 0; i < 4; i++)
    idoc_json_buf_printf(&b, "%s\"%llu\"", i ? ", " : "", (unsigned long long)st->rng_state[i]);
  idoc_json_buf_puts(&b, "]\n}\n");
  return b.data;
}

int idoc_checkpoint_save(const char *output_dir, const idoc_train_config *cfg,
                         const idoc_model_bundle *b, const idoc_trainer_state *st) {
  char fin[4096], tmp[4200], p[4300];
  snprintf(fin, sizeof fin, "%s/checkpoint-%lld", output_dir, (long long)st->global_step);
  snprintf(tmp, sizeof tmp, "%s.tmp", fin);
  if (rm_rf(tmp)) return idoc_set_error("%s: cannot remove a stale temporary folder", tmp);
  int rc = idoc_model_bundle_save(b, tmp);
  if (!rc) {
    snprintf(p, sizeof p, "%s/optimizer.safetensors", tmp);
    rc = save_optimizer(p, b, st->adam_step);
  }
  if (!rc) {
    snprintf(p, sizeof p, "%s/trainer_state.json", tmp);
    char *js = state_json(st);
    rc = idoc_write_file_atomic(p, js, strlen(js));
    free(js);
  }
  if (!rc) {
    snprintf(p, sizeof p, "%s/training_args.yaml", tmp);
    rc = idoc_config_save(cfg, p);
  }
  if (!rc && rm_rf(fin)) rc = idoc_set_error("%s: cannot replace the old checkpoint", fin);
  if (!rc && rename(tmp, fin)) rc = idoc_set_error("%s: rename failed: %s", fin, strerror(errno));
  if (rc) {
    idoc_wrap_error("saving checkpoint %s", fin);
    rm_rf(tmp);
  }
  return rc;
}

static int get_u64(const idoc_json *o, const char *key, uint64_t *out) {
  const char *s = idoc_json_string(idoc_json_get(o, key));
  if (!s) return IDOC_ERR;
  char *end;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (!*s || *end || errno) return IDOC_ERR;
  *out = v;
  return IDOC_OK;
}

int idoc_checkpoint_load_state(const char *dir, idoc_model_bundle *b, idoc_trainer_state *st) {
  memset(st, 0, sizeof *st);
  char p[4200];
  snprintf(p, sizeof p, "%s/trainer_state.json", dir);
  idoc_json_doc *doc = idoc_json_parse_file(p, NULL);
  if (!doc) return IDOC_ERR;
  const idoc_json *r = idoc_json_root(doc), *l = idoc_json_get(r, "loader"),
                  *rng = idoc_json_get(r, "rng");
  int64_t gs = 0, as = 0, rank = 0, world = 1, dl = 0, sh = 1;
  int rc = IDOC_OK;
  if (idoc_json_get_int64(r, "global_step", 0, INT64_MAX, -1, &gs) || gs < 0 ||
      idoc_json_get_int64(r, "adam_step", 0, INT32_MAX, 0, &as) ||
      idoc_json_get_double(r, "epoch", 0, &st->epoch) ||
      idoc_json_get_double(r, "elapsed", 0, &st->elapsed) || !idoc_json_is(l, IDOC_JSON_OBJECT) ||
      get_u64(l, "seed", &st->cursor.seed) || get_u64(l, "epoch", &st->cursor.epoch) ||
      get_u64(l, "pos", &st->cursor.pos) || get_u64(l, "n", &st->cursor.n) ||
      idoc_json_get_int64(l, "rank", 0, 1 << 20, 0, &rank) ||
      idoc_json_get_int64(l, "world", 1, 1 << 20, 1, &world) ||
      idoc_json_get_int64(l, "drop_last", 0, 1, 0, &dl) ||
      idoc_json_get_int64(l, "shuffle", 0, 1, 1, &sh))
    rc = idoc_set_error("%s: missing or bad field", p);
  for (int i = 0; i < 4 && rc == IDOC_OK && rng; i++) {
    const char *s = idoc_json_string(idoc_json_at(rng, (size_t)i));
    if (!s)
      rc = idoc_set_error("%s: rng[%d]: expected a string", p, i);
    else
      st->rng_state[i] = strtoull(s, NULL, 10);
  }
  idoc_json_free(doc);
  if (rc) return rc;
  st->global_step = gs;
  st->adam_step = (int)as;
  st->cursor.rank = (int32_t)rank;
  st->cursor.world = (int32_t)world;
  st->cursor.drop_last = (int32_t)dl;
  st->cursor.shuffle = (int32_t)sh;
  // optimizer moments
  snprintf(p, sizeof p, "%s/optimizer.safetensors", dir);
  idoc_st_file *f;
  if (idoc_st_open(&f, p)) return IDOC_ERR;
  idoc_params_init_adam(b->ps);
  for (int i = 0; i < b->ps->n && rc == IDOC_OK; i++) {
    idoc_param *pp = &b->ps->p[i];
    if (!pp->trainable) continue;
    char nm[1100];
    const char *kind[2] = {"exp_avg", "exp_avg_sq"};
    idoc_tensor *dst[2] = {pp->m, pp->v};
    for (int k = 0; k < 2 && rc == IDOC_OK; k++) {
      snprintf(nm, sizeof nm, "%s.%s", kind[k], pp->w->name);
      const idoc_st_tensor *t = idoc_st_find(f, nm);
      if (!t)
        rc = idoc_set_error("%s: '%s' is missing (was the parameter frozen when saved?)", p, nm);
      else
        rc = idoc_st_load(t, dst[k]);
    }
  }
  idoc_st_close(f);
  return rc;
}

static long ckpt_step(const char *name) {
  if (strncmp(name, "checkpoint-", 11)) return -1;
  char *end;
  long v = strtol(name + 11, &end, 10);
  return *end || end == name + 11 ? -1 : v;
}

// Steps of the checkpoint folders in dir, ascending.
static int list_ckpts(const char *dir, long **steps) {
  *steps = NULL;
  DIR *d = opendir(dir);
  if (!d) return 0;
  int n = 0, cap = 0;
  struct dirent *e;
  while ((e = readdir(d))) {
    long s = ckpt_step(e->d_name);
    if (s < 0) continue;
    if (n == cap) *steps = idoc_xrealloc(*steps, (size_t)(cap = cap * 2 + 8) * sizeof(long));
    (*steps)[n++] = s;
  }
  closedir(d);
  for (int i = 1; i < n; i++) // insertion sort: a handful of folders
    for (int j = i; j > 0 && (*steps)[j - 1] > (*steps)[j]; j--) {
      long t = (*steps)[j];
      (*steps)[j] = (*steps)[j - 1];
      (*steps)[j - 1] = t;
    }
  return n;
}

int idoc_checkpoint_latest(const char *output_dir, char *out, size_t n) {
  long *s;
  int k = list_ckpts(output_dir, &s);
  if (k == 0) {
    free(s);
    return idoc_set_error("%s: no checkpoint-N folder to resume from", output_dir);
  }
  snprintf(out, n, "%s/checkpoint-%ld", output_dir, s[k - 1]);
  free(s);
  return IDOC_OK;
}

int idoc_checkpoint_rotate(const char *output_dir, int limit) {
  if (limit <= 0) return IDOC_OK;
  long *s;
  int k = list_ckpts(output_dir, &s), rc = IDOC_OK;
  for (int i = 0; i + limit < k; i++) {
    char p[4096];
    snprintf(p, sizeof p, "%s/checkpoint-%ld", output_dir, s[i]);
    if (rm_rf(p)) rc = idoc_set_error("%s: cannot remove an old checkpoint", p);
  }
  free(s);
  return rc;
}
