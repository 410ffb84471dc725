// idoc-requires: yaml
// Data parallelism for the training stages (stage/dist.h).
#include "stage/dist.h"

#include <math.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "kernels/ops.h"
#include "nn/comm.h"
#include "nn/safetensors.h"
#include "nn/util.h"

typedef struct {
  int idx;        // parameter index in the store
  int64_t off, n; // position in the flat space and element count
} slot;

struct idoc_dp {
  int rank, world, zero;
  idoc_params *ps;
  slot *slots;
  int n_slots;
  int64_t total;   // trainable elements
  int64_t *bounds; // [world + 1]: shard r is [bounds[r], bounds[r + 1])
  int64_t bucket;  // elements per bucket
  bool use_acc;    // gradients summed in fp64 (several micro-batches or ranks per step)
  double *acc;     // [total]: the step's gradient so far
  idoc_arena *views, *state, *saved;
  float *stage;       // host staging buffer [bucket]
  idoc_tensor *m, *v; // ZeRO-1: this rank's shard of the moments
  idoc_tensor **moms; // idoc_dp_gather_moments' result (rank 0)
  int64_t *counts;    // [world] scratch
  // Sums and collectives on tensors (the parameters' device; section "tensor path" below):
  bool dev;                      // parameters on a CUDA device
  bool flat;                     // bf16 parameters: fp32 masters m32 and gradients g32 below
  idoc_tensor *m32, *g32;        // flat: fp32 masters ([total], or this rank's shard with ZeRO-1)
                                 // and the step's fp32 gradient [total]
  idoc_tensor **mviews;          // flat, no ZeRO: [ps->n] the bf16 parameters' masters (views)
  idoc_tensor **mfull;           // flat, ZeRO-1: [ps->n] the gathered masters (rank 0)
  bool fp64;                     // grad_sum_dtype: fp64 (the CPU's host path: acc above)
  idoc_tensor *dacc;             // device fp64: [total] the step's gradient so far
  idoc_tensor *gflat;            // fp32, no ZeRO: the gradient block as one vector (gaps are 0)
  int64_t rnd;                   // ZeRO-1: elements per rank per round of the collectives
  idoc_tensor *dsend, *dall;     // ZeRO-1 f32 staging: [rnd] and [world * rnd]
  idoc_tensor *dsend64, *dall64; // the same in f64 (device fp64 sums)
  idoc_tensor *parts;            // [chunks]: squared gradient norms of NORM_CHUNK pieces
};

int idoc_dp_join(const idoc_train_config *cfg) {
  if (idoc_comm_init()) return IDOC_ERR;
  idoc_comm_set_timeout(cfg->ddp_timeout);
  return IDOC_OK;
}

int idoc_dp_rank(const idoc_dp *dp) { return dp ? dp->rank : 0; }
int idoc_dp_world(const idoc_dp *dp) { return dp ? dp->world : 1; }
int idoc_dp_zero_stage(const idoc_dp *dp) { return dp ? dp->zero : 0; }

static int64_t shard_len(const idoc_dp *dp) {
  return dp->bounds[dp->rank + 1] - dp->bounds[dp->rank];
}

static void tensor_init(idoc_dp *dp);
static void masters_from_weights(idoc_dp *dp);
// The tensor path's gradient norm is summed in chunks of this many elements of the flat space
// (fp32 on the device, then the chunks in fp64 in order), whatever the world size and ZeRO.
#define NORM_CHUNK ((int64_t)1 << 20)

