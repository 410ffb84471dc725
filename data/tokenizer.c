// idoc-requires: pcre2 utf8proc cjson
// Tokenizer objects: loading and saving tokenizer.json (cJSON), added tokens, decoding.
#include <cjson/cJSON.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer_internal.h"
#include "nn/util.h"

#define QWEN_STYLE_GPT2_REGEX                                                                      \
  "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+"

static size_t utf8_put(char *out, uint32_t cp) {
  if (cp < 0x80) {
    out[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (char)(0xC0 | (cp >> 6));
    out[1] = (char)(0x80 | (cp & 0x3F));
    return 2;
  }
  out[0] = (char)(0xE0 | (cp >> 12));
  out[1] = (char)(0x80 | ((cp >> 6) & 0x3F));
  out[2] = (char)(0x80 | (cp & 0x3F));
  return 3;
}

// The ByteLevel decoder: a token whose every character is a byte symbol becomes those bytes;
// any other token is passed through as its UTF-8 (as `tokenizers` does).
static void token_decoded_bytes(const char *s, size_t n, uint8_t **out, uint32_t *out_n) {
  uint8_t *b = idoc_xmalloc(n + 1);
  size_t k = 0, i = 0;
  bool all = true;
  while (i < n && all) {
    size_t l = idoc_utf8_valid_len((const uint8_t *)s + i, n - i);
    if (!l) {
      all = false;
      break;
    }
    uint32_t cp = (uint8_t)s[i];
    if (l == 2) cp = ((cp & 0x1F) << 6) | ((uint8_t)s[i + 1] & 0x3F);
    if (l >= 3) cp = 0x10000; // never a byte symbol
    int byte = idoc_byte_level_cp_to_byte(cp);
    if (byte < 0)
      all = false;
    else
      b[k++] = (uint8_t)byte;
    i += l;
  }
  if (!all) {
    memcpy(b, s, n);
    k = n;
  }
  *out = b;
  *out_n = (uint32_t)k;
}

static void grow_ids(idoc_tokenizer *tok, int32_t n_ids) {
  if (n_ids <= tok->n_ids) return;
  size_t old = (size_t)tok->n_ids, n = (size_t)n_ids;
  tok->tok_str = idoc_xrealloc(tok->tok_str, n * sizeof *tok->tok_str);
  tok->tok_bytes = idoc_xrealloc(tok->tok_bytes, n * sizeof *tok->tok_bytes);
  tok->tok_nbytes = idoc_xrealloc(tok->tok_nbytes, n * sizeof *tok->tok_nbytes);
  tok->tok_flags = idoc_xrealloc(tok->tok_flags, n);
  memset(tok->tok_str + old, 0, (n - old) * sizeof *tok->tok_str);
  memset(tok->tok_bytes + old, 0, (n - old) * sizeof *tok->tok_bytes);
  memset(tok->tok_nbytes + old, 0, (n - old) * sizeof *tok->tok_nbytes);
  memset(tok->tok_flags + old, 0, n - old);
  tok->n_ids = n_ids;
}

static void set_token(idoc_tokenizer *tok, int32_t id, const char *s, size_t n, uint8_t flags) {
  free(tok->tok_str[id]);
  free(tok->tok_bytes[id]);
  tok->tok_str[id] = idoc_xmalloc(n + 1);
  memcpy(tok->tok_str[id], s, n);
  tok->tok_str[id][n] = 0;
  token_decoded_bytes(s, n, &tok->tok_bytes[id], &tok->tok_nbytes[id]);
  tok->tok_flags[id] |= flags;
}

// What a normalized added token is matched as: its content through the normalizer (NFC), as
// the library builds its normalized trie.
static void set_match(idoc_tokenizer *tok, idoc_added_token *t) {
  if (t->match != t->content) free(t->match);
  t->match = t->content;
  t->match_len = t->len;
  char *m;
  size_t ml;
  if (t->normalized && tok->nfc && idoc_utf8_nfc(t->content, t->len, &m, &ml) == IDOC_OK) {
    t->match = m;
    t->match_len = ml;
  }
}

// Called once the normalizer is known (and after each added token).
static void refresh_added(idoc_tokenizer *tok) {
  memset(tok->added_first_byte, 0, sizeof tok->added_first_byte);
  memset(tok->added_first_byte_norm, 0, sizeof tok->added_first_byte_norm);
  for (int a = 0; a < tok->n_added; a++) {
    idoc_added_token *t = &tok->added[a];
    set_match(tok, t);
    if (t->match_len)
      (t->normalized ? tok->added_first_byte_norm : tok->added_first_byte)[(uint8_t)t->match[0]] =
          true;
  }
}

static void push_added(idoc_tokenizer *tok, const char *content, int32_t id, bool special,
                       bool loaded, bool normalized) {
  size_t n = strlen(content);
  int32_t prev = idoc_strmap_put(&tok->added_map, content, n, id);
  if (prev >= 0) { // the same content again: the later entry wins, as in HF
    for (int a = 0; a < tok->n_added; a++)
      if (tok->added[a].len == n && !memcmp(tok->added[a].content, content, n)) {
        tok->added[a].id = id;
        tok->added[a].special = special;
        tok->added[a].normalized = normalized;
      }
  } else {
    if (tok->n_added == tok->cap_added) {
      tok->cap_added = tok->cap_added ? tok->cap_added * 2 : 32;
      tok->added = idoc_xrealloc(tok->added, (size_t)tok->cap_added * sizeof *tok->added);
    }
    char *c = idoc_xstrdup(content);
    tok->added[tok->n_added++] = (idoc_added_token){c, n, id, special, loaded, normalized, c, n};
  }
  refresh_added(tok);
  grow_ids(tok, id + 1);
  set_token(tok, id, content, n, (uint8_t)(TOK_ADDED | (special ? TOK_SPECIAL : 0)));
  if (!special) tok->tok_flags[id] &= (uint8_t)~TOK_SPECIAL;
}

// ---- JSON helpers ---------------------------------------------------------------------------
static bool json_is_false_or_absent(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return !v || cJSON_IsNull(v) || cJSON_IsFalse(v);
}

static bool json_is_empty_string_or_null(const cJSON *o, const char *key) {
  const cJSON *v = cJSON_GetObjectItemCaseSensitive(o, key);
  return !v || cJSON_IsNull(v) || (cJSON_IsString(v) && v->valuestring[0] == 0);
}

static const char *json_type(const cJSON *o) {
  const cJSON *t = cJSON_GetObjectItemCaseSensitive(o, "type");
  return cJSON_IsString(t) ? t->valuestring : NULL;
}

static bool json_id(const cJSON *v, int32_t *id) {
  if (!cJSON_IsNumber(v) || !(v->valuedouble >= 0) || v->valuedouble > (1 << 30) ||
      v->valuedouble != floor(v->valuedouble))
    return false;
  *id = (int32_t)v->valuedouble;
  return true;
}

// ---- loading --------------------------------------------------------------------------------
static int load_model(idoc_tokenizer *tok, const cJSON *model) {
  const char *f = tok->name;
  if (!cJSON_IsObject(model)) return idoc_set_error("%s: model: missing or not an object", f);
  const char *type = json_type(model);
  if (type && strcmp(type, "BPE"))
    return idoc_set_error("%s: model.type: '%s' is not supported (only BPE)", f, type);
  const cJSON *dropout = cJSON_GetObjectItemCaseSensitive(model, "dropout");
  if (dropout && !cJSON_IsNull(dropout) && !(cJSON_IsNumber(dropout) && dropout->valuedouble == 0))
    return idoc_set_error("%s: model.dropout: BPE dropout is not supported", f);
  if (!json_is_empty_string_or_null(model, "unk_token"))
    return idoc_set_error("%s: model.unk_token: an unknown token is not supported", f);
  if (!json_is_false_or_absent(model, "byte_fallback"))
    return idoc_set_error("%s: model.byte_fallback: not supported", f);
  if (!json_is_empty_string_or_null(model, "continuing_subword_prefix"))
    return idoc_set_error("%s: model.continuing_subword_prefix: not supported", f);
  if (!json_is_empty_string_or_null(model, "end_of_word_suffix"))
    return idoc_set_error("%s: model.end_of_word_suffix: not supported", f);
  tok->ignore_merges = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(model, "ignore_merges"));

  const cJSON *vocab = cJSON_GetObjectItemCaseSensitive(model, "vocab");
  if (!cJSON_IsObject(vocab)) return idoc_set_error("%s: model.vocab: missing or not an object", f);
  int32_t max_id = -1, n_entries = 0;
  for (const cJSON *e = vocab->child; e; e = e->next) {
    int32_t id;
    if (!json_id(e, &id))
      return idoc_set_error("%s: model.vocab[\"%.64s\"]: id is not an integer in [0, 2^30]", f,
                            e->string);
    if (id > max_id) max_id = id;
    n_entries++;
  }
  if (n_entries == 0) return idoc_set_error("%s: model.vocab: empty", f);
  // Ids index arrays: a vocabulary whose ids leave huge gaps is refused before allocating.
  if (max_id >= 2 * n_entries + 65536)
    return idoc_set_error("%s: model.vocab: ids run to %d for %d entries (ids must be dense)", f,
                          max_id, n_entries);
  grow_ids(tok, max_id + 1);
  tok->n_model = max_id + 1;
  for (const cJSON *e = vocab->child; e; e = e->next) {
    int32_t id = (int32_t)e->valuedouble;
    size_t n = strlen(e->string);
    if (tok->tok_str[id])
      return idoc_set_error("%s: model.vocab[\"%.64s\"]: id %d is also used by \"%.64s\"", f,
                            e->string, id, tok->tok_str[id]);
    if (idoc_strmap_put(&tok->vocab, e->string, n, id) >= 0)
      return idoc_set_error("%s: model.vocab: duplicate token \"%.64s\"", f, e->string);
    set_token(tok, id, e->string, n, TOK_IN_MODEL);
  }

  uint32_t b2cp[256];
  idoc_byte_level_tables(b2cp);
  for (int b = 0; b < 256; b++) {
    char sym[4];
    size_t l = utf8_put(sym, b2cp[b]);
    tok->byte_id[b] = idoc_strmap_get(&tok->vocab, sym, l);
  }

  const cJSON *merges = cJSON_GetObjectItemCaseSensitive(model, "merges");
  if (!cJSON_IsArray(merges)) return idoc_set_error("%s: model.merges: missing or not an array", f);
  idoc_u64map_init(&tok->merges, (size_t)cJSON_GetArraySize(merges));
  int64_t rank = 0;
  char *buf = NULL;
  size_t buf_cap = 0;
  for (const cJSON *m = merges->child; m; m = m->next, rank++) {
    const char *a, *b;
    size_t la, lb;
    if (cJSON_IsString(m)) { // "a b"
      const char *s = m->valuestring, *sp = strchr(s, ' ');
      if (!sp || strchr(sp + 1, ' ') || sp == s || !sp[1]) {
        free(buf);
        return idoc_set_error("%s: model.merges[%lld]: \"%.64s\" is not two tokens separated by "
                              "one space",
                              f, (long long)rank, s);
      }
      a = s, la = (size_t)(sp - s), b = sp + 1, lb = strlen(b);
    } else if (cJSON_IsArray(m) && cJSON_GetArraySize(m) == 2 && cJSON_IsString(m->child) &&
               cJSON_IsString(m->child->next)) {
      a = m->child->valuestring, la = strlen(a);
      b = m->child->next->valuestring, lb = strlen(b);
    } else {
      free(buf);
      return idoc_set_error("%s: model.merges[%lld]: not a \"a b\" string or [\"a\", \"b\"] pair",
                            f, (long long)rank);
    }
    int32_t ia = idoc_strmap_get(&tok->vocab, a, la), ib = idoc_strmap_get(&tok->vocab, b, lb);
    if (la + lb + 1 > buf_cap) buf = idoc_xrealloc(buf, buf_cap = 2 * (la + lb + 1));
    memcpy(buf, a, la);
    memcpy(buf + la, b, lb);
    int32_t inew = idoc_strmap_get(&tok->vocab, buf, la + lb);
    if (ia < 0 || ib < 0 || inew < 0) {
      int r = idoc_set_error("%s: model.merges[%lld]: token \"%.*s\" is not in model.vocab", f,
                             (long long)rank,
                             ia < 0   ? (int)la
                             : ib < 0 ? (int)lb
                                      : (int)(la + lb),
                             ia < 0   ? a
                             : ib < 0 ? b
                                      : buf);
      free(buf);
      return r;
    }
    // A repeated pair keeps its last rank (HF builds a map from the list).
    idoc_u64map_put(&tok->merges, (uint64_t)(uint32_t)ia << 32 | (uint32_t)ib,
                    rank << 32 | (int64_t)(uint32_t)inew);
  }
  free(buf);
  return IDOC_OK;
}

