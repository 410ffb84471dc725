// nn/json: strict parsing into a DOM, error positions, lookups with range checks, and the writer.
#include <stdint.h>
#include <string.h>

#include "nn/json.h"
#include "nn/util.h"
#include "tests/test.h"

static idoc_json_doc *parse(const char *s) { return idoc_json_parse(s, strlen(s), "t.json", NULL); }

static void test_values(void) {
  const char *src = " {\"b\": [1, -2.5e3, 0, true, false, null], \"a\": {\"x\": \"y\"}, \"e\": [], "
                    "\"o\": {}, \"s\": \"q\\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00\"} ";
  idoc_json_doc *d = parse(src);
  T_CHECK(d, "parse failed: %s", idoc_last_error());
  if (!d) return;
  const idoc_json *r = idoc_json_root(d);
  T_CHECK(r->type == IDOC_JSON_OBJECT && r->n == 5, "root type %d n %u", r->type, r->n);
  // Key order is the input order.
  const char *order[] = {"b", "a", "e", "o", "s"};
  for (int i = 0; i < 5; i++)
    T_CHECK(!strcmp(r->kids[i].key, order[i]), "key %d", i);
  const idoc_json *b = idoc_json_get(r, "b");
  T_CHECK(idoc_json_is(b, IDOC_JSON_ARRAY) && b->n == 6, "b");
  T_CHECK(!strcmp(idoc_json_at(b, 1)->str, "-2.5e3"), "number text kept: %s",
          idoc_json_at(b, 1)->str);
  T_CLOSE(idoc_json_at(b, 1)->num, -2500.0, 0, 0);
  bool t = false, f = true;
  T_CHECK(!idoc_json_as_bool(idoc_json_at(b, 3), &t) && t, "true");
  T_CHECK(!idoc_json_as_bool(idoc_json_at(b, 4), &f) && !f, "false");
  T_CHECK(idoc_json_is(idoc_json_at(b, 5), IDOC_JSON_NULL), "null");
  T_CHECK(idoc_json_at(b, 6) == NULL, "index past the end");
  T_CHECK(!strcmp(idoc_json_string(idoc_json_get(idoc_json_get(r, "a"), "x")), "y"), "nested");
  T_CHECK(idoc_json_get(r, "e")->n == 0 && idoc_json_get(r, "o")->n == 0, "empty containers");
  T_CHECK(idoc_json_get(r, "zz") == NULL && idoc_json_get(b, "x") == NULL, "missing lookups");
  const idoc_json *s = idoc_json_get(r, "s");
  const char want[] = "q\"\\/\b\f\n\r\t\xc3\xa9\xf0\x9f\x98\x80";
  T_CHECK(s->len == sizeof want - 1 && !memcmp(s->str, want, sizeof want), "escapes decoded");
  T_CHECK(b->offset == 7 && idoc_json_at(b, 1)->offset == 11, "offsets %zu %zu", b->offset,
          idoc_json_at(b, 1)->offset);
  idoc_json_free(d);

  // "\u0000" is legal: the decoded length counts it.
  d = parse("{\"k\\u0000x\": \"a\\u0000b\"}");
  T_CHECK(d && idoc_json_root(d)->kids[0].key_len == 3 && idoc_json_root(d)->kids[0].len == 3,
          "embedded NUL");
  T_CHECK(d && idoc_json_get(idoc_json_root(d), "k") == NULL, "key with NUL is not 'k'");
  idoc_json_free(d);
  d = parse("\"\xe2\x82\xac \xf4\x8f\xbf\xbf\"");
  T_CHECK(d && idoc_json_root(d)->len == 8, "valid multibyte UTF-8 accepted");
  idoc_json_free(d);
}

