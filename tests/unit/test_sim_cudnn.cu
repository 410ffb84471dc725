// idoc-requires: cudasim
// Self-test of the simulator's cuDNN (kernels/cuda/sim/cudnn.cc) against cuDNN's documented
// semantics, independent of our kernels: a hand-computed convolution in both modes (CONVOLUTION
// flips the filter, CROSS_CORRELATION does not), forward / backward data / backward filter with
// pad, stride and dilation against direct double loops, alpha/beta blending (beta = 0 never reads
// the output), the math types' precision (FLOAT data under default math rounds like TF32, FMA math
// does not), the documented refusals of inconsistent descriptors, algorithm heuristics and
// workspaces, the emulated non-determinism of the algorithms cuDNN documents as
// non-deterministic, and operands that must be device memory (those end the process and run in a
// child: this binary re-executed with a case name).
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>
#include <vector>

#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <cudnn.h>

#include "kernels/cuda/sim/idoc_sim.h"
#include "tests/test.h"

static const char *g_self;

// ---- helpers ------------------------------------------------------------------------------------
template <class T> static T *dalloc(size_t n) {
  void *p = NULL;
  T_CHECK(cudaMalloc(&p, (n ? n : 1) * sizeof(T)) == cudaSuccess, "cudaMalloc(%zu)", n * sizeof(T));
  return (T *)p;
}
template <class T> static std::vector<T> down(const T *d, size_t n) {
  std::vector<T> h(n);
  T_CHECK(cudaMemcpy(h.data(), d, n * sizeof(T), cudaMemcpyDeviceToHost) == cudaSuccess, "d2h");
  return h;
}
template <class T> static void up(T *d, const std::vector<T> &h) {
  T_CHECK(cudaMemcpy(d, h.data(), h.size() * sizeof(T), cudaMemcpyHostToDevice) == cudaSuccess,
          "h2d");
}
#define DNN_OK(expr) T_CHECK((expr) == CUDNN_STATUS_SUCCESS, "%s", #expr)
#define DNN_IS(expr, want)                                                                         \
  do {                                                                                             \
    cudnnStatus_t s_ = (expr);                                                                     \
    T_CHECK(s_ == (want), "%s: %s, want %s", #expr, cudnnGetErrorString(s_),                       \
            cudnnGetErrorString(want));                                                            \
  } while (0)

static uint32_t g_rng = 12345;
static float frand() { // uniform in [-1, 1)
  g_rng = g_rng * 1664525u + 1013904223u;
  return (float)(g_rng >> 8) / 8388608.0f - 1.0f;
}
static std::vector<float> randv(size_t n) {
  std::vector<float> v(n);
  for (float &x : v)
    x = frand();
  return v;
}

// One convolution's geometry and its descriptors (FLOAT data unless dt says otherwise).
struct geom {
  int N, C, H, W, K, R, S, ph, pw, u, v, dh, dw;
  cudnnConvolutionMode_t mode;
  int P() const { return 1 + (H + 2 * ph - ((R - 1) * dh + 1)) / u; }
  int Q() const { return 1 + (W + 2 * pw - ((S - 1) * dw + 1)) / v; }
  size_t nx() const { return (size_t)N * C * H * W; }
  size_t nw() const { return (size_t)K * C * R * S; }
  size_t ny() const { return (size_t)N * K * P() * Q(); }
};
struct descs {
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t c;
  descs(const geom &g, cudnnMathType_t math = CUDNN_FMA_MATH,
        cudnnDataType_t dt = CUDNN_DATA_FLOAT) {
    cudnnCreateTensorDescriptor(&x);
    cudnnCreateTensorDescriptor(&y);
    cudnnCreateFilterDescriptor(&w);
    cudnnCreateConvolutionDescriptor(&c);
    DNN_OK(cudnnSetTensor4dDescriptor(x, CUDNN_TENSOR_NCHW, dt, g.N, g.C, g.H, g.W));
    DNN_OK(cudnnSetTensor4dDescriptor(y, CUDNN_TENSOR_NCHW, dt, g.N, g.K, g.P(), g.Q()));
    DNN_OK(cudnnSetFilter4dDescriptor(w, dt, CUDNN_TENSOR_NCHW, g.K, g.C, g.R, g.S));
    DNN_OK(cudnnSetConvolution2dDescriptor(c, g.ph, g.pw, g.u, g.v, g.dh, g.dw, g.mode,
                                           CUDNN_DATA_FLOAT));
    DNN_OK(cudnnSetConvolutionMathType(c, math));
  }
  ~descs() {
    cudnnDestroyTensorDescriptor(x);
    cudnnDestroyTensorDescriptor(y);
    cudnnDestroyFilterDescriptor(w);
    cudnnDestroyConvolutionDescriptor(c);
  }
};

