// The CUDA runtime API of the host SIMT simulator: devices (IDOC_SIM_DEVICES of them, default
// 1, each with sm_90's limits), memory, copies and memsets checked against the allocations and
// the copy kind, streams and events (everything completes in issue order, at once), sticky-free
// error reporting through cudaGetLastError as the runtime documents it.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <map>
#include <mutex>
#include <set>

#include "kernels/cuda/sim/sim.h"

struct CUstream_st {
  unsigned flags;
};
struct CUevent_st {
  unsigned flags;
  bool recorded;
  double t;
};

namespace idoc_sim {

static thread_local cudaError_t t_last = cudaSuccess;
static thread_local int t_device = 0;
static std::mutex g_mu;
static std::set<cudaStream_t> g_streams;
static std::set<cudaEvent_t> g_events;
static std::map<const void *, int> g_func_smem;

static const int k_sms = 132;                   // H100 SXM / H200
static const size_t k_smem_optin = 227 * 1024;  // sharedMemPerBlockOptin on sm_90
static const size_t k_smem_default = 48 * 1024; // without cudaFuncSetAttribute
static const size_t k_smem_per_sm = 228 * 1024;

void set_last_error(cudaError_t e) {
  if (e != cudaSuccess) t_last = e;
}
static cudaError_t ret(cudaError_t e) {
  set_last_error(e);
  return e;
}

static int device_count() {
  static int n = -1;
  if (n < 0) {
    const char *e = getenv("IDOC_SIM_DEVICES");
    n = e ? atoi(e) : 1;
    if (n < 0) n = 0;
    if (n > 16) n = 16;
  }
  return n;
}

size_t func_dynamic_smem_limit(const void *fn) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_func_smem.find(fn);
  return it == g_func_smem.end() ? k_smem_default : (size_t)it->second;
}

bool stream_valid(cudaStream_t s) {
  // 0 is the legacy default stream; 0x1 / 0x2 are cudaStreamLegacy / cudaStreamPerThread.
  if ((uintptr_t)s <= 2) return true;
  std::lock_guard<std::mutex> lk(g_mu);
  return g_streams.count(s) > 0;
}

static double now_s() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char *kind_name(cudaMemcpyKind k) {
  static const char *n[] = {"cudaMemcpyHostToHost", "cudaMemcpyHostToDevice",
                            "cudaMemcpyDeviceToHost", "cudaMemcpyDeviceToDevice",
                            "cudaMemcpyDefault"};
  return (unsigned)k <= 4 ? n[k] : "an invalid cudaMemcpyKind";
}

static cudaError_t check_range(const char *api, const char *which, const void *p, size_t n) {
  if (heap_contains(p, n)) return cudaSuccess;
  note("%s: %s range [%p, +%zu) is not inside one live cudaMalloc allocation", api, which, p, n);
  return cudaErrorInvalidValue;
}

static cudaError_t copy(void *dst, const void *src, size_t n, cudaMemcpyKind kind,
                        const char *api) {
  if (n == 0) return cudaSuccess;
  bool dd = heap_is_device(dst), sd = heap_is_device(src);
  bool want_dd, want_sd;
  switch (kind) {
  case cudaMemcpyHostToHost: want_dd = false, want_sd = false; break;
  case cudaMemcpyHostToDevice: want_dd = true, want_sd = false; break;
  case cudaMemcpyDeviceToHost: want_dd = false, want_sd = true; break;
  case cudaMemcpyDeviceToDevice: want_dd = true, want_sd = true; break;
  case cudaMemcpyDefault: want_dd = dd, want_sd = sd; break;
  default:
    note("%s: %d is not a cudaMemcpyKind", api, (int)kind);
    return cudaErrorInvalidMemcpyDirection;
  }
  if (dd != want_dd || sd != want_sd) {
    note("%s with %s: dst %p is %s memory and src %p is %s memory", api, kind_name(kind), dst,
         dd ? "device" : "host", src, sd ? "device" : "host");
    return cudaErrorInvalidValue;
  }
  if (dd && check_range(api, "dst", dst, n) != cudaSuccess) return cudaErrorInvalidValue;
  if (sd && check_range(api, "src", src, n) != cudaSuccess) return cudaErrorInvalidValue;
  device_scope scope;
  if (dd) scope.open(dst, n);
  if (sd) scope.open(src, n);
  memmove(dst, src, n);
  return cudaSuccess;
}

static cudaError_t set(void *p, int v, size_t n, const char *api) {
  if (n == 0) return cudaSuccess;
  if (check_range(api, "destination", p, n) != cudaSuccess) return cudaErrorInvalidValue;
  device_scope scope;
  memset(p, v, n);
  return cudaSuccess;
}

} // namespace idoc_sim

using namespace idoc_sim;

