// idoc-requires: cuda
// CUDA kernels against the CPU reference (harness: tests/unit/cuda_parity_util.h): LayerNorm
// (w and b optional), the channel RMS norm of NCHW maps, rotary embeddings (1-D LLM tables and
// the vision tower's 2-D ones, in place and inverse), and the shape kernels: slice_copy,
// gather_rows, scatter_rows (deterministic accumulation of repeated indices), zero_rows and
// batched transposes. Also what the GPU kernels do with out-of-range indices (the CPU aborts).
#include "tests/unit/cuda_parity_util.h"

static const char *shape_str(char *buf, size_t n, int nd, const int64_t *s) {
  int k = snprintf(buf, n, "[");
  for (int i = 0; i < nd && k < (int)n; i++)
    k += snprintf(buf + k, n - (size_t)k, "%s%lld", i ? "," : "", (long long)s[i]);
  if (k < (int)n) snprintf(buf + k, n - (size_t)k, "]");
  return buf;
}

// ---- layernorm ----------------------------------------------------------------------------------
// affine: bit 0 w, bit 1 b. grads: bit 0 dx, bit 1 dw, bit 2 db (cleared: NULL). `offset` shifts
// x away from zero mean, which the two-pass variance must absorb.
static void case_layernorm(idoc_dtype dt, int64_t rows, int64_t c, int affine, int grads,
                           float offset) {
  char shape[128];
  snprintf(shape, sizeof shape, "rows=%lld C=%lld%s%s g=%d%s", (long long)rows, (long long)c,
           affine & 1 ? " w" : "", affine & 2 ? " b" : "", grads, offset != 0.0f ? " +off" : "");
  const float eps = 1e-5f;
  int64_t s[2] = {rows, c};
  idoc_tensor *x = hrand(dt, 2, s, 1.0f);
  for (int64_t i = 0; i < rows * c; i++)
    IDOC_F(x)[i] += offset;
  if (dt == IDOC_BF16) round_bf16(x);
  idoc_tensor *w = affine & 1 ? hrand(dt, 1, &c, 0.5f) : NULL;
  idoc_tensor *b = affine & 2 ? hrand(dt, 1, &c, 1.0f) : NULL;
  if (w) {
    for (int64_t j = 0; j < c; j++)
      IDOC_F(w)[j] += 1.0f;
    if (dt == IDOC_BF16) round_bf16(w);
  }
  idoc_tensor *y = idoc_tensor_new(H, IDOC_F32, 2, s);
  idoc_tensor *mean = idoc_tensor_1d(H, IDOC_F32, rows), *rstd = idoc_tensor_1d(H, IDOC_F32, rows);
  cpu_layernorm_fwd(y, mean, rstd, x, w, b, eps);
  idoc_tensor *gx = up(x, dt), *gw = w ? up(w, dt) : NULL, *gb = b ? up(b, dt) : NULL;
  idoc_tensor *gy = dev_new(dt, 2, s), *gmean = dev_new(IDOC_F32, 1, &rows);
  idoc_tensor *grstd = dev_new(IDOC_F32, 1, &rows);
  IDOC_K(GPU, layernorm_fwd)(gy, gmean, grstd, gx, gw, gb, eps);
  compare("layernorm_fwd", dt, shape, "y", gy, y, tol(dt));
  compare("layernorm_fwd", dt, shape, "mean", gmean, mean, 1e-5);
  compare("layernorm_fwd", dt, shape, "rstd", grstd, rstd, 1e-5); // f32 output either way

  idoc_tensor *dy = hrand(dt, 2, s, 1.0f);
  idoc_tensor *dx = grads & 1 ? hrand(dt, 2, s, 1.0f) : NULL;
  idoc_tensor *dw = grads & 2 && w ? hrand(dt, 1, &c, 1.0f) : NULL;
  idoc_tensor *db = grads & 4 && b ? hrand(dt, 1, &c, 1.0f) : NULL;
  idoc_tensor *gdy = up(dy, dt), *gdx = dx ? up(dx, dt) : NULL, *gdw = dw ? up(dw, dt) : NULL;
  idoc_tensor *gdb = db ? up(db, dt) : NULL;
  // The GPU backward uses its own saved statistics, as the op would.
  cpu_layernorm_bwd(dx, dw, db, dy, x, w, mean, rstd);
  IDOC_K(GPU, layernorm_bwd)(gdx, gdw, gdb, gdy, gx, gw, gmean, grstd);
  if (dx) compare("layernorm_bwd", dt, shape, "dx", gdx, dx, tol(dt));
  if (dw) compare("layernorm_bwd", dt, shape, "dw", gdw, dw, tol(dt));
  if (db) compare("layernorm_bwd", dt, shape, "db", gdb, db, tol(dt));
  reset();
}

