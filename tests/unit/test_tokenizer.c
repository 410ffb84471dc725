// idoc-requires: pcre2 utf8proc cjson
// The tokenizer against the Hugging Face `tokenizers` library: the fixture tokenizer (configured
// like Qwen2, made by scripts/make_tokenizer_fixtures.py) must give the library's ids on every
// held-out string, decode back to NFC(text), and stream-decode to the same text.
#include <cjson/cJSON.h>
#include <pthread.h>
#include <string.h>
#include <unistd.h>

#include "cli/commands.h"
#include "data/strmap.h"
#include "data/tokenizer.h"
#include "nn/util.h"
#include "tests/test.h"

#define FIXTURE "tests/fixtures/tokenizer/tokenizer.json"
#define CASES "tests/fixtures/tokenizer/cases.jsonl"

static int n_cases_checked;

static void check_case(idoc_tokenizer *tok, const char *text, size_t tlen, const cJSON *want,
                       const cJSON *dec_skip, int line) {
  int32_t *ids;
  size_t n;
  T_CHECK(idoc_tokenize(tok, text, tlen, &ids, &n) == IDOC_OK, "line %d: %s", line,
          idoc_last_error());
  size_t nw = (size_t)cJSON_GetArraySize(want);
  bool same = n == nw;
  size_t i = 0;
  for (const cJSON *w = want->child; same && w; w = w->next, i++)
    same = ids[i] == w->valueint;
  T_CHECK(same, "line %d: ids differ (got %zu ids, want %zu)", line, n, nw);
  if (!same) {
    fprintf(stderr, "  got :");
    for (size_t k = 0; k < n && k < 40; k++)
      fprintf(stderr, " %d", ids[k]);
    fprintf(stderr, "\n  want:");
    for (const cJSON *w = want->child; w; w = w->next)
      fprintf(stderr, " %d", w->valueint);
    fprintf(stderr, "\n");
  }
  // decode(encode(s)) == NFC(s)
  char *nfc, *dec;
  size_t nfc_len, dec_len;
  T_CHECK(idoc_utf8_nfc(text, tlen, &nfc, &nfc_len) == IDOC_OK, "line %d: nfc", line);
  T_CHECK(idoc_detokenize(tok, ids, n, false, &dec, &dec_len) == IDOC_OK, "line %d", line);
  T_CHECK(dec_len == nfc_len && !memcmp(dec, nfc, nfc_len), "line %d: decode != NFC(text)", line);
  free(dec);
  // skip_special_tokens=True as the library decodes it (only stored when ids hold a special)
  T_CHECK(idoc_detokenize(tok, ids, n, true, &dec, &dec_len) == IDOC_OK, "line %d", line);
  if (dec_skip)
    T_CHECK(!strcmp(dec, dec_skip->valuestring), "line %d: skip-special decode differs", line);
  // Streaming, one id at a time, gives the same text and never a broken character.
  idoc_stream_decoder sd;
  idoc_stream_decoder_init(&sd, tok, true);
  char *acc = idoc_xmalloc(dec_len + 64);
  size_t acc_len = 0;
  bool ok = true;
  for (size_t k = 0; k <= n; k++) {
    size_t l;
    const char *piece =
        k < n ? idoc_stream_decoder_push(&sd, ids[k], &l) : idoc_stream_decoder_flush(&sd, &l);
    if (!piece || acc_len + l > dec_len) {
      ok = false;
      break;
    }
    size_t v = 0; // every emitted piece is whole UTF-8
    while (v < l) {
      size_t cl = idoc_utf8_valid_len((const uint8_t *)piece + v, l - v);
      if (!cl) break;
      v += cl;
    }
    ok = ok && v == l;
    memcpy(acc + acc_len, piece, l);
    acc_len += l;
  }
  T_CHECK(ok && acc_len == dec_len && !memcmp(acc, dec, dec_len), "line %d: stream decode", line);
  idoc_stream_decoder_free(&sd);
  free(acc);
  free(dec);
  free(nfc);
  free(ids);
  n_cases_checked++;
}

