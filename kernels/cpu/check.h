// Operand checks of the CPU kernels: they compute in fp32 on f32 host storage (index operands
// are i32), so any other dtype or a tensor on another device is refused, naming the kernel and
// the operand, instead of being read as the wrong bytes.
#pragma once
#include "kernels/ops.h"

void idoc_cpu_require(const char *kernel, idoc_dtype dt, int n, const idoc_tensor *const *t);
#define IDOC_CPU_TENSORS(...)                                                                      \
  (int)(sizeof((const idoc_tensor *[]){__VA_ARGS__}) / sizeof(const idoc_tensor *)),               \
      (const idoc_tensor *[]) {                                                                    \
    __VA_ARGS__                                                                                    \
  }
// CPU_F32("linear_fwd", y, x, w, b): every non-NULL operand is f32 on the CPU.
#define CPU_F32(kernel, ...) idoc_cpu_require(kernel, IDOC_F32, IDOC_CPU_TENSORS(__VA_ARGS__))
#define CPU_I32(kernel, ...) idoc_cpu_require(kernel, IDOC_I32, IDOC_CPU_TENSORS(__VA_ARGS__))
