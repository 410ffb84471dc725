// idoc-requires: mpi
// NCCL for the host SIMT simulator, over MPI: each rank is an MPI process with its own simulated
// GPU. ncclCommInitRank splits MPI_COMM_WORLD by the unique id (so every MPI process creates the
// communicator, as data-parallel training does), collectives take device (or pinned) buffers,
// complete before returning (streams are in order here) and give every rank bitwise the same
// result: contributions are gathered and reduced in rank order (floating-point sums therefore
// have one fixed order, as with NCCL's fixed ring on a fixed topology). Half and bf16 values are
// reduced in fp32 and rounded once; ncclAvg is the sum divided by the rank count.
#include <fcntl.h>
#include <limits.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <vector>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "kernels/cuda/sim/sim.h"
#include "nccl.h"

struct ncclComm {
  MPI_Comm comm;
  int rank, size, device;
};

namespace idoc_sim {

static size_t elem_size(ncclDataType_t t) {
  switch (t) {
  case ncclInt8:
  case ncclUint8: return 1;
  case ncclFloat16:
  case ncclBfloat16: return 2;
  case ncclInt32:
  case ncclUint32:
  case ncclFloat32: return 4;
  case ncclInt64:
  case ncclUint64:
  case ncclFloat64: return 8;
  }
  return 0;
}

// Elements are combined as double (floating types) or int64/uint64 (integer types); the final
// value is stored in the buffer's type.
static bool is_float(ncclDataType_t t) {
  return t == ncclFloat16 || t == ncclBfloat16 || t == ncclFloat32 || t == ncclFloat64;
}
static double load_f(const char *p, ncclDataType_t t, size_t i) {
  switch (t) {
  case ncclFloat16: return __half2float(((const __half *)p)[i]);
  case ncclBfloat16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
  case ncclFloat32: return ((const float *)p)[i];
  default: return ((const double *)p)[i];
  }
}
static void store_f(char *p, ncclDataType_t t, size_t i, double v) {
  switch (t) {
  case ncclFloat16: ((__half *)p)[i] = __float2half_rn((float)v); break;
  case ncclBfloat16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn((float)v); break;
  case ncclFloat32: ((float *)p)[i] = (float)v; break;
  default: ((double *)p)[i] = v; break;
  }
}
static long long load_i(const char *p, ncclDataType_t t, size_t i) {
  switch (t) {
  case ncclInt8: return ((const int8_t *)p)[i];
  case ncclUint8: return ((const uint8_t *)p)[i];
  case ncclInt32: return ((const int32_t *)p)[i];
  case ncclUint32: return ((const uint32_t *)p)[i];
  case ncclInt64: return ((const int64_t *)p)[i];
  default: return (long long)((const uint64_t *)p)[i];
  }
}
static void store_i(char *p, ncclDataType_t t, size_t i, long long v) {
  switch (t) {
  case ncclInt8: ((int8_t *)p)[i] = (int8_t)v; break;
  case ncclUint8: ((uint8_t *)p)[i] = (uint8_t)v; break;
  case ncclInt32: ((int32_t *)p)[i] = (int32_t)v; break;
  case ncclUint32: ((uint32_t *)p)[i] = (uint32_t)v; break;
  case ncclInt64: ((int64_t *)p)[i] = (int64_t)v; break;
  default: ((uint64_t *)p)[i] = (uint64_t)v; break;
  }
}

// out[i] = op over ranks r (in rank order) of block r of `all` (blocks of `stride` elements,
// elements [first, first + n) of each).
static void reduce_blocks(char *out, const char *all, int ranks, size_t stride, size_t first,
                          size_t n, ncclDataType_t t, ncclRedOp_t op) {
  size_t es = elem_size(t);
  for (size_t i = 0; i < n; i++) {
    if (is_float(t)) {
      // fp32 types combine in fp32 (as NCCL's kernels do); fp64 in fp64.
      bool f64 = t == ncclFloat64;
      double acc = load_f(all, t, first + i);
      for (int r = 1; r < ranks; r++) {
        double v = load_f(all + (size_t)r * stride * es, t, first + i);
        switch (op) {
        case ncclSum:
        case ncclAvg: acc = f64 ? acc + v : (double)((float)acc + (float)v); break;
        case ncclProd: acc = f64 ? acc * v : (double)((float)acc * (float)v); break;
        case ncclMax: acc = v > acc ? v : acc; break;
        case ncclMin: acc = v < acc ? v : acc; break;
        }
      }
      if (op == ncclAvg) acc = f64 ? acc / ranks : (double)((float)acc / (float)ranks);
      store_f(out, t, i, acc);
    } else {
      long long acc = load_i(all, t, first + i);
      for (int r = 1; r < ranks; r++) {
        long long v = load_i(all + (size_t)r * stride * es, t, first + i);
        switch (op) {
        case ncclSum:
        case ncclAvg: acc += v; break;
        case ncclProd: acc *= v; break;
        case ncclMax: acc = v > acc ? v : acc; break;
        case ncclMin: acc = v < acc ? v : acc; break;
        }
      }
      if (op == ncclAvg) acc /= ranks;
      store_i(out, t, i, acc);
    }
  }
}

static ncclResult_t check(const char *api, ncclComm_t c, const void *send, size_t send_bytes,
                          const void *recv, size_t recv_bytes, ncclDataType_t t,
                          cudaStream_t stream) {
  if (!c) {
    note("%s: NULL communicator", api);
    return ncclInvalidArgument;
  }
  if (!elem_size(t)) {
    note("%s: %d is not an ncclDataType_t", api, (int)t);
    return ncclInvalidArgument;
  }
  if (!stream_valid(stream)) {
    note("%s: invalid stream", api);
    return ncclInvalidArgument;
  }
  if (send_bytes > (size_t)INT_MAX || recv_bytes > (size_t)INT_MAX) {
    note("%s: %zu bytes exceed what the simulator's MPI transport moves in one call", api,
         send_bytes);
    return ncclInvalidArgument;
  }
  const void *ptrs[2] = {send, recv};
  size_t bytes[2] = {send_bytes, recv_bytes};
  for (int k = 0; k < 2; k++)
    if (bytes[k] && !heap_contains(ptrs[k], bytes[k]) && !pinned_contains(ptrs[k], bytes[k])) {
      note("%s: %s buffer [%p, +%zu) is not device memory", api, k ? "receive" : "send", ptrs[k],
           bytes[k]);
      return ncclInvalidArgument;
    }
  return ncclSuccess;
}

static bool good_op(ncclRedOp_t op) { return op >= ncclSum && op <= ncclAvg; }

} // namespace idoc_sim

