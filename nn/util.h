// File helpers: atomic writes (through the file-system layer nn/fs.h), whole-file reads,
// directories. The base helpers (errors, allocation, RNG) are kernels/util.h.
#pragma once
#include "kernels/util.h"

// Atomic file writes: write to "<path>.tmp.<pid>", fsync, rename over <path>. An interrupted
// writer never leaves a partial file under the final name.
typedef struct {
  FILE *f;
  char *path;
  char *tmp;
} idoc_atomic_file;
int idoc_atomic_open(idoc_atomic_file *af, const char *path);
int idoc_atomic_commit(idoc_atomic_file *af); // closes, fsyncs, renames; IDOC_ERR on failure
void idoc_atomic_abort(idoc_atomic_file *af); // closes and removes the temporary
int idoc_write_file_atomic(const char *path, const void *data, size_t n);
// Reads a whole file (NUL-terminated for convenience; *n excludes the NUL).
int idoc_read_file(const char *path, char **data, size_t *n);
int idoc_mkdir_p(const char *path);
bool idoc_file_exists(const char *path);
