// idoc-requires: pcre2 utf8proc cjson
// Byte-level BPE on one pre-token: GPT-2's byte <-> symbol map and the rank-ordered merge loop.
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_internal.h"

void idoc_byte_level_tables(uint32_t byte_to_cp[256]) {
  // Printable bytes map to themselves; the other 68 take U+0100.. in increasing byte order.
  uint32_t n = 0;
  for (int b = 0; b < 256; b++) {
    bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    byte_to_cp[b] = keep ? (uint32_t)b : 256 + n++;
  }
}

int idoc_byte_level_cp_to_byte(uint32_t cp) {
  if ((cp >= '!' && cp <= '~') || (cp >= 0xA1 && cp <= 0xAC) || (cp >= 0xAE && cp <= 0xFF))
    return (int)cp;
  if (cp < 256 || cp >= 256 + 68) return -1;
  uint32_t k = cp - 256, n = 0;
  for (int b = 0; b < 256; b++) {
    bool keep = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE);
    if (!keep && n++ == k) return b;
  }
  return -1;
}

typedef struct {
  int32_t id, prev, next;
} bpe_sym;

typedef struct {
  uint64_t key; // rank << 32 | position of the left symbol: lowest rank, then leftmost
  int32_t new_id;
} bpe_merge;

static void heap_push(bpe_merge *h, size_t *n, bpe_merge m) {
  size_t i = (*n)++;
  while (i > 0) {
    size_t p = (i - 1) / 2;
    if (h[p].key <= m.key) break;
    h[i] = h[p];
    i = p;
  }
  h[i] = m;
}

static bpe_merge heap_pop(bpe_merge *h, size_t *n) {
  bpe_merge top = h[0], last = h[--(*n)];
  size_t i = 0;
  for (;;) {
    size_t c = 2 * i + 1;
    if (c >= *n) break;
    if (c + 1 < *n && h[c + 1].key < h[c].key) c++;
    if (last.key <= h[c].key) break;
    h[i] = h[c];
    i = c;
  }
  if (*n) h[i] = last;
  return top;
}

static inline bool pair_lookup(const idoc_tokenizer *tok, int32_t a, int32_t b, int64_t *v) {
  return idoc_u64map_get(&tok->merges, (uint64_t)(uint32_t)a << 32 | (uint32_t)b, v);
}

static void push_pair(const idoc_tokenizer *tok, bpe_sym *sym, int32_t i, bpe_merge *h,
                      size_t *nh) {
  int32_t j = sym[i].next;
  int64_t v;
  if (j < 0 || !pair_lookup(tok, sym[i].id, sym[j].id, &v)) return;
  heap_push(h, nh, (bpe_merge){(uint64_t)(v >> 32) << 32 | (uint32_t)i, (int32_t)(v & 0xffffffff)});
}

// With ignore_merges, a piece that is a whole vocabulary entry is taken as is.
static int32_t whole_piece_id(const idoc_tokenizer *tok, const uint8_t *s, size_t n) {
  uint32_t map[256];
  idoc_byte_level_tables(map);
  char stack[256], *buf = n * 2 <= sizeof stack ? stack : idoc_xmalloc(n * 2);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    uint32_t cp = map[s[i]];
    if (cp < 0x80) {
      buf[k++] = (char)cp;
    } else {
      buf[k++] = (char)(0xC0 | (cp >> 6));
      buf[k++] = (char)(0x80 | (cp & 0x3F));
    }
  }
  int32_t id = idoc_strmap_get(&tok->vocab, buf, k);
  if (buf != stack) free(buf);
  return id;
}

void idoc_bpe_piece(const idoc_tokenizer *tok, const uint8_t *s, size_t n, int32_t **ids,
                    size_t *len, size_t *cap) {
  if (n == 0) return;
  if (n == 1) {
    if (tok->byte_id[s[0]] >= 0) idoc_ids_push(ids, len, cap, tok->byte_id[s[0]]);
    return;
  }
  if (tok->ignore_merges) {
    int32_t id = whole_piece_id(tok, s, n);
    if (id >= 0) {
      idoc_ids_push(ids, len, cap, id);
      return;
    }
  }
  enum { STACK_SYMS = 128 };
  bpe_sym sym_stack[STACK_SYMS];
  bpe_merge heap_stack[3 * STACK_SYMS];
  bool big = n > STACK_SYMS;
  bpe_sym *sym = big ? idoc_xmalloc(n * sizeof *sym) : sym_stack;
  // Each merge pushes at most two new pairs, so 3n entries always suffice.
  bpe_merge *heap = big ? idoc_xmalloc(3 * n * sizeof *heap) : heap_stack;
  size_t nh = 0;
  int32_t m = 0;
  for (size_t i = 0; i < n; i++) {
    int32_t id = tok->byte_id[s[i]];
    if (id < 0) continue; // no symbol and no unk token: the byte is dropped, as HF does
    sym[m] = (bpe_sym){id, m - 1, m + 1};
    m++;
  }
  if (m > 0) sym[m - 1].next = -1;
  for (int32_t i = 0; i + 1 < m; i++)
    push_pair(tok, sym, i, heap, &nh);
  while (nh) {
    bpe_merge top = heap_pop(heap, &nh);
    int32_t i = (int32_t)(top.key & 0xffffffff), j = sym[i].next;
    if (sym[i].id < 0 || j < 0) continue;
    // Stale entry check as in HF: the pair now at i must still produce this token.
    int64_t v;
    if (!pair_lookup(tok, sym[i].id, sym[j].id, &v) || (int32_t)(v & 0xffffffff) != top.new_id)
      continue;
    sym[i].id = top.new_id;
    sym[j].id = -1;
    sym[i].next = sym[j].next;
    if (sym[j].next >= 0) sym[sym[j].next].prev = i;
    if (sym[i].prev >= 0) push_pair(tok, sym, sym[i].prev, heap, &nh);
    push_pair(tok, sym, i, heap, &nh);
  }
  for (int32_t i = m > 0 ? 0 : -1; i >= 0; i = sym[i].next)
    idoc_ids_push(ids, len, cap, sym[i].id);
  if (big) {
    free(sym);
    free(heap);
  }
}
