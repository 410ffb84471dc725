// The host SIMT simulator's stand-in for the CUDA runtime header (IDOC_CUDA_SIM builds only).
// Our kernels/cuda/*.cu sources compile as host C++ against it: kernel qualifiers vanish, the
// built-in index variables read the current simulated thread, warp intrinsics and barriers are
// collective operations of the fiber scheduler (kernels/cuda/sim/scheduler.cc), and the runtime
// API (memory, copies, streams, events, errors, device queries) is implemented in
// kernels/cuda/sim/runtime.cc following NVIDIA's documented semantics. Only what the project
// uses is declared; anything else fails to compile rather than silently doing something else.
#pragma once
#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <tuple>
#include <type_traits>
#include <utility>

#ifndef IDOC_CUDA_SIM
#define IDOC_CUDA_SIM 1
#endif

// ---- qualifiers ---------------------------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) alignas(n)
// Shared memory is declared with IDOC_SHARED / IDOC_DYN_SHARED (kernels/cuda/common.cuh) so the
// simulator can give each block its own poisoned, bounds-checked storage; a bare __shared__
// would silently become one static variable shared by every block.
#define __shared__ IDOC_SIM_ERROR_use_IDOC_SHARED_instead_of___shared__
#define __constant__ IDOC_SIM_ERROR___constant___is_not_simulated

// ---- vector types -------------------------------------------------------------------------------
struct uint3 {
  unsigned x, y, z;
};
struct dim3 {
  unsigned x, y, z;
  constexpr dim3(unsigned vx = 1, unsigned vy = 1, unsigned vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct alignas(8) int2 {
  int x, y;
};
struct alignas(8) uint2 {
  unsigned x, y;
};
struct alignas(16) int4 {
  int x, y, z, w;
};
struct alignas(16) uint4 {
  unsigned x, y, z, w;
};
struct alignas(8) float2 {
  float x, y;
};
struct alignas(16) float4 {
  float x, y, z, w;
};
static inline float2 make_float2(float x, float y) { return float2{x, y}; }
static inline float4 make_float4(float x, float y, float z, float w) { return float4{x, y, z, w}; }
static inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) {
  return uint4{x, y, z, w};
}

// ---- runtime API types (numeric values as in the CUDA toolkit) ----------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorLaunchFailure = 719,
};
typedef cudaError_t cudaError;

enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};

enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};

enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
};

enum cudaDataType_t {
  CUDA_R_32F = 0,
  CUDA_R_64F = 1,
  CUDA_R_16F = 2,
  CUDA_R_8I = 3,
  CUDA_R_32I = 10,
  CUDA_R_16BF = 14,
};
typedef cudaDataType_t cudaDataType;

#define cudaStreamDefault 0x00
#define cudaStreamNonBlocking 0x01
#define cudaEventDefault 0x00
#define cudaEventDisableTiming 0x02
#define cudaHostAllocDefault 0x00

typedef struct CUstream_st *cudaStream_t;
typedef struct CUevent_st *cudaEvent_t;

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major;
  int minor;
  int multiProcessorCount;
  size_t sharedMemPerBlockOptin;
  size_t sharedMemPerMultiprocessor;
  int l2CacheSize;
};

// ---- runtime API
// ----------------------------------------------------------------------------------
extern "C" {
cudaError_t cudaGetDeviceCount(int *count);
cudaError_t cudaSetDevice(int device);
cudaError_t cudaGetDevice(int *device);
cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp *prop, int device);
cudaError_t cudaDeviceSynchronize(void);
cudaError_t cudaGetLastError(void);
cudaError_t cudaPeekAtLastError(void);
const char *cudaGetErrorName(cudaError_t e);
const char *cudaGetErrorString(cudaError_t e);

cudaError_t cudaMalloc(void **ptr, size_t size);
cudaError_t cudaFree(void *ptr);
cudaError_t cudaMallocHost(void **ptr, size_t size);
cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned flags);
cudaError_t cudaFreeHost(void *ptr);
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes);
cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream);
cudaError_t cudaMemset(void *ptr, int value, size_t count);
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t count, cudaStream_t stream);

