// The CPU kernel table and backend selection.
#include "kernels/ops.h"

const idoc_kernel_table idoc_cpu_kernels = {
#define IDOC_KERNEL_ENTRY(name, params) .name = cpu_##name,
    IDOC_KERNELS(IDOC_KERNEL_ENTRY)
#undef IDOC_KERNEL_ENTRY
};

const idoc_kernel_table *idoc_kernels(idoc_device dev) {
  if (dev.kind == IDOC_CPU) return &idoc_cpu_kernels;
  const idoc_kernel_table *t = idoc_cuda_kernels();
  IDOC_CHECK(t, "a tensor is on %s but this build has no CUDA backend (rebuild with nvcc on PATH)",
             idoc_device_name(dev));
  return t;
}

IDOC_NORETURN void idoc_kernel_missing(const char *name, idoc_device dev) {
  idoc_die("kernel '%s' is not implemented for %s", name, idoc_device_name(dev));
}
