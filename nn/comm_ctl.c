// The control plane of a multi-rank job (see nn/comm.h): two TCP connections from every rank to
// rank 0, one for heartbeats and failure reports (read by a watchdog thread on each side), one
// for the TCP host transport's data (read by the main thread only).
//
// Rendezvous: rank 0 listens (on MASTER_PORT when there is no MPI to tell the others, else on
// an ephemeral port) and its address goes to the others over MPI, or they take MASTER_ADDR.
// Each connection starts with a hello (rank, world, pid, host, kind) that rank 0 checks.
#define _DEFAULT_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <ifaddrs.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "nn/comm_internal.h"
#include "nn/util.h"

#define CTL_MAGIC 0x50434449u // "IDCP"
enum { MSG_HELLO = 1, MSG_ACK, MSG_HB, MSG_BYE, MSG_FAIL, MSG_ABORT };
enum { KIND_CTL = 0, KIND_DATA = 1 };

typedef struct {
  uint32_t magic, type;
  int32_t rank, world, kind, pid, in_coll, pad;
  int64_t step;
  uint64_t ticks, coll_seq;
  char phase[48], coll[32], host[64];
  char text[344];
} ctl_msg;
_Static_assert(sizeof(ctl_msg) == 544, "ctl_msg layout");

typedef struct {
  int ctl, data; // sockets (rank 0's view of rank r)
  bool bye, gone;
  double last_hb, last_progress, coll_since;
  uint64_t ticks, coll_seq;
  int in_coll, pid;
  int64_t step;
  char phase[48], coll[32], host[64];
} peer;

static struct {
  int rank, world;
  bool started;
  int ctl, data; // ranks > 0: to rank 0
  peer *peers;   // rank 0: [world]
  pthread_t thread;
  pthread_mutex_t send_mu;
  atomic_bool stopping;
  // What this rank is doing (written by the main thread, read by the watchdog).
  _Atomic int64_t step;
  _Atomic(const char *) phase, coll;
  atomic_int in_coll;
  _Atomic uint64_t coll_seq;
  _Atomic double timeout;
  char host[64];
} g = {.ctl = -1, .data = -1, .send_mu = PTHREAD_MUTEX_INITIALIZER};

static double rdzv_timeout(void) {
  const char *e = getenv("IDOC_RDZV_TIMEOUT");
  double t = e ? atof(e) : 0;
  return t > 0 ? t : 300;
}

void idoc_ctl_set_phase(const char *phase) { atomic_store(&g.phase, phase); }
void idoc_ctl_set_timeout(double s) {
  if (s > 0) atomic_store(&g.timeout, s);
}
double idoc_ctl_timeout(void) {
  double t = atomic_load(&g.timeout);
  if (t > 0) return t;
  const char *e = getenv("IDOC_DDP_TIMEOUT");
  t = e ? atof(e) : 0;
  return t > 0 ? t : 60;
}
int64_t idoc_ctl_step(void) { return atomic_load(&g.step); }
const char *idoc_ctl_phase(void) {
  const char *p = atomic_load(&g.phase);
  return p ? p : "setup";
}
void idoc_ctl_enter(const char *what) {
  atomic_store(&g.coll, what);
  atomic_fetch_add(&g.coll_seq, 1);
  atomic_store(&g.in_coll, 1);
}
void idoc_ctl_leave(void) { atomic_store(&g.in_coll, 0); }

// Copies src into dst[n], cut to fit (always terminated).
static void put(char *dst, size_t n, const char *src) {
  size_t k = strlen(src);
  if (k >= n) k = n - 1;
  memcpy(dst, src, k);
  dst[k] = 0;
}

