// IEEE half precision for the host SIMT simulator (IDOC_CUDA_SIM builds): the subset of
// NVIDIA's cuda_fp16.h the project uses. __float2half_rn rounds to nearest even with gradual
// underflow, overflows to infinity and maps NaN to the canonical 0x7fff, as the device's
// cvt.rn.f16.f32 does; conversions to float are exact.
#pragma once
#include <stdint.h>
#include <string.h>

#include "cuda_runtime.h"

namespace idoc_sim {
static inline unsigned short f32_to_f16_rn(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  uint32_t sign = (u >> 16) & 0x8000u, a = u & 0x7fffffffu;
  if (a > 0x7f800000u) return 0x7fffu;                           // NaN
  if (a >= 0x47800000u) return (unsigned short)(sign | 0x7c00u); // >= 2^16: inf
  int e = (int)(a >> 23) - 127;                                  // unbiased exponent
  uint32_t man = (a & 0x7fffffu) | (a >= 0x00800000u ? 0x800000u : 0);
  if (a < 0x00800000u) e = -126; // f32 subnormal
  // Value = man * 2^(e - 23); a half unit in the last place is 2^-24 below 2^-14, else 2^(e-10).
  int shift = e >= -14 ? 13 : 13 + (-14 - e); // bits of man below the half's last place
  if (shift > 31) return (unsigned short)sign;
  uint32_t q = man >> shift, rem = man & ((1u << shift) - 1u), mid = 1u << (shift - 1);
  if (rem > mid || (rem == mid && (q & 1u))) q++;
  // q counts half ulps; normal halves carry their exponent: add it (q may carry into it).
  uint32_t h = e >= -14 ? ((uint32_t)(e + 14) << 10) + q : q;
  if (h >= 0x7c00u) h = 0x7c00u; // rounded up past the largest finite half
  return (unsigned short)(sign | h);
}
static inline float f16_to_f32(unsigned short h) {
  uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1fu, m = h & 0x3ffu, u;
  if (e == 0) {
    float v = (float)m * 5.9604644775390625e-8f; // m * 2^-24, exact
    memcpy(&u, &v, 4);
    u |= sign;
  } else if (e == 31) {
    u = sign | 0x7f800000u | (m << 13);
  } else {
    u = sign | ((e + 112u) << 23) | (m << 13);
  }
  float f;
  memcpy(&f, &u, 4);
  return f;
}
} // namespace idoc_sim

struct __half_raw {
  unsigned short x;
};
struct __half {
  unsigned short __x;
  __half() = default;
  constexpr __half(const __half_raw &r) : __x(r.x) {}
  __half(float f) : __x(idoc_sim::f32_to_f16_rn(f)) {}
  operator __half_raw() const { return __half_raw{__x}; }
  operator float() const { return idoc_sim::f16_to_f32(__x); }
};
struct alignas(4) __half2 {
  __half x, y;
};
typedef __half half;
typedef __half2 half2;

static inline float __half2float(__half a) { return idoc_sim::f16_to_f32(a.__x); }
static inline __half __float2half(float a) {
  return __half(__half_raw{idoc_sim::f32_to_f16_rn(a)});
}
static inline __half __float2half_rn(float a) {
  return __half(__half_raw{idoc_sim::f32_to_f16_rn(a)});
}
static inline __half2 __floats2half2_rn(float a, float b) {
  return __half2{__float2half_rn(a), __float2half_rn(b)};
}
static inline float2 __half22float2(__half2 a) {
  return float2{__half2float(a.x), __half2float(a.y)};
}
static inline unsigned short __half_as_ushort(__half a) { return a.__x; }
static inline __half __ushort_as_half(unsigned short u) { return __half(__half_raw{u}); }