// ---- channel RMS norm ---------------------------------------------------------------------------
// grads: bit 0 dx, bit 1 dscale.
static void case_rms_channels(idoc_dtype dt, int64_t nb, int64_t nc, int64_t h, int64_t w,
                              int grads) {
  char shape[128], s1[48];
  int64_t s[4] = {nb, nc, h, w}, rs[2] = {nb, h * w};
  snprintf(shape, sizeof shape, "%s g=%d", shape_str(s1, sizeof s1, 4, s), grads);
  const float eps = 1e-8f;
  idoc_tensor *x = hrand(dt, 4, s, 1.0f), *sc = hrand(dt, 1, &nc, 0.5f);
  for (int64_t j = 0; j < nc; j++)
    IDOC_F(sc)[j] += 1.0f;
  if (dt == IDOC_BF16) round_bf16(sc);
  idoc_tensor *y = idoc_tensor_new(H, IDOC_F32, 4, s), *rstd = idoc_tensor_new(H, IDOC_F32, 2, rs);
  cpu_rmsnorm_channels_fwd(y, rstd, x, sc, eps);
  idoc_tensor *gx = up(x, dt), *gsc = up(sc, dt), *gy = dev_new(dt, 4, s);
  idoc_tensor *grstd = dev_new(IDOC_F32, 2, rs);
  IDOC_K(GPU, rmsnorm_channels_fwd)(gy, grstd, gx, gsc, eps);
  compare("rmsnorm_channels_fwd", dt, shape, "y", gy, y, tol(dt));
  compare("rmsnorm_channels_fwd", dt, shape, "rstd", grstd, rstd, 1e-5);

  idoc_tensor *dy = hrand(dt, 4, s, 1.0f);
  idoc_tensor *dx = grads & 1 ? hrand(dt, 4, s, 1.0f) : NULL;
  idoc_tensor *ds = grads & 2 ? hrand(dt, 1, &nc, 1.0f) : NULL;
  idoc_tensor *gdy = up(dy, dt), *gdx = dx ? up(dx, dt) : NULL, *gds = ds ? up(ds, dt) : NULL;
  cpu_rmsnorm_channels_bwd(dx, ds, dy, x, sc, rstd);
  IDOC_K(GPU, rmsnorm_channels_bwd)(gdx, gds, gdy, gx, gsc, grstd);
  if (dx) compare("rmsnorm_channels_bwd", dt, shape, "dx", gdx, dx, tol(dt));
  if (ds) compare("rmsnorm_channels_bwd", dt, shape, "dscale", gds, ds, tol(dt));
  reset();
}

// ---- rotary -------------------------------------------------------------------------------------
// Tables as the models build them: angle = position * theta^(-2k/D). vision2d: the vision
// tower's 2-D table, the first half of the D/2 frequencies driven by the patch row and the
// second by the patch column (positions of a grid `grid_w` patches wide).
static void rope_tables(idoc_tensor *ct, idoc_tensor *st, bool vision2d, int64_t grid_w,
                        float theta) {
  int64_t t = ct->shape[0], half = ct->shape[1];
  for (int64_t i = 0; i < t; i++)
    for (int64_t j = 0; j < half; j++) {
      double pos = (double)i, k = (double)j, dim = 2.0 * (double)half;
      if (vision2d) {
        int64_t q = half / 2;
        pos = j < q ? (double)(i / grid_w) : (double)(i % grid_w);
        k = (double)(j < q ? j : j - q);
        dim = (double)half; // each axis gets D/2 of the rotary dims
      }
      double ang = pos * pow(theta, -2.0 * k / dim);
      IDOC_F(ct)[i * half + j] = (float)cos(ang);
      IDOC_F(st)[i * half + j] = (float)sin(ang);
    }
}

