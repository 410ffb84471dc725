// The training loader: reads an HDF5 split (data/dataset.h) in a seeded order per epoch, shards
// it across ranks, and decodes/resizes/prepares samples on a background thread ahead of use.
//
// Order: epoch e uses a Fisher-Yates permutation of [0, N) seeded from (seed, e) (identity when
// shuffle is off). Like torch's DistributedSampler, the permuted list is padded with its own
// first entries to a multiple of world (or cut to one with drop_last) and rank r takes positions
// r, r + world, r + 2 world, ... So every rank gets the same count, and the ranks are disjoint
// and cover the split when N % world == 0; otherwise the padding repeats world - N % world
// samples (drop_last leaves N % world out instead). Everything is a function of (seed, epoch, rank,
// world, N): two runs give the same items in the same order, whatever the thread timing.
// idoc-requires: hdf5
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/sample.h"

typedef struct idoc_loader_item idoc_loader_item;
// Runs on the loader thread after decoding/resizing (e.g. tokenizing); may set item->extra.
typedef int (*idoc_loader_prepare_fn)(void *ctx, idoc_loader_item *item);

typedef struct {
  uint64_t seed;
  int rank, world;    // default 0, 1
  bool no_shuffle;    // keep file order
  bool drop_last;     // cut instead of padding to a multiple of world
  uint64_t max_items; // > 0: only the file's first max_items samples (LLaMA-Factory max_samples)
  int prefetch;       // items decoded ahead (default 4)
  int image_size;     // > 0: resize the image to this square (PIL bicubic, as the processor)
  int map_size;       // > 0: float maps resized (cv2 INTER_LINEAR) to this square, else native
  idoc_loader_prepare_fn prepare;
  void *prepare_ctx;
  void (*free_extra)(void *extra);
} idoc_loader_opts;

struct idoc_loader_item {
  idoc_sample s;                  // image at image_size (or native), uint8 maps native
  size_t index;                   // sample index in the file
  uint64_t epoch, pos;            // position in this rank's order
  int map_size;                   // side of the float maps
  float *artifact, *misalignment; // [map_size^2], values / 255
  void *extra;                    // from prepare()
  void (*free_extra)(void *extra);
};
void idoc_loader_item_free(idoc_loader_item *it);

// Where a consumer is: the next item to hand out, and the identity of the order it belongs to.
typedef struct {
  uint64_t seed, epoch, pos, n;
  int32_t rank, world, drop_last, shuffle;
} idoc_loader_cursor;

typedef struct idoc_loader idoc_loader;

idoc_loader *idoc_loader_open(const char *path, const idoc_loader_opts *opts);
void idoc_loader_close(idoc_loader *l);
// Items per epoch for this rank.
uint64_t idoc_loader_epoch_len(const idoc_loader *l);
// The next item (epochs roll over). IDOC_ERR with the file and sample named on a read error.
int idoc_loader_next(idoc_loader *l, idoc_loader_item *item);
// Cursor save / restore (restore restarts the background thread at the cursor). Restoring a
// cursor made with another seed, world size, rank, order mode or sample count is an error.
idoc_loader_cursor idoc_loader_get_cursor(const idoc_loader *l);
int idoc_loader_set_cursor(idoc_loader *l, const idoc_loader_cursor *c);

// The order itself (no I/O): writes this rank's sample indices for the epoch to out (length
// idoc_loader_shard_len) and returns that length.
uint64_t idoc_loader_shard_len(uint64_t n, int world, bool drop_last);
uint64_t idoc_loader_order(uint64_t n, uint64_t seed, uint64_t epoch, int rank, int world,
                           bool shuffle, bool drop_last, uint64_t *out);
