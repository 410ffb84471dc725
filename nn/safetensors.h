// Safetensors checkpoints (spec/qwen25vl_sam.md section 9): reading single files and sharded
// Hugging Face checkpoints through mmap, and writing them back in the HF layout.
//
// File format: [u64 little-endian N][N bytes of JSON header][data]. The header maps tensor names
// to {"dtype", "shape", "data_offsets": [begin, end]} (offsets relative to the data section) and
// may hold "__metadata__" (string -> string). Every header is validated before any tensor is
// used: the length, the JSON, each dtype, shape and offset pair (inside the data section, exactly
// numel * dtype size bytes), no two tensors overlapping. A malformed file is an IDOC_ERR naming
// the file and tensor, never a crash or an out-of-bounds read. Gaps between tensors and trailing
// bytes are tolerated (they hold nothing we read).
#pragma once
#include "kernels/tensor.h"

// Header length limit (the Rust/Python safetensors library uses the same).
#define IDOC_ST_MAX_HEADER 100000000ull

typedef struct {
  const char *name;     // as written in the file
  const char *st_dtype; // the format's dtype name: "F32", "BF16", "F64", ...
  int dtype;            // the idoc_dtype, or -1 for a format dtype nn/tensor.h lacks (F64, I8, ...)
  int ndim;
  const int64_t *shape; // ndim entries
  int64_t numel;
  uint64_t begin, end; // byte range inside the data section
  const void *data;    // first byte; may be unaligned (data is read with memcpy)
  const char *file;    // the file it lives in, for messages
} idoc_st_tensor;

// ---- one file -----------------------------------------------------------------------------
typedef struct idoc_st_file idoc_st_file;

// Maps `path` read-only and validates its header.
int idoc_st_open(idoc_st_file **out, const char *path);
// Validates a whole file image already in memory (no copy: `bytes` must outlive the result).
// `what` names it in messages. This is what idoc_st_open does after mmap; fuzzers call it.
int idoc_st_parse(idoc_st_file **out, const void *bytes, size_t n, const char *what);
void idoc_st_close(idoc_st_file *f);

int idoc_st_count(const idoc_st_file *f);
const idoc_st_tensor *idoc_st_tensor_at(const idoc_st_file *f, int i); // sorted by name
const idoc_st_tensor *idoc_st_find(const idoc_st_file *f, const char *name);
int idoc_st_metadata_count(const idoc_st_file *f);
void idoc_st_metadata_at(const idoc_st_file *f, int i, const char **key, const char **value);
const char *idoc_st_metadata(const idoc_st_file *f, const char *key); // NULL when absent

// Copies a tensor into `dst` (any device), converting F32/BF16/F16 to any of F32/BF16/F16 and
// I32/I64/U8 to a wider or range-checked integer type. The shape must equal the file's shape
// exactly; mismatches name the tensor and the file.
int idoc_st_load(const idoc_st_tensor *t, idoc_tensor *dst);

// ---- checkpoints (a file, or a directory with an index and shards) ------------------------
// Tensor names are normalised so both transformers naming schemes load the same:
// "model.language_model." -> "model.", "model.visual." -> "visual." (lm_head.weight stays).
// The normalised form is the original Qwen naming of the hub files; write checkpoints with it,
// since every transformers version loads it (>= 4.52 converts it at load time).
typedef struct idoc_ckpt idoc_ckpt;

// `path` is a directory (model.safetensors.index.json if present, else model.safetensors), an
// index file (*.index.json: its shards are opened once each from the same folder), or a single
// .safetensors file. The index must list only plain file names, each tensor it maps must be in
// its shard, and no name may appear twice (also after normalisation). Tensors a shard holds but
// the index does not list are still loaded; metadata.total_size is informational, not checked.
int idoc_ckpt_open(idoc_ckpt **out, const char *path);
void idoc_ckpt_close(idoc_ckpt *c);

// Normalised name of `name` (malloc'ed).
char *idoc_ckpt_normalize_name(const char *name);

int idoc_ckpt_count(const idoc_ckpt *c);
const char *idoc_ckpt_name_at(const idoc_ckpt *c, int i); // normalised, sorted
const idoc_st_tensor *idoc_ckpt_tensor_at(const idoc_ckpt *c, int i);
int idoc_ckpt_file_count(const idoc_ckpt *c);
// Lookup by either naming scheme; NULL when absent.
const idoc_st_tensor *idoc_ckpt_find(const idoc_ckpt *c, const char *name);
// Loads `name` into `dst` (shape must match; dtype converted; any device).
int idoc_ckpt_load(const idoc_ckpt *c, const char *name, idoc_tensor *dst);
// A new tensor from arena `a` with the file's shape, in dtype `dt` (-1: the file's dtype).
int idoc_ckpt_load_new(const idoc_ckpt *c, const char *name, idoc_arena *a, int dt,
                       idoc_tensor **out);
// Compares the checkpoint's tensors with the `n` expected names (either naming scheme). Missing
// names are an error; names the model does not expect are an error unless allow_unexpected.
// The message counts both and lists the first few of each.
int idoc_ckpt_check_names(const idoc_ckpt *c, const char *const *expected, int n,
                          bool allow_unexpected);

// ---- writing ------------------------------------------------------------------------------
typedef struct {
  const char *name;     // NULL: t->name
  const idoc_tensor *t; // any dtype, any device
} idoc_st_item;

typedef struct {
  int dtype;                // -1: keep; IDOC_F32/IDOC_BF16/IDOC_F16: float tensors converted to it
  uint64_t max_shard_bytes; // 0: one model.safetensors; else shards of at most this many data
                            // bytes (a single larger tensor gets a shard of its own)
  const char *const *metadata; // extra __metadata__ pairs {k0, v0, k1, v1, ..., NULL} or NULL
} idoc_st_save_opts;

// Writes one safetensors file at `path`: tensors sorted by name, __metadata__ {"format": "pt"}
// plus opts->metadata, header padded with spaces to a multiple of 8 bytes, written aside and
// renamed into place. Names must be unique and non-empty.
int idoc_st_write_file(const char *path, const idoc_st_item *items, int n,
                       const idoc_st_save_opts *opts);
// Writes a checkpoint into directory `dir` (created if needed): model.safetensors, or
// model-0000k-of-0000n.safetensors + model.safetensors.index.json when max_shard_bytes is
// exceeded. Files of the other layout left from an earlier save are removed afterwards, so a
// loader never picks up a stale index or shard.
int idoc_st_save(const char *dir, const idoc_st_item *items, int n, const idoc_st_save_opts *opts);
