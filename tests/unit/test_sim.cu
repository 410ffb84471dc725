// idoc-requires: cudasim
// Self-test of the host SIMT simulator (kernels/cuda/sim): barriers, warp exchanges with
// NVIDIA's documented edge cases, thread-order shaking that exposes a missing __syncthreads,
// WMMA, atomics, bf16/f16 rounding, the cuBLAS shim, and every error the simulator promises to
// catch: launch limits, divergent barriers, mismatched warp masks, deadlocks, host access to
// device memory, out-of-bounds and use-after-free accesses, host pointers passed to kernels,
// bad copies. Errors that end the process run in a child (this binary re-executed with a case
// name) whose exit status and message are checked.
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <mma.h>

#include "kernels/cuda/common.cuh"
#include "kernels/cuda/sim/idoc_sim.h"
#include "tests/test.h"

static const char *g_self;

// ---- helpers ------------------------------------------------------------------------------------
template <class T> static T *dalloc(size_t n) {
  void *p = NULL;
  T_CHECK(cudaMalloc(&p, n * sizeof(T)) == cudaSuccess, "cudaMalloc(%zu)", n * sizeof(T));
  return (T *)p;
}
template <class T> static std::vector<T> down(const T *d, size_t n) {
  std::vector<T> h(n);
  T_CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess, "d2h");
  return h;
}
template <class T> static void up(T *d, const std::vector<T> &h) {
  T_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess,
          "h2d");
}

struct child_result {
  int status;
  std::string err;
};
// Runs this binary with `mode` (and extra environment) and collects its stderr.
static child_result run_child(const char *mode, const char *env = NULL) {
  int fd[2];
  if (pipe(fd) != 0) abort();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], 2);
    close(fd[0]);
    close(fd[1]);
    if (env) putenv((char *)env);
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    execl(g_self, g_self, mode, (char *)NULL);
    _exit(127);
  }
  close(fd[1]);
  std::string err;
  char buf[4096];
  ssize_t k;
  while ((k = read(fd[0], buf, sizeof buf)) > 0)
    err.append(buf, (size_t)k);
  close(fd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  return {st, err};
}
// The child must die (abort or a fault) with `want` in its message.
static void expect_death(const char *mode, const char *want, const char *env = NULL) {
  child_result r = run_child(mode, env);
  bool died = WIFSIGNALED(r.status) || (WIFEXITED(r.status) && WEXITSTATUS(r.status) != 0);
  bool said = r.err.find(want) != std::string::npos;
  T_CHECK(died && said, "case %s: want death with \"%s\"; status 0x%x, stderr:\n%s", mode, want,
          r.status, r.err.c_str());
  if (died && said) printf("ok   %-28s dies with \"%s\"\n", mode, want);
}

// ---- kernels
// --------------------------------------------------------------------------------------- Each
// thread publishes its index, then reads its right neighbour's: needs the barrier.
template <bool kSync> __global__ void neighbour_kernel(float *out) {
  IDOC_SHARED(float, sh, [256]);
  int i = threadIdx.x, n = blockDim.x;
  sh[i] = (float)(i + 1000 * blockIdx.x);
  if (kSync) __syncthreads();
  out[blockIdx.x * n + i] = sh[(i + 1) % n];
}

__global__ void shuffle_kernel(int *out, int width) {
  int lane = threadIdx.x & 31, base = (threadIdx.x / 32) * 32 * 6;
  out[base + lane] = __shfl_sync(0xffffffffu, lane * 10, (lane + 3) % 32, width);
  out[base + 32 + lane] = __shfl_up_sync(0xffffffffu, lane * 10, 3, width);
  out[base + 64 + lane] = __shfl_down_sync(0xffffffffu, lane * 10, 3, width);
  out[base + 96 + lane] = __shfl_xor_sync(0xffffffffu, lane * 10, 5, width);
  out[base + 128 + lane] = (int)__ballot_sync(0xffffffffu, lane % 3 == 0);
  out[base + 160 + lane] =
      __any_sync(0xffffffffu, lane == 7) * 2 + __all_sync(0xffffffffu, lane < 31);
}

