// idoc-requires: hdf5
// The training loader: deterministic sharded order + one background thread with a bounded queue.
#include "data/loader.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "data/dataset.h"
#include "data/image.h"
#include "nn/util.h"

uint64_t idoc_loader_shard_len(uint64_t n, int world, bool drop_last) {
  if (world < 1) return 0;
  return drop_last ? n / (uint64_t)world : (n + (uint64_t)world - 1) / (uint64_t)world;
}

static uint64_t mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ull;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ull;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBull;
  return x ^ (x >> 31);
}

uint64_t idoc_loader_order(uint64_t n, uint64_t seed, uint64_t epoch, int rank, int world,
                           bool shuffle, bool drop_last, uint64_t *out) {
  uint64_t len = idoc_loader_shard_len(n, world, drop_last);
  if (!n || !len || rank < 0 || rank >= world) return 0;
  uint64_t *perm = idoc_xmalloc(n * sizeof *perm);
  for (uint64_t i = 0; i < n; i++)
    perm[i] = i;
  if (shuffle) {
    idoc_rng r;
    idoc_rng_seed(&r, mix(seed) ^ mix(epoch + 0x5EED));
    for (uint64_t i = n - 1; i > 0; i--) {
      uint64_t j = idoc_rng_below(&r, i + 1), t = perm[i];
      perm[i] = perm[j], perm[j] = t;
    }
  }
  for (uint64_t k = 0; k < len; k++)
    out[k] = perm[(k * (uint64_t)world + (uint64_t)rank) % n];
  free(perm);
  return len;
}

typedef struct {
  idoc_loader_item item;
  int failed;
  char err[2048];
} slot;

struct idoc_loader {
  idoc_dataset *ds;
  idoc_loader_opts o;
  uint64_t n, len;
  // consumer position
  uint64_t epoch, pos;
  // queue
  pthread_t thread;
  int running;
  pthread_mutex_t mu;
  pthread_cond_t can_put, can_get;
  slot *q;
  int qcap, qhead, qcount, stop;
  uint64_t start_epoch, start_pos; // where the worker begins
};

void idoc_loader_item_free(idoc_loader_item *it) {
  idoc_sample_free(&it->s);
  free(it->artifact);
  free(it->misalignment);
  if (it->extra && it->free_extra) it->free_extra(it->extra);
  memset(it, 0, sizeof *it);
}

static int resize_map(const uint8_t *src, int h, int w, int size, float **out) {
  size_t n = (size_t)h * w;
  float *f = idoc_xmalloc(n * sizeof *f);
  for (size_t i = 0; i < n; i++)
    f[i] = src[i] / 255.0f;
  if (size <= 0 || (size == h && size == w)) {
    *out = f;
    return IDOC_OK;
  }
  *out = idoc_xmalloc((size_t)size * size * sizeof(float));
  int rc = idoc_resize_linear_f32(f, h, w, *out, size, size);
  free(f);
  return rc;
}

// Reads and prepares one item (on the worker thread).
static int produce(idoc_loader *l, uint64_t index, idoc_loader_item *it) {
  memset(it, 0, sizeof *it);
  it->index = index;
  it->free_extra = l->o.free_extra;
  if (idoc_dataset_read(l->ds, index, true, &it->s)) return IDOC_ERR;
  int is = l->o.image_size;
  if (is > 0 && (it->s.img_h != is || it->s.img_w != is)) {
    idoc_image src = {it->s.img_h, it->s.img_w, it->s.image}, dst;
    if (idoc_image_resize(&src, is, is, IDOC_RESAMPLE_BICUBIC, &dst))
      return idoc_wrap_error("%s: sample %zu", idoc_dataset_path(l->ds), (size_t)index);
    free(it->s.image);
    it->s.image = dst.rgb, it->s.img_h = dst.h, it->s.img_w = dst.w;
  }
  it->map_size = l->o.map_size > 0 ? l->o.map_size : it->s.map_h;
  if (l->o.map_size <= 0 && it->s.map_h != it->s.map_w) it->map_size = 0; // non-square: native
  if (resize_map(it->s.artifact_map, it->s.map_h, it->s.map_w, l->o.map_size, &it->artifact) ||
      resize_map(it->s.misalignment_map, it->s.map_h, it->s.map_w, l->o.map_size,
                 &it->misalignment))
    return idoc_wrap_error("%s: sample %zu", idoc_dataset_path(l->ds), (size_t)index);
  if (l->o.prepare && l->o.prepare(l->o.prepare_ctx, it))
    return idoc_wrap_error("%s: sample %zu", idoc_dataset_path(l->ds), (size_t)index);
  return IDOC_OK;
}

