// Controls of the host SIMT simulator for tests (C and C++; IDOC_CUDA_SIM builds only).
#pragma once
#include <stdint.h>
#ifdef __cplusplus
extern "C" {
#endif
// The seed of the thread and block orders (default 1, or IDOC_SIM_SEED); 0 runs threads and
// blocks in their natural order. Results of a correct kernel do not depend on it.
void idoc_sim_set_seed(uint64_t seed);
uint64_t idoc_sim_get_seed(void);
uint64_t idoc_sim_launches(void);         // kernels launched so far
const char *idoc_sim_fiber_backend(void); // "asm" or "ucontext" (IDOC_SIM_FIBERS=ucontext)
#ifdef __cplusplus
}
#endif