// Lanes 0-15 shuffle among themselves; lane 3 asks for lane 20, which is not in the mask.
__global__ void partial_mask_kernel(float *out) {
  int lane = threadIdx.x;
  if (lane < 16) {
    float v = __shfl_sync(0x0000ffffu, (float)lane, lane == 3 ? 20 : (lane + 1) % 16);
    out[lane] = v;
  }
}

// Half the warp exits early: the other half's full-mask reduction only sees live lanes.
__global__ void exited_lanes_kernel(int *out) {
  int lane = threadIdx.x;
  if (lane >= 16) return;
  unsigned m = __ballot_sync(0xffffffffu, 1);
  out[lane] = (int)m;
}

__global__ void sync_count_kernel(int *out) {
  int c = __syncthreads_count(threadIdx.x % 4 == 0);
  int a = __syncthreads_and(threadIdx.x < 1000);
  int o = __syncthreads_or(threadIdx.x == 5);
  if (threadIdx.x == 0) out[0] = c, out[1] = a, out[2] = o;
}

__global__ void atomic_kernel(int *counter) { atomicAdd(counter, 1); }

__global__ void dyn_smem_kernel(float *out, int n) {
  IDOC_DYN_SHARED(float, buf);
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    buf[i] = 1.0f;
  __syncthreads();
  float s = 0;
  for (int i = 0; i < n; i++)
    s += buf[i];
  if (threadIdx.x == 0) out[0] = s;
}

__global__ void wmma_kernel(float *c, const __nv_bfloat16 *a, const __nv_bfloat16 *b) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::fragment<wmma::matrix_b, 16, 16, 16, __nv_bfloat16, wmma::col_major> fb;
  wmma::fragment<wmma::accumulator, 16, 16, 16, float> fc;
  wmma::fill_fragment(fc, 0.5f);
  wmma::load_matrix_sync(fa, a, 16);
  wmma::load_matrix_sync(fb, b, 16);
  wmma::mma_sync(fc, fa, fb, fc);
  wmma::store_matrix_sync(c, fc, 16, wmma::mem_row_major);
}

__global__ void copy_kernel(float *dst, const float *src, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x)
    dst[i] = src[i];
}
__global__ void copy_off_by_one_kernel(float *dst, const float *src, int n) {
  for (int i = threadIdx.x; i <= n; i += blockDim.x) // bug: <= n
    dst[i] = (float)i;
}
__global__ void read_far_kernel(float *dst, const float *src, int n) {
  if (threadIdx.x == 0) dst[0] = src[n + 4096];
}
__global__ void divergent_sync_kernel(float *out) {
  if (threadIdx.x >= 40) return; // the rest of the block never reaches the barrier
  __syncthreads();
  out[threadIdx.x] = 1.0f;
}
__global__ void mask_mismatch_kernel(int *out) {
  unsigned m = threadIdx.x < 8 ? 0xffu : 0xffffffffu;
  out[threadIdx.x] = __shfl_sync(m, (int)threadIdx.x, 0);
}
__global__ void deadlock_kernel(int *out) {
  if (threadIdx.x == 0)
    out[0] = __shfl_sync(0x3u, 1, 1); // lane 1 never joins: it waits at the barrier
  else
    __syncthreads();
}
__global__ void too_much_static_smem_kernel(float *out) {
  IDOC_SHARED(float, big, [13 * 1024]); // 52 KiB > 48 KiB
  big[threadIdx.x] = 1.0f;
  out[threadIdx.x] = big[threadIdx.x];
}
__global__ void wmma_misaligned_kernel(float *c, const __nv_bfloat16 *a) {
  using namespace nvcuda;
  wmma::fragment<wmma::matrix_a, 16, 16, 16, __nv_bfloat16, wmma::row_major> fa;
  wmma::load_matrix_sync(fa, a + 1, 16);
  c[threadIdx.x] = (float)fa.x[0];
}

