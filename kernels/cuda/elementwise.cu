// Elementwise kernels: add (b broadcast over a's leading dims, as in nn/ops.h) and its backward,
// scale, accumulating axpy, and the scalar sum. Grid-stride loops, fp32 math; reductions run in
// a fixed order (deterministic).
#include "kernels/cuda/common.cuh"

#define GRID_LOOP(i, n)                                                                            \
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < (n);                        \
       i += (int64_t)gridDim.x * blockDim.x)

template <typename T>
__global__ void add_kernel(T *y, const T *a, const T *b, int64_t n, int64_t nb) {
  if (nb == n) {
    GRID_LOOP(i, n) y[i] = from_f<T>(to_f(a[i]) + to_f(b[i]));
  } else {
    GRID_LOOP(i, n) y[i] = from_f<T>(to_f(a[i]) + to_f(b[i % nb]));
  }
}

template <typename TY, typename TX>
__global__ void axpy_kernel(TY *y, const TX *x, float s, int64_t n) {
  GRID_LOOP(i, n) y[i] = from_f<TY>(to_f(y[i]) + s * to_f(x[i]));
}

template <typename T> __global__ void scale_kernel(T *y, const T *x, float s, int64_t n) {
  GRID_LOOP(i, n) y[i] = from_f<T>(s * to_f(x[i]));
}

template <typename T> struct load2d_e {
  const T *p;
  int64_t ld;
  __device__ __forceinline__ float operator()(int64_t r, int64_t c) const {
    return to_f(p[r * ld + c]);
  }
};

// sum: per-block partials (a fixed grid, independent of the GPU), then one block adds them.
#define SUM_THREADS 256
#define SUM_MAX_BLOCKS 1024
template <typename T> __global__ void sum_partial_kernel(float *part, const T *x, int64_t n) {
  float s = 0.0f;
  GRID_LOOP(i, n) s += to_f(x[i]);
  s = block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}
__global__ void sum_finish_kernel(float *out, const float *part, int nparts) {
  float s = 0.0f;
  for (int i = threadIdx.x; i < nparts; i += blockDim.x)
    s += part[i];
  s = block_sum(s);
  if (threadIdx.x == 0) out[0] = s;
}

template <typename TY, typename TX>
static void axpy_launch(TY *y, const TX *x, float s, int64_t n) {
  if (n == 0) return;
  IDOC_LAUNCH((axpy_kernel<TY, TX>), cu_blocks(n), 256, 0, idoc_cu_stream())(y, x, s, n);
  CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_add_fwd(idoc_tensor *y, const idoc_tensor *a, const idoc_tensor *b) {
  const char *k = "add_fwd";
  cu_on_gpu(k, y), cu_on_gpu(k, a), cu_on_gpu(k, b);
  cu_same_dtype(k, y, a), cu_same_dtype(k, a, b);
  int64_t n = idoc_numel(a), nb = idoc_numel(b);
  IDOC_CHECK(nb > 0 && n % nb == 0, "cuda add_fwd: b does not broadcast over a");
  if (n == 0) return;
  IDOC_CU_DISPATCH(a->dtype, k, T, {
    IDOC_LAUNCH(add_kernel<T>, cu_blocks(n), 256, 0, idoc_cu_stream())
    ((T *)y->data, (const T *)a->data, (const T *)b->data, n, nb);
  });
  CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_add_bwd(idoc_tensor *da, idoc_tensor *db, const idoc_tensor *dy) {
  const char *k = "add_bwd";
  cu_on_gpu(k, da), cu_on_gpu(k, db), cu_on_gpu(k, dy);
  cu_same_dtype(k, da, dy), cu_same_dtype(k, db, dy);
  int64_t n = idoc_numel(dy);
  IDOC_CU_DISPATCH(dy->dtype, k, T, {
    const T *D = (const T *)dy->data;
    if (da) axpy_launch((T *)da->data, D, 1.0f, n);
    if (db) {
      int64_t nb = idoc_numel(db);
      IDOC_CHECK(nb > 0 && n % nb == 0, "cuda add_bwd: db does not broadcast over dy");
      if (nb == n)
        axpy_launch((T *)db->data, D, 1.0f, n);
      else // db[j] += sum over the repeats r of dy[r, j]
        colsum_accumulate((T *)db->data, load2d_e<T>{D, nb}, n / nb, nb);
    }
  });
}

extern "C" void cuda_scale_fwd(idoc_tensor *y, const idoc_tensor *x, float s) {
  const char *k = "scale_fwd";
  cu_on_gpu(k, y), cu_on_gpu(k, x), cu_same_dtype(k, y, x);
  int64_t n = idoc_numel(x);
  if (n == 0) return;
  IDOC_CU_DISPATCH(x->dtype, k, T, {
    IDOC_LAUNCH(scale_kernel<T>, cu_blocks(n), 256, 0, idoc_cu_stream())
    ((T *)y->data, (const T *)x->data, s, n);
  });
  CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_axpy(idoc_tensor *y, const idoc_tensor *x, float s) {
  const char *k = "axpy";
  cu_on_gpu(k, y), cu_on_gpu(k, x);
  IDOC_CHECK(idoc_numel(y) == idoc_numel(x), "cuda axpy: sizes differ");
  IDOC_CU_DISPATCH(y->dtype, k, TY, IDOC_CU_DISPATCH(x->dtype, k, TX, {
                     axpy_launch((TY *)y->data, (const TX *)x->data, s, idoc_numel(x));
                   }));
}

extern "C" void cuda_sum(idoc_tensor *out, const idoc_tensor *x) {
  const char *k = "sum";
  cu_on_gpu(k, out), cu_on_gpu(k, x), cu_dtype_is(k, out, IDOC_F32);
  int64_t n = idoc_numel(x);
  int64_t nb = (n + SUM_THREADS - 1) / SUM_THREADS;
  int blocks = (int)(nb < 1 ? 1 : nb > SUM_MAX_BLOCKS ? SUM_MAX_BLOCKS : nb);
  float *part = (float *)idoc_cu_scratch((size_t)blocks * sizeof(float));
  IDOC_CU_DISPATCH(x->dtype, k, T, {
    IDOC_LAUNCH(sum_partial_kernel<T>, blocks, SUM_THREADS, 0, idoc_cu_stream())
    (part, (const T *)x->data, n);
  });
  CUDA_LAUNCH_CHECK();
  IDOC_LAUNCH(sum_finish_kernel, 1, 1024, 0, idoc_cu_stream())((float *)out->data, part, blocks);
  CUDA_LAUNCH_CHECK();
}
