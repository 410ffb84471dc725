// The simulated device's memory. cudaMalloc carves allocations out of one reserved address
// range that is PROT_NONE except while a device_scope is open (a kernel, a copy, a library
// call), so host code that dereferences device memory faults. Inside a scope an allocation is
// opened when first touched (the fault handler makes it accessible and the access runs again)
// and closed when the scope ends: a kernel pays for the allocations it uses, not for every
// live one (toggling all of them around each launch dominated whole-model runs). Each allocation
// ends 256-byte aligned just below a guard page that is never accessible, the bytes between its end
// and the guard (and a window before its start) hold a canary checked after every kernel, and fresh
// memory is poisoned with 0xff (NaN as floats): an off-by-one read sees poison, an off-by-one
// write is reported, a read past the rounded end faults. Freed ranges are never reused, so a
// use after cudaFree faults too. The capacity cudaMemGetInfo reports is IDOC_SIM_DEVICE_MEMORY
// (bytes, with an optional K/M/G suffix; default 16G).
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <map>
#include <mutex>
#include <vector>

#include "kernels/cuda/sim/sim.h"

namespace idoc_sim {

static const size_t k_align = 256, k_head_canary = 256;
static const unsigned char k_canary = 0xff;

struct allocation {
  char *base;  // first page
  size_t span; // accessible pages (the guard page follows)
  char *ptr;   // what cudaMalloc returned
  size_t size; // requested bytes
  bool open;   // accessible in the current scope
};

static std::mutex g_mu;
static char *g_lo, *g_hi, *g_bump;
static std::map<uintptr_t, allocation> g_live, g_freed; // keyed by ptr
static size_t g_used, g_capacity;
static std::atomic<int> g_scope_depth;
// Allocations opened in the current scope (their ptr keys); the fault handler appends, under
// g_open_lock (a spin lock: the faulting thread may hold nothing else we could wait for).
static std::vector<uintptr_t> g_opened;
static std::atomic_flag g_open_lock = ATOMIC_FLAG_INIT;
struct open_guard {
  open_guard() {
    while (g_open_lock.test_and_set(std::memory_order_acquire)) {
    }
  }
  ~open_guard() { g_open_lock.clear(std::memory_order_release); }
};
static std::map<uintptr_t, size_t> g_pinned;

static size_t page() {
  static size_t p = (size_t)sysconf(_SC_PAGESIZE);
  return p;
}

static size_t parse_size(const char *s, size_t dflt) {
  if (!s || !*s) return dflt;
  char *end;
  double v = strtod(s, &end);
  switch (*end) {
  case 'k':
  case 'K': v *= 1024.0; break;
  case 'm':
  case 'M': v *= 1024.0 * 1024; break;
  case 'g':
  case 'G': v *= 1024.0 * 1024 * 1024; break;
  default: break;
  }
  return v > 0 ? (size_t)v : dflt;
}

static void reserve() { // with g_mu held
  if (g_lo) return;
  g_capacity = parse_size(getenv("IDOC_SIM_DEVICE_MEMORY"), (size_t)16 << 30);
  // Address space only (PROT_NONE, no reserve): pages are committed when an allocation is made.
  for (size_t va = (size_t)1 << 40; va >= ((size_t)1 << 32); va /= 2) {
    void *m = mmap(NULL, va, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m != MAP_FAILED) {
      g_lo = g_bump = (char *)m;
      g_hi = g_lo + va;
      return;
    }
  }
  fail("cannot reserve address space for the simulated device memory");
}

static void protect(const allocation &a, int prot) {
  if (mprotect(a.base, a.span, prot) != 0)
    fail("mprotect of simulated device memory failed: %s", strerror(errno));
}

cudaError_t heap_alloc(void **p, size_t n) {
  std::lock_guard<std::mutex> lk(g_mu);
  reserve();
  size_t rounded = (n + k_align - 1) / k_align * k_align;
  if (rounded == 0) rounded = k_align;
  if (g_used + n > g_capacity) return cudaErrorMemoryAllocation;
  allocation a;
  a.span = (rounded + k_head_canary + page() - 1) / page() * page();
  if ((size_t)(g_hi - g_bump) < a.span + page()) {
    note("the simulated device's address space is exhausted (allocations are never reused)");
    return cudaErrorMemoryAllocation;
  }
  a.base = g_bump;
  g_bump += a.span + page(); // + guard page
  a.ptr = a.base + a.span - rounded;
  a.size = n;
  a.open = false;
  protect(a, PROT_READ | PROT_WRITE);
  memset(a.base, k_canary, a.span); // poison and canaries
  protect(a, PROT_NONE);            // opened when a scope first touches it
  if (g_opened.capacity() == 0) g_opened.reserve(1 << 14);
  g_live[(uintptr_t)a.ptr] = a;
  g_used += n;
  *p = a.ptr;
  return cudaSuccess;
}

cudaError_t heap_free(void *p) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_live.find((uintptr_t)p);
  if (it == g_live.end()) {
    if (g_freed.count((uintptr_t)p))
      note("cudaFree(%p): the allocation was already freed", p);
    else
      note("cudaFree(%p): not a pointer returned by cudaMalloc", p);
    return cudaErrorInvalidValue;
  }
  allocation a = it->second;
  g_live.erase(it);
  g_used -= a.size;
  protect(a, PROT_NONE);
  madvise(a.base, a.span, MADV_DONTNEED); // give the pages back; the range stays inaccessible
  g_freed[(uintptr_t)a.ptr] = a;
  return cudaSuccess;
}