// ---- child cases (each ends the process)
// ----------------------------------------------------------------
static int child(const char *mode) {
  float *d = dalloc<float>(1000), *e = dalloc<float>(1000);
  if (!strcmp(mode, "host_read")) {
    volatile float x = d[3]; // host dereference of device memory
    (void)x;
  } else if (!strcmp(mode, "host_write")) {
    d[0] = 1.0f;
  } else if (!strcmp(mode, "oob_write")) {
    IDOC_LAUNCH(copy_off_by_one_kernel, 1, 128, 0, 0)(e, d, 1000);
  } else if (!strcmp(mode, "oob_read_far")) {
    IDOC_LAUNCH(read_far_kernel, 1, 32, 0, 0)(e, d, 1000);
  } else if (!strcmp(mode, "use_after_free")) {
    cudaFree(d);
    IDOC_LAUNCH(copy_kernel, 1, 32, 0, 0)(e, d + 0, 0); // n = 0: the argument check catches it
  } else if (!strcmp(mode, "use_after_free_read")) {
    float *f = d;
    cudaFree(d);
    IDOC_LAUNCH(read_far_kernel, 1, 32, 0, 0)(e, e, -4096); // valid launch
    volatile float x = f[0];
    (void)x;
  } else if (!strcmp(mode, "host_pointer_arg")) {
    static float host[16];
    IDOC_LAUNCH(copy_kernel, 1, 32, 0, 0)(d, host, 16);
  } else if (!strcmp(mode, "divergent_sync")) {
    IDOC_LAUNCH(divergent_sync_kernel, 1, 64, 0, 0)(d);
  } else if (!strcmp(mode, "mask_mismatch")) {
    IDOC_LAUNCH(mask_mismatch_kernel, 1, 32, 0, 0)((int *)d);
  } else if (!strcmp(mode, "deadlock")) {
    IDOC_LAUNCH(deadlock_kernel, 1, 32, 0, 0)((int *)d);
  } else if (!strcmp(mode, "static_smem")) {
    IDOC_LAUNCH(too_much_static_smem_kernel, 1, 32, 0, 0)(d);
  } else if (!strcmp(mode, "wmma_misaligned")) {
    IDOC_LAUNCH(wmma_misaligned_kernel, 1, 32, 0, 0)(d, (const __nv_bfloat16 *)e);
  } else if (!strcmp(mode, "wmma_half_warp")) {
    IDOC_LAUNCH(wmma_kernel, 1, 16, 0, 0)(d, (const __nv_bfloat16 *)e, (const __nv_bfloat16 *)e);
  } else if (!strcmp(mode, "ucontext")) { // the fallback fiber backend runs the barrier test
    float *o = dalloc<float>(256 * 3);
    IDOC_LAUNCH(neighbour_kernel<true>, 3, 256, 0, 0)(o);
    std::vector<float> h = down(o, 256 * 3);
    for (int b = 0; b < 3; b++)
      for (int i = 0; i < 256; i++)
        if (h[b * 256 + i] != (float)((i + 1) % 256 + 1000 * b)) return 3;
    fprintf(stderr, "fibers: %s\n", idoc_sim_fiber_backend());
    return 0;
  } else {
    fprintf(stderr, "unknown case %s\n", mode);
    return 2;
  }
  fprintf(stderr, "case %s did not fail\n", mode);
  return 0;
}

