// Squared-difference loss (the heatmap MSE's sum and its backward) and the gradient of a
// reduction to a scalar; sums run in a fixed order (elementwise.cuh), so they are reproducible.
#include "kernels/cuda/elementwise.cuh"

struct sq_diff_op {
  __device__ __forceinline__ float operator()(const float (&x)[2]) const {
    float d = x[0] - x[1];
    return d * d;
  }
};
struct sq_diff_bwd_op { // x = {dp, p, t}: dp + dscale * 2 (p - t)
  float dscale;
  __device__ __forceinline__ void operator()(const float (&x)[3], float (&y)[1]) const {
    y[0] = x[0] + dscale * 2.0f * (x[1] - x[2]);
  }
};
// x = {dp, p, t}: dp + (dout[0] / n) * 2 (p - t), the scale read on the device.
struct sq_diff_mean_bwd_op {
  const float *dout;
  float n;
  __device__ __forceinline__ void operator()(const float (&x)[3], float (&y)[1]) const {
    float dscale = n > 0 ? dout[0] / n : 0.0f;
    y[0] = x[0] + dscale * 2.0f * (x[1] - x[2]);
  }
};
// dx + s * dout[0]: the scalar is read on the device (no host round trip).
template <typename TD> struct fill_grad_op {
  const TD *dout;
  float s;
  __device__ __forceinline__ void operator()(const float (&x)[1], float (&y)[1]) const {
    y[0] = x[0] + s * to_f(dout[0]);
  }
};

extern "C" void cuda_sq_diff_sum(idoc_tensor *out, const idoc_tensor *p, const idoc_tensor *t) {
  const char *k = "sq_diff_sum";
  cu_on_gpu(k, out), cu_on_gpu(k, p), cu_on_gpu(k, t), cu_same_dtype(k, p, t);
  cu_dtype_is(k, out, IDOC_F32);
  int64_t n = idoc_numel(p);
  IDOC_CHECK(idoc_numel(t) == n && idoc_numel(out) == 1, "cuda sq_diff_sum: bad shapes");
  IDOC_CU_DISPATCH(p->dtype, k, T, {
    ew_sum((float *)out->data, ew_in<T, 2>{{(const T *)p->data, (const T *)t->data}, {0, 0}}, n,
           sq_diff_op{}, false);
  });
}

extern "C" void cuda_sq_diff_bwd(idoc_tensor *dp, const idoc_tensor *p, const idoc_tensor *t,
                                 float dscale) {
  const char *k = "sq_diff_bwd";
  cu_on_gpu(k, dp), cu_on_gpu(k, p), cu_on_gpu(k, t);
  cu_same_dtype(k, dp, p), cu_same_dtype(k, p, t);
  if (!dp) return;
  int64_t n = idoc_numel(p);
  IDOC_CHECK(idoc_numel(t) == n && idoc_numel(dp) == n, "cuda sq_diff_bwd: sizes differ");
  IDOC_CU_DISPATCH(p->dtype, k, T, {
    T *D = (T *)dp->data;
    ew_map(ew_in<T, 3>{{D, (const T *)p->data, (const T *)t->data}, {0, 0, 0}}, ew_out<T, 1>{{D}},
           n, sq_diff_bwd_op{dscale});
  });
}

extern "C" void cuda_sq_diff_mean_bwd(idoc_tensor *dp, const idoc_tensor *p, const idoc_tensor *t,
                                      const idoc_tensor *dout, float dn) {
  const char *k = "sq_diff_mean_bwd";
  cu_on_gpu(k, dp), cu_on_gpu(k, p), cu_on_gpu(k, t), cu_on_gpu(k, dout);
  cu_same_dtype(k, dp, p), cu_same_dtype(k, p, t), cu_dtype_is(k, dout, IDOC_F32);
  IDOC_CHECK(dout && idoc_numel(dout) >= 1, "cuda sq_diff_mean_bwd: dout is NULL or empty");
  if (!dp) return;
  int64_t n = idoc_numel(p);
  IDOC_CHECK(idoc_numel(t) == n && idoc_numel(dp) == n, "cuda sq_diff_mean_bwd: sizes differ");
  IDOC_CU_DISPATCH(p->dtype, k, T, {
    T *D = (T *)dp->data;
    ew_map(ew_in<T, 3>{{D, (const T *)p->data, (const T *)t->data}, {0, 0, 0}}, ew_out<T, 1>{{D}},
           n, sq_diff_mean_bwd_op{(const float *)dout->data, dn});
  });
}

extern "C" void cuda_fill_grad(idoc_tensor *dx, const idoc_tensor *dout, float s) {
  const char *k = "fill_grad";
  cu_on_gpu(k, dx), cu_on_gpu(k, dout);
  if (!dx) return;
  IDOC_CHECK(idoc_numel(dout) >= 1, "cuda fill_grad: dout is empty");
  IDOC_CU_DISPATCH(dx->dtype, k, T, IDOC_CU_DISPATCH(dout->dtype, k, TD, {
                     T *D = (T *)dx->data;
                     ew_map(ew_in<T, 1>{{D}, {0}}, ew_out<T, 1>{{D}}, idoc_numel(dx),
                            fill_grad_op<TD>{(const TD *)dout->data, s});
                   }));
}
