#define _GNU_SOURCE // CPU_COUNT, sched_getaffinity
// The communication layer (nn/comm.h): the launcher's environment, the job's transports, and the
// collectives with their arithmetic (always in rank order, so results are bitwise the same on
// every rank and from run to run).
#include "nn/comm.h"

#include <errno.h>
#include <limits.h>
#include <omp.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/collective.h"
#include "kernels/cpu/gemm.h"
#include "kernels/ops.h"
#include "nn/comm_internal.h"
#include "nn/util.h"

static struct {
  bool inited;
  idoc_comm_info info;
  const idoc_comm_transport *t; // NULL for a single process
  bool ctl;                     // the control plane runs
} g = {.info = {0, 1, 0, 1, "none", "single"}};

// ---- environment ----------------------------------------------------------------------------
// 1: set to an integer in [lo, hi]; 0: unset or empty; -1: set to something else (error set).
static int env_int(const char *name, int lo, int hi, int *out) {
  const char *v = getenv(name);
  if (!v || !*v) return 0;
  char *end;
  errno = 0;
  long x = strtol(v, &end, 10);
  if (*end || errno || x < lo || x > hi) {
    idoc_set_error("environment: %s='%s' is not an integer in [%d, %d]", name, v, lo, hi);
    return -1;
  }
  *out = (int)x;
  return 1;
}

typedef struct {
  const char *launcher, *rank, *world, *local_rank, *local_world;
} env_scheme;