cudaError_t cudaStreamCreate(cudaStream_t *stream);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags);
cudaError_t cudaStreamDestroy(cudaStream_t stream);
cudaError_t cudaStreamSynchronize(cudaStream_t stream);
cudaError_t cudaStreamQuery(cudaStream_t stream);
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags);
cudaError_t cudaEventCreate(cudaEvent_t *event);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned flags);
cudaError_t cudaEventDestroy(cudaEvent_t event);
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream);
cudaError_t cudaEventSynchronize(cudaEvent_t event);
cudaError_t cudaEventQuery(cudaEvent_t event);
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value);
}
template <class T> static inline cudaError_t cudaMalloc(T **ptr, size_t size) {
  return cudaMalloc(reinterpret_cast<void **>(ptr), size);
}
template <class T> static inline cudaError_t cudaMallocHost(T **ptr, size_t size) {
  return cudaMallocHost(reinterpret_cast<void **>(ptr), size);
}
template <class R, class... P>
static inline cudaError_t cudaFuncSetAttribute(R (*func)(P...), cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void *>(func), attr, value);
}

// ---- the simulator's kernel-side interface (kernels/cuda/sim/scheduler.cc) ----------------------
namespace idoc_sim {
// The launch being run: one at a time per process (launches are serialized), so these are plain
// globals; extern thread_local ones also trip a GCC 12 UBSan miscompile (a null check on stale
// flags).
extern dim3 g_block_dim, g_grid_dim;
extern uint3 g_block_idx;
const uint3 &thread_idx(); // of the running simulated thread (aborts outside a kernel)

enum collective {
  W_SHFL,
  W_SHFL_UP,
  W_SHFL_DOWN,
  W_SHFL_XOR,
  W_BALLOT,
  W_ANY,
  W_ALL,
  W_SYNCWARP,
  W_WMMA,
};
// A warp-wide barrier over the lanes in `mask` with value exchange; returns this lane's result
// (the poison value ~0 where NVIDIA documents the result as undefined).
uint64_t warp_collective(collective op, unsigned mask, uint64_t value, int arg, int width);
unsigned active_mask();
enum block_barrier_kind { B_SYNC, B_COUNT, B_AND, B_OR };
int block_barrier(block_barrier_kind kind, int pred);
// Per-block storage of one IDOC_SHARED declaration (keyed by a static tag) and the block's
// dynamic shared memory.
void *shared_slot(const void *tag, size_t bytes, size_t align, const char *name);
void *dynamic_shared();
[[noreturn]] void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

// ---- launches ----
struct kernel_body {
  virtual void run() = 0;
};
struct launch_site {
  const void *fn;
  const char *name, *file;
  int line;
};
void launch(kernel_body &body, const launch_site &site, dim3 grid, dim3 block, size_t smem,
            cudaStream_t stream);
// Kernel pointer arguments must point into device memory (or pinned host memory): a host
// pointer handed to a kernel would be an illegal address on a GPU.
bool device_accessible(const void *p);
[[noreturn]] void fail_host_pointer_arg(const launch_site &site, int index, const void *p);

template <class T> static inline void check_arg(const launch_site &s, int i, const T &v) {
  if constexpr (std::is_pointer<T>::value)
    if (v && !device_accessible((const void *)v)) fail_host_pointer_arg(s, i, (const void *)v);
}
template <class Tuple, size_t... I>
static inline void check_args(const launch_site &s, const Tuple &t, std::index_sequence<I...>) {
  (check_arg(s, (int)I, std::get<I>(t)), ...);
}
template <class P, class A> static inline P convert_arg(A &&a) { return std::forward<A>(a); }

template <class... P> struct launcher {
  void (*fn)(P...);
  launch_site site;
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  template <class... A> void operator()(A &&...a) const {
    static_assert(sizeof...(A) == sizeof...(P), "kernel launched with the wrong argument count");
    struct body_t : kernel_body {
      void (*fn)(P...);
      std::tuple<typename std::decay<P>::type...> args;
      void run() override { std::apply(fn, args); }
    } body;
    body.fn = fn;
    body.args = std::tuple<typename std::decay<P>::type...>(convert_arg<P>(std::forward<A>(a))...);
    check_args(site, body.args, std::index_sequence_for<P...>{});
    launch(body, site, grid, block, smem, stream);
  }
};
template <class... P>
static inline launcher<P...> make_launcher(void (*fn)(P...), dim3 grid, dim3 block, size_t smem,
                                           cudaStream_t stream, const char *name, const char *file,
                                           int line) {
  return launcher<P...>{
      fn, {reinterpret_cast<const void *>(fn), name, file, line}, grid, block, smem, stream};
}
} // namespace idoc_sim