extern "C" {

cudaError_t cudaGetDeviceCount(int *count) {
  if (!count) return ret(cudaErrorInvalidValue);
  *count = device_count();
  return *count ? cudaSuccess : ret(cudaErrorNoDevice);
}
cudaError_t cudaSetDevice(int device) {
  if (device < 0 || device >= device_count()) return ret(cudaErrorInvalidDevice);
  t_device = device;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int *device) {
  if (!device) return ret(cudaErrorInvalidValue);
  *device = t_device;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int *value, cudaDeviceAttr attr, int device) {
  if (!value) return ret(cudaErrorInvalidValue);
  if (device < 0 || device >= device_count()) return ret(cudaErrorInvalidDevice);
  switch (attr) {
  case cudaDevAttrMaxThreadsPerBlock: *value = 1024; break;
  case cudaDevAttrMaxSharedMemoryPerBlock: *value = (int)k_smem_default; break;
  case cudaDevAttrWarpSize: *value = 32; break;
  case cudaDevAttrMultiProcessorCount: *value = k_sms; break;
  case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
  case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
  case cudaDevAttrMaxSharedMemoryPerBlockOptin: *value = (int)k_smem_optin; break;
  default: return ret(cudaErrorInvalidValue);
  }
  return cudaSuccess;
}

cudaError_t cudaGetDeviceProperties(cudaDeviceProp *p, int device) {
  if (!p) return ret(cudaErrorInvalidValue);
  if (device < 0 || device >= device_count()) return ret(cudaErrorInvalidDevice);
  memset(p, 0, sizeof *p);
  snprintf(p->name, sizeof p->name, "idoc host SIMT simulator (sm_90 limits)");
  p->totalGlobalMem = heap_capacity();
  p->sharedMemPerBlock = k_smem_default;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024, p->maxThreadsDim[1] = 1024, p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647, p->maxGridSize[1] = 65535, p->maxGridSize[2] = 65535;
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = k_sms;
  p->sharedMemPerBlockOptin = k_smem_optin;
  p->sharedMemPerMultiprocessor = k_smem_per_sm;
  p->l2CacheSize = 50 << 20;
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaGetLastError(void) {
  cudaError_t e = t_last;
  t_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError(void) { return t_last; }

const char *cudaGetErrorName(cudaError_t e) {
  switch (e) {
  case cudaSuccess: return "cudaSuccess";
  case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
  case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
  case cudaErrorInitializationError: return "cudaErrorInitializationError";
  case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
  case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
  case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
  case cudaErrorNoDevice: return "cudaErrorNoDevice";
  case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
  case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
  case cudaErrorNotReady: return "cudaErrorNotReady";
  case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
  case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
  case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
  }
  return "cudaErrorUnknown";
}
const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
  case cudaSuccess: return "no error";
  case cudaErrorInvalidValue: return "invalid argument";
  case cudaErrorMemoryAllocation: return "out of memory";
  case cudaErrorInitializationError: return "initialization error";
  case cudaErrorInvalidConfiguration: return "invalid configuration argument";
  case cudaErrorInvalidDevicePointer: return "invalid device pointer";
  case cudaErrorInvalidMemcpyDirection: return "invalid copy direction for memcpy";
  case cudaErrorNoDevice: return "no CUDA-capable device is detected";
  case cudaErrorInvalidDevice: return "invalid device ordinal";
  case cudaErrorInvalidResourceHandle: return "invalid resource handle";
  case cudaErrorNotReady: return "device not ready";
  case cudaErrorIllegalAddress: return "an illegal memory access was encountered";
  case cudaErrorLaunchOutOfResources: return "too many resources requested for launch";
  case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}

cudaError_t cudaMalloc(void **ptr, size_t size) {
  if (!ptr) return ret(cudaErrorInvalidValue);
  install_fault_handler();
  return ret(heap_alloc(ptr, size));
}
cudaError_t cudaFree(void *ptr) { return ptr ? ret(heap_free(ptr)) : cudaSuccess; }

cudaError_t cudaMallocHost(void **ptr, size_t size) { return cudaHostAlloc(ptr, size, 0); }
cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned flags) {
  (void)flags;
  if (!ptr) return ret(cudaErrorInvalidValue);
  void *p = NULL;
  if (posix_memalign(&p, 4096, size ? size : 1) != 0) return ret(cudaErrorMemoryAllocation);
  pinned_register(p, size);
  *ptr = p;
  return cudaSuccess;
}
cudaError_t cudaFreeHost(void *ptr) {
  if (!ptr) return cudaSuccess;
  if (!pinned_unregister(ptr)) {
    note("cudaFreeHost(%p): not a pointer returned by cudaMallocHost/cudaHostAlloc", ptr);
    return ret(cudaErrorInvalidValue);
  }
  free(ptr);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
  if (!free_bytes || !total_bytes) return ret(cudaErrorInvalidValue);
  *total_bytes = heap_capacity();
  *free_bytes = *total_bytes - heap_used();
  return cudaSuccess;
}

cudaError_t cudaMemcpy(void *dst, const void *src, size_t count, cudaMemcpyKind kind) {
  return ret(copy(dst, src, count, kind, "cudaMemcpy"));
}
cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, cudaMemcpyKind kind,
                            cudaStream_t stream) {
  if (!stream_valid(stream)) return ret(cudaErrorInvalidResourceHandle);
  return ret(copy(dst, src, count, kind, "cudaMemcpyAsync"));
}
cudaError_t cudaMemset(void *ptr, int value, size_t count) {
  return ret(set(ptr, value, count, "cudaMemset"));
}
cudaError_t cudaMemsetAsync(void *ptr, int value, size_t count, cudaStream_t stream) {
  if (!stream_valid(stream)) return ret(cudaErrorInvalidResourceHandle);
  return ret(set(ptr, value, count, "cudaMemsetAsync"));
}

