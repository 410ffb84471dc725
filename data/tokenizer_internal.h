// Internals shared by the tokenizer's source files (load/save, BPE, pre-tokenizer, codec).
// idoc-requires: pcre2 utf8proc cjson
#pragma once
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <pthread.h>

#include "data/strmap.h"
#include "data/tokenizer.h"
#include "nn/util.h"

enum { TOK_IN_MODEL = 1, TOK_ADDED = 2, TOK_SPECIAL = 4 };

typedef struct {
  char *content;
  size_t len;
  int32_t id;
  bool special;
  bool loaded;     // came from the file (save() appends only the others)
  bool normalized; // matched after normalization, against `match` (its own normalized content)
  char *match;     // what the text is compared with: content, or NFC(content) when normalized
  size_t match_len;
} idoc_added_token;

// A bounded direct-mapped cache: piece bytes -> ids. A colliding insert evicts.
#define IDOC_TOK_CACHE_SLOTS 16384
#define IDOC_TOK_CACHE_MAX_PIECE 96
typedef struct {
  uint64_t hash;
  uint8_t key_len, n_ids; // key_len 0 = empty slot
  char key[IDOC_TOK_CACHE_MAX_PIECE];
  int32_t *ids; // n_ids entries (malloc'ed)
} idoc_tok_cache_slot;

struct idoc_tokenizer {
  char *name;      // file path (for errors)
  char *json_text; // the original file, re-parsed by save()
  size_t json_len;

  int32_t n_ids;
  char **tok_str;        // [n_ids] string as in the file (NULL = unused id)
  uint8_t **tok_bytes;   // [n_ids] bytes produced by the ByteLevel decoder
  uint32_t *tok_nbytes;  // [n_ids]
  uint8_t *tok_flags;    // [n_ids] TOK_*
  int32_t n_model;       // largest model vocab id + 1
  idoc_strmap vocab;     // model vocab string -> id
  idoc_strmap added_map; // added content -> id

  idoc_added_token *added;
  int n_added, cap_added;
  bool added_first_byte[256];      // first bytes of the raw-matched (normalized=false) tokens
  bool added_first_byte_norm[256]; // ... of the normalized=true tokens' `match`
  size_t added_max_len;

  int32_t byte_id[256]; // id of each byte's symbol, -1 if the vocab lacks it
  idoc_u64map merges;   // (left id << 32 | right id) -> (rank << 32 | new id)
  bool ignore_merges;

  bool nfc;
  pcre2_code *re; // NULL: no split (each segment is one piece)
  bool re_jit;

  pthread_mutex_t cache_lock;
  idoc_tok_cache_slot *cache; // IDOC_TOK_CACHE_SLOTS
};

// GPT-2's bytes_to_unicode: code point of each byte's symbol; and the inverse (-1 if none).
void idoc_byte_level_tables(uint32_t byte_to_cp[256]);
int idoc_byte_level_cp_to_byte(uint32_t cp);

// Runs BPE on one piece (raw bytes) and appends its ids.
void idoc_bpe_piece(const idoc_tokenizer *tok, const uint8_t *s, size_t n, int32_t **ids,
                    size_t *len, size_t *cap);
// Splits a normalized segment into pieces and encodes them (cache + BPE).
int idoc_pretokenize_encode(idoc_tokenizer *tok, const char *s, size_t n, int32_t **ids,
                            size_t *len, size_t *cap);
int idoc_tokenizer_compile_regex(idoc_tokenizer *tok, const char *pattern, bool literal,
                                 const char *key);

static inline void idoc_ids_push(int32_t **ids, size_t *len, size_t *cap, int32_t id) {
  if (*len == *cap) {
    *cap = *cap ? *cap * 2 : 64;
    *ids = idoc_xrealloc(*ids, *cap * sizeof **ids);
  }
  (*ids)[(*len)++] = id;
}

// Appends the lossy UTF-8 decoding of s[0..n) to out (room for 3n + 1 bytes; NUL-terminated).
// With keep_tail a trailing incomplete-but-valid sequence is left undecoded; returns its length.
size_t idoc_utf8_lossy_append(const uint8_t *s, size_t n, char *out, size_t *out_len,
                              bool keep_tail);
