// Shared by the CUDA kernels (C++ side only): error-checking macros, the process-wide stream /
// cuBLAS and cuDNN handles / scratch buffer (kernels/cuda/device.cu), dtype dispatch (f32 and bf16
// storage, fp32 math) and block reductions.
#pragma once
#include <cublas_v2.h>
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <math.h>

// The C headers use C11's _Noreturn and have no extern "C" guards.
#define _Noreturn [[noreturn]]
extern "C" {
#include "kernels/ops.h"
#define IDOC_CUDA_KERNEL_DECL(name, params) void cuda_##name params;
IDOC_KERNELS(IDOC_CUDA_KERNEL_DECL)
#undef IDOC_CUDA_KERNEL_DECL
}
#undef _Noreturn

// ---- portable launch and shared-memory syntax ---------------------------------------------------
// The same source builds with nvcc and, as host C++, against the SIMT simulator
// (kernels/cuda/sim, IDOC_CUDA_SIM), so launches and shared memory go through these macros:
//   IDOC_LAUNCH(kernel<T>, grid, block, smem, stream)(args...)   (parenthesize a kernel name
//       that contains a comma: IDOC_LAUNCH((k<A, B>), ...))
//   IDOC_SHARED(float, buf, [8][33]);    a __shared__ array of the block
//   IDOC_DYN_SHARED(float, buf);         the block's dynamic (extern __shared__) memory
#if IDOC_CUDA_SIM
#define IDOC_LAUNCH(kern, grid, block, smem, stream)                                               \
  ::idoc_sim::make_launcher(kern, grid, block, smem, stream, #kern, __FILE__, __LINE__)
#define IDOC_SHARED(T, name, dims)                                                                 \
  static char name##_idoc_tag;                                                                     \
  T(&name)                                                                                         \
  dims = *reinterpret_cast<T(*) dims>(                                                             \
      ::idoc_sim::shared_slot(&name##_idoc_tag, sizeof(T dims), alignof(T), #name))
#define IDOC_DYN_SHARED(T, name) T *name = reinterpret_cast<T *>(::idoc_sim::dynamic_shared())
#else
#define IDOC_LAUNCH(kern, grid, block, smem, stream) kern<<<grid, block, smem, stream>>>
#define IDOC_SHARED(T, name, dims) __shared__ T name dims
#define IDOC_DYN_SHARED(T, name)                                                                   \
  extern __shared__ __align__(16) unsigned char idoc_dyn_smem_[];                                  \
  T *name = reinterpret_cast<T *>(idoc_dyn_smem_)
#endif

#define CUDA_CHECK(expr)                                                                           \
  do {                                                                                             \
    cudaError_t e_ = (expr);                                                                       \
    if (e_ != cudaSuccess)                                                                         \
      idoc_die_at(__FILE__, __LINE__, "CUDA error %s (%s) in %s", cudaGetErrorName(e_),            \
                  cudaGetErrorString(e_), #expr);                                                  \
  } while (0)
#define CUBLAS_CHECK(expr)                                                                         \
  do {                                                                                             \
    cublasStatus_t s_ = (expr);                                                                    \
    if (s_ != CUBLAS_STATUS_SUCCESS)                                                               \
      idoc_die_at(__FILE__, __LINE__, "cuBLAS error %s (%s) in %s", cublasGetStatusName(s_),       \
                  cublasGetStatusString(s_), #expr);                                               \
  } while (0)
#if IDOC_HAVE_CUDNN
#include <cudnn.h>
// cudnnGetLastErrorString (cuDNN 9) says which argument a refused call objected to.
#if CUDNN_MAJOR >= 9
#define IDOC_CUDNN_LAST_ERROR(buf) cudnnGetLastErrorString(buf, sizeof buf)
#else
#define IDOC_CUDNN_LAST_ERROR(buf) (void)snprintf(buf, sizeof buf, "-")
#endif
#define CUDNN_CHECK(expr)                                                                          \
  do {                                                                                             \
    cudnnStatus_t s_ = (expr);                                                                     \
    if (s_ != CUDNN_STATUS_SUCCESS) {                                                              \
      char m_[512];                                                                                \
      IDOC_CUDNN_LAST_ERROR(m_);                                                                   \
      idoc_die_at(__FILE__, __LINE__, "cuDNN error %s in %s: %s", cudnnGetErrorString(s_), #expr,  \
                  m_);                                                                             \
    }                                                                                              \
  } while (0)
#endif
// After every launch: catches bad configurations at once (asynchronous faults surface at the
// next synchronizing call, which is checked too).
#define CUDA_LAUNCH_CHECK() CUDA_CHECK(cudaGetLastError())

// The one stream all kernels, copies and cuBLAS/cuDNN calls run on (a blocking stream, so work on
// the legacy default stream is ordered with it), the cuBLAS and cuDNN handles bound to it, and a
// growable device scratch buffer for reduction partials and library workspaces (contents
// undefined; growing it synchronizes).
cudaStream_t idoc_cu_stream(void);
cublasHandle_t idoc_cu_cublas(void);
#if IDOC_HAVE_CUDNN
cudnnHandle_t idoc_cu_cudnn(void); // builds with cuDNN only (kernels/cuda/conv.cu)
#endif
void *idoc_cu_scratch(size_t bytes);
int idoc_cu_sm_count(void);

// ---- dtypes -------------------------------------------------------------------------------
typedef __nv_bfloat16 bf16;
__device__ __forceinline__ float to_f(float v) { return v; }
__device__ __forceinline__ float to_f(bf16 v) { return __bfloat162float(v); }
template <typename T> __device__ __forceinline__ T from_f(float v);
template <> __device__ __forceinline__ float from_f<float>(float v) { return v; }
template <> __device__ __forceinline__ bf16 from_f<bf16>(float v) { return __float2bfloat16_rn(v); }

// Runs the statement with T bound to the storage type of dtype `dt` (f32 or bf16).
#define IDOC_CU_DISPATCH(dt, kname, T, ...)                                                        \
  do {                                                                                             \
    switch (dt) {                                                                                  \
    case IDOC_F32: {                                                                               \
      typedef float T;                                                                             \
      __VA_ARGS__;                                                                                 \
    } break;                                                                                       \
    case IDOC_BF16: {                                                                              \
      typedef bf16 T;                                                                              \
      __VA_ARGS__;                                                                                 \
    } break;                                                                                       \
    default:                                                                                       \
        idoc_die("cuda %s: dtype %s is not supported (f32, bf16)", kname, idoc_dtype_name(dt));    \
    }                                                                                              \
  } while (0)

// Every tensor a CUDA kernel touches must live on the GPU (NULL is allowed: optional operands).
static inline void cu_on_gpu(const char *kname, const idoc_tensor *t) {
  if (!t) return;
  char b[128];
  IDOC_CHECK(t->dev.kind == IDOC_CUDA, "cuda %s: operand %s is not on the GPU", kname,
             idoc_tensor_desc(t, b, sizeof b));
}
static inline void cu_same_dtype(const char *kname, const idoc_tensor *a, const idoc_tensor *b) {
  if (!a || !b) return;
  char s1[128], s2[128];
  IDOC_CHECK(a->dtype == b->dtype, "cuda %s: dtypes differ: %s vs %s", kname,
             idoc_tensor_desc(a, s1, sizeof s1), idoc_tensor_desc(b, s2, sizeof s2));
}
static inline void cu_dtype_is(const char *kname, const idoc_tensor *t, idoc_dtype dt) {
  if (!t) return;
  char b[128];
  IDOC_CHECK(t->dtype == dt, "cuda %s: %s must be %s", kname, idoc_tensor_desc(t, b, sizeof b),
             idoc_dtype_name(dt));
}

// Blocks for a grid-stride loop over n items with 256 threads (enough to fill the GPU).
static inline unsigned cu_blocks(int64_t n, int threads = 256) {
  int64_t b = (n + threads - 1) / threads, cap = (int64_t)idoc_cu_sm_count() * 16;
  if (b > cap) b = cap;
  return (unsigned)(b < 1 ? 1 : b);
}

// ---- 16-byte vector access ------------------------------------------------------------------
// 16 bytes of T as one 128-bit load/store. The bytes are moved between the uint4 and the T
// array with memcpy: reading a uint4 through a T pointer is undefined behaviour in C++ (host
// compilers miscompile it under strict aliasing; nvcc turns the memcpy into register moves).
template <typename T> struct vec16 { T v[16 / sizeof(T)]; };
template <typename T> __device__ __forceinline__ vec16<T> load16(const T *p) {
  uint4 u = *reinterpret_cast<const uint4 *>(p);
  vec16<T> r;
  memcpy(&r, &u, 16);
  return r;
}
// Through the read-only data cache: only for memory no thread writes during the kernel.
template <typename T> __device__ __forceinline__ vec16<T> load16_ro(const T *p) {
  uint4 u = __ldg(reinterpret_cast<const uint4 *>(p));
  vec16<T> r;
  memcpy(&r, &u, 16);
  return r;
}
template <typename T> __device__ __forceinline__ void store16(T *p, const vec16<T> &r) {
  uint4 u;
  memcpy(&u, &r, 16);
  *reinterpret_cast<uint4 *>(p) = u;
}

// ---- reductions ---------------------------------------------------------------------------
__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1)
    v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
// Sum over the block (blockDim.x a multiple of 32, at most 1024); every thread gets the result.
// Fixed reduction order, so results are reproducible run to run.
__device__ __forceinline__ float block_sum(float v) {
  IDOC_SHARED(float, sh, [32]);
  int lane = threadIdx.x & 31, wid = threadIdx.x >> 5, nw = blockDim.x >> 5;
  v = warp_sum(v);
  __syncthreads(); // sh may still be read by a previous call
  if (lane == 0) sh[wid] = v;
  __syncthreads();
  v = lane < nw ? sh[lane] : 0.0f;
  return warp_sum(v);
}

// Column sums of a [rows, cols] matrix given elementwise by f(r, c) (fp32), added into out[c]
// (storage TO): per-(column tile, row split) partials in scratch, then a fixed-order second
// pass, so the result is deterministic (no float atomics).
template <class F>
__global__ void colsum_partial_kernel(F f, int64_t rows, int64_t cols, int64_t rows_per_split,
                                      float *part) {
  IDOC_SHARED(float, sh, [8][33]);
  int64_t c = (int64_t)blockIdx.x * 32 + threadIdx.x;
  int64_t r0 = (int64_t)blockIdx.y * rows_per_split;
  int64_t r1 = r0 + rows_per_split < rows ? r0 + rows_per_split : rows;
  float s = 0.0f;
  if (c < cols)
    for (int64_t r = r0 + threadIdx.y; r < r1; r += 8)
      s += f(r, c);
  sh[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && c < cols) {
    float t = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; k++)
      t += sh[k][threadIdx.x];
    part[(int64_t)blockIdx.y * cols + c] = t;
  }
}

template <typename TO>
__global__ void colsum_finish_kernel(const float *part, int splits, int64_t cols, TO *out) {
  for (int64_t c = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; c < cols;
       c += (int64_t)gridDim.x * blockDim.x) {
    float s = 0.0f;
    for (int k = 0; k < splits; k++)
      s += part[(int64_t)k * cols + c];
    out[c] = from_f<TO>(to_f(out[c]) + s);
  }
}

template <typename TO, class F> void colsum_accumulate(TO *out, F f, int64_t rows, int64_t cols) {
  if (rows <= 0 || cols <= 0) return;
  int64_t rps = (rows + 127) / 128;
  if (rps < 64) rps = 64;
  int64_t splits = (rows + rps - 1) / rps;
  float *part = (float *)idoc_cu_scratch((size_t)(splits * cols) * sizeof(float));
  dim3 grid((unsigned)((cols + 31) / 32), (unsigned)splits), block(32, 8);
  IDOC_LAUNCH(colsum_partial_kernel<F>, grid, block, 0, idoc_cu_stream())(f, rows, cols, rps, part);
  CUDA_LAUNCH_CHECK();
  IDOC_LAUNCH(colsum_finish_kernel<TO>, cu_blocks(cols), 256, 0, idoc_cu_stream())
  (part, (int)splits, cols, out);
  CUDA_LAUNCH_CHECK();
}
