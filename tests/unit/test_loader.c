// idoc-requires: hdf5
// The training loader (data/loader.h) over small synthetic splits: the same (seed, epoch, rank)
// gives the same items (indices and pixels) whatever the prefetch depth; epochs and seeds change
// the order; two ranks are disjoint and cover an even split, and an odd split is padded the way
// torch's DistributedSampler pads; a cursor saved mid-epoch continues identically in a fresh
// loader; cursors from another order are refused; resizing gives the right shapes and the values
// of the reference resamplers; errors from the worker thread name the file and sample.
#include <fcntl.h>
#include <hdf5.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "data/dataset.h"
#include "data/image.h"
#include "data/loader.h"
#include "data/synth.h"
#include "data/tfrecord.h"
#include "nn/util.h"
#include "tests/test.h"

static char g_dir[64];
enum { S = 48 }; // sample side in pixels

static void make_split(const char *path, int n) {
  idoc_dataset_info in = {S, S, S, S, "synthetic", "train", 1};
  idoc_dataset_writer *w = idoc_dataset_create(path, &in);
  idoc_synth_opts so = idoc_synth_opts_default();
  so.size = S;
  for (int i = 0; w && i < n; i++) {
    idoc_sample s;
    T_CHECK(idoc_synth_sample(&so, 7, 0, (uint64_t)i, &s, NULL) == 0, "%s", idoc_last_error());
    T_CHECK(idoc_dataset_append(w, &s) == 0, "%s", idoc_last_error());
    idoc_sample_free(&s);
  }
  T_CHECK(w && idoc_dataset_close(w) == 0, "%s", idoc_last_error());
}

typedef struct {
  uint64_t index, epoch, pos;
  uint32_t crc; // CRC-32C of the image bytes and both float maps
} seen;

static uint32_t item_crc(const idoc_loader_item *it) {
  uint32_t c = idoc_crc32c(it->s.image, (size_t)it->s.img_h * it->s.img_w * 3);
  size_t nm = (size_t)it->map_size * it->map_size;
  c = idoc_crc32c_update(c, it->artifact, nm * sizeof(float));
  return idoc_crc32c_update(c, it->misalignment, nm * sizeof(float));
}

// Takes n items; returns 0 when all came.
static int take(idoc_loader *l, int n, seen *out) {
  for (int i = 0; i < n; i++) {
    idoc_loader_item it;
    if (idoc_loader_next(l, &it)) {
      T_CHECK(0, "next %d: %s", i, idoc_last_error());
      return -1;
    }
    out[i] = (seen){it.index, it.epoch, it.pos, item_crc(&it)};
    idoc_loader_item_free(&it);
  }
  return 0;
}

static int same(const seen *a, const seen *b, int n) {
  for (int i = 0; i < n; i++)
    if (a[i].index != b[i].index || a[i].crc != b[i].crc || a[i].epoch != b[i].epoch ||
        a[i].pos != b[i].pos)
      return 0;
  return 1;
}

static idoc_loader *open_l(const char *path, uint64_t seed, int rank, int world, int prefetch) {
  idoc_loader_opts o = {.seed = seed, .rank = rank, .world = world, .prefetch = prefetch};
  idoc_loader *l = idoc_loader_open(path, &o);
  T_CHECK(l != NULL, "%s", idoc_last_error());
  return l;
}

