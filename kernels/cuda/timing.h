// GPU timing for benchmarks (C-callable; defined in kernels/cuda/device.cu, so only present in
// builds with IDOC_HAVE_CUDA).
#pragma once
#ifdef __cplusplus
extern "C" {
#endif
// Milliseconds of GPU time taken by the work fn(ud) enqueues (CUDA events on the idoc stream
// around it; waits for it to finish).
float idoc_cuda_time_ms(void (*fn)(void *), void *ud);
#ifdef __cplusplus
}
#endif