// ---- sockets ------------------------------------------------------------------------------
static bool write_all(int fd, const void *p, size_t n) {
  const char *c = p;
  while (n) {
    ssize_t k = send(fd, c, n, MSG_NOSIGNAL);
    if (k < 0 && errno == EINTR) continue;
    if (k <= 0) return false;
    c += k;
    n -= (size_t)k;
  }
  return true;
}
// 1: all read, 0: the peer closed first, -1: an error.
static int read_all(int fd, void *p, size_t n) {
  char *c = p;
  size_t got = 0;
  while (got < n) {
    ssize_t k = recv(fd, c + got, n - got, 0);
    if (k < 0 && errno == EINTR) continue;
    if (k == 0) return 0;
    if (k < 0) return -1;
    got += (size_t)k;
  }
  return 1;
}

static void fill_msg(ctl_msg *m, int type) {
  memset(m, 0, sizeof *m);
  m->magic = CTL_MAGIC;
  m->type = (uint32_t)type;
  m->rank = g.rank;
  m->world = g.world;
  m->pid = (int32_t)getpid();
  m->step = atomic_load(&g.step);
  m->ticks = idoc_progress_ticks();
  m->coll_seq = atomic_load(&g.coll_seq);
  m->in_coll = atomic_load(&g.in_coll);
  put(m->phase, sizeof m->phase, idoc_ctl_phase());
  const char *c = atomic_load(&g.coll);
  put(m->coll, sizeof m->coll, c ? c : "");
  put(m->host, sizeof m->host, g.host);
}

static bool send_msg(int fd, const ctl_msg *m) {
  pthread_mutex_lock(&g.send_mu);
  bool ok = write_all(fd, m, sizeof *m);
  pthread_mutex_unlock(&g.send_mu);
  return ok;
}

// One line on stderr, written in one call (other threads may be printing).
static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
  char buf[1400];
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(buf, sizeof buf - 1, fmt, ap);
  va_end(ap);
  if (k < 0) return;
  if ((size_t)k > sizeof buf - 2) k = (int)sizeof buf - 2;
  buf[k++] = '\n';
  if (write(2, buf, (size_t)k) < 0) {
  }
}

// Ends this process now (from any thread): flushes stdout if nobody holds it.
__attribute__((noreturn)) static void end_process(int status) {
  if (ftrylockfile(stdout) == 0) {
    fflush(stdout);
    funlockfile(stdout);
  }
  _exit(status);
}

// A new step is reported at once (not at the next heartbeat), so a rank that dies right after
// is named with the step it was in.
void idoc_ctl_set_step(int64_t step) {
  atomic_store(&g.step, step);
  if (!g.started || g.rank == 0 || atomic_load(&g.stopping)) return;
  ctl_msg m;
  fill_msg(&m, MSG_HB);
  send_msg(g.ctl, &m);
}

// ---- rank 0: ending the job ------------------------------------------------------------------
__attribute__((noreturn)) static void abort_job(const char *why) {
  atomic_store(&g.stopping, true);
  say("idoc: rank 0: ending the job: %s", why);
  ctl_msg m;
  fill_msg(&m, MSG_ABORT);
  put(m.text, sizeof m.text, why);
  for (int r = 1; r < g.world; r++)
    if (g.peers && g.peers[r].ctl >= 0 && !g.peers[r].gone) send_msg(g.peers[r].ctl, &m);
  end_process(1);
}

