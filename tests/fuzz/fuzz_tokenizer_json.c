// idoc-requires: pcre2 utf8proc cjson
// Fuzzes tokenizer.json loading: any bytes either load or fail with a message; a loaded
// tokenizer encodes and decodes a fixed text and its own JSON's tail without crashing.
#include <stdlib.h>
#include <string.h>

#include "data/tokenizer.h"
#include "nn/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  idoc_clear_error();
  idoc_tokenizer *tok = idoc_tokenizer_load_json((const char *)data, size, "fuzz.json");
  if (!tok) {
    IDOC_CHECK(strstr(idoc_last_error(), "fuzz.json") != NULL, "error names the file");
    return 0;
  }
  const char *texts[] = {"Hello, world! 3333 \xE2\x82\xAC <|im_end|>\r\n  x", (const char *)data};
  size_t lens[] = {strlen(texts[0]), size < 256 ? size : 256};
  for (int k = 0; k < 2; k++) {
    int32_t *ids;
    size_t n;
    if (idoc_tokenize(tok, texts[k], lens[k], &ids, &n) == IDOC_OK) {
      char *out;
      if (idoc_detokenize(tok, ids, n, k == 1, &out, NULL) == IDOC_OK) free(out);
      free(ids);
    }
  }
  int32_t id = idoc_tokenizer_add_token(tok, "<|mis|>", true);
  IDOC_CHECK(id >= 0 && idoc_token_to_id(tok, "<|mis|>") == id, "added token");
  idoc_tokenizer_free(tok);
  return 0;
}
