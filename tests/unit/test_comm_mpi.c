// The host side of the communication layer (nn/comm.h). Run alone (world 1) it checks the
// single-process fallback, then starts 2- and 3-rank jobs of itself over the TCP transport
// (torchrun-style RANK / WORLD_SIZE / MASTER_ADDR / MASTER_PORT) and the failure handling: a
// SIGKILLed rank, a hung rank, a dead rank 0 and a failing rank each end the job within
// seconds with a message naming the rank and its step. The second ctest entry runs it under
// mpiexec with two ranks (the MPI transport). Every collective is compared bitwise with what
// the ranks' values give when added in rank order, and a reduce-scatter followed by an
// all-gather must equal the all-reduce bit for bit.
// idoc-requires: mpi
#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>

#include "nn/comm.h"
#include "nn/util.h"
#include "tests/test.h"

static int R, W;

// Rank r's i-th value: distinct per rank, not exactly representable sums.
static float val(int r, size_t i) { return 1.0f / (float)(i % 89 + 3 + 7 * r) - 0.01f * (float)r; }

static void check_collectives(void) {
  const size_t n = 10007; // above the small-vector path, not a multiple of the world
  idoc_arena *A = idoc_arena_new("t", IDOC_DEV_CPU, 1 << 20);
  idoc_tensor *x = idoc_tensor_1d(A, IDOC_F32, (int64_t)n);
  float *want = idoc_xmalloc(n * sizeof(float)), *mx = idoc_xmalloc(n * sizeof(float));
  for (size_t i = 0; i < n; i++) {
    IDOC_F(x)[i] = val(R, i);
    float s = val(0, i), m = val(0, i);
    for (int r = 1; r < W; r++)
      s += val(r, i), m = val(r, i) > m ? val(r, i) : m;
    want[i] = s, mx[i] = m;
  }
  idoc_comm_all_reduce(x, IDOC_RED_SUM);
  T_CHECK(!memcmp(IDOC_F(x), want, n * sizeof(float)), "all-reduce sum is the rank-order sum");
  for (size_t i = 0; i < n; i++)
    IDOC_F(x)[i] = val(R, i);
  idoc_comm_all_reduce(x, IDOC_RED_MAX);
  T_CHECK(!memcmp(IDOC_F(x), mx, n * sizeof(float)), "all-reduce max");
  for (size_t i = 0; i < n; i++)
    IDOC_F(x)[i] = val(R, i);
  idoc_comm_all_reduce(x, IDOC_RED_AVG);
  bool avg_ok = true;
  for (size_t i = 0; i < n; i++)
    avg_ok &= IDOC_F(x)[i] == want[i] / (float)W;
  T_CHECK(avg_ok, "all-reduce avg = sum / world in fp32");

  // Reduce-scatter then all-gather: bitwise the all-reduce (ZeRO-1 == plain data parallel).
  const int64_t seg = 1001;
  idoc_tensor *in = idoc_tensor_1d(A, IDOC_F32, seg * W), *out = idoc_tensor_1d(A, IDOC_F32, seg);
  idoc_tensor *full = idoc_tensor_1d(A, IDOC_F32, seg * W),
              *ar = idoc_tensor_1d(A, IDOC_F32, seg * W);
  for (int64_t i = 0; i < seg * W; i++)
    IDOC_F(in)[i] = IDOC_F(ar)[i] = val(R, (size_t)i * 7 + 1);
  idoc_comm_reduce_scatter(in, out, IDOC_RED_SUM);
  idoc_comm_all_gather(out, full);
  idoc_comm_all_reduce(ar, IDOC_RED_SUM);
  T_CHECK(!memcmp(IDOC_F(full), IDOC_F(ar), (size_t)(seg * W) * sizeof(float)),
          "reduce-scatter + all-gather == all-reduce");

  // Uneven segments (one empty), in small rounds (IDOC_COMM_CHUNK) and in one.
  int64_t counts[8], tot = 0;
  for (int r = 0; r < W; r++)
    tot += counts[r] = r == 1 ? 0 : 300 + 77 * r;
  float *a = idoc_xmalloc((size_t)tot * sizeof(float)),
        *b = idoc_xmalloc((size_t)tot * sizeof(float));
  for (int round = 0; round < 2; round++) {
    setenv("IDOC_COMM_CHUNK", round ? "37" : "0", 1);
    for (int64_t i = 0; i < tot; i++)
      a[i] = val(R, (size_t)i);
    int64_t off = 0;
    for (int r = 0; r < R; r++)
      off += counts[r];
    float *mine = idoc_xmalloc((size_t)(counts[R] + 1) * sizeof(float));
    idoc_comm_reduce_scatterv_f32(a, mine, counts, IDOC_RED_SUM);
    bool ok = true;
    for (int64_t i = 0; i < counts[R]; i++) {
      float s = val(0, (size_t)(off + i));
      for (int r = 1; r < W; r++)
        s += val(r, (size_t)(off + i));
      ok &= mine[i] == s;
    }
    T_CHECK(ok, "uneven reduce-scatter (round %d)", round);
    for (int64_t i = 0; i < counts[R]; i++)
      mine[i] = (float)(R * 1000 + i);
    idoc_comm_all_gatherv_f32(mine, b, counts);
    ok = true;
    int64_t o = 0;
    for (int r = 0; r < W; r++)
      for (int64_t i = 0; i < counts[r]; i++)
        ok &= b[o++] == (float)(r * 1000 + i);
    T_CHECK(ok, "uneven all-gather (round %d)", round);
    free(mine);
  }
  setenv("IDOC_COMM_CHUNK", "0", 1);
  free(a);
  free(b);

  // bf16 sums in fp32, rounded once; i32 sums exact.
  idoc_tensor *h = idoc_tensor_1d(A, IDOC_BF16, 513), *k = idoc_tensor_1d(A, IDOC_I32, 513);
  for (int i = 0; i < 513; i++) {
    ((uint16_t *)h->data)[i] = idoc_f32_to_bf16(val(R, (size_t)i));
    IDOC_I(k)[i] = i * (R + 1);
  }
  idoc_comm_all_reduce(h, IDOC_RED_SUM);
  idoc_comm_all_reduce(k, IDOC_RED_SUM);
  bool hb = true, kb = true;
  for (int i = 0; i < 513; i++) {
    float s = idoc_bf16_to_f32(idoc_f32_to_bf16(val(0, (size_t)i)));
    for (int r = 1; r < W; r++)
      s += idoc_bf16_to_f32(idoc_f32_to_bf16(val(r, (size_t)i)));
    hb &= ((uint16_t *)h->data)[i] == idoc_f32_to_bf16(s);
    kb &= IDOC_I(k)[i] == i * W * (W + 1) / 2;
  }
  T_CHECK(hb, "bf16 all-reduce");
  T_CHECK(kb, "i32 all-reduce");

  // Broadcast from every root; small f64 / i64 vectors.
  for (int root = 0; root < W; root++) {
    idoc_tensor *t = idoc_tensor_1d(A, IDOC_F32, 333);
    for (int i = 0; i < 333; i++)
      IDOC_F(t)[i] = val(R, (size_t)i);
    idoc_comm_broadcast(t, root);
    bool ok = true;
    for (int i = 0; i < 333; i++)
      ok &= IDOC_F(t)[i] == val(root, (size_t)i);
    T_CHECK(ok, "broadcast from %d", root);
  }
  double d[3] = {0.1 * R, 1.0 + R, -(double)R};
  idoc_comm_all_reduce_f64(d, 3, IDOC_RED_SUM);
  double d0 = 0;
  for (int r = 0; r < W; r++)
    d0 += 0.1 * r;
  T_CHECK(d[0] == d0 && d[1] == W + W * (W - 1) / 2.0, "f64 all-reduce %g %g", d[0], d[1]);
  int64_t q[2] = {R, -R};
  idoc_comm_all_reduce_i64(q, 2, IDOC_RED_MAX);
  T_CHECK(q[0] == W - 1 && q[1] == 0, "i64 max");

  // Gather of different sizes to rank 0.
  char msg[64];
  int len = snprintf(msg, sizeof msg, "rank %d says %s", R, R % 2 ? "hi" : "hello there");
  size_t *sizes = NULL;
  char *all = idoc_comm_gather_bytes(msg, (size_t)len, 0, &sizes);
  if (R == 0) {
    size_t o = 0;
    bool ok = true;
    for (int r = 0; r < W; r++) {
      char w[64];
      int l = snprintf(w, sizeof w, "rank %d says %s", r, r % 2 ? "hi" : "hello there");
      ok &= sizes[r] == (size_t)l && !memcmp(all + o, w, (size_t)l);
      o += sizes[r];
    }
    T_CHECK(ok, "gather of uneven sizes");
  }
  free(all);
  free(sizes);

  // Failure agreement: the lowest failing rank's message reaches everyone.
  idoc_clear_error();
  int rc = IDOC_OK;
  if (W > 1 && R == W - 1) rc = idoc_set_error("the disk is full");
  bool failed = idoc_comm_any_failed(rc);
  T_CHECK(failed == (W > 1), "any_failed");
  if (W > 1) {
    char want_msg[64];
    snprintf(want_msg, sizeof want_msg, "rank %d: the disk is full", W - 1);
    T_CHECK(R == W - 1 || !strcmp(idoc_last_error(), want_msg), "message: %s", idoc_last_error());
  }
  T_CHECK(!idoc_comm_any_failed(IDOC_OK), "no failure");
  idoc_comm_barrier();
  free(want);
  free(mx);
  idoc_arena_free(A);
}

