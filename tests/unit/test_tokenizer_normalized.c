// Added tokens marked normalized=true are matched as the `tokenizers` library matches them:
// after the raw-matched (normalized=false) added tokens have split the text, each piece is
// NFC-normalized and only then searched for the normalized tokens (in their own NFC form).
// Fixture from scripts/make_normalized_token_fixtures.py ('tke\u0301' with the added token
// "tke" is t, k, é; a decomposed "e\u0301t\u0301e..." matches the token "été").
// idoc-requires: pcre2 utf8proc cjson
#include "data/tokenizer.h"
#include "nn/json.h"
#include "nn/util.h"
#include "tests/test.h"

#define FX "tests/fixtures/tokenizer/normalized_added/"

int main(void) {
  idoc_tokenizer *tok = idoc_tokenizer_load(FX "tokenizer.json");
  T_CHECK(tok != NULL, "%s", idoc_last_error());
  char *data;
  size_t n;
  if (!tok || idoc_read_file(FX "cases.jsonl", &data, &n))
    return t_summary("test_tokenizer_normalized");
  int cases = 0;
  for (char *s = data; s && *s;) {
    char *nl = strchr(s, '\n');
    size_t len = nl ? (size_t)(nl - s) : strlen(s);
    idoc_json_doc *doc = idoc_json_parse(s, len, "cases.jsonl", NULL);
    IDOC_CHECK(doc, "%s", idoc_last_error());
    const idoc_json *r = idoc_json_root(doc), *text = idoc_json_get(r, "text"),
                    *want = idoc_json_get(r, "ids");
    int32_t *ids = NULL;
    size_t k = 0;
    T_CHECK(idoc_tokenize(tok, text->str, text->len, &ids, &k) == IDOC_OK, "%s", idoc_last_error());
    bool same = k == want->n;
    for (size_t i = 0; same && i < k; i++)
      same = ids[i] == (int32_t)idoc_json_at(want, i)->num;
    if (!same) {
      fprintf(stderr, "case %d ('%s'): got", cases, text->str);
      for (size_t i = 0; i < k; i++)
        fprintf(stderr, " %d", ids[i]);
      fprintf(stderr, ", want");
      for (uint32_t i = 0; i < want->n; i++)
        fprintf(stderr, " %d", (int)idoc_json_at(want, i)->num);
      fprintf(stderr, "\n");
    }
    T_CHECK(same, "case %d: ids as the tokenizers library gives", cases);
    free(ids);
    idoc_json_free(doc);
    cases++;
    s = nl ? nl + 1 : NULL;
  }
  T_CHECK(cases == 11, "%d cases", cases);
  // Saving keeps the flag: the reloaded tokenizer gives the same ids.
  T_CHECK(idoc_tokenizer_save(tok, "test_tokenizer_normalized.json") == IDOC_OK, "save");
  idoc_tokenizer *back = idoc_tokenizer_load("test_tokenizer_normalized.json");
  int32_t *a = NULL, *b = NULL;
  size_t na = 0, nb = 0;
  const char *t = "tke\xcc\x81 e\xcc\x81te\xcc\x81";
  T_CHECK(back && idoc_tokenize(tok, t, strlen(t), &a, &na) == IDOC_OK &&
              idoc_tokenize(back, t, strlen(t), &b, &nb) == IDOC_OK && na == nb &&
              !memcmp(a, b, na * sizeof *a),
          "round trip");
  free(a);
  free(b);
  idoc_tokenizer_free(back);
  remove("test_tokenizer_normalized.json");
  free(data);
  idoc_tokenizer_free(tok);
  return t_summary("test_tokenizer_normalized");
}