idoc_dp *idoc_dp_new(const idoc_train_config *cfg, idoc_params *ps, idoc_adamw *opt,
                     int micro_batches) {
  idoc_dp *dp = idoc_xcalloc(1, sizeof *dp);
  dp->rank = idoc_comm_rank();
  dp->world = idoc_comm_world();
  dp->zero = cfg->zero_stage;
  dp->ps = ps;
  dp->slots = idoc_xcalloc((size_t)ps->n + 1, sizeof *dp->slots);
  for (int i = 0; i < ps->n; i++)
    if (ps->p[i].trainable) {
      int64_t n = idoc_numel(ps->p[i].w);
      idoc_dtype dt = ps->p[i].w->dtype;
      IDOC_CHECK(dt == IDOC_F32 || (dt == IDOC_BF16 && ps->dev.kind == IDOC_CUDA),
                 "data parallel: parameter %s is %s (f32 needed, or bf16 on a GPU)",
                 ps->p[i].w->name, idoc_dtype_name(dt));
      dp->flat |= dt == IDOC_BF16;
      dp->slots[dp->n_slots++] = (slot){i, dp->total, n};
      dp->total += n;
    }
  dp->dev = ps->dev.kind != IDOC_CPU;
  dp->fp64 = idoc_config_grad_sum_fp64(cfg, dp->dev);
  bool host64 = !dp->dev && dp->fp64;
  dp->bounds = idoc_xmalloc((size_t)(dp->world + 1) * sizeof(int64_t));
  for (int r = 0; r <= dp->world; r++) // the tensor path's shards are whole norm chunks
    dp->bounds[r] = host64 || r == dp->world ? dp->total * r / dp->world
                                             : dp->total * r / dp->world / NORM_CHUNK * NORM_CHUNK;
  dp->counts = idoc_xmalloc((size_t)dp->world * sizeof(int64_t));
  dp->bucket = (int64_t)cfg->ddp_bucket_cap_mb * (1 << 20) / (int64_t)sizeof(float);
  if (dp->bucket > dp->total) dp->bucket = dp->total > 0 ? dp->total : 1;
  // Several micro-batches (accumulation, or ranks) per step: each one's gradient is added into
  // an fp64 sum, so the step's gradient does not depend on how the global batch is split
  // (sums of a few floats are exact in fp64; the result is rounded to fp32 once).
  // On a device backward accumulates the micro-batches into the fp32 gradients instead (no host
  // copy of them per micro-batch) and NCCL sums the ranks' fp32 gradients (tensor_reduce): one
  // rank and W ranks then agree to fp32 rounding, not bitwise.
  // bf16 parameters (flat): every micro-batch's bf16 gradient is added into the fp32 (or fp64)
  // flat sum, which the optimizer reads, so the sum runs even for one micro-batch on one rank.
  dp->use_acc = dp->flat || (dp->fp64 && (dp->world > 1 || micro_batches > 1));
  if (dp->use_acc && !dp->dev)
    dp->acc = idoc_xcalloc((size_t)(dp->total > 0 ? dp->total : 1), sizeof(double));
  dp->views = idoc_arena_new("dp views", IDOC_DEV_CPU, 1 << 16);
  dp->state = idoc_arena_new("dp state", ps->dev, (size_t)1 << 20);
  idoc_adamw_cfg ac = {cfg->adam_beta1, cfg->adam_beta2, cfg->adam_epsilon, cfg->weight_decay,
                       cfg->max_grad_norm};
  if (dp->zero) {
    idoc_adamw_init_sharded(opt, ac, ps);
    int64_t k = shard_len(dp) > 0 ? shard_len(dp) : 1;
    dp->m = idoc_tensor_zeros(dp->state, IDOC_F32, 1, &k);
    dp->v = idoc_tensor_zeros(dp->state, IDOC_F32, 1, &k);
  } else {
    idoc_adamw_init(opt, ac, ps);
  }
  tensor_init(dp);
  if (dp->world > 1) {
    if (!dp->dev && dp->fp64) dp->stage = idoc_xmalloc((size_t)dp->bucket * sizeof(float));
    for (int i = 0; i < ps->n; i++) // every rank starts from rank 0's weights
      idoc_comm_broadcast(ps->p[i].w, 0);
  }
  if (dp->flat) {
    masters_from_weights(dp);
    if (!dp->zero) dp->mviews = idoc_xcalloc((size_t)ps->n + 1, sizeof *dp->mviews);
    for (int i = 0; i < dp->n_slots && !dp->zero; i++) {
      const idoc_tensor *w = ps->p[dp->slots[i].idx].w;
      if (w->dtype == IDOC_BF16)
        dp->mviews[dp->slots[i].idx] = idoc_tensor_wrap(
            dp->state, IDOC_F(dp->m32) + dp->slots[i].off, IDOC_F32, ps->dev, w->ndim, w->shape);
    }
  }
  return dp;
}

void idoc_dp_free(idoc_dp *dp) {
  if (!dp) return;
  free(dp->slots);
  free(dp->bounds);
  free(dp->counts);
  free(dp->stage);
  free(dp->acc);
  free(dp->moms);
  free(dp->mviews);
  free(dp->mfull);
  idoc_arena_free(dp->views);
  idoc_arena_free(dp->state);
  if (dp->saved) idoc_arena_free(dp->saved);
  free(dp);
}

// ---- the flat space ---------------------------------------------------------------------------
// Calls fn for each piece of [a, b): the slot, the offset in the parameter, the length and the
// piece's offset from a.
typedef void (*piece_fn)(idoc_dp *dp, const slot *s, int64_t lo, int64_t len, int64_t at, void *ud);
static void for_pieces(idoc_dp *dp, int64_t a, int64_t b, piece_fn fn, void *ud) {
  for (int i = 0; i < dp->n_slots; i++) {
    const slot *s = &dp->slots[i];
    int64_t lo = a > s->off ? a : s->off, hi = b < s->off + s->n ? b : s->off + s->n;
    if (lo < hi) fn(dp, s, lo - s->off, hi - lo, lo - a, ud);
  }
}

// Elements [lo, lo + len) of a vector (f32 or f64, host or device).
static idoc_tensor *view(idoc_dp *dp, idoc_tensor *t, int64_t lo, int64_t len) {
  return idoc_tensor_wrap(dp->views, (char *)t->data + lo * (int64_t)idoc_dtype_size(t->dtype),
                          t->dtype, t->dev, 1, &len);
}

typedef struct {
  float *buf;
  bool grad; // the parameter's gradient (else its weights)
} pack_ud;
static void pack_piece(idoc_dp *dp, const slot *s, int64_t lo, int64_t len, int64_t at, void *ud) {
  pack_ud *u = ud;
  idoc_tensor *w = dp->ps->p[s->idx].w, *t = u->grad ? w->grad : w;
  memcpy(u->buf + at, (const float *)t->data + lo, (size_t)len * sizeof(float));
}
static void unpack_piece(idoc_dp *dp, const slot *s, int64_t lo, int64_t len, int64_t at,
                         void *ud) {
  pack_ud *u = ud;
  idoc_tensor *w = dp->ps->p[s->idx].w, *t = u->grad ? w->grad : w;
  memcpy((float *)t->data + lo, u->buf + at, (size_t)len * sizeof(float));
}

// Elements of [a, b) in each rank's shard.
static void overlap_counts(idoc_dp *dp, int64_t a, int64_t b) {
  for (int r = 0; r < dp->world; r++) {
    int64_t lo = a > dp->bounds[r] ? a : dp->bounds[r];
    int64_t hi = b < dp->bounds[r + 1] ? b : dp->bounds[r + 1];
    dp->counts[r] = hi > lo ? hi - lo : 0;
  }
}
static int64_t my_lo(const idoc_dp *dp, int64_t a) {
  return a > dp->bounds[dp->rank] ? a : dp->bounds[dp->rank];
}