void idoc_ctl_fatal(const char *fmt, ...) {
  char text[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(text, sizeof text, fmt, ap);
  va_end(ap);
  char full[1100];
  snprintf(full, sizeof full, "rank %d: %s (step %lld, %s)", g.rank, text,
           (long long)atomic_load(&g.step), idoc_ctl_phase());
  if (!g.started || g.world <= 1) {
    say("idoc: fatal: %s", full);
    end_process(1);
  }
  if (g.rank == 0) abort_job(full);
  say("idoc: %s", full);
  ctl_msg m;
  fill_msg(&m, MSG_FAIL);
  put(m.text, sizeof m.text, text);
  atomic_store(&g.stopping, true);
  send_msg(g.ctl, &m);
  end_process(1);
}

// ---- rank 0's watchdog ------------------------------------------------------------------------
static void describe(int r, char *out, size_t n) {
  peer *p = &g.peers[r];
  snprintf(out, n, "its last report: step %lld, %s%s%s", (long long)p->step, p->phase,
           p->in_coll ? ", in collective " : "", p->in_coll ? p->coll : "");
}

static void root_self_status(double now) {
  peer *p = &g.peers[0];
  uint64_t t = idoc_progress_ticks();
  if (t != p->ticks) p->ticks = t, p->last_progress = now;
  uint64_t seq = atomic_load(&g.coll_seq);
  int in = atomic_load(&g.in_coll);
  if (in && (seq != p->coll_seq || !p->in_coll)) p->coll_since = now;
  p->coll_seq = seq;
  p->in_coll = in;
  p->last_hb = now;
  p->step = atomic_load(&g.step);
  put(p->phase, sizeof p->phase, idoc_ctl_phase());
  const char *c = atomic_load(&g.coll);
  put(p->coll, sizeof p->coll, c ? c : "");
}

static void root_receive(int r, double now) {
  peer *p = &g.peers[r];
  ctl_msg m;
  int k = read_all(p->ctl, &m, sizeof m);
  char why[1400], d[200];
  if (k <= 0 || m.magic != CTL_MAGIC) {
    close(p->ctl);
    p->ctl = -1;
    if (p->bye) {
      p->gone = true;
      return;
    }
    p->gone = true;
    describe(r, d, sizeof d);
    snprintf(why, sizeof why,
             "rank %d (pid %d on %s) died: its connection closed without a goodbye (killed, "
             "crashed or out of memory); %s",
             r, p->pid, p->host, d);
    abort_job(why);
  }
  p->last_hb = now;
  if (m.ticks != p->ticks) p->ticks = m.ticks, p->last_progress = now;
  if (m.in_coll && (m.coll_seq != p->coll_seq || !p->in_coll)) p->coll_since = now;
  p->coll_seq = m.coll_seq;
  p->in_coll = m.in_coll;
  p->step = m.step;
  memcpy(p->phase, m.phase, sizeof p->phase);
  memcpy(p->coll, m.coll, sizeof p->coll);
  p->phase[sizeof p->phase - 1] = p->coll[sizeof p->coll - 1] = 0;
  if (m.type == MSG_BYE) p->bye = true;
  if (m.type == MSG_FAIL) {
    m.text[sizeof m.text - 1] = 0;
    snprintf(why, sizeof why, "rank %d failed at step %lld (%s): %s", r, (long long)m.step,
             p->phase, m.text);
    abort_job(why);
  }
}

// The rules of nn/comm.h, checked a few times a second.
static void root_check(double now) {
  double T = idoc_ctl_timeout();
  char why[1400], d[200];
  int all_in = 1;
  uint64_t seq_min = UINT64_MAX, seq_max = 0;
  double since_max = 0;
  for (int r = 0; r < g.world; r++) {
    peer *p = &g.peers[r];
    if (p->bye) {
      all_in = 0;
      continue;
    }
    describe(r, d, sizeof d);
    if (now - p->last_hb > T) {
      snprintf(why, sizeof why,
               "rank %d (pid %d on %s) stopped responding: no heartbeat for %.0f s; %s", r, p->pid,
               p->host, now - p->last_hb, d);
      abort_job(why);
    }
    if (!p->in_coll && now - p->last_progress > T) {
      snprintf(why, sizeof why,
               "rank %d (pid %d on %s) is hung: no progress for %.0f s outside any collective "
               "(ddp_timeout %.0f s); %s",
               r, p->pid, p->host, now - p->last_progress, T, d);
      abort_job(why);
    }
    if (!p->in_coll) all_in = 0;
    if (p->coll_seq < seq_min) seq_min = p->coll_seq;
    if (p->coll_seq > seq_max) seq_max = p->coll_seq;
    if (p->coll_since > since_max) since_max = p->coll_since;
  }
  if (!all_in || now - since_max <= T) return;
  if (seq_min == seq_max) {
    snprintf(why, sizeof why,
             "collective #%llu (%s, step %lld) has not completed %.0f s after every rank "
             "entered it (a transport failure?)",
             (unsigned long long)seq_max, g.peers[0].coll, (long long)g.peers[0].step,
             now - since_max);
  } else {
    size_t o = (size_t)snprintf(why, sizeof why,
                                "the ranks have waited %.0f s in different collectives (a "
                                "program error):",
                                now - since_max);
    for (int r = 0; r < g.world && o < sizeof why; r++)
      o += (size_t)snprintf(why + o, sizeof why - o, " rank %d in #%llu %s (step %lld);", r,
                            (unsigned long long)g.peers[r].coll_seq, g.peers[r].coll,
                            (long long)g.peers[r].step);
  }
  abort_job(why);
}

static void *root_watchdog(void *arg) {
  (void)arg;
  struct pollfd *fds = idoc_xcalloc((size_t)g.world, sizeof *fds);
  int *who = idoc_xcalloc((size_t)g.world, sizeof *who);
  double last_send = 0;
  while (!atomic_load(&g.stopping)) {
    int n = 0;
    for (int r = 1; r < g.world; r++)
      if (g.peers[r].ctl >= 0) {
        fds[n] = (struct pollfd){g.peers[r].ctl, POLLIN, 0};
        who[n++] = r;
      }
    int k = poll(fds, (nfds_t)n, 200);
    if (atomic_load(&g.stopping)) break;
    double now = idoc_now();
    for (int i = 0; k > 0 && i < n; i++)
      if (fds[i].revents) root_receive(who[i], now);
    root_self_status(now);
    if (now - last_send >= 0.5) {
      ctl_msg m;
      fill_msg(&m, MSG_HB);
      for (int r = 1; r < g.world; r++)
        if (g.peers[r].ctl >= 0) send_msg(g.peers[r].ctl, &m);
      last_send = now;
    }
    if (atomic_load(&g.stopping)) break;
    root_check(now);
  }
  free(fds);
  free(who);
  return NULL;
}

// ---- the other ranks' watchdog -------------------------------------------------------------
static void *rank_watchdog(void *arg) {
  (void)arg;
  double last_send = 0, last_root = idoc_now();
  while (!atomic_load(&g.stopping)) {
    struct pollfd pf = {g.ctl, POLLIN, 0};
    int k = poll(&pf, 1, 200);
    if (atomic_load(&g.stopping)) break;
    double now = idoc_now();
    if (k > 0) {
      ctl_msg m;
      int got = read_all(g.ctl, &m, sizeof m);
      if (atomic_load(&g.stopping)) break;
      if (got <= 0 || m.magic != CTL_MAGIC) {
        say("idoc: rank %d: lost the connection to rank 0 (it died or was killed) at step %lld "
            "(%s): ending",
            g.rank, (long long)atomic_load(&g.step), idoc_ctl_phase());
        end_process(1);
      }
      last_root = now;
      if (m.type == MSG_ABORT) {
        m.text[sizeof m.text - 1] = 0;
        say("idoc: rank %d: the job was ended by rank 0 at step %lld: %s", g.rank,
            (long long)atomic_load(&g.step), m.text);
        end_process(1);
      }
    }
    double T = idoc_ctl_timeout();
    if (now - last_root > T) {
      say("idoc: rank %d: rank 0 stopped responding (no heartbeat for %.0f s) at step %lld: "
          "ending",
          g.rank, now - last_root, (long long)atomic_load(&g.step));
      end_process(1);
    }
    if (now - last_send >= 0.5) {
      ctl_msg m;
      fill_msg(&m, MSG_HB);
      if (!send_msg(g.ctl, &m) && !atomic_load(&g.stopping)) {
        say("idoc: rank %d: lost the connection to rank 0 at step %lld: ending", g.rank,
            (long long)atomic_load(&g.step));
        end_process(1);
      }
      last_send = now;
    }
  }
  return NULL;
}

// ---- rendezvous --------------------------------------------------------------------------------
static int listen_on(int port, int *bound) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return idoc_set_error("socket: %s", strerror(errno));
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_ANY);
  a.sin_port = htons((uint16_t)port);
  if (bind(fd, (struct sockaddr *)&a, sizeof a) || listen(fd, 256)) {
    int e = errno;
    close(fd);
    return idoc_set_error("rank 0 cannot listen on port %d: %s", port, strerror(e));
  }
  socklen_t L = sizeof a;
  getsockname(fd, (struct sockaddr *)&a, &L);
  *bound = ntohs(a.sin_port);
  return fd;
}

