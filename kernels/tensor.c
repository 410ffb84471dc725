#include "kernels/tensor.h"

#include <stdlib.h>
#include <string.h>

#include "kernels/ops.h"

size_t idoc_dtype_size(idoc_dtype t) {
  switch (t) {
  case IDOC_F32: return 4;
  case IDOC_BF16: return 2;
  case IDOC_F16: return 2;
  case IDOC_I32: return 4;
  case IDOC_I64: return 8;
  case IDOC_U8: return 1;
  case IDOC_F64: return 8;
  }
  idoc_die("bad dtype %d", (int)t);
}

const char *idoc_dtype_name(idoc_dtype t) {
  static const char *names[] = {"f32", "bf16", "f16", "i32", "i64", "u8", "f64"};
  return (unsigned)t < 7 ? names[t] : "?";
}

const char *idoc_device_name(idoc_device d) {
  static const char *cuda[] = {"cuda:0", "cuda:1", "cuda:2", "cuda:3",
                               "cuda:4", "cuda:5", "cuda:6", "cuda:7"};
  if (d.kind == IDOC_CPU) return "cpu";
  return (unsigned)d.index < 8 ? cuda[d.index] : "cuda:?";
}

int idoc_device_parse(const char *s, idoc_device *dev) {
  idoc_device d = IDOC_DEV_CPU;
  if (!s) return IDOC_ERR;
  if (!strcmp(s, "auto")) {
    // The simulator is a test tool, slower than the CPU by far: only named (device=cuda) it runs.
    if (idoc_cuda_available() && !idoc_cuda_simulated()) d = idoc_dev_cuda(0);
  } else if (!strcmp(s, "cuda")) {
    d = idoc_dev_cuda(0);
  } else if (!strncmp(s, "cuda:", 5)) {
    char *end;
    long i = strtol(s + 5, &end, 10);
    if (end == s + 5 || *end || i < 0 || i > 7) return IDOC_ERR; // device names stop at cuda:7
    d = idoc_dev_cuda((int)i);
  } else if (strcmp(s, "cpu")) {
    return IDOC_ERR;
  }
  if (dev) *dev = d;
  return IDOC_OK;
}

// ---- arenas -----------------------------------------------------------------------------------
typedef struct {
  char *base;
  size_t size;
} arena_block;

typedef struct {
  arena_block *b;
  int n, cap;
  int cur;    // block being filled
  size_t off; // offset in the current block
} block_list;

struct idoc_arena {
  char name[32];
  idoc_device dev;
  size_t block_bytes, grow_from; // grow_from 0: every block is block_bytes (or the request)
  block_list mem, host;
  size_t used, peak, host_used, system_allocs;
};

static void *dev_alloc(idoc_device dev, size_t n) {
  if (dev.kind == IDOC_CUDA) return idoc_cuda_malloc(n);
  void *p = NULL;
  IDOC_CHECK(posix_memalign(&p, 256, n) == 0, "out of memory: %zu bytes", n);
  return p;
}
static void dev_free(idoc_device dev, void *p) {
  if (dev.kind == IDOC_CUDA)
    idoc_cuda_free(p);
  else
    free(p);
}

idoc_arena *idoc_arena_new(const char *name, idoc_device dev, size_t block_bytes) {
  idoc_arena *a = idoc_xcalloc(1, sizeof *a);
  snprintf(a->name, sizeof a->name, "%s", name);
  a->dev = dev;
  a->block_bytes = block_bytes ? block_bytes : ((size_t)64 << 20);
  return a;
}

idoc_arena *idoc_arena_new_growing(const char *name, idoc_device dev, size_t first_block,
                                   size_t block_bytes) {
  idoc_arena *a = idoc_arena_new(name, dev, block_bytes);
  a->grow_from = first_block < a->block_bytes ? first_block : a->block_bytes;
  return a;
}

static void list_free(block_list *l, idoc_device dev) {
  for (int i = 0; i < l->n; i++)
    dev_free(dev, l->b[i].base);
  free(l->b);
}

void idoc_arena_free(idoc_arena *a) {
  if (!a) return;
  list_free(&a->mem, a->dev);
  list_free(&a->host, IDOC_DEV_CPU);
  free(a);
}

