#include "data/strmap.h"

#include <stdlib.h>
#include <string.h>

#include "nn/util.h"

// FNV-1a over 8-byte words would be faster, but keys are short (tokens); plain FNV-1a with a
// final avalanche is simple and good enough.
uint64_t idoc_hash_bytes(const void *p, size_t n) {
  const unsigned char *s = p;
  uint64_t h = 0xcbf29ce484222325ull;
  for (size_t i = 0; i < n; i++)
    h = (h ^ s[i]) * 0x100000001b3ull;
  h ^= h >> 33;
  h *= 0xff51afd7ed558ccdull;
  h ^= h >> 33;
  return h;
}

void idoc_strmap_init(idoc_strmap *m) { memset(m, 0, sizeof *m); }

void idoc_strmap_free(idoc_strmap *m) {
  free(m->slots);
  free(m->entries);
  free(m->arena);
  memset(m, 0, sizeof *m);
}

static void strmap_grow(idoc_strmap *m) {
  size_t cap = m->cap ? m->cap * 2 : 64;
  uint32_t *slots = idoc_xcalloc(cap, sizeof *slots);
  for (size_t e = 0; e < m->n; e++) {
    size_t i = (size_t)m->entries[e].hash & (cap - 1);
    while (slots[i])
      i = (i + 1) & (cap - 1);
    slots[i] = (uint32_t)(e + 1);
  }
  free(m->slots);
  m->slots = slots;
  m->cap = cap;
}

static size_t strmap_find(const idoc_strmap *m, const char *key, size_t len, uint64_t h) {
  size_t mask = m->cap - 1, i = (size_t)h & mask;
  for (;; i = (i + 1) & mask) {
    uint32_t s = m->slots[i];
    if (!s) return i;
    const struct idoc_strmap_entry *e = &m->entries[s - 1];
    if (e->hash == h && e->len == len && !memcmp(m->arena + e->off, key, len)) return i;
  }
}

int32_t idoc_strmap_get(const idoc_strmap *m, const char *key, size_t len) {
  if (!m->cap) return -1;
  uint32_t s = m->slots[strmap_find(m, key, len, idoc_hash_bytes(key, len))];
  return s ? m->entries[s - 1].value : -1;
}

int32_t idoc_strmap_put(idoc_strmap *m, const char *key, size_t len, int32_t value) {
  IDOC_CHECK(len < UINT32_MAX && m->n < UINT32_MAX - 1, "strmap: key or table too large");
  if ((m->n + 1) * 2 > m->cap) strmap_grow(m);
  uint64_t h = idoc_hash_bytes(key, len);
  size_t i = strmap_find(m, key, len, h);
  if (m->slots[i]) {
    struct idoc_strmap_entry *e = &m->entries[m->slots[i] - 1];
    int32_t old = e->value;
    e->value = value;
    return old;
  }
  if (m->n == m->n_cap) {
    m->n_cap = m->n_cap ? m->n_cap * 2 : 64;
    m->entries = idoc_xrealloc(m->entries, m->n_cap * sizeof *m->entries);
  }
  if (m->arena_len + len > m->arena_cap) {
    m->arena_cap = (m->arena_len + len) * 2 + 256;
    m->arena = idoc_xrealloc(m->arena, m->arena_cap);
  }
  memcpy(m->arena + m->arena_len, key, len);
  m->entries[m->n] = (struct idoc_strmap_entry){h, m->arena_len, (uint32_t)len, value};
  m->arena_len += len;
  m->slots[i] = (uint32_t)(++m->n);
  return -1;
}

void idoc_u64map_init(idoc_u64map *m, size_t expected) {
  memset(m, 0, sizeof *m);
  size_t cap = 16;
  while (cap < expected * 2)
    cap *= 2;
  m->cap = cap;
  m->keys = idoc_xmalloc(cap * sizeof *m->keys);
  m->vals = idoc_xmalloc(cap * sizeof *m->vals);
  m->used = idoc_xcalloc(cap, 1);
}

void idoc_u64map_free(idoc_u64map *m) {
  free(m->keys);
  free(m->vals);
  free(m->used);
  memset(m, 0, sizeof *m);
}

void idoc_u64map_put(idoc_u64map *m, uint64_t key, int64_t value) {
  if ((m->n + 1) * 2 > m->cap) {
    idoc_u64map old = *m;
    idoc_u64map_init(m, old.cap);
    for (size_t i = 0; i < old.cap; i++)
      if (old.used[i]) idoc_u64map_put(m, old.keys[i], old.vals[i]);
    idoc_u64map_free(&old);
  }
  uint64_t h = key * 0x9e3779b97f4a7c15ull;
  size_t mask = m->cap - 1, i = (size_t)(h >> 17) & mask;
  while (m->used[i]) {
    if (m->keys[i] == key) {
      m->vals[i] = value;
      return;
    }
    i = (i + 1) & mask;
  }
  m->used[i] = 1;
  m->keys[i] = key;
  m->vals[i] = value;
  m->n++;
}
