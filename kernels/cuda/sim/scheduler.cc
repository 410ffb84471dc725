// The simulator's execution model. A launch runs its blocks one after another (in a seeded
// shuffled order); the threads of a block are fibers that run one at a time until they reach a
// barrier: __syncthreads() waits for every thread of the block, a warp intrinsic for the
// non-exited lanes its mask names, and both then exchange values. Between barriers the order of
// the runnable threads is reshuffled from the seed, so a kernel whose result depends on the
// order (a missing __syncthreads, a read before another thread's write) gives different bits
// under two seeds. Everything NVIDIA documents as undefined that we can see (a barrier some
// threads skip, lanes that disagree on a mask, shuffles with a bad width, more threads or
// shared memory than an sm_90 block may have) aborts with a message naming the kernel, block and
// thread; results NVIDIA leaves undefined (a shuffle from an inactive lane) come back as poison.
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <mutex>
#include <vector>

#include "kernels/cuda/sim/idoc_sim.h"
#include "kernels/cuda/sim/sim.h"

namespace idoc_sim {

// Limits of an sm_90 (H100/H200) block, from the CUDA programming guide's compute capability
// table.
static const unsigned k_max_threads = 1024, k_max_block_x = 1024, k_max_block_y = 1024,
                      k_max_block_z = 64;
static const unsigned long long k_max_grid_x = 2147483647ull, k_max_grid_yz = 65535;
static const size_t k_static_smem = 48 * 1024;
static const uint64_t k_poison = ~(uint64_t)0;

enum tstate : uint8_t { S_READY, S_SYNC, S_WARP, S_DONE };
struct thread_state {
  uint3 idx;
  fiber fib;
  int lin, warp, lane;
  tstate st;
  block_barrier_kind sync_kind;
  int sync_pred, sync_res;
  collective wop;
  unsigned wmask;
  int warg, wwidth;
  uint64_t wval, wres;
};

struct slot {
  const void *tag;
  void *p;
  size_t bytes;
  const char *name;
};
struct block_ctx {
  thread_state th[1024];
  int n, n_done, n_sync;
  std::vector<int> cur, next;
  std::vector<slot> slots;
  size_t static_bytes, dyn_bytes, smem_limit;
  char *dyn;
};
struct launch_ctx {
  kernel_body *body;
  const launch_site *site;
  dim3 grid, block;
  uint64_t id;
};

static thread_local thread_state *g_cur;
dim3 g_block_dim, g_grid_dim;
uint3 g_block_idx;
static thread_local launch_ctx *t_launch;
static thread_local block_ctx *t_block;
static std::mutex g_launch_mu;
static uint64_t g_seed = 1, g_launches;
static bool g_seed_from_env;

static void seed_from_env() {
  if (g_seed_from_env) return;
  g_seed_from_env = true;
  if (const char *e = getenv("IDOC_SIM_SEED")) g_seed = strtoull(e, NULL, 0);
}

// ---- diagnostics
// ------------------------------------------------------------------------------------
static const char *op_name(collective op) {
  static const char *n[] = {"__shfl_sync",     "__shfl_up_sync", "__shfl_down_sync",
                            "__shfl_xor_sync", "__ballot_sync",  "__any_sync",
                            "__all_sync",      "__syncwarp",     "wmma"};
  return n[op];
}

const launch_site *current_launch() { return t_launch ? t_launch->site : NULL; }

bool describe_current_thread(char *buf, size_t n) {
  if (!t_launch) return false;
  const launch_site *s = t_launch->site;
  int k = snprintf(buf, n, "kernel %s (launched at %s:%d) block (%u,%u,%u)", s->name, s->file,
                   s->line, g_block_idx.x, g_block_idx.y, g_block_idx.z);
  if (g_cur && k > 0 && (size_t)k < n)
    snprintf(buf + k, n - (size_t)k, " thread (%u,%u,%u)", g_cur->idx.x, g_cur->idx.y,
             g_cur->idx.z);
  return true;
}

void note(const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  fprintf(stderr, "[idoc-sim] %s\n", msg);
}

void fail(const char *fmt, ...) {
  char msg[1024], where[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  if (describe_current_thread(where, sizeof where))
    fprintf(stderr, "[idoc-sim] %s: %s\n", where, msg);
  else
    fprintf(stderr, "[idoc-sim] %s\n", msg);
  fflush(stderr);
  abort();
}

void fail_host_pointer_arg(const launch_site &s, int index, const void *p) {
  fail("kernel %s (launched at %s:%d): argument %d is %p, which is not device memory (a host "
       "pointer is an illegal address on the GPU)",
       s.name, s.file, s.line, index, p);
}

// ---- order shaking
// --------------------------------------------------------------------------------------
static uint64_t mix(uint64_t x) { // splitmix64
  x += 0x9e3779b97f4a7c15ull;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}
struct rng {
  uint64_t s;
  uint64_t next() { return s = mix(s); }
};
template <class T> static void shuffle(std::vector<T> &v, rng &r) {
  if (g_seed == 0) return;
  for (size_t i = v.size(); i > 1; i--) {
    size_t j = (size_t)(r.next() % i);
    std::swap(v[i - 1], v[j]);
  }
}

// ---- the kernel-side interface
// ----------------------------------------------------------------------------
const uint3 &thread_idx() {
  if (!g_cur) fail("threadIdx read outside a kernel");
  return g_cur->idx;
}

int block_barrier(block_barrier_kind kind, int pred) {
  thread_state *t = g_cur;
  if (!t) fail("__syncthreads() called outside a kernel");
  t->st = S_SYNC;
  t->sync_kind = kind;
  t->sync_pred = pred;
  fiber_yield(&t->fib);
  return t->sync_res;
}

uint64_t warp_collective(collective op, unsigned mask, uint64_t value, int arg, int width) {
  thread_state *t = g_cur;
  if (!t) fail("%s called outside a kernel", op_name(op));
  if (!((mask >> t->lane) & 1u))
    fail("%s: mask 0x%08x does not include the calling lane %d", op_name(op), mask, t->lane);
  if (width <= 0 || width > 32 || (width & (width - 1)))
    fail("%s: width %d is not a power of two in [1, 32]", op_name(op), width);
  t->st = S_WARP;
  t->wop = op;
  t->wmask = mask;
  t->wval = value;
  t->warg = arg;
  t->wwidth = width;
  fiber_yield(&t->fib);
  return t->wres;
}

unsigned active_mask() {
  thread_state *t = g_cur;
  if (!t) fail("__activemask() called outside a kernel");
  block_ctx &B = *t_block;
  unsigned m = 0;
  int base = t->warp * 32;
  for (int l = 0; l < 32 && base + l < B.n; l++)
    if (B.th[base + l].st != S_DONE) m |= 1u << l;
  return m;
}

void *shared_slot(const void *tag, size_t bytes, size_t align, const char *name) {
  if (!t_block || !g_cur) fail("shared memory '%s' declared outside a kernel", name);
  block_ctx &B = *t_block;
  for (const slot &s : B.slots)
    if (s.tag == tag) return s.p;
  if (align < 16) align = 16;
  size_t rounded = (bytes + align - 1) / align * align;
  B.static_bytes += rounded;
  if (B.static_bytes > k_static_smem)
    fail("static shared memory reaches %zu bytes with '%s' (%zu bytes); an sm_90 block may "
         "declare at most %zu",
         B.static_bytes, name, bytes, k_static_smem);
  if (B.static_bytes + B.dyn_bytes > B.smem_limit)
    fail("static (%zu) + dynamic (%zu) shared memory exceed the block's limit of %zu bytes",
         B.static_bytes, B.dyn_bytes, B.smem_limit);
  void *p = aligned_alloc(align, rounded ? rounded : align);
  if (!p) fail("out of host memory for shared memory '%s'", name);
  memset(p, 0xff, rounded ? rounded : align); // undefined on the GPU: poison (NaN for floats)
  B.slots.push_back({tag, p, bytes, name});
  return p;
}

void *dynamic_shared() {
  if (!t_block || !g_cur) fail("dynamic shared memory used outside a kernel");
  return t_block->dyn;
}

// ---- block execution
// ----------------------------------------------------------------------------------------
static void thread_main(void *p) {
  (void)p;
  t_launch->body->run();
  g_cur->st = S_DONE;
}

static uint64_t result_for(const block_ctx &B, const thread_state *u, unsigned part) {
  int base = u->warp * 32, lane = u->lane;
  int w = u->wwidth, sub = lane & ~(w - 1), src = lane;
  switch (u->wop) {
  case W_SHFL: src = sub + (u->warg & (w - 1)); break;
  case W_SHFL_UP: // the lowest `delta` lanes of each subsection keep their own value
    src = lane - u->warg;
    if (src < sub) src = lane;
    break;
  case W_SHFL_DOWN:
    src = lane + u->warg;
    if (src >= sub + w) src = lane;
    break;
  case W_SHFL_XOR: // a later subsection is out of reach: the lane keeps its own value
    src = lane ^ u->warg;
    if (src >= sub + w) src = lane;
    break;
  case W_BALLOT:
  case W_ANY:
  case W_ALL: {
    unsigned bits = 0;
    for (unsigned m = part; m; m &= m - 1) {
      int l = __builtin_ctz(m);
      if (B.th[base + l].wval) bits |= 1u << l;
    }
    if (u->wop == W_BALLOT) return bits;
    if (u->wop == W_ANY) return bits != 0;
    return bits == part;
  }
  case W_SYNCWARP:
  case W_WMMA: return 0;
  }
  if (src < 0 || src > 31 || !((part >> src) & 1u)) return k_poison; // inactive source lane
  return B.th[base + src].wval;
}

// A lane of t's warp has arrived at (or exited before) the collective t waits in: release the
// group when every non-exited lane of its mask has arrived.
static void try_complete(block_ctx &B, thread_state *t) {
  int base = t->warp * 32, nl = B.n - base < 32 ? B.n - base : 32;
  unsigned exist = nl == 32 ? 0xffffffffu : (1u << nl) - 1u, mask = t->wmask, part = 0;
  if (t->wop == W_WMMA && (mask & ~exist))
    fail("wmma operations need a full warp (warp %d has %d threads)", t->warp, nl);
  for (unsigned m = mask & exist; m; m &= m - 1) {
    int l = __builtin_ctz(m);
    thread_state *u = &B.th[base + l];
    if (u->st == S_DONE) {
      if (t->wop == W_WMMA)
        fail("wmma: lane %d of warp %d exited before the operation", l, t->warp);
      continue;
    }
    if (u->st != S_WARP) return; // not there yet
    if (u->wmask != mask)
      fail("lanes %d and %d of warp %d wait in warp intrinsics with different masks (0x%08x in "
           "%s, 0x%08x in %s)",
           t->lane, l, t->warp, mask, op_name(t->wop), u->wmask, op_name(u->wop));
    if (u->wop != t->wop)
      fail("lanes %d and %d of warp %d execute different warp intrinsics (%s and %s) with mask "
           "0x%08x",
           t->lane, l, t->warp, op_name(t->wop), op_name(u->wop), mask);
    if (u->wop == W_WMMA && (u->warg != t->warg || u->wval != t->wval))
      fail("wmma: lanes %d and %d of warp %d pass different arguments to the same operation",
           t->lane, l, t->warp);
    part |= 1u << l;
  }
  for (unsigned m = part; m; m &= m - 1) {
    thread_state *u = &B.th[base + __builtin_ctz(m)];
    u->wres = result_for(B, u, part);
  }
  for (unsigned m = part; m; m &= m - 1) {
    int l = __builtin_ctz(m);
    B.th[base + l].st = S_READY;
    B.next.push_back(base + l);
  }
}

static const char *sync_name(block_barrier_kind k) {
  static const char *n[] = {"__syncthreads", "__syncthreads_count", "__syncthreads_and",
                            "__syncthreads_or"};
  return n[k];
}

static void release_sync(block_ctx &B) {
  int count = 0;
  block_barrier_kind kind = B.th[0].sync_kind;
  for (int i = 0; i < B.n; i++) {
    if (B.th[i].sync_kind != kind)
      fail("threads 0 and %d of the block meet at different barriers (%s and %s)", i,
           sync_name(kind), sync_name(B.th[i].sync_kind));
    count += B.th[i].sync_pred != 0;
  }
  int res = kind == B_COUNT ? count : kind == B_AND ? count == B.n : kind == B_OR ? count > 0 : 0;
  for (int i = 0; i < B.n; i++) {
    B.th[i].sync_res = res;
    B.th[i].st = S_READY;
    B.next.push_back(i);
  }
  B.n_sync = 0;
}

static void after_yield(block_ctx &B, thread_state *t) {
  switch (t->st) {
  case S_DONE:
    B.n_done++;
    if (B.n_sync)
      fail("this thread exited while %d other threads of its block wait in __syncthreads(): a "
           "barrier must be reached by all threads of the block",
           B.n_sync);
    for (int l = 0; l < 32; l++) { // lanes waiting for this one in a warp intrinsic
      int i = t->warp * 32 + l;
      if (i >= B.n) break;
      thread_state *u = &B.th[i];
      if (u->st == S_WARP && ((u->wmask >> t->lane) & 1u)) try_complete(B, u);
    }
    break;
  case S_SYNC:
    if (B.n_done)
      fail("%s() reached after %d threads of the block exited: a barrier must be reached by "
           "all threads of the block",
           sync_name(t->sync_kind), B.n_done);
    if (++B.n_sync == B.n) release_sync(B);
    break;
  case S_WARP: try_complete(B, t); break;
  case S_READY: fail("internal: a thread yielded without waiting");
  }
}

[[noreturn]] static void report_deadlock(block_ctx &B) {
  int at_sync = 0, at_warp = 0, first_warp = -1;
  for (int i = 0; i < B.n; i++) {
    if (B.th[i].st == S_SYNC) at_sync++;
    if (B.th[i].st == S_WARP) {
      at_warp++;
      if (first_warp < 0) first_warp = i;
    }
  }
  g_cur = NULL;
  if (first_warp >= 0) {
    thread_state *u = &B.th[first_warp];
    fail("deadlock: %d threads wait in __syncthreads() and %d in warp intrinsics (thread %d in "
         "%s with mask 0x%08x waits for lanes that never arrive)",
         at_sync, at_warp, first_warp, op_name(u->wop), u->wmask);
  }
  fail("deadlock: %d threads wait in __syncthreads()", at_sync);
}

static void run_block(launch_ctx &L, block_ctx &B, uint3 bidx, rng &r) {
  g_block_idx = bidx;
  unsigned bx = L.block.x, by = L.block.y;
  B.n_done = B.n_sync = 0;
  B.cur.clear();
  for (int i = 0; i < B.n; i++) {
    thread_state *t = &B.th[i];
    t->idx = uint3{(unsigned)i % bx, ((unsigned)i / bx) % by, (unsigned)i / (bx * by)};
    t->lin = i;
    t->warp = i / 32;
    t->lane = i % 32;
    t->st = S_READY;
    fiber_start(&t->fib, thread_main, t);
    B.cur.push_back(i);
  }
  B.static_bytes = 0;
  B.dyn = (char *)malloc(B.dyn_bytes ? B.dyn_bytes : 1);
  if (!B.dyn) fail("out of host memory for %zu bytes of dynamic shared memory", B.dyn_bytes);
  memset(B.dyn, 0xff, B.dyn_bytes);
  shuffle(B.cur, r);
  while (!B.cur.empty()) {
    B.next.clear();
    for (int i : B.cur) {
      thread_state *t = &B.th[i];
      g_cur = t;
      fiber_resume(&t->fib);
      after_yield(B, t);
      g_cur = NULL;
    }
    shuffle(B.next, r);
    std::swap(B.cur, B.next);
  }
  if (B.n_done != B.n) report_deadlock(B);
  for (const slot &s : B.slots)
    free(s.p);
  B.slots.clear();
  free(B.dyn);
  B.dyn = NULL;
}

static bool config_error(const launch_site &s, dim3 grid, dim3 block, size_t smem,
                         size_t smem_limit) {
  unsigned long long nt = (unsigned long long)block.x * block.y * block.z;
  const char *why = NULL;
  char b[256];
  if (!block.x || !block.y || !block.z || !grid.x || !grid.y || !grid.z)
    why = "a zero grid or block dimension";
  else if (block.x > k_max_block_x || block.y > k_max_block_y || block.z > k_max_block_z ||
           nt > k_max_threads) {
    snprintf(b, sizeof b,
             "block (%u,%u,%u) exceeds sm_90's limits (1024 threads; x, y <= 1024, z <= 64)",
             block.x, block.y, block.z);
    why = b;
  } else if (grid.x > k_max_grid_x || grid.y > k_max_grid_yz || grid.z > k_max_grid_yz) {
    snprintf(b, sizeof b, "grid (%u,%u,%u) exceeds the limits (2^31-1, 65535, 65535)", grid.x,
             grid.y, grid.z);
    why = b;
  }
  if (why) {
    note("launch of %s at %s:%d: %s: cudaErrorInvalidConfiguration", s.name, s.file, s.line, why);
    set_last_error(cudaErrorInvalidConfiguration);
    return true;
  }
  if (smem > smem_limit) {
    note("launch of %s at %s:%d: %zu bytes of dynamic shared memory exceed the %zu the kernel "
         "may use (cudaFuncSetAttribute raises it up to 227 KiB): cudaErrorInvalidValue",
         s.name, s.file, s.line, smem, smem_limit);
    set_last_error(cudaErrorInvalidValue);
    return true;
  }
  return false;
}

void launch(kernel_body &body, const launch_site &site, dim3 grid, dim3 block, size_t smem,
            cudaStream_t stream) {
  if (g_cur)
    fail("kernel %s launched from device code (dynamic parallelism is not simulated)", site.name);
  std::lock_guard<std::mutex> lk(g_launch_mu);
  seed_from_env();
  if (!stream_valid(stream)) {
    note("launch of %s at %s:%d: invalid stream %p: cudaErrorInvalidResourceHandle", site.name,
         site.file, site.line, (void *)stream);
    set_last_error(cudaErrorInvalidResourceHandle);
    return;
  }
  size_t limit = func_dynamic_smem_limit(site.fn);
  if (config_error(site, grid, block, smem, limit)) return;
  install_fault_handler();
  static thread_local block_ctx *B;
  if (!B) B = new block_ctx();
  launch_ctx L{&body, &site, grid, block, g_launches++};
  B->n = (int)(block.x * block.y * block.z);
  B->dyn_bytes = smem;
  B->smem_limit = limit > k_static_smem ? limit : k_static_smem;
  {
    device_scope scope;
    t_launch = &L;
    t_block = B;
    g_block_dim = block;
    g_grid_dim = grid;
    rng r{mix(g_seed ^ mix(L.id))};
    unsigned long long nb = (unsigned long long)grid.x * grid.y * grid.z;
    if (nb <= (1ull << 22)) {
      std::vector<uint32_t> order(nb);
      for (uint32_t i = 0; i < nb; i++)
        order[i] = i;
      shuffle(order, r);
      for (uint32_t b : order)
        run_block(L, *B, uint3{b % grid.x, (b / grid.x) % grid.y, b / (grid.x * grid.y)}, r);
    } else { // too many blocks to permute: natural order
      for (unsigned z = 0; z < grid.z; z++)
        for (unsigned y = 0; y < grid.y; y++)
          for (unsigned x = 0; x < grid.x; x++)
            run_block(L, *B, uint3{x, y, z}, r);
    }
    heap_check_canaries(site.name);
    t_launch = NULL;
    t_block = NULL;
  }
}

} // namespace idoc_sim

extern "C" {
void idoc_sim_set_seed(uint64_t seed) {
  idoc_sim::seed_from_env();
  idoc_sim::g_seed = seed;
}
uint64_t idoc_sim_get_seed(void) {
  idoc_sim::seed_from_env();
  return idoc_sim::g_seed;
}
uint64_t idoc_sim_launches(void) { return idoc_sim::g_launches; }
const char *idoc_sim_fiber_backend(void) { return idoc_sim::fiber_backend(); }
}