static int load_added(idoc_tokenizer *tok, const cJSON *added) {
  const char *f = tok->name;
  if (!added || cJSON_IsNull(added)) return IDOC_OK;
  if (!cJSON_IsArray(added)) return idoc_set_error("%s: added_tokens: not an array", f);
  int i = 0;
  for (const cJSON *t = added->child; t; t = t->next, i++) {
    const cJSON *content = cJSON_GetObjectItemCaseSensitive(t, "content");
    int32_t id;
    if (!json_id(cJSON_GetObjectItemCaseSensitive(t, "id"), &id))
      return idoc_set_error("%s: added_tokens[%d].id: missing or not an integer in [0, 2^30]", f,
                            i);
    if (!cJSON_IsString(content) || !content->valuestring[0])
      return idoc_set_error("%s: added_tokens[%d].content: missing or empty", f, i);
    static const char *const unsupported[] = {"lstrip", "rstrip", "single_word"};
    for (int k = 0; k < 3; k++)
      if (!json_is_false_or_absent(t, unsupported[k]))
        return idoc_set_error("%s: added_tokens[%d].%s: only false is supported", f, i,
                              unsupported[k]);
    if (id >= 2 * tok->n_ids + 65536)
      return idoc_set_error("%s: added_tokens[%d].id: %d lies far past the %d ids of the "
                            "vocabulary (ids must be dense)",
                            f, i, id, tok->n_ids);
    bool special = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(t, "special"));
    // normalized: matched after the normalizer runs (the library's default: !special).
    const cJSON *nz = cJSON_GetObjectItemCaseSensitive(t, "normalized");
    if (nz && !cJSON_IsBool(nz))
      return idoc_set_error("%s: added_tokens[%d].normalized: expected true or false", f, i);
    bool normalized = nz ? cJSON_IsTrue(nz) : !special;
    push_added(tok, content->valuestring, id, special, true, normalized);
  }
  return IDOC_OK;
}

