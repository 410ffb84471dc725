// Device entry points for builds without CUDA: tensors can only live on the CPU, and asking
// for a GPU is a clear error rather than a link failure.
#include "kernels/ops.h"

#if !IDOC_HAVE_CUDA
const idoc_kernel_table *idoc_cuda_kernels(void) { return NULL; }
bool idoc_cuda_available(void) { return false; }
bool idoc_cuda_simulated(void) { return false; }
int idoc_cuda_device_count(void) { return 0; }
#define NO_CUDA idoc_die("this build of idoc has no CUDA backend")
void *idoc_cuda_malloc(size_t n) { NO_CUDA; }
void idoc_cuda_free(void *p) { NO_CUDA; }
void idoc_cuda_memcpy(void *dst, const void *src, size_t n, int kind) { NO_CUDA; }
void idoc_cuda_memset0(void *p, size_t n) { NO_CUDA; }
void idoc_cuda_sync(void) {}
const char *idoc_cuda_device_name(void) { return "none"; }
size_t idoc_cuda_device_memory(void) { return 0; }
#endif
