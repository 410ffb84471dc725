#include "nn/json.h"

#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "nn/util.h"

// ---- document memory: one bump allocator, freed at once ---------------------------------------
typedef struct json_block {
  struct json_block *next;
  size_t used, cap;
  _Alignas(max_align_t) char data[];
} json_block;

struct idoc_json_doc {
  json_block *blocks;
  idoc_json root;
};

static void *doc_alloc(idoc_json_doc *d, size_t n) {
  n = (n + 15) & ~(size_t)15;
  json_block *b = d->blocks;
  if (!b || b->cap - b->used < n) {
    size_t cap = n > 65536 ? n : 65536;
    b = idoc_xmalloc(sizeof(json_block) + cap);
    b->cap = cap;
    b->used = 0;
    b->next = d->blocks;
    d->blocks = b;
  }
  void *p = b->data + b->used;
  b->used += n;
  return p;
}

void idoc_json_free(idoc_json_doc *d) {
  if (!d) return;
  for (json_block *b = d->blocks, *nx; b; b = nx) {
    nx = b->next;
    free(b);
  }
  free(d);
}

const idoc_json *idoc_json_root(const idoc_json_doc *d) { return d ? &d->root : NULL; }

// ---- UTF-8 ------------------------------------------------------------------------------------
// Length of the valid UTF-8 sequence at s (1..4), or 0 if it is not valid (overlong forms,
// encoded surrogates and code points above U+10FFFF are invalid).
static size_t utf8_seq(const unsigned char *s, size_t n) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  size_t len;
  unsigned lo = 0x80, hi = 0xbf;
  if (c >= 0xc2 && c <= 0xdf)
    len = 2;
  else if (c == 0xe0)
    len = 3, lo = 0xa0;
  else if (c >= 0xe1 && c <= 0xec)
    len = 3;
  else if (c == 0xed)
    len = 3, hi = 0x9f;
  else if (c >= 0xee && c <= 0xef)
    len = 3;
  else if (c == 0xf0)
    len = 4, lo = 0x90;
  else if (c >= 0xf1 && c <= 0xf3)
    len = 4;
  else if (c == 0xf4)
    len = 4, hi = 0x8f;
  else
    return 0;
  if (n < len) return 0;
  if (s[1] < lo || s[1] > hi) return 0;
  for (size_t i = 2; i < len; i++)
    if (s[i] < 0x80 || s[i] > 0xbf) return 0;
  return len;
}

static size_t utf8_put(char *o, uint32_t cp) {
  if (cp < 0x80) {
    o[0] = (char)cp;
    return 1;
  }
  if (cp < 0x800) {
    o[0] = (char)(0xc0 | (cp >> 6));
    o[1] = (char)(0x80 | (cp & 0x3f));
    return 2;
  }
  if (cp < 0x10000) {
    o[0] = (char)(0xe0 | (cp >> 12));
    o[1] = (char)(0x80 | ((cp >> 6) & 0x3f));
    o[2] = (char)(0x80 | (cp & 0x3f));
    return 3;
  }
  o[0] = (char)(0xf0 | (cp >> 18));
  o[1] = (char)(0x80 | ((cp >> 12) & 0x3f));
  o[2] = (char)(0x80 | ((cp >> 6) & 0x3f));
  o[3] = (char)(0x80 | (cp & 0x3f));
  return 4;
}

// ---- parser -----------------------------------------------------------------------------------
typedef struct {
  const unsigned char *s;
  size_t n, pos;
  const char *what;
  idoc_json_doc *doc;
  int depth, max_depth;
  size_t nodes, max_nodes;
  idoc_json *stack; // finished children waiting for their container to close
  size_t sp, scap;
} parser;

__attribute__((format(printf, 3, 4))) static int fail(parser *p, size_t at, const char *fmt, ...) {
  char msg[512];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  return idoc_set_error("%s: JSON error at byte %zu: %s", p->what, at, msg);
}

// The byte at `at` for an error message: 'x' when printable, else a hex escape.
static const char *show_byte(parser *p, size_t at, char *buf, size_t n) {
  if (at >= p->n) return "end of input";
  unsigned c = p->s[at];
  if (c >= 0x20 && c < 0x7f)
    snprintf(buf, n, "'%c'", (char)c);
  else
    snprintf(buf, n, "byte 0x%02X", c);
  return buf;
}