// The pure order function: permutations, epoch/seed dependence, the DistributedSampler layout.
static void test_order(void) {
  enum { N = 10 };
  uint64_t a[N], b[N], c[N];
  // No shuffle: rank r takes r, r + world, ...; the tail pads from the front (torch semantics:
  // indices += indices[:pad]; indices[rank::world]).
  uint64_t got[8];
  T_CHECK(idoc_loader_order(7, 1, 0, 0, 2, false, false, got) == 4, "len");
  T_CHECK(got[0] == 0 && got[1] == 2 && got[2] == 4 && got[3] == 6, "rank 0 of 2, N=7");
  T_CHECK(idoc_loader_order(7, 1, 0, 1, 2, false, false, got) == 4, "len");
  T_CHECK(got[0] == 1 && got[1] == 3 && got[2] == 5 && got[3] == 0, "rank 1 pads with index 0");
  T_CHECK(idoc_loader_order(7, 1, 0, 1, 2, false, true, got) == 3, "drop_last len");
  T_CHECK(got[0] == 1 && got[1] == 3 && got[2] == 5, "drop_last cuts the tail");
  T_CHECK(idoc_loader_order(10, 1, 0, 2, 3, false, false, got) == 4, "len 10/3");
  T_CHECK(got[0] == 2 && got[1] == 5 && got[2] == 8 && got[3] == 1, "rank 2 of 3, N=10");
  T_CHECK(idoc_loader_shard_len(10, 3, false) == 4 && idoc_loader_shard_len(10, 3, true) == 3,
          "shard_len");
  T_CHECK(idoc_loader_order(2, 1, 0, 0, 3, false, true, got) == 0, "drop_last leaves nothing");

  // Shuffled: each epoch a permutation; deterministic; differs across epochs and seeds.
  int distinct_epochs = 0;
  for (uint64_t e = 0; e < 6; e++) {
    idoc_loader_order(N, 42, e, 0, 1, true, false, a);
    idoc_loader_order(N, 42, e, 0, 1, true, false, b);
    T_CHECK(!memcmp(a, b, sizeof a), "epoch %llu deterministic", (unsigned long long)e);
    int hit[N] = {0};
    for (int i = 0; i < N; i++)
      hit[a[i] < N ? a[i] : 0]++;
    int perm = 1;
    for (int i = 0; i < N; i++)
      perm &= hit[i] == 1;
    T_CHECK(perm, "epoch %llu is a permutation", (unsigned long long)e);
    if (e) {
      idoc_loader_order(N, 42, e - 1, 0, 1, true, false, c);
      distinct_epochs += memcmp(a, c, sizeof a) != 0;
    }
  }
  T_CHECK(distinct_epochs == 5, "consecutive epochs differ (%d of 5)", distinct_epochs);
  idoc_loader_order(N, 42, 0, 0, 1, true, false, a);
  idoc_loader_order(N, 43, 0, 0, 1, true, false, b);
  T_CHECK(memcmp(a, b, sizeof a) != 0, "seeds differ");
  // Sharding a shuffled order: both ranks together are the epoch's permutation.
  for (uint64_t e = 0; e < 3; e++) {
    uint64_t r0[5], r1[5];
    idoc_loader_order(N, 5, e, 0, 2, true, false, r0);
    idoc_loader_order(N, 5, e, 1, 2, true, false, r1);
    idoc_loader_order(N, 5, e, 0, 1, true, false, a);
    int ok = 1;
    for (int k = 0; k < 5; k++)
      ok &= r0[k] == a[2 * k] && r1[k] == a[2 * k + 1];
    T_CHECK(ok, "epoch %llu: ranks interleave the world-1 order", (unsigned long long)e);
  }
}