// Direct double loops over cuDNN's definition: y = sum x * w, with the filter flipped in
// CUDNN_CONVOLUTION mode; `what` 0 forward, 1 backward data (into x), 2 backward filter (into w).
static std::vector<double> reference(const geom &g, int what, const std::vector<float> &x,
                                     const std::vector<float> &w, const std::vector<float> &y) {
  std::vector<double> out(what == 0 ? g.ny() : what == 1 ? g.nx() : g.nw(), 0.0);
  int P = g.P(), Q = g.Q();
  for (int n = 0; n < g.N; n++)
    for (int k = 0; k < g.K; k++)
      for (int p = 0; p < P; p++)
        for (int q = 0; q < Q; q++)
          for (int c = 0; c < g.C; c++)
            for (int r = 0; r < g.R; r++)
              for (int s = 0; s < g.S; s++) {
                int ih = p * g.u - g.ph + r * g.dh, iw = q * g.v - g.pw + s * g.dw;
                if (ih < 0 || ih >= g.H || iw < 0 || iw >= g.W) continue;
                int fr = g.mode == CUDNN_CONVOLUTION ? g.R - 1 - r : r;
                int fs = g.mode == CUDNN_CONVOLUTION ? g.S - 1 - s : s;
                size_t xi = (((size_t)n * g.C + c) * g.H + ih) * g.W + iw;
                size_t wi = (((size_t)k * g.C + c) * g.R + fr) * g.S + fs;
                size_t yi = (((size_t)n * g.K + k) * P + p) * Q + q;
                if (what == 0) out[yi] += (double)x[xi] * w[wi];
                if (what == 1) out[xi] += (double)y[yi] * w[wi];
                if (what == 2) out[wi] += (double)y[yi] * x[xi];
              }
  return out;
}
static double rel_err(const std::vector<float> &got, const std::vector<double> &want) {
  double md = 0, mw = 0;
  for (size_t i = 0; i < want.size(); i++) {
    md = fmax(md, fabs(got[i] - want[i]));
    mw = fmax(mw, fabs(want[i]));
  }
  return mw > 0 ? md / mw : md;
}

static cudnnHandle_t g_h;
static const float k_one = 1.0f, k_zero = 0.0f;