static int load_normalizer(idoc_tokenizer *tok, const cJSON *n) {
  if (!n || cJSON_IsNull(n)) return IDOC_OK;
  const char *type = json_type(n);
  if (type && !strcmp(type, "NFC")) {
    tok->nfc = true;
    return IDOC_OK;
  }
  if (type && !strcmp(type, "Sequence")) {
    const cJSON *list = cJSON_GetObjectItemCaseSensitive(n, "normalizers");
    if (cJSON_IsArray(list)) {
      int i = 0;
      for (const cJSON *e = list->child; e; e = e->next, i++) {
        const char *t = json_type(e);
        if (!t || strcmp(t, "NFC"))
          return idoc_set_error("%s: normalizer.normalizers[%d].type: '%s' is not supported "
                                "(only NFC)",
                                tok->name, i, t ? t : "?");
        tok->nfc = true;
      }
      return IDOC_OK;
    }
  }
  return idoc_set_error("%s: normalizer.type: '%s' is not supported (only NFC)", tok->name,
                        type ? type : "?");
}

static int check_byte_level(idoc_tokenizer *tok, const cJSON *o, const char *key, bool want_regex) {
  if (!json_is_false_or_absent(o, "add_prefix_space"))
    return idoc_set_error("%s: %s.add_prefix_space: only false is supported", tok->name, key);
  const cJSON *ur = cJSON_GetObjectItemCaseSensitive(o, "use_regex");
  bool use_regex = !ur || cJSON_IsTrue(ur); // the library's default is true
  if (use_regex != want_regex)
    return idoc_set_error("%s: %s.use_regex: must be %s here", tok->name, key,
                          want_regex ? "true" : "false");
  return IDOC_OK;
}