static void test_integers(void) {
  struct {
    const char *text;
    int64_t lo, hi;
    bool ok;
    int64_t want;
    const char *frag;
  } cases[] = {
      {"9223372036854775807", INT64_MIN, INT64_MAX, true, INT64_MAX, NULL},
      {"-9223372036854775808", INT64_MIN, INT64_MAX, true, INT64_MIN, NULL},
      {"9223372036854775808", INT64_MIN, INT64_MAX, false, 0, "out of range"},
      {"-9223372036854775809", INT64_MIN, INT64_MAX, false, 0, "out of range"},
      {"99999999999999999999999", INT64_MIN, INT64_MAX, false, 0, "out of range"},
      {"-0", 0, 10, true, 0, NULL},
      {"11", 0, 10, false, 0, "integer 11 out of range [0, 10]"},
      {"1.0", 0, 10, false, 0, "expected an integer, found 1.0"},
      {"1e1", 0, 100, false, 0, "expected an integer, found 1e1"},
      {"\"3\"", 0, 10, false, 0, "expected an integer, found string"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    idoc_json_doc *d = parse(cases[i].text);
    T_CHECK(d, "%s: %s", cases[i].text, idoc_last_error());
    if (!d) continue;
    int64_t v = -7;
    int rc = idoc_json_as_int64(idoc_json_root(d), cases[i].lo, cases[i].hi, &v);
    if (cases[i].ok) {
      T_CHECK(rc == IDOC_OK && v == cases[i].want, "%s -> %lld", cases[i].text, (long long)v);
    } else {
      T_CHECK(rc == IDOC_ERR && strstr(idoc_last_error(), cases[i].frag), "%s: '%s'", cases[i].text,
              idoc_last_error());
    }
    idoc_json_free(d);
  }
  idoc_json_doc *d = parse("{\"n\": 5, \"x\": 1e999, \"f\": 0.25, \"b\": 1}");
  const idoc_json *r = idoc_json_root(d);
  int64_t v;
  double x;
  bool b;
  T_CHECK(!idoc_json_get_int64(r, "n", 0, 9, -1, &v) && v == 5, "get n");
  T_CHECK(!idoc_json_get_int64(r, "missing", 0, 9, -1, &v) && v == -1, "default");
  T_CHECK(idoc_json_get_int64(r, "n", 0, 4, 0, &v) &&
              strstr(idoc_last_error(), "\"n\": integer 5 out of range [0, 4]"),
          "%s", idoc_last_error());
  T_CHECK(!idoc_json_get_double(r, "f", 0, &x) && x == 0.25, "double");
  T_CHECK(idoc_json_get_double(r, "x", 0, &x) && strstr(idoc_last_error(), "1e999 out of range"),
          "%s", idoc_last_error());
  T_CHECK(idoc_json_get_bool(r, "b", false, &b) &&
              strstr(idoc_last_error(), "expected true or false, found 1"),
          "%s", idoc_last_error());
  idoc_json_free(d);
}

static void test_errors(void) {
  struct {
    const char *text;
    size_t n; // 0: strlen
    const char *frag;
  } cases[] = {
      {"", 0, "t.json: JSON error at byte 0: empty input"},
      {"   ", 0, "at byte 3: empty input"},
      {"{\"a\" 1}", 0, "t.json: JSON error at byte 5: expected ':' after object key"},
      {"{\"a\":1,}", 0, "at byte 7: trailing comma before '}'"},
      {"[1,]", 0, "at byte 3: trailing comma before ']'"},
      {"[1 2]", 0, "at byte 3: expected ',' or ']' in array, found '2'"},
      {"{1:2}", 0, "at byte 1: expected a string key, found '1'"},
      {"[1,2", 0, "at byte 0: unterminated array"},
      {"{\"a\":1", 0, "at byte 0: unterminated object"},
      {"\"abc", 0, "at byte 0: unterminated string"},
      {"\"\\\"", 0, "unterminated string"},
      {"01", 0, "at byte 0: leading zeros are not allowed"},
      {"-", 0, "at byte 0: invalid number"},
      {"1.", 0, "at byte 2: expected a digit after '.'"},
      {"1e+", 0, "at byte 3: expected a digit in the exponent"},
      {"+1", 0, "unexpected '+', expected a value"},
      {"NaN", 0, "unexpected 'N', expected a value"},
      {"tru", 0, "invalid literal (expected true)"},
      {"nul", 0, "invalid literal (expected null)"},
      {"{} {}", 0, "at byte 3: unexpected data after the JSON value"},
      {"/* c */ 1", 0, "unexpected '/'"},
      {"\"\\x\"", 0, "at byte 1: invalid escape '\\x'"},
      {"\"\\u12g4\"", 0, "invalid \\u escape"},
      {"\"\\u123\"", 0, "invalid \\u escape"},
      {"\"\\ud800\"", 0, "unpaired surrogate \\uD800"},
      {"\"\\ud800\\u0041\"", 0, "unpaired surrogate \\uD800"},
      {"\"\\udc00\"", 0, "unpaired surrogate \\uDC00"},
      {"\"a\x01\"", 0, "at byte 2: control character U+0001 in string must be escaped"},
      {"\"\xc0\x80\"", 0, "at byte 1: invalid UTF-8"}, // overlong NUL
      {"\"\xed\xa0\x80\"", 0, "invalid UTF-8"},        // encoded surrogate
      {"\"\xf4\x90\x80\x80\"", 0, "invalid UTF-8"},    // above U+10FFFF
      {"\"\xe2\x82\"", 0, "invalid UTF-8"},            // truncated sequence
      {"\"\xff\"", 0, "invalid UTF-8"},
      {"{\"a\":1,\"a\":2}", 0, "at byte 11: duplicate key \"a\""},
      {"[1]\0", 4, "at byte 3: unexpected data"},
      {"\x01", 0, "unexpected byte 0x01, expected a value"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    size_t n = cases[i].n ? cases[i].n : strlen(cases[i].text);
    idoc_clear_error();
    idoc_json_doc *d = idoc_json_parse(cases[i].text, n, "t.json", NULL);
    T_CHECK(!d && strstr(idoc_last_error(), cases[i].frag), "case %zu: got '%s', want '%s'", i,
            idoc_last_error(), cases[i].frag);
    idoc_json_free(d);
  }

  // Duplicate keys in a large object go through the hash set.
  idoc_json_buf b = {0};
  idoc_json_buf_puts(&b, "{");
  for (int i = 0; i < 1000; i++)
    idoc_json_buf_printf(&b, "\"k%d\":%d,", i, i);
  idoc_json_buf_puts(&b, "\"k517\":0}");
  idoc_json_doc *d = idoc_json_parse(b.data, b.len, "big", NULL);
  T_CHECK(!d && strstr(idoc_last_error(), "duplicate key \"k517\""), "%s", idoc_last_error());
  idoc_json_buf_free(&b);
  idoc_json_buf_puts(&b, "{");
  for (int i = 0; i < 1000; i++)
    idoc_json_buf_printf(&b, "%s\"k%d\":%d", i ? "," : "", i, i);
  idoc_json_buf_puts(&b, "}");
  d = idoc_json_parse(b.data, b.len, "big", NULL);
  T_CHECK(d && idoc_json_root(d)->n == 1000, "1000 distinct keys: %s", idoc_last_error());
  int64_t v = 0;
  T_CHECK(d && !idoc_json_get_int64(idoc_json_root(d), "k999", 0, 1000, -1, &v) && v == 999,
          "lookup in a large object");
  idoc_json_free(d);
  idoc_json_buf_free(&b);

  // Limits: depth, node count, size.
  char deep[301];
  memset(deep, '[', 150);
  memset(deep + 150, ']', 150);
  deep[300] = 0;
  d = parse(deep);
  T_CHECK(!d && strstr(idoc_last_error(), "at byte 128: nesting deeper than 128 levels"), "%s",
          idoc_last_error());
  idoc_json_limits lim = {.max_depth = 200, .max_nodes = 1000, .max_bytes = 100};
  d = idoc_json_parse(deep, 300, "deep", &lim);
  T_CHECK(!d && strstr(idoc_last_error(), "300 bytes exceeds the limit of 100"), "%s",
          idoc_last_error());
  lim.max_bytes = 0;
  d = idoc_json_parse(deep, 300, "deep", &lim);
  T_CHECK(d, "depth 150 within a limit of 200: %s", idoc_last_error());
  idoc_json_free(d);
  lim.max_nodes = 100;
  d = idoc_json_parse(deep, 300, "deep", &lim);
  T_CHECK(!d && strstr(idoc_last_error(), "more than 100 values"), "%s", idoc_last_error());

  d = idoc_json_parse_file("tests/fixtures/no/such/file.json", NULL);
  T_CHECK(!d && strstr(idoc_last_error(), "tests/fixtures/no/such/file.json"), "%s",
          idoc_last_error());
}

static void test_writer(void) {
  idoc_json_buf b = {0};
  const char raw[] = "a\"b\\c\n\t\x01\x7f\xc3\xa9\xff/";
  idoc_json_buf_string(&b, raw, sizeof raw - 1);
  T_CHECK(!strcmp(b.data, "\"a\\\"b\\\\c\\n\\t\\u0001\x7f\xc3\xa9\xef\xbf\xbd/\""), "escaped: %s",
          b.data);
  idoc_json_doc *d = idoc_json_parse(b.data, b.len, "w", NULL);
  const char back[] = "a\"b\\c\n\t\x01\x7f\xc3\xa9\xef\xbf\xbd/";
  T_CHECK(d && idoc_json_root(d)->len == sizeof back - 1 &&
              !memcmp(idoc_json_root(d)->str, back, sizeof back),
          "escaped string parses back");
  idoc_json_free(d);
  idoc_json_buf_free(&b);

  // Parse -> write -> parse -> write is a fixed point, numbers keep their text.
  const char *src = "{ \"z\" : [ 1.50 , -0 , 1E+2 , \"\\u0041\\n\" , { } , [ ] , null ] , "
                    "\"a\" : true }";
  d = parse(src);
  idoc_json_buf_value(&b, idoc_json_root(d));
  T_CHECK(!strcmp(b.data, "{\"z\":[1.50,-0,1E+2,\"A\\n\",{},[],null],\"a\":true}"), "compact: %s",
          b.data);
  idoc_json_doc *d2 = idoc_json_parse(b.data, b.len, "w2", NULL);
  idoc_json_buf b2 = {0};
  idoc_json_buf_value(&b2, idoc_json_root(d2));
  T_CHECK(!strcmp(b.data, b2.data), "round trip stable");
  idoc_json_free(d);
  idoc_json_free(d2);
  idoc_json_buf_free(&b);
  idoc_json_buf_free(&b2);

  T_CHECK(idoc_json_utf8_valid("\xe2\x82\xac", 3) && !idoc_json_utf8_valid("\xe2\x82", 2),
          "utf8 validator");
}

int main(void) {
  test_values();
  test_integers();
  test_errors();
  test_writer();
  return t_summary("test_json");
}
