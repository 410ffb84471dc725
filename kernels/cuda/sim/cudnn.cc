// cuDNN for the host SIMT simulator: the legacy convolution API (forward, backward data,
// backward filter) as direct fp32 loops over exactly the arguments cuDNN was given, so a wrong
// mode, pad, stride or descriptor in our code gives wrong numbers or a refusal instead of being
// mirrored. Semantics follow NVIDIA's documentation:
// - y[n,k,p,q] = sum_{c,r,s} x[n, c, p*u - pad_h + r*dil_h, q*v - pad_w + s*dil_w] * w[k,c,r',s']
//   with (r', s') = (r, s) for CUDNN_CROSS_CORRELATION and (R-1-r, S-1-s) for CUDNN_CONVOLUTION;
//   backward data and backward filter are its adjoints in x and w.
// - dst = alpha * result + beta * dst, computed in fp32; beta == 0 means dst is not read (it may
//   hold NaN). bf16/f16 outputs are rounded to nearest even.
// - FLOAT data under CUDNN_DEFAULT_MATH or CUDNN_TENSOR_OP_MATH may run on TF32 tensor cores
//   (sm_80+, and the simulated device is sm_90), so the inputs are rounded to TF32 there, unless
//   NVIDIA_TF32_OVERRIDE=0; CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION may convert FLOAT inputs to
//   FP16, so they are rounded to FP16; CUDNN_FMA_MATH is plain fp32. HALF/BFLOAT16 inputs are
//   exact on the tensor cores (fp32 accumulation) whatever the math type.
// - Status codes as documented: BAD_PARAM for NULL arguments, unset descriptors, non-matching
//   data types, channel counts or batch sizes, a dilated filter larger than the padded input,
//   and backward dy sizes that differ from cudnnGetConvolution2dForwardOutputDim; NOT_SUPPORTED
//   for a forward y of the wrong spatial size and for configurations or algorithms that are not
//   offered. Where the documentation is silent (a workspace smaller than the size the query
//   reported) the shim answers BAD_PARAM; cudnnGetLastErrorString says why.
// - Every operand and the workspace must lie inside device memory (else the process aborts, as a
//   GPU would fault); the workspace is filled with poison before use, so code that expects it to
//   keep anything, or passes one that aliases an operand, gets wrong numbers.
// - The algorithms cuDNN documents as non-deterministic (BWD_DATA_ALGO_0, BWD_FILTER_ALGO_0 and
//   _3) sum in an order drawn from the simulator's seed and a call counter, so their results
//   change between runs as atomics-based kernels do. The FFT and Winograd algorithms are not
//   simulated: they are reported and refused as CUDNN_STATUS_NOT_SUPPORTED.
// Only NCHW tensors, the PSEUDO (fp32 compute) configurations and FLOAT_CONFIG are simulated.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <vector>

#include "cuda_bf16.h"
#include "cuda_fp16.h"
#include "cudnn.h"
#include "kernels/cuda/sim/idoc_sim.h"
#include "kernels/cuda/sim/sim.h"

struct cudnnContext {
  cudaStream_t stream;
};
struct cudnnTensorStruct {
  bool set;
  cudnnDataType_t dt;
  int n, c, h, w;
};
struct cudnnFilterStruct {
  bool set;
  cudnnDataType_t dt;
  int k, c, h, w;
};
struct cudnnConvolutionStruct {
  bool set;
  int ph, pw, u, v, dh, dw;
  cudnnConvolutionMode_t mode;
  cudnnDataType_t compute;
  cudnnMathType_t math;
};