static int load_pre_tokenizer(idoc_tokenizer *tok, const cJSON *p) {
  const char *f = tok->name;
  const char *type = p ? json_type(p) : NULL;
  if (!type) return idoc_set_error("%s: pre_tokenizer: missing (a ByteLevel one is required)", f);
  if (!strcmp(type, "ByteLevel")) { // GPT-2 style: ByteLevel with its own regex
    if (check_byte_level(tok, p, "pre_tokenizer", true)) return IDOC_ERR;
    return idoc_tokenizer_compile_regex(tok, QWEN_STYLE_GPT2_REGEX, false, "pre_tokenizer");
  }
  const cJSON *list = cJSON_GetObjectItemCaseSensitive(p, "pretokenizers");
  if (strcmp(type, "Sequence") || !cJSON_IsArray(list) || cJSON_GetArraySize(list) != 2)
    return idoc_set_error("%s: pre_tokenizer: expected Sequence[Split, ByteLevel] or ByteLevel, "
                          "got %s",
                          f, type);
  const cJSON *split = list->child, *bl = split->next;
  const char *st = json_type(split), *bt = json_type(bl);
  if (!st || strcmp(st, "Split"))
    return idoc_set_error("%s: pre_tokenizer.pretokenizers[0].type: expected Split", f);
  if (!bt || strcmp(bt, "ByteLevel"))
    return idoc_set_error("%s: pre_tokenizer.pretokenizers[1].type: expected ByteLevel", f);
  if (check_byte_level(tok, bl, "pre_tokenizer.pretokenizers[1]", false)) return IDOC_ERR;
  const cJSON *beh = cJSON_GetObjectItemCaseSensitive(split, "behavior");
  if (!cJSON_IsString(beh) || strcmp(beh->valuestring, "Isolated"))
    return idoc_set_error("%s: pre_tokenizer.pretokenizers[0].behavior: only Isolated is "
                          "supported",
                          f);
  if (!json_is_false_or_absent(split, "invert"))
    return idoc_set_error("%s: pre_tokenizer.pretokenizers[0].invert: only false is supported", f);
  const cJSON *pat = cJSON_GetObjectItemCaseSensitive(split, "pattern");
  const cJSON *re = cJSON_GetObjectItemCaseSensitive(pat, "Regex");
  const cJSON *lit = cJSON_GetObjectItemCaseSensitive(pat, "String");
  if (cJSON_IsString(re))
    return idoc_tokenizer_compile_regex(tok, re->valuestring, false,
                                        "pre_tokenizer.pretokenizers[0].pattern.Regex");
  if (cJSON_IsString(lit) && lit->valuestring[0])
    return idoc_tokenizer_compile_regex(tok, lit->valuestring, true,
                                        "pre_tokenizer.pretokenizers[0].pattern.String");
  return idoc_set_error("%s: pre_tokenizer.pretokenizers[0].pattern: needs a Regex or String", f);
}