// ---- the step -----------------------------------------------------------------------------------
void idoc_dp_accumulate(idoc_dp *dp) {
  if (!dp->use_acc) return;
  if (dp->dev) {
    idoc_arena_mark mk = idoc_arena_get_mark(dp->views);
    idoc_tensor *A = dp->fp64 ? dp->dacc : dp->g32; // fp32: only the flat (bf16) mode
    for (int i = 0; i < dp->n_slots; i++) {
      const slot *s = &dp->slots[i];
      IDOC_K(dp->ps->dev, grad_accumulate)(view(dp, A, s->off, s->n), dp->ps->p[s->idx].w->grad);
    }
    idoc_arena_reset_to(dp->views, mk);
    return;
  }
  for (int i = 0; i < dp->n_slots; i++) {
    const slot *s = &dp->slots[i];
    float *g = IDOC_F(dp->ps->p[s->idx].w->grad);
    double *a = dp->acc + s->off;
    for (int64_t k = 0; k < s->n; k++)
      a[k] += g[k];
    memset(g, 0, (size_t)s->n * sizeof(float));
  }
}

// The fp64 sums of every rank (rank order, in buckets) back into the fp32 gradients: all of
// them, or this rank's shard with ZeRO-1.
static void reduce_accumulated(idoc_dp *dp) {
  int64_t B = dp->bucket;
  for (int64_t a = 0; a < dp->total && dp->world > 1; a += B) {
    int64_t b = a + B < dp->total ? a + B : dp->total;
    if (dp->zero) {
      overlap_counts(dp, a, b);
      idoc_comm_reduce_scatterv_f64(dp->acc + a, dp->acc + my_lo(dp, a), dp->counts, IDOC_RED_SUM);
    } else {
      idoc_comm_all_reduce_f64(dp->acc + a, (int)(b - a), IDOC_RED_SUM);
    }
  }
  int64_t lo = dp->zero ? dp->bounds[dp->rank] : 0,
          hi = dp->zero ? dp->bounds[dp->rank + 1] : dp->total;
  for (int i = 0; i < dp->n_slots; i++) {
    const slot *s = &dp->slots[i];
    float *g = IDOC_F(dp->ps->p[s->idx].w->grad);
    int64_t l = lo > s->off ? lo : s->off, h = hi < s->off + s->n ? hi : s->off + s->n;
    for (int64_t k = l; k < h; k++)
      g[k - s->off] = (float)dp->acc[k];
  }
  memset(dp->acc, 0, (size_t)dp->total * sizeof(double));
}

// Squared norm of the gradients of flat range [a, b), in fp64, serially (no thread-count
// dependence).
typedef struct {
  double s;
} norm_ud;
static void norm_piece(idoc_dp *dp, const slot *s, int64_t lo, int64_t len, int64_t at, void *ud) {
  norm_ud *u = ud;
  const float *g = IDOC_F(dp->ps->p[s->idx].w->grad) + lo;
  double t = 0;
  for (int64_t k = 0; k < len; k++)
    t += (double)g[k] * g[k];
  u->s += t;
}
static double shard_sumsq(idoc_dp *dp, int r) {
  norm_ud u = {0};
  for_pieces(dp, dp->bounds[r], dp->bounds[r + 1], norm_piece, &u);
  return u.s;
}

// sqrt of the rank-order sum of the W shards' squared norms (the same numbers whether each
// rank has every gradient or, with ZeRO-1, its shard's).
static float global_norm(idoc_dp *dp) {
  double *part = idoc_xcalloc((size_t)dp->world, sizeof(double));
  if (dp->zero) {
    double mine = shard_sumsq(dp, dp->rank);
    idoc_comm_all_gather_bytes(&mine, sizeof mine, part);
  } else {
    for (int r = 0; r < dp->world; r++)
      part[r] = shard_sumsq(dp, r);
  }
  double s = 0;
  for (int r = 0; r < dp->world; r++)
    s += part[r];
  free(part);
  // The squared norm as an fp32 value, as the single-process optimizer has it: a gradient whose
  // squared norm overflows fp32 is non-finite (and the step is skipped).
  return sqrtf((float)s);
}

typedef struct {
  idoc_adamw *opt;
  float lr, scale;
  int64_t shard_at; // flat offset of the shard's first element
} upd_ud;
static void update_piece(idoc_dp *dp, const slot *s, int64_t lo, int64_t len, int64_t at,
                         void *ud) {
  upd_ud *u = ud;
  const idoc_param *p = &dp->ps->p[s->idx];
  int64_t mo = s->off + lo - u->shard_at;
  idoc_adamw_update(u->opt, p, view(dp, p->w, lo, len), view(dp, p->w->grad, lo, len),
                    view(dp, dp->m, mo, len), view(dp, dp->v, mo, len), u->lr, u->scale);
}

static void gather_weights(idoc_dp *dp) {
  for (int64_t a = 0; a < dp->total; a += dp->bucket) {
    int64_t b = a + dp->bucket < dp->total ? a + dp->bucket : dp->total;
    overlap_counts(dp, a, b);
    int64_t lo = my_lo(dp, a), k = dp->counts[dp->rank];
    float *mine = dp->stage + (lo - a);
    if (k > 0) {
      pack_ud u = {mine, false};
      for_pieces(dp, lo, lo + k, pack_piece, &u);
    }
    // The shards are contiguous in rank order, so the gathered segments are [a, b) in order.
    float *tmp = idoc_xmalloc((size_t)(k > 0 ? k : 1) * sizeof(float));
    memcpy(tmp, mine, (size_t)k * sizeof(float));
    idoc_comm_all_gatherv_f32(tmp, dp->stage, dp->counts);
    free(tmp);
    pack_ud u = {dp->stage, false};
    for_pieces(dp, a, b, unpack_piece, &u);
  }
}