// ---- in-process checks --------------------------------------------------------------------------
// x = 1..9 (3x3), w = [1 2; 3 4]: cross-correlation gives 37 47 67 77, convolution (the filter
// flipped to [4 3; 2 1]) gives 23 33 53 63.
static void test_known_values() {
  const float want[2][4] = {{23, 33, 53, 63}, {37, 47, 67, 77}};
  std::vector<float> x = {1, 2, 3, 4, 5, 6, 7, 8, 9}, w = {1, 2, 3, 4};
  float *dx = dalloc<float>(9), *dw = dalloc<float>(4), *dy = dalloc<float>(4);
  up(dx, x);
  up(dw, w);
  for (int m = 0; m < 2; m++) {
    geom g = {1, 1, 3, 3, 1, 2, 2,
              0, 0, 1, 1, 1, 1, m ? CUDNN_CROSS_CORRELATION : CUDNN_CONVOLUTION};
    descs d(g);
    int n, c, h, wo;
    DNN_OK(cudnnGetConvolution2dForwardOutputDim(d.c, d.x, d.w, &n, &c, &h, &wo));
    T_CHECK(n == 1 && c == 1 && h == 2 && wo == 2, "output dim %d %d %d %d", n, c, h, wo);
    DNN_OK(cudnnConvolutionForward(g_h, &k_one, d.x, dx, d.w, dw, d.c,
                                   CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &k_zero, d.y,
                                   dy));
    std::vector<float> got = down(dy, 4);
    for (int i = 0; i < 4; i++)
      T_CHECK(got[i] == want[m][i], "%s y[%d] = %g, want %g",
              m ? "cross-correlation" : "convolution", i, got[i], want[m][i]);
  }
  // The same in bf16 storage (small integers are exact).
  std::vector<__nv_bfloat16> xb(9), wb(4);
  for (int i = 0; i < 9; i++)
    xb[i] = __float2bfloat16_rn(x[i]);
  for (int i = 0; i < 4; i++)
    wb[i] = __float2bfloat16_rn(w[i]);
  __nv_bfloat16 *bx = dalloc<__nv_bfloat16>(9), *bw = dalloc<__nv_bfloat16>(4),
                *by = dalloc<__nv_bfloat16>(4);
  up(bx, xb);
  up(bw, wb);
  geom g = {1, 1, 3, 3, 1, 2, 2, 0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION};
  descs d(g, CUDNN_TENSOR_OP_MATH, CUDNN_DATA_BFLOAT16);
  DNN_OK(cudnnConvolutionForward(g_h, &k_one, d.x, bx, d.w, bw, d.c,
                                 CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &k_zero, d.y,
                                 by));
  std::vector<__nv_bfloat16> gb = down(by, 4);
  for (int i = 0; i < 4; i++)
    T_CHECK(__bfloat162float(gb[i]) == want[1][i], "bf16 y[%d] = %g", i, __bfloat162float(gb[i]));
  cudaFree(dx), cudaFree(dw), cudaFree(dy), cudaFree(bx), cudaFree(bw), cudaFree(by);
  printf("ok   a hand-computed convolution; CONVOLUTION flips the filter, CROSS_CORRELATION not\n");
}

// Forward, backward data and backward filter with pad, stride and dilation (different per axis)
// against the direct double loops, in both modes, accumulating with beta = 1.
static void test_against_loops() {
  geom gs[2] = {{2, 3, 7, 6, 4, 3, 2, 1, 0, 2, 1, 1, 2, CUDNN_CROSS_CORRELATION},
                {1, 5, 9, 8, 3, 3, 3, 2, 1, 1, 2, 2, 1, CUDNN_CONVOLUTION}};
  for (const geom &g : gs) {
    descs d(g);
    std::vector<float> x = randv(g.nx()), w = randv(g.nw()), dy = randv(g.ny());
    std::vector<float> y0 = randv(g.ny()), dx0 = randv(g.nx()), dw0 = randv(g.nw());
    float *px = dalloc<float>(g.nx()), *pw = dalloc<float>(g.nw()), *py = dalloc<float>(g.ny());
    float *pdy = dalloc<float>(g.ny()), *pdx = dalloc<float>(g.nx()), *pdw = dalloc<float>(g.nw());
    up(px, x), up(pw, w), up(pdy, dy), up(py, y0), up(pdx, dx0), up(pdw, dw0);
    size_t ws = 0;
    DNN_OK(cudnnGetConvolutionForwardWorkspaceSize(g_h, d.x, d.w, d.c, d.y,
                                                   CUDNN_CONVOLUTION_FWD_ALGO_GEMM, &ws));
    T_CHECK(ws > 0, "the GEMM algorithm needs an im2col workspace");
    char *pws = dalloc<char>(ws);
    DNN_OK(cudnnConvolutionForward(g_h, &k_one, d.x, px, d.w, pw, d.c,
                                   CUDNN_CONVOLUTION_FWD_ALGO_GEMM, pws, ws, &k_one, d.y, py));
    DNN_OK(cudnnConvolutionBackwardData(g_h, &k_one, d.w, pw, d.y, pdy, d.c,
                                        CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, NULL, 0, &k_one, d.x,
                                        pdx));
    DNN_OK(cudnnConvolutionBackwardFilter(g_h, &k_one, d.x, px, d.y, pdy, d.c,
                                          CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, NULL, 0, &k_one, d.w,
                                          pdw));
    std::vector<double> ry = reference(g, 0, x, w, dy), rdx = reference(g, 1, x, w, dy),
                        rdw = reference(g, 2, x, w, dy);
    for (size_t i = 0; i < ry.size(); i++)
      ry[i] += y0[i];
    for (size_t i = 0; i < rdx.size(); i++)
      rdx[i] += dx0[i];
    for (size_t i = 0; i < rdw.size(); i++)
      rdw[i] += dw0[i];
    double e0 = rel_err(down(py, g.ny()), ry), e1 = rel_err(down(pdx, g.nx()), rdx),
           e2 = rel_err(down(pdw, g.nw()), rdw);
    T_CHECK(e0 < 1e-6 && e1 < 1e-6 && e2 < 1e-6, "%s: fwd %.3g, bwd data %.3g, bwd filter %.3g",
            g.mode == CUDNN_CONVOLUTION ? "convolution" : "cross-correlation", e0, e1, e2);
    cudaFree(px), cudaFree(pw), cudaFree(py), cudaFree(pdy), cudaFree(pdx), cudaFree(pdw);
    cudaFree(pws);
  }
  printf("ok   forward / backward data / backward filter with pad, stride, dilation, both modes\n");
}