static int load_doc(idoc_tokenizer *tok, const cJSON *doc) {
  const char *f = tok->name;
  if (!cJSON_IsObject(doc)) return idoc_set_error("%s: not a JSON object", f);
  if (load_model(tok, cJSON_GetObjectItemCaseSensitive(doc, "model"))) return IDOC_ERR;
  if (load_added(tok, cJSON_GetObjectItemCaseSensitive(doc, "added_tokens"))) return IDOC_ERR;
  if (load_normalizer(tok, cJSON_GetObjectItemCaseSensitive(doc, "normalizer"))) return IDOC_ERR;
  refresh_added(tok); // normalized added tokens are matched in normalized form
  if (load_pre_tokenizer(tok, cJSON_GetObjectItemCaseSensitive(doc, "pre_tokenizer")))
    return IDOC_ERR;
  const cJSON *dec = cJSON_GetObjectItemCaseSensitive(doc, "decoder");
  const char *dt = dec ? json_type(dec) : NULL;
  if (!dt || strcmp(dt, "ByteLevel"))
    return idoc_set_error("%s: decoder.type: '%s' is not supported (only ByteLevel)", f,
                          dt ? dt : "missing");
  const cJSON *post = cJSON_GetObjectItemCaseSensitive(doc, "post_processor");
  const char *pt = post ? json_type(post) : NULL;
  if (post && !cJSON_IsNull(post) && (!pt || strcmp(pt, "ByteLevel")))
    return idoc_set_error("%s: post_processor.type: '%s' is not supported (null or ByteLevel; "
                          "no tokens are added automatically)",
                          f, pt ? pt : "?");
  for (int b = 0; b < 256; b++)
    if (tok->byte_id[b] < 0)
      return idoc_set_error("%s: model.vocab: lacks the byte-level symbol of byte 0x%02X", f, b);
  return IDOC_OK;
}