static void test_determinism(const char *path) {
  enum { N = 10, T = 2 * N + 3 }; // crosses two epoch boundaries
  seen a[T], b[T], c[T];
  idoc_loader *l1 = open_l(path, 11, 0, 1, 1), *l2 = open_l(path, 11, 0, 1, 8);
  if (!l1 || !l2) return;
  T_CHECK(idoc_loader_epoch_len(l1) == N, "epoch len");
  take(l1, T, a);
  take(l2, T, b);
  T_CHECK(same(a, b, T), "two loaders (prefetch 1 and 8) give the same items");
  // Each item is the file's sample: pixels equal a direct read (no resizing asked).
  idoc_dataset *ds = idoc_dataset_open(path);
  for (int i = 0; ds && i < N; i++) {
    idoc_sample s;
    idoc_dataset_read(ds, a[i].index, true, &s);
    uint32_t crc = idoc_crc32c(s.image, (size_t)S * S * 3);
    float *f = idoc_xmalloc((size_t)S * S * sizeof(float));
    for (size_t k = 0; k < (size_t)S * S; k++)
      f[k] = s.artifact_map[k] / 255.0f;
    crc = idoc_crc32c_update(crc, f, (size_t)S * S * sizeof(float));
    for (size_t k = 0; k < (size_t)S * S; k++)
      f[k] = s.misalignment_map[k] / 255.0f;
    crc = idoc_crc32c_update(crc, f, (size_t)S * S * sizeof(float));
    T_CHECK(crc == a[i].crc, "item %d = sample %llu of the file", i,
            (unsigned long long)a[i].index);
    free(f);
    idoc_sample_free(&s);
  }
  idoc_dataset_close_reader(ds);
  // Epoch bookkeeping, and each epoch a permutation; epochs 0 and 1 in different orders.
  int perm0[N] = {0}, perm1[N] = {0}, differ = 0;
  for (int i = 0; i < N; i++) {
    T_CHECK(a[i].epoch == 0 && a[i].pos == (uint64_t)i, "epoch 0 pos %d", i);
    T_CHECK(a[N + i].epoch == 1 && a[N + i].pos == (uint64_t)i, "epoch 1 pos %d", i);
    perm0[a[i].index]++, perm1[a[N + i].index]++;
    differ += a[i].index != a[N + i].index;
  }
  int ok = 1;
  for (int i = 0; i < N; i++)
    ok &= perm0[i] == 1 && perm1[i] == 1;
  T_CHECK(ok, "every epoch visits every sample once");
  T_CHECK(differ > 0, "epoch 1 has another order");
  uint64_t order[N];
  idoc_loader_order(N, 11, 1, 0, 1, true, false, order);
  for (int i = 0; i < N; i++)
    T_CHECK(a[N + i].index == order[i], "loader follows idoc_loader_order at epoch 1");
  // Another seed: another order.
  idoc_loader *l3 = open_l(path, 12, 0, 1, 2);
  if (l3) {
    take(l3, N, c);
    int d = 0;
    for (int i = 0; i < N; i++)
      d += c[i].index != a[i].index;
    T_CHECK(d > 0, "seed 12 differs from seed 11");
    idoc_loader_close(l3);
  }
  // No shuffle: file order.
  idoc_loader_opts o = {.seed = 11, .no_shuffle = true};
  idoc_loader *l4 = idoc_loader_open(path, &o);
  if (l4) {
    take(l4, N, c);
    for (int i = 0; i < N; i++)
      T_CHECK(c[i].index == (uint64_t)i, "no_shuffle keeps file order");
    idoc_loader_close(l4);
  }
  // max_items: the order runs over the file's first samples only.
  idoc_loader_opts om = {.seed = 11, .max_items = 4};
  idoc_loader *l5 = idoc_loader_open(path, &om);
  if (l5) {
    T_CHECK(idoc_loader_epoch_len(l5) == 4, "max_items caps the epoch");
    take(l5, 8, c);
    for (int i = 0; i < 8; i++)
      T_CHECK(c[i].index < 4, "max_items: index %llu", (unsigned long long)c[i].index);
    idoc_loader_close(l5);
  }
  idoc_loader_close(l1);
  idoc_loader_close(l2);
}

static void test_sharding(const char *even, const char *odd) {
  for (int f = 0; f < 2; f++) {
    const char *path = f ? odd : even;
    int n = f ? 7 : 10, len = (n + 1) / 2;
    idoc_loader *r0 = open_l(path, 3, 0, 2, 3), *r1 = open_l(path, 3, 1, 2, 3);
    if (!r0 || !r1) return;
    T_CHECK(idoc_loader_epoch_len(r0) == (uint64_t)len &&
                idoc_loader_epoch_len(r1) == (uint64_t)len,
            "N=%d: both ranks get %d", n, len);
    for (int epoch = 0; epoch < 2; epoch++) {
      seen a[8], b[8];
      take(r0, len, a);
      take(r1, len, b);
      int count[10] = {0};
      for (int i = 0; i < len; i++)
        count[a[i].index]++, count[b[i].index]++;
      int covered = 1, dups = 0;
      for (int i = 0; i < n; i++)
        covered &= count[i] >= 1, dups += count[i] > 1 ? count[i] - 1 : 0;
      T_CHECK(covered, "N=%d epoch %d: the two ranks cover the split", n, epoch);
      if (n % 2 == 0) {
        T_CHECK(dups == 0, "N=%d epoch %d: ranks are disjoint", n, epoch);
      } else {
        // world - N % world = 1 padded item: the epoch's first sample again, at rank 1's end.
        T_CHECK(dups == 1 && b[len - 1].index == a[0].index, "N=%d epoch %d: padding", n, epoch);
      }
      // The ranks take alternate positions of the single-rank order.
      uint64_t order[10];
      idoc_loader_order((uint64_t)n, 3, (uint64_t)epoch, 0, 1, true, false, order);
      int ok = 1;
      for (int i = 0; i < len; i++)
        ok &= a[i].index == order[2 * i] && b[i].index == order[(2 * i + 1) % n];
      T_CHECK(ok, "N=%d epoch %d: rank layout", n, epoch);
    }
    idoc_loader_close(r0);
    idoc_loader_close(r1);
  }
  // drop_last on the odd split: 3 each, disjoint, one sample left out.
  idoc_loader_opts o = {.seed = 3, .rank = 1, .world = 2, .drop_last = true};
  idoc_loader *l = idoc_loader_open(odd, &o);
  T_CHECK(l && idoc_loader_epoch_len(l) == 3, "drop_last length");
  idoc_loader_close(l);
  // Rank outside the world, or a world larger than the split with drop_last: errors.
  o = (idoc_loader_opts){.rank = 2, .world = 2};
  T_CHECK(idoc_loader_open(odd, &o) == NULL && strstr(idoc_last_error(), odd), "%s",
          idoc_last_error());
  o = (idoc_loader_opts){.rank = 0, .world = 8, .drop_last = true};
  T_CHECK(idoc_loader_open(odd, &o) == NULL && strstr(idoc_last_error(), "nothing to read"), "%s",
          idoc_last_error());
}

