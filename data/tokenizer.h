// Qwen2 byte-level BPE tokenizer read from a Hugging Face `tokenizer.json`.
//
// Pipeline (as the `tokenizers` library runs it for Qwen2, spec qwen25vl_sam.md section 6):
//   1. added tokens marked normalized=false (all of Qwen's) are matched whole on the raw text,
//      leftmost-longest;
//   2. the text between them is NFC-normalized (utf8proc), then split at the added tokens
//      marked normalized=true, matched against their own NFC form (the library's second pass:
//      'tke\u0301' with a normalized token "tke" is NFC 'tk\u00e9', which does not contain it);
//   3. split by the pre-tokenizer regex (PCRE2, Unicode classes), "Isolated" behaviour;
//   4. each piece's UTF-8 bytes go through byte-level BPE: rank-ordered merges, lowest rank
//      first, leftmost on ties (a heap over a linked list of symbols: O(n log n) per piece);
//      a bounded cache maps frequent pieces to their ids.
// Invalid UTF-8 in the input (which a Python str cannot hold) is replaced by U+FFFD, one per
// maximal invalid subpart, before step 1. Decoding inverts the byte map and replaces invalid
// UTF-8 the same way (Rust's from_utf8_lossy, Python's errors="replace").
//
// Accepted tokenizer.json: model BPE (merges as "a b" strings or ["a","b"] pairs; no dropout,
// unk, byte_fallback or subword affixes), normalizer null / NFC / Sequence[NFC], pre_tokenizer
// Sequence[Split(Regex, Isolated), ByteLevel(use_regex=false)] or ByteLevel(use_regex=true,
// GPT-2 regex), decoder ByteLevel. Anything else is refused with an error naming the key.
//
// Encoding and decoding are thread-safe on one tokenizer (the piece cache takes a lock);
// adding tokens is not and must happen before sharing.
// idoc-requires: pcre2 utf8proc cjson
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct idoc_tokenizer idoc_tokenizer;

// NULL on failure, with idoc_last_error() naming the file and the JSON key at fault.
idoc_tokenizer *idoc_tokenizer_load(const char *tokenizer_json_path);
// Same from a JSON text in memory; `name` is used in error messages and by save().
idoc_tokenizer *idoc_tokenizer_load_json(const char *json, size_t len, const char *name);
void idoc_tokenizer_free(idoc_tokenizer *tok);

// Number of ids (largest id + 1, added tokens included).
int32_t idoc_tokenizer_n_ids(const idoc_tokenizer *tok);
// Id of a token string (vocab entry as stored in the file, e.g. "Ġthe", or an added token), or -1.
int32_t idoc_token_to_id(const idoc_tokenizer *tok, const char *token);
// The token string of an id as stored in the file, or NULL for an unused id.
const char *idoc_id_to_token(const idoc_tokenizer *tok, int32_t id);
bool idoc_token_is_special(const idoc_tokenizer *tok, int32_t id); // special added token
bool idoc_token_is_added(const idoc_tokenizer *tok, int32_t id);

// Adds `content` as an added token (normalized=false) and returns its id: the existing id when
// it is already an added token or in the vocabulary, else the next free id (151665, 151666 for
// <|mis|>, <|art|> on Qwen's vocabulary). Returns -1 (with an error) for empty content.
int32_t idoc_tokenizer_add_token(idoc_tokenizer *tok, const char *content, bool special);
// Writes a tokenizer.json with the original content plus the tokens added since loading
// (atomically: written aside, then renamed).
int idoc_tokenizer_save(const idoc_tokenizer *tok, const char *path);

// Encodes text[0..len). *ids is malloc'ed (caller frees); *n its length. IDOC_ERR only on a
// regex engine failure (resource limits), with a message.
int idoc_tokenize(idoc_tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n);
// Appends to a growable buffer (*ids with capacity *cap, length *n): avoids reallocations when
// encoding many texts.
int idoc_tokenize_append(idoc_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                         size_t *n, size_t *cap);

// Decodes ids to a malloc'ed NUL-terminated UTF-8 string (*out_len bytes, may be NULL). With
// skip_special, special added tokens are left out. IDOC_ERR for an id outside [0, n_ids) or an
// unused id, naming its position.
int idoc_detokenize(const idoc_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                    char **out, size_t *out_len);

// Raw bytes of one token as decoding produces them before UTF-8 repair (NULL for unused ids).
const uint8_t *idoc_token_bytes(const idoc_tokenizer *tok, int32_t id, size_t *len);

// Incremental decoder for streaming generation: push ids one at a time and get the text that
// became final, never half a UTF-8 character. The concatenation of all outputs plus the flush
// equals idoc_detokenize() of the whole id list.
typedef struct {
  const idoc_tokenizer *tok;
  bool skip_special;
  uint8_t pending[4]; // bytes of an incomplete, still-valid UTF-8 prefix
  int n_pending;
  char *buf; // output of the last call, owned by the decoder
  size_t buf_cap;
} idoc_stream_decoder;

void idoc_stream_decoder_init(idoc_stream_decoder *d, const idoc_tokenizer *tok, bool skip_special);
// Returns the newly final text (NUL-terminated, valid until the next call; *len may be NULL),
// or NULL for an invalid id (with an error).
const char *idoc_stream_decoder_push(idoc_stream_decoder *d, int32_t id, size_t *len);
// Emits what is left (an incomplete trailing sequence becomes U+FFFD).
const char *idoc_stream_decoder_flush(idoc_stream_decoder *d, size_t *len);
void idoc_stream_decoder_free(idoc_stream_decoder *d);

// ---- helpers shared with the other text code --------------------------------------------------
// Length of the valid UTF-8 sequence at s[0..n), or 0 when it is invalid / truncated.
size_t idoc_utf8_valid_len(const uint8_t *s, size_t n);
// Copies s[0..n) replacing each maximal invalid subpart with U+FFFD; malloc'ed, NUL-terminated.
char *idoc_utf8_sanitize(const char *s, size_t n, size_t *out_len);
// NFC of valid UTF-8 (malloc'ed, NUL-terminated); IDOC_ERR on invalid input.
int idoc_utf8_nfc(const char *s, size_t n, char **out, size_t *out_len);
