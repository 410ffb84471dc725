// idoc-requires: nccl
// NCCL collectives for the communication layer (kernels/collective.h): one communicator per
// process, a communication stream ordered after the compute stream by events, and a host wait
// that polls the communicator's asynchronous error state.
#include <nccl.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "kernels/collective.h"
#include "kernels/cuda/common.cuh"

static ncclComm_t g_comm;
static cudaStream_t g_comm_stream;
static cudaEvent_t g_compute_done, g_comm_done;
static char g_err[512];

static int fail(const char *fmt, const char *a, const char *b) {
  snprintf(g_err, sizeof g_err, fmt, a, b);
  return -1;
}
#define NCCL_TRY(call)                                                                             \
  do {                                                                                             \
    ncclResult_t r_ = (call);                                                                      \
    if (r_ != ncclSuccess) return fail("%s: %s", #call, ncclGetErrorString(r_));                   \
  } while (0)
#define CUDA_TRY(call)                                                                             \
  do {                                                                                             \
    cudaError_t e_ = (call);                                                                       \
    if (e_ != cudaSuccess) return fail("%s: %s", #call, cudaGetErrorString(e_));                   \
  } while (0)

extern "C" const char *idoc_nccl_error(void) { return g_err[0] ? g_err : "no error"; }
extern "C" bool idoc_nccl_available(void) { return idoc_cuda_available(); }
extern "C" bool idoc_nccl_ready(void) { return g_comm != NULL; }

extern "C" int idoc_nccl_unique_id(unsigned char id[IDOC_NCCL_ID_BYTES]) {
  static_assert(sizeof(ncclUniqueId) == IDOC_NCCL_ID_BYTES, "NCCL unique id size");
  ncclUniqueId u;
  NCCL_TRY(ncclGetUniqueId(&u));
  memcpy(id, &u, sizeof u);
  return 0;
}

extern "C" int idoc_nccl_init(int world, int rank, const unsigned char id[IDOC_NCCL_ID_BYTES]) {
  if (g_comm) return 0;
  ncclUniqueId u;
  memcpy(&u, id, sizeof u);
  cudaStream_t compute = idoc_cu_stream(); // selects the device first
  (void)compute;
  NCCL_TRY(ncclCommInitRank(&g_comm, world, u, rank));
  CUDA_TRY(cudaStreamCreateWithFlags(&g_comm_stream, cudaStreamNonBlocking));
  CUDA_TRY(cudaEventCreateWithFlags(&g_compute_done, cudaEventDisableTiming));
  CUDA_TRY(cudaEventCreateWithFlags(&g_comm_done, cudaEventDisableTiming));
  return 0;
}

extern "C" void idoc_nccl_finalize(void) {
  if (!g_comm) return;
  cudaStreamSynchronize(g_comm_stream);
  ncclCommDestroy(g_comm);
  cudaEventDestroy(g_compute_done);
  cudaEventDestroy(g_comm_done);
  cudaStreamDestroy(g_comm_stream);
  g_comm = NULL;
}

extern "C" void idoc_nccl_abort(void) {
  if (g_comm) ncclCommAbort(g_comm);
  g_comm = NULL;
}

static ncclDataType_t nccl_type(idoc_nccl_dtype t) {
  switch (t) {
  case IDOC_NCCL_BF16: return ncclBfloat16;
  case IDOC_NCCL_F16: return ncclFloat16;
  case IDOC_NCCL_I32: return ncclInt32;
  case IDOC_NCCL_I64: return ncclInt64;
  case IDOC_NCCL_F64: return ncclFloat64;
  default: return ncclFloat32;
  }
}
static ncclRedOp_t nccl_op(idoc_nccl_op op) {
  switch (op) {
  case IDOC_NCCL_AVG: return ncclAvg;
  case IDOC_NCCL_MAX: return ncclMax;
  case IDOC_NCCL_MIN: return ncclMin;
  default: return ncclSum;
  }
}

// The communication stream waits for what the compute stream queued so far.
static int after_compute(void) {
  if (!g_comm) return fail("%s%s", "NCCL is not initialized", "");
  CUDA_TRY(cudaEventRecord(g_compute_done, idoc_cu_stream()));
  CUDA_TRY(cudaStreamWaitEvent(g_comm_stream, g_compute_done, 0));
  return 0;
}

extern "C" int idoc_nccl_all_reduce(const void *send, void *recv, size_t count, idoc_nccl_dtype t,
                                    idoc_nccl_op op) {
  if (after_compute()) return -1;
  NCCL_TRY(ncclAllReduce(send, recv, count, nccl_type(t), nccl_op(op), g_comm, g_comm_stream));
  return 0;
}

extern "C" int idoc_nccl_reduce_scatter(const void *send, void *recv, size_t recvcount,
                                        idoc_nccl_dtype t, idoc_nccl_op op) {
  if (after_compute()) return -1;
  NCCL_TRY(
      ncclReduceScatter(send, recv, recvcount, nccl_type(t), nccl_op(op), g_comm, g_comm_stream));
  return 0;
}

extern "C" int idoc_nccl_all_gather(const void *send, void *recv, size_t sendcount,
                                    idoc_nccl_dtype t) {
  if (after_compute()) return -1;
  NCCL_TRY(ncclAllGather(send, recv, sendcount, nccl_type(t), g_comm, g_comm_stream));
  return 0;
}

extern "C" int idoc_nccl_broadcast(const void *send, void *recv, size_t count, idoc_nccl_dtype t,
                                   int root) {
  if (after_compute()) return -1;
  NCCL_TRY(ncclBroadcast(send, recv, count, nccl_type(t), root, g_comm, g_comm_stream));
  return 0;
}

extern "C" int idoc_nccl_stream_wait(void) {
  if (!g_comm) return 0;
  CUDA_TRY(cudaEventRecord(g_comm_done, g_comm_stream));
  CUDA_TRY(cudaStreamWaitEvent(idoc_cu_stream(), g_comm_done, 0));
  return 0;
}

extern "C" int idoc_nccl_sync(double timeout_s) {
  if (!g_comm) return 0;
  CUDA_TRY(cudaEventRecord(g_comm_done, g_comm_stream));
  struct timespec t0, now, nap = {0, 50000};
  clock_gettime(CLOCK_MONOTONIC, &t0);
  for (;;) {
    cudaError_t e = cudaEventQuery(g_comm_done);
    if (e == cudaSuccess) break;
    if (e != cudaErrorNotReady) return fail("cudaEventQuery: %s%s", cudaGetErrorString(e), "");
    ncclResult_t ar = ncclSuccess;
    NCCL_TRY(ncclCommGetAsyncError(g_comm, &ar));
    if (ar != ncclSuccess && ar != ncclInProgress)
      return fail("NCCL asynchronous error: %s%s", ncclGetErrorString(ar), "");
    clock_gettime(CLOCK_MONOTONIC, &now);
    double el = (double)(now.tv_sec - t0.tv_sec) + 1e-9 * (double)(now.tv_nsec - t0.tv_nsec);
    if (timeout_s > 0 && el > timeout_s) {
      char s[64];
      snprintf(s, sizeof s, "%.0f", el);
      return fail("NCCL collective did not complete in %s s%s", s, "");
    }
    nanosleep(&nap, NULL);
  }
  return 0;
}