// Candidate addresses of this host: MASTER_ADDR, the host name, every IPv4 address, loopback.
static void my_addresses(char *out, size_t n) {
  size_t o = 0;
  const char *ma = getenv("MASTER_ADDR");
  if (ma && *ma) o += (size_t)snprintf(out + o, n - o, "%s,", ma);
  o += (size_t)snprintf(out + o, n - o, "%s,", g.host);
  struct ifaddrs *ifs = NULL;
  if (getifaddrs(&ifs) == 0) {
    for (struct ifaddrs *i = ifs; i && o < n; i = i->ifa_next)
      if (i->ifa_addr && i->ifa_addr->sa_family == AF_INET) {
        char ip[64];
        inet_ntop(AF_INET, &((struct sockaddr_in *)i->ifa_addr)->sin_addr, ip, sizeof ip);
        if (strcmp(ip, "127.0.0.1")) o += (size_t)snprintf(out + o, n - o, "%s,", ip);
      }
    freeifaddrs(ifs);
  }
  if (o < n) snprintf(out + o, n - o, "127.0.0.1");
}

// A connected socket to host:port, or -1 (the error set).
static int connect_to(const char *host, int port, double wait_s) {
  char ps[16];
  snprintf(ps, sizeof ps, "%d", port);
  struct addrinfo hints = {0}, *res = NULL;
  hints.ai_family = AF_INET;
  hints.ai_socktype = SOCK_STREAM;
  if (getaddrinfo(host, ps, &hints, &res) || !res)
    return idoc_set_error("cannot resolve '%s'", host);
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
  int rc = fd < 0 ? -1 : connect(fd, res->ai_addr, res->ai_addrlen);
  freeaddrinfo(res);
  if (fd < 0) return idoc_set_error("socket: %s", strerror(errno));
  if (rc && errno == EINPROGRESS) {
    struct pollfd pf = {fd, POLLOUT, 0};
    int err = 0;
    socklen_t L = sizeof err;
    if (poll(&pf, 1, (int)(wait_s * 1000)) == 1 && !getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &L))
      rc = err ? -1 : 0;
    errno = err ? err : ETIMEDOUT;
  }
  if (rc) {
    int e = errno;
    close(fd);
    return idoc_set_error("%s:%d: %s", host, port, strerror(e));
  }
  fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) & ~O_NONBLOCK);
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  return fd;
}

