// idoc-requires: cudnn
// 2-D convolution and transposed convolution (NCHW) on cuDNN's legacy convolution API. One
// cuDNN convolution (image [N,C,H,W], filter [K,C,k,k], output [N,K,P,Q], cross-correlation as
// in PyTorch) serves all four kernels:
//   conv2d:            y = Forward(x, w)            dx = BackwardData(w, dy)
//                      dw = BackwardFilter(x, dy)
//   conv_transpose2d:  the adjoint of the convolution whose image is y and whose filter is w
//                      ([Ci, Co, k, k] read as K = Ci, C = Co): y = BackwardData(w, x),
//                      dx = Forward(dy, w), dw = BackwardFilter(dy, x); y's size carries the
//                      output padding.
// fp32 compute for f32 and bf16 storage; f32 runs under CUDNN_FMA_MATH, because cuDNN's default
// math lets FLOAT convolutions use TF32 tensor cores on sm_80+ (too coarse for f32 parity), and
// bf16 on the tensor cores (exact products, fp32 accumulation). Gradients accumulate through
// beta = 1; a bias is a prefill of y that the convolution accumulates onto (one rounding in
// bf16), and its gradient a fixed-order per-channel reduction. Only algorithms cuDNN reports as
// deterministic are used: the heuristics' first deterministic candidate (for f32 one that is not
// a tensor-op variant), else the documented deterministic IMPLICIT_GEMM / BWD_DATA_ALGO_1 /
// BWD_FILTER_ALGO_1; the choice and its workspace size are cached per shape, and the workspace
// comes from idoc_cu_scratch.
#include <limits.h>
#include <stdint.h>

#include <mutex>
#include <vector>

#include "kernels/cuda/common.cuh"

// ---- bias kernels ---------------------------------------------------------------------------
// y[n, c, i] = b[c] over y [B, C, HW]; kVec: 16 bytes per item (HW a multiple of the width).
template <typename T, bool kVec>
__global__ void conv_bias_fill_kernel(T *y, const T *b, int64_t C, int64_t HW, int64_t items) {
  constexpr int V = kVec ? 16 / sizeof(T) : 1;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < items;
       i += (int64_t)gridDim.x * blockDim.x) {
    int64_t e = i * V;
    T bv = b[e / HW % C];
    if constexpr (kVec) {
      vec16<T> r;
#pragma unroll
      for (int j = 0; j < V; j++)
        r.v[j] = bv;
      store16(y + e, r);
    } else {
      y[e] = bv;
    }
  }
}

// db[c] += sum over n, i of dy[n, c, i]: one block per channel; each thread sums a fixed subset
// in a fixed order and block_sum combines them in a fixed order (deterministic, no atomics).
template <typename T, bool kVec>
__global__ void conv_bias_grad_kernel(T *db, const T *dy, int64_t B, int64_t C, int64_t HW) {
  constexpr int V = kVec ? 16 / sizeof(T) : 1;
  int64_t c = blockIdx.x;
  float s = 0.0f;
  for (int64_t n = 0; n < B; n++) {
    const T *p = dy + (n * C + c) * HW;
    for (int64_t j = (int64_t)threadIdx.x * V; j < HW; j += (int64_t)blockDim.x * V) {
      if constexpr (kVec) {
        vec16<T> r = load16_ro(p + j);
#pragma unroll
        for (int q = 0; q < V; q++)
          s += to_f(r.v[q]);
      } else {
        s += to_f(p[j]);
      }
    }
  }
  s = block_sum(s);
  if (threadIdx.x == 0) db[c] = from_f<T>(to_f(db[c]) + s);
}

static bool aligned16(const void *p) { return ((uintptr_t)p & 15) == 0; }

static void bias_fill(idoc_tensor *y, const idoc_tensor *b) {
  int64_t B = y->shape[0], C = y->shape[1], HW = y->shape[2] * y->shape[3], n = B * C * HW;
  IDOC_CU_DISPATCH(y->dtype, "conv bias", T, {
    constexpr int V = 16 / sizeof(T);
    if (HW % V == 0 && aligned16(y->data)) {
      IDOC_LAUNCH((conv_bias_fill_kernel<T, true>), cu_blocks(n / V), 256, 0, idoc_cu_stream())
      ((T *)y->data, (const T *)b->data, C, HW, n / V);
    } else {
      IDOC_LAUNCH((conv_bias_fill_kernel<T, false>), cu_blocks(n), 256, 0, idoc_cu_stream())
      ((T *)y->data, (const T *)b->data, C, HW, n);
    }
  });
  CUDA_LAUNCH_CHECK();
}

