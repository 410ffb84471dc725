// Open-addressing hash maps: byte string -> int32 (idoc_strmap) and uint64 -> int64
// (idoc_u64map). Linear probing, power-of-two capacity kept at most half full, no deletion (the
// tokenizer builds its tables once). Keys of idoc_strmap are copied into one arena.
#pragma once
#include <stddef.h>
#include <stdint.h>

typedef struct {
  uint32_t *slots; // index into entries + 1; 0 = empty
  size_t cap;      // slots (power of two)
  struct idoc_strmap_entry {
    uint64_t hash;
    size_t off; // key offset in arena
    uint32_t len;
    int32_t value;
  } * entries;
  size_t n, n_cap;
  char *arena;
  size_t arena_len, arena_cap;
} idoc_strmap;

void idoc_strmap_init(idoc_strmap *m);
void idoc_strmap_free(idoc_strmap *m);
// Inserts or overwrites; returns the previous value or -1 when the key was new.
int32_t idoc_strmap_put(idoc_strmap *m, const char *key, size_t len, int32_t value);
// Returns the value, or -1 when absent.
int32_t idoc_strmap_get(const idoc_strmap *m, const char *key, size_t len);
uint64_t idoc_hash_bytes(const void *p, size_t n);

typedef struct {
  uint64_t *keys;
  int64_t *vals;
  uint8_t *used;
  size_t cap, n;
} idoc_u64map;

void idoc_u64map_init(idoc_u64map *m, size_t expected);
void idoc_u64map_free(idoc_u64map *m);
void idoc_u64map_put(idoc_u64map *m, uint64_t key, int64_t value); // inserts or overwrites
// Returns 1 and sets *value when found, else 0.
static inline int idoc_u64map_get(const idoc_u64map *m, uint64_t key, int64_t *value) {
  if (!m->cap) return 0;
  uint64_t h = key * 0x9e3779b97f4a7c15ull;
  size_t mask = m->cap - 1, i = (size_t)(h >> 17) & mask;
  while (m->used[i]) {
    if (m->keys[i] == key) {
      *value = m->vals[i];
      return 1;
    }
    i = (i + 1) & mask;
  }
  return 0;
}
