// idoc-requires: pcre2 utf8proc cjson
// Text side of the tokenizer: UTF-8 validation and repair, NFC (utf8proc), the pre-tokenizer
// regex split (PCRE2) and the piece cache in front of BPE.
#include <stdlib.h>
#include <string.h>
#include <utf8proc.h>

#include "data/tokenizer_internal.h"

// ---- UTF-8 ------------------------------------------------------------------------------------
// > 0: a complete valid sequence of that length; < 0: an invalid maximal subpart of -r bytes
// (Unicode 3.9 "U+FFFD substitution of maximal subparts", as Rust and Python replace);
// 0: s[0..n) is a valid but incomplete prefix (more bytes could complete it).
static int utf8_scan(const uint8_t *s, size_t n) {
  uint8_t c = s[0];
  if (c < 0x80) return 1;
  int need;
  uint8_t lo = 0x80, hi = 0xBF;
  if (c >= 0xC2 && c <= 0xDF) {
    need = 1;
  } else if (c >= 0xE0 && c <= 0xEF) {
    need = 2;
    if (c == 0xE0) lo = 0xA0;
    if (c == 0xED) hi = 0x9F;
  } else if (c >= 0xF0 && c <= 0xF4) {
    need = 3;
    if (c == 0xF0) lo = 0x90;
    if (c == 0xF4) hi = 0x8F;
  } else {
    return -1;
  }
  for (int k = 1; k <= need; k++) {
    if ((size_t)k >= n) return 0;
    uint8_t b = s[k];
    if (k == 1 ? (b < lo || b > hi) : (b < 0x80 || b > 0xBF)) return -k;
  }
  return need + 1;
}

size_t idoc_utf8_valid_len(const uint8_t *s, size_t n) {
  if (n == 0) return 0;
  int r = utf8_scan(s, n);
  return r > 0 ? (size_t)r : 0;
}

static bool utf8_all_valid(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    if (s[i] < 0x80) {
      i++;
      continue;
    }
    int r = utf8_scan(s + i, n - i);
    if (r <= 0) return false;
    i += (size_t)r;
  }
  return true;
}

// Appends the lossy decoding of s[0..n) to out (which has room for 3n + 1 bytes). With
// keep_tail, a trailing incomplete-but-valid prefix is not replaced: its length is returned.
size_t idoc_utf8_lossy_append(const uint8_t *s, size_t n, char *out, size_t *out_len,
                              bool keep_tail) {
  size_t i = 0, k = *out_len;
  while (i < n) {
    int r = utf8_scan(s + i, n - i);
    if (r > 0) {
      memcpy(out + k, s + i, (size_t)r);
      k += (size_t)r;
      i += (size_t)r;
      continue;
    }
    if (r == 0 && keep_tail) break;
    memcpy(out + k, "\xEF\xBF\xBD", 3);
    k += 3;
    i += r < 0 ? (size_t)-r : n - i;
  }
  out[k] = 0;
  *out_len = k;
  return n - i;
}

char *idoc_utf8_sanitize(const char *s, size_t n, size_t *out_len) {
  char *out = idoc_xmalloc(3 * n + 1);
  size_t k = 0;
  idoc_utf8_lossy_append((const uint8_t *)s, n, out, &k, false);
  if (out_len) *out_len = k;
  return out;
}

int idoc_utf8_nfc(const char *s, size_t n, char **out, size_t *out_len) {
  utf8proc_uint8_t *dst = NULL;
  utf8proc_ssize_t r = utf8proc_map((const utf8proc_uint8_t *)s, (utf8proc_ssize_t)n, &dst,
                                    UTF8PROC_STABLE | UTF8PROC_COMPOSE);
  if (r < 0) return idoc_set_error("NFC: %s", utf8proc_errmsg(r));
  *out = (char *)dst;
  if (out_len) *out_len = (size_t)r;
  return IDOC_OK;
}

// ---- regex --------------------------------------------------------------------------------
// The `tokenizers` library runs Oniguruma, whose Unicode \s is the White_Space property; PCRE2's
// \s (UCP) leaves out U+0085. \s and \S are therefore spelled out as that class.
#define WS_CLASS                                                                                   \
  "\\t\\n\\x{0B}\\f\\r "                                                                           \
  "\\x{85}\\x{A0}\\x{1680}\\x{2000}-\\x{200A}\\x{2028}\\x{2029}\\x{202F}\\x{205F}\\x{3000}"