cudaError_t cudaStreamCreate(cudaStream_t *stream) {
  return cudaStreamCreateWithFlags(stream, cudaStreamDefault);
}
cudaError_t cudaStreamCreateWithFlags(cudaStream_t *stream, unsigned flags) {
  if (!stream || flags > cudaStreamNonBlocking) return ret(cudaErrorInvalidValue);
  cudaStream_t s = new CUstream_st{flags};
  std::lock_guard<std::mutex> lk(g_mu);
  g_streams.insert(s);
  *stream = s;
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t stream) {
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g_streams.erase(stream)) return ret(cudaErrorInvalidResourceHandle);
  delete stream;
  return cudaSuccess;
}
cudaError_t cudaStreamSynchronize(cudaStream_t stream) {
  return stream_valid(stream) ? cudaSuccess : ret(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaStreamQuery(cudaStream_t stream) { return cudaStreamSynchronize(stream); }
cudaError_t cudaStreamWaitEvent(cudaStream_t stream, cudaEvent_t event, unsigned flags) {
  (void)flags;
  if (!stream_valid(stream)) return ret(cudaErrorInvalidResourceHandle);
  std::lock_guard<std::mutex> lk(g_mu);
  return g_events.count(event) ? cudaSuccess : ret(cudaErrorInvalidResourceHandle);
}

cudaError_t cudaEventCreate(cudaEvent_t *event) {
  return cudaEventCreateWithFlags(event, cudaEventDefault);
}
cudaError_t cudaEventCreateWithFlags(cudaEvent_t *event, unsigned flags) {
  if (!event) return ret(cudaErrorInvalidValue);
  cudaEvent_t e = new CUevent_st{flags, false, 0.0};
  std::lock_guard<std::mutex> lk(g_mu);
  g_events.insert(e);
  *event = e;
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t event) {
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g_events.erase(event)) return ret(cudaErrorInvalidResourceHandle);
  delete event;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t event, cudaStream_t stream) {
  if (!stream_valid(stream)) return ret(cudaErrorInvalidResourceHandle);
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g_events.count(event)) return ret(cudaErrorInvalidResourceHandle);
  event->recorded = true;
  event->t = now_s();
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t event) {
  std::lock_guard<std::mutex> lk(g_mu);
  return g_events.count(event) ? cudaSuccess : ret(cudaErrorInvalidResourceHandle);
}
cudaError_t cudaEventQuery(cudaEvent_t event) { return cudaEventSynchronize(event); }
cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
  if (!ms) return ret(cudaErrorInvalidValue);
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g_events.count(start) || !g_events.count(end)) return ret(cudaErrorInvalidResourceHandle);
  if ((start->flags | end->flags) & cudaEventDisableTiming)
    return ret(cudaErrorInvalidResourceHandle);
  if (!start->recorded || !end->recorded) return ret(cudaErrorInvalidResourceHandle);
  *ms = (float)((end->t - start->t) * 1e3);
  return cudaSuccess;
}

cudaError_t cudaFuncSetAttribute(const void *func, cudaFuncAttribute attr, int value) {
  if (!func) return ret(cudaErrorInvalidValue);
  if (attr != cudaFuncAttributeMaxDynamicSharedMemorySize) return ret(cudaErrorInvalidValue);
  if (value < 0 || (size_t)value > k_smem_optin) {
    note("cudaFuncSetAttribute: %d bytes of dynamic shared memory exceed sm_90's %zu", value,
         k_smem_optin);
    return ret(cudaErrorInvalidValue);
  }
  std::lock_guard<std::mutex> lk(g_mu);
  g_func_smem[func] = value;
  return cudaSuccess;
}

} // extern "C"