// ---- the tensor path: parameters on a CUDA device, or fp32 sums ------------------------------
// The collectives run on tensors of the parameters' device (NCCL on a GPU, MPI/TCP on the host).
// fp32 sums (grad_sum_dtype fp32, the default on a GPU): backward accumulates the micro-batches
// into the gradients, then without ZeRO the ranks' gradients are summed in place, in buckets of
// the gradient block (idoc_params_alloc_grads lays every trainable gradient out in one block in
// store order; the alignment gaps between them are zero and stay zero). fp64 sums on a device:
// each micro-batch's gradient is added into an fp64 vector over the flat trainable space
// (grad_accumulate), the ranks' vectors are summed in fp64 and rounded to fp32 once, as on the
// CPU. With ZeRO-1 the shards are contiguous ranges bounds[] of the flat space; round k packs
// elements [k R, (k + 1) R) of every rank's shard into a staging buffer (rank r's at r R), so
// each round carries W R useful elements, and the all-gather of the updated weights runs the
// same rounds. Under the simulator NCCL sums in rank order and a reduce-scatter then an
// all-gather is bitwise an all-reduce, so ZeRO-1 equals no ZeRO there.

// The flat range this rank's optimizer updates: its shard with ZeRO-1, else everything.
static int64_t mbase(const idoc_dp *dp) { return dp->zero ? dp->bounds[dp->rank] : 0; }
static void my_range(const idoc_dp *dp, int64_t *lo, int64_t *hi) {
  *lo = mbase(dp);
  *hi = dp->zero ? dp->bounds[dp->rank + 1] : dp->total;
}

static int64_t longest_shard(const idoc_dp *dp) {
  int64_t m = 0;
  for (int r = 0; r < dp->world; r++)
    if (dp->bounds[r + 1] - dp->bounds[r] > m) m = dp->bounds[r + 1] - dp->bounds[r];
  return m;
}

static void tensor_init(idoc_dp *dp) {
  idoc_params *ps = dp->ps;
  int64_t total = dp->total > 0 ? dp->total : 1, k = (total + NORM_CHUNK - 1) / NORM_CHUNK;
  if (!dp->dev && dp->fp64) return; // the host fp64 path
  dp->parts = idoc_tensor_zeros(dp->state, IDOC_F32, 1, &k);
  if (dp->use_acc && dp->fp64) dp->dacc = idoc_tensor_zeros(dp->state, IDOC_F64, 1, &total);
  if (dp->flat) {
    int64_t nm = dp->zero ? (shard_len(dp) > 0 ? shard_len(dp) : 1) : total;
    dp->m32 = idoc_tensor_zeros(dp->state, IDOC_F32, 1, &nm);
    dp->g32 = idoc_tensor_zeros(dp->state, IDOC_F32, 1, &total);
  }
  if (dp->world == 1 || dp->total == 0) return;
  if (dp->zero) {
    dp->rnd = (dp->bucket + dp->world - 1) / dp->world;
    int64_t m = longest_shard(dp), all;
    if (dp->rnd > m) dp->rnd = m > 0 ? m : 1;
    all = dp->rnd * dp->world;
    dp->dsend = idoc_tensor_zeros(dp->state, IDOC_F32, 1, &dp->rnd);
    dp->dall = idoc_tensor_zeros(dp->state, IDOC_F32, 1, &all);
    if (dp->fp64) {
      dp->dsend64 = idoc_tensor_zeros(dp->state, IDOC_F64, 1, &dp->rnd);
      dp->dall64 = idoc_tensor_zeros(dp->state, IDOC_F64, 1, &all);
    }
    return;
  }
  if (dp->fp64 || dp->flat) return;
  // The gradient block's extent: from the first trainable gradient to the end of the last.
  char *lo = NULL, *hi = NULL;
  for (int i = 0; i < dp->n_slots; i++) {
    idoc_tensor *g = ps->p[dp->slots[i].idx].w->grad;
    char *a = g->data, *b = a + idoc_nbytes(g);
    if (!lo || a < lo) lo = a;
    if (!hi || b > hi) hi = b;
  }
  IDOC_CHECK((size_t)(hi - lo) <= idoc_arena_used(ps->grads),
             "data parallel: the gradients are not one block (%zu bytes span, %zu allocated)",
             (size_t)(hi - lo), idoc_arena_used(ps->grads));
  int64_t n = (int64_t)((size_t)(hi - lo) / sizeof(float));
  dp->gflat = idoc_tensor_wrap(dp->state, lo, IDOC_F32, ps->dev, 1, &n);
}

// Copies between flat-range pieces of the weights (or gradients) and a buffer.
typedef struct {
  idoc_tensor *buf;
  int64_t base; // buffer offset of the range's first element
  bool grad, to_buf;
} tcopy_ud;
static void tcopy_piece(idoc_dp *dp, const slot *s, int64_t lo, int64_t len, int64_t at, void *ud) {
  tcopy_ud *u = ud;
  idoc_tensor *w = dp->ps->p[s->idx].w, *t = u->grad ? w->grad : w;
  idoc_tensor *pv = view(dp, t, lo, len), *bv = view(dp, u->buf, u->base + at, len);
  if (u->to_buf)
    idoc_tensor_copy(bv, pv);
  else
    idoc_tensor_copy(pv, bv);
}

// Rank r's part of round k: [*lo, *hi) of the flat space (empty when lo == hi).
static void round_range(const idoc_dp *dp, int r, int64_t k, int64_t *lo, int64_t *hi) {
  *lo = dp->bounds[r] + k * dp->rnd;
  if (*lo > dp->bounds[r + 1]) *lo = dp->bounds[r + 1];
  *hi = *lo + dp->rnd < dp->bounds[r + 1] ? *lo + dp->rnd : dp->bounds[r + 1];
}
static int64_t rounds(const idoc_dp *dp) { return (longest_shard(dp) + dp->rnd - 1) / dp->rnd; }