// dst = alpha * result + beta * dst; with beta = 0 a NaN-filled dst is never read.
static void test_alpha_beta() {
  geom g = {1, 1, 3, 3, 1, 2, 2, 0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION};
  descs d(g);
  float *dx = dalloc<float>(9), *dw = dalloc<float>(4), *dy = dalloc<float>(4);
  up(dx, std::vector<float>{1, 2, 3, 4, 5, 6, 7, 8, 9});
  up(dw, std::vector<float>{1, 2, 3, 4});
  cudaMemset(dy, 0xff, 16); // NaN
  float two = 2.0f;
  DNN_OK(cudnnConvolutionForward(g_h, &two, d.x, dx, d.w, dw, d.c,
                                 CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &k_zero, d.y,
                                 dy));
  T_CHECK(down(dy, 4) == (std::vector<float>{74, 94, 134, 154}), "alpha 2, beta 0 over NaN");
  DNN_OK(cudnnConvolutionForward(g_h, &k_one, d.x, dx, d.w, dw, d.c,
                                 CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &k_one, d.y,
                                 dy));
  T_CHECK(down(dy, 4) == (std::vector<float>{111, 141, 201, 231}), "beta 1 accumulates");
  cudaFree(dx), cudaFree(dw), cudaFree(dy);
  printf("ok   alpha/beta blending; beta = 0 does not read the output\n");
}

