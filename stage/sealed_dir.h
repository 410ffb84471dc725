// Folders that are either complete or absent to a reader: written aside (NAME.tmp), sealed by a
// manifest.json written last (every file with its size and FNV-1a 64 checksum, plus the step it
// holds), and swapped in by renames only. A replaced folder is first renamed to NAME.old and a
// removed one to NAME.del, and only then deleted, so a kill at any point leaves either the
// complete old folder, the complete new one, or a complete NAME.tmp / NAME.old that
// idoc_sealed_recover puts back. Checkpoint-N and final/ folders of a run are such folders.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define IDOC_SEALED_MANIFEST "manifest.json"

// Writes dir/manifest.json over the regular files now in dir (atomically, then fsyncs dir).
// step/total: the training step the folder holds and the run's total (0 when not known).
int idoc_sealed_seal(const char *dir, int64_t step, int64_t total);
// True when dir has a manifest whose every file is present with its size and checksum; else
// false with the reason in why. step/total (may be NULL) get the manifest's values.
bool idoc_sealed_complete(const char *dir, int64_t *step, int64_t *total, char *why, size_t n);
// Puts the sealed folder tmp in place of fin (renaming an existing fin aside first).
int idoc_sealed_replace(const char *tmp, const char *fin);
// Removes a folder: renamed to PATH.del, then deleted (absent: nothing to do).
int idoc_sealed_remove(const char *path);
// Deletes a folder tree (through nn/fs.h, so crash tests see each step).
int idoc_rm_rf(const char *path);
// After a kill, for every NAME in dir (checkpoint-N or final) with NAME.tmp / NAME.old /
// NAME.del siblings: NAME stays when complete, else a complete NAME.tmp, else a complete
// NAME.old becomes NAME; the rest and every NAME.del are deleted. Files named X.tmp.PID
// (idoc_atomic_open's temporaries) whose process is gone are deleted from dir and its subfolders.
// Reports each change on stderr.
int idoc_sealed_recover(const char *dir);