// ---- in-process checks
// ---------------------------------------------------------------------------------
static void test_barrier_and_order() {
  const int nb = 4, nt = 256;
  float *o = dalloc<float>(nb * nt);
  std::vector<float> want(nb * nt);
  for (int b = 0; b < nb; b++)
    for (int i = 0; i < nt; i++)
      want[b * nt + i] = (float)((i + 1) % nt + 1000 * b);
  uint64_t seeds[3] = {0, 1, 2};
  int broken_wrong = 0;
  for (uint64_t s : seeds) {
    idoc_sim_set_seed(s);
    IDOC_LAUNCH(neighbour_kernel<true>, nb, nt, 0, 0)(o);
    T_CHECK(down(o, nb * nt) == want, "barrier kernel wrong under seed %llu",
            (unsigned long long)s);
    IDOC_LAUNCH(neighbour_kernel<false>, nb, nt, 0, 0)(o);
    std::vector<float> got = down(o, nb * nt);
    if (s != 0 && got != want) broken_wrong++;
  }
  // Without the barrier, shuffled orders read neighbours that have not written yet (poison).
  T_CHECK(broken_wrong == 2, "a missing __syncthreads went unnoticed under shuffled orders");
  printf("ok   missing __syncthreads caught under shuffled thread orders\n");
  idoc_sim_set_seed(1);
  cudaFree(o);
}

static void test_shuffles() {
  int *o = dalloc<int>(64 * 6);
  for (int width : {32, 16, 8}) {
    IDOC_LAUNCH(shuffle_kernel, 1, 64, 0, 0)(o, width);
    std::vector<int> h = down(o, 64 * 6);
    for (int w = 0; w < 2; w++) {
      const int *r = h.data() + w * 192;
      for (int lane = 0; lane < 32; lane++) {
        int sub = lane & ~(width - 1);
        int idx = sub + ((lane + 3) % 32) % width;
        int upl = lane - 3 >= sub ? lane - 3 : lane;
        int dnl = lane + 3 < sub + width ? lane + 3 : lane;
        int xl = (lane ^ 5) < sub + width ? lane ^ 5 : lane;
        T_CHECK(r[lane] == idx * 10, "shfl width %d lane %d: %d", width, lane, r[lane]);
        T_CHECK(r[32 + lane] == upl * 10, "shfl_up width %d lane %d: %d", width, lane,
                r[32 + lane]);
        T_CHECK(r[64 + lane] == dnl * 10, "shfl_down width %d lane %d: %d", width, lane,
                r[64 + lane]);
        T_CHECK(r[96 + lane] == xl * 10, "shfl_xor width %d lane %d: %d", width, lane,
                r[96 + lane]);
        T_CHECK((unsigned)r[128 + lane] == 0x49249249u, "ballot lane %d: %08x", lane,
                r[128 + lane]);
        T_CHECK(r[160 + lane] == 2, "any/all lane %d: %d", lane, r[160 + lane]);
      }
    }
  }
  float *f = dalloc<float>(16);
  IDOC_LAUNCH(partial_mask_kernel, 1, 32, 0, 0)(f);
  std::vector<float> h = down(f, 16);
  T_CHECK(h[0] == 1.0f && h[15] == 0.0f, "partial-mask shuffle: %g %g", h[0], h[15]);
  T_CHECK(isnan(h[3]), "a shuffle from a lane outside the mask must be poison, got %g", h[3]);
  IDOC_LAUNCH(exited_lanes_kernel, 1, 32, 0, 0)((int *)f);
  std::vector<int> hi = down((int *)f, 16);
  T_CHECK((unsigned)hi[0] == 0xffffu, "ballot with exited lanes: %08x", hi[0]);
  IDOC_LAUNCH(sync_count_kernel, 1, 96, 0, 0)((int *)f);
  hi = down((int *)f, 3);
  T_CHECK(hi[0] == 24 && hi[1] == 1 && hi[2] == 1, "__syncthreads_count/and/or: %d %d %d", hi[0],
          hi[1], hi[2]);
  cudaFree(o);
  cudaFree(f);
  printf("ok   shuffles, votes, masks, exited lanes, counting barriers\n");
}

