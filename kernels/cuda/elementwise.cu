// Elementwise kernels: add and mul (b broadcast over a's leading dims, as in nn/ops.h) and their
// backwards, scale, accumulating axpy, and the scalar sum. Grid-stride loops, fp32 math;
// reductions run in a fixed order (deterministic).
#include "kernels/cuda/elementwise.cuh"

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

struct ew_identity {
  __device__ __forceinline__ float operator()(const float (&x)[1]) const { return x[0]; }
};

extern "C" void cuda_sum(idoc_tensor *out, const idoc_tensor *x) {
  const char *k = "sum";
  cu_on_gpu(k, out), cu_on_gpu(k, x), cu_dtype_is(k, out, IDOC_F32);
  IDOC_CU_DISPATCH(x->dtype, k, T, {
    ew_sum((float *)out->data, ew_in<T, 1>{{(const T *)x->data}, {0}}, idoc_numel(x), ew_identity{},
           false);
  });
}

// ---- mul --------------------------------------------------------------------------------------
struct mul_op { // y = a * b
  __device__ __forceinline__ void operator()(const float (&x)[2], float (&y)[1]) const {
    y[0] = x[0] * x[1];
  }
};
struct mul_acc_op { // g += d * o
  __device__ __forceinline__ void operator()(const float (&x)[3], float (&y)[1]) const {
    y[0] = x[0] + x[1] * x[2];
  }
};
struct mul_dot_op { // the db sum for a single-element b: sum of dy * a
  __device__ __forceinline__ float operator()(const float (&x)[2]) const { return x[0] * x[1]; }
};
template <typename T> struct mul_db_term { // db[c] = sum over rows r of dy[r, c] a[r, c]
  const T *dy, *a;
  int64_t nb;
  __device__ __forceinline__ float operator()(int64_t r, int64_t c) const {
    return to_f(dy[r * nb + c]) * to_f(a[r * nb + c]);
  }
};

extern "C" void cuda_mul_fwd(idoc_tensor *y, const idoc_tensor *a, const idoc_tensor *b) {
  const char *k = "mul_fwd";
  cu_on_gpu(k, y), cu_on_gpu(k, a), cu_on_gpu(k, b);
  cu_same_dtype(k, y, a), cu_same_dtype(k, a, b);
  int64_t n = idoc_numel(a), nb = idoc_numel(b);
  IDOC_CHECK((n == 0 || (nb > 0 && n % nb == 0)) && idoc_numel(y) == n,
             "cuda mul_fwd: b does not broadcast over a");
  IDOC_CU_DISPATCH(a->dtype, k, T, {
    ew_map(ew_in<T, 2>{{(const T *)a->data, (const T *)b->data}, {0, nb == n ? 0 : nb}},
           ew_out<T, 1>{{(T *)y->data}}, n, mul_op{});
  });
}

// da += dy * b (b broadcast); db += the sum of dy * a over the repeats of b.
extern "C" void cuda_mul_bwd(idoc_tensor *da, idoc_tensor *db, const idoc_tensor *dy,
                             const idoc_tensor *a, const idoc_tensor *b) {
  const char *k = "mul_bwd";
  cu_on_gpu(k, da), cu_on_gpu(k, db), cu_on_gpu(k, dy), cu_on_gpu(k, a), cu_on_gpu(k, b);
  cu_same_dtype(k, dy, a), cu_same_dtype(k, a, b), cu_same_dtype(k, da, a), cu_same_dtype(k, db, b);
  int64_t n = idoc_numel(dy), nb = idoc_numel(b);
  IDOC_CHECK((n == 0 || (nb > 0 && n % nb == 0)) && idoc_numel(a) == n,
             "cuda mul_bwd: b does not broadcast over a");
  IDOC_CU_DISPATCH(dy->dtype, k, T, {
    const T *D = (const T *)dy->data, *A = (const T *)a->data, *B = (const T *)b->data;
    if (da) {
      T *G = (T *)da->data;
      ew_map(ew_in<T, 3>{{G, D, B}, {0, 0, nb == n ? 0 : nb}}, ew_out<T, 1>{{G}}, n, mul_acc_op{});
    }
    if (db && n > 0) {
      T *G = (T *)db->data;
      if (nb == n)
        ew_map(ew_in<T, 3>{{G, D, A}, {0, 0, 0}}, ew_out<T, 1>{{G}}, n, mul_acc_op{});
      else if (nb == 1)
        ew_sum(G, ew_in<T, 2>{{D, A}, {0, 0}}, n, mul_dot_op{}, true);
      else
        colsum_accumulate(G, mul_db_term<T>{D, A, nb}, n / nb, nb);
    }
  });
}
