// Harness for the CUDA parity tests (tests/unit/test_cuda_parity*.c): CUDA kernels against the
// fp32 CPU reference on random data, f32 and bf16 storage.
//
// - bf16 inputs are rounded to bf16 on the CPU side first, so both backends see the same numbers
//   and only the GPU's fp32-accumulate / bf16-store differs.
// - Error metric: max|gpu - cpu| / max|cpu| per output; one "CASE" line per comparison (read by
//   scripts/gpu_check.sh) and a table of the worst error per kernel and dtype at the end.
// - Every GPU tensor is its own cudaMalloc (dev_new), so the simulator's guard pages and canaries
//   sit right after each tensor's bytes: an out-of-bounds kernel access is caught.
// - PARITY(case(...)) runs the case twice from the same random state: under the simulator with
//   two different thread-order seeds, on a GPU simply twice. Every compared GPU output must be
//   bitwise identical between the runs (order independence; deterministic reductions).
//
// Skips (exit 0) when no GPU is present.
#pragma once
#include <math.h>
#include <string.h>

#include "kernels/ops.h"
#include "nn/ops.h"
#include "tests/test.h"
#if IDOC_CUDA_SIM
#include "kernels/cuda/sim/idoc_sim.h"
#endif

static idoc_arena *H; // host tensors of the current case
static idoc_rng R;
static const idoc_device GPU = {IDOC_CUDA, 0};

// fp32 tolerance is tight enough to catch TF32 GEMMs (errors ~1e-4 and up); bf16 allows the
// final rounding to bf16 (2^-9 relative) plus accumulation-order differences.
static inline double tol(idoc_dtype dt) { return dt == IDOC_F32 ? 1e-5 : 1e-2; }

// ---- GPU tensors: one cudaMalloc each, freed by reset()
// ---------------------------------------------
#define PARITY_MAX_DEV 4096
static void *dev_ptrs[PARITY_MAX_DEV];
static int n_dev;
static inline idoc_tensor *dev_new(idoc_dtype dt, int nd, const int64_t *shape) {
  idoc_tensor *t = idoc_tensor_wrap(H, NULL, dt, GPU, nd, shape);
  T_CHECK(n_dev < PARITY_MAX_DEV, "too many GPU tensors in one case");
  t->data = dev_ptrs[n_dev++] = idoc_cuda_malloc(idoc_nbytes(t));
  return t;
}
static inline idoc_tensor *dev_like(const idoc_tensor *h, idoc_dtype dt) {
  return dev_new(dt, h->ndim, h->shape);
}
static inline void reset(void) {
  idoc_arena_reset(H);
  for (int i = 0; i < n_dev; i++)
    idoc_cuda_free(dev_ptrs[i]);
  n_dev = 0;
}

static inline void round_bf16(idoc_tensor *t) {
  for (int64_t i = 0; i < idoc_numel(t); i++)
    IDOC_F(t)[i] = idoc_bf16_to_f32(idoc_f32_to_bf16(IDOC_F(t)[i]));
}
// Random N(0, std) host f32 tensor, rounded to bf16 values when the case runs in bf16.
static inline idoc_tensor *hrand(idoc_dtype dt, int nd, const int64_t *s, float std) {
  idoc_tensor *t = idoc_tensor_new(H, IDOC_F32, nd, s);
  idoc_tensor_normal(t, &R, 0.0f, std);
  if (dt == IDOC_BF16) round_bf16(t);
  return t;
}
static inline idoc_tensor *hcopy(const idoc_tensor *h) {
  idoc_tensor *t = idoc_tensor_like(H, h);
  idoc_tensor_copy(t, h);
  return t;
}
// GPU copy of a host tensor in storage dtype dt (integer tensors keep their dtype).
static inline idoc_tensor *up(const idoc_tensor *h, idoc_dtype dt) {
  bool integer = h->dtype == IDOC_I32 || h->dtype == IDOC_I64 || h->dtype == IDOC_U8;
  idoc_tensor *g = dev_new(integer ? h->dtype : dt, h->ndim, h->shape);
  idoc_tensor_convert(g, h);
  return g;
}
static inline idoc_tensor *down(const idoc_tensor *g) {
  idoc_tensor *h = idoc_tensor_new(H, IDOC_F32, g->ndim, g->shape);
  idoc_tensor_convert(h, g);
  return h;
}

// ---- worst error per kernel and dtype
// ------------------------------------------------------------------
typedef struct {
  char kernel[32];
  idoc_dtype dt;
  double worst, tol;
  int cases;
} parity_row;
static parity_row rows[128];
static int n_rows;
static double worst_ratio; // max over cases of err / tol

static inline void note_error(const char *kernel, idoc_dtype dt, double err, double tolerance) {
  parity_row *r = NULL;
  for (int i = 0; i < n_rows; i++)
    if (!strcmp(rows[i].kernel, kernel) && rows[i].dt == dt) r = &rows[i];
  if (!r && n_rows < 128) {
    r = &rows[n_rows++];
    snprintf(r->kernel, sizeof r->kernel, "%s", kernel);
    r->dt = dt;
  }
  if (!r) return;
  if (r->cases == 0 || err > r->worst) r->worst = err;
  if (tolerance > r->tol) r->tol = tolerance;
  r->cases++;
}