static char *rewrite_space_classes(const char *p) {
  size_t n = strlen(p), cap = n * 16 + 1, k = 0;
  char *out = idoc_xmalloc(cap);
  bool in_class = false;
  for (size_t i = 0; i < n; i++) {
    if (p[i] == '\\' && i + 1 < n) {
      char c = p[i + 1];
      if (c == 's' || (c == 'S' && !in_class)) {
        const char *rep = c == 's' ? (in_class ? WS_CLASS : "[" WS_CLASS "]") : "[^" WS_CLASS "]";
        size_t rl = strlen(rep);
        memcpy(out + k, rep, rl);
        k += rl;
      } else {
        out[k++] = p[i];
        out[k++] = c;
      }
      i++;
      continue;
    }
    if (p[i] == '[' && !in_class) {
      in_class = true;
      out[k++] = p[i];
      // A ']' or '^]' right after '[' is a literal.
      if (i + 1 < n && p[i + 1] == '^') out[k++] = p[++i];
      if (i + 1 < n && p[i + 1] == ']') out[k++] = p[++i];
      continue;
    }
    if (in_class && p[i] == '[' && i + 1 < n && p[i + 1] == ':') { // [:alpha:] stays whole
      const char *end = strstr(p + i + 2, ":]");
      if (end) {
        size_t l = (size_t)(end + 2 - (p + i));
        memcpy(out + k, p + i, l);
        k += l;
        i += l - 1;
        continue;
      }
    }
    if (p[i] == ']' && in_class) in_class = false;
    out[k++] = p[i];
  }
  out[k] = 0;
  return out;
}

int idoc_tokenizer_compile_regex(idoc_tokenizer *tok, const char *pattern, bool literal,
                                 const char *key) {
  char *pat = literal ? idoc_xstrdup(pattern) : rewrite_space_classes(pattern);
  int err;
  PCRE2_SIZE eoff;
  uint32_t opts = PCRE2_UTF | PCRE2_UCP | (literal ? PCRE2_LITERAL : 0); // the pattern is checked
  tok->re = pcre2_compile((PCRE2_SPTR)pat, PCRE2_ZERO_TERMINATED, opts, &err, &eoff, NULL);
  free(pat);
  if (!tok->re) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    return idoc_set_error("%s: %s: bad regex at offset %zu: %s", tok->name, key, (size_t)eoff,
                          (char *)msg);
  }
  tok->re_jit = pcre2_jit_compile(tok->re, PCRE2_JIT_COMPLETE) == 0;
  return IDOC_OK;
}

// ---- pieces -------------------------------------------------------------------------------
static void encode_piece(idoc_tokenizer *tok, const char *p, size_t n, int32_t **ids, size_t *len,
                         size_t *cap) {
  if (n <= 1 || n > IDOC_TOK_CACHE_MAX_PIECE) {
    idoc_bpe_piece(tok, (const uint8_t *)p, n, ids, len, cap);
    return;
  }
  uint64_t h = idoc_hash_bytes(p, n);
  idoc_tok_cache_slot *slot = &tok->cache[h & (IDOC_TOK_CACHE_SLOTS - 1)];
  pthread_mutex_lock(&tok->cache_lock);
  if (slot->key_len == n && slot->hash == h && !memcmp(slot->key, p, n)) {
    for (int i = 0; i < slot->n_ids; i++)
      idoc_ids_push(ids, len, cap, slot->ids[i]);
    pthread_mutex_unlock(&tok->cache_lock);
    return;
  }
  pthread_mutex_unlock(&tok->cache_lock);
  size_t start = *len;
  idoc_bpe_piece(tok, (const uint8_t *)p, n, ids, len, cap);
  size_t k = *len - start; // <= n <= 96
  int32_t *copy = idoc_xmalloc((k ? k : 1) * sizeof *copy);
  memcpy(copy, *ids + start, k * sizeof *copy);
  pthread_mutex_lock(&tok->cache_lock);
  free(slot->ids);
  slot->ids = copy;
  slot->hash = h;
  slot->key_len = (uint8_t)n;
  slot->n_ids = (uint8_t)k;
  memcpy(slot->key, p, n);
  pthread_mutex_unlock(&tok->cache_lock);
}