static void test_fixture_cases(idoc_tokenizer *tok) {
  char *data;
  size_t n;
  if (idoc_read_file(CASES, &data, &n)) {
    T_CHECK(0, "%s", idoc_last_error());
    return;
  }
  int line = 0;
  for (char *p = data, *nl; p < data + n; p = nl + 1) {
    nl = memchr(p, '\n', (size_t)(data + n - p));
    if (!nl) nl = data + n;
    line++;
    cJSON *rec = cJSON_ParseWithLength(p, (size_t)(nl - p));
    const cJSON *text = cJSON_GetObjectItemCaseSensitive(rec, "text");
    const cJSON *ids = cJSON_GetObjectItemCaseSensitive(rec, "ids");
    T_CHECK(cJSON_IsString(text) && cJSON_IsArray(ids), "%s:%d: bad record", CASES, line);
    if (cJSON_IsString(text) && cJSON_IsArray(ids)) {
      // cJSON strings stop at NUL: texts holding one are stored as "text_hex" too.
      const cJSON *hex = cJSON_GetObjectItemCaseSensitive(rec, "text_hex");
      char *buf = NULL;
      size_t tl = strlen(text->valuestring);
      if (cJSON_IsString(hex)) {
        tl = strlen(hex->valuestring) / 2;
        buf = idoc_xmalloc(tl + 1);
        for (size_t i = 0; i < tl; i++) {
          unsigned v;
          sscanf(hex->valuestring + 2 * i, "%2x", &v);
          buf[i] = (char)v;
        }
      }
      check_case(tok, buf ? buf : text->valuestring, tl, ids,
                 cJSON_GetObjectItemCaseSensitive(rec, "dec_skip"), line);
      free(buf);
    }
    cJSON_Delete(rec);
  }
  free(data);
  printf("fixture cases checked: %d of %d lines\n", n_cases_checked, line);
  T_CHECK(n_cases_checked == line && n_cases_checked >= 2000, "only %d cases", n_cases_checked);
}

// ids 0..255 are the byte symbols in GPT-2's bytes_to_unicode order, as in Qwen's vocabulary.
static void test_byte_map(idoc_tokenizer *tok) {
  T_CHECK(idoc_token_to_id(tok, "\xC4\xA0") == 220, "'Ġ' = %d", idoc_token_to_id(tok, "\xC4\xA0"));
  T_CHECK(idoc_token_to_id(tok, "\xC4\x8A") == 198, "'Ċ' = %d", idoc_token_to_id(tok, "\xC4\x8A"));
  T_CHECK(idoc_token_to_id(tok, "0") == 15, "'0'");
  T_CHECK(idoc_token_to_id(tok, "2") == 17, "'2'");
  T_CHECK(idoc_token_to_id(tok, "!") == 0 && idoc_token_to_id(tok, "~") == 93, "'!', '~'");
  // Python: bs = [33..126, 161..172, 174..255] + the rest in increasing order.
  int bs[256], k = 0;
  for (int b = 33; b <= 126; b++)
    bs[k++] = b;
  for (int b = 161; b <= 172; b++)
    bs[k++] = b;
  for (int b = 174; b <= 255; b++)
    bs[k++] = b;
  for (int b = 0; b < 256; b++)
    if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) bs[k++] = b;
  bool ok = k == 256;
  for (int id = 0; id < 256 && ok; id++) {
    size_t l;
    const uint8_t *b = idoc_token_bytes(tok, id, &l);
    ok = b && l == 1 && b[0] == bs[id];
    int32_t *ids;
    size_t n;
    char c = (char)bs[id];
    // A lone byte >= 0x80 is invalid UTF-8 and becomes U+FFFD; only ASCII round-trips as text.
    if (bs[id] < 0x80) {
      idoc_tokenize(tok, &c, 1, &ids, &n);
      ok = ok && n == 1 && ids[0] == id;
      free(ids);
    }
  }
  T_CHECK(ok, "byte symbol ids follow bytes_to_unicode order");
}