// The live allocation whose pages (and guard page) hold address q, or NULL.
static const allocation *find(const std::map<uintptr_t, allocation> &m, const char *q) {
  auto it = m.upper_bound((uintptr_t)q);
  if (it != m.end() && q >= it->second.base) return &it->second; // before ptr, in its first page
  if (it == m.begin()) return NULL;
  --it;
  const allocation &a = it->second;
  return q >= a.base && q < a.base + a.span + page() ? &a : NULL;
}

bool heap_contains(const void *p, size_t n) {
  std::lock_guard<std::mutex> lk(g_mu);
  const char *q = (const char *)p;
  const allocation *a = find(g_live, q);
  return a && q >= a->ptr && q <= a->ptr + a->size && n <= (size_t)(a->ptr + a->size - q);
}

bool heap_is_device(const void *p) {
  const char *q = (const char *)p;
  return g_lo && q >= g_lo && q < g_hi;
}

bool device_accessible(const void *p) {
  if (heap_contains(p, 0)) return true;
  return pinned_contains(p, 0);
}

size_t heap_used() {
  std::lock_guard<std::mutex> lk(g_mu);
  return g_used;
}
size_t heap_capacity() {
  std::lock_guard<std::mutex> lk(g_mu);
  reserve();
  return g_capacity;
}

// Opens the live allocation holding q (not its guard page) in the current scope: false when
// q is in none. Runs in the fault handler: no allocation unless g_opened is full, no stdio.
static bool open_at(const char *q) {
  open_guard og;
  auto it = g_live.upper_bound((uintptr_t)q);
  allocation *a = NULL;
  if (it != g_live.end() && q >= it->second.base && q < it->second.base + it->second.span)
    a = &it->second;
  else if (it != g_live.begin()) {
    --it;
    if (q >= it->second.base && q < it->second.base + it->second.span) a = &it->second;
  }
  if (!a) return false;
  if (!a->open) {
    if (mprotect(a->base, a->span, PROT_READ | PROT_WRITE) != 0) return false;
    a->open = true;
    g_opened.push_back((uintptr_t)a->ptr);
  }
  return true;
}

device_scope::device_scope() {
  install_fault_handler();
  std::lock_guard<std::mutex> lk(g_mu);
  g_scope_depth++;
}
device_scope::~device_scope() {
  std::lock_guard<std::mutex> lk(g_mu);
  if (--g_scope_depth == 0) {
    open_guard og;
    for (uintptr_t k : g_opened) {
      auto it = g_live.find(k); // freed meanwhile: already inaccessible
      if (it == g_live.end()) continue;
      protect(it->second, PROT_NONE);
      it->second.open = false;
    }
    g_opened.clear();
  }
}

void device_scope::open(const void *p, size_t n) {
  const char *q = (const char *)p, *end = q + n;
  while (q < end && heap_is_device(q)) { // every allocation [p, p + n) touches
    if (!open_at(q)) return;
    const allocation *a = find(g_live, q);
    q = a->base + a->span + page();
  }
}

void heap_check_canaries(const char *kernel) {
  // Only allocations this scope opened can have been written: the others are inaccessible.
  std::lock_guard<std::mutex> lk(g_mu);
  open_guard og;
  for (uintptr_t k : g_opened) {
    auto it = g_live.find(k);
    if (it == g_live.end()) continue;
    const allocation &a = it->second;
    const unsigned char *end = (const unsigned char *)a.base + a.span;
    const unsigned char *head = (const unsigned char *)a.ptr - k_head_canary;
    if (head < (const unsigned char *)a.base) head = (const unsigned char *)a.base;
    for (const unsigned char *c = (const unsigned char *)a.ptr + a.size; c < end; c++)
      if (*c != k_canary)
        fail("kernel %s wrote past the end of the %zu-byte allocation at %p (byte +%zu of it "
             "changed)",
             kernel, a.size, (void *)a.ptr, (size_t)(c - (const unsigned char *)a.ptr));
    for (const unsigned char *c = head; c < (const unsigned char *)a.ptr; c++)
      if (*c != k_canary)
        fail("kernel %s wrote before the start of the %zu-byte allocation at %p (byte -%zu)",
             kernel, a.size, (void *)a.ptr, (size_t)((const unsigned char *)a.ptr - c));
  }
}