static void *list_alloc(idoc_arena *a, block_list *l, idoc_device dev, size_t bytes, size_t align,
                        size_t min_block) {
  bytes = (bytes + align - 1) / align * align;
  if (bytes == 0) bytes = align;
  while (l->cur < l->n) {
    arena_block *b = &l->b[l->cur];
    if (l->off + bytes <= b->size) {
      void *p = b->base + l->off;
      l->off += bytes;
      return p;
    }
    l->cur++;
    l->off = 0;
  }
  // No existing block fits: add one (only happens while the arena is still growing).
  if (l->n == l->cap) {
    l->cap = l->cap ? 2 * l->cap : 8;
    l->b = idoc_xrealloc(l->b, (size_t)l->cap * sizeof *l->b);
  }
  size_t size = bytes > min_block ? bytes : min_block;
  l->b[l->n].base = dev_alloc(dev, size);
  l->b[l->n].size = size;
  a->system_allocs++;
  l->cur = l->n++;
  l->off = bytes;
  return l->b[l->cur].base;
}

// Bytes below (cur, off): whole earlier blocks plus the offset in the current one.
static size_t used_upto(const block_list *l, int cur, size_t off) {
  size_t u = 0;
  for (int i = 0; i < cur && i < l->n; i++)
    u += l->b[i].size;
  return u + off;
}

// The minimum size of the next device block.
static size_t next_block(const idoc_arena *a) {
  if (!a->grow_from) return a->block_bytes;
  size_t have = used_upto(&a->mem, a->mem.n, 0);
  size_t b = have > a->grow_from ? have : a->grow_from;
  return b < a->block_bytes ? b : a->block_bytes;
}

void *idoc_arena_alloc(idoc_arena *a, size_t bytes) {
  idoc_progress_tick();
  void *p = list_alloc(a, &a->mem, a->dev, bytes, 256, next_block(a));
  a->used = used_upto(&a->mem, a->mem.cur, a->mem.off);
  if (a->used > a->peak) a->peak = a->used;
  return p;
}

void *idoc_arena_alloc_host(idoc_arena *a, size_t bytes) {
  idoc_progress_tick();
  void *p = list_alloc(a, &a->host, IDOC_DEV_CPU, bytes, 64, (size_t)4 << 20);
  memset(p, 0, bytes);
  return p;
}

idoc_arena_mark idoc_arena_get_mark(const idoc_arena *a) {
  return (idoc_arena_mark){a->mem.cur, a->host.cur, a->mem.off, a->host.off};
}

void idoc_arena_reset_to(idoc_arena *a, idoc_arena_mark m) {
  a->mem.cur = m.block;
  a->mem.off = m.off;
  a->host.cur = m.host_block;
  a->host.off = m.host_off;
  a->used = used_upto(&a->mem, m.block, m.off);
}

void idoc_arena_reset(idoc_arena *a) { idoc_arena_reset_to(a, (idoc_arena_mark){0, 0, 0, 0}); }
static void raw_zero(void *p, idoc_device dev, size_t n) {
  if (n == 0) return;
  if (dev.kind == IDOC_CUDA)
    idoc_cuda_memset0(p, n);
  else
    memset(p, 0, n);
}

void idoc_arena_zero(idoc_arena *a) {
  for (int i = 0; i <= a->mem.cur && i < a->mem.n; i++)
    raw_zero(a->mem.b[i].base, a->dev, i < a->mem.cur ? a->mem.b[i].size : a->mem.off);
}

size_t idoc_arena_used(const idoc_arena *a) { return a->used; }
size_t idoc_arena_peak(const idoc_arena *a) { return a->peak; }
size_t idoc_arena_system_allocs(const idoc_arena *a) { return a->system_allocs; }
idoc_device idoc_arena_device(const idoc_arena *a) { return a->dev; }

// ---- tensors ----------------------------------------------------------------------------------
static idoc_tensor *header(idoc_arena *a, idoc_dtype dt, idoc_device dev, int ndim,
                           const int64_t *shape) {
  IDOC_CHECK(ndim >= 0 && ndim <= IDOC_MAX_DIMS, "tensor rank %d out of range", ndim);
  idoc_tensor *t = idoc_arena_alloc_host(a, sizeof *t);
  t->ndim = ndim;
  t->dtype = dt;
  t->dev = dev;
  for (int i = 0; i < ndim; i++) {
    IDOC_CHECK(shape[i] >= 0, "negative dimension %lld", (long long)shape[i]);
    t->shape[i] = shape[i];
  }
  return t;
}

