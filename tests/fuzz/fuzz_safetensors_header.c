// libFuzzer target for the safetensors header validator: any byte string is either rejected
// with an error or describes tensors that lie inside the buffer, which we then read and convert
// (ASan catches any read past the input).
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static idoc_arena *arena;
  if (!arena) arena = idoc_arena_new("fuzz", IDOC_DEV_CPU, 1 << 20);
  idoc_st_file *f;
  if (idoc_st_parse(&f, data, size, "fuzz.safetensors") != IDOC_OK) {
    if (!idoc_last_error()[0]) abort(); // a rejection always says why
    return 0;
  }
  unsigned sum = 0;
  for (int i = 0; i < idoc_st_count(f); i++) {
    const idoc_st_tensor *t = idoc_st_tensor_at(f, i);
    if (t->end < t->begin || (const uint8_t *)t->data < data ||
        (const uint8_t *)t->data + (t->end - t->begin) > data + size)
      abort();
    for (uint64_t k = 0; k < t->end - t->begin; k++)
      sum += ((const uint8_t *)t->data)[k];
    if (idoc_st_find(f, t->name) != t) abort();
    // Load the small ones into every compatible dtype.
    if (t->dtype < 0 || t->ndim > IDOC_MAX_DIMS || t->numel > 4096) continue;
    for (int dt = 0; dt < 6; dt++) {
      idoc_arena_reset(arena);
      idoc_tensor *x = idoc_tensor_new(arena, (idoc_dtype)dt, t->ndim, t->shape);
      idoc_st_load(t, x);
    }
  }
  // Independent check of the no-overlap rule for what was accepted.
  for (int i = 0; i < idoc_st_count(f) && i < 64; i++)
    for (int j = 0; j < i; j++) {
      const idoc_st_tensor *a = idoc_st_tensor_at(f, i), *b = idoc_st_tensor_at(f, j);
      if (a->begin < a->end && b->begin < b->end && a->begin < b->end && b->begin < a->end) abort();
    }
  for (int i = 0; i < idoc_st_metadata_count(f); i++) {
    const char *k, *v;
    idoc_st_metadata_at(f, i, &k, &v);
    sum += (unsigned)strlen(k) + (unsigned)strlen(v);
  }
  idoc_st_close(f);
  return (int)(sum & 0); // keeps the reads
}