// ---- pinned host memory
// --------------------------------------------------------------------------------
void pinned_register(void *p, size_t n) {
  std::lock_guard<std::mutex> lk(g_mu);
  g_pinned[(uintptr_t)p] = n;
}
bool pinned_unregister(void *p) {
  std::lock_guard<std::mutex> lk(g_mu);
  return g_pinned.erase((uintptr_t)p) > 0;
}
bool pinned_contains(const void *p, size_t n) {
  std::lock_guard<std::mutex> lk(g_mu);
  auto it = g_pinned.upper_bound((uintptr_t)p);
  if (it == g_pinned.begin()) return false;
  --it;
  uintptr_t q = (uintptr_t)p;
  return q >= it->first && q <= it->first + it->second && n <= it->first + it->second - q;
}

// ---- fault reports
// -----------------------------------------------------------------------------------------
static struct sigaction g_old_segv, g_old_bus;

static void on_fault(int sig, siginfo_t *si, void *uc) {
  (void)uc;
  const char *q = (const char *)si->si_addr;
  // Inside a scope: the first touch of an allocation opens it, and the access runs again.
  if (g_scope_depth > 0 && heap_is_device(q) && open_at(q)) return;
  char msg[1024], where[512];
  const char *what = NULL;
  bool in_kernel = describe_current_thread(where, sizeof where);
  // Read without the lock: the process is about to die, and the faulting thread may hold it.
  const allocation *a = heap_is_device(q) ? find(g_live, q) : NULL;
  const allocation *f = heap_is_device(q) && !a ? find(g_freed, q) : NULL;
  if (a && q >= a->base + a->span) {
    snprintf(msg, sizeof msg,
             "out-of-bounds access at %p, %zu bytes past the end of the %zu-byte device "
             "allocation at %p",
             (const void *)q, (size_t)(q - (a->ptr + a->size)), a->size, (void *)a->ptr);
  } else if (a && g_scope_depth == 0) {
    snprintf(msg, sizeof msg,
             "host code accessed device memory at %p (offset %td of the %zu-byte cudaMalloc "
             "allocation at %p): device memory is not host-accessible outside kernels and "
             "cudaMemcpy",
             (const void *)q, q - a->ptr, a->size, (void *)a->ptr);
  } else if (f) {
    snprintf(msg, sizeof msg,
             "access at %p to device memory already freed (the %zu-byte allocation at %p)",
             (const void *)q, f->size, (void *)f->ptr);
  } else if (heap_is_device(q)) {
    snprintf(msg, sizeof msg, "access at %p to device address space that was never allocated",
             (const void *)q);
  } else if (fiber_stack_guard(q, &what)) {
    snprintf(msg, sizeof msg, "fault at %p in %s", (const void *)q, what);
  } else {
    snprintf(msg, sizeof msg, "fault at %p outside the simulated device memory%s", (const void *)q,
             in_kernel ? " (a host pointer used in a kernel?)" : "");
  }
  if (in_kernel)
    fprintf(stderr, "[idoc-sim] %s: %s\n", where, msg);
  else
    fprintf(stderr, "[idoc-sim] %s\n", msg);
  fflush(stderr);
  // Hand the fault to whoever handled it before (AddressSanitizer prints a stack trace; the
  // default action ends the process): the faulting access runs again on return.
  sigaction(sig, sig == SIGSEGV ? &g_old_segv : &g_old_bus, NULL);
}

void install_fault_handler() {
  static thread_local char *altstack; // kept for the thread's lifetime
  if (!altstack) {                    // the handler must run even when a fiber's stack overflowed
    stack_t ss;
    ss.ss_size = 64 * 1024;
    ss.ss_sp = altstack = (char *)malloc(ss.ss_size);
    ss.ss_flags = 0;
    if (altstack) sigaltstack(&ss, NULL);
  }
  static std::once_flag once;
  std::call_once(once, [] {
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_sigaction = on_fault;
    sa.sa_flags = SA_SIGINFO | SA_ONSTACK;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &g_old_segv);
    sigaction(SIGBUS, &sa, &g_old_bus);
  });
}

} // namespace idoc_sim