idoc_tokenizer *idoc_tokenizer_load_json(const char *json, size_t len, const char *name) {
  idoc_tokenizer *tok = idoc_xcalloc(1, sizeof *tok);
  tok->name = idoc_xstrdup(name ? name : "tokenizer.json");
  tok->json_text = idoc_xmalloc(len + 1);
  memcpy(tok->json_text, json, len);
  tok->json_text[len] = 0;
  tok->json_len = len;
  idoc_strmap_init(&tok->vocab);
  idoc_strmap_init(&tok->added_map);
  pthread_mutex_init(&tok->cache_lock, NULL);
  tok->cache = idoc_xcalloc(IDOC_TOK_CACHE_SLOTS, sizeof *tok->cache);
  cJSON *doc = cJSON_ParseWithLength(json, len);
  int rc;
  if (!doc) {
    const char *at = cJSON_GetErrorPtr();
    size_t off = at && at >= json && at <= json + len ? (size_t)(at - json) : 0;
    rc = idoc_set_error("%s: invalid JSON near byte %zu", tok->name, off);
  } else {
    rc = load_doc(tok, doc);
  }
  cJSON_Delete(doc);
  if (rc != IDOC_OK) {
    idoc_tokenizer_free(tok);
    return NULL;
  }
  return tok;
}

idoc_tokenizer *idoc_tokenizer_load(const char *path) {
  char *data;
  size_t n;
  if (idoc_read_file(path, &data, &n)) return NULL;
  idoc_tokenizer *tok = idoc_tokenizer_load_json(data, n, path);
  free(data);
  return tok;
}