static int hello(int fd, int kind) {
  ctl_msg m, a;
  fill_msg(&m, MSG_HELLO);
  m.kind = kind;
  if (!write_all(fd, &m, sizeof m) || read_all(fd, &a, sizeof a) != 1 || a.magic != CTL_MAGIC)
    return idoc_set_error("rank 0 closed the connection during the hello");
  if (a.type != MSG_ACK) {
    a.text[sizeof a.text - 1] = 0;
    return idoc_set_error("rank 0 refused this rank: %s", a.text);
  }
  return IDOC_OK;
}

// Connects the two channels to rank 0 at one of the comma-separated addresses.
static int rank_connect(const char *addrs, int port, double deadline) {
  char err[512] = "";
  while (idoc_now() < deadline) {
    char list[1024];
    put(list, sizeof list, addrs);
    for (char *save = NULL, *h = strtok_r(list, ",", &save); h; h = strtok_r(NULL, ",", &save)) {
      int c = connect_to(h, port, 2.0);
      if (c < 0) {
        put(err, sizeof err, idoc_last_error());
        continue;
      }
      int d = connect_to(h, port, 2.0);
      if (d < 0) {
        close(c);
        put(err, sizeof err, idoc_last_error());
        continue;
      }
      if (hello(c, KIND_CTL) || hello(d, KIND_DATA)) {
        close(c);
        close(d);
        return IDOC_ERR;
      }
      g.ctl = c;
      g.data = d;
      return IDOC_OK;
    }
    struct timespec ts = {0, 100000000};
    nanosleep(&ts, NULL);
  }
  return idoc_set_error("rank %d cannot reach rank 0 at port %d (tried %s for %.0f s): %s", g.rank,
                        port, addrs, rdzv_timeout(), err);
}