idoc_tensor *idoc_tensor_new(idoc_arena *a, idoc_dtype dt, int ndim, const int64_t *shape) {
  idoc_tensor *t = header(a, dt, a->dev, ndim, shape);
  t->data = idoc_arena_alloc(a, idoc_nbytes(t));
  return t;
}

idoc_tensor *idoc_tensor_zeros(idoc_arena *a, idoc_dtype dt, int ndim, const int64_t *shape) {
  idoc_tensor *t = idoc_tensor_new(a, dt, ndim, shape);
  idoc_tensor_zero(t);
  return t;
}

idoc_tensor *idoc_tensor_1d(idoc_arena *a, idoc_dtype dt, int64_t d0) {
  return idoc_tensor_new(a, dt, 1, (int64_t[]){d0});
}
idoc_tensor *idoc_tensor_2d(idoc_arena *a, idoc_dtype dt, int64_t d0, int64_t d1) {
  return idoc_tensor_new(a, dt, 2, (int64_t[]){d0, d1});
}
idoc_tensor *idoc_tensor_3d(idoc_arena *a, idoc_dtype dt, int64_t d0, int64_t d1, int64_t d2) {
  return idoc_tensor_new(a, dt, 3, (int64_t[]){d0, d1, d2});
}
idoc_tensor *idoc_tensor_4d(idoc_arena *a, idoc_dtype dt, int64_t d0, int64_t d1, int64_t d2,
                            int64_t d3) {
  return idoc_tensor_new(a, dt, 4, (int64_t[]){d0, d1, d2, d3});
}
idoc_tensor *idoc_tensor_like(idoc_arena *a, const idoc_tensor *like) {
  return idoc_tensor_new(a, like->dtype, like->ndim, like->shape);
}
idoc_tensor *idoc_tensor_zeros_like(idoc_arena *a, const idoc_tensor *like) {
  return idoc_tensor_zeros(a, like->dtype, like->ndim, like->shape);
}

idoc_tensor *idoc_tensor_wrap(idoc_arena *a, void *data, idoc_dtype dt, idoc_device dev, int ndim,
                              const int64_t *shape) {
  idoc_tensor *t = header(a, dt, dev, ndim, shape);
  t->data = data;
  return t;
}

idoc_tensor *idoc_tensor_view(idoc_arena *a, const idoc_tensor *t, int ndim, const int64_t *shape) {
  idoc_tensor *v = header(a, t->dtype, t->dev, ndim, shape);
  char b1[128], b2[128];
  IDOC_CHECK(idoc_numel(v) == idoc_numel(t), "view: %s cannot be viewed as %s",
             idoc_tensor_desc(t, b1, sizeof b1), idoc_tensor_desc(v, b2, sizeof b2));
  v->data = t->data;
  return v;
}

idoc_tensor *idoc_tensor_rows(idoc_arena *a, const idoc_tensor *t, int64_t start, int64_t len) {
  IDOC_CHECK(t->ndim >= 1 && start >= 0 && len >= 0 && start + len <= t->shape[0],
             "rows [%lld, %lld) out of range", (long long)start, (long long)(start + len));
  idoc_tensor *v = header(a, t->dtype, t->dev, t->ndim, t->shape);
  v->shape[0] = len;
  v->data = (char *)t->data + (size_t)start * (size_t)idoc_inner(t, 1) * idoc_dtype_size(t->dtype);
  return v;
}

int64_t idoc_numel(const idoc_tensor *t) { return idoc_inner(t, 0); }
size_t idoc_nbytes(const idoc_tensor *t) {
  return (size_t)idoc_numel(t) * idoc_dtype_size(t->dtype);
}
int64_t idoc_inner(const idoc_tensor *t, int from) {
  int64_t n = 1;
  for (int i = from; i < t->ndim; i++)
    n *= t->shape[i];
  return n;
}
int64_t idoc_outer(const idoc_tensor *t, int to) {
  int64_t n = 1;
  for (int i = 0; i < to && i < t->ndim; i++)
    n *= t->shape[i];
  return n;
}
bool idoc_same_shape(const idoc_tensor *a, const idoc_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int i = 0; i < a->ndim; i++)
    if (a->shape[i] != b->shape[i]) return false;
  return true;
}