// Three channels of 1 + 2^-12 through a 1x1 filter of ones: 3 + 3*2^-12 in fp32, but TF32
// (10 mantissa bits) rounds each input to 1 first, and FP16 (ALLOW_CONVERSION) does too.
static void test_math_types() {
  geom g = {1, 3, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION};
  float *dx = dalloc<float>(3), *dw = dalloc<float>(3), *dy = dalloc<float>(1);
  const float v = 1.0f + 1.0f / 4096.0f, exact = 3.0f + 3.0f / 4096.0f;
  up(dx, std::vector<float>(3, v));
  up(dw, std::vector<float>(3, 1.0f));
  struct {
    cudnnMathType_t m;
    float want;
    const char *name;
  } cases[] = {{CUDNN_FMA_MATH, exact, "FMA"},
               {CUDNN_DEFAULT_MATH, 3.0f, "DEFAULT (TF32)"},
               {CUDNN_TENSOR_OP_MATH, 3.0f, "TENSOR_OP (TF32)"},
               {CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION, 3.0f, "ALLOW_CONVERSION (FP16)"}};
  for (auto &c : cases) {
    descs d(g, c.m);
    DNN_OK(cudnnConvolutionForward(g_h, &k_one, d.x, dx, d.w, dw, d.c,
                                   CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &k_zero, d.y,
                                   dy));
    float got = down(dy, 1)[0];
    T_CHECK(got == c.want, "%s math: %.9g, want %.9g", c.name, got, c.want);
  }
  // NVIDIA_TF32_OVERRIDE=0 turns TF32 off globally.
  setenv("NVIDIA_TF32_OVERRIDE", "0", 1);
  {
    descs d(g, CUDNN_DEFAULT_MATH);
    DNN_OK(cudnnConvolutionForward(g_h, &k_one, d.x, dx, d.w, dw, d.c,
                                   CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &k_zero, d.y,
                                   dy));
    T_CHECK(down(dy, 1)[0] == exact, "NVIDIA_TF32_OVERRIDE=0: %.9g", down(dy, 1)[0]);
  }
  unsetenv("NVIDIA_TF32_OVERRIDE");
  cudaFree(dx), cudaFree(dw), cudaFree(dy);
  printf("ok   FLOAT data: default / tensor-op math round like TF32, FMA math is exact fp32\n");
}

