// idoc-requires: yaml pcre2 utf8proc cjson
#define _DEFAULT_SOURCE
#include "stage/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/json.h"
#include "nn/safetensors.h"
#include "nn/util.h"
#include "stage/sealed_dir.h"

// The moments of parameter i: the given ones (ZeRO-1 gathers them) or the parameter's own.
static idoc_tensor *moment(const idoc_model_bundle *b, idoc_tensor *const *moments, int i, int k) {
  if (moments) return moments[2 * i + k];
  return k ? b->ps->p[i].v : b->ps->p[i].m;
}

static int save_optimizer(const char *path, const idoc_model_bundle *b, idoc_tensor *const *moments,
                          idoc_tensor *const *masters, int adam_step) {
  const idoc_params *ps = b->ps;
  idoc_st_item *items = idoc_xcalloc((size_t)ps->n * 3 + 1, sizeof *items);
  char **names = idoc_xcalloc((size_t)ps->n * 3 + 1, sizeof *names);
  int n = 0;
  for (int i = 0; i < ps->n; i++) {
    if (masters && masters[i]) { // fp32 masters of bf16 weights: resume continues from them
      size_t L = strlen(ps->p[i].w->name) + 16;
      names[n] = idoc_xmalloc(L);
      snprintf(names[n], L, "master.%s", ps->p[i].w->name);
      items[n] = (idoc_st_item){names[n], masters[i]};
      n++;
    }
    if (!ps->p[i].trainable || !moment(b, moments, i, 0)) continue;
    const char *nm = ps->p[i].w->name;
    size_t L = strlen(nm) + 16;
    names[n] = idoc_xmalloc(L);
    snprintf(names[n], L, "exp_avg.%s", nm);
    items[n] = (idoc_st_item){names[n], moment(b, moments, i, 0)};
    n++;
    names[n] = idoc_xmalloc(L);
    snprintf(names[n], L, "exp_avg_sq.%s", nm);
    items[n] = (idoc_st_item){names[n], moment(b, moments, i, 1)};
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
  // The trainer's running sums (partial logging window): %.17g reads back bit for bit.
  idoc_json_buf_printf(&b, "],\n  \"nonfinite_in_a_row\": %d,\n  \"window\": [",
                       st->nonfinite_in_a_row);
  for (int i = 0; i < st->n_window; i++)
    idoc_json_buf_printf(&b, "%s%.17g", i ? ", " : "", st->window[i]);
  idoc_json_buf_puts(&b, "]\n}\n");
  return b.data;
}

int idoc_bundle_check_finite(const idoc_model_bundle *b, const char *where) {
  return idoc_bundle_check_finite_with(b, NULL, where);
}

int idoc_bundle_check_finite_with(const idoc_model_bundle *b, idoc_tensor *const *moments,
                                  const char *where) {
  const idoc_params *ps = b->ps;
  float *buf = NULL;
  size_t cap = 0;
  int rc = IDOC_OK;
  for (int i = 0; i < ps->n && rc == IDOC_OK; i++) {
    const idoc_tensor *ts[3] = {ps->p[i].w, moment(b, moments, i, 0), moment(b, moments, i, 1)};
    const char *kind[3] = {"", "exp_avg.", "exp_avg_sq."};
    for (int k = 0; k < 3 && rc == IDOC_OK; k++) {
      const idoc_tensor *t = ts[k];
      if (!t || (t->dtype != IDOC_F32 && t->dtype != IDOC_BF16 && t->dtype != IDOC_F16)) continue;
      size_t n = (size_t)idoc_numel(t);
      if (n > cap) buf = idoc_xrealloc(buf, (cap = n) * sizeof(float));
      idoc_tensor_to_host(t, buf); // 16-bit types use the first half of buf
      const uint16_t *h = (const uint16_t *)buf;
      size_t bad = 0;
      for (size_t j = 0; j < n; j++)
        bad += t->dtype == IDOC_F32    ? !isfinite(buf[j])
               : t->dtype == IDOC_BF16 ? !isfinite(idoc_bf16_to_f32(h[j]))
                                       : !isfinite(idoc_f16_to_f32(h[j]));
      if (bad)
        rc = idoc_set_error("%s: tensor '%s%s' has %zu non-finite values of %zu: refusing to "
                            "write it",
                            where, kind[k], ps->p[i].w->name, bad, n);
    }
  }
  free(buf);
  return rc;
}

int idoc_checkpoint_save(const char *output_dir, const idoc_train_config *cfg,
                         const idoc_model_bundle *b, const idoc_trainer_state *st,
                         idoc_tensor *const *moments, idoc_tensor *const *masters) {
  char fin[4096], tmp[4200], p[4300];
  snprintf(fin, sizeof fin, "%s/checkpoint-%lld", output_dir, (long long)st->global_step);
  snprintf(tmp, sizeof tmp, "%s.tmp", fin);
  int rc = idoc_bundle_check_finite_with(b, moments, fin);
  for (int i = 0; i < st->n_window && rc == IDOC_OK; i++)
    if (!isfinite(st->window[i]))
      rc = idoc_set_error("%s: trainer state window[%d] is not finite", fin, i);
  if (rc == IDOC_OK && idoc_rm_rf(tmp))
    rc = idoc_set_error("%s: cannot remove a stale temporary folder: %s", tmp, strerror(errno));
  if (!rc) rc = idoc_model_bundle_save(b, tmp);
  if (!rc) {
    snprintf(p, sizeof p, "%s/optimizer.safetensors", tmp);
    rc = save_optimizer(p, b, moments, masters, st->adam_step);
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
  // The manifest last: only a folder with every file in it is a checkpoint.
  if (!rc) rc = idoc_sealed_seal(tmp, st->global_step, 0);
  if (!rc) rc = idoc_sealed_replace(tmp, fin);
  if (rc) {
    idoc_wrap_error("saving checkpoint %s", fin);
    idoc_rm_rf(tmp);
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

int idoc_checkpoint_load_trainer_state(const char *dir, idoc_trainer_state *st) {
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
  const idoc_json *win = idoc_json_get(r, "window");
  int64_t nf = 0;
  if (rc == IDOC_OK && idoc_json_get_int64(r, "nonfinite_in_a_row", 0, INT32_MAX, 0, &nf))
    rc = idoc_wrap_error("%s", p);
  st->nonfinite_in_a_row = (int)nf;
  if (rc == IDOC_OK && win) {
    if (!idoc_json_is(win, IDOC_JSON_ARRAY) || win->n > IDOC_STATE_WINDOW)
      rc = idoc_set_error("%s: window: expected at most %d numbers", p, IDOC_STATE_WINDOW);
    for (uint32_t i = 0; rc == IDOC_OK && i < win->n; i++)
      if (idoc_json_as_double(idoc_json_at(win, i), &st->window[i]))
        rc = idoc_wrap_error("%s: window[%u]", p, i);
    if (rc == IDOC_OK) st->n_window = (int)win->n;
  }
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
  return IDOC_OK;
}

int idoc_checkpoint_load_state(const char *dir, idoc_model_bundle *b, idoc_trainer_state *st) {
  if (idoc_checkpoint_load_trainer_state(dir, st)) return IDOC_ERR;
  char p[4200];
  int rc = IDOC_OK;
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

int idoc_checkpoint_latest(const char *output_dir, char *out, size_t n, bool verbose) {
  long *s;
  int k = list_ckpts(output_dir, &s);
  char skipped[1024] = "";
  for (int i = k - 1; i >= 0; i--) {
    char why[512];
    snprintf(out, n, "%s/checkpoint-%ld", output_dir, s[i]);
    if (idoc_sealed_complete(out, NULL, NULL, why, sizeof why)) {
      free(s);
      return IDOC_OK;
    }
    if (verbose) fprintf(stderr, "resume: skipping %s: %s\n", out, why);
    size_t l = strlen(skipped);
    snprintf(skipped + l, sizeof skipped - l, "%scheckpoint-%ld (%s)", l ? ", " : "", s[i], why);
  }
  free(s);
  out[0] = 0;
  if (k == 0) return idoc_set_error("%s: no checkpoint-N folder to resume from", output_dir);
  return idoc_set_error("%s: no complete checkpoint-N folder to resume from (skipped %s)",
                        output_dir, skipped);
}

int idoc_checkpoint_rotate(const char *output_dir, int limit) {
  if (limit <= 0) return IDOC_OK;
  long *s;
  int k = list_ckpts(output_dir, &s), rc = IDOC_OK;
  for (int i = 0; i + limit < k && rc == IDOC_OK; i++) {
    char p[4096];
    snprintf(p, sizeof p, "%s/checkpoint-%ld", output_dir, s[i]);
    rc = idoc_sealed_remove(p);
    if (rc) idoc_wrap_error("save_total_limit: removing an old checkpoint");
  }
  free(s);
  return rc;
}