static int root_accept(int lfd, double deadline) {
  int need = 2 * (g.world - 1);
  while (need > 0) {
    struct pollfd pf = {lfd, POLLIN, 0};
    double left = deadline - idoc_now();
    if (left <= 0 || poll(&pf, 1, (int)(left * 1000) + 1) != 1) {
      char missing[512] = "";
      size_t o = 0;
      for (int r = 1; r < g.world && o < sizeof missing; r++)
        if (g.peers[r].ctl < 0 || g.peers[r].data < 0)
          o += (size_t)snprintf(missing + o, sizeof missing - o, " %d", r);
      return idoc_set_error("rank 0: ranks%s did not connect within %.0f s", missing,
                            rdzv_timeout());
    }
    int fd = accept(lfd, NULL, NULL);
    if (fd < 0) continue;
    fcntl(fd, F_SETFD, FD_CLOEXEC);
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    ctl_msg m, a;
    struct timeval tv = {10, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    if (read_all(fd, &m, sizeof m) != 1 || m.magic != CTL_MAGIC || m.type != MSG_HELLO) {
      close(fd);
      continue; // not one of ours (a port scan, a stale job)
    }
    tv.tv_sec = 0;
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    fill_msg(&a, MSG_ACK);
    int r = m.rank;
    int *slot =
        r > 0 && r < g.world ? (m.kind == KIND_DATA ? &g.peers[r].data : &g.peers[r].ctl) : NULL;
    if (m.world != g.world || !slot || *slot >= 0) {
      a.type = MSG_ABORT;
      snprintf(a.text, sizeof a.text, "rank %d of world %d does not fit this job (world %d%s)", r,
               m.world, g.world, slot && *slot >= 0 ? ", that rank is already connected" : "");
      write_all(fd, &a, sizeof a);
      close(fd);
      continue;
    }
    write_all(fd, &a, sizeof a);
    *slot = fd;
    peer *p = &g.peers[r];
    p->pid = m.pid;
    memcpy(p->host, m.host, sizeof p->host);
    p->host[sizeof p->host - 1] = 0;
    need--;
  }
  return IDOC_OK;
}

int idoc_ctl_start(int rank, int world, const idoc_comm_transport *bootstrap) {
  g.rank = rank;
  g.world = world;
  atomic_store(&g.stopping, false);
  if (gethostname(g.host, sizeof g.host)) snprintf(g.host, sizeof g.host, "unknown");
  g.host[sizeof g.host - 1] = 0;
  double deadline = idoc_now() + rdzv_timeout();
  const char *mp = getenv("MASTER_PORT");
  int port = 0;
  if (!bootstrap) {
    if (!mp || !*mp || atoi(mp) <= 0 || atoi(mp) > 65535)
      return idoc_set_error(
          "a %d-rank job without MPI needs MASTER_ADDR and MASTER_PORT (rank 0's host and a free "
          "TCP port), as torchrun sets them; MASTER_PORT is '%s'",
          world, mp ? mp : "(unset)");
    port = atoi(mp);
  }
  char addr[1024];
  int rc = IDOC_OK, lfd = -1;
  if (rank == 0) {
    g.peers = idoc_xcalloc((size_t)world, sizeof *g.peers);
    double now = idoc_now();
    for (int r = 0; r < world; r++) {
      g.peers[r].ctl = g.peers[r].data = -1;
      g.peers[r].last_hb = g.peers[r].last_progress = now;
      snprintf(g.peers[r].phase, sizeof g.peers[r].phase, "setup");
    }
    int bound = 0;
    lfd = listen_on(port, &bound);
    char msg[1100];
    if (lfd < 0) {
      snprintf(msg, sizeof msg, "!%s", idoc_last_error());
      rc = IDOC_ERR;
    } else {
      my_addresses(addr, sizeof addr);
      snprintf(msg, sizeof msg, "%d %s", bound, addr);
    }
    if (bootstrap) bootstrap->bcast(msg, sizeof msg, 0);
    if (rc == IDOC_OK) rc = root_accept(lfd, deadline);
    if (lfd >= 0) close(lfd);
  } else {
    const char *ma = getenv("MASTER_ADDR");
    if (bootstrap) {
      char msg[1100];
      bootstrap->bcast(msg, sizeof msg, 0);
      msg[sizeof msg - 1] = 0;
      if (msg[0] == '!') return idoc_set_error("rank 0: %s", msg + 1);
      char *sp = strchr(msg, ' ');
      port = atoi(msg);
      put(addr, sizeof addr, sp ? sp + 1 : "127.0.0.1");
    } else {
      put(addr, sizeof addr, ma && *ma ? ma : "127.0.0.1");
    }
    rc = rank_connect(addr, port, deadline);
  }
  if (rc) return rc;
  g.started = true;
  void *(*fn)(void *) = rank == 0 ? root_watchdog : rank_watchdog;
  if (pthread_create(&g.thread, NULL, fn, NULL))
    return idoc_set_error("cannot start the watchdog thread");
  return IDOC_OK;
}

void idoc_ctl_stop(bool ok, const char *error) {
  if (!g.started) return;
  if (!ok) idoc_ctl_fatal("%s", error ? error : "failed");
  // Every rank got here through a final collective: say goodbye, then close.
  if (g.rank > 0) {
    ctl_msg m;
    fill_msg(&m, MSG_BYE);
    atomic_store(&g.stopping, true);
    send_msg(g.ctl, &m);
  } else {
    // Wait (briefly) for the others' goodbyes so their closing is not taken for a death.
    double until = idoc_now() + 10;
    bool all;
    do {
      all = true;
      for (int r = 1; r < g.world; r++)
        if (!g.peers[r].bye && !g.peers[r].gone) all = false;
      if (!all) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
      }
    } while (!all && idoc_now() < until);
    atomic_store(&g.stopping, true);
  }
  pthread_join(g.thread, NULL);
  if (g.rank > 0) {
    close(g.ctl);
    close(g.data);
    g.ctl = g.data = -1;
  } else {
    for (int r = 1; r < g.world; r++) {
      if (g.peers[r].ctl >= 0) close(g.peers[r].ctl);
      if (g.peers[r].data >= 0) close(g.peers[r].data);
    }
    free(g.peers);
    g.peers = NULL;
  }
  g.started = false;
}

// ---- the data channel ------------------------------------------------------------------------
int idoc_ctl_data_fd(int peer) {
  if (!g.started) return -1;
  if (g.rank == 0) return peer > 0 && peer < g.world ? g.peers[peer].data : -1;
  return peer == 0 ? g.data : -1;
}

void idoc_ctl_send(int peer, const void *p, size_t n) {
  int fd = idoc_ctl_data_fd(peer);
  if (fd < 0 || !write_all(fd, p, n))
    idoc_ctl_fatal("sending %zu bytes to rank %d failed: %s", n, peer, strerror(errno));
}

void idoc_ctl_recv(int peer, void *p, size_t n) {
  int fd = idoc_ctl_data_fd(peer);
  int k = fd < 0 ? -1 : read_all(fd, p, n);
  if (k == 0) {
    // The watchdog sees the same death on the control connection and names the rank with its
    // last step: give it a moment to do so.
    struct timespec ts = {1, 0};
    nanosleep(&ts, NULL);
    idoc_ctl_fatal("rank %d closed the data connection (it died?)", peer);
  }
  if (k < 0)
    idoc_ctl_fatal("receiving %zu bytes from rank %d failed: %s", n, peer, strerror(errno));
}