// The fp64 sums back into the fp32 gradients of [lo, hi).
static void round_piece(idoc_dp *dp, const slot *s, int64_t lo, int64_t len, int64_t at, void *ud) {
  (void)at, (void)ud;
  IDOC_K(dp->ps->dev, grad_round_f64)
  (view(dp, dp->ps->p[s->idx].w->grad, lo, len), view(dp, dp->dacc, s->off + lo, len));
}

// Every rank's vector A summed into it, in buckets queued on the communication stream, then one
// device wait.
static void all_reduce_buckets(idoc_dp *dp, idoc_tensor *A) {
  int64_t n = idoc_numel(A);
  for (int64_t a = 0; a < n; a += dp->bucket)
    idoc_comm_all_reduce_start(view(dp, A, a, n - a < dp->bucket ? n - a : dp->bucket),
                               IDOC_RED_SUM);
  idoc_comm_device_wait();
}

// A flat accumulator A (the device fp64 sums, or the flat mode's fp32 g32) summed over the ranks:
// all of it, or this rank's shard with ZeRO-1 (staging all/send of A's dtype).
static void reduce_flat(idoc_dp *dp, idoc_tensor *A, idoc_tensor *all, idoc_tensor *send) {
  if (dp->world > 1 && !dp->zero) {
    all_reduce_buckets(dp, A);
  } else if (dp->world > 1) {
    for (int64_t k = 0; k < rounds(dp); k++) {
      for (int r = 0; r < dp->world; r++) {
        int64_t lo, hi;
        round_range(dp, r, k, &lo, &hi);
        if (hi > lo)
          idoc_tensor_copy(view(dp, all, r * dp->rnd, hi - lo), view(dp, A, lo, hi - lo));
        if (hi - lo < dp->rnd) // a short last round: no stale values in the sum
          idoc_tensor_zero(view(dp, all, r * dp->rnd + (hi - lo), dp->rnd - (hi - lo)));
      }
      idoc_comm_reduce_scatter(all, send, IDOC_RED_SUM);
      int64_t lo, hi;
      round_range(dp, dp->rank, k, &lo, &hi);
      if (hi > lo) idoc_tensor_copy(view(dp, A, lo, hi - lo), view(dp, send, 0, hi - lo));
    }
  }
}

// Device fp64: every rank's sums (all of them, or this rank's shard with ZeRO-1) rounded into
// the fp32 gradients (the flat mode's g32).
static void tensor_reduce_f64(idoc_dp *dp) {
  reduce_flat(dp, dp->dacc, dp->dall64, dp->dsend64);
  int64_t lo, hi;
  my_range(dp, &lo, &hi);
  if (dp->flat) {
    IDOC_K(dp->ps->dev, grad_round_f64)
    (view(dp, dp->g32, lo, hi - lo), view(dp, dp->dacc, lo, hi - lo));
  } else {
    for_pieces(dp, lo, hi, round_piece, NULL);
  }
  idoc_tensor_zero(dp->dacc);
}

// fp32: the ranks' gradients summed in place (all of them, or this rank's shard with ZeRO-1).
static void tensor_reduce_f32(idoc_dp *dp) {
  if (!dp->zero) {
    all_reduce_buckets(dp, dp->gflat);
    return;
  }
  for (int64_t k = 0; k < rounds(dp); k++) {
    idoc_arena_mark mk = idoc_arena_get_mark(dp->views);
    for (int r = 0; r < dp->world; r++) {
      int64_t lo, hi;
      round_range(dp, r, k, &lo, &hi);
      tcopy_ud u = {dp->dall, r * dp->rnd, true, true};
      for_pieces(dp, lo, hi, tcopy_piece, &u);
      if (hi - lo < dp->rnd)
        idoc_tensor_zero(view(dp, dp->dall, r * dp->rnd + (hi - lo), dp->rnd - (hi - lo)));
    }
    idoc_comm_reduce_scatter(dp->dall, dp->dsend, IDOC_RED_SUM);
    int64_t lo, hi;
    round_range(dp, dp->rank, k, &lo, &hi);
    tcopy_ud u = {dp->dsend, 0, true, false};
    for_pieces(dp, lo, hi, tcopy_piece, &u);
    idoc_arena_reset_to(dp->views, mk);
  }
}

static void tensor_reduce(idoc_dp *dp) {
  if (dp->total == 0) return;
  if (dp->use_acc) idoc_dp_accumulate(dp); // the last micro-batch (or the only one)
  if (dp->fp64 && dp->use_acc)
    tensor_reduce_f64(dp);
  else if (dp->flat)
    reduce_flat(dp, dp->g32, dp->dall, dp->dsend);
  else if (dp->world > 1)
    tensor_reduce_f32(dp);
}

// The gradient norm from fp32 squared norms of NORM_CHUNK-element chunks of the flat space on
// the parameters' device (with ZeRO-1 each rank's shard is whole chunks: it computes those and
// an all-reduce fills in the others, x + 0 being exact), read once and summed in fp64 in chunk
// order: the same bits for every world size, with and without ZeRO.
static void tnorm_piece(idoc_dp *dp, const slot *s, int64_t lo, int64_t len, int64_t at, void *ud) {
  (void)at;
  IDOC_K(dp->ps->dev, sumsq)
  (ud,
   dp->flat ? view(dp, dp->g32, s->off + lo, len) : view(dp, dp->ps->p[s->idx].w->grad, lo, len));
}
static float tensor_norm(idoc_dp *dp) {
  idoc_tensor_zero(dp->parts);
  int64_t nc = idoc_numel(dp->parts);
  for (int64_t c = 0; c < nc; c++) {
    int64_t lo = c * NORM_CHUNK, hi = lo + NORM_CHUNK < dp->total ? lo + NORM_CHUNK : dp->total;
    if (dp->zero && (lo < dp->bounds[dp->rank] || lo >= dp->bounds[dp->rank + 1])) continue;
    idoc_tensor *acc =
        idoc_tensor_wrap(dp->views, IDOC_F(dp->parts) + c, IDOC_F32, dp->ps->dev, 0, NULL);
    for_pieces(dp, lo, hi, tnorm_piece, acc);
  }
  if (dp->zero && dp->world > 1) idoc_comm_all_reduce(dp->parts, IDOC_RED_SUM);
  float *h = idoc_xmalloc((size_t)nc * sizeof(float));
  idoc_tensor_to_host(dp->parts, h);
  double s = 0;
  for (int64_t c = 0; c < nc; c++)
    s += h[c];
  free(h);
  return sqrtf((float)s);
}

