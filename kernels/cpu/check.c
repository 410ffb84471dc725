#include "kernels/cpu/check.h"

void idoc_cpu_require(const char *kernel, idoc_dtype dt, int n, const idoc_tensor *const *t) {
  for (int i = 0; i < n; i++) {
    if (!t[i]) continue;
    char b[128];
    IDOC_CHECK(t[i]->dtype == dt && t[i]->dev.kind == IDOC_CPU,
               "cpu %s: operand %d is %s; the CPU kernels take %s tensors on the cpu", kernel,
               i + 1, idoc_tensor_desc(t[i], b, sizeof b), idoc_dtype_name(dt));
  }
}