const char *idoc_tensor_desc(const idoc_tensor *t, char *buf, size_t n) {
  if (!t) {
    snprintf(buf, n, "(null)");
    return buf;
  }
  size_t k = (size_t)snprintf(buf, n, "%s[", idoc_dtype_name(t->dtype));
  for (int i = 0; i < t->ndim && k < n; i++)
    k += (size_t)snprintf(buf + k, n - k, "%s%lld", i ? "," : "", (long long)t->shape[i]);
  if (k < n) snprintf(buf + k, n - k, "]@%s", idoc_device_name(t->dev));
  return buf;
}

// ---- data movement ----------------------------------------------------------------------------
static void raw_copy(void *dst, idoc_device dd, const void *src, idoc_device sd, size_t n) {
  if (n == 0) return;
  if (dd.kind == IDOC_CPU && sd.kind == IDOC_CPU)
    memmove(dst, src, n);
  else if (dd.kind == IDOC_CUDA && sd.kind == IDOC_CPU)
    idoc_cuda_memcpy(dst, src, n, 0);
  else if (dd.kind == IDOC_CPU && sd.kind == IDOC_CUDA)
    idoc_cuda_memcpy(dst, src, n, 1);
  else
    idoc_cuda_memcpy(dst, src, n, 2);
}

void idoc_tensor_zero(idoc_tensor *t) {
  if (t->dev.kind == IDOC_CUDA)
    idoc_cuda_memset0(t->data, idoc_nbytes(t));
  else if (idoc_nbytes(t))
    memset(t->data, 0, idoc_nbytes(t));
}

static void host_from_f32(void *dst, idoc_dtype dt, const float *src, int64_t n) {
  switch (dt) {
  case IDOC_F32: memcpy(dst, src, (size_t)n * 4); break;
  case IDOC_BF16:
    for (int64_t i = 0; i < n; i++)
      ((uint16_t *)dst)[i] = idoc_f32_to_bf16(src[i]);
    break;
  case IDOC_F16:
    for (int64_t i = 0; i < n; i++)
      ((uint16_t *)dst)[i] = idoc_f32_to_f16(src[i]);
    break;
  case IDOC_I32:
    for (int64_t i = 0; i < n; i++)
      ((int32_t *)dst)[i] = (int32_t)src[i];
    break;
  case IDOC_I64:
    for (int64_t i = 0; i < n; i++)
      ((int64_t *)dst)[i] = (int64_t)src[i];
    break;
  case IDOC_U8:
    for (int64_t i = 0; i < n; i++)
      ((uint8_t *)dst)[i] = (uint8_t)src[i];
    break;
  case IDOC_F64:
    for (int64_t i = 0; i < n; i++)
      ((double *)dst)[i] = src[i];
    break;
  }
}

static void host_to_f32(float *dst, const void *src, idoc_dtype dt, int64_t n) {
  switch (dt) {
  case IDOC_F32: memcpy(dst, src, (size_t)n * 4); break;
  case IDOC_BF16:
    for (int64_t i = 0; i < n; i++)
      dst[i] = idoc_bf16_to_f32(((const uint16_t *)src)[i]);
    break;
  case IDOC_F16:
    for (int64_t i = 0; i < n; i++)
      dst[i] = idoc_f16_to_f32(((const uint16_t *)src)[i]);
    break;
  case IDOC_I32:
    for (int64_t i = 0; i < n; i++)
      dst[i] = (float)((const int32_t *)src)[i];
    break;
  case IDOC_I64:
    for (int64_t i = 0; i < n; i++)
      dst[i] = (float)((const int64_t *)src)[i];
    break;
  case IDOC_U8:
    for (int64_t i = 0; i < n; i++)
      dst[i] = (float)((const uint8_t *)src)[i];
    break;
  case IDOC_F64:
    for (int64_t i = 0; i < n; i++)
      dst[i] = (float)((const double *)src)[i];
    break;
  }
}