static void test_cursor(const char *path, const char *odd) {
  enum { N = 10, FIRST = 7, NEXT = 8 }; // 5 items per epoch: save at epoch 1 pos 2, run to epoch 3
  seen a[FIRST + NEXT], b[NEXT];
  idoc_loader *l = open_l(path, 21, 1, 2, 4);
  if (!l) return;
  uint64_t len = idoc_loader_epoch_len(l); // 5 per rank
  take(l, FIRST, a);
  idoc_loader_cursor c = idoc_loader_get_cursor(l);
  T_CHECK(c.epoch == FIRST / len && c.pos == FIRST % len && c.seed == 21 && c.rank == 1 &&
              c.world == 2 && c.n == N,
          "cursor %llu/%llu", (unsigned long long)c.epoch, (unsigned long long)c.pos);
  take(l, NEXT, a + FIRST);
  idoc_loader_close(l);

  // A fresh loader (already prefetching from the start) restored to the cursor.
  idoc_loader *f = open_l(path, 21, 1, 2, 4);
  if (!f) return;
  T_CHECK(idoc_loader_set_cursor(f, &c) == 0, "%s", idoc_last_error());
  take(f, NEXT, b);
  T_CHECK(same(a + FIRST, b, NEXT), "restored loader continues identically");
  // A cursor at an epoch boundary (pos 0 of the next epoch) works too.
  idoc_loader_cursor e = idoc_loader_get_cursor(f);
  T_CHECK(e.epoch == 3 && e.pos == 0, "boundary cursor %llu/%llu", (unsigned long long)e.epoch,
          (unsigned long long)e.pos);
  seen x[3], y[3];
  take(f, 3, x);
  idoc_loader *g = open_l(path, 21, 1, 2, 1);
  T_CHECK(g && idoc_loader_set_cursor(g, &e) == 0, "%s", idoc_last_error());
  if (g) {
    take(g, 3, y);
    T_CHECK(same(x, y, 3), "boundary cursor");
    idoc_loader_close(g);
  }
  // Cursors of another order are refused and leave the loader as it was.
  idoc_loader_cursor bad = c;
  bad.seed = 22;
  T_CHECK(idoc_loader_set_cursor(f, &bad) == IDOC_ERR && strstr(idoc_last_error(), "seed 22") &&
              strstr(idoc_last_error(), path),
          "%s", idoc_last_error());
  bad = c, bad.world = 4;
  T_CHECK(idoc_loader_set_cursor(f, &bad) == IDOC_ERR && strstr(idoc_last_error(), "of 4"), "%s",
          idoc_last_error());
  bad = c, bad.rank = 0;
  T_CHECK(idoc_loader_set_cursor(f, &bad) == IDOC_ERR, "other rank");
  bad = c, bad.shuffle = 0;
  T_CHECK(idoc_loader_set_cursor(f, &bad) == IDOC_ERR, "other order mode");
  bad = c, bad.pos = len;
  T_CHECK(idoc_loader_set_cursor(f, &bad) == IDOC_ERR && strstr(idoc_last_error(), "past"), "%s",
          idoc_last_error());
  seen z[1];
  take(f, 1, z);
  T_CHECK(z[0].epoch == 3 && z[0].pos == 3, "refused cursors change nothing");
  idoc_loader_close(f);
  // A cursor from a split of another size.
  idoc_loader *o7 = open_l(odd, 21, 1, 2, 2);
  T_CHECK(o7 && idoc_loader_set_cursor(o7, &c) == IDOC_ERR && strstr(idoc_last_error(), "10 "),
          "%s", idoc_last_error());
  idoc_loader_close(o7);
}

