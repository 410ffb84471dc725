// Rotary position embedding (NeoX / rotate_half pairing) driven by per-token cos/sin tables.
#include "kernels/cpu/check.h"
#include "kernels/ops.h"

// x and y are [T, H * D] (any shape with T rows), cos/sin [T, D/2]. For each head, the pair
// (x_j, x_{j+D/2}) is rotated by the angle at [t, j]; `inverse` negates the angle. Each pair is
// read before it is written, so y may be x.
void cpu_rotary(idoc_tensor *y, const idoc_tensor *x, const idoc_tensor *cos,
                const idoc_tensor *sin, int n_heads, bool inverse) {
  CPU_F32("rotary", y, x, cos, sin);
  int64_t t = x->shape[0], half = cos->shape[1], width = 2 * half * n_heads;
  const float *X = IDOC_F(x), *C = IDOC_F(cos), *S = IDOC_F(sin);
  float *Y = IDOC_F(y), sign = inverse ? -1.0f : 1.0f;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < t; i++) {
    const float *cr = C + i * half, *sr = S + i * half;
    for (int h = 0; h < n_heads; h++) {
      const float *xh = X + i * width + (int64_t)h * 2 * half;
      float *yh = Y + i * width + (int64_t)h * 2 * half;
      for (int64_t j = 0; j < half; j++) {
        float a = xh[j], b = xh[j + half], co = cr[j], si = sign * sr[j];
        yh[j] = a * co - b * si;
        yh[j + half] = b * co + a * si;
      }
    }
  }
}