static void test_added_tokens(idoc_tokenizer *tok) {
  // Qwen's 22 added tokens sit after the 4000 model tokens, in Qwen's order.
  T_CHECK(idoc_token_to_id(tok, "<|endoftext|>") == 4000, "endoftext");
  T_CHECK(idoc_token_to_id(tok, "<|im_start|>") == 4001, "im_start");
  T_CHECK(idoc_token_to_id(tok, "<|image_pad|>") == 4012, "image_pad");
  T_CHECK(idoc_token_to_id(tok, "<|file_sep|>") == 4021, "file_sep");
  T_CHECK(idoc_token_is_special(tok, 4002) && !idoc_token_is_special(tok, 4014),
          "im_end special, <tool_call> not");
  T_CHECK(idoc_tokenizer_n_ids(tok) == 4022, "n_ids %d", idoc_tokenizer_n_ids(tok));
  int32_t mis = idoc_tokenizer_add_token(tok, "<|mis|>", true);
  int32_t art = idoc_tokenizer_add_token(tok, "<|art|>", true);
  T_CHECK(mis == 4022 && art == 4023, "task tokens at the next free ids: %d %d", mis, art);
  T_CHECK(idoc_tokenizer_add_token(tok, "<|mis|>", true) == mis, "adding twice keeps the id");
  T_CHECK(idoc_tokenizer_add_token(tok, "the", false) == idoc_token_to_id(tok, "the"),
          "a vocab token keeps its id");
  T_CHECK(idoc_tokenizer_add_token(tok, "", true) == -1, "empty token refused");
  const char *text = "Misalignment Locations: <|mis|>\nArtifact Locations: <|art|>";
  int32_t *ids;
  size_t n;
  idoc_tokenize(tok, text, strlen(text), &ids, &n);
  int found = 0;
  for (size_t i = 0; i < n; i++)
    found += (ids[i] == mis) + 2 * (ids[i] == art);
  T_CHECK(found == 3, "task tokens matched whole in text");
  char *dec;
  idoc_detokenize(tok, ids, n, false, &dec, NULL);
  T_CHECK(!strcmp(dec, text), "round trip with task tokens");
  free(dec);
  idoc_detokenize(tok, ids, n, true, &dec, NULL);
  T_CHECK(!strcmp(dec, "Misalignment Locations: \nArtifact Locations: "), "skip special: '%s'",
          dec);
  free(dec);

  // Saved with the tokens, and the saved file loads with the same ids.
  const char *path = "build_test_tokenizer_saved.json";
  T_CHECK(idoc_tokenizer_save(tok, path) == IDOC_OK, "%s", idoc_last_error());
  idoc_tokenizer *t2 = idoc_tokenizer_load(path);
  T_CHECK(t2, "%s", idoc_last_error());
  if (t2) {
    T_CHECK(idoc_token_to_id(t2, "<|mis|>") == mis && idoc_token_to_id(t2, "<|art|>") == art,
            "reloaded task tokens");
    T_CHECK(idoc_token_is_special(t2, mis), "reloaded special flag");
    int32_t *ids2;
    size_t n2;
    idoc_tokenize(t2, text, strlen(text), &ids2, &n2);
    T_CHECK(n2 == n && !memcmp(ids, ids2, n * sizeof *ids), "same ids after reload");
    free(ids2);
    idoc_tokenizer_free(t2);
  }
  remove(path);
  free(ids);
}