using namespace idoc_sim;

extern "C" {

ncclResult_t ncclGetVersion(int *version) {
  if (!version) return ncclInvalidArgument;
  *version = NCCL_VERSION_CODE;
  return ncclSuccess;
}

ncclResult_t ncclGetUniqueId(ncclUniqueId *id) {
  if (!id) return ncclInvalidArgument;
  memset(id, 0, sizeof *id);
  int fd = open("/dev/urandom", O_RDONLY);
  ssize_t got = fd >= 0 ? read(fd, id->internal, 16) : -1;
  if (fd >= 0) close(fd);
  if (got != 16) { // no urandom: time and pid still make ids of concurrent jobs differ
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    long long v[2] = {(long long)ts.tv_nsec ^ ((long long)getpid() << 32), (long long)ts.tv_sec};
    memcpy(id->internal, v, sizeof v);
  }
  return ncclSuccess;
}

ncclResult_t ncclCommInitRank(ncclComm_t *comm, int nranks, ncclUniqueId id, int rank) {
  if (!comm || nranks < 1 || rank < 0 || rank >= nranks) return ncclInvalidArgument;
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int provided;
    MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
  }
  unsigned color = 0;
  for (int i = 0; i < 16; i++)
    color = color * 131u + (unsigned char)id.internal[i];
  MPI_Comm c;
  if (MPI_Comm_split(MPI_COMM_WORLD, (int)(color & 0x7fffffffu), rank, &c) != MPI_SUCCESS)
    return ncclSystemError;
  int size = 0, me = 0;
  MPI_Comm_size(c, &size);
  MPI_Comm_rank(c, &me);
  if (size != nranks || me != rank) {
    note("ncclCommInitRank: %d processes share this unique id but nranks is %d (rank %d here is "
         "%d among them)",
         size, nranks, rank, me);
    MPI_Comm_free(&c);
    return ncclInvalidUsage;
  }
  int dev = 0;
  cudaGetDevice(&dev);
  *comm = new ncclComm{c, rank, nranks, dev};
  return ncclSuccess;
}

