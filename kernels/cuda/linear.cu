// Linear layer on cuBLAS (the row-major GEMMs of gemm.cuh, fp32 compute), the bias as a prefill
// of y that the GEMM accumulates onto, and db as a deterministic column reduction.
#include "kernels/cuda/gemm.cuh"

template <typename TY, typename TB>
__global__ void bias_fill_kernel(TY *y, const TB *b, int64_t n, int64_t out) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n * out;
       i += (int64_t)gridDim.x * blockDim.x)
    y[i] = from_f<TY>(to_f(b[i % out]));
}

template <typename T> struct load2d {
  const T *p;
  int64_t ld;
  __device__ __forceinline__ float operator()(int64_t r, int64_t c) const {
    return to_f(p[r * ld + c]);
  }
};

extern "C" void cuda_linear_fwd(idoc_tensor *y, const idoc_tensor *x, const idoc_tensor *w,
                                const idoc_tensor *b) {
  const char *k = "linear_fwd";
  cu_on_gpu(k, y), cu_on_gpu(k, x), cu_on_gpu(k, w), cu_on_gpu(k, b);
  cu_same_dtype(k, y, x), cu_same_dtype(k, x, w);
  int64_t out = w->shape[0], in = w->shape[1], n = in ? idoc_numel(x) / in : 0;
  if (b && n * out > 0) {
    IDOC_CU_DISPATCH(y->dtype, k, TY, IDOC_CU_DISPATCH(b->dtype, k, TB, {
                       IDOC_LAUNCH((bias_fill_kernel<TY, TB>), cu_blocks(n * out), 256, 0,
                                   idoc_cu_stream())
                       ((TY *)y->data, (const TB *)b->data, n, out);
                     }));
    CUDA_LAUNCH_CHECK();
  }
  cu_gemm_rm(k, false, true, n, out, in, x->data, in, w->data, in, b ? 1.0f : 0.0f, y->data, out,
             x->dtype);
}

extern "C" void cuda_linear_bwd(idoc_tensor *dx, idoc_tensor *dw, idoc_tensor *db,
                                const idoc_tensor *dy, const idoc_tensor *x, const idoc_tensor *w) {
  const char *k = "linear_bwd";
  cu_on_gpu(k, dx), cu_on_gpu(k, dw), cu_on_gpu(k, db), cu_on_gpu(k, dy), cu_on_gpu(k, x),
      cu_on_gpu(k, w);
  cu_same_dtype(k, dy, x), cu_same_dtype(k, x, w), cu_same_dtype(k, dx, x), cu_same_dtype(k, dw, w);
  int64_t out = w->shape[0], in = w->shape[1], n = in ? idoc_numel(x) / in : 0;
  // dx[N,I] += dy[N,O] w[O,I];  dw[O,I] += dy[N,O]^T x[N,I]
  if (dx)
    cu_gemm_rm(k, false, false, n, in, out, dy->data, out, w->data, in, 1.0f, dx->data, in,
               x->dtype);
  if (dw)
    cu_gemm_rm(k, true, false, out, in, n, dy->data, out, x->data, in, 1.0f, dw->data, in,
               x->dtype);
  if (db) {
    IDOC_CU_DISPATCH(
        db->dtype, k, TB, IDOC_CU_DISPATCH(dy->dtype, k, TD, {
          colsum_accumulate((TB *)db->data, load2d<TD>{(const TD *)dy->data, out}, n, out);
        }));
  }
}