static void test_resize(const char *path) {
  const int sizes[2][2] = {{32, 20}, {80, 64}}; // downscale, upscale (image, maps)
  for (int t = 0; t < 2; t++) {
    idoc_loader_opts o = {.seed = 1, .image_size = sizes[t][0], .map_size = sizes[t][1]};
    idoc_loader *l = idoc_loader_open(path, &o);
    T_CHECK(l != NULL, "%s", idoc_last_error());
    if (!l) return;
    idoc_dataset *ds = idoc_dataset_open(path);
    for (int i = 0; i < 3 && ds; i++) {
      idoc_loader_item it;
      if (idoc_loader_next(l, &it)) break;
      int is = sizes[t][0], ms = sizes[t][1];
      T_CHECK(it.s.img_h == is && it.s.img_w == is, "image %dx%d", it.s.img_h, it.s.img_w);
      T_CHECK(it.map_size == ms, "map size %d", it.map_size);
      T_CHECK(it.s.map_h == S && it.s.map_w == S, "uint8 maps stay native");
      idoc_sample s;
      idoc_dataset_read(ds, it.index, true, &s);
      idoc_image src = {S, S, s.image}, ref;
      idoc_image_resize(&src, is, is, IDOC_RESAMPLE_BICUBIC, &ref);
      T_CHECK(!memcmp(ref.rgb, it.s.image, (size_t)is * is * 3), "image = PIL bicubic resize");
      idoc_image_free(&ref);
      float *f = idoc_xmalloc((size_t)S * S * sizeof(float));
      float *g = idoc_xmalloc((size_t)ms * ms * sizeof(float));
      const uint8_t *maps[2] = {s.artifact_map, s.misalignment_map};
      const float *got[2] = {it.artifact, it.misalignment};
      for (int m = 0; m < 2; m++) {
        for (size_t k = 0; k < (size_t)S * S; k++)
          f[k] = maps[m][k] / 255.0f;
        idoc_resize_linear_f32(f, S, S, g, ms, ms);
        T_CHECK(!memcmp(g, got[m], (size_t)ms * ms * sizeof(float)), "map %d = cv2 linear", m);
        float lo = 1, hi = 0;
        for (size_t k = 0; k < (size_t)ms * ms; k++)
          lo = got[m][k] < lo ? got[m][k] : lo, hi = got[m][k] > hi ? got[m][k] : hi;
        T_CHECK(lo >= 0 && hi <= 1, "map %d in [0, 1]", m);
      }
      free(f), free(g);
      idoc_sample_free(&s);
      idoc_loader_item_free(&it);
    }
    idoc_dataset_close_reader(ds);
    idoc_loader_close(l);
  }
  idoc_loader_opts o = {.image_size = -1};
  T_CHECK(idoc_loader_open(path, &o) == NULL && strstr(idoc_last_error(), path), "%s",
          idoc_last_error());
}

// prepare() runs on the worker for every item before it is handed out; its failure stops the
// loader with the file and sample named.
typedef struct {
  uint64_t fail_index;
} prep_ctx;
static int prepare(void *ctx, idoc_loader_item *it) {
  const prep_ctx *p = ctx;
  if (it->index == p->fail_index) return idoc_set_error("tokenizer said no");
  uint64_t *x = malloc(sizeof *x);
  *x = it->index * 1000 + (uint64_t)it->s.img_h;
  it->extra = x;
  return IDOC_OK;
}

