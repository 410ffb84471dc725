// Tensors, devices and arenas. A tensor is a dtype, a device, a shape and contiguous storage;
// views share storage. All memory comes from arenas: parameters and optimizer state once, per-step
// activations from an arena reset after every optimizer step, so the training loop never mallocs.
#pragma once
#include "kernels/util.h"

// F64 only for the data-parallel gradient sums (stage/dist.c); kernels take f32/bf16/f16.
typedef enum {
  IDOC_F32 = 0,
  IDOC_BF16,
  IDOC_F16,
  IDOC_I32,
  IDOC_I64,
  IDOC_U8,
  IDOC_F64
} idoc_dtype;
typedef enum { IDOC_CPU = 0, IDOC_CUDA = 1 } idoc_devkind;
typedef struct {
  idoc_devkind kind;
  int index;
} idoc_device;
#define IDOC_DEV_CPU ((idoc_device){IDOC_CPU, 0})
static inline idoc_device idoc_dev_cuda(int i) {
  idoc_device d = {IDOC_CUDA, i};
  return d;
}
static inline bool idoc_dev_eq(idoc_device a, idoc_device b) {
  return a.kind == b.kind && a.index == b.index;
}

size_t idoc_dtype_size(idoc_dtype t);
const char *idoc_dtype_name(idoc_dtype t);
const char *idoc_device_name(idoc_device d); // "cpu", "cuda:0"
// "auto" (a real GPU when one is present, never the simulator; else the CPU), "cpu", "cuda",
// "cuda:N" (N in 0..7) into *dev (may be NULL); IDOC_ERR for anything else. No device check.
int idoc_device_parse(const char *s, idoc_device *dev);

// ---- arenas -------------------------------------------------------------------------------
// A bump allocator over a list of blocks on one device. Growing adds a block (a real malloc or
// cudaMalloc); reset keeps the blocks, so after the first training step nothing is allocated.
// Tensor headers and tape nodes live in the arena's host-side companion blocks.
typedef struct idoc_arena idoc_arena;
typedef struct {
  int block, host_block;
  size_t off, host_off;
} idoc_arena_mark;

idoc_arena *idoc_arena_new(const char *name, idoc_device dev, size_t block_bytes);
// An arena whose blocks start at `first_block` bytes and double (each new block as large as all
// earlier ones together) up to block_bytes: a store whose final size is unknown (parameters)
// stays small when it is small, and needs few allocations when it is large.
idoc_arena *idoc_arena_new_growing(const char *name, idoc_device dev, size_t first_block,
                                   size_t block_bytes);
void idoc_arena_free(idoc_arena *a);
void *idoc_arena_alloc(idoc_arena *a, size_t bytes);      // device memory, 256-byte aligned
void *idoc_arena_alloc_host(idoc_arena *a, size_t bytes); // host memory, 64-byte aligned, zeroed
idoc_arena_mark idoc_arena_get_mark(const idoc_arena *a);
void idoc_arena_reset_to(idoc_arena *a, idoc_arena_mark m);
void idoc_arena_reset(idoc_arena *a);
// Zeroes every device byte allocated from the arena so far (one memset per block).
void idoc_arena_zero(idoc_arena *a);
size_t idoc_arena_used(const idoc_arena *a);          // device bytes in use now
size_t idoc_arena_peak(const idoc_arena *a);          // high-water mark
size_t idoc_arena_system_allocs(const idoc_arena *a); // blocks ever allocated (malloc calls)
idoc_device idoc_arena_device(const idoc_arena *a);

// ---- tensors ------------------------------------------------------------------------------
#define IDOC_MAX_DIMS 6
typedef struct idoc_tensor idoc_tensor;
struct idoc_tensor {
  void *data;
  int64_t shape[IDOC_MAX_DIMS];
  int ndim;
  idoc_dtype dtype;
  idoc_device dev;
  bool requires_grad;
  idoc_tensor *grad; // same shape/dtype/device; NULL until a gradient reaches it
  const char *name;  // parameter name (Hugging Face tensor name), or NULL
};