// ---- jobs of this binary over TCP ---------------------------------------------------------------
static int free_port(void) {
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  bind(fd, (struct sockaddr *)&a, sizeof a);
  socklen_t L = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &L);
  close(fd);
  return ntohs(a.sin_port);
}

typedef struct {
  int status[4];
  double seconds; // until the last rank ended
  char err[4][4096];
} job;

// Runs `world` ranks of this binary in `mode` with the TCP transport; waits for all.
static void run_job(const char *self, const char *mode, int world, const char *timeout, job *j) {
  memset(j, 0, sizeof *j);
  char port[16];
  snprintf(port, sizeof port, "%d", free_port());
  pid_t pid[4];
  char errf[4][64];
  double t0 = idoc_now();
  fflush(stdout);
  for (int r = 0; r < world; r++) {
    snprintf(errf[r], sizeof errf[r], "test_comm_mpi.tmp.%d.err", r);
    pid[r] = fork();
    if (pid[r] == 0) {
      char rs[8], ws[8];
      snprintf(rs, sizeof rs, "%d", r);
      snprintf(ws, sizeof ws, "%d", world);
      setenv("RANK", rs, 1);
      setenv("WORLD_SIZE", ws, 1);
      setenv("LOCAL_RANK", rs, 1);
      setenv("MASTER_ADDR", "127.0.0.1", 1);
      setenv("MASTER_PORT", port, 1);
      setenv("IDOC_COMM_BACKEND", "tcp", 1);
      setenv("IDOC_DDP_TIMEOUT", timeout, 1);
      int fd = open(errf[r], O_WRONLY | O_CREAT | O_TRUNC, 0644);
      dup2(fd, 2);
      execl(self, self, mode, (char *)NULL);
      _exit(99);
    }
  }
  for (int r = 0; r < world; r++)
    waitpid(pid[r], &j->status[r], 0);
  j->seconds = idoc_now() - t0;
  for (int r = 0; r < world; r++) {
    char *d;
    size_t n;
    if (idoc_read_file(errf[r], &d, &n) == IDOC_OK) {
      snprintf(j->err[r], sizeof j->err[r], "%s", d);
      free(d);
    }
    unlink(errf[r]);
  }
}