void idoc_tensor_fill(idoc_tensor *t, float v) {
  int64_t n = idoc_numel(t);
  float *tmp = idoc_xmalloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; i++)
    tmp[i] = v;
  void *host = idoc_xmalloc(idoc_nbytes(t));
  host_from_f32(host, t->dtype, tmp, n);
  idoc_tensor_from_host(t, host);
  free(host);
  free(tmp);
}

void idoc_tensor_copy(idoc_tensor *dst, const idoc_tensor *src) {
  char b1[128], b2[128];
  IDOC_CHECK(dst->dtype == src->dtype && idoc_numel(dst) == idoc_numel(src), "copy: %s <- %s",
             idoc_tensor_desc(dst, b1, sizeof b1), idoc_tensor_desc(src, b2, sizeof b2));
  raw_copy(dst->data, dst->dev, src->data, src->dev, idoc_nbytes(src));
}

void idoc_tensor_convert(idoc_tensor *dst, const idoc_tensor *src) {
  if (dst->dtype == src->dtype) {
    idoc_tensor_copy(dst, src);
    return;
  }
  int64_t n = idoc_numel(src);
  IDOC_CHECK(n == idoc_numel(dst), "convert: element counts differ");
  bool fl_s = src->dtype == IDOC_F32 || src->dtype == IDOC_BF16; // the CUDA kernels' dtypes
  bool fl_d = dst->dtype == IDOC_F32 || dst->dtype == IDOC_BF16;
  if (dst->dev.kind == IDOC_CUDA && idoc_dev_eq(dst->dev, src->dev) && fl_s && fl_d) {
    // On the device, no host round trip: dst = 0 + 1 * src (exact in fp32, rounded once).
    idoc_tensor_zero(dst);
    IDOC_K(dst->dev, axpy)(dst, src, 1.0f);
    return;
  }
  void *hs = idoc_xmalloc(idoc_nbytes(src));
  idoc_tensor_to_host(src, hs);
  float *f = idoc_xmalloc((size_t)n * sizeof(float));
  host_to_f32(f, hs, src->dtype, n);
  void *hd = idoc_xmalloc(idoc_nbytes(dst));
  host_from_f32(hd, dst->dtype, f, n);
  idoc_tensor_from_host(dst, hd);
  free(hs);
  free(f);
  free(hd);
}

void idoc_tensor_from_host(idoc_tensor *t, const void *host) {
  raw_copy(t->data, t->dev, host, IDOC_DEV_CPU, idoc_nbytes(t));
}
void idoc_tensor_to_host(const idoc_tensor *t, void *host) {
  raw_copy(host, IDOC_DEV_CPU, t->data, t->dev, idoc_nbytes(t));
}

float idoc_tensor_get(const idoc_tensor *t, int64_t i) {
  IDOC_CHECK(i >= 0 && i < idoc_numel(t), "index %lld out of range", (long long)i);
  size_t es = idoc_dtype_size(t->dtype);
  unsigned char raw[8];
  raw_copy(raw, IDOC_DEV_CPU, (const char *)t->data + (size_t)i * es, t->dev, es);
  float f;
  host_to_f32(&f, raw, t->dtype, 1);
  return f;
}

static void fill_random(idoc_tensor *t, idoc_rng *r, bool normal, float a, float b) {
  int64_t n = idoc_numel(t);
  float *f = idoc_xmalloc((size_t)n * sizeof(float));
  for (int64_t i = 0; i < n; i++)
    f[i] =
        normal ? (float)(a + b * idoc_rng_normal(r)) : (float)(a + (b - a) * idoc_rng_uniform(r));
  void *h = idoc_xmalloc(idoc_nbytes(t));
  host_from_f32(h, t->dtype, f, n);
  idoc_tensor_from_host(t, h);
  free(h);
  free(f);
}
void idoc_tensor_normal(idoc_tensor *t, idoc_rng *r, float mean, float std) {
  fill_random(t, r, true, mean, std);
}
void idoc_tensor_uniform(idoc_tensor *t, idoc_rng *r, float lo, float hi) {
  fill_random(t, r, false, lo, hi);
}
