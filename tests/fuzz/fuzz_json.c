// libFuzzer target for nn/json: parsing arbitrary bytes never crashes; whatever parses
// re-serialises to text that parses to the same serialisation; escaping any valid UTF-8 string
// and parsing it back gives the original bytes.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nn/json.h"
#include "nn/util.h"

static void touch(const idoc_json *v) {
  int64_t i;
  double d;
  bool b;
  idoc_json_as_int64(v, INT64_MIN, INT64_MAX, &i);
  idoc_json_as_double(v, &d);
  idoc_json_as_bool(v, &b);
  if (v->type == IDOC_JSON_OBJECT || v->type == IDOC_JSON_ARRAY)
    for (uint32_t k = 0; k < v->n; k++) {
      touch(&v->kids[k]);
      if (v->type == IDOC_JSON_OBJECT && strlen(v->kids[k].key) == v->kids[k].key_len)
        if (!idoc_json_get(v, v->kids[k].key)) abort(); // every (NUL-free) key is found
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  idoc_json_limits lim = {.max_depth = 64, .max_nodes = 100000};
  idoc_json_doc *d = idoc_json_parse((const char *)data, size, "fuzz", &lim);
  if (d) {
    touch(idoc_json_root(d));
    idoc_json_buf a = {0}, b = {0};
    idoc_json_buf_value(&a, idoc_json_root(d));
    idoc_json_doc *d2 = idoc_json_parse(a.data, a.len, "fuzz2", &lim);
    if (!d2) abort(); // our own output must parse
    idoc_json_buf_value(&b, idoc_json_root(d2));
    if (a.len != b.len || memcmp(a.data, b.data, a.len) != 0) abort();
    idoc_json_free(d2);
    idoc_json_buf_free(&a);
    idoc_json_buf_free(&b);
    idoc_json_free(d);
  }
  if (idoc_json_utf8_valid((const char *)data, size)) {
    idoc_json_buf s = {0};
    idoc_json_buf_string(&s, (const char *)data, size);
    idoc_json_doc *d3 = idoc_json_parse(s.data, s.len, "fuzz3", NULL);
    if (!d3) abort();
    const idoc_json *r = idoc_json_root(d3);
    if (r->type != IDOC_JSON_STRING || r->len != size || memcmp(r->str, data, size) != 0) abort();
    idoc_json_free(d3);
    idoc_json_buf_free(&s);
  }
  return 0;
}