static const env_scheme SCHEMES[] = {
    {"openmpi", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK",
     "OMPI_COMM_WORLD_LOCAL_SIZE"},
    {"mpich", "PMI_RANK", "PMI_SIZE", "MPI_LOCALRANKID", "MPI_LOCALNRANKS"},
    // SLURM_STEP_NUM_TASKS: only inside an srun step (a batch script's shell has SLURM_NTASKS).
    {"slurm", "SLURM_PROCID", "SLURM_STEP_NUM_TASKS", "SLURM_LOCALID", "SLURM_STEP_TASKS_PER_NODE"},
    {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK", "LOCAL_WORLD_SIZE"},
};

static int detect(idoc_comm_info *info) {
  *info = (idoc_comm_info){0, 1, 0, 1, "none", "single"};
  for (size_t s = 0; s < sizeof SCHEMES / sizeof SCHEMES[0]; s++) {
    const env_scheme *e = &SCHEMES[s];
    int world = 0, rank = 0, lr = 0, lw = 0;
    int kw = env_int(e->world, 1, 1 << 24, &world);
    if (kw < 0) return IDOC_ERR;
    if (kw == 0) continue;
    int kr = env_int(e->rank, 0, world - 1, &rank);
    if (kr < 0) return idoc_wrap_error("%s sets %s=%d", e->launcher, e->world, world);
    if (kr == 0)
      return idoc_set_error("environment: %s=%d is set but %s is not (%s launch)", e->world, world,
                            e->rank, e->launcher);
    info->rank = rank;
    info->world = world;
    info->launcher = e->launcher;
    // Local rank: optional (0); Slurm's tasks-per-node is "2(x3),1" style: take the count.
    if (env_int(e->local_rank, 0, 1 << 24, &lr) < 0) return IDOC_ERR;
    const char *lwv = getenv(e->local_world);
    lw = lwv && *lwv ? atoi(lwv) : 0;
    info->local_rank = lr;
    info->local_world = lw > 0 ? lw : 1;
    return IDOC_OK;
  }
  return IDOC_OK;
}

// ---- init / shutdown -------------------------------------------------------------------------
// Several ranks on one node share its cores: each gets cores / local ranks CPU threads (OpenMP
// and OpenBLAS; OMP_NUM_THREADS may ask for fewer, IDOC_THREADS_PER_RANK sets the number), as
// torchrun does, instead of every rank starting a thread per core.
static void limit_threads(const idoc_comm_info *info) {
  int ncpu = 0;
  cpu_set_t set;
  if (sched_getaffinity(0, sizeof set, &set) == 0) ncpu = CPU_COUNT(&set);
  if (ncpu <= 0) ncpu = (int)sysconf(_SC_NPROCESSORS_ONLN);
  int n = ncpu / (info->local_world > 0 ? info->local_world : 1);
  if (n < 1) n = 1;
  const char *omp = getenv("OMP_NUM_THREADS"), *mine = getenv("IDOC_THREADS_PER_RANK");
  if (omp && atoi(omp) > 0 && atoi(omp) < n) n = atoi(omp);
  if (mine && atoi(mine) > 0) n = atoi(mine);
  if (info->local_world <= 1 && !mine) return;
  omp_set_num_threads(n);
  idoc_sgemm_serial_end(n); // sets OpenBLAS's thread count
}

int idoc_comm_init(void) {
  if (g.inited) return IDOC_OK;
  idoc_comm_info info;
  if (detect(&info)) return IDOC_ERR;
  if (info.world == 1) {
    g.info = info;
    g.inited = true;
    return IDOC_OK;
  }
  const char *want = getenv("IDOC_COMM_BACKEND");
  bool use_mpi = false;
#if IDOC_HAVE_MPI
  // MPI when an MPI-aware launcher started the ranks; torchrun-style ranks rendezvous over TCP.
  bool mpi_launch = strcmp(info.launcher, "torchrun") != 0;
  use_mpi = want && *want ? !strcmp(want, "mpi") : mpi_launch;
#endif
  if (want && *want && strcmp(want, "mpi") && strcmp(want, "tcp"))
    return idoc_set_error("environment: IDOC_COMM_BACKEND='%s': expected mpi or tcp", want);
  if (want && !strcmp(want, "mpi") && !use_mpi)
    return idoc_set_error("IDOC_COMM_BACKEND=mpi, but this build of idoc has no MPI (install "
                          "libopenmpi-dev and rebuild)");
  int rank = info.rank, world = info.world;
#if IDOC_HAVE_MPI
  if (use_mpi) {
    if (idoc_comm_mpi.init(&rank, &world)) return IDOC_ERR;
    if (rank != info.rank || world != info.world) {
      idoc_comm_mpi.finalize();
      return idoc_set_error(
          "%s started this process as rank %d of %d but MPI sees rank %d of %d: under Slurm "
          "launch with `srun --mpi=pmix` (see `srun --mpi=list`), or use mpirun; "
          "IDOC_COMM_BACKEND=tcp with MASTER_ADDR/MASTER_PORT works without MPI",
          info.launcher, info.rank, info.world, rank, world);
    }
    g.t = &idoc_comm_mpi;
  }
#endif
  if (!use_mpi) {
    idoc_comm_tcp_set(rank, world);
    g.t = &idoc_comm_tcp;
  }
  info.backend = g.t->name;
  g.info = info;
  // The control plane: always with TCP (it carries the data); with MPI unless IDOC_WATCHDOG=0.
  const char *wd = getenv("IDOC_WATCHDOG");
  bool ctl = !use_mpi || !wd || strcmp(wd, "0");
  if (ctl) {
    if (idoc_ctl_start(rank, world, use_mpi ? g.t : NULL)) {
      if (g.t->finalize) g.t->finalize();
      g.t = NULL;
      g.info = (idoc_comm_info){0, 1, 0, 1, "none", "single"};
      return idoc_wrap_error("rank %d of %d: starting the control plane", rank, world);
    }
    g.ctl = true;
  }
  int ndev = idoc_cuda_device_count();
  if (ndev > 0) idoc_cuda_use_device(info.local_rank % ndev);
  limit_threads(&info);
  g.inited = true;
  return IDOC_OK;
}

const idoc_comm_info *idoc_comm_get(void) { return &g.info; }
int idoc_comm_rank(void) { return g.info.rank; }
int idoc_comm_world(void) { return g.info.world; }
bool idoc_comm_is_main(void) { return g.info.rank == 0; }
int idoc_comm_device_index(void) {
  int n = idoc_cuda_device_count();
  return n > 0 ? g.info.local_rank % n : 0;
}

void idoc_comm_set_step(int64_t step) { idoc_ctl_set_step(step); }
void idoc_comm_set_phase(const char *phase) { idoc_ctl_set_phase(phase); }
void idoc_comm_set_timeout(double seconds) { idoc_ctl_set_timeout(seconds); }

static bool multi(void) { return g.t != NULL && g.info.world > 1; }

void idoc_comm_shutdown(bool ok) {
  if (!multi()) { // a single process: nothing to leave (a later init reads the environment again)
    g.inited = false;
    g.info = (idoc_comm_info){0, 1, 0, 1, "none", "single"};
    return;
  }
  if (!ok) {
    if (g.ctl) idoc_ctl_stop(false, idoc_last_error());
    idoc_ctl_fatal("%s", idoc_last_error()); // without a control plane (IDOC_WATCHDOG=0)
  }
  idoc_comm_barrier();
  idoc_nccl_finalize();
  if (g.ctl) idoc_ctl_stop(true, NULL);
  g.ctl = false;
  if (g.t->finalize) g.t->finalize();
  g.t = NULL;
  g.inited = false;
  g.info = (idoc_comm_info){0, 1, 0, 1, "none", "single"};
}

// ---- arithmetic ------------------------------------------------------------------------------
typedef enum { E_F32, E_BF16, E_F16, E_I32, E_I64, E_F64 } etype;
static size_t esize(etype t) {
  static const size_t s[] = {4, 2, 2, 4, 8, 8};
  return s[t];
}
static bool efloat(etype t) { return t == E_F32 || t == E_BF16 || t == E_F16; }

static double load(const void *p, etype t, size_t i) {
  switch (t) {
  case E_F32: return ((const float *)p)[i];
  case E_BF16: return idoc_bf16_to_f32(((const uint16_t *)p)[i]);
  case E_F16: return idoc_f16_to_f32(((const uint16_t *)p)[i]);
  case E_I32: return ((const int32_t *)p)[i];
  case E_F64: return ((const double *)p)[i];
  default: return (double)((const int64_t *)p)[i];
  }
}
static void store(void *p, etype t, size_t i, double v) {
  switch (t) {
  case E_F32: ((float *)p)[i] = (float)v; break;
  case E_BF16: ((uint16_t *)p)[i] = idoc_f32_to_bf16((float)v); break;
  case E_F16: ((uint16_t *)p)[i] = idoc_f32_to_f16((float)v); break;
  case E_F64: ((double *)p)[i] = v; break;
  default: break;
  }
}

// out[i] = op over r = 0..W-1 (in that order) of block r element i; blocks are `stride`
// elements apart. fp32/bf16/f16 accumulate in fp32 (rounded once to the storage type), f64 in
// f64, integers in int64.
static void reduce_blocks(void *out, const void *blocks, int W, size_t stride, size_t n, etype t,
                          idoc_red_op op) {
  size_t es = esize(t);
  const char *b = blocks;
  if (t == E_I32 || t == E_I64) {
    for (size_t i = 0; i < n; i++) {
      int64_t acc = t == E_I32 ? ((const int32_t *)b)[i] : ((const int64_t *)b)[i];
      for (int r = 1; r < W; r++) {
        const char *q = b + (size_t)r * stride * es;
        int64_t v = t == E_I32 ? ((const int32_t *)q)[i] : ((const int64_t *)q)[i];
        acc = op == IDOC_RED_MAX   ? (v > acc ? v : acc)
              : op == IDOC_RED_MIN ? (v < acc ? v : acc)
                                   : acc + v;
      }
      if (op == IDOC_RED_AVG) acc /= W;
      if (t == E_I32)
        ((int32_t *)out)[i] = (int32_t)acc;
      else
        ((int64_t *)out)[i] = acc;
    }
    return;
  }
  for (size_t i = 0; i < n; i++) {
    if (efloat(t)) {
      float acc = (float)load(b, t, i);
      for (int r = 1; r < W; r++) {
        float v = (float)load(b + (size_t)r * stride * es, t, i);
        acc = op == IDOC_RED_MAX   ? (v > acc ? v : acc)
              : op == IDOC_RED_MIN ? (v < acc ? v : acc)
                                   : acc + v;
      }
      if (op == IDOC_RED_AVG) acc /= (float)W;
      store(out, t, i, acc);
    } else {
      double acc = load(b, t, i);
      for (int r = 1; r < W; r++) {
        double v = load(b + (size_t)r * stride * es, t, i);
        acc = op == IDOC_RED_MAX   ? (v > acc ? v : acc)
              : op == IDOC_RED_MIN ? (v < acc ? v : acc)
                                   : acc + v;
      }
      if (op == IDOC_RED_AVG) acc /= W;
      store(out, t, i, acc);
    }
  }
}

// Elements a collective moves per rank and call (the transport takes int byte counts).
static size_t chunk_elems(etype t) {
  size_t c = ((size_t)1 << 27) / esize(t) / (size_t)(g.info.world > 0 ? g.info.world : 1);
  const char *e = getenv("IDOC_COMM_CHUNK"); // test hook: small chunks exercise the rounds
  if (e && atol(e) > 0) c = (size_t)atol(e);
  return c ? c : 1;
}

static uint64_t g_collectives;
uint64_t idoc_comm_collectives(void) { return g_collectives; }
static void enter(const char *what) {
  g_collectives++;
  idoc_ctl_enter(what);
}
static void leave(void) { idoc_ctl_leave(); }

// pre[r] = the sum of counts[0..r) (pre has W + 1 entries); returns the largest count.
static int64_t count_prefix(const int64_t *counts, int W, int64_t *pre) {
  int64_t maxc = 0;
  pre[0] = 0;
  for (int r = 0; r < W; r++) {
    pre[r + 1] = pre[r] + counts[r];
    if (counts[r] > maxc) maxc = counts[r];
  }
  return maxc;
}

// The round at element `off` of the chunked v-collectives: bytes[r] of rank r's segment (at most
// C elements of es bytes), packed one after another at disp[r].
static void chunk_layout(const int64_t *counts, int W, size_t off, size_t C, size_t es,
                         size_t *bytes, size_t *disp) {
  size_t o = 0;
  for (int r = 0; r < W; r++) {
    size_t left = (size_t)counts[r] > off ? (size_t)counts[r] - off : 0;
    bytes[r] = (left < C ? left : C) * es;
    disp[r] = o;
    o += bytes[r];
  }
}

// Rank r gets the reduction of everyone's segment r (counts[r] elements at offset sum of the
// counts before it in `in`). In rounds of at most C elements per segment, packed, so every
// transport call stays within int byte counts.
static void reduce_scatterv(const void *in, void *out, const int64_t *counts, etype t,
                            idoc_red_op op) {
  const int W = g.info.world, me = g.info.rank;
  size_t es = esize(t), C = chunk_elems(t);
  size_t *v = idoc_xmalloc((size_t)W * 4 * sizeof(size_t));
  size_t *sc = v, *sd = v + W, *rc = v + 2 * W, *rd = v + 3 * W;
  int64_t *pre = idoc_xmalloc((size_t)(W + 1) * sizeof(int64_t));
  int64_t maxc = count_prefix(counts, W, pre);
  char *sbuf = idoc_xmalloc((size_t)W * C * es + 1), *rbuf = idoc_xmalloc((size_t)W * C * es + 1);
  enter("reduce-scatter");
  for (size_t off = 0; off < (size_t)maxc; off += C) {
    chunk_layout(counts, W, off, C, es, sc, sd);
    for (int r = 0; r < W; r++)
      if (sc[r]) memcpy(sbuf + sd[r], (const char *)in + ((size_t)pre[r] + off) * es, sc[r]);
    size_t mk = sc[me] / es;
    for (int r = 0; r < W; r++) {
      rc[r] = mk * es;
      rd[r] = (size_t)r * mk * es;
    }
    g.t->alltoallv(sbuf, sc, sd, rbuf, rc, rd);
    reduce_blocks((char *)out + off * es, rbuf, W, mk, mk, t, op);
  }
  leave();
  free(sbuf);
  free(rbuf);
  free(pre);
  free(v);
}

static void all_gatherv(const void *mine, void *out, const int64_t *counts, etype t) {
  const int W = g.info.world;
  size_t es = esize(t), C = chunk_elems(t);
  size_t *cnt = idoc_xmalloc((size_t)W * 2 * sizeof(size_t)), *dis = cnt + W;
  int64_t *pre = idoc_xmalloc((size_t)(W + 1) * sizeof(int64_t));
  int64_t maxc = count_prefix(counts, W, pre);
  char *tmp = idoc_xmalloc((size_t)W * C * es + 1);
  enter("all-gather");
  for (size_t off = 0; off < (size_t)maxc; off += C) {
    chunk_layout(counts, W, off, C, es, cnt, dis);
    g.t->allgatherv((const char *)mine + off * es, tmp, cnt, dis);
    for (int r = 0; r < W; r++)
      if (cnt[r]) memcpy((char *)out + ((size_t)pre[r] + off) * es, tmp + dis[r], cnt[r]);
  }
  leave();
  free(tmp);
  free(pre);
  free(cnt);
}

static void bcast(void *p, size_t bytes, int root) {
  enter("broadcast");
  for (size_t off = 0; off < bytes; off += (size_t)1 << 28) {
    size_t k = bytes - off < ((size_t)1 << 28) ? bytes - off : (size_t)1 << 28;
    g.t->bcast((char *)p + off, k, root);
  }
  leave();
}

// In place: small vectors are all-gathered and reduced by everyone; larger ones are reduce-
// scattered in W even segments and all-gathered (each element crosses the network twice).
static void all_reduce(void *x, size_t n, etype t, idoc_red_op op) {
  const int W = g.info.world, me = g.info.rank;
  size_t es = esize(t);
  if (n * (size_t)W <= 4096) {
    char *all = idoc_xmalloc(n * (size_t)W * es + 1);
    idoc_comm_all_gather_bytes(x, n * es, all);
    reduce_blocks(x, all, W, n, n, t, op);
    free(all);
    return;
  }
  int64_t *counts = idoc_xmalloc((size_t)W * sizeof(int64_t));
  for (int r = 0; r < W; r++)
    counts[r] = (int64_t)(n / (size_t)W + ((size_t)r < n % (size_t)W));
  char *seg = idoc_xmalloc((size_t)counts[me] * es + 1);
  reduce_scatterv(x, seg, counts, t, op);
  all_gatherv(seg, x, counts, t);
  free(seg);
  free(counts);
}

// ---- public host collectives -------------------------------------------------------------------
void idoc_comm_all_reduce_f64(double *x, int n, idoc_red_op op) {
  if (multi() && n > 0) all_reduce(x, (size_t)n, E_F64, op);
}
void idoc_comm_all_reduce_i64(int64_t *x, int n, idoc_red_op op) {
  if (multi() && n > 0) all_reduce(x, (size_t)n, E_I64, op);
}

void idoc_comm_reduce_scatterv_f32(const float *in, float *out, const int64_t *counts,
                                   idoc_red_op op) {
  if (!multi()) {
    if (out != in) memmove(out, in, (size_t)counts[0] * sizeof(float));
    return;
  }
  reduce_scatterv(in, out, counts, E_F32, op);
}

void idoc_comm_reduce_scatterv_f64(const double *in, double *out, const int64_t *counts,
                                   idoc_red_op op) {
  if (!multi()) {
    if (out != in) memmove(out, in, (size_t)counts[0] * sizeof(double));
    return;
  }
  reduce_scatterv(in, out, counts, E_F64, op);
}

void idoc_comm_all_gatherv_f32(const float *mine, float *out, const int64_t *counts) {
  if (!multi()) {
    if (out != mine) memmove(out, mine, (size_t)counts[0] * sizeof(float));
    return;
  }
  all_gatherv(mine, out, counts, E_F32);
}

void idoc_comm_all_gather_bytes(const void *mine, size_t n, void *out) {
  if (!multi()) {
    if (out != mine && n) memmove(out, mine, n);
    return;
  }
  const int W = g.info.world;
  size_t *cnt = idoc_xmalloc((size_t)W * 2 * sizeof(size_t)), *dis = cnt + W;
  for (int r = 0; r < W; r++)
    cnt[r] = n, dis[r] = (size_t)r * n;
  IDOC_CHECK(n * (size_t)W < (size_t)INT_MAX, "all_gather_bytes: %zu bytes x %d ranks", n, W);
  enter("all-gather");
  g.t->allgatherv(mine, out, cnt, dis);
  leave();
  free(cnt);
}

void *idoc_comm_gather_bytes(const void *mine, size_t n, int root, size_t **sizes) {
  const int W = g.info.world, me = g.info.rank;
  *sizes = NULL;
  if (!multi()) {
    *sizes = idoc_xmalloc(sizeof(size_t));
    (*sizes)[0] = n;
    void *o = idoc_xmalloc(n + 1);
    if (n) memcpy(o, mine, n);
    return o;
  }
  size_t *all = idoc_xmalloc((size_t)W * sizeof(size_t));
  idoc_comm_all_gather_bytes(&n, sizeof n, all);
  size_t *dis = idoc_xmalloc((size_t)W * sizeof(size_t)), tot = 0;
  for (int r = 0; r < W; r++)
    dis[r] = tot, tot += all[r];
  IDOC_CHECK(tot < (size_t)INT_MAX, "gather_bytes: %zu bytes", tot);
  char *out = me == root ? idoc_xmalloc(tot + 1) : NULL;
  enter("gather");
  g.t->gatherv(mine, n, out, all, dis, root);
  leave();
  free(dis);
  if (me == root) {
    *sizes = all;
    return out;
  }
  free(all);
  return NULL;
}

void idoc_comm_broadcast_bytes(void *p, size_t n, int root) {
  if (multi() && n) bcast(p, n, root);
}

void idoc_comm_barrier(void) {
  if (!multi()) return;
  enter("barrier");
  g.t->barrier();
  leave();
}

bool idoc_comm_any_failed(int rc) {
  if (!multi()) return rc != IDOC_OK;
  const int W = g.info.world, me = g.info.rank;
  int32_t mine = rc != IDOC_OK, *all = idoc_xmalloc((size_t)W * sizeof(int32_t));
  idoc_comm_all_gather_bytes(&mine, sizeof mine, all);
  int first = -1;
  for (int r = 0; r < W && first < 0; r++)
    if (all[r]) first = r;
  free(all);
  if (first < 0) return false;
  char msg[2048];
  snprintf(msg, sizeof msg, "%s", idoc_last_error());
  idoc_comm_broadcast_bytes(msg, sizeof msg, first);
  msg[sizeof msg - 1] = 0;
  if (first != me || !mine) idoc_set_error("rank %d: %s", first, msg);
  return true;
}

// ---- tensors ---------------------------------------------------------------------------------
static etype tensor_etype(const idoc_tensor *t, const char *op) {
  switch (t->dtype) {
  case IDOC_F32: return E_F32;
  case IDOC_BF16: return E_BF16;
  case IDOC_F16: return E_F16;
  case IDOC_I32: return E_I32;
  case IDOC_I64: return E_I64;
  case IDOC_F64: return E_F64;
  default: idoc_die("%s: dtype %s is not supported", op, idoc_dtype_name(t->dtype));
  }
}

static idoc_nccl_dtype nccl_dtype(etype t) {
  switch (t) {
  case E_BF16: return IDOC_NCCL_BF16;
  case E_F16: return IDOC_NCCL_F16;
  case E_I32: return IDOC_NCCL_I32;
  case E_I64: return IDOC_NCCL_I64;
  case E_F64: return IDOC_NCCL_F64;
  default: return IDOC_NCCL_F32;
  }
}
static idoc_nccl_op nccl_op(idoc_red_op op) {
  static const idoc_nccl_op m[] = {IDOC_NCCL_SUM, IDOC_NCCL_AVG, IDOC_NCCL_MAX, IDOC_NCCL_MIN};
  return m[op];
}

static bool on_device(const idoc_tensor *t) { return t->dev.kind == IDOC_CUDA; }

// The NCCL communicator, created at the first device collective: rank 0's unique id goes to
// the others over the host transport (MPI or the TCP control plane).
static void ensure_nccl(void) {
  if (idoc_nccl_ready()) return;
  unsigned char id[IDOC_NCCL_ID_BYTES] = {0};
  int ok = 1;
  if (g.info.rank == 0) ok = idoc_nccl_unique_id(id) == 0;
  int32_t okv = ok;
  idoc_comm_broadcast_bytes(&okv, sizeof okv, 0);
  if (!okv) idoc_ctl_fatal("NCCL: rank 0 cannot make a unique id: %s", idoc_nccl_error());
  idoc_comm_broadcast_bytes(id, sizeof id, 0);
  enter("nccl init");
  int rc = idoc_nccl_init(g.info.world, g.info.rank, id);
  leave();
  if (rc) idoc_ctl_fatal("NCCL init: %s", idoc_nccl_error());
}

static void nccl_done(int rc, const char *what) {
  if (rc == 0) rc = idoc_nccl_sync(idoc_ctl_timeout());
  if (rc == 0) rc = idoc_nccl_stream_wait();
  leave();
  if (rc) {
    char msg[600];
    snprintf(msg, sizeof msg, "%s", idoc_nccl_error());
    idoc_nccl_abort();
    idoc_ctl_fatal("NCCL %s: %s", what, msg);
  }
}

void idoc_comm_all_reduce(idoc_tensor *t, idoc_red_op op) {
  etype e = tensor_etype(t, "all_reduce");
  if (!multi()) return;
  size_t n = (size_t)idoc_numel(t);
  if (on_device(t)) {
    ensure_nccl();
    enter("nccl all-reduce");
    nccl_done(idoc_nccl_all_reduce(t->data, t->data, n, nccl_dtype(e), nccl_op(op)), "all-reduce");
    return;
  }
  all_reduce(t->data, n, e, op);
}

static int g_pending; // device collectives queued by _start and not waited for

void idoc_comm_all_reduce_start(idoc_tensor *t, idoc_red_op op) {
  etype e = tensor_etype(t, "all_reduce_start");
  if (!multi()) return;
  if (!on_device(t)) {
    all_reduce(t->data, (size_t)idoc_numel(t), e, op);
    return;
  }
  ensure_nccl();
  int rc =
      idoc_nccl_all_reduce(t->data, t->data, (size_t)idoc_numel(t), nccl_dtype(e), nccl_op(op));
  if (rc) idoc_ctl_fatal("NCCL all-reduce: %s", idoc_nccl_error());
  g_collectives++;
  g_pending++;
}

void idoc_comm_device_wait(void) {
  if (!g_pending) return;
  g_pending = 0;
  enter("nccl wait");
  // The compute stream waits on the device; the host only checks for asynchronous errors.
  int rc = idoc_nccl_stream_wait();
  leave();
  if (rc) idoc_ctl_fatal("NCCL: %s", idoc_nccl_error());
}

void idoc_comm_reduce_scatter(const idoc_tensor *in, idoc_tensor *out, idoc_red_op op) {
  etype e = tensor_etype(in, "reduce_scatter");
  const int W = g.info.world;
  int64_t n = idoc_numel(out);
  IDOC_CHECK(in->dtype == out->dtype && idoc_numel(in) == n * W && idoc_dev_eq(in->dev, out->dev),
             "reduce_scatter: in %lld elements, out %lld, world %d", (long long)idoc_numel(in),
             (long long)n, W);
  if (!multi()) {
    if (out->data != in->data) idoc_tensor_copy(out, in);
    return;
  }
  if (on_device(in)) {
    ensure_nccl();
    enter("nccl reduce-scatter");
    nccl_done(idoc_nccl_reduce_scatter(in->data, out->data, (size_t)n, nccl_dtype(e), nccl_op(op)),
              "reduce-scatter");
    return;
  }
  int64_t *counts = idoc_xmalloc((size_t)W * sizeof(int64_t));
  for (int r = 0; r < W; r++)
    counts[r] = n;
  reduce_scatterv(in->data, out->data, counts, e, op);
  free(counts);
}

void idoc_comm_all_gather(const idoc_tensor *in, idoc_tensor *out) {
  etype e = tensor_etype(in, "all_gather");
  const int W = g.info.world;
  int64_t n = idoc_numel(in);
  IDOC_CHECK(in->dtype == out->dtype && idoc_numel(out) == n * W && idoc_dev_eq(in->dev, out->dev),
             "all_gather: in %lld elements, out %lld, world %d", (long long)n,
             (long long)idoc_numel(out), W);
  if (!multi()) {
    if (out->data != in->data) idoc_tensor_copy(out, in);
    return;
  }
  if (on_device(in)) {
    ensure_nccl();
    enter("nccl all-gather");
    nccl_done(idoc_nccl_all_gather(in->data, out->data, (size_t)n, nccl_dtype(e)), "all-gather");
    return;
  }
  int64_t *counts = idoc_xmalloc((size_t)W * sizeof(int64_t));
  for (int r = 0; r < W; r++)
    counts[r] = n;
  all_gatherv(in->data, out->data, counts, e);
  free(counts);
}

void idoc_comm_broadcast(idoc_tensor *t, int root) {
  etype e = tensor_etype(t, "broadcast");
  if (!multi()) return;
  IDOC_CHECK(root >= 0 && root < g.info.world, "broadcast: root %d of %d", root, g.info.world);
  if (on_device(t)) {
    ensure_nccl();
    enter("nccl broadcast");
    nccl_done(idoc_nccl_broadcast(t->data, t->data, (size_t)idoc_numel(t), nccl_dtype(e), root),
              "broadcast");
    return;
  }
  bcast(t->data, idoc_nbytes(t), root);
}