static void *worker(void *arg) {
  idoc_loader *l = arg;
  uint64_t *order = idoc_xmalloc((l->len ? l->len : 1) * sizeof *order);
  uint64_t epoch = l->start_epoch, pos = l->start_pos;
  idoc_loader_order(l->n, l->o.seed, epoch, l->o.rank, l->o.world, !l->o.no_shuffle, l->o.drop_last,
                    order);
  for (;;) {
    if (pos == l->len) {
      epoch++, pos = 0;
      idoc_loader_order(l->n, l->o.seed, epoch, l->o.rank, l->o.world, !l->o.no_shuffle,
                        l->o.drop_last, order);
    }
    slot s = {0};
    if (produce(l, order[pos], &s.item)) {
      idoc_loader_item_free(&s.item);
      s.failed = 1;
      snprintf(s.err, sizeof s.err, "%s", idoc_last_error());
    }
    s.item.epoch = epoch, s.item.pos = pos;
    pthread_mutex_lock(&l->mu);
    while (l->qcount == l->qcap && !l->stop)
      pthread_cond_wait(&l->can_put, &l->mu);
    if (l->stop) {
      pthread_mutex_unlock(&l->mu);
      idoc_loader_item_free(&s.item);
      break;
    }
    l->q[(l->qhead + l->qcount) % l->qcap] = s;
    l->qcount++;
    pthread_cond_signal(&l->can_get);
    int failed = s.failed;
    pthread_mutex_unlock(&l->mu);
    if (failed) break; // the consumer reports it; nothing after an error is produced
    pos++;
  }
  free(order);
  return NULL;
}

static void stop_worker(idoc_loader *l) {
  if (!l->running) return;
  pthread_mutex_lock(&l->mu);
  l->stop = 1;
  pthread_cond_broadcast(&l->can_put);
  pthread_mutex_unlock(&l->mu);
  pthread_join(l->thread, NULL);
  for (int i = 0; i < l->qcount; i++)
    idoc_loader_item_free(&l->q[(l->qhead + i) % l->qcap].item);
  l->qcount = l->qhead = 0;
  l->stop = 0;
  l->running = 0;
}

static int start_worker(idoc_loader *l) {
  l->start_epoch = l->epoch, l->start_pos = l->pos;
  if (pthread_create(&l->thread, NULL, worker, l) != 0)
    return idoc_set_error("%s: cannot start the loader thread", idoc_dataset_path(l->ds));
  l->running = 1;
  return IDOC_OK;
}