// The documented refusals.
static void test_validation() {
  geom g = {2, 3, 6, 5, 4, 3, 3, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION};
  descs d(g);
  float *px = dalloc<float>(g.nx()), *pw = dalloc<float>(g.nw()), *py = dalloc<float>(g.ny());
  cudnnTensorDescriptor_t t;
  cudnnFilterDescriptor_t f;
  cudnnConvolutionDescriptor_t c;
  cudnnCreateTensorDescriptor(&t);
  cudnnCreateFilterDescriptor(&f);
  cudnnCreateConvolutionDescriptor(&c);
  int n, ch, h, w;
  const cudnnConvolutionFwdAlgo_t A = CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM;
  // Used before being set.
  DNN_IS(cudnnConvolutionForward(g_h, &k_one, t, px, d.w, pw, d.c, A, NULL, 0, &k_zero, d.y, py),
         CUDNN_STATUS_BAD_PARAM);
  // Bad descriptor values.
  DNN_IS(cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 2, -1, 6, 5),
         CUDNN_STATUS_BAD_PARAM);
  DNN_IS(cudnnSetFilter4dDescriptor(f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 4, 3, -3, 3),
         CUDNN_STATUS_BAD_PARAM);
  DNN_IS(cudnnSetConvolution2dDescriptor(c, -1, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                         CUDNN_DATA_FLOAT),
         CUDNN_STATUS_BAD_PARAM);
  DNN_IS(cudnnSetConvolution2dDescriptor(c, 0, 0, 0, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                         CUDNN_DATA_FLOAT),
         CUDNN_STATUS_BAD_PARAM);
  DNN_IS(cudnnSetConvolutionMathType(c, (cudnnMathType_t)7), CUDNN_STATUS_BAD_PARAM);
  // A filter for 2 input channels on a 3-channel image.
  DNN_OK(cudnnSetFilter4dDescriptor(f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 4, 2, 3, 3));
  DNN_IS(cudnnGetConvolution2dForwardOutputDim(d.c, d.x, f, &n, &ch, &h, &w),
         CUDNN_STATUS_BAD_PARAM);
  DNN_IS(cudnnConvolutionForward(g_h, &k_one, d.x, px, f, pw, d.c, A, NULL, 0, &k_zero, d.y, py),
         CUDNN_STATUS_BAD_PARAM);
  char msg[256];
  cudnnGetLastErrorString(msg, sizeof msg);
  T_CHECK(strstr(msg, "feature maps") != NULL, "last error string: \"%s\"", msg);
  // A filter larger than the padded image.
  DNN_OK(cudnnSetFilter4dDescriptor(f, CUDNN_DATA_FLOAT, CUDNN_TENSOR_NCHW, 4, 3, 9, 3));
  DNN_IS(cudnnGetConvolution2dForwardOutputDim(d.c, d.x, f, &n, &ch, &h, &w),
         CUDNN_STATUS_BAD_PARAM);
  // Outputs that do not fit: wrong channel count (BAD_PARAM), wrong spatial size (forward:
  // NOT_SUPPORTED; backward data: BAD_PARAM, as documented).
  DNN_OK(cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 2, 5, 6, 5));
  DNN_IS(cudnnConvolutionForward(g_h, &k_one, d.x, px, d.w, pw, d.c, A, NULL, 0, &k_zero, t, py),
         CUDNN_STATUS_BAD_PARAM);
  DNN_IS(cudnnConvolutionBackwardFilter(g_h, &k_one, d.x, px, t, py, d.c,
                                        CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, NULL, 0, &k_zero, d.w,
                                        pw),
         CUDNN_STATUS_BAD_PARAM);
  DNN_OK(cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NCHW, CUDNN_DATA_FLOAT, 2, 4, 5, 5));
  DNN_IS(cudnnConvolutionForward(g_h, &k_one, d.x, px, d.w, pw, d.c, A, NULL, 0, &k_zero, t, py),
         CUDNN_STATUS_NOT_SUPPORTED);
  size_t ws1 = 0;
  DNN_OK(cudnnGetConvolutionBackwardDataWorkspaceSize(g_h, d.w, d.y, d.c, d.x,
                                                      CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, &ws1));
  char *pws = dalloc<char>(ws1);
  DNN_IS(cudnnConvolutionBackwardData(g_h, &k_one, d.w, pw, t, py, d.c,
                                      CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, pws, ws1, &k_zero, d.x,
                                      px),
         CUDNN_STATUS_BAD_PARAM);
  // Data types that differ; a compute type that is not an offered configuration.
  DNN_OK(cudnnSetTensor4dDescriptor(t, CUDNN_TENSOR_NCHW, CUDNN_DATA_BFLOAT16, 2, 4, 6, 5));
  DNN_IS(cudnnConvolutionForward(g_h, &k_one, d.x, px, d.w, pw, d.c, A, NULL, 0, &k_zero, t, py),
         CUDNN_STATUS_BAD_PARAM);
  DNN_OK(cudnnSetConvolution2dDescriptor(c, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION,
                                         CUDNN_DATA_HALF));
  DNN_IS(cudnnConvolutionForward(g_h, &k_one, d.x, px, d.w, pw, c, A, NULL, 0, &k_zero, d.y, py),
         CUDNN_STATUS_NOT_SUPPORTED);
  // Algorithms: one the shim does not offer, a workspace smaller than the query said.
  DNN_IS(cudnnConvolutionForward(g_h, &k_one, d.x, px, d.w, pw, d.c, CUDNN_CONVOLUTION_FWD_ALGO_FFT,
                                 NULL, 0, &k_zero, d.y, py),
         CUDNN_STATUS_NOT_SUPPORTED);
  DNN_IS(cudnnConvolutionBackwardData(g_h, &k_one, d.w, pw, d.y, py, d.c,
                                      CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, pws, ws1 - 1, &k_zero, d.x,
                                      px),
         CUDNN_STATUS_BAD_PARAM);
  // NULL arguments.
  DNN_IS(cudnnConvolutionForward(g_h, NULL, d.x, px, d.w, pw, d.c, A, NULL, 0, &k_zero, d.y, py),
         CUDNN_STATUS_BAD_PARAM);
  DNN_IS(cudnnConvolutionForward(NULL, &k_one, d.x, px, d.w, pw, d.c, A, NULL, 0, &k_zero, d.y, py),
         CUDNN_STATUS_BAD_PARAM);
  DNN_IS(cudnnSetStream(g_h, (cudaStream_t)(uintptr_t)0x1234), CUDNN_STATUS_BAD_PARAM);
  T_CHECK(
      !strcmp(cudnnGetErrorString(CUDNN_STATUS_BAD_PARAM), "CUDNN_STATUS_BAD_PARAM") &&
          !strcmp(cudnnGetErrorString(CUDNN_STATUS_NOT_SUPPORTED), "CUDNN_STATUS_NOT_SUPPORTED"),
      "status names");
  cudnnDestroyTensorDescriptor(t);
  cudnnDestroyFilterDescriptor(f);
  cudnnDestroyConvolutionDescriptor(c);
  cudaFree(px), cudaFree(pw), cudaFree(py), cudaFree(pws);
  printf("ok   inconsistent descriptors, bad values, algorithms and workspaces are refused\n");
}

