// AdamW with the arithmetic of torch.optim.AdamW (single-tensor path), as cpu_adamw_step: the
// step scalars in double on the host, rounded to f32; fp32 moments m and v; w in f32 or bf16
// storage (a bf16 w is updated in fp32 and rounded once). Every product is __fmul_rn so no FMA
// contraction changes the rounding: f32 results equal the CPU's bit for bit.
// Also the accumulated sum of squares of a gradient (global-norm clipping), and the fp64
// gradient sums of data parallelism (stage/dist.c).
#include <math.h>

#include "kernels/cuda/elementwise.cuh"

struct adamw_scalars {
  float step_size, bc2_sqrt, decay, w1, w2, beta2, eps, grad_scale;
  bool decay_on;
};

template <typename TW, typename TG>
__global__ void adamw_kernel(TW *w, const TG *g, float *m, float *v, int64_t n, adamw_scalars s) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    float gi = to_f(g[i]);
    if (s.grad_scale != 1.0f) gi = __fmul_rn(gi, s.grad_scale);
    float wi = to_f(w[i]);
    if (s.decay_on) wi = __fmul_rn(wi, s.decay);
    float mi = m[i], vi = v[i];
    mi = mi + __fmul_rn(s.w1, gi - mi);                               // m.lerp_(g, 1 - beta1)
    vi = __fmul_rn(vi, s.beta2) + __fmul_rn(__fmul_rn(s.w2, gi), gi); // v*b2 + (1-b2) g g
    float denom = sqrtf(vi) / s.bc2_sqrt + s.eps;
    wi = wi + __fmul_rn(-s.step_size, mi / denom);
    m[i] = mi;
    v[i] = vi;
    w[i] = from_f<TW>(wi);
  }
}

extern "C" void cuda_adamw_step(idoc_tensor *w, const idoc_tensor *g, idoc_tensor *m,
                                idoc_tensor *v, float lr, float beta1, float beta2, float eps,
                                float weight_decay, float grad_scale, int step) {
  const char *k = "adamw_step";
  cu_on_gpu(k, w), cu_on_gpu(k, g), cu_on_gpu(k, m), cu_on_gpu(k, v);
  cu_dtype_is(k, m, IDOC_F32), cu_dtype_is(k, v, IDOC_F32);
  int64_t n = idoc_numel(w);
  IDOC_CHECK(idoc_numel(g) == n && idoc_numel(m) == n && idoc_numel(v) == n,
             "cuda adamw_step: w, g, m, v sizes differ");
  // The scalars exactly as cpu_adamw_step computes them.
  double bc1 = 1.0 - pow((double)beta1, step), bc2 = 1.0 - pow((double)beta2, step);
  adamw_scalars s;
  s.step_size = (float)((double)lr / bc1);
  s.bc2_sqrt = (float)sqrt(bc2);
  s.decay = (float)(1.0 - (double)lr * weight_decay);
  s.w1 = (float)(1.0 - (double)beta1);
  s.w2 = (float)(1.0 - (double)beta2);
  s.beta2 = beta2;
  s.eps = eps;
  s.grad_scale = grad_scale;
  s.decay_on = weight_decay != 0.0f;
  if (n == 0) return;
  IDOC_CU_DISPATCH(w->dtype, k, TW, IDOC_CU_DISPATCH(g->dtype, k, TG, {
                     IDOC_LAUNCH((adamw_kernel<TW, TG>), cu_blocks(n), 256, 0, idoc_cu_stream())
                     ((TW *)w->data, (const TG *)g->data, (float *)m->data, (float *)v->data, n, s);
                   }));
  CUDA_LAUNCH_CHECK();
}

struct square_op {
  __device__ __forceinline__ float operator()(const float (&x)[1]) const { return x[0] * x[0]; }
};

extern "C" void cuda_sumsq(idoc_tensor *out, const idoc_tensor *x) {
  const char *k = "sumsq";
  cu_on_gpu(k, out), cu_on_gpu(k, x), cu_dtype_is(k, out, IDOC_F32);
  IDOC_CU_DISPATCH(x->dtype, k, T, {
    ew_sum((float *)out->data, ew_in<T, 1>{{(const T *)x->data}, {0}}, idoc_numel(x), square_op{},
           true);
  });
}

template <typename TA, typename TG>
__global__ void grad_accumulate_kernel(TA *acc, TG *g, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x) {
    acc[i] += (TA)to_f(g[i]);
    g[i] = from_f<TG>(0.0f);
  }
}

__global__ void grad_round_f64_kernel(float *g, const double *acc, int64_t n) {
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n;
       i += (int64_t)gridDim.x * blockDim.x)
    g[i] = (float)acc[i]; // round to nearest, as the CPU
}

extern "C" void cuda_grad_accumulate(idoc_tensor *acc, idoc_tensor *g) {
  const char *k = "grad_accumulate";
  cu_on_gpu(k, acc), cu_on_gpu(k, g);
  IDOC_CHECK((acc->dtype == IDOC_F64 || acc->dtype == IDOC_F32) && idoc_numel(acc) == idoc_numel(g),
             "cuda grad_accumulate: acc must be f64 or f32, of g's size");
  int64_t n = idoc_numel(g);
  if (n == 0) return;
  IDOC_CU_DISPATCH(g->dtype, k, TG, {
    if (acc->dtype == IDOC_F64)
      IDOC_LAUNCH((grad_accumulate_kernel<double, TG>), cu_blocks(n), 256, 0, idoc_cu_stream())
    ((double *)acc->data, (TG *)g->data, n);
    else IDOC_LAUNCH((grad_accumulate_kernel<float, TG>), cu_blocks(n), 256, 0,
                     idoc_cu_stream())((float *)acc->data, (TG *)g->data, n);
  });
  CUDA_LAUNCH_CHECK();
}

extern "C" void cuda_grad_round_f64(idoc_tensor *g, const idoc_tensor *acc) {
  const char *k = "grad_round_f64";
  cu_on_gpu(k, acc), cu_on_gpu(k, g), cu_dtype_is(k, acc, IDOC_F64), cu_dtype_is(k, g, IDOC_F32);
  IDOC_CHECK(idoc_numel(acc) == idoc_numel(g), "cuda grad_round_f64: acc and g sizes differ");
  int64_t n = idoc_numel(g);
  if (n == 0) return;
  IDOC_LAUNCH(grad_round_f64_kernel, cu_blocks(n), 256, 0, idoc_cu_stream())
  ((float *)g->data, (const double *)acc->data, n);
  CUDA_LAUNCH_CHECK();
}