static void skip_ws(parser *p) {
  while (p->pos < p->n) {
    unsigned char c = p->s[p->pos];
    if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
    p->pos++;
  }
}

static void push(parser *p, const idoc_json *v) {
  if (p->sp == p->scap) {
    p->scap = p->scap ? 2 * p->scap : 64;
    p->stack = idoc_xrealloc(p->stack, p->scap * sizeof *p->stack);
  }
  p->stack[p->sp++] = *v;
}

static int hex4(const unsigned char *s, uint32_t *out) {
  uint32_t v = 0;
  for (int i = 0; i < 4; i++) {
    unsigned c = s[i];
    v <<= 4;
    if (c >= '0' && c <= '9')
      v |= c - '0';
    else if (c >= 'a' && c <= 'f')
      v |= c - 'a' + 10;
    else if (c >= 'A' && c <= 'F')
      v |= c - 'A' + 10;
    else
      return -1;
  }
  *out = v;
  return 0;
}

// A string starting at the opening quote; decoded into the document's memory.
static int parse_string(parser *p, const char **out, size_t *out_len) {
  size_t start = p->pos, i = p->pos + 1, end = i;
  while (end < p->n && p->s[end] != '"')
    end += p->s[end] == '\\' ? 2 : 1;
  if (end >= p->n) return fail(p, start, "unterminated string");
  // Decoded text is never longer than the escaped text.
  char *o = doc_alloc(p->doc, end - i + 1);
  size_t k = 0;
  while (i < end) {
    unsigned c = p->s[i];
    if (c < 0x20) return fail(p, i, "control character U+%04X in string must be escaped", c);
    if (c >= 0x80) {
      size_t l = utf8_seq(p->s + i, end - i);
      if (!l) return fail(p, i, "invalid UTF-8 in string");
      memcpy(o + k, p->s + i, l);
      k += l;
      i += l;
      continue;
    }
    if (c != '\\') {
      o[k++] = (char)c;
      i++;
      continue;
    }
    unsigned e = p->s[i + 1]; // i + 1 < end: the scan above never stops inside an escape
    switch (e) {
    case '"': o[k++] = '"'; break;
    case '\\': o[k++] = '\\'; break;
    case '/': o[k++] = '/'; break;
    case 'b': o[k++] = '\b'; break;
    case 'f': o[k++] = '\f'; break;
    case 'n': o[k++] = '\n'; break;
    case 'r': o[k++] = '\r'; break;
    case 't': o[k++] = '\t'; break;
    case 'u': {
      uint32_t cp;
      if (end - i < 6 || hex4(p->s + i + 2, &cp)) return fail(p, i, "invalid \\u escape");
      if (cp >= 0xdc00 && cp <= 0xdfff) return fail(p, i, "unpaired surrogate \\u%04X", cp);
      if (cp >= 0xd800 && cp <= 0xdbff) {
        uint32_t lo;
        if (end - i < 12 || p->s[i + 6] != '\\' || p->s[i + 7] != 'u' || hex4(p->s + i + 8, &lo) ||
            lo < 0xdc00 || lo > 0xdfff)
          return fail(p, i, "unpaired surrogate \\u%04X", cp);
        cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
        i += 6;
      }
      k += utf8_put(o + k, cp);
      i += 6;
      continue;
    }
    default: return fail(p, i, "invalid escape '\\%c'", (e >= 0x20 && e < 0x7f) ? (char)e : '?');
    }
    i += 2;
  }
  o[k] = 0;
  *out = o;
  *out_len = k;
  p->pos = end + 1;
  return IDOC_OK;
}

static bool is_digit(unsigned c) { return c >= '0' && c <= '9'; }