static void test_invalid_utf8(idoc_tokenizer *tok) {
  // Invalid bytes become U+FFFD (one per maximal invalid subpart) before tokenizing.
  const char bad[] = "ab\xC3(\xE2\x82\xF0\x9F\x98\xED\xA0\x80z\xFF";
  int32_t *a, *b;
  size_t na, nb;
  T_CHECK(idoc_tokenize(tok, bad, sizeof bad - 1, &a, &na) == IDOC_OK, "invalid utf8");
  const char fixed[] = "ab\xEF\xBF\xBD(\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD\xEF\xBF\xBD"
                       "z\xEF\xBF\xBD";
  size_t sl;
  char *s = idoc_utf8_sanitize(bad, sizeof bad - 1, &sl);
  T_CHECK(sl == sizeof fixed - 1 && !memcmp(s, fixed, sl), "maximal-subpart replacement");
  free(s);
  idoc_tokenize(tok, fixed, sizeof fixed - 1, &b, &nb);
  T_CHECK(na == nb && !memcmp(a, b, na * sizeof *a), "same ids as the repaired text");
  free(a);
  free(b);
  // Decoding a lone continuation byte token gives U+FFFD; streaming holds a split character.
  int32_t e9 = idoc_token_to_id(tok, "\xC3\xA9"); // the symbol of byte 0xE9
  int32_t ids[] = {e9};
  char *d;
  idoc_detokenize(tok, ids, 1, false, &d, NULL);
  T_CHECK(!strcmp(d, "\xEF\xBF\xBD"), "lone byte decodes to U+FFFD");
  free(d);
  // "€" = E2 82 AC pushed byte by byte: nothing until the last byte.
  int32_t e2 = idoc_token_to_id(tok, "\xC3\xA2"), x82 = idoc_token_to_id(tok, "\xC4\xA4"),
          xac = idoc_token_to_id(tok, "\xC2\xAC");
  size_t b0, b1, b2;
  idoc_stream_decoder sd;
  idoc_stream_decoder_init(&sd, tok, false);
  idoc_stream_decoder_push(&sd, e2, &b0);
  idoc_stream_decoder_push(&sd, x82, &b1);
  const char *last = idoc_stream_decoder_push(&sd, xac, &b2);
  T_CHECK(e2 >= 0 && x82 >= 0 && xac >= 0 && b0 == 0 && b1 == 0 && b2 == 3 &&
              !memcmp(last, "\xE2\x82\xAC", 3),
          "stream holds a split character");
  idoc_stream_decoder_push(&sd, e2, &b0);
  const char *fl = idoc_stream_decoder_flush(&sd, &b1);
  T_CHECK(b0 == 0 && b1 == 3 && !memcmp(fl, "\xEF\xBF\xBD", 3), "flush repairs the tail");
  T_CHECK(idoc_stream_decoder_push(&sd, -5, &b0) == NULL, "bad id refused");
  idoc_stream_decoder_free(&sd);
  int32_t badids[] = {1, 99999};
  T_CHECK(idoc_detokenize(tok, badids, 2, false, &d, NULL) == IDOC_ERR &&
              strstr(idoc_last_error(), "position 1"),
          "detokenize names the bad position");
}

// Reference BPE straight from the definition: repeatedly merge the lowest-ranked adjacent pair
// (leftmost on ties) over symbol strings, O(n^2). Checks the heap version on long words.
typedef struct {
  char **sym;
  size_t n;
} sym_list;

static void test_against_naive_bpe(idoc_tokenizer *tok) {
  char *data;
  size_t len;
  if (idoc_read_file(FIXTURE, &data, &len)) return;
  cJSON *doc = cJSON_ParseWithLength(data, len);
  cJSON *merges = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(doc, "model"), "merges");
  idoc_strmap ranks;
  idoc_strmap_init(&ranks);
  int32_t r = 0;
  for (cJSON *m = merges->child; m; m = m->next, r++) {
    char buf[512];
    if (cJSON_IsArray(m))
      snprintf(buf, sizeof buf, "%s %s", m->child->valuestring, m->child->next->valuestring);
    else
      snprintf(buf, sizeof buf, "%s", m->valuestring);
    idoc_strmap_put(&ranks, buf, strlen(buf), r);
  }
  // Words of letters only (one pre-token each) from a small alphabet, so merges apply a lot.
  static const char *const alphabets[] = {"etaoinshrdlucmfwyp", "\xD0\xB0\xD0\xB5\xD0\xBE\xD0\xBD"};
  idoc_rng rng;
  idoc_rng_seed(&rng, 7);
  int mismatches = 0, words = 0;
  for (int t = 0; t < 60; t++) {
    size_t n = t < 40 ? 1 + idoc_rng_below(&rng, 64) : 300 + idoc_rng_below(&rng, 900);
    const char *alpha = alphabets[t % 2];
    size_t step = t % 2 ? 2 : 1, na = strlen(alpha) / step;
    char *w = idoc_xmalloc(n * 2 + 1);
    size_t wl = 0;
    for (size_t i = 0; i < n; i++) {
      size_t c = idoc_rng_below(&rng, na) * step;
      memcpy(w + wl, alpha + c, step);
      wl += step;
    }
    // Symbols: the byte-level string of each byte, as the vocabulary spells it.
    sym_list L = {idoc_xmalloc(wl * sizeof(char *)), wl};
    for (size_t i = 0; i < wl; i++) {
      int32_t id = -1;
      for (int32_t b = 0; b < 256; b++) {
        size_t bl;
        const uint8_t *bb = idoc_token_bytes(tok, b, &bl);
        if (bl == 1 && bb[0] == (uint8_t)w[i]) id = b;
      }
      L.sym[i] = idoc_xstrdup(idoc_id_to_token(tok, id));
    }
    for (;;) {
      int32_t best = INT32_MAX;
      size_t at = 0;
      for (size_t i = 0; i + 1 < L.n; i++) {
        char buf[1024];
        int k = snprintf(buf, sizeof buf, "%s %s", L.sym[i], L.sym[i + 1]);
        int32_t rk = idoc_strmap_get(&ranks, buf, (size_t)k);
        if (rk >= 0 && rk < best) best = rk, at = i;
      }
      if (best == INT32_MAX) break;
      size_t la = strlen(L.sym[at]), lb = strlen(L.sym[at + 1]);
      char *j = idoc_xmalloc(la + lb + 1);
      memcpy(j, L.sym[at], la);
      memcpy(j + la, L.sym[at + 1], lb + 1);
      free(L.sym[at]);
      free(L.sym[at + 1]);
      L.sym[at] = j;
      memmove(L.sym + at + 1, L.sym + at + 2, (L.n - at - 2) * sizeof(char *));
      L.n--;
    }
    int32_t *ids;
    size_t k;
    idoc_tokenize(tok, w, wl, &ids, &k);
    bool same = k == L.n;
    for (size_t i = 0; i < L.n; i++) {
      if (same) same = ids[i] == idoc_token_to_id(tok, L.sym[i]);
      free(L.sym[i]);
    }
    mismatches += !same;
    words++;
    free(L.sym);
    free(ids);
    free(w);
  }
  T_CHECK(mismatches == 0, "%d of %d words differ from the naive BPE", mismatches, words);
  idoc_strmap_free(&ranks);
  cJSON_Delete(doc);
  free(data);
}