static bool exited(int st, int code) { return WIFEXITED(st) && WEXITSTATUS(st) == code; }

static void sleep_s(double s) {
  struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
  nanosleep(&ts, NULL);
}

// The child modes: collectives, or a failure scenario (rank 1 or 0 misbehaves at step 3).
static int child(const char *mode) {
  if (idoc_comm_init()) {
    fprintf(stderr, "init: %s\n", idoc_last_error());
    return 2;
  }
  R = idoc_comm_rank();
  W = idoc_comm_world();
  if (!strcmp(mode, "--collectives")) {
    check_collectives();
    idoc_comm_shutdown(true);
    return t_fail ? 1 : 0;
  }
  idoc_comm_barrier();
  idoc_comm_set_step(3);
  idoc_comm_set_phase("forward/backward");
  bool bad = R == (strcmp(mode, "--root-dies") ? 1 : 0);
  if (bad && (!strcmp(mode, "--kill") || !strcmp(mode, "--root-dies"))) {
    sleep_s(0.3);
    raise(SIGKILL);
  }
  if (bad && !strcmp(mode, "--hang"))
    for (;;) // no allocations, no collectives: the watchdog must call this a hang
      sleep_s(1);
  if (bad && !strcmp(mode, "--fail")) {
    idoc_set_error("dataset.h5: sample 7: bad image");
    idoc_comm_shutdown(false);
  }
  idoc_comm_barrier(); // the others wait here for the bad rank
  idoc_comm_shutdown(true);
  return 0;
}