static void case_rotary(idoc_dtype dt, int64_t t, int n_heads, int64_t head_dim, bool vision2d,
                        bool inverse, bool in_place) {
  char shape[128];
  snprintf(shape, sizeof shape, "T=%lld H=%d D=%lld%s%s%s", (long long)t, n_heads,
           (long long)head_dim, vision2d ? " 2d" : "", inverse ? " inv" : "",
           in_place ? " y=x" : "");
  int64_t half = head_dim / 2, xs[2] = {t, n_heads * head_dim}, cs[2] = {t, half};
  idoc_tensor *x = hrand(dt, 2, xs, 1.0f);
  idoc_tensor *ct = idoc_tensor_new(H, IDOC_F32, 2, cs), *st = idoc_tensor_new(H, IDOC_F32, 2, cs);
  rope_tables(ct, st, vision2d, 7, vision2d ? 10000.0f : 1000000.0f);
  if (dt == IDOC_BF16) round_bf16(ct), round_bf16(st);
  idoc_tensor *y = idoc_tensor_new(H, IDOC_F32, 2, xs);
  cpu_rotary(y, x, ct, st, n_heads, inverse);
  idoc_tensor *gx = up(x, dt), *gc = up(ct, dt), *gs = up(st, dt);
  idoc_tensor *gy = in_place ? gx : dev_new(dt, 2, xs);
  IDOC_K(GPU, rotary)(gy, gx, gc, gs, n_heads, inverse);
  compare("rotary", dt, shape, "y", gy, y, tol(dt));
  reset();
}

// ---- slice_copy ---------------------------------------------------------------------------------
// src [outer, sd, inner] -> dst [outer, dd, inner] along dim 1 (or dim 0 with outer = 1 shapes).
static void case_slice(idoc_dtype dt, int nd, const int64_t *ss, const int64_t *ds, int dim,
                       int64_t src_off, int64_t dst_off, int64_t len, bool acc) {
  char shape[128], s1[40], s2[40];
  snprintf(shape, sizeof shape, "%s->%s d%d %lld+%lld@%lld%s", shape_str(s1, sizeof s1, nd, ss),
           shape_str(s2, sizeof s2, nd, ds), dim, (long long)src_off, (long long)len,
           (long long)dst_off, acc ? " acc" : "");
  idoc_tensor *src = hrand(dt, nd, ss, 1.0f), *dst = hrand(dt, nd, ds, 1.0f);
  idoc_tensor *gsrc = up(src, dt), *gdst = up(dst, dt);
  cpu_slice_copy(dst, dst_off, src, src_off, dim, len, acc);
  IDOC_K(GPU, slice_copy)(gdst, dst_off, gsrc, src_off, dim, len, acc);
  compare("slice_copy", dt, shape, "dst", gdst, dst, acc ? tol(dt) : 0.0);
  reset();
}

// ---- gather / scatter / zero rows ---------------------------------------------------------------
// m indices into n rows of inner shape [w]; distinct: a prefix of a random permutation (needed
// by scatter without accumulation); otherwise drawn from `range` rows (repeats).
static idoc_tensor *rand_idx(int64_t m, int64_t n, bool distinct, int64_t range) {
  idoc_tensor *idx = idoc_tensor_1d(H, IDOC_I32, m);
  if (distinct) {
    int32_t *perm = idoc_xmalloc((size_t)(n > 0 ? n : 1) * sizeof *perm);
    for (int64_t i = 0; i < n; i++)
      perm[i] = (int32_t)i;
    for (int64_t i = n - 1; i > 0; i--) {
      int64_t j = (int64_t)idoc_rng_below(&R, (uint64_t)(i + 1));
      int32_t t = perm[i];
      perm[i] = perm[j], perm[j] = t;
    }
    for (int64_t i = 0; i < m; i++)
      IDOC_I(idx)[i] = perm[i];
    free(perm);
  } else {
    for (int64_t i = 0; i < m; i++)
      IDOC_I(idx)[i] = (int32_t)((idoc_rng_below(&R, (uint64_t)range) * 131) % (uint64_t)n);
  }
  return idx;
}

