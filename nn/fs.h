// File-system mutations (write, fsync, rename, unlink, mkdir, rmdir) through one place, so a
// crash test can kill the process at any of them.
//
// Test hook, read once from the environment: IDOC_TEST_KILL_AT=N SIGKILLs the process at the
// N-th mutation (1-based); a write is cut first (its first half reaches the file, flushed), so
// the file holds a prefix of what was meant. IDOC_TEST_OPS_LOG=PATH appends "N KIND PATH" for
// every mutation, so a test can list the kill points of a run. Without them the calls are the
// plain libc ones.
#pragma once
#include <stddef.h>
#include <stdio.h>
#include <sys/types.h>

// fwrite of n bytes to f (the file `path`, for the log); returns the bytes written.
size_t idoc_fs_write(FILE *f, const void *p, size_t n, const char *path);
int idoc_fs_fsync(int fd, const char *path);
int idoc_fs_rename(const char *from, const char *to);
int idoc_fs_unlink(const char *path);
int idoc_fs_mkdir(const char *path, mode_t mode);
int idoc_fs_rmdir(const char *path);
// fsync of a directory, so renames inside it survive a crash (errors are ignored: some file
// systems refuse fsync on a directory).
void idoc_fs_sync_dir(const char *dir);