static void bias_grad(idoc_tensor *db, const idoc_tensor *dy) {
  int64_t B = dy->shape[0], C = dy->shape[1], HW = dy->shape[2] * dy->shape[3];
  if (C == 0) return;
  IDOC_CU_DISPATCH(dy->dtype, "conv bias grad", T, {
    constexpr int V = 16 / sizeof(T);
    if (HW % V == 0 && aligned16(dy->data)) {
      IDOC_LAUNCH((conv_bias_grad_kernel<T, true>), (unsigned)C, 256, 0, idoc_cu_stream())
      ((T *)db->data, (const T *)dy->data, B, C, HW);
    } else {
      IDOC_LAUNCH((conv_bias_grad_kernel<T, false>), (unsigned)C, 256, 0, idoc_cu_stream())
      ((T *)db->data, (const T *)dy->data, B, C, HW);
    }
  });
  CUDA_LAUNCH_CHECK();
}

// ---- the cuDNN convolution ------------------------------------------------------------------
namespace {

// Image [N,C,H,W] * filter [K,C,R,R] -> output [N,K,P,Q], zero padding `pad`, stride `stride`.
struct conv_shape {
  int N, C, H, W, K, R, P, Q, pad, stride;
  idoc_dtype dt;
};

cudnnDataType_t dnn_type(idoc_dtype dt) {
  switch (dt) {
  case IDOC_F32: return CUDNN_DATA_FLOAT;
  case IDOC_BF16: return CUDNN_DATA_BFLOAT16;
  default: idoc_die("cuda conv: dtype %s is not supported (f32, bf16)", idoc_dtype_name(dt));
  }
}
cudnnMathType_t default_math(idoc_dtype dt) {
  return dt == IDOC_F32 ? CUDNN_FMA_MATH : CUDNN_TENSOR_OP_MATH;
}

conv_shape shape_of(const char *kname, const idoc_tensor *img, const idoc_tensor *filt,
                    const idoc_tensor *out, int pad, int stride) {
  char s1[128], s2[128], s3[128];
  IDOC_CHECK(img->ndim == 4 && filt->ndim == 4 && out->ndim == 4 &&
                 filt->shape[1] == img->shape[1] && filt->shape[2] == filt->shape[3] &&
                 out->shape[0] == img->shape[0] && out->shape[1] == filt->shape[0] && pad >= 0 &&
                 stride >= 1,
             "cuda %s: inconsistent operands %s, %s, %s (pad %d, stride %d)", kname,
             idoc_tensor_desc(img, s1, sizeof s1), idoc_tensor_desc(filt, s2, sizeof s2),
             idoc_tensor_desc(out, s3, sizeof s3), pad, stride);
  // cuDNN's 4-d descriptors take int dimensions and at most 2^31 - 1 elements.
  IDOC_CHECK(idoc_numel(img) <= INT_MAX && idoc_numel(filt) <= INT_MAX &&
                 idoc_numel(out) <= INT_MAX,
             "cuda %s: tensors of more than 2^31 - 1 elements are not supported", kname);
  return conv_shape{(int)img->shape[0],
                    (int)img->shape[1],
                    (int)img->shape[2],
                    (int)img->shape[3],
                    (int)filt->shape[0],
                    (int)filt->shape[2],
                    (int)out->shape[2],
                    (int)out->shape[3],
                    pad,
                    stride,
                    img->dtype};
}

// The descriptors of one convolution, created per call.
struct descs {
  cudnnTensorDescriptor_t img = nullptr, out = nullptr;
  cudnnFilterDescriptor_t filt = nullptr;
  cudnnConvolutionDescriptor_t conv = nullptr;
  descs(const char *kname, const conv_shape &s) {
    cudnnDataType_t t = dnn_type(s.dt);
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&img));
    CUDNN_CHECK(cudnnCreateTensorDescriptor(&out));
    CUDNN_CHECK(cudnnCreateFilterDescriptor(&filt));
    CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&conv));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(img, CUDNN_TENSOR_NCHW, t, s.N, s.C, s.H, s.W));
    CUDNN_CHECK(cudnnSetTensor4dDescriptor(out, CUDNN_TENSOR_NCHW, t, s.N, s.K, s.P, s.Q));
    CUDNN_CHECK(cudnnSetFilter4dDescriptor(filt, t, CUDNN_TENSOR_NCHW, s.K, s.C, s.R, s.R));
    CUDNN_CHECK(cudnnSetConvolution2dDescriptor(conv, s.pad, s.pad, s.stride, s.stride, 1, 1,
                                                CUDNN_CROSS_CORRELATION, CUDNN_DATA_FLOAT));
    CUDNN_CHECK(cudnnSetConvolutionMathType(conv, default_math(s.dt)));
    int n, c, h, w;
    CUDNN_CHECK(cudnnGetConvolution2dForwardOutputDim(conv, img, filt, &n, &c, &h, &w));
    IDOC_CHECK(h == s.P && w == s.Q,
               "cuda %s: a %dx%d map with a %dx%d kernel, pad %d, stride %d gives %dx%d, not the "
               "%dx%d given",
               kname, s.H, s.W, s.R, s.R, s.pad, s.stride, h, w, s.P, s.Q);
  }
  ~descs() {
    cudnnDestroyConvolutionDescriptor(conv);
    cudnnDestroyFilterDescriptor(filt);
    cudnnDestroyTensorDescriptor(out);
    cudnnDestroyTensorDescriptor(img);
  }
  descs(const descs &) = delete;
  descs &operator=(const descs &) = delete;
};