static void test_long_and_odd_inputs(idoc_tokenizer *tok) {
  // Long words and whitespace runs: BPE and the regex stay linear-ish (would time out if not).
  size_t n = 200000;
  char *s = idoc_xmalloc(n + 1);
  for (size_t i = 0; i < n; i++)
    s[i] = "abcde"[i % 5];
  int32_t *ids;
  size_t k;
  T_CHECK(idoc_tokenize(tok, s, n, &ids, &k) == IDOC_OK && k > 0, "200k-letter word");
  char *d;
  idoc_detokenize(tok, ids, k, false, &d, NULL);
  T_CHECK(memcmp(d, s, n) == 0 && strlen(d) == n, "long word round trip");
  free(d);
  free(ids);
  memset(s, ' ', n);
  s[n - 1] = 'x';
  T_CHECK(idoc_tokenize(tok, s, n, &ids, &k) == IDOC_OK && k > 0, "200k spaces: %s",
          idoc_last_error());
  idoc_detokenize(tok, ids, k, false, &d, NULL);
  T_CHECK(memcmp(d, s, n) == 0, "spaces round trip");
  free(d);
  free(ids);
  for (size_t i = 0; i < n; i++)
    s[i] = "\r\n \t"[i % 4];
  T_CHECK(idoc_tokenize(tok, s, n, &ids, &k) == IDOC_OK && k > 0, "mixed whitespace");
  free(ids);
  // Embedded NUL is text like any other byte.
  T_CHECK(idoc_tokenize(tok, "a\0b", 3, &ids, &k) == IDOC_OK, "NUL");
  idoc_detokenize(tok, ids, k, false, &d, NULL);
  T_CHECK(!memcmp(d, "a\0b", 4), "NUL round trip");
  free(d);
  free(ids);
  T_CHECK(idoc_tokenize(tok, "", 0, &ids, &k) == IDOC_OK && k == 0, "empty");
  free(ids);
  free(s);
}

static void expect_load_error(const char *json, const char *needle) {
  idoc_clear_error();
  idoc_tokenizer *t = idoc_tokenizer_load_json(json, strlen(json), "bad.json");
  T_CHECK(!t && strstr(idoc_last_error(), needle) && strstr(idoc_last_error(), "bad.json"),
          "want '%s' in: %s", needle, idoc_last_error());
  idoc_tokenizer_free(t);
}

