// Elementwise activations (SiLU, exact GELU, ReLU, sigmoid, sin, cos) and the SwiGLU product.
#include <math.h>

#include "kernels/cpu/check.h"
#include "kernels/ops.h"

static inline float sigmoidf_(float x) { return 1.0f / (1.0f + expf(-x)); }

void cpu_act_fwd(idoc_tensor *y, const idoc_tensor *x, int kind) {
  CPU_F32("act_fwd", y, x);
  int64_t n = idoc_numel(x);
  const float *X = IDOC_F(x);
  float *Y = IDOC_F(y);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float v = X[i];
    switch (kind) {
    case IDOC_ACT_SILU: Y[i] = v * sigmoidf_(v); break;
    case IDOC_ACT_GELU: Y[i] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
    case IDOC_ACT_RELU: Y[i] = v > 0 ? v : 0.0f; break;
    case IDOC_ACT_SIN: Y[i] = sinf(v); break;
    case IDOC_ACT_COS: Y[i] = cosf(v); break;
    default: Y[i] = sigmoidf_(v); break;
    }
  }
}

void cpu_act_bwd(idoc_tensor *dx, const idoc_tensor *dy, const idoc_tensor *x, const idoc_tensor *y,
                 int kind) {
  CPU_F32("act_bwd", dx, dy, x, y);
  int64_t n = idoc_numel(x);
  const float *X = IDOC_F(x), *D = IDOC_F(dy), *Y = y ? IDOC_F(y) : NULL;
  float *G = IDOC_F(dx);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float v = X[i], d;
    switch (kind) {
    case IDOC_ACT_SILU: {
      float s = sigmoidf_(v);
      d = s * (1.0f + v * (1.0f - s));
      break;
    }
    case IDOC_ACT_GELU: // d/dx x Phi(x) = Phi(x) + x phi(x)
      d = 0.5f * (1.0f + erff(v * 0.70710678118654752f)) +
          v * 0.39894228040143268f * expf(-0.5f * v * v);
      break;
    case IDOC_ACT_RELU: d = v > 0 ? 1.0f : 0.0f; break;
    case IDOC_ACT_SIN: d = cosf(v); break;
    case IDOC_ACT_COS: d = -sinf(v); break;
    default: {
      float s = Y ? Y[i] : sigmoidf_(v);
      d = s * (1.0f - s);
      break;
    }
    }
    G[i] += D[i] * d;
  }
}

void cpu_swiglu_fwd(idoc_tensor *y, const idoc_tensor *gate, const idoc_tensor *up) {
  CPU_F32("swiglu_fwd", y, gate, up);
  int64_t n = idoc_numel(gate);
  const float *Gt = IDOC_F(gate), *U = IDOC_F(up);
  float *Y = IDOC_F(y);
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++)
    Y[i] = Gt[i] * sigmoidf_(Gt[i]) * U[i];
}

void cpu_swiglu_bwd(idoc_tensor *dgate, idoc_tensor *dup, const idoc_tensor *dy,
                    const idoc_tensor *gate, const idoc_tensor *up) {
  CPU_F32("swiglu_bwd", dgate, dup, dy, gate, up);
  int64_t n = idoc_numel(gate);
  const float *Gt = IDOC_F(gate), *U = IDOC_F(up), *D = IDOC_F(dy);
  float *DG = dgate ? IDOC_F(dgate) : NULL, *DU = dup ? IDOC_F(dup) : NULL;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i++) {
    float g = Gt[i], s = sigmoidf_(g), silu = g * s;
    if (DU) DU[i] += D[i] * silu;
    if (DG) DG[i] += D[i] * U[i] * s * (1.0f + g * (1.0f - s));
  }
}