static void test_launch_limits_and_smem() {
  float *o = dalloc<float>(4096);
  (void)cudaGetLastError();
  IDOC_LAUNCH(copy_kernel, 1, 1025, 0, 0)(o, o, 0);
  T_CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "1025 threads must be refused");
  IDOC_LAUNCH(copy_kernel, dim3(1, 70000), 32, 0, 0)(o, o, 0);
  T_CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "grid.y 70000 must be refused");
  IDOC_LAUNCH(copy_kernel, 1, dim3(1, 1, 65), 0, 0)(o, o, 0);
  T_CHECK(cudaGetLastError() == cudaErrorInvalidConfiguration, "block.z 65 must be refused");
  int n = 20000; // 80 KB of dynamic shared memory
  IDOC_LAUNCH(dyn_smem_kernel, 1, 128, n * 4, 0)(o, n);
  T_CHECK(cudaGetLastError() == cudaErrorInvalidValue, "80 KB dynamic smem needs the opt-in");
  T_CHECK(cudaFuncSetAttribute(dyn_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               n * 4) == cudaSuccess,
          "opt-in");
  T_CHECK(cudaFuncSetAttribute(dyn_smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                               240 * 1024) == cudaErrorInvalidValue,
          "240 KB exceeds sm_90");
  (void)cudaGetLastError();
  IDOC_LAUNCH(dyn_smem_kernel, 1, 128, n * 4, 0)(o, n);
  T_CHECK(cudaGetLastError() == cudaSuccess, "opted-in launch");
  T_CHECK(down(o, 1)[0] == (float)n, "dynamic shared memory sum: %g", down(o, 1)[0]);
  int *c = dalloc<int>(1);
  T_CHECK(cudaMemset(c, 0, 4) == cudaSuccess, "memset");
  IDOC_LAUNCH(atomic_kernel, 37, 96, 0, 0)(c);
  T_CHECK(down(c, 1)[0] == 37 * 96, "atomicAdd: %d", down(c, 1)[0]);
  cudaFree(o);
  cudaFree(c);
  printf("ok   launch limits, dynamic shared memory opt-in, atomics\n");
}