ncclResult_t ncclCommDestroy(ncclComm_t comm) {
  if (!comm) return ncclInvalidArgument;
  MPI_Comm_free(&comm->comm);
  delete comm;
  return ncclSuccess;
}
ncclResult_t ncclCommAbort(ncclComm_t comm) {
  if (!comm) return ncclInvalidArgument;
  // Peers may be blocked in a collective this rank will never join: end the whole job.
  MPI_Abort(comm->comm, 1);
  return ncclSuccess;
}
ncclResult_t ncclCommGetAsyncError(ncclComm_t comm, ncclResult_t *async_error) {
  if (!comm || !async_error) return ncclInvalidArgument;
  *async_error = ncclSuccess; // collectives complete (or fail) synchronously here
  return ncclSuccess;
}
ncclResult_t ncclCommCount(const ncclComm_t comm, int *count) {
  if (!comm || !count) return ncclInvalidArgument;
  *count = comm->size;
  return ncclSuccess;
}
ncclResult_t ncclCommUserRank(const ncclComm_t comm, int *rank) {
  if (!comm || !rank) return ncclInvalidArgument;
  *rank = comm->rank;
  return ncclSuccess;
}
ncclResult_t ncclCommCuDevice(const ncclComm_t comm, int *device) {
  if (!comm || !device) return ncclInvalidArgument;
  *device = comm->device;
  return ncclSuccess;
}

const char *ncclGetErrorString(ncclResult_t r) {
  switch (r) {
  case ncclSuccess: return "no error";
  case ncclUnhandledCudaError: return "unhandled cuda error";
  case ncclSystemError: return "unhandled system error";
  case ncclInternalError: return "internal error";
  case ncclInvalidArgument: return "invalid argument";
  case ncclInvalidUsage: return "invalid usage";
  case ncclRemoteError: return "remote process exited or there was a network error";
  case ncclInProgress: return "NCCL operation in progress";
  }
  return "unknown result code";
}

// Collectives complete at once, so grouping changes nothing.
ncclResult_t ncclGroupStart(void) { return ncclSuccess; }
ncclResult_t ncclGroupEnd(void) { return ncclSuccess; }

ncclResult_t ncclAllReduce(const void *send, void *recv, size_t count, ncclDataType_t t,
                           ncclRedOp_t op, ncclComm_t c, cudaStream_t stream) {
  size_t es = elem_size(t), bytes = count * es;
  ncclResult_t r = check("ncclAllReduce", c, send, bytes, recv, bytes, t, stream);
  if (r != ncclSuccess) return r;
  if (!good_op(op)) return ncclInvalidArgument;
  if (!count) return ncclSuccess;
  device_scope scope;
  scope.open(send, bytes);
  scope.open(recv, bytes);
  std::vector<char> all(bytes * (size_t)c->size);
  MPI_Allgather(send, (int)bytes, MPI_BYTE, all.data(), (int)bytes, MPI_BYTE, c->comm);
  reduce_blocks((char *)recv, all.data(), c->size, count, 0, count, t, op);
  return ncclSuccess;
}