// New tensor (uninitialized data) with header and storage from arena `a`.
idoc_tensor *idoc_tensor_new(idoc_arena *a, idoc_dtype dt, int ndim, const int64_t *shape);
idoc_tensor *idoc_tensor_zeros(idoc_arena *a, idoc_dtype dt, int ndim, const int64_t *shape);
// Convenience constructors: idoc_tensor_2d(a, IDOC_F32, rows, cols) etc.
idoc_tensor *idoc_tensor_1d(idoc_arena *a, idoc_dtype dt, int64_t d0);
idoc_tensor *idoc_tensor_2d(idoc_arena *a, idoc_dtype dt, int64_t d0, int64_t d1);
idoc_tensor *idoc_tensor_3d(idoc_arena *a, idoc_dtype dt, int64_t d0, int64_t d1, int64_t d2);
idoc_tensor *idoc_tensor_4d(idoc_arena *a, idoc_dtype dt, int64_t d0, int64_t d1, int64_t d2,
                            int64_t d3);
// A tensor of the same dtype/shape/device as `like`.
idoc_tensor *idoc_tensor_like(idoc_arena *a, const idoc_tensor *like);
idoc_tensor *idoc_tensor_zeros_like(idoc_arena *a, const idoc_tensor *like);
// A header over existing storage (no copy); `a` only provides the header. Data pointer may be
// host or device memory as `dev` says.
idoc_tensor *idoc_tensor_wrap(idoc_arena *a, void *data, idoc_dtype dt, idoc_device dev, int ndim,
                              const int64_t *shape);
// A view with another shape and the same storage (numel must match). Not recorded on the tape:
// use idoc_reshape (nn/ops.h) when gradients must flow through it.
idoc_tensor *idoc_tensor_view(idoc_arena *a, const idoc_tensor *t, int ndim, const int64_t *shape);
// A view of rows [start, start+len) along dim 0 (contiguous, no copy).
idoc_tensor *idoc_tensor_rows(idoc_arena *a, const idoc_tensor *t, int64_t start, int64_t len);

int64_t idoc_numel(const idoc_tensor *t);
size_t idoc_nbytes(const idoc_tensor *t);
// Product of dims [from, ndim) and [0, to).
int64_t idoc_inner(const idoc_tensor *t, int from);
int64_t idoc_outer(const idoc_tensor *t, int to);
bool idoc_same_shape(const idoc_tensor *a, const idoc_tensor *b);
// "f32[2,3]@cpu" into buf; returns buf.
const char *idoc_tensor_desc(const idoc_tensor *t, char *buf, size_t n);
#define IDOC_F(t) ((float *)(t)->data)
#define IDOC_I(t) ((int32_t *)(t)->data)

// Data movement (any device pair, dtype must match unless noted).
void idoc_tensor_zero(idoc_tensor *t);
void idoc_tensor_fill(idoc_tensor *t, float v);
void idoc_tensor_copy(idoc_tensor *dst, const idoc_tensor *src);
// Elementwise dtype conversion between f32/bf16/f16 (also across devices via a staging copy).
void idoc_tensor_convert(idoc_tensor *dst, const idoc_tensor *src);
// Copy raw host bytes in / out (dst/src on any device).
void idoc_tensor_from_host(idoc_tensor *t, const void *host);
void idoc_tensor_to_host(const idoc_tensor *t, void *host);
// Read one element as float (any dtype/device; slow, for tests and logging).
float idoc_tensor_get(const idoc_tensor *t, int64_t i);
// Fill with N(0, std) or U(lo, hi) from the RNG (host-generated, then copied).
void idoc_tensor_normal(idoc_tensor *t, idoc_rng *r, float mean, float std);
void idoc_tensor_uniform(idoc_tensor *t, idoc_rng *r, float lo, float hi);
