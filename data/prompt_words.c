// Prompt word split and label parsing for RichHF-18K's per-word labels.
#include "data/prompt_words.h"

#include <string.h>

static int is_sep(char c) { return c && strchr(",.?!\":; ", c) != NULL; }

int idoc_prompt_words(const char *prompt, size_t *starts, size_t *lens, int cap) {
  int n = 0;
  size_t i = 0;
  if (!prompt) return 0;
  while (prompt[i]) {
    while (prompt[i] && is_sep(prompt[i]))
      i++;
    if (!prompt[i]) break;
    size_t b = i;
    while (prompt[i] && !is_sep(prompt[i]))
      i++;
    if (n < cap && starts) starts[n] = b;
    if (n < cap && lens) lens[n] = i - b;
    n++;
  }
  return n;
}

int idoc_parse_word_labels(const char *s, uint8_t *labels, int cap) {
  int n = 0;
  if (!s) return 0;
  for (size_t i = 0; s[i];) {
    if (s[i] == ' ' || s[i] == '\t' || s[i] == '\n' || s[i] == '\r') {
      i++;
      continue;
    }
    if ((s[i] != '0' && s[i] != '1') ||
        (s[i + 1] && s[i + 1] != ' ' && s[i + 1] != '\t' && s[i + 1] != '\n' && s[i + 1] != '\r'))
      return -1;
    if (labels && n < cap) labels[n] = (uint8_t)(s[i] - '0');
    n++;
    i++;
  }
  return n;
}

int idoc_utf8_is_valid(const char *str, size_t n) {
  const unsigned char *s = (const unsigned char *)str;
  for (size_t i = 0; i < n;) {
    unsigned c = s[i];
    if (c < 0x80) {
      i++;
      continue;
    }
    int k;
    unsigned cp, min;
    if ((c & 0xe0) == 0xc0)
      k = 1, cp = c & 0x1f, min = 0x80;
    else if ((c & 0xf0) == 0xe0)
      k = 2, cp = c & 0x0f, min = 0x800;
    else if ((c & 0xf8) == 0xf0)
      k = 3, cp = c & 0x07, min = 0x10000;
    else
      return 0;
    if (n - i <= (size_t)k) return 0;
    for (int j = 1; j <= k; j++) {
      if ((s[i + j] & 0xc0) != 0x80) return 0;
      cp = cp << 6 | (s[i + j] & 0x3f);
    }
    if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
    i += (size_t)k + 1;
  }
  return 1;
}