int main(int argc, char **argv) {
  if (argc > 1 && argv[1][0] == '-') return child(argv[1]);
  T_CHECK(idoc_comm_init() == IDOC_OK, "init: %s", idoc_last_error());
  R = idoc_comm_rank();
  W = idoc_comm_world();
  printf("rank %d of %d (%s, %s)\n", R, W, idoc_comm_get()->launcher, idoc_comm_get()->backend);
  check_collectives();
  idoc_comm_shutdown(true);
  if (W > 1) return t_summary("test_comm_mpi (mpi)");

  // The environment: a Slurm batch script's own shell is one process; bad values are named.
  static const char *vars[] = {"SLURM_PROCID", "SLURM_NTASKS", "SLURM_STEP_NUM_TASKS", "RANK",
                               "WORLD_SIZE"};
  setenv("SLURM_PROCID", "0", 1);
  setenv("SLURM_NTASKS", "2", 1);
  T_CHECK(idoc_comm_init() == IDOC_OK && idoc_comm_world() == 1 &&
              !strcmp(idoc_comm_get()->launcher, "none"),
          "batch shell (no srun step): a single process");
  idoc_comm_shutdown(true);
  setenv("SLURM_STEP_NUM_TASKS", "two", 1);
  T_CHECK(idoc_comm_init() == IDOC_ERR && strstr(idoc_last_error(), "SLURM_STEP_NUM_TASKS='two'"),
          "bad step size named: %s", idoc_last_error());
  unsetenv("SLURM_STEP_NUM_TASKS");
  setenv("WORLD_SIZE", "2", 1);
  T_CHECK(idoc_comm_init() == IDOC_ERR && strstr(idoc_last_error(), "RANK is not"),
          "WORLD_SIZE without RANK: %s", idoc_last_error());
  setenv("RANK", "2", 1);
  T_CHECK(idoc_comm_init() == IDOC_ERR && strstr(idoc_last_error(), "RANK='2'"),
          "rank outside the world: %s", idoc_last_error());
  setenv("RANK", "1", 1);
  setenv("IDOC_COMM_BACKEND", "tcp", 1);
  unsetenv("MASTER_PORT");
  T_CHECK(idoc_comm_init() == IDOC_ERR && strstr(idoc_last_error(), "MASTER_PORT"),
          "TCP without MASTER_PORT: %s", idoc_last_error());
  unsetenv("IDOC_COMM_BACKEND");
  for (size_t i = 0; i < sizeof vars / sizeof vars[0]; i++)
    unsetenv(vars[i]);

  // The same checks with 2 and 3 ranks over TCP.
  job j;
  for (int world = 2; world <= 3; world++) {
    run_job("/proc/self/exe", "--collectives", world, "60", &j);
    for (int r = 0; r < world; r++)
      T_CHECK(exited(j.status[r], 0), "tcp %d ranks: rank %d status %d: %s", world, r, j.status[r],
              j.err[r]);
  }
  // A SIGKILLed rank 1: rank 0 names it and its step, the job ends at once.
  run_job("/proc/self/exe", "--kill", 2, "60", &j);
  T_CHECK(WIFSIGNALED(j.status[1]) && exited(j.status[0], 1), "kill: statuses %d %d", j.status[0],
          j.status[1]);
  T_CHECK(strstr(j.err[0], "rank 1") && strstr(j.err[0], "died") && strstr(j.err[0], "step 3"),
          "kill message: %s", j.err[0]);
  T_CHECK(j.seconds < 10, "kill detected in %.1f s", j.seconds);
  printf("killed rank: job ended in %.2f s: %s", j.seconds, j.err[0]);
  // A hung rank (no progress outside collectives for ddp_timeout = 2 s).
  run_job("/proc/self/exe", "--hang", 2, "2", &j);
  T_CHECK(exited(j.status[0], 1) && exited(j.status[1], 1), "hang: statuses %d %d", j.status[0],
          j.status[1]);
  T_CHECK(strstr(j.err[0], "rank 1") && strstr(j.err[0], "hung") && strstr(j.err[0], "step 3"),
          "hang message: %s", j.err[0]);
  T_CHECK(j.seconds < 15, "hang detected in %.1f s", j.seconds);
  printf("hung rank: job ended in %.2f s: %s", j.seconds, j.err[0]);
  // Rank 0 dies: rank 1 says so.
  run_job("/proc/self/exe", "--root-dies", 2, "60", &j);
  T_CHECK(WIFSIGNALED(j.status[0]) && exited(j.status[1], 1), "root dies: statuses %d %d",
          j.status[0], j.status[1]);
  T_CHECK(strstr(j.err[1], "rank 0") && strstr(j.err[1], "step 3"), "root-dies message: %s",
          j.err[1]);
  T_CHECK(j.seconds < 10, "rank 0's death detected in %.1f s", j.seconds);
  // A failing rank: its error reaches rank 0, which ends the job.
  run_job("/proc/self/exe", "--fail", 2, "60", &j);
  T_CHECK(exited(j.status[0], 1) && exited(j.status[1], 1), "fail: statuses %d %d", j.status[0],
          j.status[1]);
  T_CHECK(strstr(j.err[0], "rank 1 failed at step 3") && strstr(j.err[0], "bad image"),
          "fail message: %s", j.err[0]);
  return t_summary("test_comm_mpi");
}