// ZeRO-1: every rank's updated shard to every rank, in the reduce-scatter's rounds.
static void tensor_gather_weights(idoc_dp *dp) {
  for (int64_t k = 0; k < rounds(dp); k++) {
    idoc_arena_mark mk = idoc_arena_get_mark(dp->views);
    int64_t lo, hi;
    round_range(dp, dp->rank, k, &lo, &hi);
    tcopy_ud u = {dp->dsend, 0, false, true};
    for_pieces(dp, lo, hi, tcopy_piece, &u);
    idoc_comm_all_gather(dp->dsend, dp->dall);
    for (int r = 0; r < dp->world; r++) {
      if (r == dp->rank) continue;
      round_range(dp, r, k, &lo, &hi);
      tcopy_ud v = {dp->dall, r * dp->rnd, false, false};
      for_pieces(dp, lo, hi, tcopy_piece, &v);
    }
    idoc_arena_reset_to(dp->views, mk);
  }
}

// ---- the flat (bf16) mode: fp32 masters ------------------------------------------------------
// The optimizer updates m32 (fp32 masters of the trainable parameters) from g32 and rounds the
// result into the bf16 weights. Without ZeRO every rank holds all masters; with ZeRO-1 a rank
// holds and updates its shard's only (m32 starts at flat offset bounds[rank]), and the updated
// shards are all-gathered in fp32, in the reduce-scatter's rounds, and rounded into the weights
// on every rank, so every rank's weights stay equal.

static void from_weights_piece(idoc_dp *dp, const slot *s, int64_t lo, int64_t len, int64_t at,
                               void *ud) {
  (void)at, (void)ud;
  idoc_tensor_convert(view(dp, dp->m32, s->off + lo - mbase(dp), len),
                      view(dp, dp->ps->p[s->idx].w, lo, len));
}
static void masters_from_weights(idoc_dp *dp) {
  idoc_arena_mark mk = idoc_arena_get_mark(dp->views);
  int64_t lo, hi;
  my_range(dp, &lo, &hi);
  for_pieces(dp, lo, hi, from_weights_piece, NULL);
  idoc_arena_reset_to(dp->views, mk);
}

static void flat_update_piece(idoc_dp *dp, const slot *s, int64_t lo, int64_t len, int64_t at,
                              void *ud) {
  (void)at;
  upd_ud *u = ud;
  const idoc_param *p = &dp->ps->p[s->idx];
  int64_t f = s->off + lo;
  idoc_tensor *m = dp->zero ? view(dp, dp->m, f - u->shard_at, len) : view(dp, p->m, lo, len);
  idoc_tensor *v = dp->zero ? view(dp, dp->v, f - u->shard_at, len) : view(dp, p->v, lo, len);
  idoc_tensor *w32 = view(dp, dp->m32, f - mbase(dp), len);
  idoc_adamw_update(u->opt, p, w32, view(dp, dp->g32, f, len), m, v, u->lr, u->scale);
  idoc_tensor_convert(view(dp, p->w, lo, len), w32); // the weights: the masters, rounded
}

// Another rank's updated masters (staged in dall at `base`) rounded into the weights.
static void staged_to_weights_piece(idoc_dp *dp, const slot *s, int64_t lo, int64_t len, int64_t at,
                                    void *ud) {
  const int64_t *base = ud;
  idoc_tensor_convert(view(dp, dp->ps->p[s->idx].w, lo, len), view(dp, dp->dall, *base + at, len));
}

static void flat_gather_masters(idoc_dp *dp) {
  for (int64_t k = 0; k < rounds(dp); k++) {
    idoc_arena_mark mk = idoc_arena_get_mark(dp->views);
    int64_t lo, hi;
    round_range(dp, dp->rank, k, &lo, &hi);
    if (hi > lo)
      idoc_tensor_copy(view(dp, dp->dsend, 0, hi - lo), view(dp, dp->m32, lo - mbase(dp), hi - lo));
    idoc_comm_all_gather(dp->dsend, dp->dall);
    for (int r = 0; r < dp->world; r++) {
      round_range(dp, r, k, &lo, &hi);
      if (r == dp->rank || hi <= lo) continue;
      int64_t base = r * dp->rnd;
      for_pieces(dp, lo, hi, staged_to_weights_piece, &base);
    }
    idoc_arena_reset_to(dp->views, mk);
  }
}

static void flat_update(idoc_dp *dp, idoc_adamw *opt, float lr, float scale) {
  if (!dp->zero) idoc_params_init_adam(dp->ps);
  int64_t lo, hi;
  my_range(dp, &lo, &hi);
  upd_ud u = {opt, lr, scale, lo};
  for_pieces(dp, lo, hi, flat_update_piece, &u);
  if (dp->zero && dp->world > 1) flat_gather_masters(dp);
}

