#include "nn/util.h"

#include "nn/fs.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

int idoc_atomic_open(idoc_atomic_file *af, const char *path) {
  memset(af, 0, sizeof *af);
  size_t n = strlen(path) + 32;
  af->path = idoc_xstrdup(path);
  af->tmp = idoc_xmalloc(n);
  snprintf(af->tmp, n, "%s.tmp.%ld", path, (long)getpid());
  af->f = fopen(af->tmp, "wb");
  if (!af->f) {
    int e = errno;
    free(af->path);
    free(af->tmp);
    af->path = af->tmp = NULL;
    return idoc_set_error("%s: cannot create: %s", path, strerror(e));
  }
  return IDOC_OK;
}

void idoc_atomic_abort(idoc_atomic_file *af) {
  if (af->f) fclose(af->f);
  if (af->tmp) idoc_fs_unlink(af->tmp);
  free(af->path);
  free(af->tmp);
  memset(af, 0, sizeof *af);
}

int idoc_atomic_commit(idoc_atomic_file *af) {
  int rc = IDOC_OK;
  if (fflush(af->f) != 0 || ferror(af->f))
    rc = idoc_set_error("%s: write failed: %s", af->path, strerror(errno));
  else if (idoc_fs_fsync(fileno(af->f), af->tmp) != 0)
    rc = idoc_set_error("%s: fsync failed: %s", af->path, strerror(errno));
  if (fclose(af->f) != 0 && rc == IDOC_OK)
    rc = idoc_set_error("%s: close failed: %s", af->path, strerror(errno));
  af->f = NULL;
  if (rc == IDOC_OK && idoc_fs_rename(af->tmp, af->path) != 0)
    rc = idoc_set_error("%s: rename failed: %s", af->path, strerror(errno));
  if (rc != IDOC_OK) idoc_fs_unlink(af->tmp);
  free(af->path);
  free(af->tmp);
  af->path = af->tmp = NULL;
  return rc;
}

int idoc_write_file_atomic(const char *path, const void *data, size_t n) {
  idoc_atomic_file af;
  if (idoc_atomic_open(&af, path)) return IDOC_ERR;
  if (n && idoc_fs_write(af.f, data, n, af.tmp) != n) {
    idoc_atomic_abort(&af);
    return idoc_set_error("%s: write failed", path);
  }
  return idoc_atomic_commit(&af);
}

int idoc_read_file(const char *path, char **data, size_t *n) {
  FILE *f = fopen(path, "rb");
  if (!f) return idoc_set_error("%s: cannot open: %s", path, strerror(errno));
  char *buf = NULL;
  size_t len = 0, cap = 0;
  for (;;) {
    if (len + 65536 + 1 > cap) {
      cap = (len + 65536 + 1) * 2;
      buf = idoc_xrealloc(buf, cap);
    }
    size_t got = fread(buf + len, 1, cap - len - 1, f);
    len += got;
    if (got == 0) break;
  }
  int bad = ferror(f);
  fclose(f);
  if (bad) {
    free(buf);
    return idoc_set_error("%s: read error", path);
  }
  if (!buf) buf = idoc_xmalloc(1);
  buf[len] = 0;
  *data = buf;
  if (n) *n = len;
  return IDOC_OK;
}

int idoc_mkdir_p(const char *path) {
  char *p = idoc_xstrdup(path);
  for (char *s = p + 1;; s++) {
    if (*s == '/' || *s == 0) {
      char c = *s;
      *s = 0;
      if (idoc_fs_mkdir(p, 0755) != 0 && errno != EEXIST) {
        int e = errno;
        idoc_set_error("%s: cannot create directory: %s", p, strerror(e));
        free(p);
        return IDOC_ERR;
      }
      *s = c;
      if (!c) break;
    }
  }
  free(p);
  return IDOC_OK;
}

bool idoc_file_exists(const char *path) {
  struct stat st;
  return stat(path, &st) == 0;
}

// ---- half floats ------------------------------------------------------------------------------
