#define _DEFAULT_SOURCE
#include "stage/sealed_dir.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/fs.h"
#include "nn/json.h"
#include "nn/util.h"

int idoc_rm_rf(const char *path) {
  struct stat st;
  if (lstat(path, &st)) return errno == ENOENT ? IDOC_OK : IDOC_ERR;
  if (S_ISDIR(st.st_mode)) {
    DIR *d = opendir(path);
    if (!d) return IDOC_ERR;
    struct dirent *e;
    int rc = IDOC_OK;
    while ((e = readdir(d))) {
      if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
      char p[4400];
      snprintf(p, sizeof p, "%s/%s", path, e->d_name);
      if (idoc_rm_rf(p)) rc = IDOC_ERR;
    }
    closedir(d);
    if (idoc_fs_rmdir(path)) rc = IDOC_ERR;
    return rc;
  }
  return idoc_fs_unlink(path) ? IDOC_ERR : IDOC_OK;
}

static int hash_file(const char *path, uint64_t *h, uint64_t *size) {
  FILE *f = fopen(path, "rb");
  if (!f) return IDOC_ERR;
  uint64_t x = 0xcbf29ce484222325ull, n = 0;
  unsigned char buf[1 << 16];
  size_t k;
  while ((k = fread(buf, 1, sizeof buf, f)) > 0) {
    idoc_progress_tick(); // a long checksum is progress (nn/comm.h's watchdog)
    for (size_t i = 0; i < k; i++)
      x = (x ^ buf[i]) * 0x100000001b3ull;
    n += k;
  }
  int bad = ferror(f);
  fclose(f);
  *h = x;
  *size = n;
  return bad ? IDOC_ERR : IDOC_OK;
}

static int by_str(const void *a, const void *b) {
  return strcmp(*(char *const *)a, *(char *const *)b);
}

// Regular files of dir except the manifest, sorted (malloc'ed names).
static int list_files(const char *dir, char ***names) {
  *names = NULL;
  DIR *d = opendir(dir);
  if (!d) return idoc_set_error("%s: cannot list: %s", dir, strerror(errno));
  int n = 0, cap = 0;
  for (struct dirent *e; (e = readdir(d));) {
    char p[4400];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (!strcmp(e->d_name, IDOC_SEALED_MANIFEST) || lstat(p, &st) || !S_ISREG(st.st_mode)) continue;
    if (n == cap) *names = idoc_xrealloc(*names, (size_t)(cap = cap * 2 + 16) * sizeof(char *));
    (*names)[n++] = idoc_xstrdup(e->d_name);
  }
  closedir(d);
  if (n) qsort(*names, (size_t)n, sizeof(char *), by_str);
  return n;
}

int idoc_sealed_seal(const char *dir, int64_t step, int64_t total) {
  char **names;
  int n = list_files(dir, &names);
  if (n < 0) return IDOC_ERR;
  idoc_json_buf b = {0};
  idoc_json_buf_printf(&b,
                       "{\n  \"format\": \"idoc-sealed-1\",\n  \"global_step\": %" PRId64
                       ",\n  \"total_steps\": %" PRId64 ",\n  \"files\": [",
                       step, total);
  int rc = IDOC_OK;
  for (int i = 0; i < n; i++) {
    char p[4400];
    uint64_t h = 0, sz = 0;
    snprintf(p, sizeof p, "%s/%s", dir, names[i]);
    if (rc == IDOC_OK && hash_file(p, &h, &sz))
      rc = idoc_set_error("%s: cannot read back: %s", p, strerror(errno));
    if (rc == IDOC_OK) {
      idoc_json_buf_puts(&b, i ? ",\n    {\"name\": " : "\n    {\"name\": ");
      idoc_json_buf_string(&b, names[i], strlen(names[i]));
      idoc_json_buf_printf(&b, ", \"size\": %" PRIu64 ", \"fnv1a64\": \"%016" PRIx64 "\"}", sz, h);
    }
    free(names[i]);
  }
  free(names);
  idoc_json_buf_puts(&b, "\n  ]\n}\n");
  if (rc == IDOC_OK) {
    char p[4400];
    snprintf(p, sizeof p, "%s/%s", dir, IDOC_SEALED_MANIFEST);
    rc = idoc_write_file_atomic(p, b.data, b.len);
    idoc_fs_sync_dir(dir);
  }
  idoc_json_buf_free(&b);
  return rc;
}