static void test_memory_api() {
  float *d = dalloc<float>(100);
  std::vector<float> h(200, 1.0f);
  T_CHECK(cudaMemcpy(d, h.data(), 400, cudaMemcpyHostToDevice) == cudaSuccess, "in-bounds copy");
  T_CHECK(cudaMemcpy(d, h.data(), 404, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a copy past the allocation must fail");
  T_CHECK(cudaMemcpy(h.data(), d, 400, cudaMemcpyHostToDevice) == cudaErrorInvalidValue,
          "a copy with the wrong kind must fail");
  T_CHECK(cudaMemcpy(h.data(), d, 400, cudaMemcpyDefault) == cudaSuccess, "cudaMemcpyDefault");
  T_CHECK(cudaMemset(d + 50, 0, 204) == cudaErrorInvalidValue, "memset past the end");
  T_CHECK(cudaFree(h.data()) == cudaErrorInvalidValue, "cudaFree of a host pointer");
  size_t fr = 0, tot = 0;
  T_CHECK(cudaMemGetInfo(&fr, &tot) == cudaSuccess && tot > fr, "cudaMemGetInfo");
  T_CHECK(cudaFree(d) == cudaSuccess && cudaFree(d) == cudaErrorInvalidValue, "double free");
  (void)cudaGetLastError();
  // An off-by-one read inside the allocation's 256-byte rounding sees poison.
  float *s = dalloc<float>(10), *o = dalloc<float>(11);
  up(s, std::vector<float>(10, 2.0f));
  IDOC_LAUNCH(copy_kernel, 1, 32, 0, 0)(o, s, 11);
  T_CHECK(isnan(down(o, 11)[10]), "the element past the end must read as poison");
  cudaFree(s);
  cudaFree(o);
  printf("ok   copies and memsets are bounds- and kind-checked; fresh memory is poison\n");
}

static void test_wmma() {
  std::vector<__nv_bfloat16> a(256), b(256);
  std::vector<float> want(256);
  for (int i = 0; i < 256; i++) {
    a[i] = __float2bfloat16_rn((float)((i * 7) % 13) / 8.0f - 0.7f);
    b[i] = __float2bfloat16_rn((float)((i * 5) % 11) / 4.0f - 1.1f);
  }
  for (int m = 0; m < 16; m++) // a row-major, b col-major: B(k, n) = b[n * 16 + k]
    for (int n = 0; n < 16; n++) {
      double s = 0.5;
      for (int k = 0; k < 16; k++)
        s += (double)__bfloat162float(a[m * 16 + k]) * __bfloat162float(b[n * 16 + k]);
      want[m * 16 + n] = (float)s;
    }
  __nv_bfloat16 *da = dalloc<__nv_bfloat16>(256), *db = dalloc<__nv_bfloat16>(256);
  float *dc = dalloc<float>(256);
  up(da, a);
  up(db, b);
  IDOC_LAUNCH(wmma_kernel, 1, 32, 0, 0)(dc, da, db);
  std::vector<float> got = down(dc, 256);
  double worst = 0;
  for (int i = 0; i < 256; i++)
    worst = fmax(worst, fabs(got[i] - want[i]));
  T_CHECK(worst < 1e-5, "wmma bf16 16x16x16: max error %g", worst);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
  printf("ok   wmma bf16 m16n16k16 (max error %.2g)\n", worst);
}

static void test_conversions() {
  // The simulator's bf16/f16 conversions against the project's own C conversions (RNE).
  std::vector<float> v = {0.0f,     -0.0f,    1.0f,     -1.5f,    3.14159265f, 65504.0f,
                          65519.0f, 65520.0f, 1e-8f,    5.96e-8f, 2.98e-8f,    6.1e-5f,
                          1e30f,    -1e-30f,  INFINITY, -INFINITY};
  uint32_t x = 12345;
  for (int i = 0; i < 200000; i++) {
    x = x * 1664525u + 1013904223u;
    float f;
    memcpy(&f, &x, 4);
    if (!isnan(f)) v.push_back(f);
  }
  int bad_bf = 0, bad_h = 0;
  for (float f : v) {
    if (__bfloat16_as_ushort(__float2bfloat16_rn(f)) != idoc_f32_to_bf16(f)) bad_bf++;
    if (__half_as_ushort(__float2half_rn(f)) != idoc_f32_to_f16(f)) bad_h++;
    if (__bfloat162float(__float2bfloat16_rn(f)) !=
        idoc_bf16_to_f32(__bfloat16_as_ushort(__float2bfloat16_rn(f))))
      bad_bf++;
  }
  T_CHECK(bad_bf == 0 && bad_h == 0, "conversions disagree with the RNE reference: bf16 %d, f16 %d",
          bad_bf, bad_h);
  T_CHECK(__bfloat16_as_ushort(__float2bfloat16_rn(NAN)) == 0x7fff &&
              __half_as_ushort(__float2half_rn(NAN)) == 0x7fff,
          "NaN converts to the canonical 0x7fff");
  T_CHECK(__bfloat16_as_ushort(__float2bfloat16_rz(1.00390625f * 1.0001f)) == 0x3f80,
          "_rz truncates");
  printf("ok   bf16/f16 conversions on %zu values\n", v.size());
}

// Row-major C[M,N] = A[M,K] B[K,N] through column-major cuBLAS: C^T = B^T A^T.
static void test_cublas() {
  const int M = 7, N = 5, K = 3;
  std::vector<float> a(M * K), b(K * N), want(M * N, 0.0f);
  for (int i = 0; i < M * K; i++)
    a[i] = (float)(i % 5) - 2.0f;
  for (int i = 0; i < K * N; i++)
    b[i] = (float)(i % 3) + 0.5f;
  for (int m = 0; m < M; m++)
    for (int n = 0; n < N; n++)
      for (int k = 0; k < K; k++)
        want[m * N + n] += a[m * K + k] * b[k * N + n];
  float *da = dalloc<float>(M * K), *db = dalloc<float>(K * N), *dc = dalloc<float>(M * N);
  up(da, a);
  up(db, b);
  cublasHandle_t h;
  cublasCreate(&h);
  float one = 1.0f, zero = 0.0f;
  T_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one, db, CUDA_R_32F, N, da,
                       CUDA_R_32F, K, &zero, dc, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS,
          "gemm");
  T_CHECK(down(dc, M * N) == want, "row-major GEMM through cuBLAS");
  // The same call with a transpose flag flipped (a typical bug) gives different numbers: the
  // shim does not mirror our mistakes. Here B is read as [N, K] column-major.
  T_CHECK(cublasGemmEx(h, CUBLAS_OP_T, CUBLAS_OP_N, N, M, K, &one, db, CUDA_R_32F, K, da,
                       CUDA_R_32F, K, &zero, dc, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_SUCCESS,
          "gemm (wrong transpose)");
  T_CHECK(down(dc, M * N) != want, "a wrong transpose must change the result");
  T_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one, db, CUDA_R_32F, N - 1, da,
                       CUDA_R_32F, K, &zero, dc, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_INVALID_VALUE,
          "lda < m must be CUBLAS_STATUS_INVALID_VALUE");
  T_CHECK(cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one, db, CUDA_R_32F, N, da,
                       CUDA_R_16BF, K, &zero, dc, CUDA_R_32F, N, CUBLAS_COMPUTE_32F,
                       CUBLAS_GEMM_DEFAULT) == CUBLAS_STATUS_NOT_SUPPORTED,
          "mixed f32/bf16 inputs are not a cublasGemmEx combination");
  // TF32 compute rounds the inputs: 1 + 2^-12 is not representable.
  float x = 1.0f + 1.0f / 4096.0f;
  up(da, std::vector<float>(M * K, x));
  up(db, std::vector<float>(K * N, 1.0f));
  cublasGemmEx(h, CUBLAS_OP_N, CUBLAS_OP_N, N, M, K, &one, db, CUDA_R_32F, N, da, CUDA_R_32F, K,
               &zero, dc, CUDA_R_32F, N, CUBLAS_COMPUTE_32F_FAST_TF32, CUBLAS_GEMM_DEFAULT);
  T_CHECK(down(dc, 1)[0] == 3.0f, "TF32 rounds 1 + 2^-12 to 1: %.9g", down(dc, 1)[0]);
  cublasDestroy(h);
  cudaFree(da);
  cudaFree(db);
  cudaFree(dc);
  printf("ok   cuBLAS shim: column-major semantics, a flipped transpose is caught, validation\n");
}

