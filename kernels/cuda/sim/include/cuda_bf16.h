// bfloat16 for the host SIMT simulator (IDOC_CUDA_SIM builds): the subset of NVIDIA's
// cuda_bf16.h the project uses, with the rounding NVIDIA documents for the device's cvt
// instructions: _rn is round-to-nearest-even, NaN becomes the canonical 0x7fff; _rz/_rd/_ru
// truncate / round down / round up. Conversions to float are exact.
#pragma once
#include <stdint.h>
#include <string.h>

#include "cuda_runtime.h"

namespace idoc_sim {
static inline uint32_t f32_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, 4);
  return u;
}
static inline float bits_f32(uint32_t u) {
  float f;
  memcpy(&f, &u, 4);
  return f;
}
enum round_mode { RN, RZ, RD, RU };
static inline unsigned short f32_to_bf16(float f, round_mode m) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return 0x7fffu; // NaN
  uint32_t hi = u >> 16, rem = u & 0xffffu;
  bool neg = (u >> 31) != 0;
  switch (m) {
  case RN:
    if (rem > 0x8000u || (rem == 0x8000u && (hi & 1u))) hi++;
    break;
  case RZ: break;
  case RD:
    if (rem && neg) hi++;
    break;
  case RU:
    if (rem && !neg) hi++;
    break;
  }
  return (unsigned short)hi;
}
} // namespace idoc_sim

struct __nv_bfloat16_raw {
  unsigned short x;
};
struct __nv_bfloat16 {
  unsigned short __x;
  __nv_bfloat16() = default;
  constexpr __nv_bfloat16(const __nv_bfloat16_raw &r) : __x(r.x) {}
  __nv_bfloat16(float f) : __x(idoc_sim::f32_to_bf16(f, idoc_sim::RN)) {}
  operator __nv_bfloat16_raw() const { return __nv_bfloat16_raw{__x}; }
  operator float() const { return idoc_sim::bits_f32((uint32_t)__x << 16); }
};
struct alignas(4) __nv_bfloat162 {
  __nv_bfloat16 x, y;
};
typedef __nv_bfloat16 nv_bfloat16;
typedef __nv_bfloat162 nv_bfloat162;

static inline __nv_bfloat16 idoc_sim_bf16(unsigned short b) {
  return __nv_bfloat16(__nv_bfloat16_raw{b});
}
static inline float __bfloat162float(__nv_bfloat16 a) {
  return idoc_sim::bits_f32((uint32_t)a.__x << 16);
}
static inline __nv_bfloat16 __float2bfloat16(float a) {
  return idoc_sim_bf16(idoc_sim::f32_to_bf16(a, idoc_sim::RN));
}
static inline __nv_bfloat16 __float2bfloat16_rn(float a) {
  return idoc_sim_bf16(idoc_sim::f32_to_bf16(a, idoc_sim::RN));
}
static inline __nv_bfloat16 __float2bfloat16_rz(float a) {
  return idoc_sim_bf16(idoc_sim::f32_to_bf16(a, idoc_sim::RZ));
}
static inline __nv_bfloat16 __float2bfloat16_rd(float a) {
  return idoc_sim_bf16(idoc_sim::f32_to_bf16(a, idoc_sim::RD));
}
static inline __nv_bfloat16 __float2bfloat16_ru(float a) {
  return idoc_sim_bf16(idoc_sim::f32_to_bf16(a, idoc_sim::RU));
}
static inline __nv_bfloat162 __floats2bfloat162_rn(float a, float b) {
  return __nv_bfloat162{__float2bfloat16_rn(a), __float2bfloat16_rn(b)};
}
static inline __nv_bfloat162 __float22bfloat162_rn(float2 a) {
  return __floats2bfloat162_rn(a.x, a.y);
}
static inline float2 __bfloat1622float2(__nv_bfloat162 a) {
  return float2{__bfloat162float(a.x), __bfloat162float(a.y)};
}
static inline float __low2float(__nv_bfloat162 a) { return __bfloat162float(a.x); }
static inline float __high2float(__nv_bfloat162 a) { return __bfloat162float(a.y); }
static inline unsigned short __bfloat16_as_ushort(__nv_bfloat16 a) { return a.__x; }
static inline __nv_bfloat16 __ushort_as_bfloat16(unsigned short u) { return idoc_sim_bf16(u); }