float idoc_dp_step(idoc_dp *dp, idoc_adamw *opt, float lr) {
  idoc_arena_reset(dp->views);
  idoc_comm_set_phase("gradient reduce");
  bool host64 = !dp->dev && dp->fp64; // the host fp64 path, else the tensor path
  if (host64 && dp->use_acc) {
    idoc_dp_accumulate(dp); // the last micro-batch (or the only one)
    reduce_accumulated(dp);
  }
  if (!host64) tensor_reduce(dp);
  float norm = host64 ? global_norm(dp) : tensor_norm(dp), scale;
  idoc_comm_set_phase("optimizer");
  bool go = idoc_adamw_begin(opt, norm, &scale);
  if (dp->flat) {
    if (go) flat_update(dp, opt, lr, scale);
    idoc_tensor_zero(dp->g32); // the next step's sum starts from zero
    return norm;
  }
  if (!go) return norm;
  if (dp->zero) {
    upd_ud u = {opt, lr, scale, dp->bounds[dp->rank]};
    for_pieces(dp, dp->bounds[dp->rank], dp->bounds[dp->rank + 1], update_piece, &u);
    if (dp->world > 1 && !host64)
      tensor_gather_weights(dp);
    else if (dp->world > 1)
      gather_weights(dp);
  } else {
    idoc_params_init_adam(dp->ps);
    for (int i = 0; i < dp->n_slots; i++) {
      idoc_param *p = &dp->ps->p[dp->slots[i].idx];
      idoc_adamw_update(opt, p, p->w, p->w->grad, p->m, p->v, lr, scale);
    }
  }
  return norm;
}

// ---- checkpoints -----------------------------------------------------------------------------
typedef struct {
  idoc_tensor **full; // [stride * ps->n]
  const float *buf;   // the gathered bucket
  int stride, which;  // moments: 2 and 0 (m) or 1 (v); masters: 1 and 0
} mom_ud;
static void mom_unpack(idoc_dp *dp, const slot *s, int64_t lo, int64_t len, int64_t at, void *ud) {
  mom_ud *u = ud;
  idoc_tensor *t = u->full[u->stride * s->idx + u->which];
  if (!t) return; // no master (an f32 parameter)
  memcpy((float *)t->data + lo, u->buf + at, (size_t)len * sizeof(float));
}

idoc_tensor **idoc_dp_gather_moments(idoc_dp *dp) {
  if (!dp || !dp->zero) return NULL;
  idoc_params *ps = dp->ps;
  free(dp->moms);
  dp->moms = NULL;
  if (dp->saved) idoc_arena_free(dp->saved);
  dp->saved = NULL;
  if (dp->rank == 0) {
    dp->saved = idoc_arena_new("gathered moments", IDOC_DEV_CPU, (size_t)1 << 20);
    dp->moms = idoc_xcalloc((size_t)ps->n * 2, sizeof(idoc_tensor *));
    if (dp->flat && !dp->mfull) dp->mfull = idoc_xcalloc((size_t)ps->n + 1, sizeof(idoc_tensor *));
    for (int i = 0; i < dp->n_slots; i++) {
      const idoc_tensor *w = ps->p[dp->slots[i].idx].w;
      for (int k = 0; k < 2; k++)
        dp->moms[2 * dp->slots[i].idx + k] =
            idoc_tensor_new(dp->saved, IDOC_F32, w->ndim, w->shape);
      if (dp->flat)
        dp->mfull[dp->slots[i].idx] =
            w->dtype == IDOC_BF16 ? idoc_tensor_new(dp->saved, IDOC_F32, w->ndim, w->shape) : NULL;
    }
  }
  idoc_comm_set_phase("gathering moments");
  float *host = NULL; // this rank's shard, read from the device
  if (dp->dev) host = idoc_xmalloc((size_t)(shard_len(dp) > 0 ? shard_len(dp) : 1) * sizeof(float));
  for (int which = 0; which < (dp->flat ? 3 : 2); which++) { // m, v, the fp32 masters
    idoc_tensor *sh = which == 0 ? dp->m : which == 1 ? dp->v : dp->m32;
    const float *src = IDOC_F(sh);
    if (dp->dev) {
      if (shard_len(dp) > 0) idoc_tensor_to_host(sh, host);
      src = host;
    }
    for (int64_t a = 0; a < dp->total; a += dp->bucket) {
      int64_t b = a + dp->bucket < dp->total ? a + dp->bucket : dp->total;
      overlap_counts(dp, a, b);
      int64_t lo = my_lo(dp, a), k = dp->counts[dp->rank];
      const float *mine = src + (k > 0 ? lo - dp->bounds[dp->rank] : 0);
      size_t *sizes = NULL;
      float *all = idoc_comm_gather_bytes(mine, (size_t)k * sizeof(float), 0, &sizes);
      if (dp->rank == 0) {
        mom_ud u = {which < 2 ? dp->moms : dp->mfull, all, which < 2 ? 2 : 1,
                    which < 2 ? which : 0};
        for_pieces(dp, a, b, mom_unpack, &u);
      }
      free(all);
      free(sizes);
    }
  }
  free(host);
  return dp->moms;
}

idoc_tensor **idoc_dp_masters(idoc_dp *dp) {
  if (!dp || !dp->flat) return NULL;
  return dp->zero ? dp->mfull : dp->mviews; // ZeRO-1: gathered by idoc_dp_gather_moments
}

