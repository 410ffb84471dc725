// Activations (SiLU, exact erf GELU, ReLU, sigmoid, sin, cos) and the SwiGLU product, forward and
// backward, as elementwise maps (elementwise.cuh) with the CPU reference's formulas in fp32.
#include "kernels/cuda/elementwise.cuh"

__device__ __forceinline__ float sigmoid_f(float x) { return 1.0f / (1.0f + expf(-x)); }

struct act_fwd_op {
  int kind;
  __device__ __forceinline__ void operator()(const float (&x)[1], float (&y)[1]) const {
    float v = x[0];
    switch (kind) {
    case IDOC_ACT_SILU: y[0] = v * sigmoid_f(v); break;
    case IDOC_ACT_GELU: y[0] = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
    case IDOC_ACT_RELU: y[0] = v > 0 ? v : 0.0f; break;
    case IDOC_ACT_SIN: y[0] = sinf(v); break;
    case IDOC_ACT_COS: y[0] = cosf(v); break;
    default: y[0] = sigmoid_f(v); break;
    }
  }
};

// x = {dx, dy, x, y}: dx + dy * act'(x); sigmoid uses the forward output y when it is given.
struct act_bwd_op {
  int kind;
  bool have_y;
  __device__ __forceinline__ void operator()(const float (&x)[4], float (&y)[1]) const {
    float v = x[2], d;
    switch (kind) {
    case IDOC_ACT_SILU: {
      float s = sigmoid_f(v);
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
      float s = have_y ? x[3] : sigmoid_f(v);
      d = s * (1.0f - s);
      break;
    }
    }
    y[0] = x[0] + x[1] * d;
  }
};

struct swiglu_fwd_op { // silu(gate) * up
  __device__ __forceinline__ void operator()(const float (&x)[2], float (&y)[1]) const {
    float g = x[0];
    y[0] = g * sigmoid_f(g) * x[1];
  }
};

// x = {dgate, dup, dy, gate, up} -> {dgate, dup}; an absent output reads as 0 and is not written.
struct swiglu_bwd_op {
  __device__ __forceinline__ void operator()(const float (&x)[5], float (&y)[2]) const {
    float g = x[3], s = sigmoid_f(g), d = x[2];
    y[0] = x[0] + d * x[4] * s * (1.0f + g * (1.0f - s));
    y[1] = x[1] + d * (g * s);
  }
};

static void act_kind_check(const char *k, int kind) {
  IDOC_CHECK(kind >= IDOC_ACT_SILU && kind <= IDOC_ACT_COS, "cuda %s: unknown activation %d", k,
             kind);
}

extern "C" void cuda_act_fwd(idoc_tensor *y, const idoc_tensor *x, int kind) {
  const char *k = "act_fwd";
  cu_on_gpu(k, y), cu_on_gpu(k, x), cu_same_dtype(k, y, x), act_kind_check(k, kind);
  IDOC_CHECK(idoc_numel(y) == idoc_numel(x), "cuda act_fwd: sizes differ");
  IDOC_CU_DISPATCH(x->dtype, k, T, {
    ew_map(ew_in<T, 1>{{(const T *)x->data}, {0}}, ew_out<T, 1>{{(T *)y->data}}, idoc_numel(x),
           act_fwd_op{kind});
  });
}

extern "C" void cuda_act_bwd(idoc_tensor *dx, const idoc_tensor *dy, const idoc_tensor *x,
                             const idoc_tensor *y, int kind) {
  const char *k = "act_bwd";
  cu_on_gpu(k, dx), cu_on_gpu(k, dy), cu_on_gpu(k, x), cu_on_gpu(k, y), act_kind_check(k, kind);
  cu_same_dtype(k, dx, x), cu_same_dtype(k, dy, x), cu_same_dtype(k, y, x);
  if (!dx) return;
  int64_t n = idoc_numel(x);
  IDOC_CHECK(idoc_numel(dx) == n && idoc_numel(dy) == n && (!y || idoc_numel(y) == n),
             "cuda act_bwd: sizes differ");
  // y only matters to sigmoid; the other kinds do not read it.
  const void *yp = kind == IDOC_ACT_SIGMOID && y ? y->data : NULL;
  IDOC_CU_DISPATCH(x->dtype, k, T, {
    T *G = (T *)dx->data;
    ew_map(ew_in<T, 4>{{G, (const T *)dy->data, (const T *)x->data, (const T *)yp}, {0, 0, 0, 0}},
           ew_out<T, 1>{{G}}, n, act_bwd_op{kind, yp != NULL});
  });
}

extern "C" void cuda_swiglu_fwd(idoc_tensor *y, const idoc_tensor *gate, const idoc_tensor *up) {
  const char *k = "swiglu_fwd";
  cu_on_gpu(k, y), cu_on_gpu(k, gate), cu_on_gpu(k, up);
  cu_same_dtype(k, y, gate), cu_same_dtype(k, gate, up);
  int64_t n = idoc_numel(gate);
  IDOC_CHECK(idoc_numel(up) == n && idoc_numel(y) == n, "cuda swiglu_fwd: sizes differ");
  IDOC_CU_DISPATCH(gate->dtype, k, T, {
    ew_map(ew_in<T, 2>{{(const T *)gate->data, (const T *)up->data}, {0, 0}},
           ew_out<T, 1>{{(T *)y->data}}, n, swiglu_fwd_op{});
  });
}

extern "C" void cuda_swiglu_bwd(idoc_tensor *dgate, idoc_tensor *dup, const idoc_tensor *dy,
                                const idoc_tensor *gate, const idoc_tensor *up) {
  const char *k = "swiglu_bwd";
  cu_on_gpu(k, dgate), cu_on_gpu(k, dup), cu_on_gpu(k, dy), cu_on_gpu(k, gate), cu_on_gpu(k, up);
  cu_same_dtype(k, dy, gate), cu_same_dtype(k, gate, up), cu_same_dtype(k, dgate, gate),
      cu_same_dtype(k, dup, gate);
  if (!dgate && !dup) return;
  int64_t n = idoc_numel(gate);
  IDOC_CHECK(idoc_numel(up) == n && idoc_numel(dy) == n && (!dgate || idoc_numel(dgate) == n) &&
                 (!dup || idoc_numel(dup) == n),
             "cuda swiglu_bwd: sizes differ");
  IDOC_CU_DISPATCH(gate->dtype, k, T, {
    T *DG = dgate ? (T *)dgate->data : NULL, *DU = dup ? (T *)dup->data : NULL;
    ew_map(ew_in<T, 5>{{DG, DU, (const T *)dy->data, (const T *)gate->data, (const T *)up->data},
                       {0, 0, 0, 0, 0}},
           ew_out<T, 2>{{DG, DU}}, n, swiglu_bwd_op{});
  });
}
