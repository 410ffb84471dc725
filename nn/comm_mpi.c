// idoc-requires: mpi
// The MPI host transport (nn/comm_internal.h): nonblocking MPI-3 collectives on a duplicate of
// MPI_COMM_WORLD with MPI_ERRORS_RETURN, completed by a polling loop that sleeps between tests
// (a rank waiting for a slower one leaves its core to it) and tells the watchdog it is in a
// collective. An MPI error ends the job with the MPI message, the collective and the step.
#define _DEFAULT_SOURCE
#include <limits.h>
#include <mpi.h>
#include <sched.h>
#include <time.h>

#include "nn/comm_internal.h"
#include "nn/util.h"

static MPI_Comm g_comm = MPI_COMM_NULL;
static bool g_we_init;

bool idoc_comm_mpi_active(void) {
  int inited = 0, fin = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&fin);
  return inited && !fin;
}

static void check(int e, const char *what) {
  if (e == MPI_SUCCESS) return;
  char s[MPI_MAX_ERROR_STRING];
  int n = 0;
  MPI_Error_string(e, s, &n);
  idoc_ctl_fatal("MPI error in %s: %s", what, s);
}

static void wait_req(MPI_Request *r, const char *what) {
  for (long spins = 0;; spins++) {
    int done = 0;
    check(MPI_Test(r, &done, MPI_STATUS_IGNORE), what);
    if (done) return;
    if (spins < 64) {
      sched_yield();
    } else {
      struct timespec ts = {0, spins < 4096 ? 20000 : 200000};
      nanosleep(&ts, NULL);
    }
  }
}

static int to_int(size_t n, const char *what) {
  if (n > (size_t)INT_MAX) idoc_ctl_fatal("%s: %zu bytes exceed one MPI call", what, n);
  return (int)n;
}

static int mpi_init(int *rank, int *world) {
  if (!idoc_comm_mpi_active()) {
    int provided = 0;
    if (MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS)
      return idoc_set_error("MPI_Init_thread failed");
    g_we_init = true;
  }
  MPI_Comm_dup(MPI_COMM_WORLD, &g_comm);
  MPI_Comm_set_errhandler(g_comm, MPI_ERRORS_RETURN);
  MPI_Comm_rank(g_comm, rank);
  MPI_Comm_size(g_comm, world);
  return IDOC_OK;
}

static void mpi_finalize(void) {
  if (g_comm != MPI_COMM_NULL) MPI_Comm_free(&g_comm);
  if (g_we_init && idoc_comm_mpi_active()) MPI_Finalize();
  g_we_init = false;
}

static void mpi_alltoallv(const void *send, const size_t *sc, const size_t *sd, void *recv,
                          const size_t *rc, const size_t *rd) {
  int W = 0;
  MPI_Comm_size(g_comm, &W);
  int *v = idoc_xmalloc((size_t)W * 4 * sizeof(int));
  for (int r = 0; r < W; r++) {
    v[r] = to_int(sc[r], "alltoallv");
    v[W + r] = to_int(sd[r], "alltoallv");
    v[2 * W + r] = to_int(rc[r], "alltoallv");
    v[3 * W + r] = to_int(rd[r], "alltoallv");
  }
  MPI_Request req;
  check(
      MPI_Ialltoallv(send, v, v + W, MPI_BYTE, recv, v + 2 * W, v + 3 * W, MPI_BYTE, g_comm, &req),
      "MPI_Ialltoallv");
  wait_req(&req, "MPI_Ialltoallv");
  free(v);
}

static void mpi_allgatherv(const void *send, void *recv, const size_t *counts,
                           const size_t *displs) {
  int W = 0, me = 0;
  MPI_Comm_size(g_comm, &W);
  MPI_Comm_rank(g_comm, &me);
  int *v = idoc_xmalloc((size_t)W * 2 * sizeof(int));
  for (int r = 0; r < W; r++) {
    v[r] = to_int(counts[r], "allgatherv");
    v[W + r] = to_int(displs[r], "allgatherv");
  }
  MPI_Request req;
  check(MPI_Iallgatherv(send, v[me], MPI_BYTE, recv, v, v + W, MPI_BYTE, g_comm, &req),
        "MPI_Iallgatherv");
  wait_req(&req, "MPI_Iallgatherv");
  free(v);
}

static void mpi_gatherv(const void *send, size_t n, void *recv, const size_t *counts,
                        const size_t *displs, int root) {
  int W = 0, me = 0;
  MPI_Comm_size(g_comm, &W);
  MPI_Comm_rank(g_comm, &me);
  int *v = NULL;
  if (me == root) {
    v = idoc_xmalloc((size_t)W * 2 * sizeof(int));
    for (int r = 0; r < W; r++) {
      v[r] = to_int(counts[r], "gatherv");
      v[W + r] = to_int(displs[r], "gatherv");
    }
  }
  MPI_Request req;
  check(MPI_Igatherv(send, to_int(n, "gatherv"), MPI_BYTE, recv, v, v ? v + W : NULL, MPI_BYTE,
                     root, g_comm, &req),
        "MPI_Igatherv");
  wait_req(&req, "MPI_Igatherv");
  free(v);
}

static void mpi_bcast(void *p, size_t n, int root) {
  MPI_Request req;
  check(MPI_Ibcast(p, to_int(n, "bcast"), MPI_BYTE, root, g_comm, &req), "MPI_Ibcast");
  wait_req(&req, "MPI_Ibcast");
}

static void mpi_barrier(void) {
  MPI_Request req;
  check(MPI_Ibarrier(g_comm, &req), "MPI_Ibarrier");
  wait_req(&req, "MPI_Ibarrier");
}

const idoc_comm_transport idoc_comm_mpi = {"mpi",          mpi_init,    mpi_finalize, mpi_alltoallv,
                                           mpi_allgatherv, mpi_gatherv, mpi_bcast,    mpi_barrier};