idoc_loader *idoc_loader_open(const char *path, const idoc_loader_opts *opts) {
  idoc_loader_opts o = *opts;
  if (o.world <= 0) o.world = 1;
  if (o.prefetch <= 0) o.prefetch = 4;
  if (o.rank < 0 || o.rank >= o.world) {
    idoc_set_error("%s: loader rank %d outside [0, %d)", path, o.rank, o.world);
    return NULL;
  }
  if (o.image_size < 0 || o.image_size > 16384 || o.map_size < 0 || o.map_size > 16384) {
    idoc_set_error("%s: loader image/map size out of range", path);
    return NULL;
  }
  idoc_dataset *ds = idoc_dataset_open(path);
  if (!ds) return NULL;
  idoc_loader *l = idoc_xcalloc(1, sizeof *l);
  l->ds = ds;
  l->o = o;
  l->n = idoc_dataset_len(ds);
  if (o.max_items > 0 && o.max_items < l->n) l->n = o.max_items;
  l->len = idoc_loader_shard_len(l->n, o.world, o.drop_last);
  if (l->len == 0) {
    idoc_set_error("%s: %llu samples give rank %d of %d nothing to read", path,
                   (unsigned long long)l->n, o.rank, o.world);
    idoc_dataset_close_reader(ds);
    free(l);
    return NULL;
  }
  l->qcap = o.prefetch;
  l->q = idoc_xcalloc((size_t)l->qcap, sizeof *l->q);
  pthread_mutex_init(&l->mu, NULL);
  pthread_cond_init(&l->can_put, NULL);
  pthread_cond_init(&l->can_get, NULL);
  if (start_worker(l)) {
    idoc_loader_close(l);
    return NULL;
  }
  return l;
}

void idoc_loader_close(idoc_loader *l) {
  if (!l) return;
  stop_worker(l);
  pthread_mutex_destroy(&l->mu);
  pthread_cond_destroy(&l->can_put);
  pthread_cond_destroy(&l->can_get);
  free(l->q);
  idoc_dataset_close_reader(l->ds);
  free(l);
}

uint64_t idoc_loader_epoch_len(const idoc_loader *l) { return l->len; }

int idoc_loader_next(idoc_loader *l, idoc_loader_item *item) {
  memset(item, 0, sizeof *item);
  if (!l->running)
    return idoc_set_error("%s: the loader stopped after an error", idoc_dataset_path(l->ds));
  pthread_mutex_lock(&l->mu);
  while (l->qcount == 0)
    pthread_cond_wait(&l->can_get, &l->mu);
  slot s = l->q[l->qhead];
  l->qhead = (l->qhead + 1) % l->qcap;
  l->qcount--;
  pthread_cond_signal(&l->can_put);
  pthread_mutex_unlock(&l->mu);
  if (s.failed) {
    stop_worker(l);
    return idoc_set_error("%s", s.err);
  }
  *item = s.item;
  l->pos = item->pos + 1, l->epoch = item->epoch;
  if (l->pos == l->len) l->epoch++, l->pos = 0;
  return IDOC_OK;
}

idoc_loader_cursor idoc_loader_get_cursor(const idoc_loader *l) {
  idoc_loader_cursor c = {l->o.seed, l->epoch,   l->pos,         l->n,
                          l->o.rank, l->o.world, l->o.drop_last, !l->o.no_shuffle};
  return c;
}

int idoc_loader_set_cursor(idoc_loader *l, const idoc_loader_cursor *c) {
  const char *p = idoc_dataset_path(l->ds);
  if (c->seed != l->o.seed || c->n != l->n || c->rank != l->o.rank || c->world != l->o.world ||
      c->drop_last != (int32_t)l->o.drop_last || c->shuffle != (int32_t)!l->o.no_shuffle)
    return idoc_set_error("%s: loader cursor is for seed %llu, %llu samples, rank %d of %d; this "
                          "loader has seed %llu, %llu samples, rank %d of %d",
                          p, (unsigned long long)c->seed, (unsigned long long)c->n, c->rank,
                          c->world, (unsigned long long)l->o.seed, (unsigned long long)l->n,
                          l->o.rank, l->o.world);
  if (c->pos >= l->len)
    return idoc_set_error("%s: loader cursor position %llu is past the epoch length %llu", p,
                          (unsigned long long)c->pos, (unsigned long long)l->len);
  stop_worker(l);
  l->epoch = c->epoch, l->pos = c->pos;
  return start_worker(l);
}
