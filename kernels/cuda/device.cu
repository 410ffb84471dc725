// The CUDA device: memory, copies, and the process-wide stream, cuBLAS and cuDNN handles and
// scratch buffer every kernel uses (created lazily, once). idoc_cuda_available() never aborts:
// without a driver or a device it reports false, so callers and tests can fall back or skip.
#include <pthread.h>

#include "kernels/collective.h"
#include "kernels/cuda/common.cuh"
#include "kernels/cuda/timing.h"

extern "C" int idoc_cuda_device_count(void) {
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n);
  if (e != cudaSuccess) {
    (void)cudaGetLastError(); // "no driver" / "no device" is an answer here, not an error
    return 0;
  }
  return n;
}

extern "C" bool idoc_cuda_available(void) { return idoc_cuda_device_count() > 0; }

extern "C" bool idoc_cuda_simulated(void) {
#if IDOC_CUDA_SIM
  return true;
#else
  return false;
#endif
}

// ---- lazily created state ---------------------------------------------------------------------
static pthread_once_t g_once = PTHREAD_ONCE_INIT, g_blas_once = PTHREAD_ONCE_INIT;
static cudaStream_t g_stream;
static int g_sms;
static cublasHandle_t g_blas;
static void *g_blas_ws;
static void *g_scratch;
static size_t g_scratch_bytes;
static pthread_mutex_t g_scratch_mu = PTHREAD_MUTEX_INITIALIZER;
// cuBLAS workspace: NVIDIA recommends 32 MiB on Hopper; it also makes cuBLAS stop allocating.
#define IDOC_CUBLAS_WORKSPACE ((size_t)32 << 20)

// The device of this process: 0, or the one the communication layer chose for this rank
// (kernels/collective.h) before the first CUDA work.
static int g_device;
extern "C" void idoc_cuda_use_device(int index) { g_device = index; }

static void init_device(void) {
  IDOC_CHECK(idoc_cuda_available(), "CUDA: no usable GPU (no driver, or no device visible)");
  CUDA_CHECK(cudaSetDevice(g_device));
  CUDA_CHECK(cudaDeviceGetAttribute(&g_sms, cudaDevAttrMultiProcessorCount, g_device));
  // A blocking stream: ordered with anything on the legacy default stream too.
  CUDA_CHECK(cudaStreamCreateWithFlags(&g_stream, cudaStreamDefault));
}
static void ensure_device(void) { pthread_once(&g_once, init_device); }

static void init_cublas(void) {
  ensure_device();
  CUBLAS_CHECK(cublasCreate(&g_blas));
  CUBLAS_CHECK(cublasSetStream(g_blas, g_stream));
  CUDA_CHECK(cudaMalloc(&g_blas_ws, IDOC_CUBLAS_WORKSPACE));
  CUBLAS_CHECK(cublasSetWorkspace(g_blas, g_blas_ws, IDOC_CUBLAS_WORKSPACE));
  // Default math: fp32 GEMMs stay true fp32 (TF32 only with CUBLAS_COMPUTE_32F_FAST_TF32, which
  // we never ask for), so fp32 parity with the CPU reference is meaningful.
  CUBLAS_CHECK(cublasSetMathMode(g_blas, CUBLAS_DEFAULT_MATH));
}

cudaStream_t idoc_cu_stream(void) {
  ensure_device();
  return g_stream;
}
int idoc_cu_sm_count(void) {
  ensure_device();
  return g_sms;
}
cublasHandle_t idoc_cu_cublas(void) {
  pthread_once(&g_blas_once, init_cublas);
  return g_blas;
}

#if IDOC_HAVE_CUDNN
// cuDNN: one handle on the stream, created at the first convolution.
static pthread_once_t g_dnn_once = PTHREAD_ONCE_INIT;
static cudnnHandle_t g_dnn;
static void init_cudnn(void) {
  ensure_device();
  CUDNN_CHECK(cudnnCreate(&g_dnn));
  CUDNN_CHECK(cudnnSetStream(g_dnn, g_stream));
}
cudnnHandle_t idoc_cu_cudnn(void) {
  pthread_once(&g_dnn_once, init_cudnn);
  return g_dnn;
}
#endif