static int parse_number(parser *p, idoc_json *v) {
  size_t start = p->pos, i = p->pos;
  const unsigned char *s = p->s;
  if (s[i] == '-') i++;
  if (i < p->n && s[i] == '0') {
    i++;
    if (i < p->n && is_digit(s[i])) return fail(p, start, "leading zeros are not allowed");
  } else if (i < p->n && is_digit(s[i])) {
    while (i < p->n && is_digit(s[i]))
      i++;
  } else {
    return fail(p, start, "invalid number");
  }
  if (i < p->n && s[i] == '.') {
    i++;
    if (i >= p->n || !is_digit(s[i])) return fail(p, i, "expected a digit after '.'");
    while (i < p->n && is_digit(s[i]))
      i++;
  }
  if (i < p->n && (s[i] == 'e' || s[i] == 'E')) {
    i++;
    if (i < p->n && (s[i] == '+' || s[i] == '-')) i++;
    if (i >= p->n || !is_digit(s[i])) return fail(p, i, "expected a digit in the exponent");
    while (i < p->n && is_digit(s[i]))
      i++;
  }
  char *t = doc_alloc(p->doc, i - start + 1);
  memcpy(t, s + start, i - start);
  t[i - start] = 0;
  v->type = IDOC_JSON_NUMBER;
  v->str = t;
  v->len = i - start;
  v->num = strtod(t, NULL);
  p->pos = i;
  return IDOC_OK;
}

static uint64_t hash_bytes(const char *s, size_t n) {
  uint64_t h = 1469598103934665603ull; // FNV-1a
  for (size_t i = 0; i < n; i++)
    h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
  return h;
}

static bool same_key(const idoc_json *a, const idoc_json *b) {
  return a->key_len == b->key_len && memcmp(a->key, b->key, a->key_len) == 0;
}

// Object keys must be unique: linear for small objects, a hash set for large ones.
static int check_unique(parser *p, const idoc_json *m, size_t n) {
  if (n <= 16) {
    for (size_t i = 1; i < n; i++)
      for (size_t j = 0; j < i; j++)
        if (same_key(&m[i], &m[j])) return fail(p, m[i].offset, "duplicate key \"%s\"", m[i].key);
    return IDOC_OK;
  }
  size_t cap = 32;
  while (cap < 2 * n)
    cap *= 2;
  uint32_t *slot = idoc_xcalloc(cap, sizeof *slot); // index + 1; 0 = empty
  int rc = IDOC_OK;
  for (size_t i = 0; i < n && rc == IDOC_OK; i++) {
    size_t h = (size_t)hash_bytes(m[i].key, m[i].key_len) & (cap - 1);
    while (slot[h]) {
      if (same_key(&m[slot[h] - 1], &m[i])) {
        rc = fail(p, m[i].offset, "duplicate key \"%s\"", m[i].key);
        break;
      }
      h = (h + 1) & (cap - 1);
    }
    slot[h] = (uint32_t)i + 1;
  }
  free(slot);
  return rc;
}

static int parse_value(parser *p, idoc_json *v);

// Arrays and objects: children are parsed onto the stack, then copied out when it closes.
static int parse_container(parser *p, idoc_json *v, bool object) {
  char close = object ? '}' : ']';
  size_t open_at = p->pos, base = p->sp;
  if (++p->depth > p->max_depth)
    return fail(p, open_at, "nesting deeper than %d levels", p->max_depth);
  p->pos++;
  skip_ws(p);
  if (p->pos < p->n && p->s[p->pos] == (unsigned char)close) {
    p->pos++;
  } else {
    for (;;) {
      idoc_json m;
      const char *key = NULL;
      size_t key_len = 0;
      skip_ws(p);
      if (object) {
        char b[16];
        if (p->pos >= p->n || p->s[p->pos] != '"')
          return fail(p, p->pos, "expected a string key, found %s",
                      show_byte(p, p->pos, b, sizeof b));
        if (parse_string(p, &key, &key_len)) return IDOC_ERR;
        skip_ws(p);
        if (p->pos >= p->n || p->s[p->pos] != ':')
          return fail(p, p->pos, "expected ':' after object key");
        p->pos++;
      }
      if (parse_value(p, &m)) return IDOC_ERR;
      m.key = key;
      m.key_len = key_len;
      push(p, &m);
      skip_ws(p);
      if (p->pos < p->n && p->s[p->pos] == ',') {
        p->pos++;
        skip_ws(p);
        if (p->pos < p->n && p->s[p->pos] == (unsigned char)close)
          return fail(p, p->pos, "trailing comma before '%c'", close);
        continue;
      }
      if (p->pos < p->n && p->s[p->pos] == (unsigned char)close) {
        p->pos++;
        break;
      }
      char b[16];
      if (p->pos >= p->n) return fail(p, open_at, "unterminated %s", object ? "object" : "array");
      return fail(p, p->pos, "expected ',' or '%c' in %s, found %s", close,
                  object ? "object" : "array", show_byte(p, p->pos, b, sizeof b));
    }
  }
  size_t n = p->sp - base;
  v->type = object ? IDOC_JSON_OBJECT : IDOC_JSON_ARRAY;
  v->n = (uint32_t)n;
  v->kids = NULL;
  if (n) {
    v->kids = doc_alloc(p->doc, n * sizeof(idoc_json));
    memcpy(v->kids, p->stack + base, n * sizeof(idoc_json));
  }
  p->sp = base;
  p->depth--;
  if (object && check_unique(p, v->kids, n)) return IDOC_ERR;
  return IDOC_OK;
}