namespace idoc_sim {
namespace {

thread_local std::string g_last_error;
std::atomic<uint64_t> g_calls{0};

__attribute__((format(printf, 3, 4))) cudnnStatus_t refuse(cudnnStatus_t s, const char *api,
                                                           const char *fmt, ...) {
  char buf[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(buf, sizeof buf, fmt, ap);
  va_end(ap);
  g_last_error = std::string(api) + ": " + buf;
  return s;
}

bool valid_type(cudnnDataType_t t) {
  return t == CUDNN_DATA_FLOAT || t == CUDNN_DATA_HALF || t == CUDNN_DATA_BFLOAT16;
}
size_t type_size(cudnnDataType_t t) { return t == CUDNN_DATA_FLOAT ? 4 : 2; }
const char *type_name(cudnnDataType_t t) {
  switch (t) {
  case CUDNN_DATA_FLOAT: return "FLOAT";
  case CUDNN_DATA_HALF: return "HALF";
  case CUDNN_DATA_BFLOAT16: return "BFLOAT16";
  }
  return "?";
}

float load(const void *p, cudnnDataType_t t, size_t i) {
  switch (t) {
  case CUDNN_DATA_FLOAT: return ((const float *)p)[i];
  case CUDNN_DATA_HALF: return __half2float(((const __half *)p)[i]);
  case CUDNN_DATA_BFLOAT16: return __bfloat162float(((const __nv_bfloat16 *)p)[i]);
  }
  abort();
}
void store(void *p, cudnnDataType_t t, size_t i, float v) {
  switch (t) {
  case CUDNN_DATA_FLOAT: ((float *)p)[i] = v; return;
  case CUDNN_DATA_HALF: ((__half *)p)[i] = __float2half_rn(v); return;
  case CUDNN_DATA_BFLOAT16: ((__nv_bfloat16 *)p)[i] = __float2bfloat16_rn(v); return;
  }
  abort();
}

enum rounding { R_NONE, R_TF32, R_F16 };
float round_input(float v, rounding r) {
  switch (r) {
  case R_NONE: return v;
  case R_TF32: { // cvt.rna.tf32.f32: 10 mantissa bits, ties away from zero
    uint32_t u = f32_bits(v);
    if ((u & 0x7f800000u) != 0x7f800000u) u = (u + 0x1000u) & 0xffffe000u;
    return bits_f32(u);
  }
  case R_F16: return __half2float(__float2half_rn(v));
  }
  return v;
}

enum op_kind { FWD, BWD_DATA, BWD_FILTER };

// One convolution in cuDNN's terms: image x [N,C,H,W], filter w [K,C,R,S], output y [N,K,P,Q].
struct problem {
  int N, C, H, W, K, R, S, P, Q;
  int ph, pw, u, v, dh, dw;
  bool flip;
  cudnnDataType_t dt;
  rounding rnd;
};

size_t numel(const cudnnTensorStruct *t) { return (size_t)t->n * t->c * t->h * t->w; }
size_t numel(const cudnnFilterStruct *f) { return (size_t)f->k * f->c * f->h * f->w; }

bool tf32_overridden() {
  const char *e = getenv("NVIDIA_TF32_OVERRIDE");
  return e && !strcmp(e, "0");
}

// The checks cuDNN documents for these descriptors, in the status it documents. `x` is the image
// (x or dx), `y` the output (y or dy).
cudnnStatus_t validate(const char *api, op_kind op, const cudnnTensorStruct *x,
                       const cudnnFilterStruct *w, const cudnnConvolutionStruct *cd,
                       const cudnnTensorStruct *y, problem *pr) {
  if (!x || !w || !cd || !y) return refuse(CUDNN_STATUS_BAD_PARAM, api, "a descriptor is NULL");
  if (!x->set || !w->set || !cd->set || !y->set)
    return refuse(CUDNN_STATUS_BAD_PARAM, api, "a descriptor was created but never set");
  if (x->dt != w->dt || x->dt != y->dt)
    return refuse(CUDNN_STATUS_BAD_PARAM, api, "data types differ: x %s, w %s, y %s",
                  type_name(x->dt), type_name(w->dt), type_name(y->dt));
  if (x->c != w->c)
    return refuse(CUDNN_STATUS_BAD_PARAM, api,
                  "the image has %d feature maps but the filter expects %d", x->c, w->c);
  int er = (w->h - 1) * cd->dh + 1, es = (w->w - 1) * cd->dw + 1;
  if (er > x->h + 2 * cd->ph || es > x->w + 2 * cd->pw)
    return refuse(CUDNN_STATUS_BAD_PARAM, api,
                  "the dilated %dx%d filter is larger than the padded %dx%d input", er, es,
                  x->h + 2 * cd->ph, x->w + 2 * cd->pw);
  int P = 1 + (x->h + 2 * cd->ph - er) / cd->u, Q = 1 + (x->w + 2 * cd->pw - es) / cd->v;
  if (y->n != x->n || y->c != w->k)
    return refuse(CUDNN_STATUS_BAD_PARAM, api,
                  "the output is [%d, %d, ...] but the image and filter give [%d, %d, ...]", y->n,
                  y->c, x->n, w->k);
  if (y->h != P || y->w != Q)
    return refuse(op == FWD ? CUDNN_STATUS_NOT_SUPPORTED : CUDNN_STATUS_BAD_PARAM, api,
                  "the output is %dx%d but cudnnGetConvolution2dForwardOutputDim gives %dx%d", y->h,
                  y->w, P, Q);
  if (cd->compute != CUDNN_DATA_FLOAT)
    return refuse(CUDNN_STATUS_NOT_SUPPORTED, api,
                  "compute type %s with %s data: only FLOAT_CONFIG and the PSEUDO_HALF / "
                  "PSEUDO_BFLOAT16 configurations (fp32 compute) are simulated",
                  type_name(cd->compute), type_name(x->dt));
  rounding r = R_NONE;
  if (x->dt == CUDNN_DATA_FLOAT) {
    if ((cd->math == CUDNN_DEFAULT_MATH || cd->math == CUDNN_TENSOR_OP_MATH) && !tf32_overridden())
      r = R_TF32;
    else if (cd->math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION)
      r = R_F16;
  }
  *pr = problem{x->n,  x->c,   x->h,   x->w,  w->k,  w->h,   w->w,   P,
                Q,     cd->ph, cd->pw, cd->u, cd->v, cd->dh, cd->dw, cd->mode == CUDNN_CONVOLUTION,
                x->dt, r};
  return CUDNN_STATUS_SUCCESS;
}

// ---- the algorithms the shim offers -------------------------------------------------------------
// In the order its heuristics rank them. The workspace sizes are the shim's own (a GEMM's im2col
// buffer, an fp32 copy of the filter, ...): nonzero where the real algorithms need memory, so a
// caller that does not query and pass the workspace is caught.
struct algo_desc {
  int algo;
  bool simulated, deterministic, tensor_op;
};
const algo_desc k_fwd_algos[] = {
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM, true, true, true},
    {CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM, true, true, false},
    {CUDNN_CONVOLUTION_FWD_ALGO_GEMM, true, true, false},
    {CUDNN_CONVOLUTION_FWD_ALGO_DIRECT, false, true, false},
    {CUDNN_CONVOLUTION_FWD_ALGO_FFT, false, true, false},
    {CUDNN_CONVOLUTION_FWD_ALGO_FFT_TILING, false, true, false},
    {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD, false, true, false},
    {CUDNN_CONVOLUTION_FWD_ALGO_WINOGRAD_NONFUSED, false, true, false},
};
const algo_desc k_bwd_data_algos[] = {
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_0, true, false, true},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_1, true, true, true},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT, false, true, false},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_FFT_TILING, false, true, false},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD, false, true, false},
    {CUDNN_CONVOLUTION_BWD_DATA_ALGO_WINOGRAD_NONFUSED, false, true, false},
};
const algo_desc k_bwd_filter_algos[] = {
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0, true, false, false},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3, true, false, true},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1, true, true, true},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT, false, true, false},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_WINOGRAD_NONFUSED, false, true, false},
    {CUDNN_CONVOLUTION_BWD_FILTER_ALGO_FFT_TILING, false, true, false},
};
template <size_t N> int count_of(const algo_desc (&)[N]) { return (int)N; }

