// Elementwise maps and whole-tensor sums shared by the elementwise, activation, loss and
// optimizer kernels: NI inputs and NO outputs of one storage type T, fp32 math per element,
// 16-byte loads/stores when every pointer is aligned, and fixed-order (deterministic) sums.
#pragma once
#include <stdint.h>

#include "kernels/cuda/common.cuh"

#define EW_THREADS 256
#define EW_SUM_MAX_BLOCKS 1024 // fixed, GPU-independent partial count: same sums on any device

// Inputs of a map: p[k][i], or p[k][i % period[k]] for period > 0 (b broadcast over a's leading
// dims; period 1 is a scalar); a NULL input reads as 0 (an accumulated output that is absent).
template <typename T, int NI> struct ew_in {
  const T *p[NI];
  int64_t period[NI];
};
// Outputs of a map; a NULL output is not written.
template <typename T, int NO> struct ew_out { T *p[NO]; };

template <typename T, int NI>
__device__ __forceinline__ void ew_load(const ew_in<T, NI> &in, int64_t i, float (&x)[NI]) {
#pragma unroll
  for (int k = 0; k < NI; k++)
    x[k] = in.p[k] ? to_f(in.p[k][in.period[k] ? i % in.period[k] : i]) : 0.0f;
}

// The VN = 16 / sizeof(T) elements i0 .. i0 + VN - 1 of every input (i0 a multiple of VN).
template <typename T, int NI, int VN>
__device__ __forceinline__ void ew_load_vec(const ew_in<T, NI> &in, int64_t i0,
                                            float (&x)[VN][NI]) {
#pragma unroll
  for (int k = 0; k < NI; k++) {
    if (!in.p[k] || in.period[k] == 1) {
      float v = in.p[k] ? to_f(in.p[k][0]) : 0.0f;
#pragma unroll
      for (int l = 0; l < VN; l++)
        x[l][k] = v;
    } else {
      vec16<T> e = load16(in.p[k] + (in.period[k] ? i0 % in.period[k] : i0));
#pragma unroll
      for (int l = 0; l < VN; l++)
        x[l][k] = to_f(e.v[l]);
    }
  }
}

// Whether the 16-byte path applies: every pointer aligned, every broadcast period (other than a
// scalar) a multiple of the vector width, so a vector never straddles a period.
template <typename T, int NI, int NO>
static inline bool ew_can_vec(const ew_in<T, NI> &in, const ew_out<T, NO> *out) {
  const int64_t vn = 16 / (int64_t)sizeof(T);
  for (int k = 0; k < NI; k++) {
    if (!in.p[k]) continue;
    if ((uintptr_t)in.p[k] & 15) return false;
    if (in.period[k] > 1 && in.period[k] % vn) return false;
  }
  if (out)
    for (int o = 0; o < NO; o++)
      if (out->p[o] && ((uintptr_t)out->p[o] & 15)) return false;
  return true;
}

// out_o[i] = f(in[i])_o for i < n; f is a functor with
//   __device__ void operator()(const float (&x)[NI], float (&y)[NO]) const.
// The first nvec * VN elements go 16 bytes at a time, the rest one by one.
template <typename T, int NI, int NO, class F>
__global__ void ew_map_kernel(ew_in<T, NI> in, ew_out<T, NO> out, int64_t n, int64_t nvec, F f) {
  constexpr int VN = 16 / sizeof(T);
  int64_t t0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x,
          stride = (int64_t)gridDim.x * blockDim.x;
  for (int64_t q = t0; q < nvec; q += stride) {
    int64_t i0 = q * VN;
    float x[VN][NI];
    ew_load_vec<T, NI, VN>(in, i0, x);
    vec16<T> y[NO];
#pragma unroll
    for (int l = 0; l < VN; l++) {
      float r[NO];
      f(x[l], r);
#pragma unroll
      for (int o = 0; o < NO; o++)
        y[o].v[l] = from_f<T>(r[o]);
    }
#pragma unroll
    for (int o = 0; o < NO; o++)
      if (out.p[o]) store16(out.p[o] + i0, y[o]);
  }
  for (int64_t i = nvec * VN + t0; i < n; i += stride) {
    float x[NI], r[NO];
    ew_load(in, i, x);
    f(x, r);
#pragma unroll
    for (int o = 0; o < NO; o++)
      if (out.p[o]) out.p[o][i] = from_f<T>(r[o]);
  }
}

