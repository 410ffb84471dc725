// ImageDoctor prompts, response builder and parsers. Plain C, no libraries: the parsers run on
// every GRPO completion and must survive any bytes.
#include "data/imagedoctor_text.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/util.h"

// Generated from the spec's text block (imagedoctor.md 6.1; scripts/imagedoctor_texts.py holds
// the same strings). The "\\”" is a literal backslash then U+201D, as in the original.
const char idoc_prompt_stage2_template[] =
    "Given a caption and an image generated based on this caption, please analyze the "
    "provided image in detail. Evaluate it on various dimensions including Semantic Alignment "
    "(How well the image content corresponds to the caption), Aesthetics (composition, "
    "color usage, and overall artistic quality), Plausibility (realism and attention "
    "to detail), and Overall Impression (General subjective assessment of the image's "
    "quality). For each evaluation dimension, provide a score between 0-1 and provide "
    "a concise rationale for the score. Use a chain-of-thought process to detail your "
    "reasoning steps, and enclose all potential important areas and detailed reasoning "
    "within <think> and </think> tags. The important areas are represented in following "
    "format: \\” I need to focus on the bounding box area. Proposed regions (xyxy): ..., "
    "which is an enumerated list in the exact format:1.[x1,y1,x2,y2];\n"
    "2.[x1,y1,x2,y2];\n"
    "3.[x1,y1,x2,y2]… Here, x1,y1 is the top-left corner, and x2,y2 is the bottom-right "
    "corner. Then, within the <answer> and </answer> tags, summarize your assessment "
    "in the following format: \"Semantic Alignment score: ... \n"
    "Misalignment Locations: ...\n"
    "Aesthetic score: ...\n"
    "Plausibility score: ... nArtifact Locations: ...\n"
    "Overall Impression score: ...\". No additional text is allowed in the answer section.\n"
    "\n"
    " Your actual evaluation should be based on the quality of the provided image.**\n"
    "\n"
    "Your task is provided as follows:\n"
    "Text Caption: [{caption}]";

const char idoc_prompt_stage1_template[] =
    "Given a caption and an image generated based on this caption, please analyze the "
    "provided image in detail. Evaluate it on various dimensions including Semantic Alignment "
    "(How well the image content corresponds to the caption), Aesthetics (composition, "
    "color usage, and overall artistic quality), Plausibility (realism and attention "
    "to detail), and Overall Impression (General subjective assessment of the image's "
    "quality). For each evaluation dimension, provide a score between 0-1. Within the "
    "<answer> and </answer> tags, summarize your assessment in the following format: "
    "\"Semantic Alignment score: ...\n"
    "Misalignment Locations: ...\n"
    "Aesthetic score: ...\n"
    "Plausibility score: ...\n"
    "Artifact Locations: ...\n"
    "Overall Impression score: ...\". No additional text is allowed in the answer section.\n"
    "\n"
    " Your actual evaluation should be based on the quality of the provided image.**\n"
    "\n"
    "Your task is provided as follows:\n"
    "Text Caption: [{caption}]";

const char idoc_grpo_prefix[] =
    "First thinks about the reasoning process in the mind and then provides the user "
    "with the answer. The reasoning process and answer are enclosed within <think> </think> "
    "and <answer> </answer> tags, respectively, i.e., <think> reasoning process here "
    "</think><answer> answer here </answer>\n";

const char *const idoc_score_names[IDOC_N_SCORES] = {"Semantic Alignment", "Aesthetic",
                                                     "Plausibility", "Overall Impression"};