static void case_rows(idoc_dtype dt, int64_t n, int64_t m, int64_t w, bool distinct,
                      int64_t range) {
  char shape[128];
  snprintf(shape, sizeof shape, "n=%lld m=%lld w=%lld %s", (long long)n, (long long)m, (long long)w,
           distinct ? "distinct" : "repeats");
  int64_t xs[2] = {n, w}, os[2] = {m, w};
  idoc_tensor *idx = rand_idx(m, n, distinct, range), *gidx = up(idx, dt);
  idoc_tensor *x = hrand(dt, 2, xs, 1.0f), *gx = up(x, dt);
  for (int acc = 0; acc < 2; acc++) {
    idoc_tensor *out = hrand(dt, 2, os, 1.0f), *gout = up(out, dt);
    cpu_gather_rows(out, x, idx, acc);
    IDOC_K(GPU, gather_rows)(gout, gx, gidx, acc);
    compare("gather_rows", dt, shape, acc ? "out+=" : "out", gout, out, acc ? tol(dt) : 0.0);
  }
  // scatter: with accumulation the repeated rows add up in index order (f32: bit for bit the
  // CPU's sums); without, indices must be distinct (nn/ops.h), as the CPU requires.
  idoc_tensor *src = hrand(dt, 2, os, 1.0f), *gsrc = up(src, dt);
  for (int acc = distinct ? 0 : 1; acc < 2; acc++) {
    idoc_tensor *base = hrand(dt, 2, xs, 1.0f), *gbase = up(base, dt);
    cpu_scatter_rows(base, src, idx, acc);
    IDOC_K(GPU, scatter_rows)(gbase, gsrc, gidx, acc);
    compare("scatter_rows", dt, shape, acc ? "out+=" : "out", gbase, base,
            acc && dt == IDOC_BF16 ? tol(dt) : 0.0);
  }
  idoc_tensor *z = hrand(dt, 2, xs, 1.0f), *gz = up(z, dt);
  cpu_zero_rows(z, idx);
  IDOC_K(GPU, zero_rows)(gz, gidx);
  compare("zero_rows", dt, shape, "out", gz, z, 0.0);
  reset();
}

// Out-of-range indices (the CPU aborts on them): a gather writes a zero row for them (keeps the
// row when accumulating), a scatter and zero_rows skip them. The reference is the CPU on the
// valid indices only.
static void case_bad_idx(idoc_dtype dt) {
  const char *shape = "n=9 m=6 w=5 bad";
  const int64_t n = 9, m = 6, w = 5, xs[2] = {n, w}, os[2] = {m, w};
  const int32_t all[6] = {3, -1, 8, 9, 3, INT32_MIN};
  idoc_tensor *idx = idoc_tensor_1d(H, IDOC_I32, m), *good = idoc_tensor_1d(H, IDOC_I32, m);
  int64_t ng = 0;
  for (int64_t i = 0; i < m; i++) {
    IDOC_I(idx)[i] = all[i];
    if (all[i] >= 0 && all[i] < n) IDOC_I(good)[ng++] = all[i];
  }
  good->shape[0] = ng;
  idoc_tensor *gidx = up(idx, dt), *x = hrand(dt, 2, xs, 1.0f), *gx = up(x, dt);
  idoc_tensor *out = hrand(dt, 2, os, 1.0f), *gout = up(out, dt);
  IDOC_K(GPU, gather_rows)(gout, gx, gidx, false);
  for (int64_t i = 0; i < m; i++)
    for (int64_t j = 0; j < w; j++)
      IDOC_F(out)[i * w + j] = all[i] >= 0 && all[i] < n ? IDOC_F(x)[all[i] * w + j] : 0.0f;
  compare("gather_rows", dt, shape, "out", gout, out, 0.0);

  idoc_tensor *src = hrand(dt, 2, os, 1.0f), *base = hrand(dt, 2, xs, 1.0f);
  idoc_tensor *gbase = up(base, dt), *srcg = idoc_tensor_2d(H, IDOC_F32, ng, w);
  for (int64_t i = 0, k = 0; i < m; i++)
    if (all[i] >= 0 && all[i] < n) memcpy(IDOC_F(srcg) + k++ * w, IDOC_F(src) + i * w, w * 4);
  IDOC_K(GPU, scatter_rows)(gbase, up(src, dt), gidx, true);
  cpu_scatter_rows(base, srcg, good, true);
  compare("scatter_rows", dt, shape, "out+=", gbase, base, dt == IDOC_BF16 ? tol(dt) : 0.0);

  idoc_tensor *z = hrand(dt, 2, xs, 1.0f), *gz = up(z, dt);
  IDOC_K(GPU, zero_rows)(gz, gidx);
  cpu_zero_rows(z, good);
  compare("zero_rows", dt, shape, "out", gz, z, 0.0);
  reset();
}