static void test_prepare_and_errors(const char *path) {
  prep_ctx pc = {(uint64_t)-1};
  idoc_loader_opts o = {
      .seed = 4, .image_size = 24, .prepare = prepare, .prepare_ctx = &pc, .free_extra = free};
  idoc_loader *l = idoc_loader_open(path, &o);
  if (!l) return;
  for (int i = 0; i < 12; i++) {
    idoc_loader_item it;
    T_CHECK(idoc_loader_next(l, &it) == 0, "%s", idoc_last_error());
    T_CHECK(it.extra && *(uint64_t *)it.extra == it.index * 1000 + 24, "prepare ran after resize");
    idoc_loader_item_free(&it);
  }
  idoc_loader_close(l);
  uint64_t order[10];
  idoc_loader_order(10, 4, 0, 0, 1, true, false, order);
  pc.fail_index = order[3];
  l = idoc_loader_open(path, &o);
  if (!l) return;
  idoc_loader_item it;
  for (int i = 0; i < 3; i++) {
    T_CHECK(idoc_loader_next(l, &it) == 0, "items before the failure");
    idoc_loader_item_free(&it);
  }
  char want[64];
  snprintf(want, sizeof want, "sample %llu", (unsigned long long)order[3]);
  T_CHECK(idoc_loader_next(l, &it) == IDOC_ERR && strstr(idoc_last_error(), path) &&
              strstr(idoc_last_error(), want) && strstr(idoc_last_error(), "tokenizer said no"),
          "%s", idoc_last_error());
  T_CHECK(idoc_loader_next(l, &it) == IDOC_ERR && strstr(idoc_last_error(), "stopped"), "%s",
          idoc_last_error());
  idoc_loader_close(l);
  // Opening a missing or non-HDF5 file: the dataset reader's error.
  char bad[256];
  snprintf(bad, sizeof bad, "%s/missing.h5", g_dir);
  idoc_loader_opts d = {0};
  T_CHECK(idoc_loader_open(bad, &d) == NULL && strstr(idoc_last_error(), bad), "%s",
          idoc_last_error());
}

// A damaged pixel chunk: the worker's read error reaches next() with file, sample and dataset.
static void test_read_error(const char *good) {
  char bad[256];
  snprintf(bad, sizeof bad, "%s/damaged.h5", g_dir);
  char *data;
  size_t n;
  T_CHECK(idoc_read_file(good, &data, &n) == 0 && idoc_write_file_atomic(bad, data, n) == 0,
          "copy");
  free(data);
  H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
  hid_t f = H5Fopen(bad, H5F_ACC_RDONLY, H5P_DEFAULT);
  hid_t d = H5Dopen2(f, "misalignment_map", H5P_DEFAULT), fs = H5Dget_space(d);
  hsize_t off[3], size = 0;
  haddr_t addr = 0;
  unsigned mask;
  herr_t e = H5Dget_chunk_info(d, fs, 4, off, &mask, &addr, &size);
  H5Sclose(fs), H5Dclose(d), H5Fclose(f);
  T_CHECK(e >= 0 && off[0] == 4 && size > 16, "chunk info");
  int fd = open(bad, O_WRONLY);
  uint8_t junk[16];
  memset(junk, 0x5A, sizeof junk);
  T_CHECK(fd >= 0 && pwrite(fd, junk, sizeof junk, (off_t)(addr + size / 2)) == sizeof junk,
          "damage");
  if (fd >= 0) close(fd);
  idoc_loader_opts o = {.no_shuffle = true, .prefetch = 2};
  idoc_loader *l = idoc_loader_open(bad, &o);
  T_CHECK(l != NULL, "%s", idoc_last_error());
  if (l) {
    idoc_loader_item it;
    for (int i = 0; i < 4; i++) {
      T_CHECK(idoc_loader_next(l, &it) == 0 && it.index == (uint64_t)i, "sample %d before", i);
      idoc_loader_item_free(&it);
    }
    T_CHECK(idoc_loader_next(l, &it) == IDOC_ERR && strstr(idoc_last_error(), bad) &&
                strstr(idoc_last_error(), "sample 4: /misalignment_map"),
            "%s", idoc_last_error());
    idoc_loader_close(l);
  }
  unlink(bad);
}

int main(void) {
  snprintf(g_dir, sizeof g_dir, "/tmp/idoc_test_loader_XXXXXX");
  if (!mkdtemp(g_dir)) {
    perror("mkdtemp");
    return 1;
  }
  char even[256], odd[256];
  snprintf(even, sizeof even, "%s/ten.h5", g_dir);
  snprintf(odd, sizeof odd, "%s/seven.h5", g_dir);
  make_split(even, 10);
  make_split(odd, 7);
  test_order();
  test_determinism(even);
  test_sharding(even, odd);
  test_cursor(even, odd);
  test_resize(even);
  test_prepare_and_errors(even);
  test_read_error(even);
  unlink(even);
  unlink(odd);
  rmdir(g_dir);
  return t_summary("test_loader");
}