int main(int argc, char **argv) {
  g_self = argv[0];
  if (argc > 1) return child(argv[1]);
  printf("fiber backend: %s, seed %llu\n", idoc_sim_fiber_backend(),
         (unsigned long long)idoc_sim_get_seed());
  test_barrier_and_order();
  test_shuffles();
  test_launch_limits_and_smem();
  test_memory_api();
  test_wmma();
  test_conversions();
  test_cublas();

  expect_death("host_read", "host code accessed device memory");
  expect_death("host_write", "host code accessed device memory");
  expect_death("oob_write", "wrote past the end of the 4000-byte allocation");
  expect_death("oob_read_far", "out-of-bounds access");
  expect_death("use_after_free", "is not device memory");
  expect_death("use_after_free_read", "already freed");
  expect_death("host_pointer_arg", "argument 1");
  expect_death("divergent_sync", "a barrier must be reached by all threads");
  expect_death("mask_mismatch", "different masks");
  expect_death("deadlock", "deadlock");
  expect_death("static_smem", "static shared memory");
  expect_death("wmma_misaligned", "not 256-bit aligned");
  expect_death("wmma_half_warp", "need a full warp");
  child_result r = run_child("ucontext", "IDOC_SIM_FIBERS=ucontext");
  T_CHECK(WIFEXITED(r.status) && WEXITSTATUS(r.status) == 0 &&
              r.err.find("fibers: ucontext") != std::string::npos,
          "the ucontext fiber backend: status 0x%x, %s", r.status, r.err.c_str());
  return t_summary("test_sim");
}
