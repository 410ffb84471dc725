// Inside the communication layer (nn/comm*.c): the host transports and the control plane.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// A host transport moves bytes; comm.c does the arithmetic (in rank order). Every call is a
// collective over the whole job. Errors end the job (idoc_ctl_fatal); nothing is returned.
typedef struct {
  const char *name;
  // Rank and world as the transport sees them; IDOC_ERR with a message when it cannot start.
  int (*init)(int *rank, int *world);
  void (*finalize)(void);
  // send: world segments (scounts/sdispls, bytes); recv: world segments (rcounts/rdispls).
  void (*alltoallv)(const void *send, const size_t *scounts, const size_t *sdispls, void *recv,
                    const size_t *rcounts, const size_t *rdispls);
  // Rank r's counts[r] bytes land at recv + displs[r] on every rank.
  void (*allgatherv)(const void *send, void *recv, const size_t *counts, const size_t *displs);
  // Rank r's counts[r] bytes land at recv + displs[r] on root (recv/counts only read there).
  void (*gatherv)(const void *send, size_t n, void *recv, const size_t *counts,
                  const size_t *displs, int root);
  void (*bcast)(void *p, size_t n, int root);
  void (*barrier)(void);
} idoc_comm_transport;

#if IDOC_HAVE_MPI
extern const idoc_comm_transport idoc_comm_mpi;
// MPI_COMM_WORLD is initialized (by us or by the simulator's NCCL).
bool idoc_comm_mpi_active(void);
#endif
extern const idoc_comm_transport idoc_comm_tcp;
// The TCP transport's rank and world (from the environment; set before its init).
void idoc_comm_tcp_set(int rank, int world);

// ---- control plane (nn/comm_ctl.c) --------------------------------------------------------
// Starts the connections to rank 0 and the watchdog thread. With `bootstrap` (MPI), rank 0's
// address goes over it; otherwise it is MASTER_ADDR:MASTER_PORT. IDOC_ERR with a message.
int idoc_ctl_start(int rank, int world, const idoc_comm_transport *bootstrap);
// ok: goodbye to rank 0 (then the connections close); !ok: this rank's error to rank 0, which
// ends the job (does not return when world > 1).
void idoc_ctl_stop(bool ok, const char *error);
// A collective begins / ends on this rank (the watchdog reads these).
void idoc_ctl_enter(const char *what);
void idoc_ctl_leave(void);
void idoc_ctl_set_step(int64_t step);
void idoc_ctl_set_phase(const char *phase);
void idoc_ctl_set_timeout(double seconds);
double idoc_ctl_timeout(void);
int64_t idoc_ctl_step(void);
const char *idoc_ctl_phase(void);
// Ends the job from this rank: the message (prefixed "rank R: ") goes to stderr and to rank 0,
// which ends every rank. Never returns.
__attribute__((noreturn, format(printf, 1, 2))) void idoc_ctl_fatal(const char *fmt, ...);
// The TCP data channel to rank 0 (rank 0: to rank r) for the TCP transport; -1 when absent.
int idoc_ctl_data_fd(int peer);
// Blocking exact reads/writes on a data channel; a failure ends the job naming the peer.
void idoc_ctl_send(int peer, const void *p, size_t n);
void idoc_ctl_recv(int peer, void *p, size_t n);