typedef struct {
  char *p;
  size_t n, cap;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
  if (b->n + n + 1 > b->cap) {
    b->cap = (b->n + n + 1) * 2;
    b->p = idoc_xrealloc(b->p, b->cap);
  }
  memcpy(b->p + b->n, s, n);
  b->n += n;
  b->p[b->n] = 0;
}
static void sb_str(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

// Replaces every `from` in s by `to` (Python's str.replace).
static char *replace_all(const char *s, const char *from, const char *to) {
  sbuf b = {0};
  size_t fl = strlen(from);
  sb_put(&b, "", 0);
  for (const char *p = s;;) {
    const char *q = strstr(p, from);
    if (!q) {
      sb_str(&b, p);
      break;
    }
    sb_put(&b, p, (size_t)(q - p));
    sb_str(&b, to);
    p = q + fl;
  }
  return b.p;
}

char *idoc_imagedoctor_prompt(int stage, const char *caption) {
  if (stage != 1 && stage != 2) return NULL;
  return replace_all(stage == 1 ? idoc_prompt_stage1_template : idoc_prompt_stage2_template,
                     "{caption}", caption ? caption : "");
}

char *idoc_grpo_prompt(const char *sft_prompt) {
  char *problem = replace_all(sft_prompt ? sft_prompt : "", "<image>", "");
  sbuf b = {0};
  sb_str(&b, idoc_grpo_prefix);
  sb_str(&b, problem);
  free(problem);
  return b.p;
}

// ---- building -----------------------------------------------------------------------------
void idoc_format_py_float(double x, char out[32]) {
  if (isnan(x)) {
    strcpy(out, "nan");
    return;
  }
  if (isinf(x)) {
    strcpy(out, x < 0 ? "-inf" : "inf");
    return;
  }
  char e[40];
  for (int p = 1; p <= 17; p++) { // shortest digits that read back as x
    snprintf(e, sizeof e, "%.*e", p - 1, x);
    if (strtod(e, NULL) == x) break;
  }
  // e = [-]d[.ddd]e(+|-)XX  ->  digits, decpt (x = 0.digits * 10^decpt)
  const char *s = e;
  bool neg = *s == '-';
  if (neg) s++;
  char digits[24];
  int nd = 0;
  for (; *s && *s != 'e'; s++)
    if (*s != '.') digits[nd++] = *s;
  int decpt = atoi(s + 1) + 1;
  while (nd > 1 && digits[nd - 1] == '0')
    nd--;
  if (nd == 1 && digits[0] == '0') decpt = 1; // zero
  char *o = out;
  if (neg) *o++ = '-';
  if (decpt <= -4 || decpt > 16) { // Python's repr switches to exponent form here
    *o++ = digits[0];
    if (nd > 1) {
      *o++ = '.';
      memcpy(o, digits + 1, (size_t)nd - 1);
      o += nd - 1;
    }
    int ex = abs(decpt - 1); // at most 324
    *o++ = 'e';
    *o++ = decpt - 1 < 0 ? '-' : '+';
    if (ex >= 100) *o++ = (char)('0' + ex / 100);
    *o++ = (char)('0' + ex / 10 % 10);
    *o++ = (char)('0' + ex % 10);
    *o = 0;
    return;
  }
  if (decpt <= 0) {
    *o++ = '0';
    *o++ = '.';
    for (int i = 0; i < -decpt; i++)
      *o++ = '0';
    memcpy(o, digits, (size_t)nd);
    o += nd;
  } else if (decpt >= nd) {
    memcpy(o, digits, (size_t)nd);
    o += nd;
    for (int i = nd; i < decpt; i++)
      *o++ = '0';
    *o++ = '.';
    *o++ = '0';
  } else {
    memcpy(o, digits, (size_t)decpt);
    o += decpt;
    *o++ = '.';
    memcpy(o, digits + decpt, (size_t)(nd - decpt));
    o += nd - decpt;
  }
  *o = 0;
}

static void put_score(sbuf *b, double v, int decimals) {
  char buf[64];
  if (decimals < 0 || !isfinite(v))
    idoc_format_py_float(v, buf);
  else
    snprintf(buf, sizeof buf, "%.*f", decimals > 17 ? 17 : decimals, v);
  sb_str(b, buf);
}

static void put_coord(sbuf *b, double v) {
  char buf[64];
  if (isfinite(v) && v == floor(v) && fabs(v) < 1e15)
    snprintf(buf, sizeof buf, "%.0f", v);
  else
    idoc_format_py_float(v, buf);
  sb_str(b, buf);
}

idoc_response_opts idoc_response_opts_default(int stage) {
  idoc_response_opts o = {0};
  o.think = stage >= 2;
  o.box_style = IDOC_BOXES_CODE;
  o.locations_lines = stage >= 2;
  o.task_tokens = stage >= 2;
  o.score_decimals = -1;
  return o;
}

char *idoc_build_response(const idoc_response *r, const idoc_response_opts *o, size_t *len) {
  const char *mis = o->mis_token ? o->mis_token : IDOC_MIS_TOKEN;
  const char *art = o->art_token ? o->art_token : IDOC_ART_TOKEN;
  bool paper = o->box_style == IDOC_BOXES_PAPER;
  sbuf b = {0};
  sb_put(&b, "", 0);
  if (o->think) {
    sb_str(&b, "<think>I need to focus on the bounding box area. Proposed regions (xyxy): ");
    if (r->n_boxes == 0) sb_str(&b, "none.");
    for (size_t i = 0; i < r->n_boxes; i++) {
      char num[32];
      snprintf(num, sizeof num, paper ? "%zu:[" : "%zu.[", i + 1);
      if (i) sb_str(&b, paper ? " " : "\n");
      sb_str(&b, num);
      for (int k = 0; k < 4; k++) {
        if (k) sb_str(&b, ",");
        put_coord(&b, r->boxes[i][k]);
      }
      sb_str(&b, paper && i + 1 == r->n_boxes ? "]." : "];");
    }
    if (r->reasoning && r->reasoning[0]) {
      sb_str(&b, "\n\n");
      sb_str(&b, r->reasoning);
    }
    sb_str(&b, "</think>\n\n");
  }
  bool lines = o->locations_lines && o->task_tokens;
  const char *sep = lines ? "\n" : " ";
  sb_str(&b, "<answer>Semantic Alignment score: ");
  put_score(&b, r->scores[IDOC_SCORE_SEMANTIC], o->score_decimals);
  sb_str(&b, ";");
  sb_str(&b, sep);
  if (lines) {
    sb_str(&b, "Misalignment Locations: ");
    sb_str(&b, mis);
    sb_str(&b, "\n");
  }
  sb_str(&b, "Aesthetic score: ");
  put_score(&b, r->scores[IDOC_SCORE_AESTHETIC], o->score_decimals);
  sb_str(&b, ";");
  sb_str(&b, sep);
  sb_str(&b, "Plausibility score: ");
  put_score(&b, r->scores[IDOC_SCORE_PLAUSIBILITY], o->score_decimals);
  sb_str(&b, ";");
  sb_str(&b, sep);
  if (lines) {
    sb_str(&b, "Artifact Locations: ");
    sb_str(&b, art);
    sb_str(&b, "\n");
  }
  sb_str(&b, "Overall Impression score: ");
  put_score(&b, r->scores[IDOC_SCORE_OVERALL], o->score_decimals);
  if (o->task_tokens && !lines) { // paper layout: the tokens close the answer
    sb_str(&b, " ");
    sb_str(&b, mis);
    sb_str(&b, art);
  }
  sb_str(&b, "</answer>");
  if (len) *len = b.n;
  return b.p;
}

// ---- parsing ------------------------------------------------------------------------------
// Python's \d (Unicode Nd, here from Python 3.11's Unicode 14 tables): each block of ten starts
// at one of these zeros.
static const uint32_t nd_zeros[] = {
    0x30,    0x660,   0x6F0,   0x7C0,   0x966,   0x9E6,   0xA66,   0xAE6,   0xB66,   0xBE6,
    0xC66,   0xCE6,   0xD66,   0xDE6,   0xE50,   0xED0,   0xF20,   0x1040,  0x1090,  0x17E0,
    0x1810,  0x1946,  0x19D0,  0x1A80,  0x1A90,  0x1B50,  0x1BB0,  0x1C40,  0x1C50,  0xA620,
    0xA8D0,  0xA900,  0xA9D0,  0xA9F0,  0xAA50,  0xABF0,  0xFF10,  0x104A0, 0x10D30, 0x11066,
    0x110F0, 0x11136, 0x111D0, 0x112F0, 0x11450, 0x114D0, 0x11650, 0x116C0, 0x11730, 0x118E0,
    0x11950, 0x11C50, 0x11D50, 0x11DA0, 0x16A60, 0x16AC0, 0x16B50, 0x1D7CE, 0x1D7D8, 0x1D7E2,
    0x1D7EC, 0x1D7F6, 0x1E140, 0x1E2F0, 0x1E950, 0x1FBF0};

// Digit value of cp, or -1.
static int py_digit(uint32_t cp) {
  if (cp >= '0' && cp <= '9') return (int)(cp - '0');
  if (cp < 0x660) return -1;
  for (size_t i = 1; i < sizeof nd_zeros / sizeof nd_zeros[0]; i++)
    if (cp >= nd_zeros[i] && cp < nd_zeros[i] + 10) return (int)(cp - nd_zeros[i]);
  return -1;
}

// Python's \s for str patterns (str.isspace()).
static bool py_space(uint32_t cp) {
  if (cp < 0x80) return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20);
  return cp == 0x85 || cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) ||
         cp == 0x2028 || cp == 0x2029 || cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