static int parse_value(parser *p, idoc_json *v) {
  memset(v, 0, sizeof *v);
  skip_ws(p);
  v->offset = p->pos;
  if (p->pos >= p->n) return fail(p, p->pos, "unexpected end of input, expected a value");
  if (++p->nodes > p->max_nodes)
    return fail(p, p->pos, "more than %zu values in the document", p->max_nodes);
  unsigned c = p->s[p->pos];
  switch (c) {
  case '{': return parse_container(p, v, true);
  case '[': return parse_container(p, v, false);
  case '"': v->type = IDOC_JSON_STRING; return parse_string(p, &v->str, &v->len);
  case 't':
  case 'f':
  case 'n': {
    static const char *lit[] = {"true", "false", "null"};
    int k = c == 't' ? 0 : c == 'f' ? 1 : 2;
    size_t l = strlen(lit[k]);
    if (p->n - p->pos < l || memcmp(p->s + p->pos, lit[k], l) != 0)
      return fail(p, p->pos, "invalid literal (expected %s)", lit[k]);
    p->pos += l;
    v->type = k == 2 ? IDOC_JSON_NULL : IDOC_JSON_BOOL;
    v->num = k == 0;
    return IDOC_OK;
  }
  default:
    if (c == '-' || is_digit(c)) return parse_number(p, v);
    char b[16];
    return fail(p, p->pos, "unexpected %s, expected a value", show_byte(p, p->pos, b, sizeof b));
  }
}

idoc_json_doc *idoc_json_parse(const char *text, size_t n, const char *what,
                               const idoc_json_limits *lim) {
  idoc_json_limits l = lim ? *lim : (idoc_json_limits){0};
  if (!what) what = "<json>";
  if (l.max_bytes && n > l.max_bytes) {
    idoc_set_error("%s: JSON text of %zu bytes exceeds the limit of %zu", what, n, l.max_bytes);
    return NULL;
  }
  parser p = {.s = (const unsigned char *)text,
              .n = n,
              .what = what,
              .max_depth = l.max_depth > 0 ? l.max_depth : 128,
              .max_nodes = l.max_nodes ? l.max_nodes : (size_t)1 << 22};
  p.doc = idoc_xcalloc(1, sizeof *p.doc);
  int rc = IDOC_OK;
  skip_ws(&p);
  if (p.pos >= n) rc = fail(&p, p.pos, "empty input");
  if (rc == IDOC_OK) rc = parse_value(&p, &p.doc->root);
  if (rc == IDOC_OK) {
    skip_ws(&p);
    if (p.pos < n) rc = fail(&p, p.pos, "unexpected data after the JSON value");
  }
  free(p.stack);
  if (rc != IDOC_OK) {
    idoc_json_free(p.doc);
    return NULL;
  }
  return p.doc;
}

idoc_json_doc *idoc_json_parse_file(const char *path, const idoc_json_limits *lim) {
  char *text;
  size_t n;
  if (idoc_read_file(path, &text, &n)) return NULL;
  idoc_json_doc *d = idoc_json_parse(text, n, path, lim);
  free(text);
  return d;
}