ncclResult_t ncclReduce(const void *send, void *recv, size_t count, ncclDataType_t t,
                        ncclRedOp_t op, int root, ncclComm_t c, cudaStream_t stream) {
  size_t es = elem_size(t), bytes = count * es;
  bool is_root = c && c->rank == root;
  ncclResult_t r = check("ncclReduce", c, send, bytes, recv, is_root ? bytes : 0, t, stream);
  if (r != ncclSuccess) return r;
  if (!good_op(op) || root < 0 || root >= c->size) return ncclInvalidArgument;
  if (!count) return ncclSuccess;
  device_scope scope;
  scope.open(send, bytes);
  if (is_root) scope.open(recv, bytes);
  std::vector<char> all(is_root ? bytes * (size_t)c->size : 1);
  MPI_Gather(send, (int)bytes, MPI_BYTE, all.data(), (int)bytes, MPI_BYTE, root, c->comm);
  if (is_root) reduce_blocks((char *)recv, all.data(), c->size, count, 0, count, t, op);
  return ncclSuccess;
}

ncclResult_t ncclBroadcast(const void *send, void *recv, size_t count, ncclDataType_t t, int root,
                           ncclComm_t c, cudaStream_t stream) {
  size_t bytes = count * elem_size(t);
  bool is_root = c && c->rank == root;
  ncclResult_t r =
      check("ncclBroadcast", c, is_root ? send : NULL, is_root ? bytes : 0, recv, bytes, t, stream);
  if (r != ncclSuccess) return r;
  if (root < 0 || root >= c->size) return ncclInvalidArgument;
  if (!count) return ncclSuccess;
  device_scope scope;
  if (is_root) scope.open(send, bytes);
  scope.open(recv, bytes);
  if (is_root && send != recv) memmove(recv, send, bytes);
  MPI_Bcast(recv, (int)bytes, MPI_BYTE, root, c->comm);
  return ncclSuccess;
}

ncclResult_t ncclAllGather(const void *send, void *recv, size_t sendcount, ncclDataType_t t,
                           ncclComm_t c, cudaStream_t stream) {
  size_t bytes = sendcount * elem_size(t);
  ncclResult_t r =
      check("ncclAllGather", c, send, bytes, recv, bytes * (size_t)(c ? c->size : 1), t, stream);
  if (r != ncclSuccess) return r;
  if (!sendcount) return ncclSuccess;
  device_scope scope;
  scope.open(send, bytes);
  scope.open(recv, bytes * (size_t)c->size);
  // In place is send == recv + rank * bytes; MPI wants MPI_IN_PLACE for that.
  const void *s = (const char *)recv + (size_t)c->rank * bytes == send ? MPI_IN_PLACE : send;
  MPI_Allgather(s, (int)bytes, MPI_BYTE, recv, (int)bytes, MPI_BYTE, c->comm);
  return ncclSuccess;
}

ncclResult_t ncclReduceScatter(const void *send, void *recv, size_t recvcount, ncclDataType_t t,
                               ncclRedOp_t op, ncclComm_t c, cudaStream_t stream) {
  size_t es = elem_size(t), bytes = recvcount * es, total = bytes * (size_t)(c ? c->size : 1);
  ncclResult_t r = check("ncclReduceScatter", c, send, total, recv, bytes, t, stream);
  if (r != ncclSuccess) return r;
  if (!good_op(op)) return ncclInvalidArgument;
  if (!recvcount) return ncclSuccess;
  device_scope scope;
  scope.open(send, total);
  scope.open(recv, bytes);
  std::vector<char> all(total * (size_t)c->size);
  MPI_Allgather(send, (int)total, MPI_BYTE, all.data(), (int)total, MPI_BYTE, c->comm);
  reduce_blocks((char *)recv, all.data(), c->size, recvcount * (size_t)c->size,
                (size_t)c->rank * recvcount, recvcount, t, op);
  return ncclSuccess;
}

} // extern "C"
