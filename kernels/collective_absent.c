// The collective entry points (kernels/collective.h) for builds without NCCL: device tensors
// cannot be reduced across ranks, and asking for it is a clear error.
#include "kernels/collective.h"

#if !IDOC_HAVE_NCCL
static const char *g_why = "this build of idoc has no NCCL (device collectives need the CUDA "
                           "toolkit's NCCL, or the simulator built with MPI)";
const char *idoc_nccl_error(void) { return g_why; }
bool idoc_nccl_available(void) { return false; }
bool idoc_nccl_ready(void) { return false; }
int idoc_nccl_unique_id(unsigned char id[IDOC_NCCL_ID_BYTES]) {
  (void)id;
  return -1;
}
int idoc_nccl_init(int world, int rank, const unsigned char id[IDOC_NCCL_ID_BYTES]) {
  (void)world, (void)rank, (void)id;
  return -1;
}
void idoc_nccl_finalize(void) {}
void idoc_nccl_abort(void) {}
int idoc_nccl_all_reduce(const void *send, void *recv, size_t count, idoc_nccl_dtype t,
                         idoc_nccl_op op) {
  (void)send, (void)recv, (void)count, (void)t, (void)op;
  return -1;
}
int idoc_nccl_reduce_scatter(const void *send, void *recv, size_t recvcount, idoc_nccl_dtype t,
                             idoc_nccl_op op) {
  (void)send, (void)recv, (void)recvcount, (void)t, (void)op;
  return -1;
}
int idoc_nccl_all_gather(const void *send, void *recv, size_t sendcount, idoc_nccl_dtype t) {
  (void)send, (void)recv, (void)sendcount, (void)t;
  return -1;
}
int idoc_nccl_broadcast(const void *send, void *recv, size_t count, idoc_nccl_dtype t, int root) {
  (void)send, (void)recv, (void)count, (void)t, (void)root;
  return -1;
}
int idoc_nccl_stream_wait(void) { return 0; }
int idoc_nccl_sync(double timeout_s) {
  (void)timeout_s;
  return 0;
}
#endif

#if !IDOC_HAVE_CUDA
void idoc_cuda_use_device(int index) { (void)index; }
#endif