int idoc_dp_load_moments(idoc_dp *dp, const char *dir) {
  char p[4200];
  snprintf(p, sizeof p, "%s/optimizer.safetensors", dir);
  idoc_st_file *f;
  if (idoc_st_open(&f, p)) return IDOC_ERR;
  idoc_params *ps = dp->ps;
  if (!dp->zero) idoc_params_init_adam(ps);
  int rc = IDOC_OK;
  idoc_arena *tmp = idoc_arena_new("moment load", IDOC_DEV_CPU, (size_t)1 << 20);
  int64_t s0 = dp->bounds[dp->rank], s1 = dp->bounds[dp->rank + 1];
  for (int i = 0; i < dp->n_slots && rc == IDOC_OK; i++) {
    const slot *s = &dp->slots[i];
    idoc_param *pp = &ps->p[s->idx];
    int64_t lo = s0 > s->off ? s0 : s->off, hi = s1 < s->off + s->n ? s1 : s->off + s->n;
    if (dp->zero && lo >= hi) continue;
    // The moments, and the fp32 masters of a bf16 weight (a checkpoint without them, e.g. of an
    // f32 run, leaves the masters taken from the weights).
    const char *kind[3] = {"exp_avg", "exp_avg_sq", "master"};
    int n_kinds = dp->flat && pp->w->dtype == IDOC_BF16 ? 3 : 2;
    for (int k = 0; k < n_kinds && rc == IDOC_OK; k++) {
      char nm[1100];
      snprintf(nm, sizeof nm, "%s.%s", kind[k], pp->w->name);
      const idoc_st_tensor *t = idoc_st_find(f, nm);
      if (!t && k == 2) continue;
      if (!t) {
        rc = idoc_set_error("%s: '%s' is missing (was the parameter frozen when saved?)", p, nm);
        break;
      }
      if (!dp->zero) {
        rc = idoc_st_load(t, k == 0 ? pp->m : k == 1 ? pp->v : dp->mviews[s->idx]);
        continue;
      }
      idoc_arena_reset(tmp);
      idoc_tensor *full = idoc_tensor_new(tmp, IDOC_F32, pp->w->ndim, pp->w->shape);
      rc = idoc_st_load(t, full);
      if (rc == IDOC_OK) {
        int64_t n = hi - lo;
        idoc_tensor *src =
            idoc_tensor_wrap(tmp, IDOC_F(full) + (lo - s->off), IDOC_F32, IDOC_DEV_CPU, 1, &n);
        idoc_tensor *shard = k == 0 ? dp->m : k == 1 ? dp->v : dp->m32; // all start at s0
        idoc_tensor_copy(view(dp, shard, lo - s0, n), src);             // host or device
      }
    }
  }
  idoc_arena_free(tmp);
  idoc_st_close(f);
  return rc;
}

int idoc_dp_cursor(const idoc_dp *dp, const idoc_loader_cursor *saved, idoc_loader_cursor *out) {
  *out = *saved;
  int W = idoc_dp_world(dp), old = saved->world > 0 ? saved->world : 1;
  out->rank = idoc_dp_rank(dp);
  out->world = W;
  if (old == W) return IDOC_OK;
  // Every rank had consumed `pos` items of this epoch: the global position is pos * old.
  uint64_t g = saved->pos * (uint64_t)old;
  if (g % (uint64_t)W)
    return idoc_set_error("resume: the checkpoint was written by %d ranks at position %llu of "
                          "its epoch, which %d ranks cannot split evenly (use a world size that "
                          "divides it)",
                          old, (unsigned long long)g, W);
  out->pos = g / (uint64_t)W;
  if (saved->n % (uint64_t)old || saved->n % (uint64_t)W)
    fprintf(stderr,
            "warning: resume from %d to %d ranks: the split has %llu samples, not a multiple of "
            "both, so the epoch's padding (or cut) differs from the original run's\n",
            old, W, (unsigned long long)saved->n);
  return IDOC_OK;
}

// ---- signals ---------------------------------------------------------------------------------
static volatile sig_atomic_t g_signal;
static bool g_stopped;
static struct sigaction g_old_term, g_old_usr1;
static bool g_installed;

static void on_signal(int sig) {
  if (g_signal) { // a second one: the default action, now
    signal(sig, SIG_DFL);
    raise(sig);
    return;
  }
  g_signal = sig;
  static const char msg[] = "idoc: signal received: stopping at the end of this step with a "
                            "checkpoint (send it again to stop at once)\n";
  if (write(2, msg, sizeof msg - 1) < 0) {
  }
}

void idoc_dp_signals_install(void) {
  if (g_installed) return;
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_signal;
  sigemptyset(&sa.sa_mask);
  sa.sa_flags = SA_RESTART;
  sigaction(SIGTERM, &sa, &g_old_term);
  sigaction(SIGUSR1, &sa, &g_old_usr1);
  g_installed = true;
}

void idoc_dp_signals_restore(void) {
  if (!g_installed) return;
  sigaction(SIGTERM, &g_old_term, NULL);
  sigaction(SIGUSR1, &g_old_usr1, NULL);
  g_installed = false;
}

bool idoc_dp_stop_agreed(idoc_dp *dp) {
  int64_t s = g_signal;
  if (idoc_dp_world(dp) > 1) idoc_comm_all_reduce_i64(&s, 1, IDOC_RED_MAX);
  return s != 0;
}

bool idoc_dp_stopped_by_signal(void) { return g_stopped; }
void idoc_dp_mark_stopped(void) { g_stopped = true; }

// ---- test hooks ------------------------------------------------------------------------------
static bool env_is(const char *name, int64_t v) {
  const char *e = getenv(name);
  return e && *e && atoll(e) == v;
}

void idoc_dp_test_hooks(const idoc_dp *dp, int64_t step) {
  int r = idoc_dp_rank(dp);
  if (env_is("IDOC_TEST_KILL_RANK", r) && env_is("IDOC_TEST_KILL_STEP", step)) {
    fprintf(stderr, "idoc: test hook: rank %d kills itself in step %lld\n", r, (long long)step);
    raise(SIGKILL);
  }
  if (env_is("IDOC_TEST_HANG_RANK", r) && env_is("IDOC_TEST_HANG_STEP", step)) {
    fprintf(stderr, "idoc: test hook: rank %d hangs in step %lld\n", r, (long long)step);
    for (;;) {
      struct timespec ts = {1, 0};
      nanosleep(&ts, NULL);
    }
  }
}