// ---- built-in variables
// ---------------------------------------------------------------------------
#define threadIdx (::idoc_sim::thread_idx())
#define blockIdx (::idoc_sim::g_block_idx)
#define blockDim (::idoc_sim::g_block_dim)
#define gridDim (::idoc_sim::g_grid_dim)
static const int warpSize = 32;

// ---- barriers and warp intrinsics
// -------------------------------------------------------------------
static inline void __syncthreads() { ::idoc_sim::block_barrier(::idoc_sim::B_SYNC, 1); }
static inline int __syncthreads_count(int p) {
  return ::idoc_sim::block_barrier(::idoc_sim::B_COUNT, p);
}
static inline int __syncthreads_and(int p) {
  return ::idoc_sim::block_barrier(::idoc_sim::B_AND, p);
}
static inline int __syncthreads_or(int p) { return ::idoc_sim::block_barrier(::idoc_sim::B_OR, p); }
static inline void __syncwarp(unsigned mask = 0xffffffffu) {
  ::idoc_sim::warp_collective(::idoc_sim::W_SYNCWARP, mask, 0, 0, 32);
}
static inline unsigned __activemask() { return ::idoc_sim::active_mask(); }

namespace idoc_sim {
template <class T> static inline T shfl(collective op, unsigned mask, T var, int arg, int width) {
  static_assert(std::is_trivially_copyable<T>::value && sizeof(T) <= 8,
                "shuffles exchange values of at most 8 bytes");
  uint64_t v = 0;
  memcpy(&v, &var, sizeof(T));
  uint64_t r = warp_collective(op, mask, v, arg, width);
  T out;
  memcpy(&out, &r, sizeof(T));
  return out;
}
} // namespace idoc_sim
template <class T> static inline T __shfl_sync(unsigned mask, T var, int src, int width = 32) {
  return ::idoc_sim::shfl(::idoc_sim::W_SHFL, mask, var, src, width);
}
template <class T>
static inline T __shfl_up_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  return ::idoc_sim::shfl(::idoc_sim::W_SHFL_UP, mask, var, (int)delta, width);
}
template <class T>
static inline T __shfl_down_sync(unsigned mask, T var, unsigned delta, int width = 32) {
  return ::idoc_sim::shfl(::idoc_sim::W_SHFL_DOWN, mask, var, (int)delta, width);
}
template <class T>
static inline T __shfl_xor_sync(unsigned mask, T var, int lane_mask, int width = 32) {
  return ::idoc_sim::shfl(::idoc_sim::W_SHFL_XOR, mask, var, lane_mask, width);
}
static inline unsigned __ballot_sync(unsigned mask, int pred) {
  return (unsigned)::idoc_sim::warp_collective(::idoc_sim::W_BALLOT, mask, pred != 0, 0, 32);
}
static inline int __any_sync(unsigned mask, int pred) {
  return (int)::idoc_sim::warp_collective(::idoc_sim::W_ANY, mask, pred != 0, 0, 32);
}
static inline int __all_sync(unsigned mask, int pred) {
  return (int)::idoc_sim::warp_collective(::idoc_sim::W_ALL, mask, pred != 0, 0, 32);
}

