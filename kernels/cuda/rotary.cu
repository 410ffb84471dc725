// Rotary position embedding (NeoX / rotate_half pairing) from per-token cos/sin tables, as
// cpu_rotary: x and y are [T, H * D], cos/sin [T, D/2]. One thread per rotated pair reads both
// entries before writing them, so y may be x.
#include "kernels/cuda/common.cuh"

template <typename T>
__global__ void rotary_kernel(T *y, const T *x, const T *cos, const T *sin, int64_t t,
                              int64_t n_heads, int64_t half, float sign) {
  int64_t n = t * n_heads * half, width = 2 * half * n_heads;
  for (int64_t e = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; e < n;
       e += (int64_t)gridDim.x * blockDim.x) {
    int64_t j = e % half, th = e / half, h = th % n_heads, i = th / n_heads;
    int64_t o = i * width + h * 2 * half + j;
    float a = to_f(x[o]), b = to_f(x[o + half]), co = to_f(cos[i * half + j]),
          si = sign * to_f(sin[i * half + j]);
    y[o] = from_f<T>(a * co - b * si);
    y[o + half] = from_f<T>(b * co + a * si);
  }
}

extern "C" void cuda_rotary(idoc_tensor *y, const idoc_tensor *x, const idoc_tensor *cos,
                            const idoc_tensor *sin, int n_heads, bool inverse) {
  const char *k = "rotary";
  cu_on_gpu(k, y), cu_on_gpu(k, x), cu_on_gpu(k, cos), cu_on_gpu(k, sin);
  cu_same_dtype(k, y, x), cu_same_dtype(k, x, cos), cu_same_dtype(k, cos, sin);
  IDOC_CHECK(x->ndim >= 1 && cos->ndim == 2 && n_heads > 0, "cuda rotary: bad operands");
  int64_t t = x->shape[0], half = cos->shape[1];
  IDOC_CHECK(cos->shape[0] == t && idoc_numel(sin) == idoc_numel(cos) &&
                 idoc_numel(x) == t * 2 * half * n_heads && idoc_numel(y) == idoc_numel(x),
             "cuda rotary: x must be [T, H * D] with cos/sin [T, D/2]");
  int64_t n = t * n_heads * half;
  if (n == 0) return;
  IDOC_CU_DISPATCH(x->dtype, k, T, {
    IDOC_LAUNCH(rotary_kernel<T>, cu_blocks(n), 256, 0, idoc_cu_stream())
    ((T *)y->data, (const T *)x->data, (const T *)cos->data, (const T *)sin->data, t,
     (int64_t)n_heads, half, inverse ? -1.0f : 1.0f);
  });
  CUDA_LAUNCH_CHECK();
}