// Decodes one code point at s[i] (i < n). Invalid UTF-8 reads as U+FFFD over one byte: it is
// neither a digit nor a space, which is all the matchers ask.
static uint32_t next_cp(const uint8_t *s, size_t n, size_t i, size_t *len) {
  uint8_t c = s[i];
  if (c < 0x80) {
    *len = 1;
    return c;
  }
  int need = c >= 0xC2 && c <= 0xDF   ? 1
             : c >= 0xE0 && c <= 0xEF ? 2
             : c >= 0xF0 && c <= 0xF4 ? 3
                                      : 0;
  uint32_t cp = need == 1 ? c & 0x1Fu : need == 2 ? c & 0x0Fu : c & 0x07u;
  if (!need || n - i <= (size_t)need) {
    *len = 1;
    return 0xFFFD;
  }
  for (int k = 1; k <= need; k++) {
    uint8_t b = s[i + (size_t)k];
    if ((b & 0xC0) != 0x80) {
      *len = 1;
      return 0xFFFD;
    }
    cp = (cp << 6) | (b & 0x3Fu);
  }
  static const uint32_t min_cp[4] = {0, 0x80, 0x800, 0x10000};
  if (cp < min_cp[need] || cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) {
    *len = 1;
    return 0xFFFD;
  }
  *len = (size_t)need + 1;
  return cp;
}