bool idoc_sealed_complete(const char *dir, int64_t *step, int64_t *total, char *why, size_t wn) {
  char p[4400];
  snprintf(p, sizeof p, "%s/%s", dir, IDOC_SEALED_MANIFEST);
  struct stat st;
  if (stat(dir, &st)) {
    snprintf(why, wn, "%s", strerror(errno));
    return false;
  }
  if (!S_ISDIR(st.st_mode)) {
    snprintf(why, wn, "not a folder");
    return false;
  }
  if (!idoc_file_exists(p)) {
    snprintf(why, wn, "no %s (an interrupted save, or saved before manifests existed)",
             IDOC_SEALED_MANIFEST);
    return false;
  }
  idoc_json_doc *doc = idoc_json_parse_file(p, NULL);
  if (!doc) {
    snprintf(why, wn, "%s", idoc_last_error());
    return false;
  }
  const idoc_json *r = idoc_json_root(doc), *files = idoc_json_get(r, "files");
  int64_t s = 0, t = 0;
  bool ok = true;
  if (idoc_json_get_int64(r, "global_step", 0, INT64_MAX, 0, &s) ||
      idoc_json_get_int64(r, "total_steps", 0, INT64_MAX, 0, &t) ||
      !idoc_json_is(files, IDOC_JSON_ARRAY)) {
    snprintf(why, wn, "%s: bad global_step, total_steps or files", p);
    ok = false;
  }
  for (uint32_t i = 0; ok && i < files->n; i++) {
    const idoc_json *f = idoc_json_at(files, i);
    const char *name = idoc_json_string(idoc_json_get(f, "name"));
    const char *hx = idoc_json_string(idoc_json_get(f, "fnv1a64"));
    int64_t size;
    if (!name || !hx || strchr(name, '/') ||
        idoc_json_get_int64(f, "size", 0, INT64_MAX, -1, &size) || size < 0) {
      snprintf(why, wn, "%s: files[%u]: bad entry", p, i);
      ok = false;
      break;
    }
    char fp[4400];
    uint64_t h, sz;
    snprintf(fp, sizeof fp, "%s/%s", dir, name);
    if (hash_file(fp, &h, &sz)) {
      snprintf(why, wn, "%s is missing", name);
      ok = false;
    } else if (sz != (uint64_t)size) {
      snprintf(why, wn, "%s has %" PRIu64 " bytes, the manifest says %" PRId64, name, sz, size);
      ok = false;
    } else if (strtoull(hx, NULL, 16) != h) {
      snprintf(why, wn, "%s does not match its checksum", name);
      ok = false;
    }
  }
  idoc_json_free(doc);
  if (ok && step) *step = s;
  if (ok && total) *total = t;
  return ok;
}

static char *with_suffix(const char *path, const char *suffix) {
  size_t n = strlen(path) + strlen(suffix) + 1;
  char *p = idoc_xmalloc(n);
  snprintf(p, n, "%s%s", path, suffix);
  return p;
}

static char *parent_of(const char *path) {
  char *d = idoc_xstrdup(path);
  char *s = strrchr(d, '/');
  if (s && s != d)
    *s = 0;
  else
    strcpy(d, s ? "/" : ".");
  return d;
}

int idoc_sealed_replace(const char *tmp, const char *fin) {
  char *old = with_suffix(fin, ".old"), *parent = parent_of(fin);
  int rc = IDOC_OK;
  if (idoc_rm_rf(old))
    rc = idoc_set_error("%s: cannot remove a stale folder: %s", old, strerror(errno));
  if (rc == IDOC_OK && idoc_file_exists(fin) && idoc_fs_rename(fin, old))
    rc = idoc_set_error("%s: cannot move aside: %s", fin, strerror(errno));
  if (rc == IDOC_OK && idoc_fs_rename(tmp, fin))
    rc = idoc_set_error("%s: cannot rename %s into place: %s", fin, tmp, strerror(errno));
  if (rc == IDOC_OK) {
    idoc_fs_sync_dir(parent);
    if (idoc_rm_rf(old))
      rc = idoc_set_error("%s: cannot remove the replaced folder: %s", old, strerror(errno));
  }
  free(old);
  free(parent);
  return rc;
}

int idoc_sealed_remove(const char *path) {
  char *del = with_suffix(path, ".del"), *parent = parent_of(path);
  int rc = IDOC_OK;
  if (idoc_rm_rf(del)) rc = idoc_set_error("%s: cannot remove: %s", del, strerror(errno));
  if (rc == IDOC_OK && idoc_file_exists(path)) {
    if (idoc_fs_rename(path, del))
      rc = idoc_set_error("%s: cannot move aside for removal: %s", path, strerror(errno));
    else
      idoc_fs_sync_dir(parent);
  }
  if (rc == IDOC_OK && idoc_rm_rf(del))
    rc = idoc_set_error("%s: cannot remove: %s", del, strerror(errno));
  free(del);
  free(parent);
  return rc;
}

