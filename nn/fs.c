#define _DEFAULT_SOURCE
#include "nn/fs.h"

#include "nn/util.h"

#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static long g_kill_at;    // 0: off
static int g_log_fd = -1; // IDOC_TEST_OPS_LOG
static long g_ops;
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;

static void init(void) {
  const char *k = getenv("IDOC_TEST_KILL_AT");
  g_kill_at = k ? atol(k) : 0;
  const char *l = getenv("IDOC_TEST_OPS_LOG");
  if (l && *l) g_log_fd = open(l, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
}

// Counts one mutation; true when the process must die at it.
static bool op(const char *kind, const char *path) {
  idoc_progress_tick();
  pthread_once(&g_once, init);
  if (!g_kill_at && g_log_fd < 0) return false;
  pthread_mutex_lock(&g_lock);
  long n = ++g_ops;
  if (g_log_fd >= 0) {
    char line[4400];
    int k = snprintf(line, sizeof line, "%ld %s %s\n", n, kind, path ? path : "");
    if (k > 0 && write(g_log_fd, line, (size_t)k < sizeof line ? (size_t)k : sizeof line - 1)) {
    }
  }
  pthread_mutex_unlock(&g_lock);
  return n == g_kill_at;
}

static void die(void) {
  raise(SIGKILL);
  _exit(137);
}

size_t idoc_fs_write(FILE *f, const void *p, size_t n, const char *path) {
  if (op("write", path)) {
    if (n / 2) fwrite(p, 1, n / 2, f);
    fflush(f);
    die();
  }
  return fwrite(p, 1, n, f);
}

int idoc_fs_fsync(int fd, const char *path) {
  if (op("fsync", path)) die();
  return fsync(fd);
}

int idoc_fs_rename(const char *from, const char *to) {
  if (op("rename", to)) die();
  return rename(from, to);
}

int idoc_fs_unlink(const char *path) {
  if (op("unlink", path)) die();
  return unlink(path);
}

int idoc_fs_mkdir(const char *path, mode_t mode) {
  if (op("mkdir", path)) die();
  return mkdir(path, mode);
}

int idoc_fs_rmdir(const char *path) {
  if (op("rmdir", path)) die();
  return rmdir(path);
}

void idoc_fs_sync_dir(const char *dir) {
  int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return;
  if (op("fsync", dir)) die();
  fsync(fd);
  close(fd);
}