// ---- access -----------------------------------------------------------------------------------
const char *idoc_json_type_name(idoc_json_type t) {
  static const char *names[] = {"null", "boolean", "number", "string", "array", "object"};
  return (unsigned)t < 6 ? names[t] : "?";
}

const idoc_json *idoc_json_get(const idoc_json *obj, const char *key) {
  if (!idoc_json_is(obj, IDOC_JSON_OBJECT) || !key) return NULL;
  size_t l = strlen(key);
  for (uint32_t i = 0; i < obj->n; i++)
    if (obj->kids[i].key_len == l && memcmp(obj->kids[i].key, key, l) == 0) return &obj->kids[i];
  return NULL;
}

const idoc_json *idoc_json_at(const idoc_json *arr, size_t i) {
  if (!idoc_json_is(arr, IDOC_JSON_ARRAY) || i >= arr->n) return NULL;
  return &arr->kids[i];
}

// "number 1.5", "string", ... for messages.
static const char *describe(const idoc_json *v, char *buf, size_t n) {
  if (!v) return "nothing";
  if (v->type == IDOC_JSON_NUMBER)
    snprintf(buf, n, "%.40s", v->str);
  else
    snprintf(buf, n, "%s", idoc_json_type_name(v->type));
  return buf;
}

int idoc_json_as_int64(const idoc_json *v, int64_t lo, int64_t hi, int64_t *out) {
  char b[64];
  bool integer = idoc_json_is(v, IDOC_JSON_NUMBER) && !strpbrk(v->str, ".eE");
  if (!integer) return idoc_set_error("expected an integer, found %s", describe(v, b, sizeof b));
  const char *s = v->str;
  bool neg = *s == '-';
  if (neg) s++;
  uint64_t mag = 0;
  bool big = false;
  for (; *s; s++) {
    unsigned d = (unsigned)(*s - '0');
    if (mag > (UINT64_MAX - d) / 10)
      big = true;
    else
      mag = mag * 10 + d;
  }
  int64_t x = 0;
  if (!big) {
    if (neg && mag <= (uint64_t)INT64_MAX + 1)
      x = mag ? -(int64_t)(mag - 1) - 1 : 0;
    else if (!neg && mag <= (uint64_t)INT64_MAX)
      x = (int64_t)mag;
    else
      big = true;
  }
  if (big || x < lo || x > hi)
    return idoc_set_error("integer %.40s out of range [%" PRId64 ", %" PRId64 "]", v->str, lo, hi);
  *out = x;
  return IDOC_OK;
}

int idoc_json_as_double(const idoc_json *v, double *out) {
  char b[64];
  if (!idoc_json_is(v, IDOC_JSON_NUMBER))
    return idoc_set_error("expected a number, found %s", describe(v, b, sizeof b));
  if (!isfinite(v->num)) return idoc_set_error("number %.40s out of range", v->str);
  *out = v->num;
  return IDOC_OK;
}

int idoc_json_as_bool(const idoc_json *v, bool *out) {
  char b[64];
  if (!idoc_json_is(v, IDOC_JSON_BOOL))
    return idoc_set_error("expected true or false, found %s", describe(v, b, sizeof b));
  *out = v->num != 0;
  return IDOC_OK;
}

int idoc_json_get_int64(const idoc_json *obj, const char *key, int64_t lo, int64_t hi, int64_t dflt,
                        int64_t *out) {
  const idoc_json *v = idoc_json_get(obj, key);
  if (!v) {
    *out = dflt;
    return IDOC_OK;
  }
  if (idoc_json_as_int64(v, lo, hi, out)) return idoc_wrap_error("\"%s\"", key);
  return IDOC_OK;
}

int idoc_json_get_double(const idoc_json *obj, const char *key, double dflt, double *out) {
  const idoc_json *v = idoc_json_get(obj, key);
  if (!v) {
    *out = dflt;
    return IDOC_OK;
  }
  if (idoc_json_as_double(v, out)) return idoc_wrap_error("\"%s\"", key);
  return IDOC_OK;
}

int idoc_json_get_bool(const idoc_json *obj, const char *key, bool dflt, bool *out) {
  const idoc_json *v = idoc_json_get(obj, key);
  if (!v) {
    *out = dflt;
    return IDOC_OK;
  }
  if (idoc_json_as_bool(v, out)) return idoc_wrap_error("\"%s\"", key);
  return IDOC_OK;
}

