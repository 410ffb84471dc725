// idoc-requires: pcre2 utf8proc cjson
// Fuzzes encode/decode on the Qwen-like fixture tokenizer with any bytes. Properties:
//   decode(encode(s)) == NFC(s) when s holds no added token (s repaired to valid UTF-8 first);
//   encode(decode(encode(s))) == encode(s); streaming decode == decode, also for arbitrary ids.
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "nn/util.h"

static idoc_tokenizer *tok;

static void load(void) {
  // Fuzz tests run in the build tree: find the fixture from this file's path.
  const char *f = __FILE__, *p = strstr(f, "tests/fuzz/");
  char path[4096];
  snprintf(path, sizeof path, "%.*stests/fixtures/tokenizer/tokenizer.json", p ? (int)(p - f) : 0,
           f);
  tok = idoc_tokenizer_load(path);
  if (!tok) idoc_die("%s", idoc_last_error());
}

static void stream_check(const int32_t *ids, size_t n, bool skip) {
  char *dec;
  size_t dl;
  if (idoc_detokenize(tok, ids, n, skip, &dec, &dl)) idoc_die("detokenize: %s", idoc_last_error());
  idoc_stream_decoder sd;
  idoc_stream_decoder_init(&sd, tok, skip);
  size_t at = 0;
  for (size_t i = 0; i <= n; i++) {
    size_t l;
    const char *s =
        i < n ? idoc_stream_decoder_push(&sd, ids[i], &l) : idoc_stream_decoder_flush(&sd, &l);
    IDOC_CHECK(s && at + l <= dl && !memcmp(dec + at, s, l), "stream decode differs");
    at += l;
  }
  IDOC_CHECK(at == dl, "stream decode is short");
  idoc_stream_decoder_free(&sd);
  free(dec);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!tok) load();
  const char *s = (const char *)data;
  int32_t *ids, *ids2;
  size_t n, n2;
  if (idoc_tokenize(tok, s, size, &ids, &n)) idoc_die("tokenize: %s", idoc_last_error());
  char *dec;
  size_t dl;
  if (idoc_detokenize(tok, ids, n, false, &dec, &dl)) idoc_die("%s", idoc_last_error());
  bool has_added = false;
  for (size_t i = 0; i < n; i++)
    has_added |= idoc_token_is_added(tok, ids[i]);
  if (!has_added) {
    size_t fl, nl;
    char *fixed = idoc_utf8_sanitize(s, size, &fl), *nfc;
    if (idoc_utf8_nfc(fixed, fl, &nfc, &nl)) idoc_die("nfc: %s", idoc_last_error());
    IDOC_CHECK(nl == dl && !memcmp(nfc, dec, dl), "decode(encode(s)) != NFC(s)");
    free(nfc);
    free(fixed);
  }
  if (idoc_tokenize(tok, dec, dl, &ids2, &n2)) idoc_die("tokenize: %s", idoc_last_error());
  IDOC_CHECK(n2 == n && !memcmp(ids, ids2, n * sizeof *ids),
             "encode(decode(encode(s))) != encode(s)");
  stream_check(ids, n, false);
  stream_check(ids, n, true);
  free(ids2);
  // The input as ids: every byte pair picks a token, special ones included.
  size_t m = size / 2;
  int32_t *raw = malloc((m ? m : 1) * sizeof *raw);
  for (size_t i = 0; i < m; i++)
    raw[i] = (int32_t)((data[2 * i] | data[2 * i + 1] << 8) % idoc_tokenizer_n_ids(tok));
  stream_check(raw, m, false);
  stream_check(raw, m, true);
  free(raw);
  free(dec);
  free(ids);
  return 0;
}