// ---- transpose ----------------------------------------------------------------------------------
static void case_transpose(idoc_dtype dt, int64_t b, int64_t m, int64_t n, bool acc) {
  char shape[128];
  snprintf(shape, sizeof shape, "B=%lld M=%lld N=%lld%s", (long long)b, (long long)m, (long long)n,
           acc ? " acc" : "");
  int nd = b ? 3 : 2;
  int64_t xs[3] = {b, m, n}, os[3] = {b, n, m};
  idoc_tensor *x = hrand(dt, nd, b ? xs : xs + 1, 1.0f),
              *out = hrand(dt, nd, b ? os : os + 1, 1.0f);
  idoc_tensor *gx = up(x, dt), *gout = up(out, dt);
  cpu_transpose(out, x, acc);
  IDOC_K(GPU, transpose)(gout, gx, acc);
  compare("transpose", dt, shape, "out", gout, out, acc ? tol(dt) : 0.0);
  reset();
}

int main(void) {
  if (!parity_init(98765)) return t_summary("test_cuda_parity_norm_shape");
  for (int d = 0; d < 2; d++) {
    idoc_dtype dt = d ? IDOC_BF16 : IDOC_F32;
    PARITY(case_layernorm(dt, 1, 1, 3, 7, 0.0f)); // C = 1: x - mean is exactly 0
    PARITY(case_layernorm(dt, 3, 7, 3, 7, 0.0f));
    PARITY(case_layernorm(dt, 3, 7, 0, 1, 0.0f)); // no affine
    PARITY(case_layernorm(dt, 5, 33, 1, 3, 0.0f));
    PARITY(case_layernorm(dt, 5, 33, 2, 5, 0.0f));
    PARITY(case_layernorm(dt, 6, 64, 3, 6, 0.0f)); // dx NULL
    PARITY(case_layernorm(dt, 64, 128, 3, 7, 3.0f));
    PARITY(case_layernorm(dt, 37, 1000, 3, 7, 0.0f));
    PARITY(case_layernorm(dt, 20, 2048, 3, 7, 0.0f));
    PARITY(case_layernorm(dt, 300, 256, 3, 7, 0.0f)); // more rows than one colsum split
    PARITY(case_layernorm(dt, 0, 16, 3, 7, 0.0f));

    PARITY(case_rms_channels(dt, 1, 1, 1, 1, 3));
    PARITY(case_rms_channels(dt, 2, 3, 5, 7, 3));
    PARITY(case_rms_channels(dt, 2, 3, 5, 7, 1));
    PARITY(case_rms_channels(dt, 2, 3, 5, 7, 2));
    PARITY(case_rms_channels(dt, 2, 32, 16, 16, 3)); // decoder-sized maps
    PARITY(case_rms_channels(dt, 1, 256, 9, 11, 3));
    PARITY(case_rms_channels(dt, 3, 8, 56, 56, 3));
    PARITY(case_rms_channels(dt, 0, 4, 3, 3, 3));

    for (int inv = 0; inv < 2; inv++) {
      PARITY(case_rotary(dt, 1, 1, 2, false, inv, false));
      PARITY(case_rotary(dt, 7, 3, 10, false, inv, false));
      PARITY(case_rotary(dt, 33, 16, 128, false, inv, false)); // LLM: 16 heads of 128
      PARITY(case_rotary(dt, 33, 2, 128, false, inv, true));   // its 2 KV heads, in place
      PARITY(case_rotary(dt, 49, 16, 80, true, inv, false));   // vision: 16 heads of 80, 2-D
      PARITY(case_rotary(dt, 49, 16, 80, true, inv, true));
    }
    PARITY(case_rotary(dt, 0, 4, 8, false, false, false));

    // slice_copy: concat-like (dim 1 with an inner block), dim 0 rows, the last dim (inner 1),
    // offsets that break 16-byte alignment, size 0.
    PARITY(case_slice(dt, 3, (int64_t[]){4, 5, 8}, (int64_t[]){4, 9, 8}, 1, 0, 4, 5, false));
    PARITY(case_slice(dt, 3, (int64_t[]){4, 5, 8}, (int64_t[]){4, 9, 8}, 1, 1, 2, 3, true));
    PARITY(case_slice(dt, 2, (int64_t[]){37, 2048}, (int64_t[]){20, 2048}, 0, 17, 3, 13, false));
    PARITY(case_slice(dt, 2, (int64_t[]){37, 2048}, (int64_t[]){20, 2048}, 0, 17, 3, 13, true));
    PARITY(case_slice(dt, 2, (int64_t[]){7, 13}, (int64_t[]){7, 29}, 1, 0, 16, 13, false));
    PARITY(case_slice(dt, 2, (int64_t[]){7, 13}, (int64_t[]){7, 29}, 1, 3, 5, 9, true));
    PARITY(case_slice(dt, 3, (int64_t[]){3, 6, 7}, (int64_t[]){3, 6, 7}, 2, 1, 2, 4, false));
    PARITY(case_slice(dt, 2, (int64_t[]){5, 8}, (int64_t[]){5, 8}, 1, 2, 2, 0, true));
    PARITY(case_slice(dt, 2, (int64_t[]){64, 128}, (int64_t[]){96, 128}, 0, 0, 32, 64, false));

    PARITY(case_rows(dt, 1, 1, 1, true, 1));
    PARITY(case_rows(dt, 50, 17, 13, true, 0));
    PARITY(case_rows(dt, 50, 300, 13, false, 7));   // many repeats, odd width
    PARITY(case_rows(dt, 64, 64, 128, true, 0));    // a permutation (vision window order)
    PARITY(case_rows(dt, 40, 2500, 16, false, 40)); // several sort chunks
    PARITY(case_rows(dt, 30, 97, 2048, false, 11)); // hidden 2048
    PARITY(case_rows(dt, 10, 0, 8, true, 0));
    PARITY(case_rows(dt, 10, 4, 0, true, 0));
    PARITY(case_bad_idx(dt));

    PARITY(case_transpose(dt, 0, 1, 1, false));
    PARITY(case_transpose(dt, 0, 7, 5, false));
    PARITY(case_transpose(dt, 0, 33, 65, true));
    PARITY(case_transpose(dt, 3, 40, 31, false));
    PARITY(case_transpose(dt, 3, 40, 31, true));
    PARITY(case_transpose(dt, 16, 64, 128, false)); // heads x tokens x head_dim
    PARITY(case_transpose(dt, 2, 1, 100, true));
    PARITY(case_transpose(dt, 530, 33, 33, true)); // more tiles than blocks: blocks take several
    PARITY(case_transpose(dt, 2, 0, 5, false));
  }
  return parity_finish("test_cuda_parity_norm_shape");
}
