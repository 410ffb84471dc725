// NCCL collectives on device buffers, as C functions for the communication layer (nn/comm.h):
// kernels/cuda/collective.cu (builds with NCCL: the toolkit's libnccl, or the simulator's NCCL
// over MPI), kernels/collective_absent.c elsewhere (idoc_nccl_available() is false and every
// call fails with a message saying so).
//
// Streams: collectives run on a communication stream of their own. Each call first makes that
// stream wait for the work already queued on the compute stream (kernels/cuda: idoc_cu_stream),
// so it reads finished gradients, and returns at once; idoc_nccl_stream_wait makes the compute
// stream wait for the collectives (device side, the host does not block: gradient buckets are
// reduced while backward goes on, as llm.c does), idoc_nccl_sync waits on the host, polling
// ncclCommGetAsyncError so a failed peer is reported instead of hanging forever.
#pragma once
#include <stdbool.h>
#include <stddef.h>

#define IDOC_NCCL_ID_BYTES 128

typedef enum {
  IDOC_NCCL_F32 = 0,
  IDOC_NCCL_BF16,
  IDOC_NCCL_F16,
  IDOC_NCCL_I32,
  IDOC_NCCL_I64,
  IDOC_NCCL_F64
} idoc_nccl_dtype;
typedef enum { IDOC_NCCL_SUM = 0, IDOC_NCCL_AVG, IDOC_NCCL_MAX, IDOC_NCCL_MIN } idoc_nccl_op;

#ifdef __cplusplus
extern "C" {
#endif
// The CUDA device this process uses (call before its first CUDA work; default 0).
void idoc_cuda_use_device(int index);
bool idoc_nccl_available(void);
// Functions below return 0 on success, -1 with idoc_nccl_error() set.
const char *idoc_nccl_error(void);
int idoc_nccl_unique_id(unsigned char id[IDOC_NCCL_ID_BYTES]);
int idoc_nccl_init(int world, int rank, const unsigned char id[IDOC_NCCL_ID_BYTES]);
bool idoc_nccl_ready(void);
void idoc_nccl_finalize(void);
// Ends the communicator at once (peers blocked in a collective with it are released).
void idoc_nccl_abort(void);
int idoc_nccl_all_reduce(const void *send, void *recv, size_t count, idoc_nccl_dtype t,
                         idoc_nccl_op op);
int idoc_nccl_reduce_scatter(const void *send, void *recv, size_t recvcount, idoc_nccl_dtype t,
                             idoc_nccl_op op);
int idoc_nccl_all_gather(const void *send, void *recv, size_t sendcount, idoc_nccl_dtype t);
int idoc_nccl_broadcast(const void *send, void *recv, size_t count, idoc_nccl_dtype t, int root);
int idoc_nccl_stream_wait(void);
// Host wait; gives up with an error after timeout_s seconds (<= 0: never).
int idoc_nccl_sync(double timeout_s);
#ifdef __cplusplus
}
#endif
