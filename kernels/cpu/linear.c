// Linear layers, batched matmul and embedding lookups (fp32, BLAS GEMM).
#include "kernels/cpu/check.h"
#include "kernels/cpu/gemm.h"
#include "kernels/ops.h"

void cpu_linear_fwd(idoc_tensor *y, const idoc_tensor *x, const idoc_tensor *w,
                    const idoc_tensor *b) {
  CPU_F32("linear_fwd", y, x, w, b);
  int64_t out = w->shape[0], in = w->shape[1], n = idoc_numel(x) / in;
  float *Y = IDOC_F(y);
  if (b) {
    const float *B = IDOC_F(b);
#pragma omp parallel for schedule(static)
    for (int64_t i = 0; i < n; i++)
      for (int64_t o = 0; o < out; o++)
        Y[i * out + o] = B[o];
  }
  idoc_sgemm(false, true, n, out, in, 1.0f, IDOC_F(x), in, IDOC_F(w), in, b ? 1.0f : 0.0f, Y, out);
}

void cpu_linear_bwd(idoc_tensor *dx, idoc_tensor *dw, idoc_tensor *db, const idoc_tensor *dy,
                    const idoc_tensor *x, const idoc_tensor *w) {
  CPU_F32("linear_bwd", dx, dw, db, dy, x, w);
  int64_t out = w->shape[0], in = w->shape[1], n = idoc_numel(x) / in;
  const float *DY = IDOC_F(dy);
  if (dx) idoc_sgemm(false, false, n, in, out, 1.0f, DY, out, IDOC_F(w), in, 1.0f, IDOC_F(dx), in);
  if (dw) idoc_sgemm(true, false, out, in, n, 1.0f, DY, out, IDOC_F(x), in, 1.0f, IDOC_F(dw), in);
  if (db) {
    float *DB = IDOC_F(db);
#pragma omp parallel for schedule(static)
    for (int64_t o = 0; o < out; o++) {
      double s = 0;
      for (int64_t i = 0; i < n; i++)
        s += DY[i * out + o];
      DB[o] += (float)s;
    }
  }
}

// Batched GEMM; operands are [B, rows, cols] (2-D means B = 1).
void cpu_matmul(idoc_tensor *o, const idoc_tensor *a, const idoc_tensor *b, bool trans_a,
                bool trans_b, bool accumulate) {
  CPU_F32("matmul", o, a, b);
  int64_t ar = a->shape[a->ndim - 2], ac = a->shape[a->ndim - 1];
  int64_t br = b->shape[b->ndim - 2], bc = b->shape[b->ndim - 1];
  int64_t m = trans_a ? ac : ar, k = trans_a ? ar : ac, n = trans_b ? br : bc;
  int64_t batch = idoc_numel(o) / (m * n > 0 ? m * n : 1);
  for (int64_t i = 0; i < batch; i++)
    idoc_sgemm(trans_a, trans_b, m, n, k, 1.0f, IDOC_F(a) + i * ar * ac, ac,
               IDOC_F(b) + i * br * bc, bc, accumulate ? 1.0f : 0.0f, IDOC_F(o) + i * m * n, n);
}

void cpu_embedding_fwd(idoc_tensor *out, const idoc_tensor *table, const idoc_tensor *ids) {
  CPU_F32("embedding_fwd", out, table);
  CPU_I32("embedding_fwd", ids);
  int64_t n = idoc_numel(ids), c = table->shape[1], v = table->shape[0];
  const int32_t *I = IDOC_I(ids);
  const float *T = IDOC_F(table);
  float *O = IDOC_F(out);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    IDOC_CHECK(I[i] >= 0 && I[i] < v, "embedding: id %d outside the table's %lld rows", I[i],
               (long long)v);
    for (int64_t j = 0; j < c; j++)
      O[i * c + j] = T[(int64_t)I[i] * c + j];
  }
}

void cpu_embedding_bwd(idoc_tensor *dtable, const idoc_tensor *dout, const idoc_tensor *ids) {
  CPU_F32("embedding_bwd", dtable, dout);
  CPU_I32("embedding_bwd", ids);
  int64_t n = idoc_numel(ids), c = dtable->shape[1];
  const int32_t *I = IDOC_I(ids);
  const float *D = IDOC_F(dout);
  float *T = IDOC_F(dtable);
  // Columns are split across threads so repeated ids never race.
#pragma omp parallel for schedule(static)
  for (int64_t j = 0; j < c; j++)
    for (int64_t i = 0; i < n; i++)
      T[(int64_t)I[i] * c + j] += D[i * c + j];
}