void idoc_tokenizer_free(idoc_tokenizer *tok) {
  if (!tok) return;
  for (int32_t i = 0; i < tok->n_ids; i++) {
    free(tok->tok_str[i]);
    free(tok->tok_bytes[i]);
  }
  free(tok->tok_str);
  free(tok->tok_bytes);
  free(tok->tok_nbytes);
  free(tok->tok_flags);
  for (int a = 0; a < tok->n_added; a++) {
    if (tok->added[a].match != tok->added[a].content) free(tok->added[a].match);
    free(tok->added[a].content);
  }
  free(tok->added);
  idoc_strmap_free(&tok->vocab);
  idoc_strmap_free(&tok->added_map);
  idoc_u64map_free(&tok->merges);
  if (tok->re) pcre2_code_free(tok->re);
  if (tok->cache)
    for (int i = 0; i < IDOC_TOK_CACHE_SLOTS; i++)
      free(tok->cache[i].ids);
  free(tok->cache);
  pthread_mutex_destroy(&tok->cache_lock);
  free(tok->json_text);
  free(tok->name);
  free(tok);
}

// ---- lookups --------------------------------------------------------------------------------
int32_t idoc_tokenizer_n_ids(const idoc_tokenizer *tok) { return tok->n_ids; }

int32_t idoc_token_to_id(const idoc_tokenizer *tok, const char *token) {
  size_t n = strlen(token);
  int32_t id = idoc_strmap_get(&tok->added_map, token, n);
  return id >= 0 ? id : idoc_strmap_get(&tok->vocab, token, n);
}

const char *idoc_id_to_token(const idoc_tokenizer *tok, int32_t id) {
  return id >= 0 && id < tok->n_ids ? tok->tok_str[id] : NULL;
}

bool idoc_token_is_special(const idoc_tokenizer *tok, int32_t id) {
  return id >= 0 && id < tok->n_ids && (tok->tok_flags[id] & TOK_SPECIAL);
}

bool idoc_token_is_added(const idoc_tokenizer *tok, int32_t id) {
  return id >= 0 && id < tok->n_ids && (tok->tok_flags[id] & TOK_ADDED);
}

const uint8_t *idoc_token_bytes(const idoc_tokenizer *tok, int32_t id, size_t *len) {
  if (id < 0 || id >= tok->n_ids || !tok->tok_str[id]) return NULL;
  if (len) *len = tok->tok_nbytes[id];
  return tok->tok_bytes[id];
}

// ---- added tokens and saving ----------------------------------------------------------------
int32_t idoc_tokenizer_add_token(idoc_tokenizer *tok, const char *content, bool special) {
  if (!content || !content[0]) {
    idoc_set_error("%s: cannot add an empty token", tok->name);
    return -1;
  }
  int32_t id = idoc_strmap_get(&tok->added_map, content, strlen(content));
  if (id >= 0) return id;
  id = idoc_strmap_get(&tok->vocab, content, strlen(content));
  if (id < 0) id = tok->n_ids;
  push_added(tok, content, id, special, false, false);
  return id;
}

int idoc_tokenizer_save(const idoc_tokenizer *tok, const char *path) {
  cJSON *doc = cJSON_ParseWithLength(tok->json_text, tok->json_len);
  if (!doc) return idoc_set_error("%s: cannot re-parse the loaded JSON", tok->name);
  cJSON *added = cJSON_GetObjectItemCaseSensitive(doc, "added_tokens");
  if (!cJSON_IsArray(added)) {
    cJSON_DeleteItemFromObjectCaseSensitive(doc, "added_tokens");
    added = cJSON_AddArrayToObject(doc, "added_tokens");
  }
  for (int a = 0; a < tok->n_added; a++) {
    const idoc_added_token *t = &tok->added[a];
    if (t->loaded) continue;
    cJSON *o = cJSON_CreateObject();
    cJSON_AddNumberToObject(o, "id", t->id);
    cJSON_AddStringToObject(o, "content", t->content);
    cJSON_AddFalseToObject(o, "single_word");
    cJSON_AddFalseToObject(o, "lstrip");
    cJSON_AddFalseToObject(o, "rstrip");
    cJSON_AddFalseToObject(o, "normalized");
    cJSON_AddBoolToObject(o, "special", t->special);
    cJSON_AddItemToArray(added, o);
  }
  char *text = cJSON_PrintUnformatted(doc);
  cJSON_Delete(doc);
  IDOC_CHECK(text, "out of memory printing %s", path);
  int rc = idoc_write_file_atomic(path, text, strlen(text));
  cJSON_free(text);
  return rc;
}