static void test_bad_files(void) {
  T_CHECK(!idoc_tokenizer_load("tests/fixtures/tokenizer/missing.json") &&
              strstr(idoc_last_error(), "missing.json"),
          "missing file: %s", idoc_last_error());
  expect_load_error("{", "invalid JSON");
  expect_load_error("[]", "not a JSON object");
  expect_load_error("{}", "model");
  expect_load_error("{\"model\":{\"type\":\"WordPiece\"}}", "model.type");
  expect_load_error("{\"model\":{\"vocab\":{\"a\":\"x\"},\"merges\":[]}}", "model.vocab[\"a\"]");
  expect_load_error("{\"model\":{\"vocab\":{\"a\":0,\"b\":1},\"merges\":[\"a b\"]}}",
                    "model.merges[0]");
  expect_load_error("{\"model\":{\"vocab\":{\"a\":0},\"merges\":[\"ab\"]}}", "model.merges[0]");
  expect_load_error("{\"model\":{\"vocab\":{\"a\":0},\"merges\":[],\"dropout\":0.1}}",
                    "model.dropout");
  expect_load_error("{\"model\":{\"vocab\":{\"a\":0},\"merges\":[]},\"added_tokens\":[{\"id\":1,"
                    "\"content\":\"x\",\"lstrip\":true}]}",
                    "added_tokens[0].lstrip");
  expect_load_error("{\"model\":{\"vocab\":{\"a\":0},\"merges\":[]},\"normalizer\":{\"type\":"
                    "\"NFKC\"}}",
                    "normalizer");
  expect_load_error(
      "{\"model\":{\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":"
      "\"Sequence\",\"pretokenizers\":[{\"type\":\"Split\",\"pattern\":{\"Regex\":"
      "\"(\"},\"behavior\":\"Isolated\"},{\"type\":\"ByteLevel\",\"use_regex\":false}]}}",
      "pattern.Regex");
  expect_load_error("{\"model\":{\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":"
                    "\"ByteLevel\",\"use_regex\":true},\"decoder\":{\"type\":\"ByteLevel\"}}",
                    "byte-level symbol");
  expect_load_error("{\"model\":{\"vocab\":{\"a\":0},\"merges\":[]},\"pre_tokenizer\":{\"type\":"
                    "\"ByteLevel\"},\"decoder\":{\"type\":\"WordPiece\"}}",
                    "decoder.type");
}

// Merges may be stored as ["a", "b"] pairs (newer files): same ids as "a b" strings.
static void test_pair_merges(void) {
  char *data;
  size_t n;
  if (idoc_read_file(FIXTURE, &data, &n)) return;
  cJSON *doc = cJSON_ParseWithLength(data, n);
  cJSON *merges = cJSON_GetObjectItemCaseSensitive(cJSON_GetObjectItem(doc, "model"), "merges");
  cJSON *as_str = cJSON_CreateArray();
  for (cJSON *m = merges->child; m; m = m->next) {
    bool pair = cJSON_IsArray(m);
    char buf[512];
    if (pair)
      snprintf(buf, sizeof buf, "%s %s", m->child->valuestring, m->child->next->valuestring);
    cJSON_AddItemToArray(as_str, cJSON_CreateString(pair ? buf : m->valuestring));
  }
  cJSON_ReplaceItemInObject(cJSON_GetObjectItem(doc, "model"), "merges", as_str);
  char *text = cJSON_PrintUnformatted(doc);
  idoc_tokenizer *a = idoc_tokenizer_load(FIXTURE);
  idoc_tokenizer *b = idoc_tokenizer_load_json(text, strlen(text), "strings.json");
  T_CHECK(a && b, "%s", idoc_last_error());
  const char *s = "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～ Übergrößenträger";
  int32_t *ia, *ib;
  size_t na, nb;
  idoc_tokenize(a, s, strlen(s), &ia, &na);
  idoc_tokenize(b, s, strlen(s), &ib, &nb);
  T_CHECK(na == nb && !memcmp(ia, ib, na * sizeof *ia), "pair and string merges agree");
  free(ia);
  free(ib);
  idoc_tokenizer_free(a);
  idoc_tokenizer_free(b);
  cJSON_free(text);
  cJSON_Delete(doc);
  free(data);
}

// Encoding is thread-safe on one tokenizer (shared tables, locked piece cache): four threads
// encode the same texts at once and get the sequential ids.
typedef struct {
  idoc_tokenizer *tok;
  char **texts;
  int32_t **want;
  size_t *n_want;
  int n, bad;
} thread_job;

