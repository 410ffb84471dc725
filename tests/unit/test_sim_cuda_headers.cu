// idoc-requires: cudasim cudaheaders
// The simulator's bf16 / f16 conversions equal the CUDA toolkit's own headers (their host
// paths, which NVIDIA keeps equal to the device's cvt instructions) bit for bit: every bf16 and
// every f16 value back to float, and floats to bf16 (rn, rz, rd, ru) and f16 (rn) over special
// values, every exponent's boundaries and ties, and 2 million random bit patterns.
#include <stdint.h>
#include <string.h>

#include <vector>

#include <cuda_fp16.h>

#include "kernels/cuda/common.cuh"
#include "tests/test.h"

extern "C" {
uint16_t real_f2bf(float f, int mode);
float real_bf2f(uint16_t b);
uint16_t real_f2h(float f, int mode);
float real_h2f(uint16_t h);
}

static float bits(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
static uint32_t fbits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static uint16_t sim_f2bf(float f, int mode) {
  switch (mode) {
  case 0: return __bfloat16_as_ushort(__float2bfloat16_rn(f));
  case 1: return __bfloat16_as_ushort(__float2bfloat16_rz(f));
  case 2: return __bfloat16_as_ushort(__float2bfloat16_rd(f));
  case 3: return __bfloat16_as_ushort(__float2bfloat16_ru(f));
  default: return __bfloat16_as_ushort(__float2bfloat16(f));
  }
}

int main(void) {
  int bad = 0;
  for (uint32_t h = 0; h < 65536; h++) { // every 16-bit pattern back to float
    uint32_t a = fbits(__bfloat162float(__ushort_as_bfloat16((uint16_t)h)));
    uint32_t b = fbits(real_bf2f((uint16_t)h));
    uint32_t c = fbits(__half2float(__ushort_as_half((uint16_t)h)));
    uint32_t d = fbits(real_h2f((uint16_t)h));
    if (a != b && !(isnan(bits(a)) && isnan(bits(b)))) bad++;
    if (c != d && !(isnan(bits(c)) && isnan(bits(d)))) bad++;
  }
  T_CHECK(bad == 0, "16-bit to float: %d patterns differ", bad);

  std::vector<float> v = {0.0f,
                          -0.0f,
                          INFINITY,
                          -INFINITY,
                          NAN,
                          -NAN,
                          bits(0x7f800001u),
                          bits(0xffc00001u),
                          65504.0f,
                          65519.99f,
                          65520.0f,
                          65536.0f,
                          3.4028235e38f,
                          1.17549435e-38f,
                          1.4e-45f,
                          5.9604645e-8f,
                          2.9802322e-8f,
                          2.9802326e-8f,
                          6.097555e-5f,
                          6.1035156e-5f};
  for (uint32_t e = 0; e < 256; e++) // ties and neighbours at every exponent, both signs
    for (uint32_t m : {0x0u, 0x1u, 0x7fffu, 0x8000u, 0x8001u, 0x18000u, 0xfff000u >> 1, 0x1000u,
                       0x0fffu, 0x1001u, 0x3000u, 0x7fffffu})
      for (uint32_t s : {0u, 0x80000000u})
        v.push_back(bits(s | (e << 23) | (m & 0x7fffffu)));
  uint64_t x = 0x9e3779b97f4a7c15ull;
  for (int i = 0; i < 2000000; i++) {
    x ^= x << 13, x ^= x >> 7, x ^= x << 17;
    v.push_back(bits((uint32_t)x));
  }
  int bad_bf[5] = {0}, bad_h[2] = {0};
  for (float f : v) {
    for (int m = 0; m < 5; m++)
      bad_bf[m] += sim_f2bf(f, m) != real_f2bf(f, m);
    bad_h[0] += __half_as_ushort(__float2half_rn(f)) != real_f2h(f, 0);
    bad_h[1] += __half_as_ushort(__float2half(f)) != real_f2h(f, 1);
  }
  const char *names[5] = {"_rn", "_rz", "_rd", "_ru", "__float2bfloat16"};
  for (int m = 0; m < 5; m++)
    T_CHECK(bad_bf[m] == 0, "float to bf16 %s: %d of %zu differ", names[m], bad_bf[m], v.size());
  T_CHECK(bad_h[0] == 0 && bad_h[1] == 0, "float to f16: %d / %d of %zu differ", bad_h[0], bad_h[1],
          v.size());
  if (!t_fail)
    printf("%zu floats and all 65536 bf16/f16 patterns match the CUDA toolkit's headers\n",
           v.size());
  return t_summary("test_sim_cuda_headers");
}
