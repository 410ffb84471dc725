// A small strict JSON (RFC 8259) parser into a read-only DOM, and a writer helper. No
// dependencies, so the core can read safetensors headers, Hugging Face config.json and index
// files on a machine without cJSON.
//
// Strict means: exactly one value with optional whitespace around it, no comments, no trailing
// commas, no leading zeros or '+', no NaN/Infinity, no raw control characters in strings, only
// valid UTF-8 (no overlongs, no encoded surrogates), \u escapes must pair surrogates correctly,
// and object keys must be unique (a header that two readers could read two ways is rejected).
// Objects keep their key order. Errors name the input and the byte offset:
//   "model.safetensors: JSON error at byte 123: expected ':' after object key".
#pragma once
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum {
  IDOC_JSON_NULL = 0,
  IDOC_JSON_BOOL,
  IDOC_JSON_NUMBER,
  IDOC_JSON_STRING,
  IDOC_JSON_ARRAY,
  IDOC_JSON_OBJECT
} idoc_json_type;

typedef struct idoc_json idoc_json;
struct idoc_json {
  idoc_json_type type;
  uint32_t n;      // array/object: number of children
  size_t offset;   // byte offset of the value in the input (for error messages)
  const char *key; // member of an object: its decoded key (NUL-terminated), else NULL
  size_t key_len;  // key length in bytes (a key may contain "\u0000")
  const char *str; // string: decoded UTF-8; number: its literal text. NUL-terminated.
  size_t len;      // length of str in bytes
  double num;      // number: value as a double (strtod rounding); bool: 0 or 1
  idoc_json *kids; // array elements or object members, in input order
};

typedef struct {
  size_t max_bytes; // input larger than this is rejected (0: no limit)
  int max_depth;    // nesting limit (0: 128)
  size_t max_nodes; // values in the document (0: 4M) -- bounds memory on hostile input
} idoc_json_limits;

typedef struct idoc_json_doc idoc_json_doc;

// Parses `n` bytes (need not be NUL-terminated). `what` names the input in error messages (a
// file name). Returns NULL and sets the error on invalid input. `lim` may be NULL.
idoc_json_doc *idoc_json_parse(const char *text, size_t n, const char *what,
                               const idoc_json_limits *lim);
// Reads and parses a file.
idoc_json_doc *idoc_json_parse_file(const char *path, const idoc_json_limits *lim);
const idoc_json *idoc_json_root(const idoc_json_doc *doc);
void idoc_json_free(idoc_json_doc *doc);

const char *idoc_json_type_name(idoc_json_type t); // "null", "boolean", "number", ...

// Lookups. All accept NULL and return NULL/false for the wrong type.
const idoc_json *idoc_json_get(const idoc_json *obj, const char *key); // member by key
const idoc_json *idoc_json_at(const idoc_json *arr, size_t i);
static inline bool idoc_json_is(const idoc_json *v, idoc_json_type t) { return v && v->type == t; }
static inline const char *idoc_json_string(const idoc_json *v) {
  return idoc_json_is(v, IDOC_JSON_STRING) ? v->str : NULL;
}

// Conversions with checks; on failure they set an error that says what was found (callers wrap
// it with the file and field name). An int64 must be written as an integer literal ("12", not
// "12.0" or "1.2e1") and lie in [lo, hi].
int idoc_json_as_int64(const idoc_json *v, int64_t lo, int64_t hi, int64_t *out);
int idoc_json_as_double(const idoc_json *v, double *out);
int idoc_json_as_bool(const idoc_json *v, bool *out);
// Member lookups with the same checks; the error names the key. `dflt` is used when missing.
int idoc_json_get_int64(const idoc_json *obj, const char *key, int64_t lo, int64_t hi, int64_t dflt,
                        int64_t *out);
int idoc_json_get_double(const idoc_json *obj, const char *key, double dflt, double *out);
int idoc_json_get_bool(const idoc_json *obj, const char *key, bool dflt, bool *out);

// ---- writing ------------------------------------------------------------------------------
// A growable byte buffer for emitting JSON text.
typedef struct {
  char *data; // NUL-terminated while len < cap
  size_t len, cap;
} idoc_json_buf;
void idoc_json_buf_put(idoc_json_buf *b, const char *s, size_t n);
void idoc_json_buf_puts(idoc_json_buf *b, const char *s);
void idoc_json_buf_printf(idoc_json_buf *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
// A quoted, escaped JSON string. Invalid UTF-8 bytes become U+FFFD so the output is always
// valid JSON.
void idoc_json_buf_string(idoc_json_buf *b, const char *s, size_t n);
// A whole value, compact (numbers keep their original text).
void idoc_json_buf_value(idoc_json_buf *b, const idoc_json *v);
void idoc_json_buf_free(idoc_json_buf *b);
// True when s[0..n) is valid UTF-8 (the same rules the parser applies).
bool idoc_json_utf8_valid(const char *s, size_t n);
// Writes a quoted, escaped string to a stream.
void idoc_json_write_string(FILE *f, const char *s);