// ---- memory access, fences, atomics
// ------------------------------------------------------------------- Blocks run one after another
// and a block's threads one at a time, so atomics are atomic by construction; they still use the
// compiler's atomic builtins to keep their meaning visible.
template <class T> static inline T __ldg(const T *p) { return *p; }
static inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
static inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
#define IDOC_SIM_ATOMIC_INT(T)                                                                     \
  static inline T atomicAdd(T *p, T v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }      \
  static inline T atomicSub(T *p, T v) { return __atomic_fetch_sub(p, v, __ATOMIC_SEQ_CST); }      \
  static inline T atomicExch(T *p, T v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }    \
  static inline T atomicAnd(T *p, T v) { return __atomic_fetch_and(p, v, __ATOMIC_SEQ_CST); }      \
  static inline T atomicOr(T *p, T v) { return __atomic_fetch_or(p, v, __ATOMIC_SEQ_CST); }        \
  static inline T atomicXor(T *p, T v) { return __atomic_fetch_xor(p, v, __ATOMIC_SEQ_CST); }      \
  static inline T atomicMax(T *p, T v) {                                                           \
    T o = *p;                                                                                      \
    if (v > o) *p = v;                                                                             \
    return o;                                                                                      \
  }                                                                                                \
  static inline T atomicMin(T *p, T v) {                                                           \
    T o = *p;                                                                                      \
    if (v < o) *p = v;                                                                             \
    return o;                                                                                      \
  }                                                                                                \
  static inline T atomicCAS(T *p, T cmp, T v) {                                                    \
    __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);            \
    return cmp;                                                                                    \
  }
IDOC_SIM_ATOMIC_INT(int)
IDOC_SIM_ATOMIC_INT(unsigned)
IDOC_SIM_ATOMIC_INT(unsigned long long)
#undef IDOC_SIM_ATOMIC_INT
static inline float atomicAdd(float *p, float v) {
  float o = *p;
  *p = o + v;
  return o;
}
static inline double atomicAdd(double *p, double v) {
  double o = *p;
  *p = o + v;
  return o;
}
static inline float atomicExch(float *p, float v) {
  float o = *p;
  *p = v;
  return o;
}

// ---- math intrinsics (host libm; the device's fast variants are less accurate, never more)
// -------------
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
// glibc's math.h already declares these names (as C functions), so they are defined to match.
extern "C" {
inline float __expf(float x) throw() { return expf(x); }
inline float __logf(float x) throw() { return logf(x); }
inline float __log2f(float x) throw() { return log2f(x); }
inline float __sinf(float x) throw() { return sinf(x); }
inline float __cosf(float x) throw() { return cosf(x); }
inline float __tanf(float x) throw() { return tanf(x); }
inline float __powf(float x, float y) throw() { return powf(x, y); }
}
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : x > 1.0f ? 1.0f : x; }
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline int __float_as_int(float x) {
  int i;
  memcpy(&i, &x, 4);
  return i;
}
static inline unsigned __float_as_uint(float x) {
  unsigned i;
  memcpy(&i, &x, 4);
  return i;
}
static inline float __int_as_float(int i) {
  float x;
  memcpy(&x, &i, 4);
  return x;
}
static inline float __uint_as_float(unsigned i) {
  float x;
  memcpy(&x, &i, 4);
  return x;
}
static inline int __popc(unsigned x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __clz(int x) { return x ? __builtin_clz((unsigned)x) : 32; }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline unsigned __brev(unsigned x) {
  x = ((x >> 1) & 0x55555555u) | ((x & 0x55555555u) << 1);
  x = ((x >> 2) & 0x33333333u) | ((x & 0x33333333u) << 2);
  x = ((x >> 4) & 0x0f0f0f0fu) | ((x & 0x0f0f0f0fu) << 4);
  x = ((x >> 8) & 0x00ff00ffu) | ((x & 0x00ff00ffu) << 8);
  return (x >> 16) | (x << 16);
}
// The device's integer min/max overloads.
static inline int min(int a, int b) { return a < b ? a : b; }
static inline int max(int a, int b) { return a > b ? a : b; }
static inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
static inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
static inline long long min(long long a, long long b) { return a < b ? a : b; }
static inline long long max(long long a, long long b) { return a > b ? a : b; }
static inline long min(long a, long b) { return a < b ? a : b; }
static inline long max(long a, long b) { return a > b ? a : b; }
static inline float min(float a, float b) { return fminf(a, b); }
static inline float max(float a, float b) { return fmaxf(a, b); }