// The heuristics flag the documented non-deterministic algorithms, which then really differ
// between runs (seeds), while the deterministic ones are bitwise stable.
static void test_algorithms() {
  geom g = {2, 4, 9, 9, 16, 3, 3, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION};
  descs d(g);
  int max = 0, got = 0;
  DNN_OK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(g_h, &max));
  std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf((size_t)max);
  DNN_OK(
      cudnnGetConvolutionBackwardDataAlgorithm_v7(g_h, d.w, d.y, d.c, d.x, max, &got, perf.data()));
  bool saw0 = false, saw1 = false;
  for (int i = 0; i < got; i++) {
    if (perf[i].status != CUDNN_STATUS_SUCCESS) continue;
    size_t ws = 0;
    DNN_OK(
        cudnnGetConvolutionBackwardDataWorkspaceSize(g_h, d.w, d.y, d.c, d.x, perf[i].algo, &ws));
    T_CHECK(ws == perf[i].memory, "algo %d: heuristics say %zu bytes, the query %zu",
            (int)perf[i].algo, perf[i].memory, ws);
    if (perf[i].algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0) {
      saw0 = true;
      T_CHECK(perf[i].determinism == CUDNN_NON_DETERMINISTIC, "ALGO_0 determinism");
    }
    if (perf[i].algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1) {
      saw1 = true;
      T_CHECK(perf[i].determinism == CUDNN_DETERMINISTIC, "ALGO_1 determinism");
    }
  }
  T_CHECK(saw0 && saw1, "the heuristics list backward-data ALGO_0 and ALGO_1");

  std::vector<float> w = randv(g.nw()), dy = randv(g.ny()), x = randv(g.nx());
  float *pw = dalloc<float>(g.nw()), *pdy = dalloc<float>(g.ny()), *px = dalloc<float>(g.nx());
  float *pdx = dalloc<float>(g.nx()), *pdw = dalloc<float>(g.nw());
  up(pw, w), up(pdy, dy), up(px, x);
  size_t ws = (size_t)g.nw() * 4 * 4;
  char *pws = dalloc<char>(ws);
  std::vector<float> runs[2][2][2]; // [data/filter][algo 0/1][seed]
  for (int a = 0; a < 2; a++)
    for (int s = 0; s < 2; s++) {
      idoc_sim_set_seed((uint64_t)s + 1);
      DNN_OK(cudnnConvolutionBackwardData(g_h, &k_one, d.w, pw, d.y, pdy, d.c,
                                          a ? CUDNN_CONVOLUTION_BWD_DATA_ALGO_1
                                            : CUDNN_CONVOLUTION_BWD_DATA_ALGO_0,
                                          pws, ws, &k_zero, d.x, pdx));
      runs[0][a][s] = down(pdx, g.nx());
      DNN_OK(cudnnConvolutionBackwardFilter(g_h, &k_one, d.x, px, d.y, pdy, d.c,
                                            a ? CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1
                                              : CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0,
                                            pws, ws, &k_zero, d.w, pdw));
      runs[1][a][s] = down(pdw, g.nw());
    }
  idoc_sim_set_seed(1);
  for (int k = 0; k < 2; k++) {
    const char *nm = k ? "backward filter" : "backward data";
    T_CHECK(runs[k][0][0] != runs[k][0][1], "%s ALGO_0 must differ between seeds", nm);
    T_CHECK(runs[k][1][0] == runs[k][1][1], "%s ALGO_1 must be bitwise stable", nm);
  }
  cudaFree(pw), cudaFree(pdy), cudaFree(px), cudaFree(pdx), cudaFree(pdw), cudaFree(pws);
  printf("ok   heuristics and workspaces agree; non-deterministic algorithms differ by seed\n");
}

