// idoc-requires: pcre2 utf8proc cjson
#include "stage/dump.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/util.h"

int idoc_dump_init(const char *dir, const idoc_imagedoctor *m) {
  char p[4096];
  snprintf(p, sizeof p, "%s/init", dir);
  if (idoc_mkdir_p(p)) return idoc_wrap_error("dump_batches: %s", p);
  if (idoc_imagedoctor_save(m, p)) return idoc_wrap_error("dump_batches: %s", p);
  return IDOC_OK;
}

void idoc_dump_begin(idoc_dump_file *f) {
  memset(f, 0, sizeof *f);
  f->a = idoc_arena_new("dump", IDOC_DEV_CPU, (size_t)1 << 20);
}

void idoc_dump_add(idoc_dump_file *f, int dt, const void *data, int ndim, const int64_t *shape,
                   const char *fmt, ...) {
  if (f->n == f->cap) {
    f->cap = f->cap ? 2 * f->cap : 32;
    f->items = idoc_xrealloc(f->items, (size_t)f->cap * sizeof *f->items);
    f->names = idoc_xrealloc(f->names, (size_t)f->cap * sizeof *f->names);
  }
  char name[128];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(name, sizeof name, fmt, ap);
  va_end(ap);
  idoc_tensor *t = idoc_tensor_new(f->a, (idoc_dtype)dt, ndim, shape);
  idoc_tensor_from_host(t, data);
  f->names[f->n] = idoc_xstrdup(name);
  f->items[f->n] = (idoc_st_item){f->names[f->n], t};
  f->n++;
}

int idoc_dump_end(idoc_dump_file *f, const char *dir, int64_t step, const char *const *metadata) {
  char p[4096];
  snprintf(p, sizeof p, "%s/step_%05lld.safetensors", dir, (long long)step);
  idoc_st_save_opts o = {-1, 0, metadata};
  int rc = idoc_mkdir_p(dir) ? IDOC_ERR : idoc_st_write_file(p, f->items, f->n, &o);
  if (rc) idoc_wrap_error("dump_batches: %s", p);
  for (int i = 0; i < f->n; i++)
    free(f->names[i]);
  free(f->names);
  free(f->items);
  idoc_arena_free(f->a);
  memset(f, 0, sizeof *f);
  return rc;
}

int idoc_dump_sft_step(const char *dir, int64_t step, idoc_sft_example *const *ex, int n,
                       int micro_batches) {
  idoc_dump_file f;
  idoc_dump_begin(&f);
  for (int k = 0; k < n; k++) {
    const idoc_sft_example *e = ex[k];
    int64_t len = e->n, pix[2] = {e->n_patches, 1176}, three = 3, map[2] = {e->map_h, e->map_w};
    idoc_dump_add(&f, IDOC_I32, e->ids, 1, &len, "e%d.ids", k);
    idoc_dump_add(&f, IDOC_I32, e->labels, 1, &len, "e%d.labels", k);
    idoc_dump_add(&f, IDOC_F32, e->pixels, 2, pix, "e%d.pixels", k);
    idoc_dump_add(&f, IDOC_I32, e->grid, 1, &three, "e%d.grid", k);
    if (e->gt_mis) idoc_dump_add(&f, IDOC_F32, e->gt_mis, 2, map, "e%d.gt_mis", k);
    if (e->gt_art) idoc_dump_add(&f, IDOC_F32, e->gt_art, 2, map, "e%d.gt_art", k);
  }
  char ns[24], nm[24];
  snprintf(ns, sizeof ns, "%d", n);
  snprintf(nm, sizeof nm, "%d", micro_batches);
  const char *meta[] = {"examples", ns, "micro_batches", nm, NULL};
  return idoc_dump_end(&f, dir, step, meta);
}