enum conv_dir { DIR_FWD, DIR_BWD_DATA, DIR_BWD_FILTER };

struct algo_pick {
  int algo;
  cudnnMathType_t math;
  size_t ws;
};
struct algo_entry {
  int dir;
  conv_shape s;
  algo_pick pick;
};

// A deterministic candidate whose precision fits the dtype: f32 must not take a tensor-op
// variant (TF32).
template <class Perf> bool acceptable(const Perf &e, idoc_dtype dt) {
  if (e.status != CUDNN_STATUS_SUCCESS || e.determinism != CUDNN_DETERMINISTIC) return false;
  return dt != IDOC_F32 || e.mathType == CUDNN_FMA_MATH || e.mathType == CUDNN_DEFAULT_MATH;
}
template <class Perf>
algo_pick first_acceptable(const std::vector<Perf> &perf, int n, idoc_dtype dt, int fallback) {
  for (int i = 0; i < n; i++)
    if (acceptable(perf[i], dt))
      return {(int)perf[i].algo, dt == IDOC_F32 ? CUDNN_FMA_MATH : perf[i].mathType, 0};
  return {fallback, default_math(dt), 0};
}

algo_pick query(conv_dir dir, const descs &d, idoc_dtype dt) {
  cudnnHandle_t h = idoc_cu_cudnn();
  int max = 0, n = 0;
  algo_pick p;
  if (dir == DIR_FWD) {
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithmMaxCount(h, &max));
    std::vector<cudnnConvolutionFwdAlgoPerf_t> perf((size_t)(max > 0 ? max : 1));
    CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(h, d.img, d.filt, d.conv, d.out,
                                                       (int)perf.size(), &n, perf.data()));
    p = first_acceptable(perf, n, dt, CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM);
    CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, p.math));
    CUDNN_CHECK(cudnnGetConvolutionForwardWorkspaceSize(h, d.img, d.filt, d.conv, d.out,
                                                        (cudnnConvolutionFwdAlgo_t)p.algo, &p.ws));
  } else if (dir == DIR_BWD_DATA) {
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithmMaxCount(h, &max));
    std::vector<cudnnConvolutionBwdDataAlgoPerf_t> perf((size_t)(max > 0 ? max : 1));
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(h, d.filt, d.out, d.conv, d.img,
                                                            (int)perf.size(), &n, perf.data()));
    p = first_acceptable(perf, n, dt, CUDNN_CONVOLUTION_BWD_DATA_ALGO_1);
    CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, p.math));
    CUDNN_CHECK(cudnnGetConvolutionBackwardDataWorkspaceSize(
        h, d.filt, d.out, d.conv, d.img, (cudnnConvolutionBwdDataAlgo_t)p.algo, &p.ws));
  } else {
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithmMaxCount(h, &max));
    std::vector<cudnnConvolutionBwdFilterAlgoPerf_t> perf((size_t)(max > 0 ? max : 1));
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterAlgorithm_v7(h, d.img, d.out, d.conv, d.filt,
                                                              (int)perf.size(), &n, perf.data()));
    p = first_acceptable(perf, n, dt, CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1);
    CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, p.math));
    CUDNN_CHECK(cudnnGetConvolutionBackwardFilterWorkspaceSize(
        h, d.img, d.out, d.conv, d.filt, (cudnnConvolutionBwdFilterAlgo_t)p.algo, &p.ws));
  }
  return p;
}

