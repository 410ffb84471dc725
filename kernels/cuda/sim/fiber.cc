// Fibers for the simulated threads of a block: a hand-written context switch on x86-64 (callee-
// saved registers, MXCSR and the x87 control word; no system call, so a barrier costs tens of
// nanoseconds) and ucontext elsewhere, or when IDOC_SIM_FIBERS=ucontext. Stacks are mmap'd with a
// PROT_NONE guard page below them and pooled. Under AddressSanitizer every switch is announced
// with __sanitizer_start/finish_switch_fiber so ASan tracks which stack is live.
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <mutex>
#include <vector>

#include "kernels/cuda/sim/sim.h"

#if defined(__SANITIZE_ADDRESS__)
#define IDOC_SIM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define IDOC_SIM_ASAN 1
#endif
#endif
#if IDOC_SIM_ASAN
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace idoc_sim {

#if defined(__x86_64__)
// void idoc_sim_switch(void **save_sp, void *load_sp): saves the callee-saved state on the
// current stack, stores the stack pointer in *save_sp, and resumes the context at load_sp.
extern "C" void idoc_sim_switch(void **save_sp, void *load_sp);
extern "C" void idoc_sim_fiber_entry();
asm(R"(
  .pushsection .text
  .globl idoc_sim_switch
  .type idoc_sim_switch, @function
idoc_sim_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  subq $8, %rsp
  stmxcsr (%rsp)
  fnstcw 4(%rsp)
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  ldmxcsr (%rsp)
  fldcw 4(%rsp)
  addq $8, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size idoc_sim_switch, .-idoc_sim_switch

  .globl idoc_sim_fiber_entry
  .type idoc_sim_fiber_entry, @function
idoc_sim_fiber_entry:
  movq %r12, %rdi
  callq *%r13
  ud2
  .size idoc_sim_fiber_entry, .-idoc_sim_fiber_entry
  .popsection
)");
static const bool k_have_asm_switch = true;
#else
extern "C" void idoc_sim_switch(void **, void *) { abort(); }
extern "C" void idoc_sim_fiber_entry() { abort(); }
static const bool k_have_asm_switch = false;
#endif

static bool use_ucontext() {
  static int v = -1;
  if (v < 0) {
    const char *e = getenv("IDOC_SIM_FIBERS");
    v = !k_have_asm_switch || (e && !strcmp(e, "ucontext"));
  }
  return v != 0;
}
const char *fiber_backend() { return use_ucontext() ? "ucontext" : "asm"; }

// The scheduler's context on this OS thread.
static thread_local void *t_sched_sp;
static thread_local ucontext_t t_sched_uc;
static thread_local fiber *t_running;
#if IDOC_SIM_ASAN
static thread_local const void *t_sched_stack;
static thread_local size_t t_sched_stack_size;
static thread_local void *t_sched_fake;
#endif

// ---- stacks
// -----------------------------------------------------------------------------------------
static size_t page_size() {
  static size_t p = (size_t)sysconf(_SC_PAGESIZE);
  return p;
}
static size_t stack_bytes() {
  static size_t s = 0;
  if (!s) {
    const char *e = getenv("IDOC_SIM_STACK_KB");
    size_t kb = e ? (size_t)strtoull(e, NULL, 10) : 0;
#if IDOC_SIM_ASAN
    if (!kb) kb = 512; // ASan's redzones make frames several times larger
#else
    if (!kb) kb = 128;
#endif
    s = (kb * 1024 + page_size() - 1) / page_size() * page_size();
  }
  return s;
}

struct stack_region {
  char *lo; // guard page
  size_t bytes;
};
static std::mutex g_pool_mu;
static std::vector<char *> g_pool;          // free usable stack bottoms
static std::vector<stack_region> g_regions; // every stack ever mapped (for fault reports)

static char *stack_get() {
  std::lock_guard<std::mutex> lk(g_pool_mu);
  if (!g_pool.empty()) {
    char *s = g_pool.back();
    g_pool.pop_back();
    return s;
  }
  size_t total = stack_bytes() + page_size();
  void *m =
      mmap(NULL, total, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
  if (m == MAP_FAILED) fail("cannot map a %zu-byte fiber stack", total);
  mprotect(m, page_size(), PROT_NONE); // overflow faults instead of corrupting the next stack
  g_regions.push_back({(char *)m, total});
  return (char *)m + page_size();
}

bool fiber_stack_guard(const void *addr, const char **what) {
  const char *a = (const char *)addr;
  for (const stack_region &r : g_regions)
    if (a >= r.lo && a < r.lo + page_size()) {
      *what = "the guard page below a simulated thread's stack (stack overflow: raise "
              "IDOC_SIM_STACK_KB)";
      return true;
    }
  return false;
}

// ---- switching
// ----------------------------------------------------------------------------------------
static void asan_enter_fiber(fiber *f) {
#if IDOC_SIM_ASAN
  __sanitizer_start_switch_fiber(&t_sched_fake, f->stack, f->stack_size);
#else
  (void)f;
#endif
}
static void asan_back_in_scheduler() {
#if IDOC_SIM_ASAN
  __sanitizer_finish_switch_fiber(t_sched_fake, NULL, NULL);
#endif
}
static void asan_leave_fiber(fiber *f, bool exiting) {
#if IDOC_SIM_ASAN
  __sanitizer_start_switch_fiber(exiting ? NULL : &f->asan_fake, t_sched_stack, t_sched_stack_size);
#else
  (void)f, (void)exiting;
#endif
}
static void asan_back_in_fiber(fiber *f, bool first) {
#if IDOC_SIM_ASAN
  if (first)
    __sanitizer_finish_switch_fiber(NULL, &t_sched_stack, &t_sched_stack_size);
  else
    __sanitizer_finish_switch_fiber(f->asan_fake, NULL, NULL);
#else
  (void)f, (void)first;
#endif
}

static void fiber_main(void *p) {
  fiber *f = (fiber *)p;
  asan_back_in_fiber(f, true);
  f->fn(f->arg);
  fiber_exit(f);
}
static void fiber_main_uc(unsigned lo, unsigned hi) {
  fiber_main((void *)(((uintptr_t)hi << 32) | (uintptr_t)lo));
}

void fiber_start(fiber *f, void (*fn)(void *), void *arg) {
  if (!f->stack) {
    f->stack = stack_get();
    f->stack_size = stack_bytes();
  }
#if IDOC_SIM_ASAN
  // A finished fiber's abandoned frames leave poisoned redzones on the stack it returned.
  __asan_unpoison_memory_region(f->stack, f->stack_size);
#endif
  f->fn = fn;
  f->arg = arg;
  f->asan_fake = NULL;
  if (use_ucontext()) {
    if (!f->uc) f->uc = calloc(1, sizeof(ucontext_t));
    ucontext_t *uc = (ucontext_t *)f->uc;
    getcontext(uc);
    uc->uc_stack.ss_sp = f->stack;
    uc->uc_stack.ss_size = f->stack_size;
    uc->uc_link = NULL;
    uintptr_t v = (uintptr_t)f;
    makecontext(uc, (void (*)())fiber_main_uc, 2, (unsigned)(v & 0xffffffffu), (unsigned)(v >> 32));
    return;
  }
  // Initial frame, read by idoc_sim_switch's epilogue: MXCSR / x87 control word, r15..rbp, then
  // the return address idoc_sim_fiber_entry, which calls r13(r12). The stack pointer must be
  // 16-byte aligned at that call, i.e. here (the frame is 64 bytes).
  uintptr_t top = ((uintptr_t)(f->stack + f->stack_size) & ~(uintptr_t)15) - 16;
  uint64_t *sp = (uint64_t *)(top - 64);
  uint32_t csr[2] = {0x1f80u, 0x037fu}; // default MXCSR, default x87 control word
  memcpy(&sp[0], csr, 8);
  sp[1] = 0;                               // r15
  sp[2] = 0;                               // r14
  sp[3] = (uint64_t)(uintptr_t)fiber_main; // r13: function
  sp[4] = (uint64_t)(uintptr_t)f;          // r12: argument
  sp[5] = 0;                               // rbx
  sp[6] = 0;                               // rbp
  sp[7] = (uint64_t)(uintptr_t)idoc_sim_fiber_entry;
  f->sp = sp;
}

void fiber_resume(fiber *f) {
  t_running = f;
  asan_enter_fiber(f);
  if (use_ucontext())
    swapcontext(&t_sched_uc, (ucontext_t *)f->uc);
  else
    idoc_sim_switch(&t_sched_sp, f->sp);
  asan_back_in_scheduler();
  t_running = NULL;
}

void fiber_yield(fiber *f) {
  asan_leave_fiber(f, false);
  if (use_ucontext())
    swapcontext((ucontext_t *)f->uc, &t_sched_uc);
  else
    idoc_sim_switch(&f->sp, t_sched_sp);
  asan_back_in_fiber(f, false);
}

void fiber_exit(fiber *f) {
  asan_leave_fiber(f, true);
  if (use_ucontext()) {
    setcontext(&t_sched_uc);
  } else {
    void *dead;
    idoc_sim_switch(&dead, t_sched_sp);
  }
  abort(); // never resumed
}

void fiber_release(fiber *f) {
  if (!f->stack) return;
  std::lock_guard<std::mutex> lk(g_pool_mu);
  g_pool.push_back(f->stack);
  f->stack = NULL;
}

} // namespace idoc_sim