const algo_desc *find_algo(op_kind op, int algo) {
  const algo_desc *t = op == FWD        ? k_fwd_algos
                       : op == BWD_DATA ? k_bwd_data_algos
                                        : k_bwd_filter_algos;
  int n = op == FWD        ? count_of(k_fwd_algos)
          : op == BWD_DATA ? count_of(k_bwd_data_algos)
                           : count_of(k_bwd_filter_algos);
  for (int i = 0; i < n; i++)
    if (t[i].algo == algo) return &t[i];
  return NULL;
}

size_t workspace_bytes(op_kind op, int algo, const problem &p) {
  size_t crs = (size_t)p.C * p.R * p.S, kcrs = crs * p.K;
  if (op == FWD) {
    if (algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM) return crs * sizeof(int);
    if (algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM) return crs * (size_t)p.P * p.Q * type_size(p.dt);
    return 0;
  }
  if (op == BWD_DATA) return algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1 ? kcrs * sizeof(float) : 0;
  return algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 ? 0 : kcrs * sizeof(float);
}

template <class Perf>
cudnnStatus_t heuristics(const char *api, op_kind op, cudnnHandle_t h, const cudnnTensorStruct *x,
                         const cudnnFilterStruct *w, const cudnnConvolutionStruct *cd,
                         const cudnnTensorStruct *y, int requested, int *returned, Perf *perf) {
  if (!h) return refuse(CUDNN_STATUS_BAD_PARAM, api, "handle is NULL");
  if (!returned || !perf) return refuse(CUDNN_STATUS_BAD_PARAM, api, "an output pointer is NULL");
  if (requested < 1) return refuse(CUDNN_STATUS_BAD_PARAM, api, "requestedAlgoCount < 1");
  problem p;
  cudnnStatus_t s = validate(api, op, x, w, cd, y, &p);
  if (s != CUDNN_STATUS_SUCCESS) return s;
  const algo_desc *t = op == FWD        ? k_fwd_algos
                       : op == BWD_DATA ? k_bwd_data_algos
                                        : k_bwd_filter_algos;
  int n = op == FWD        ? count_of(k_fwd_algos)
          : op == BWD_DATA ? count_of(k_bwd_data_algos)
                           : count_of(k_bwd_filter_algos);
  // As cuDNN does, tensor-core variants are listed (first: they rank fastest) next to the
  // descriptor's own math type; a caller that takes one must set that math type to use it.
  std::vector<Perf> out;
  for (int i = 0; i < n; i++) {
    Perf e;
    memset(&e, 0, sizeof e);
    e.algo = (decltype(e.algo))t[i].algo;
    e.status = t[i].simulated ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_NOT_SUPPORTED;
    e.time = -1.0f;
    e.memory = t[i].simulated ? workspace_bytes(op, t[i].algo, p) : 0;
    e.determinism = t[i].deterministic ? CUDNN_DETERMINISTIC : CUDNN_NON_DETERMINISTIC;
    if (t[i].simulated && t[i].tensor_op && cd->math != CUDNN_TENSOR_OP_MATH) {
      e.mathType = CUDNN_TENSOR_OP_MATH;
      out.push_back(e);
    }
    e.mathType = cd->math;
    out.push_back(e);
  }
  std::stable_partition(out.begin(), out.end(),
                        [](const Perf &e) { return e.status == CUDNN_STATUS_SUCCESS; });
  *returned = std::min(requested, (int)out.size());
  std::copy(out.begin(), out.begin() + *returned, perf);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t workspace_query(const char *api, op_kind op, cudnnHandle_t h,
                              const cudnnTensorStruct *x, const cudnnFilterStruct *w,
                              const cudnnConvolutionStruct *cd, const cudnnTensorStruct *y,
                              int algo, size_t *bytes) {
  if (!h) return refuse(CUDNN_STATUS_BAD_PARAM, api, "handle is NULL");
  if (!bytes) return refuse(CUDNN_STATUS_BAD_PARAM, api, "sizeInBytes is NULL");
  problem p;
  cudnnStatus_t s = validate(api, op, x, w, cd, y, &p);
  if (s != CUDNN_STATUS_SUCCESS) return s;
  const algo_desc *a = find_algo(op, algo);
  if (!a) return refuse(CUDNN_STATUS_BAD_PARAM, api, "algorithm %d is not an enumerant", algo);
  if (!a->simulated)
    return refuse(CUDNN_STATUS_NOT_SUPPORTED, api, "algorithm %d is not offered", algo);
  *bytes = workspace_bytes(op, algo, p);
  return CUDNN_STATUS_SUCCESS;
}

// ---- the arithmetic -----------------------------------------------------------------------------
int ceil_div(int a, int b) { return a >= 0 ? (a + b - 1) / b : -(-a / b); }
// Output columns q whose tap q*v + off lands in [0, W): [lo, hi).
void tap_range(int W, int v, int off, int Q, int *lo, int *hi) {
  int l = std::max(0, ceil_div(-off, v)), e = std::min(Q, ceil_div(W - off, v));
  *lo = l;
  *hi = std::max(l, e);
}

// An order of n items: natural for deterministic algorithms, else shuffled from the simulator's
// seed and a call counter (seed 0 keeps the natural order, as it does for threads).
std::vector<int> order(size_t n, bool deterministic) {
  std::vector<int> o(n);
  for (size_t i = 0; i < n; i++)
    o[i] = (int)i;
  uint64_t seed = idoc_sim_get_seed();
  if (deterministic || seed == 0) return o;
  uint64_t st = seed * 0x9e3779b97f4a7c15ull + g_calls.fetch_add(1) * 0xbf58476d1ce4e5b9ull;
  for (size_t i = n; i > 1; i--) {
    st += 0x9e3779b97f4a7c15ull;
    uint64_t z = st;
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    z ^= z >> 31;
    std::swap(o[i - 1], o[z % i]);
  }
  return o;
}

// y = conv(x, w) (w already in cross-correlation orientation); sums over (c, r, s) in order.
void forward(const problem &p, const float *x, const float *w, float *y) {
  size_t HW = (size_t)p.H * p.W, PQ = (size_t)p.P * p.Q;
  for (int n = 0; n < p.N; n++)
    for (int k = 0; k < p.K; k++) {
      float *yo = y + ((size_t)n * p.K + k) * PQ;
      std::fill(yo, yo + PQ, 0.0f);
      for (int c = 0; c < p.C; c++) {
        const float *xc = x + ((size_t)n * p.C + c) * HW;
        const float *wk = w + ((size_t)k * p.C + c) * p.R * p.S;
        for (int r = 0; r < p.R; r++)
          for (int s = 0; s < p.S; s++) {
            float wv = wk[r * p.S + s];
            int off = s * p.dw - p.pw, lo, hi;
            tap_range(p.W, p.v, off, p.Q, &lo, &hi);
            for (int q0 = 0; q0 < p.P; q0++) {
              int ih = q0 * p.u - p.ph + r * p.dh;
              if (ih < 0 || ih >= p.H) continue;
              const float *xr = xc + (size_t)ih * p.W;
              float *yr = yo + (size_t)q0 * p.Q;
              for (int q = lo; q < hi; q++)
                yr[q] += wv * xr[q * p.v + off];
            }
          }
      }
    }
}

// dx = conv^T(dy, w): every image element sums its taps (k, r, s) in `taps` order.
void backward_data(const problem &p, const float *dy, const float *w, float *dx,
                   const std::vector<int> &taps) {
  size_t HW = (size_t)p.H * p.W, PQ = (size_t)p.P * p.Q;
  int RS = p.R * p.S;
  for (int n = 0; n < p.N; n++)
    for (int c = 0; c < p.C; c++) {
      float *xo = dx + ((size_t)n * p.C + c) * HW;
      std::fill(xo, xo + HW, 0.0f);
      for (int t : taps) {
        int k = t / RS, r = t % RS / p.S, s = t % p.S;
        float wv = w[(((size_t)k * p.C + c) * p.R + r) * p.S + s];
        int off = s * p.dw - p.pw, lo, hi;
        tap_range(p.W, p.v, off, p.Q, &lo, &hi);
        const float *dyk = dy + ((size_t)n * p.K + k) * PQ;
        for (int q0 = 0; q0 < p.P; q0++) {
          int ih = q0 * p.u - p.ph + r * p.dh;
          if (ih < 0 || ih >= p.H) continue;
          const float *dr = dyk + (size_t)q0 * p.Q;
          float *xr = xo + (size_t)ih * p.W;
          for (int q = lo; q < hi; q++)
            xr[q * p.v + off] += wv * dr[q];
        }
      }
    }
}

// dw = sum over images of dy (x) x: each filter tap sums its (n, p) output rows in `rows` order.
void backward_filter(const problem &p, const float *x, const float *dy, float *dw,
                     const std::vector<int> &rows) {
  size_t HW = (size_t)p.H * p.W, PQ = (size_t)p.P * p.Q;
  for (int k = 0; k < p.K; k++)
    for (int c = 0; c < p.C; c++)
      for (int r = 0; r < p.R; r++)
        for (int s = 0; s < p.S; s++) {
          int off = s * p.dw - p.pw, lo, hi;
          tap_range(p.W, p.v, off, p.Q, &lo, &hi);
          float sum = 0.0f;
          for (int t : rows) {
            int n = t / p.P, q0 = t % p.P, ih = q0 * p.u - p.ph + r * p.dh;
            if (ih < 0 || ih >= p.H) continue;
            const float *dr = dy + ((size_t)n * p.K + k) * PQ + (size_t)q0 * p.Q;
            const float *xr = x + ((size_t)n * p.C + c) * HW + (size_t)ih * p.W;
            float part = 0.0f;
            for (int q = lo; q < hi; q++)
              part += dr[q] * xr[q * p.v + off];
            sum += part;
          }
          dw[(((size_t)k * p.C + c) * p.R + r) * p.S + s] = sum;
        }
}

void flip_filter(std::vector<float> &f, const problem &p) {
  int RS = p.R * p.S;
  for (size_t base = 0; base < f.size(); base += RS)
    std::reverse(f.begin() + base, f.begin() + base + RS); // (r, s) -> (R-1-r, S-1-s)
}

// fp32 copy of an operand, rounded as the math type says; filters are turned into
// cross-correlation orientation for CUDNN_CONVOLUTION.
std::vector<float> widen(const void *d, size_t n, const problem &p) {
  std::vector<float> o(n);
  for (size_t i = 0; i < n; i++)
    o[i] = round_input(load(d, p.dt, i), p.rnd);
  return o;
}
std::vector<float> widen_filter(const void *d, const problem &p) {
  std::vector<float> o = widen(d, (size_t)p.K * p.C * p.R * p.S, p);
  if (p.flip) flip_filter(o, p);
  return o;
}

void blend(void *dst, const problem &p, size_t n, const std::vector<float> &res, float alpha,
           float beta) {
  for (size_t i = 0; i < n; i++) {
    float v = alpha * res[i];
    if (beta != 0.0f) v += beta * load(dst, p.dt, i);
    store(dst, p.dt, i, v);
  }
}

void require_device(const char *api, const char *name, const void *ptr, size_t bytes) {
  if (!heap_contains(ptr, bytes))
    fail("%s: %s (%zu bytes at %p) is not inside one device allocation", api, name, bytes, ptr);
}

struct operands {
  const void *a, *b; // the two inputs (see run)
  void *out;
};

// The three calls share their checks: descriptors, algorithm, workspace, device memory; then
// the result is computed in fp32 and blended into the output.
cudnnStatus_t run(const char *api, op_kind op, cudnnHandle_t h, const void *alpha,
                  const cudnnTensorStruct *x, const cudnnFilterStruct *w,
                  const cudnnConvolutionStruct *cd, const cudnnTensorStruct *y, int algo, void *ws,
                  size_t ws_bytes, const void *beta, operands ops) {
  if (!h) return refuse(CUDNN_STATUS_BAD_PARAM, api, "handle is NULL");
  if (!alpha || !beta) return refuse(CUDNN_STATUS_BAD_PARAM, api, "alpha or beta is NULL");
  if (!ops.a || !ops.b || !ops.out)
    return refuse(CUDNN_STATUS_BAD_PARAM, api, "a data pointer is NULL");
  problem p;
  cudnnStatus_t s = validate(api, op, x, w, cd, y, &p);
  if (s != CUDNN_STATUS_SUCCESS) return s;
  const algo_desc *a = find_algo(op, algo);
  if (!a) return refuse(CUDNN_STATUS_BAD_PARAM, api, "algorithm %d is not an enumerant", algo);
  if (!a->simulated)
    return refuse(CUDNN_STATUS_NOT_SUPPORTED, api, "algorithm %d is not offered", algo);
  size_t need = workspace_bytes(op, algo, p);
  if (ws_bytes < need || (need && !ws))
    return refuse(CUDNN_STATUS_BAD_PARAM, api,
                  "algorithm %d needs %zu bytes of workspace; %zu at %p were given", algo, need,
                  ws_bytes, ws);
  // alpha and beta are host memory (float for FLOAT, HALF and BFLOAT16 data): read before the
  // device heap opens, so a device pointer faults.
  float al, be;
  memcpy(&al, alpha, sizeof al);
  memcpy(&be, beta, sizeof be);

  size_t nx = numel(x), nw = numel(w), ny = numel(y), es = type_size(p.dt);
  device_scope scope;
  const char *names[3][3] = {
      {"x", "w", "y"}, {"w", "dy", "dx"}, {"x", "dy", "dw"}}; // a, b, out for each op
  size_t sizes[3][3] = {{nx, nw, ny}, {nw, ny, nx}, {nx, ny, nw}};
  require_device(api, names[op][0], ops.a, sizes[op][0] * es);
  require_device(api, names[op][1], ops.b, sizes[op][1] * es);
  require_device(api, names[op][2], ops.out, sizes[op][2] * es);
  if (ws && ws_bytes) require_device(api, "workSpace", ws, ws_bytes);
  if (need) memset(ws, 0xff, need); // the algorithm's scratch: whatever was there is gone

  std::vector<float> res;
  if (op == FWD) {
    std::vector<float> fx = widen(ops.a, nx, p), fw = widen_filter(ops.b, p);
    res.resize(ny);
    forward(p, fx.data(), fw.data(), res.data());
  } else if (op == BWD_DATA) {
    std::vector<float> fw = widen_filter(ops.a, p), fdy = widen(ops.b, ny, p);
    res.resize(nx);
    backward_data(p, fdy.data(), fw.data(), res.data(),
                  order((size_t)p.K * p.R * p.S, a->deterministic));
  } else {
    std::vector<float> fx = widen(ops.a, nx, p), fdy = widen(ops.b, ny, p);
    res.resize(nw);
    backward_filter(p, fx.data(), fdy.data(), res.data(),
                    order((size_t)p.N * p.P, a->deterministic));
    if (p.flip) flip_filter(res, p);
  }
  blend(ops.out, p, res.size(), res, al, be);
  return CUDNN_STATUS_SUCCESS;
}

} // namespace
} // namespace idoc_sim