template <typename T, int NI, int NO, class F>
static void ew_map(ew_in<T, NI> in, ew_out<T, NO> out, int64_t n, F f) {
  if (n <= 0) return;
  const int64_t vn = 16 / (int64_t)sizeof(T);
  int64_t nvec = ew_can_vec(in, &out) ? n / vn : 0, units = nvec + (n - nvec * vn);
  IDOC_LAUNCH((ew_map_kernel<T, NI, NO, F>), cu_blocks(units, EW_THREADS), EW_THREADS, 0,
              idoc_cu_stream())
  (in, out, n, nvec, f);
  CUDA_LAUNCH_CHECK();
}

// ---- sums ---------------------------------------------------------------------------------------
// out[0] (+)= sum over i < n of f(in[i]), f: __device__ float operator()(const float (&x)[NI]).
// Each thread sums its elements in order, the block reduces with block_sum, and one block adds
// the per-block partials in order: the same result on every run.
template <typename T, int NI, class F>
__global__ void ew_sum_partial_kernel(float *part, ew_in<T, NI> in, int64_t n, int64_t nvec, F f) {
  constexpr int VN = 16 / sizeof(T);
  int64_t t0 = (int64_t)blockIdx.x * blockDim.x + threadIdx.x,
          stride = (int64_t)gridDim.x * blockDim.x;
  float s = 0.0f;
  for (int64_t q = t0; q < nvec; q += stride) {
    float x[VN][NI];
    ew_load_vec<T, NI, VN>(in, q * VN, x);
#pragma unroll
    for (int l = 0; l < VN; l++)
      s += f(x[l]);
  }
  for (int64_t i = nvec * VN + t0; i < n; i += stride) {
    float x[NI];
    ew_load(in, i, x);
    s += f(x);
  }
  s = block_sum(s);
  if (threadIdx.x == 0) part[blockIdx.x] = s;
}

template <typename TO>
__global__ void ew_sum_finish_kernel(TO *out, const float *part, int nparts, bool accumulate) {
  float s = 0.0f;
  for (int i = threadIdx.x; i < nparts; i += blockDim.x)
    s += part[i];
  s = block_sum(s);
  if (threadIdx.x == 0) out[0] = from_f<TO>(accumulate ? to_f(out[0]) + s : s);
}

template <typename TO, typename T, int NI, class F>
static void ew_sum(TO *out, ew_in<T, NI> in, int64_t n, F f, bool accumulate) {
  const int64_t vn = 16 / (int64_t)sizeof(T);
  int64_t nvec = n > 0 && ew_can_vec<T, NI, 1>(in, NULL) ? n / vn : 0;
  int64_t units = nvec + (n - nvec * vn), nb = (units + EW_THREADS - 1) / EW_THREADS;
  int blocks = (int)(nb < 1 ? 1 : nb > EW_SUM_MAX_BLOCKS ? EW_SUM_MAX_BLOCKS : nb);
  float *part = (float *)idoc_cu_scratch((size_t)blocks * sizeof(float));
  IDOC_LAUNCH((ew_sum_partial_kernel<T, NI, F>), blocks, EW_THREADS, 0, idoc_cu_stream())
  (part, in, n, nvec, f);
  CUDA_LAUNCH_CHECK();
  IDOC_LAUNCH(ew_sum_finish_kernel<TO>, 1, 1024, 0, idoc_cu_stream())
  (out, part, blocks, accumulate);
  CUDA_LAUNCH_CHECK();
}