static size_t skip_spaces(const uint8_t *s, size_t n, size_t i) {
  while (i < n) {
    size_t l;
    if (!py_space(next_cp(s, n, i, &l))) break;
    i += l;
  }
  return i;
}

// num = [+-]?\d+(\.\d+)? at s[i]: returns the end (or 0 when no match) and float(num) in *v
// (float() accepts any Nd digits: they are converted to ASCII for strtod, which like float()
// rounds correctly and gives inf past the double range).
static size_t match_num(const uint8_t *s, size_t n, size_t i, double *v) {
  sbuf b = {0};
  if (i < n && (s[i] == '+' || s[i] == '-')) sb_put(&b, (const char *)s + i++, 1);
  for (int part = 0; part < 2; part++) {
    size_t j = i, l, mark = b.n;
    if (part == 1) {
      if (j >= n || s[j] != '.') break;
      j++;
      sb_put(&b, ".", 1);
    }
    size_t digits = 0;
    int d;
    while (j < n && (d = py_digit(next_cp(s, n, j, &l))) >= 0) {
      char c = (char)('0' + d);
      sb_put(&b, &c, 1);
      digits++;
      j += l;
    }
    if (digits == 0) {
      if (part == 0) { // \d+ needs a digit
        free(b.p);
        return 0;
      }
      b.n = mark; // "(\.\d+)?" absent: the '.' stays unconsumed
      b.p[b.n] = 0;
      break;
    }
    i = j;
  }
  *v = strtod(b.p, NULL);
  free(b.p);
  return i;
}

// One box at s[i] == '[': returns the end of the match or 0.
static size_t match_box(const uint8_t *s, size_t n, size_t i, double v[4]) {
  i++;
  for (int k = 0; k < 4; k++) {
    i = skip_spaces(s, n, i);
    size_t e = match_num(s, n, i, &v[k]);
    if (!e) return 0;
    i = skip_spaces(s, n, e);
    char want = k < 3 ? ',' : ']';
    if (i >= n || s[i] != want) return 0;
    i++;
  }
  return i;
}

static const uint8_t *find(const uint8_t *s, size_t n, size_t from, const char *needle) {
  size_t m = strlen(needle);
  if (from > n || n - from < m) return NULL;
  for (size_t i = from; i + m <= n; i++) {
    const uint8_t *p = memchr(s + i, needle[0], n - m + 1 - i);
    if (!p) return NULL;
    i = (size_t)(p - s);
    if (!memcmp(p, needle, m)) return p;
  }
  return NULL;
}

// First `<open>(.*?)</close>`: re.search tries "<open>" positions left to right, and the first
// one with a closing tag after it wins (a later "<open>" would need a later close).
static bool find_block(const uint8_t *s, size_t n, const char *open, const char *close, size_t *b,
                       size_t *e) {
  const uint8_t *o = find(s, n, 0, open);
  if (!o) return false;
  size_t start = (size_t)(o - s) + strlen(open);
  const uint8_t *c = find(s, n, start, close);
  if (!c) return false;
  *b = start;
  *e = (size_t)(c - s);
  return true;
}