static void *encode_all(void *arg) {
  thread_job *j = arg;
  for (int i = 0; i < j->n; i++) {
    int32_t *ids;
    size_t n;
    idoc_tokenize(j->tok, j->texts[i], strlen(j->texts[i]), &ids, &n);
    j->bad += n != j->n_want[i] || (n && memcmp(ids, j->want[i], n * sizeof *ids) != 0);
    free(ids);
  }
  return NULL;
}

static void test_threads(void) {
  idoc_tokenizer *tok = idoc_tokenizer_load(FIXTURE);
  char *data;
  size_t n;
  if (!tok || idoc_read_file(CASES, &data, &n)) return;
  enum { MAX = 3000, THREADS = 4 };
  char **texts = idoc_xcalloc(MAX, sizeof *texts);
  int32_t **want = idoc_xcalloc(MAX, sizeof *want);
  size_t *n_want = idoc_xcalloc(MAX, sizeof *n_want);
  int count = 0;
  for (char *p = data, *nl; p < data + n && count < MAX; p = nl + 1) {
    nl = memchr(p, '\n', (size_t)(data + n - p));
    if (!nl) nl = data + n;
    cJSON *rec = cJSON_ParseWithLength(p, (size_t)(nl - p));
    texts[count] = idoc_xstrdup(cJSON_GetObjectItem(rec, "text")->valuestring);
    idoc_tokenize(tok, texts[count], strlen(texts[count]), &want[count], &n_want[count]);
    count++;
    cJSON_Delete(rec);
  }
  idoc_tokenizer_free(tok); // a fresh tokenizer: the threads fill its cache concurrently
  tok = idoc_tokenizer_load(FIXTURE);
  pthread_t th[THREADS];
  thread_job jobs[THREADS];
  for (int t = 0; t < THREADS; t++) {
    jobs[t] = (thread_job){tok, texts, want, n_want, count, 0};
    pthread_create(&th[t], NULL, encode_all, &jobs[t]);
  }
  int bad = 0;
  for (int t = 0; t < THREADS; t++) {
    pthread_join(th[t], NULL);
    bad += jobs[t].bad;
  }
  T_CHECK(bad == 0, "%d texts encoded differently by concurrent threads", bad);
  for (int i = 0; i < count; i++) {
    free(texts[i]);
    free(want[i]);
  }
  free(texts);
  free(want);
  free(n_want);
  free(data);
  idoc_tokenizer_free(tok);
}

// `idoc tokenize`: the round-trip check over the fixture texts, and adding + saving the task
// tokens (stdout goes to /dev/null for the check run).
static void test_cli(void) {
  const char *saved = "build_test_cli_tokenizer.json";
  char *a1[] = {"tokenize", "--tokenizer", FIXTURE, "--add-task-tokens", "--save", (char *)saved};
  T_CHECK(idoc_cmd_tokenize(6, a1) == 0, "tokenize --add-task-tokens --save");
  idoc_tokenizer *t = idoc_tokenizer_load(saved);
  T_CHECK(t && idoc_token_to_id(t, "<|mis|>") == 4022 && idoc_token_to_id(t, "<|art|>") == 4023,
          "CLI-saved tokenizer has the task tokens");
  idoc_tokenizer_free(t);
  remove(saved);
  fflush(stdout);
  FILE *keep = fopen("/dev/null", "w");
  int fd = dup(fileno(stdout));
  dup2(fileno(keep), fileno(stdout));
  char *a2[] = {"tokenize", "--tokenizer", FIXTURE, "--check", "--lines", "--file", CASES};
  int rc = idoc_cmd_tokenize(7, a2);
  char *a3[] = {"tokenize", "--bogus"};
  int rc_bad = idoc_cmd_tokenize(2, a3);
  fflush(stdout);
  dup2(fd, fileno(stdout));
  close(fd);
  fclose(keep);
  T_CHECK(rc == 0, "tokenize --check passes on the fixture lines");
  T_CHECK(rc_bad == 2, "unknown option refused");
}