// ---- child cases (each ends the process) --------------------------------------------------------
static int child(const char *mode) {
  cudnnCreate(&g_h);
  geom g = {1, 2, 4, 4, 2, 3, 3, 1, 1, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION};
  descs d(g);
  float *px = dalloc<float>(g.nx()), *pw = dalloc<float>(g.nw()), *py = dalloc<float>(g.ny());
  static float host[64];
  if (!strcmp(mode, "host_operand")) {
    cudnnConvolutionForward(g_h, &k_one, d.x, host, d.w, pw, d.c,
                            CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &k_zero, d.y, py);
  } else if (!strcmp(mode, "short_operand")) { // x one element too small for its descriptor
    float *small = dalloc<float>(g.nx() - 1);
    cudnnConvolutionForward(g_h, &k_one, d.x, small, d.w, pw, d.c,
                            CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &k_zero, d.y, py);
  } else if (!strcmp(mode, "host_workspace")) {
    size_t ws = 0;
    cudnnGetConvolutionForwardWorkspaceSize(g_h, d.x, d.w, d.c, d.y,
                                            CUDNN_CONVOLUTION_FWD_ALGO_GEMM, &ws);
    std::vector<char> hw(ws);
    cudnnConvolutionForward(g_h, &k_one, d.x, px, d.w, pw, d.c, CUDNN_CONVOLUTION_FWD_ALGO_GEMM,
                            hw.data(), ws, &k_zero, d.y, py);
  } else if (!strcmp(mode, "device_alpha")) { // alpha must be host memory
    cudnnConvolutionForward(g_h, px, d.x, px, d.w, pw, d.c,
                            CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, NULL, 0, &k_zero, d.y, py);
  } else {
    fprintf(stderr, "unknown case %s\n", mode);
    return 2;
  }
  fprintf(stderr, "case %s did not fail\n", mode);
  return 0;
}

static void expect_death(const char *mode, const char *want) {
  int fd[2];
  if (pipe(fd) != 0) abort();
  pid_t pid = fork();
  if (pid == 0) {
    dup2(fd[1], 2);
    close(fd[0]);
    close(fd[1]);
    setenv("ASAN_OPTIONS", "detect_leaks=0", 1);
    execl(g_self, g_self, mode, (char *)NULL);
    _exit(127);
  }
  close(fd[1]);
  std::string err;
  char buf[4096];
  ssize_t k;
  while ((k = read(fd[0], buf, sizeof buf)) > 0)
    err.append(buf, (size_t)k);
  close(fd[0]);
  int st = 0;
  waitpid(pid, &st, 0);
  bool died = WIFSIGNALED(st) || (WIFEXITED(st) && WEXITSTATUS(st) != 0);
  bool said = err.find(want) != std::string::npos;
  T_CHECK(died && said, "case %s: want death with \"%s\"; status 0x%x, stderr:\n%s", mode, want, st,
          err.c_str());
  if (died && said) printf("ok   %-28s dies with \"%s\"\n", mode, want);
}

int main(int argc, char **argv) {
  g_self = argv[0];
  if (argc > 1) return child(argv[1]);
  DNN_OK(cudnnCreate(&g_h));
  cudaStream_t st;
  T_CHECK(cudaStreamCreate(&st) == cudaSuccess, "stream");
  DNN_OK(cudnnSetStream(g_h, st));
  test_known_values();
  test_against_loops();
  test_alpha_beta();
  test_math_types();
  test_validation();
  test_algorithms();
  DNN_OK(cudnnDestroy(g_h));
  cudaStreamDestroy(st);

  expect_death("host_operand", "x (128 bytes at");
  expect_death("short_operand", "is not inside one device allocation");
  expect_death("host_workspace", "workSpace");
  expect_death("device_alpha", "host code accessed device memory");
  return t_summary("test_sim_cudnn");
}