// `NAME score: ([0-9.]+)` (+ ';' when semi) searched in s[0..n): the first position where the
// whole pattern matches. [0-9.]+ is greedy and a shorter run would end on a digit or '.', so
// only the full run can be followed by ';'.
static void match_score(const uint8_t *s, size_t n, const char *name, bool semi, bool *found,
                        bool *valid, double *v) {
  char prefix[64];
  snprintf(prefix, sizeof prefix, "%s score: ", name);
  size_t pl = strlen(prefix);
  *found = *valid = false;
  *v = 0;
  for (const uint8_t *p = find(s, n, 0, prefix); p; p = find(s, n, (size_t)(p - s) + 1, prefix)) {
    size_t i = (size_t)(p - s) + pl, j = i, dots = 0, digits = 0;
    while (j < n && ((s[j] >= '0' && s[j] <= '9') || s[j] == '.')) {
      dots += s[j] == '.';
      digits += s[j] != '.';
      j++;
    }
    if (j == i || (semi && (j >= n || s[j] != ';'))) continue;
    *found = true;
    // float() takes "5", "5.", ".5", "0.58"; not "." nor "1.2.3".
    if (dots <= 1 && digits >= 1) {
      size_t len = j - i;
      char stack[64], *buf = len < sizeof stack ? stack : idoc_xmalloc(len + 1);
      memcpy(buf, s + i, len);
      buf[len] = 0;
      *v = strtod(buf, NULL);
      *valid = true;
      if (buf != stack) free(buf);
    }
    return;
  }
}

static void find_token(const uint8_t *s, size_t n, const char *tok, long *pos, int *count) {
  *pos = -1;
  *count = 0;
  size_t m = strlen(tok);
  if (!m) return;
  for (const uint8_t *p = find(s, n, 0, tok); p; p = find(s, n, (size_t)(p - s) + m, tok)) {
    if (*pos < 0) *pos = (long)(p - s);
    if (*count < 1000000) (*count)++;
  }
}

void idoc_parse_response(const char *text, size_t len, const idoc_response_opts *opts,
                         idoc_parsed_response *out) {
  memset(out, 0, sizeof *out);
  const uint8_t *s = (const uint8_t *)(text ? text : "");
  if (!text) len = 0;
  out->has_answer =
      find_block(s, len, "<answer>", "</answer>", &out->answer_begin, &out->answer_end);
  out->has_think = find_block(s, len, "<think>", "</think>", &out->think_begin, &out->think_end);
  if (out->has_answer) {
    const uint8_t *a = s + out->answer_begin;
    size_t an = out->answer_end - out->answer_begin;
    for (int k = 0; k < IDOC_N_SCORES; k++)
      match_score(a, an, idoc_score_names[k], k != IDOC_SCORE_OVERALL, &out->score_found[k],
                  &out->score_valid[k], &out->score[k]);
  }
  size_t cap = 0;
  for (size_t i = 0; i < len;) {
    const uint8_t *p = memchr(s + i, '[', len - i);
    if (!p) break;
    i = (size_t)(p - s);
    double v[4];
    size_t e = match_box(s, len, i, v);
    if (!e) {
      i++;
      continue;
    }
    if (out->n_boxes == cap) {
      cap = cap ? cap * 2 : 8;
      out->boxes = idoc_xrealloc(out->boxes, cap * sizeof *out->boxes);
    }
    out->boxes[out->n_boxes++] = (idoc_box){v[0], v[1], v[2], v[3], i, e};
    i = e;
  }
  const char *mis = opts && opts->mis_token ? opts->mis_token : IDOC_MIS_TOKEN;
  const char *art = opts && opts->art_token ? opts->art_token : IDOC_ART_TOKEN;
  find_token(s, len, mis, &out->mis_pos, &out->n_mis);
  find_token(s, len, art, &out->art_pos, &out->n_art);
}

void idoc_parsed_response_free(idoc_parsed_response *r) {
  free(r->boxes);
  memset(r, 0, sizeof *r);
}

idoc_task_token_pos idoc_find_task_tokens(const int32_t *ids, size_t n, int32_t mis_id,
                                          int32_t art_id) {
  idoc_task_token_pos p = {-1, -1, 0, 0};
  for (size_t i = 0; i < n; i++) {
    if (ids[i] == mis_id) {
      if (p.first_mis < 0) p.first_mis = (long)i;
      p.n_mis++;
    }
    if (ids[i] == art_id) {
      if (p.first_art < 0) p.first_art = (long)i;
      p.n_art++;
    }
  }
  return p;
}