// A tokenizer shaped like Qwen2.5's (151643 model ids, the 22 added tokens at 151643..151664):
// the task tokens land on 151665 and 151666, inside the 151936-row embedding, as the released
// ImageDoctor config has them.
static void test_qwen_shaped_ids(void) {
  static const char *const added[22] = {
      "<|endoftext|>",      "<|im_start|>",     "<|im_end|>",     "<|object_ref_start|>",
      "<|object_ref_end|>", "<|box_start|>",    "<|box_end|>",    "<|quad_start|>",
      "<|quad_end|>",       "<|vision_start|>", "<|vision_end|>", "<|vision_pad|>",
      "<|image_pad|>",      "<|video_pad|>",    "<tool_call>",    "</tool_call>",
      "<|fim_prefix|>",     "<|fim_middle|>",   "<|fim_suffix|>", "<|fim_pad|>",
      "<|repo_name|>",      "<|file_sep|>"};
  size_t cap = 4 << 20, n = 0;
  char *j = idoc_xmalloc(cap);
  n += (size_t)snprintf(j + n, cap - n, "{\"model\":{\"type\":\"BPE\",\"vocab\":{");
  for (int id = 0; id < 151643; id++) {
    // ids 0..255: the byte symbols (bytes_to_unicode order); then filler tokens of letters.
    char tokstr[16];
    if (id < 256) {
      int bs[256], k = 0;
      for (int b = 33; b <= 126; b++)
        bs[k++] = b;
      for (int b = 161; b <= 172; b++)
        bs[k++] = b;
      for (int b = 174; b <= 255; b++)
        bs[k++] = b;
      for (int b = 0, m = 0; b < 256; b++)
        if (!((b >= 33 && b <= 126) || (b >= 161 && b <= 172) || b >= 174)) bs[k++] = 256 + m++;
      int cp = bs[id];
      if (cp < 0x80)
        snprintf(tokstr, sizeof tokstr, cp == '"' ? "\\\"" : cp == '\\' ? "\\\\" : "%c", cp);
      else
        snprintf(tokstr, sizeof tokstr, "\\u%04x", cp);
    } else {
      snprintf(tokstr, sizeof tokstr, "zz%d", id);
    }
    n += (size_t)snprintf(j + n, cap - n, "%s\"%s\":%d", id ? "," : "", tokstr, id);
  }
  n += (size_t)snprintf(j + n, cap - n, "},\"merges\":[]},\"added_tokens\":[");
  for (int i = 0; i < 22; i++)
    n += (size_t)snprintf(j + n, cap - n, "%s{\"id\":%d,\"content\":\"%s\",\"special\":%s}",
                          i ? "," : "", 151643 + i, added[i], i < 14 ? "true" : "false");
  n += (size_t)snprintf(j + n, cap - n,
                        "],\"normalizer\":{\"type\":\"NFC\"},\"pre_tokenizer\":{\"type\":"
                        "\"ByteLevel\",\"add_prefix_space\":false},\"decoder\":{\"type\":"
                        "\"ByteLevel\"}}");
  idoc_tokenizer *tok = idoc_tokenizer_load_json(j, n, "qwen-shaped.json");
  T_CHECK(tok, "%s", idoc_last_error());
  if (tok) {
    T_CHECK(idoc_tokenizer_n_ids(tok) == 151665, "151665 ids before the task tokens");
    T_CHECK(idoc_token_to_id(tok, "<|image_pad|>") == 151655 &&
                idoc_token_to_id(tok, "\xC4\xA0") == 220 &&
                idoc_token_to_id(tok, "\xC4\x8A") == 198,
            "Qwen ids: <|image_pad|> 151655, 'Ġ' 220, 'Ċ' 198");
    int32_t mis = idoc_tokenizer_add_token(tok, "<|mis|>", true);
    int32_t art = idoc_tokenizer_add_token(tok, "<|art|>", true);
    T_CHECK(mis == 151665 && art == 151666, "task tokens at %d, %d", mis, art);
  }
  idoc_tokenizer_free(tok);
  free(j);
}

int main(void) {
  idoc_tokenizer *tok = idoc_tokenizer_load(FIXTURE);
  T_CHECK(tok, "%s", idoc_last_error());
  if (!tok) return t_summary("test_tokenizer");
  test_byte_map(tok);
  test_fixture_cases(tok);
  test_invalid_utf8(tok);
  test_long_and_odd_inputs(tok);
  test_against_naive_bpe(tok);
  test_added_tokens(tok);
  idoc_tokenizer_free(tok);
  test_bad_files();
  test_pair_merges();
  test_threads();
  test_cli();
  test_qwen_shaped_ids();
  return t_summary("test_tokenizer");
}