bool idoc_json_utf8_valid(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  for (size_t i = 0, l; i < n; i += l)
    if (!(l = utf8_seq(s + i, n - i))) return false;
  return true;
}

// ---- writing ----------------------------------------------------------------------------------
static void buf_reserve(idoc_json_buf *b, size_t extra) {
  if (b->len + extra + 1 <= b->cap) return;
  size_t cap = b->cap ? b->cap : 256;
  while (cap < b->len + extra + 1)
    cap *= 2;
  b->data = idoc_xrealloc(b->data, cap);
  b->cap = cap;
}

void idoc_json_buf_put(idoc_json_buf *b, const char *s, size_t n) {
  buf_reserve(b, n);
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = 0;
}

void idoc_json_buf_puts(idoc_json_buf *b, const char *s) { idoc_json_buf_put(b, s, strlen(s)); }

void idoc_json_buf_printf(idoc_json_buf *b, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(NULL, 0, fmt, ap);
  va_end(ap);
  if (n <= 0) return;
  buf_reserve(b, (size_t)n);
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
  va_end(ap);
  b->len += (size_t)n;
}

void idoc_json_buf_string(idoc_json_buf *b, const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  buf_reserve(b, n + 2);
  idoc_json_buf_put(b, "\"", 1);
  size_t run = 0; // start of the pending run of bytes that need no escaping
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    const char *esc = NULL;
    char u[8];
    size_t l = 1;
    if (c == '"')
      esc = "\\\"";
    else if (c == '\\')
      esc = "\\\\";
    else if (c == '\n')
      esc = "\\n";
    else if (c == '\r')
      esc = "\\r";
    else if (c == '\t')
      esc = "\\t";
    else if (c == '\b')
      esc = "\\b";
    else if (c == '\f')
      esc = "\\f";
    else if (c < 0x20) {
      snprintf(u, sizeof u, "\\u%04x", c);
      esc = u;
    } else if (c >= 0x80) {
      l = utf8_seq(s + i, n - i);
      if (!l) {
        esc = "\xEF\xBF\xBD"; // U+FFFD for an invalid byte
        l = 1;
      }
    }
    if (esc) {
      idoc_json_buf_put(b, str + run, i - run);
      idoc_json_buf_puts(b, esc);
      run = i + l;
    }
    i += l;
  }
  idoc_json_buf_put(b, str + run, n - run);
  idoc_json_buf_put(b, "\"", 1);
}

void idoc_json_buf_value(idoc_json_buf *b, const idoc_json *v) {
  switch (v->type) {
  case IDOC_JSON_NULL: idoc_json_buf_puts(b, "null"); break;
  case IDOC_JSON_BOOL: idoc_json_buf_puts(b, v->num ? "true" : "false"); break;
  case IDOC_JSON_NUMBER: idoc_json_buf_put(b, v->str, v->len); break;
  case IDOC_JSON_STRING: idoc_json_buf_string(b, v->str, v->len); break;
  case IDOC_JSON_ARRAY:
  case IDOC_JSON_OBJECT: {
    bool obj = v->type == IDOC_JSON_OBJECT;
    idoc_json_buf_put(b, obj ? "{" : "[", 1);
    for (uint32_t i = 0; i < v->n; i++) {
      if (i) idoc_json_buf_put(b, ",", 1);
      if (obj) {
        idoc_json_buf_string(b, v->kids[i].key, v->kids[i].key_len);
        idoc_json_buf_put(b, ":", 1);
      }
      idoc_json_buf_value(b, &v->kids[i]);
    }
    idoc_json_buf_put(b, obj ? "}" : "]", 1);
    break;
  }
  }
}

void idoc_json_buf_free(idoc_json_buf *b) {
  free(b->data);
  memset(b, 0, sizeof *b);
}

void idoc_json_write_string(FILE *f, const char *s) {
  idoc_json_buf b = {0};
  idoc_json_buf_string(&b, s, strlen(s));
  fwrite(b.data, 1, b.len, f);
  idoc_json_buf_free(&b);
}
