// The TCP host transport (nn/comm_internal.h), for jobs without MPI (torchrun-style launches,
// builds without an MPI library): every collective goes through rank 0 over the control
// plane's data connections (a star; rank 0 moves W times the data, so it is meant for the
// bootstrap, statistics and small models, not for bandwidth). Ranks call collectives in the
// same order, so the byte stream needs no tags.
#include <stdlib.h>
#include <string.h>

#include "nn/comm_internal.h"
#include "nn/util.h"

static int g_rank, g_world;

static int tcp_init(int *rank, int *world) {
  *rank = g_rank;
  *world = g_world;
  return IDOC_OK;
}

static void tcp_finalize(void) {}

static size_t sum(const size_t *c, int n) {
  size_t s = 0;
  for (int i = 0; i < n; i++)
    s += c[i];
  return s;
}

// Rank r (> 0) sends its counts and every segment to rank 0; rank 0 sends rank s the segments
// addressed to it, in source-rank order (s knows their sizes: rcounts).
static void tcp_alltoallv(const void *send, const size_t *sc, const size_t *sd, void *recv,
                          const size_t *rc, const size_t *rd) {
  const int W = g_world;
  const char *s = send;
  char *d = recv;
  if (g_rank > 0) {
    idoc_ctl_send(0, sc, (size_t)W * sizeof(size_t));
    for (int t = 0; t < W; t++)
      if (sc[t]) idoc_ctl_send(0, s + sd[t], sc[t]);
    for (int t = 0; t < W; t++)
      if (rc[t]) idoc_ctl_recv(0, d + rd[t], rc[t]);
    return;
  }
  // counts[r * W + t]: bytes rank r sends to rank t; data[r]: rank r's segments, packed
  size_t *counts = idoc_xmalloc((size_t)W * W * sizeof(size_t));
  char **data = idoc_xcalloc((size_t)W, sizeof(char *));
  memcpy(counts, sc, (size_t)W * sizeof(size_t));
  for (int r = 1; r < W; r++) {
    idoc_ctl_recv(r, counts + (size_t)r * W, (size_t)W * sizeof(size_t));
    data[r] = idoc_xmalloc(sum(counts + (size_t)r * W, W) + 1);
    size_t o = 0;
    for (int t = 0; t < W; t++) {
      if (counts[(size_t)r * W + t]) idoc_ctl_recv(r, data[r] + o, counts[(size_t)r * W + t]);
      o += counts[(size_t)r * W + t];
    }
  }
  for (int t = 0; t < W; t++)
    for (int r = 0; r < W; r++) {
      size_t n = counts[(size_t)r * W + t], o = 0;
      for (int u = 0; u < t; u++)
        o += counts[(size_t)r * W + u];
      const char *src = r == 0 ? s + sd[t] : data[r] + o;
      if (!n) continue;
      if (t == 0)
        memcpy(d + rd[r], src, n);
      else
        idoc_ctl_send(t, src, n);
    }
  for (int r = 1; r < W; r++)
    free(data[r]);
  free(data);
  free(counts);
}

static void tcp_allgatherv(const void *send, void *recv, const size_t *counts,
                           const size_t *displs) {
  char *d = recv;
  const int W = g_world;
  if (g_rank > 0) {
    if (counts[g_rank]) idoc_ctl_send(0, send, counts[g_rank]);
    for (int r = 0; r < W; r++)
      if (counts[r]) idoc_ctl_recv(0, d + displs[r], counts[r]);
    return;
  }
  if (counts[0] && d + displs[0] != send) memmove(d + displs[0], send, counts[0]);
  for (int r = 1; r < W; r++)
    if (counts[r]) idoc_ctl_recv(r, d + displs[r], counts[r]);
  for (int t = 1; t < W; t++)
    for (int r = 0; r < W; r++)
      if (counts[r]) idoc_ctl_send(t, d + displs[r], counts[r]);
}

static void tcp_bcast(void *p, size_t n, int root) {
  if (!n) return;
  if (root != 0) { // through rank 0
    if (g_rank == root) idoc_ctl_send(0, p, n);
    if (g_rank == 0) idoc_ctl_recv(root, p, n);
  }
  if (g_rank == 0) {
    for (int t = 1; t < g_world; t++)
      if (t != root) idoc_ctl_send(t, p, n);
  } else if (g_rank != root) {
    idoc_ctl_recv(0, p, n);
  }
}

static void tcp_gatherv(const void *send, size_t n, void *recv, const size_t *counts,
                        const size_t *displs, int root) {
  const int W = g_world;
  // Everything to rank 0 first (each rank's size leads its bytes), then to root.
  if (g_rank > 0) {
    idoc_ctl_send(0, &n, sizeof n);
    if (n) idoc_ctl_send(0, send, n);
    if (g_rank == root)
      for (int r = 0; r < W; r++) {
        size_t k = 0;
        idoc_ctl_recv(0, &k, sizeof k);
        if (k != counts[r])
          idoc_ctl_fatal("gatherv: rank %d sent %zu bytes, %zu expected", r, k, counts[r]);
        if (k) idoc_ctl_recv(0, (char *)recv + displs[r], k);
      }
    return;
  }
  for (int r = 0; r < W; r++) {
    size_t k = n;
    char *buf = NULL;
    if (r > 0) {
      idoc_ctl_recv(r, &k, sizeof k);
      buf = idoc_xmalloc(k + 1);
      if (k) idoc_ctl_recv(r, buf, k);
    }
    const void *src = r ? buf : send;
    if (root == 0) {
      if (k != counts[r])
        idoc_ctl_fatal("gatherv: rank %d sent %zu bytes, %zu expected", r, k, counts[r]);
      if (k) memcpy((char *)recv + displs[r], src, k);
    } else {
      idoc_ctl_send(root, &k, sizeof k);
      if (k) idoc_ctl_send(root, src, k);
    }
    free(buf);
  }
}

static void tcp_barrier(void) {
  char b = 1;
  if (g_rank > 0) {
    idoc_ctl_send(0, &b, 1);
    idoc_ctl_recv(0, &b, 1);
    return;
  }
  for (int r = 1; r < g_world; r++)
    idoc_ctl_recv(r, &b, 1);
  for (int r = 1; r < g_world; r++)
    idoc_ctl_send(r, &b, 1);
}

void idoc_comm_tcp_set(int rank, int world) {
  g_rank = rank;
  g_world = world;
}

const idoc_comm_transport idoc_comm_tcp = {"tcp",          tcp_init,    tcp_finalize, tcp_alltoallv,
                                           tcp_allgatherv, tcp_gatherv, tcp_bcast,    tcp_barrier};
