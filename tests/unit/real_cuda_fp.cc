// Compiled against the CUDA toolkit's own cuda_bf16.h / cuda_fp16.h (their host code paths),
// not the simulator's: the reference for tests/unit/test_sim_cuda_headers.cu.
#include <cuda_bf16.h>
#include <cuda_fp16.h>
#include <stdint.h>

extern "C" {
uint16_t real_f2bf(float f, int mode) {
  switch (mode) {
  case 0: return __bfloat16_as_ushort(__float2bfloat16_rn(f));
  case 1: return __bfloat16_as_ushort(__float2bfloat16_rz(f));
  case 2: return __bfloat16_as_ushort(__float2bfloat16_rd(f));
  case 3: return __bfloat16_as_ushort(__float2bfloat16_ru(f));
  default: return __bfloat16_as_ushort(__float2bfloat16(f));
  }
}
float real_bf2f(uint16_t b) { return __bfloat162float(__ushort_as_bfloat16(b)); }
uint16_t real_f2h(float f, int mode) {
  return __half_as_ushort(mode ? __float2half(f) : __float2half_rn(f));
}
float real_h2f(uint16_t h) { return __half2float(__ushort_as_half(h)); }
}