int idoc_pretokenize_encode(idoc_tokenizer *tok, const char *s, size_t n, int32_t **ids,
                            size_t *len, size_t *cap) {
  if (!tok->re) {
    encode_piece(tok, s, n, ids, len, cap);
    return IDOC_OK;
  }
  pcre2_match_data *md = pcre2_match_data_create(1, NULL);
  IDOC_CHECK(md, "out of memory (pcre2 match data)");
  size_t off = 0, last = 0;
  int rc = IDOC_OK;
  while (off < n) {
    int r = tok->re_jit
                ? pcre2_jit_match(tok->re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, md, NULL)
                : PCRE2_ERROR_JIT_BADOPTION;
    if (r == PCRE2_ERROR_JIT_STACKLIMIT || r == PCRE2_ERROR_JIT_BADOPTION)
      r = pcre2_match(tok->re, (PCRE2_SPTR)s, n, off, PCRE2_NO_UTF_CHECK, md, NULL);
    if (r == PCRE2_ERROR_NOMATCH) break;
    if (r < 0) {
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(r, msg, sizeof msg);
      rc = idoc_set_error("%s: pre-tokenizer regex failed at byte %zu: %s", tok->name, off,
                          (char *)msg);
      break;
    }
    PCRE2_SIZE *ov = pcre2_get_ovector_pointer(md);
    size_t ms = ov[0], me = ov[1];
    if (me <= ms) { // an empty match (not possible with Qwen's regex): step one character
      size_t step = idoc_utf8_valid_len((const uint8_t *)s + ms, n - ms);
      off = ms + (step ? step : 1);
      continue;
    }
    // "Isolated": the text between matches is a piece too.
    if (ms > last) encode_piece(tok, s + last, ms - last, ids, len, cap);
    encode_piece(tok, s + ms, me - ms, ids, len, cap);
    last = off = me;
  }
  if (rc == IDOC_OK && last < n) encode_piece(tok, s + last, n - last, ids, len, cap);
  pcre2_match_data_free(md);
  return rc;
}

// ---- whole texts ----------------------------------------------------------------------------
// Leftmost-longest added token of one kind (normalized or not) at s[i..n), or -1.
static int added_at(const idoc_tokenizer *tok, const char *s, size_t n, size_t i, bool norm) {
  int best = -1;
  size_t best_len = 0;
  for (int a = 0; a < tok->n_added; a++) {
    const idoc_added_token *t = &tok->added[a];
    if (t->normalized == norm && t->match_len > best_len && t->match_len <= n - i &&
        t->match[0] == s[i] && !memcmp(t->match, s + i, t->match_len)) {
      best = a;
      best_len = t->match_len;
    }
  }
  return best;
}

// Splits s[0..n) at the added tokens of one kind: the text between them goes to `gap` (or
// is the next stage's input), each match becomes its id.
typedef int (*gap_fn)(idoc_tokenizer *tok, const char *s, size_t n, int32_t **ids, size_t *len,
                      size_t *cap);
static int split_added(idoc_tokenizer *tok, const char *s, size_t n, bool norm, gap_fn gap,
                       int32_t **ids, size_t *len, size_t *cap) {
  const bool *first = norm ? tok->added_first_byte_norm : tok->added_first_byte;
  size_t seg = 0, i = 0;
  int rc = IDOC_OK;
  while (i < n && rc == IDOC_OK) {
    int a = first[(uint8_t)s[i]] ? added_at(tok, s, n, i, norm) : -1;
    if (a < 0) {
      i++;
      continue;
    }
    if (i > seg) rc = gap(tok, s + seg, i - seg, ids, len, cap);
    idoc_ids_push(ids, len, cap, tok->added[a].id);
    i += tok->added[a].match_len;
    seg = i;
  }
  if (rc == IDOC_OK && n > seg) rc = gap(tok, s + seg, n - seg, ids, len, cap);
  return rc;
}

// A segment between raw-matched added tokens: normalized (NFC), then split at the
// normalized=true added tokens, the rest pre-tokenized and BPE-encoded -- the library's order.
static int encode_segment(idoc_tokenizer *tok, const char *s, size_t n, int32_t **ids, size_t *len,
                          size_t *cap) {
  if (n == 0) return IDOC_OK;
  bool need_nfc = false;
  if (tok->nfc) // code points below U+0300 are NFC and never combine with what precedes them
    for (size_t i = 0; i < n && !need_nfc; i++)
      need_nfc = (uint8_t)s[i] >= 0xCC;
  char *norm = NULL;
  size_t nn = n;
  if (need_nfc) {
    if (idoc_utf8_nfc(s, n, &norm, &nn)) return idoc_wrap_error("%s", tok->name);
    s = norm;
  }
  int rc = split_added(tok, s, nn, true, idoc_pretokenize_encode, ids, len, cap);
  free(norm);
  return rc;
}

int idoc_tokenize_append(idoc_tokenizer *tok, const char *text, size_t len, int32_t **ids,
                         size_t *n, size_t *cap) {
  char *fixed = NULL;
  if (!utf8_all_valid((const uint8_t *)text, len))
    text = fixed = idoc_utf8_sanitize(text, len, &len);
  int rc = split_added(tok, text, len, false, encode_segment, ids, n, cap);
  free(fixed);
  return rc;
}

int idoc_tokenize(idoc_tokenizer *tok, const char *text, size_t len, int32_t **ids, size_t *n) {
  size_t cap = 0;
  *ids = NULL;
  *n = 0;
  int rc = idoc_tokenize_append(tok, text, len, ids, n, &cap);
  if (rc != IDOC_OK) {
    free(*ids);
    *ids = NULL;
    *n = 0;
  }
  return rc;
}