// ---- run twice, bitwise
// ----------------------------------------------------------------------------------
enum { PARITY_OFF, PARITY_RECORD, PARITY_CHECK };
static int parity_mode = PARITY_OFF;
static char *rec_data[1024];
static size_t rec_size[1024];
static int n_rec, n_checked;
static idoc_rng rng_saved;

static inline void parity_seed(uint64_t s) {
#if IDOC_CUDA_SIM
  idoc_sim_set_seed(s);
#else
  (void)s;
#endif
}
static inline void parity_begin(void) {
  rng_saved = R;
  n_rec = n_checked = 0;
  parity_mode = PARITY_RECORD;
  parity_seed(1);
}
static inline void parity_second(void) {
  R = rng_saved;
  parity_mode = PARITY_CHECK;
  parity_seed(2);
}
static inline void parity_end(const char *what) {
  T_CHECK(n_checked == n_rec, "%s: the second run compared %d outputs, the first %d", what,
          n_checked, n_rec);
  for (int i = 0; i < n_rec; i++)
    free(rec_data[i]);
  n_rec = n_checked = 0;
  parity_mode = PARITY_OFF;
  parity_seed(1);
}
#define PARITY(call)                                                                               \
  do {                                                                                             \
    parity_begin();                                                                                \
    call;                                                                                          \
    parity_second();                                                                               \
    call;                                                                                          \
    parity_end(#call);                                                                             \
  } while (0)

// Records (first run) or checks (second run) the raw bytes of a GPU output.
static inline void bits_step(const char *kernel, const char *shape, const char *what,
                             const idoc_tensor *gpu) {
  if (parity_mode == PARITY_OFF) return;
  size_t n = idoc_nbytes(gpu);
  char *b = idoc_xmalloc(n ? n : 1);
  idoc_tensor_to_host(gpu, b);
  if (parity_mode == PARITY_RECORD) {
    T_CHECK(n_rec < 1024, "too many outputs in one case");
    if (n_rec < 1024) rec_data[n_rec] = b, rec_size[n_rec++] = n;
    return;
  }
  bool same = n_checked < n_rec && rec_size[n_checked] == n && !memcmp(rec_data[n_checked], b, n);
  T_CHECK(same, "%s %s %s: the two runs (two thread orders under the simulator) differ", kernel,
          shape, what);
  n_checked++;
  free(b);
}

// Compares a GPU output with the CPU reference (first run only) and feeds the bitwise check.
static inline void compare(const char *kernel, idoc_dtype dt, const char *shape, const char *what,
                           const idoc_tensor *gpu, const idoc_tensor *want, double tolerance) {
  bits_step(kernel, shape, what, gpu);
  if (parity_mode == PARITY_CHECK) return;
  idoc_tensor *got = down(gpu);
  double md = 0, mw = 0;
  int64_t n = idoc_numel(want);
  bool finite = true;
  for (int64_t i = 0; i < n; i++) {
    double g = IDOC_F(got)[i], w = IDOC_F(want)[i];
    if (!isfinite(g) && !(isinf(w) && g == w)) finite = false;
    if (isinf(w) && g == w) continue;
    md = fmax(md, fabs(g - w));
    mw = fmax(mw, fabs(w));
  }
  double err = finite ? (mw > 0 ? md / mw : md) : INFINITY;
  if (err / tolerance > worst_ratio) worst_ratio = err / tolerance;
  note_error(kernel, dt, err, tolerance);
  bool ok = err <= tolerance;
  printf("CASE %-20s %-4s %-28s %-6s rel_err=%.3e tol=%.0e %s\n", kernel, idoc_dtype_name(dt),
         shape, what, err, tolerance, ok ? "ok" : "FAIL");
  T_CHECK(ok, "%s %s %s %s: rel_err %.3e > %.0e", kernel, idoc_dtype_name(dt), shape, what, err,
          tolerance);
}

// Starts a parity test binary: false (after printing SKIP) when no GPU is present.
static inline bool parity_init(uint64_t seed) {
  if (!idoc_cuda_available()) {
    T_SKIP("no CUDA device (idoc_cuda_available() is false): CUDA parity not checked");
    return false;
  }
  printf("device: %s\n", idoc_cuda_device_name());
  idoc_rng_seed(&R, seed);
  H = idoc_arena_new("host", IDOC_DEV_CPU, 0);
  return true;
}

static inline int parity_finish(const char *name) {
  printf("\n%-22s %-5s %6s %12s %8s\n", "kernel", "dtype", "cases", "worst_err", "tol");
  for (int i = 0; i < n_rows; i++)
    printf("%-22s %-5s %6d %12.3e %8.0e\n", rows[i].kernel, idoc_dtype_name(rows[i].dt),
           rows[i].cases, rows[i].worst, rows[i].tol);
  printf("worst error / tolerance over all cases: %.3f\n", worst_ratio);
  reset();
  idoc_arena_free(H);
  return t_summary(name);
}