using namespace idoc_sim;

extern "C" {

const char *cudnnGetErrorString(cudnnStatus_t s) {
  switch (s) {
  case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
  case CUDNN_STATUS_NOT_INITIALIZED: return "CUDNN_STATUS_NOT_INITIALIZED";
  case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
  case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
  case CUDNN_STATUS_INTERNAL_ERROR: return "CUDNN_STATUS_INTERNAL_ERROR";
  case CUDNN_STATUS_EXECUTION_FAILED: return "CUDNN_STATUS_EXECUTION_FAILED";
  }
  return "CUDNN_STATUS_UNKNOWN";
}
void cudnnGetLastErrorString(char *message, size_t max_size) {
  if (!message || !max_size) return;
  snprintf(message, max_size, "%s", g_last_error.c_str());
}

cudnnStatus_t cudnnCreate(cudnnHandle_t *handle) {
  if (!handle) return refuse(CUDNN_STATUS_BAD_PARAM, "cudnnCreate", "handle is NULL");
  *handle = new cudnnContext{NULL};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t handle) {
  if (!handle) return refuse(CUDNN_STATUS_BAD_PARAM, "cudnnDestroy", "handle is NULL");
  delete handle;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t handle, cudaStream_t stream) {
  if (!handle) return refuse(CUDNN_STATUS_BAD_PARAM, "cudnnSetStream", "handle is NULL");
  if (!stream_valid(stream))
    return refuse(CUDNN_STATUS_BAD_PARAM, "cudnnSetStream", "%p is not a stream", (void *)stream);
  handle->stream = stream;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetStream(cudnnHandle_t handle, cudaStream_t *stream) {
  if (!handle || !stream)
    return refuse(CUDNN_STATUS_BAD_PARAM, "cudnnGetStream", "a pointer is NULL");
  *stream = handle->stream;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d) {
  if (!d) return refuse(CUDNN_STATUS_BAD_PARAM, "cudnnCreateTensorDescriptor", "NULL");
  *d = new cudnnTensorStruct{false, CUDNN_DATA_FLOAT, 0, 0, 0, 0};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format,
                                         cudnnDataType_t dt, int n, int c, int h, int w) {
  const char *api = "cudnnSetTensor4dDescriptor";
  if (!d) return refuse(CUDNN_STATUS_BAD_PARAM, api, "tensorDesc is NULL");
  if (format != CUDNN_TENSOR_NCHW || !valid_type(dt))
    return refuse(CUDNN_STATUS_BAD_PARAM, api, "format %d / data type %d", (int)format, (int)dt);
  if (n < 0 || c < 0 || h < 0 || w < 0)
    return refuse(CUDNN_STATUS_BAD_PARAM, api, "negative dimension [%d, %d, %d, %d]", n, c, h, w);
  if ((double)n * c * h * w > 2147483647.0)
    return refuse(CUDNN_STATUS_NOT_SUPPORTED, api, "more than 2 Giga-elements");
  *d = cudnnTensorStruct{true, dt, n, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d) {
  if (!d) return refuse(CUDNN_STATUS_BAD_PARAM, "cudnnCreateFilterDescriptor", "NULL");
  *d = new cudnnFilterStruct{false, CUDNN_DATA_FLOAT, 0, 0, 0, 0};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t dt,
                                         cudnnTensorFormat_t format, int k, int c, int h, int w) {
  const char *api = "cudnnSetFilter4dDescriptor";
  if (!d) return refuse(CUDNN_STATUS_BAD_PARAM, api, "filterDesc is NULL");
  if (format != CUDNN_TENSOR_NCHW || !valid_type(dt))
    return refuse(CUDNN_STATUS_BAD_PARAM, api, "format %d / data type %d", (int)format, (int)dt);
  if (k < 0 || c < 0 || h < 0 || w < 0)
    return refuse(CUDNN_STATUS_BAD_PARAM, api, "negative dimension [%d, %d, %d, %d]", k, c, h, w);
  *d = cudnnFilterStruct{true, dt, k, c, h, w};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d) {
  if (!d) return refuse(CUDNN_STATUS_BAD_PARAM, "cudnnCreateConvolutionDescriptor", "NULL");
  *d = new cudnnConvolutionStruct{
      false, 0, 0, 1, 1, 1, 1, CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT, CUDNN_DEFAULT_MATH};
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int pad_h, int pad_w,
                                              int u, int v, int dilation_h, int dilation_w,
                                              cudnnConvolutionMode_t mode,
                                              cudnnDataType_t compute) {
  const char *api = "cudnnSetConvolution2dDescriptor";
  if (!d) return refuse(CUDNN_STATUS_BAD_PARAM, api, "convDesc is NULL");
  if (pad_h < 0 || pad_w < 0 || u <= 0 || v <= 0 || dilation_h <= 0 || dilation_w <= 0)
    return refuse(CUDNN_STATUS_BAD_PARAM, api,
                  "pad %d,%d (must be >= 0), stride %d,%d and dilation %d,%d (must be > 0)", pad_h,
                  pad_w, u, v, dilation_h, dilation_w);
  if ((mode != CUDNN_CONVOLUTION && mode != CUDNN_CROSS_CORRELATION) || !valid_type(compute))
    return refuse(CUDNN_STATUS_BAD_PARAM, api, "mode %d / compute type %d", (int)mode,
                  (int)compute);
  d->set = true;
  d->ph = pad_h, d->pw = pad_w, d->u = u, d->v = v, d->dh = dilation_h, d->dw = dilation_w;
  d->mode = mode;
  d->compute = compute;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m) {
  const char *api = "cudnnSetConvolutionMathType";
  if (!d) return refuse(CUDNN_STATUS_BAD_PARAM, api, "convDesc is NULL");
  if (m != CUDNN_DEFAULT_MATH && m != CUDNN_TENSOR_OP_MATH &&
      m != CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION && m != CUDNN_FMA_MATH)
    return refuse(CUDNN_STATUS_BAD_PARAM, api, "math type %d", (int)m);
  d->math = m;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) {
  delete d;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolution2dForwardOutputDim(const cudnnConvolutionDescriptor_t cd,
                                                    const cudnnTensorDescriptor_t x,
                                                    const cudnnFilterDescriptor_t w, int *n, int *c,
                                                    int *h, int *wo) {
  const char *api = "cudnnGetConvolution2dForwardOutputDim";
  if (!cd || !x || !w || !n || !c || !h || !wo)
    return refuse(CUDNN_STATUS_BAD_PARAM, api, "a parameter is NULL");
  if (!cd->set || !x->set || !w->set)
    return refuse(CUDNN_STATUS_BAD_PARAM, api, "a descriptor was created but never set");
  if (x->c != w->c)
    return refuse(CUDNN_STATUS_BAD_PARAM, api,
                  "the input has %d feature maps but the filter expects %d", x->c, w->c);
  int er = (w->h - 1) * cd->dh + 1, es = (w->w - 1) * cd->dw + 1;
  if (er > x->h + 2 * cd->ph || es > x->w + 2 * cd->pw)
    return refuse(CUDNN_STATUS_BAD_PARAM, api,
                  "the dilated %dx%d filter is larger than the padded %dx%d input", er, es,
                  x->h + 2 * cd->ph, x->w + 2 * cd->pw);
  *n = x->n;
  *c = w->k;
  *h = 1 + (x->h + 2 * cd->ph - er) / cd->u;
  *wo = 1 + (x->w + 2 * cd->pw - es) / cd->v;
  return CUDNN_STATUS_SUCCESS;
}

// Each list holds every algorithm once per math variant (see heuristics).
cudnnStatus_t cudnnGetConvolutionForwardAlgorithmMaxCount(cudnnHandle_t h, int *count) {
  if (!h || !count)
    return refuse(CUDNN_STATUS_BAD_PARAM, "cudnnGetConvolutionForwardAlgorithmMaxCount", "NULL");
  *count = 2 * CUDNN_CONVOLUTION_FWD_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithmMaxCount(cudnnHandle_t h, int *count) {
  if (!h || !count)
    return refuse(CUDNN_STATUS_BAD_PARAM, "cudnnGetConvolutionBackwardDataAlgorithmMaxCount",
                  "NULL");
  *count = 2 * CUDNN_CONVOLUTION_BWD_DATA_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(cudnnHandle_t h, int *count) {
  if (!h || !count)
    return refuse(CUDNN_STATUS_BAD_PARAM, "cudnnGetConvolutionBackwardFilterAlgorithmMaxCount",
                  "NULL");
  *count = 2 * CUDNN_CONVOLUTION_BWD_FILTER_ALGO_COUNT;
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(
    cudnnHandle_t h, const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w,
    const cudnnConvolutionDescriptor_t cd, const cudnnTensorDescriptor_t y, const int requested,
    int *returned, cudnnConvolutionFwdAlgoPerf_t *perf) {
  return heuristics("cudnnGetConvolutionForwardAlgorithm_v7", FWD, h, x, w, cd, y, requested,
                    returned, perf);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(
    cudnnHandle_t h, const cudnnFilterDescriptor_t w, const cudnnTensorDescriptor_t dy,
    const cudnnConvolutionDescriptor_t cd, const cudnnTensorDescriptor_t dx, const int requested,
    int *returned, cudnnConvolutionBwdDataAlgoPerf_t *perf) {
  return heuristics("cudnnGetConvolutionBackwardDataAlgorithm_v7", BWD_DATA, h, dx, w, cd, dy,
                    requested, returned, perf);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(
    cudnnHandle_t h, const cudnnTensorDescriptor_t x, const cudnnTensorDescriptor_t dy,
    const cudnnConvolutionDescriptor_t cd, const cudnnFilterDescriptor_t dw, const int requested,
    int *returned, cudnnConvolutionBwdFilterAlgoPerf_t *perf) {
  return heuristics("cudnnGetConvolutionBackwardFilterAlgorithm_v7", BWD_FILTER, h, x, dw, cd, dy,
                    requested, returned, perf);
}

cudnnStatus_t cudnnGetConvolutionForwardWorkspaceSize(
    cudnnHandle_t h, const cudnnTensorDescriptor_t x, const cudnnFilterDescriptor_t w,
    const cudnnConvolutionDescriptor_t cd, const cudnnTensorDescriptor_t y,
    cudnnConvolutionFwdAlgo_t algo, size_t *bytes) {
  return workspace_query("cudnnGetConvolutionForwardWorkspaceSize", FWD, h, x, w, cd, y, algo,
                         bytes);
}
cudnnStatus_t cudnnGetConvolutionBackwardDataWorkspaceSize(
    cudnnHandle_t h, const cudnnFilterDescriptor_t w, const cudnnTensorDescriptor_t dy,
    const cudnnConvolutionDescriptor_t cd, const cudnnTensorDescriptor_t dx,
    cudnnConvolutionBwdDataAlgo_t algo, size_t *bytes) {
  return workspace_query("cudnnGetConvolutionBackwardDataWorkspaceSize", BWD_DATA, h, dx, w, cd, dy,
                         algo, bytes);
}
cudnnStatus_t cudnnGetConvolutionBackwardFilterWorkspaceSize(
    cudnnHandle_t h, const cudnnTensorDescriptor_t x, const cudnnTensorDescriptor_t dy,
    const cudnnConvolutionDescriptor_t cd, const cudnnFilterDescriptor_t dw,
    cudnnConvolutionBwdFilterAlgo_t algo, size_t *bytes) {
  return workspace_query("cudnnGetConvolutionBackwardFilterWorkspaceSize", BWD_FILTER, h, x, dw, cd,
                         dy, algo, bytes);
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha,
                                      const cudnnTensorDescriptor_t xd, const void *x,
                                      const cudnnFilterDescriptor_t wd, const void *w,
                                      const cudnnConvolutionDescriptor_t cd,
                                      cudnnConvolutionFwdAlgo_t algo, void *ws, size_t ws_bytes,
                                      const void *beta, const cudnnTensorDescriptor_t yd, void *y) {
  return run("cudnnConvolutionForward", FWD, h, alpha, xd, wd, cd, yd, algo, ws, ws_bytes, beta,
             {x, w, y});
}
cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha,
                                           const cudnnFilterDescriptor_t wd, const void *w,
                                           const cudnnTensorDescriptor_t dyd, const void *dy,
                                           const cudnnConvolutionDescriptor_t cd,
                                           cudnnConvolutionBwdDataAlgo_t algo, void *ws,
                                           size_t ws_bytes, const void *beta,
                                           const cudnnTensorDescriptor_t dxd, void *dx) {
  return run("cudnnConvolutionBackwardData", BWD_DATA, h, alpha, dxd, wd, cd, dyd, algo, ws,
             ws_bytes, beta, {w, dy, dx});
}
cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha,
                                             const cudnnTensorDescriptor_t xd, const void *x,
                                             const cudnnTensorDescriptor_t dyd, const void *dy,
                                             const cudnnConvolutionDescriptor_t cd,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void *ws,
                                             size_t ws_bytes, const void *beta,
                                             const cudnnFilterDescriptor_t dwd, void *dw) {
  return run("cudnnConvolutionBackwardFilter", BWD_FILTER, h, alpha, xd, dwd, cd, dyd, algo, ws,
             ws_bytes, beta, {x, dy, dw});
}

} // extern "C"
