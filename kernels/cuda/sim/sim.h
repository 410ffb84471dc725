// Internal interfaces of the host SIMT simulator (kernels/cuda/sim/*.cc): fibers, the device
// heap and its host-access guard, and the diagnostic state a fault report needs.
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "cuda_runtime.h"

namespace idoc_sim {

// ---- fibers (fiber.cc)
// ---------------------------------------------------------------------------- A fiber runs fn(arg)
// on its own stack; resume() enters it from the scheduler and returns when it calls yield() (or
// finishes). Stacks come from a pool and have a guard page below them.
struct fiber {
  void *sp;           // saved stack pointer (hand-written switch)
  void *uc;           // ucontext_t (fallback switch)
  char *stack;        // lowest usable byte
  size_t stack_size;  // usable bytes
  void *asan_fake;    // AddressSanitizer fake-stack handle while suspended
  void (*fn)(void *); // entry point
  void *arg;
};
void fiber_start(fiber *f, void (*fn)(void *), void *arg);
void fiber_resume(fiber *f);
void fiber_yield(fiber *f);
[[noreturn]] void fiber_exit(fiber *f); // the fiber is done: back to the scheduler for good
void fiber_release(fiber *f);           // return the stack of a finished fiber to the pool
bool fiber_stack_guard(const void *addr, const char **what);
const char *fiber_backend();

// ---- device heap (memory.cc)
// ------------------------------------------------------------------------
cudaError_t heap_alloc(void **p, size_t n);
cudaError_t heap_free(void *p);
// [p, p + n) lies inside one live allocation (n may be 0: p inside or one past the end).
bool heap_contains(const void *p, size_t n);
bool heap_is_device(const void *p); // inside the simulated device's address range
size_t heap_used();
size_t heap_capacity();
void pinned_register(void *p, size_t n);
bool pinned_unregister(void *p);
bool pinned_contains(const void *p, size_t n);
// While a scope is open, device memory is readable and writable by this process (kernels,
// copies, library shims); otherwise every access faults. Scopes nest. An allocation becomes
// accessible at its first touch (a fault the handler resolves); open() does it up front, for
// memory a system call or another process reads (MPI's single-copy transfers: a fault there
// is an EFAULT, not a signal).
struct device_scope {
  device_scope();
  ~device_scope();
  void open(const void *p, size_t n);
  device_scope(const device_scope &) = delete;
  device_scope &operator=(const device_scope &) = delete;
};
// After a kernel: the poisoned bytes around every allocation must be intact (a kernel wrote out
// of bounds otherwise); reports the first damaged allocation through fail().
void heap_check_canaries(const char *kernel);
void install_fault_handler();

// ---- launch context for diagnostics (scheduler.cc)
// ------------------------------------------------------
struct launch_site;
const launch_site *current_launch(); // NULL outside kernels
bool describe_current_thread(char *buf, size_t n);
void set_last_error(cudaError_t e);

// ---- runtime state the launcher and shims consult (runtime.cc)
// --------------------------------------------
bool stream_valid(cudaStream_t s);
size_t func_dynamic_smem_limit(const void *fn); // cudaFuncSetAttribute, else 48 KiB
// A message to stderr with the simulator's prefix (no abort).
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

} // namespace idoc_sim