bool same_shape(const conv_shape &a, const conv_shape &b) {
  return a.N == b.N && a.C == b.C && a.H == b.H && a.W == b.W && a.K == b.K && a.R == b.R &&
         a.P == b.P && a.Q == b.Q && a.pad == b.pad && a.stride == b.stride && a.dt == b.dt;
}

// The heuristics cost host time on every call, so each (direction, shape) asks once; the math
// type the pick needs is set on the call's descriptor.
algo_pick pick(conv_dir dir, const descs &d, const conv_shape &s) {
  static std::mutex mu;
  static std::vector<algo_entry> cache;
  static size_t next;
  const size_t cap = 256;
  {
    std::lock_guard<std::mutex> lk(mu);
    for (const algo_entry &e : cache)
      if (e.dir == dir && same_shape(e.s, s)) {
        CUDNN_CHECK(cudnnSetConvolutionMathType(d.conv, e.pick.math));
        return e.pick;
      }
  }
  algo_pick p = query(dir, d, s.dt);
  std::lock_guard<std::mutex> lk(mu);
  if (cache.size() < cap)
    cache.push_back({dir, s, p});
  else
    cache[next++ % cap] = {dir, s, p};
  return p;
}

void *workspace(const algo_pick &p) { return p.ws ? idoc_cu_scratch(p.ws) : nullptr; }

// out = conv(img, filt) + beta * out
void run_forward(const char *kname, const conv_shape &s, const void *img, const void *filt,
                 void *out, float beta) {
  descs d(kname, s);
  algo_pick p = pick(DIR_FWD, d, s);
  const float alpha = 1.0f;
  CUDNN_CHECK(cudnnConvolutionForward(idoc_cu_cudnn(), &alpha, d.img, img, d.filt, filt, d.conv,
                                      (cudnnConvolutionFwdAlgo_t)p.algo, workspace(p), p.ws, &beta,
                                      d.out, out));
}
// img = conv^T(out, filt) + beta * img
void run_backward_data(const char *kname, const conv_shape &s, const void *filt, const void *out,
                       void *img, float beta) {
  descs d(kname, s);
  algo_pick p = pick(DIR_BWD_DATA, d, s);
  const float alpha = 1.0f;
  CUDNN_CHECK(cudnnConvolutionBackwardData(idoc_cu_cudnn(), &alpha, d.filt, filt, d.out, out,
                                           d.conv, (cudnnConvolutionBwdDataAlgo_t)p.algo,
                                           workspace(p), p.ws, &beta, d.img, img));
}
// filt = dconv/dfilt(img, out) + beta * filt
void run_backward_filter(const char *kname, const conv_shape &s, const void *img, const void *out,
                         void *filt, float beta) {
  descs d(kname, s);
  algo_pick p = pick(DIR_BWD_FILTER, d, s);
  const float alpha = 1.0f;
  CUDNN_CHECK(cudnnConvolutionBackwardFilter(idoc_cu_cudnn(), &alpha, d.img, img, d.out, out,
                                             d.conv, (cudnnConvolutionBwdFilterAlgo_t)p.algo,
                                             workspace(p), p.ws, &beta, d.filt, filt));
}

void check_bias(const char *kname, const idoc_tensor *b, int64_t channels) {
  if (!b) return;
  char s[128];
  IDOC_CHECK(b->ndim == 1 && b->shape[0] == channels, "cuda %s: bias %s for %lld channels", kname,
             idoc_tensor_desc(b, s, sizeof s), (long long)channels);
}

// y = conv-like(x) (+ b): the bias prefill, then the convolution accumulating onto it.
template <class F>
void forward_with_bias(idoc_tensor *y, const idoc_tensor *b, bool empty_sum, F conv) {
  if (idoc_numel(y) == 0) return;
  if (b) bias_fill(y, b);
  if (empty_sum) { // no input channels or taps: y is the bias alone
    if (!b) idoc_cuda_memset0(y->data, idoc_nbytes(y));
    return;
  }
  conv(b ? 1.0f : 0.0f);
}

} // namespace