// ---- decoding -------------------------------------------------------------------------------
int idoc_detokenize(const idoc_tokenizer *tok, const int32_t *ids, size_t n, bool skip_special,
                    char **out, size_t *out_len) {
  size_t total = 0;
  for (size_t i = 0; i < n; i++) {
    if (ids[i] < 0 || ids[i] >= tok->n_ids || !tok->tok_str[ids[i]])
      return idoc_set_error("%s: id %d at position %zu is not a token", tok->name, ids[i], i);
    total += tok->tok_nbytes[ids[i]];
  }
  uint8_t *raw = idoc_xmalloc(total + 1);
  size_t k = 0;
  for (size_t i = 0; i < n; i++) {
    if (skip_special && (tok->tok_flags[ids[i]] & TOK_SPECIAL)) continue;
    memcpy(raw + k, tok->tok_bytes[ids[i]], tok->tok_nbytes[ids[i]]);
    k += tok->tok_nbytes[ids[i]];
  }
  char *s = idoc_xmalloc(3 * k + 1);
  size_t sl = 0;
  idoc_utf8_lossy_append(raw, k, s, &sl, false);
  free(raw);
  *out = s;
  if (out_len) *out_len = sl;
  return IDOC_OK;
}

void idoc_stream_decoder_init(idoc_stream_decoder *d, const idoc_tokenizer *tok,
                              bool skip_special) {
  memset(d, 0, sizeof *d);
  d->tok = tok;
  d->skip_special = skip_special;
}

static const char *stream_emit(idoc_stream_decoder *d, const uint8_t *b, size_t n, bool final,
                               size_t *len) {
  size_t total = (size_t)d->n_pending + n;
  uint8_t stack[256], *in = total <= sizeof stack ? stack : idoc_xmalloc(total);
  memcpy(in, d->pending, (size_t)d->n_pending);
  if (n) memcpy(in + d->n_pending, b, n);
  if (3 * total + 1 > d->buf_cap) {
    d->buf_cap = 3 * total + 64;
    d->buf = idoc_xrealloc(d->buf, d->buf_cap);
  }
  size_t k = 0;
  size_t tail = idoc_utf8_lossy_append(in, total, d->buf, &k, !final);
  memcpy(d->pending, in + total - tail, tail); // tail <= 3: an incomplete valid prefix
  d->n_pending = (int)tail;
  if (in != stack) free(in);
  if (len) *len = k;
  return d->buf;
}

const char *idoc_stream_decoder_push(idoc_stream_decoder *d, int32_t id, size_t *len) {
  const idoc_tokenizer *tok = d->tok;
  if (id < 0 || id >= tok->n_ids || !tok->tok_str[id]) {
    idoc_set_error("%s: id %d is not a token", tok->name, id);
    return NULL;
  }
  if (d->skip_special && (tok->tok_flags[id] & TOK_SPECIAL))
    return stream_emit(d, NULL, 0, false, len);
  return stream_emit(d, tok->tok_bytes[id], tok->tok_nbytes[id], false, len);
}

const char *idoc_stream_decoder_flush(idoc_stream_decoder *d, size_t *len) {
  return stream_emit(d, NULL, 0, true, len);
}

void idoc_stream_decoder_free(idoc_stream_decoder *d) {
  free(d->buf);
  memset(d, 0, sizeof *d);
}