// "X.tmp.PID" with a PID that is not running (nor ours).
static bool stale_atomic_tmp(const char *name) {
  const char *t = strstr(name, ".tmp.");
  if (!t) return false;
  while (strstr(t + 1, ".tmp."))
    t = strstr(t + 1, ".tmp.");
  char *end;
  long pid = strtol(t + 5, &end, 10);
  if (*end || end == t + 5 || pid <= 0) return false;
  return pid != (long)getpid() && kill((pid_t)pid, 0) != 0 && errno == ESRCH;
}

static void clean_atomic_tmps(const char *dir, int depth) {
  DIR *d = opendir(dir);
  if (!d) return;
  for (struct dirent *e; (e = readdir(d));) {
    if (e->d_name[0] == '.') continue;
    char p[4400];
    struct stat st;
    snprintf(p, sizeof p, "%s/%s", dir, e->d_name);
    if (lstat(p, &st)) continue;
    if (S_ISDIR(st.st_mode) && depth > 0)
      clean_atomic_tmps(p, depth - 1);
    else if (S_ISREG(st.st_mode) && stale_atomic_tmp(e->d_name) && !idoc_fs_unlink(p))
      fprintf(stderr, "recovery: removed %s (left by a killed process)\n", p);
  }
  closedir(d);
}

static bool ends_with(const char *s, const char *suf) {
  size_t a = strlen(s), b = strlen(suf);
  return a > b && !strcmp(s + a - b, suf);
}

// Only the run's own sealed folders are recovered: checkpoint-N and final (a user's notes.old
// in output_dir is not ours to delete).
static bool is_sealed_name(const char *s, size_t n) {
  if (n == 5 && !strncmp(s, "final", 5)) return true;
  if (n <= 11 || strncmp(s, "checkpoint-", 11)) return false;
  for (size_t i = 11; i < n; i++)
    if (s[i] < '0' || s[i] > '9') return false;
  return true;
}

int idoc_sealed_recover(const char *dir) {
  DIR *d = opendir(dir);
  if (!d) return IDOC_OK; // nothing there yet
  char **bases = NULL;
  int n = 0, cap = 0;
  for (struct dirent *e; (e = readdir(d));) {
    const char *sfx[3] = {".tmp", ".old", ".del"};
    for (int k = 0; k < 3; k++)
      if (ends_with(e->d_name, sfx[k]) && is_sealed_name(e->d_name, strlen(e->d_name) - 4)) {
        if (n == cap) bases = idoc_xrealloc(bases, (size_t)(cap = cap * 2 + 8) * sizeof(char *));
        bases[n] = idoc_xstrdup(e->d_name);
        bases[n++][strlen(e->d_name) - 4] = 0;
      }
  }
  closedir(d);
  int rc = IDOC_OK;
  for (int i = 0; i < n; i++) {
    char fin[4400], why[512];
    snprintf(fin, sizeof fin, "%s/%s", dir, bases[i]);
    char *tmp = with_suffix(fin, ".tmp"), *old = with_suffix(fin, ".old"),
         *del = with_suffix(fin, ".del");
    if (idoc_file_exists(del)) {
      fprintf(stderr, "recovery: finishing the removal of %s\n", del);
      if (idoc_rm_rf(del)) rc = idoc_set_error("%s: cannot remove: %s", del, strerror(errno));
    }
    bool fin_ok = idoc_sealed_complete(fin, NULL, NULL, why, sizeof why);
    if (!fin_ok && idoc_file_exists(tmp) &&
        idoc_sealed_complete(tmp, NULL, NULL, why, sizeof why)) {
      fprintf(stderr, "recovery: %s is complete: putting it in place of %s\n", tmp, fin);
      if (idoc_file_exists(fin) && idoc_sealed_remove(fin)) rc = IDOC_ERR;
      if (rc == IDOC_OK && idoc_fs_rename(tmp, fin))
        rc = idoc_set_error("%s: cannot rename into place: %s", tmp, strerror(errno));
      fin_ok = rc == IDOC_OK;
    }
    if (!fin_ok && !idoc_file_exists(fin) && idoc_file_exists(old) &&
        idoc_sealed_complete(old, NULL, NULL, why, sizeof why)) {
      fprintf(stderr, "recovery: putting %s back as %s\n", old, fin);
      if (idoc_fs_rename(old, fin))
        rc = idoc_set_error("%s: cannot rename back: %s", old, strerror(errno));
    }
    const char *left[2] = {tmp, old};
    for (int k = 0; k < 2; k++)
      if (idoc_file_exists(left[k])) {
        fprintf(stderr, "recovery: removing %s (an interrupted save)\n", left[k]);
        if (idoc_rm_rf(left[k]))
          rc = idoc_set_error("%s: cannot remove: %s", left[k], strerror(errno));
      }
    free(tmp);
    free(old);
    free(del);
    free(bases[i]);
  }
  free(bases);
  if (n) idoc_fs_sync_dir(dir);
  clean_atomic_tmps(dir, 1);
  return rc;
}