extern "C" void cuda_conv2d_fwd(idoc_tensor *y, const idoc_tensor *x, const idoc_tensor *w,
                                const idoc_tensor *b, int pad) {
  const char *k = "conv2d_fwd";
  cu_on_gpu(k, y), cu_on_gpu(k, x), cu_on_gpu(k, w), cu_on_gpu(k, b);
  cu_same_dtype(k, y, x), cu_same_dtype(k, x, w), cu_same_dtype(k, w, b);
  conv_shape s = shape_of(k, x, w, y, pad, 1);
  check_bias(k, b, s.K);
  forward_with_bias(y, b, idoc_numel(x) == 0 || idoc_numel(w) == 0,
                    [&](float beta) { run_forward(k, s, x->data, w->data, y->data, beta); });
}

extern "C" void cuda_conv2d_bwd(idoc_tensor *dx, idoc_tensor *dw, idoc_tensor *db,
                                const idoc_tensor *dy, const idoc_tensor *x, const idoc_tensor *w,
                                int pad) {
  const char *k = "conv2d_bwd";
  cu_on_gpu(k, dx), cu_on_gpu(k, dw), cu_on_gpu(k, db), cu_on_gpu(k, dy), cu_on_gpu(k, x),
      cu_on_gpu(k, w);
  cu_same_dtype(k, dy, x), cu_same_dtype(k, x, w), cu_same_dtype(k, dx, x), cu_same_dtype(k, dw, w),
      cu_same_dtype(k, db, w);
  conv_shape s = shape_of(k, x, w, dy, pad, 1);
  check_bias(k, db, s.K);
  if (idoc_numel(dy) == 0) return;
  if (idoc_numel(x) > 0 && idoc_numel(w) > 0) {
    if (dx) run_backward_data(k, s, w->data, dy->data, dx->data, 1.0f);
    if (dw) run_backward_filter(k, s, x->data, dy->data, dw->data, 1.0f);
  }
  if (db) bias_grad(db, dy);
}

extern "C" void cuda_conv_transpose2d_fwd(idoc_tensor *y, const idoc_tensor *x,
                                          const idoc_tensor *w, const idoc_tensor *b, int stride,
                                          int pad) {
  const char *k = "conv_transpose2d_fwd";
  cu_on_gpu(k, y), cu_on_gpu(k, x), cu_on_gpu(k, w), cu_on_gpu(k, b);
  cu_same_dtype(k, y, x), cu_same_dtype(k, x, w), cu_same_dtype(k, w, b);
  conv_shape s = shape_of(k, y, w, x, pad, stride); // the adjoint convolution's image is y
  check_bias(k, b, s.C);
  forward_with_bias(y, b, idoc_numel(x) == 0 || idoc_numel(w) == 0,
                    [&](float beta) { run_backward_data(k, s, w->data, x->data, y->data, beta); });
}

extern "C" void cuda_conv_transpose2d_bwd(idoc_tensor *dx, idoc_tensor *dw, idoc_tensor *db,
                                          const idoc_tensor *dy, const idoc_tensor *x,
                                          const idoc_tensor *w, int stride, int pad) {
  const char *k = "conv_transpose2d_bwd";
  cu_on_gpu(k, dx), cu_on_gpu(k, dw), cu_on_gpu(k, db), cu_on_gpu(k, dy), cu_on_gpu(k, x),
      cu_on_gpu(k, w);
  cu_same_dtype(k, dy, x), cu_same_dtype(k, x, w), cu_same_dtype(k, dx, x), cu_same_dtype(k, dw, w),
      cu_same_dtype(k, db, w);
  conv_shape s = shape_of(k, dy, w, x, pad, stride);
  check_bias(k, db, s.C);
  if (idoc_numel(dy) == 0) return;
  if (idoc_numel(x) > 0 && idoc_numel(w) > 0) {
    if (dx) run_forward(k, s, dy->data, w->data, dx->data, 1.0f);
    if (dw) run_backward_filter(k, s, dy->data, x->data, dw->data, 1.0f);
  }
  if (db) bias_grad(db, dy);
}