void *idoc_cu_scratch(size_t bytes) {
  ensure_device();
  pthread_mutex_lock(&g_scratch_mu);
  if (bytes > g_scratch_bytes) {
    size_t n = g_scratch_bytes ? g_scratch_bytes : ((size_t)1 << 20);
    while (n < bytes)
      n *= 2;
    // cudaFree waits for the device, so work still reading the old buffer has finished.
    if (g_scratch) CUDA_CHECK(cudaFree(g_scratch));
    CUDA_CHECK(cudaMalloc(&g_scratch, n));
    g_scratch_bytes = n;
  }
  void *p = g_scratch;
  pthread_mutex_unlock(&g_scratch_mu);
  return p;
}

// ---- memory -----------------------------------------------------------------------------------
extern "C" void *idoc_cuda_malloc(size_t n) {
  ensure_device();
  void *p = NULL;
  cudaError_t e = cudaMalloc(&p, n ? n : 1);
  if (e != cudaSuccess) {
    size_t free_b = 0, total_b = 0;
    (void)cudaMemGetInfo(&free_b, &total_b);
    idoc_die("CUDA: cannot allocate %zu bytes (%s; %zu of %zu bytes free)", n,
             cudaGetErrorString(e), free_b, total_b);
  }
  return p;
}

extern "C" void idoc_cuda_free(void *p) {
  if (p) CUDA_CHECK(cudaFree(p));
}

// All copies go through the one stream; copies touching host memory wait for it, so the host
// buffer can be reused (or read) as soon as this returns.
extern "C" void idoc_cuda_memcpy(void *dst, const void *src, size_t n, int kind) {
  static const cudaMemcpyKind kinds[3] = {cudaMemcpyHostToDevice, cudaMemcpyDeviceToHost,
                                          cudaMemcpyDeviceToDevice};
  IDOC_CHECK(kind >= 0 && kind <= 2, "idoc_cuda_memcpy: bad kind %d", kind);
  if (n == 0) return;
  cudaStream_t s = idoc_cu_stream();
  CUDA_CHECK(cudaMemcpyAsync(dst, src, n, kinds[kind], s));
  if (kind != 2) CUDA_CHECK(cudaStreamSynchronize(s));
}

extern "C" void idoc_cuda_memset0(void *p, size_t n) {
  if (n) CUDA_CHECK(cudaMemsetAsync(p, 0, n, idoc_cu_stream()));
}

extern "C" void idoc_cuda_sync(void) {
  if (idoc_cuda_available()) CUDA_CHECK(cudaStreamSynchronize(idoc_cu_stream()));
}

extern "C" size_t idoc_cuda_device_memory(void) {
  cudaDeviceProp prop;
  if (!idoc_cuda_available() || cudaGetDeviceProperties(&prop, g_device) != cudaSuccess) return 0;
  return prop.totalGlobalMem;
}

extern "C" const char *idoc_cuda_device_name(void) {
  static char name[300];
  cudaDeviceProp prop;
  // The device this process uses (idoc_cuda_use_device), not always 0.
  if (!idoc_cuda_available() || cudaGetDeviceProperties(&prop, g_device) != cudaSuccess)
    return "none";
  snprintf(name, sizeof name, "%s (sm_%d%d, %d SMs, %.0f GiB)", prop.name, prop.major, prop.minor,
           prop.multiProcessorCount, (double)prop.totalGlobalMem / (1 << 30));
  return name;
}

// ---- timing -----------------------------------------------------------------------------------
extern "C" float idoc_cuda_time_ms(void (*fn)(void *), void *ud) {
  static cudaEvent_t ev[2];
  cudaStream_t s = idoc_cu_stream();
  if (!ev[0]) {
    CUDA_CHECK(cudaEventCreate(&ev[0]));
    CUDA_CHECK(cudaEventCreate(&ev[1]));
  }
  CUDA_CHECK(cudaEventRecord(ev[0], s));
  fn(ud);
  CUDA_CHECK(cudaEventRecord(ev[1], s));
  CUDA_CHECK(cudaEventSynchronize(ev[1]));
  float ms = 0.0f;
  CUDA_CHECK(cudaEventElapsedTime(&ms, ev[0], ev[1]));
  return ms;
}
