// Test support for tests/fixtures/image: a minimal .npy reader (little-endian, C order, the dtypes
// the fixture script writes) and the manifest reader. Header-only; used by test_image*.c.
#pragma once
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/util.h"

#define IMG_FIX "tests/fixtures/image/"

typedef struct {
  char descr[8]; // "|u1", "<f4", "<i8"
  int ndim;
  int64_t shape[4];
  size_t count; // number of elements
  void *data;
  char *raw; // the whole file (data points into it)
} t_npy;

static void t_npy_free(t_npy *a) {
  free(a->raw);
  memset(a, 0, sizeof *a);
}

// Returns 0 on success; on failure prints why and returns -1.
static int t_npy_load(const char *name, t_npy *a) {
  char path[512];
  snprintf(path, sizeof path, IMG_FIX "%s", name);
  memset(a, 0, sizeof *a);
  size_t n;
  if (idoc_read_file(path, &a->raw, &n)) {
    fprintf(stderr, "%s\n", idoc_last_error());
    return -1;
  }
  const unsigned char *p = (const unsigned char *)a->raw;
  if (n < 12 || memcmp(p, "\x93NUMPY", 6) != 0) goto bad;
  size_t hlen, off;
  if (p[6] == 1) {
    hlen = p[8] | (size_t)p[9] << 8;
    off = 10;
  } else {
    hlen = p[8] | (size_t)p[9] << 8 | (size_t)p[10] << 16 | (size_t)p[11] << 24;
    off = 12;
  }
  if (off + hlen > n) goto bad;
  char hdr[1024];
  if (hlen >= sizeof hdr) goto bad;
  memcpy(hdr, a->raw + off, hlen);
  hdr[hlen] = 0;
  const char *d = strstr(hdr, "'descr': '");
  const char *s = strstr(hdr, "'shape': (");
  if (!d || !s || strstr(hdr, "'fortran_order': True")) goto bad;
  d += 10;
  size_t dl = strcspn(d, "'");
  if (dl >= sizeof a->descr) goto bad;
  memcpy(a->descr, d, dl);
  s += 10;
  a->count = 1;
  while (*s && *s != ')') {
    if (a->ndim == 4) goto bad;
    char *end;
    long long v = strtoll(s, &end, 10);
    if (end == s) break;
    a->shape[a->ndim++] = v;
    a->count *= (size_t)v;
    s = end;
    while (*s == ',' || *s == ' ')
      s++;
  }
  size_t esz = !strcmp(a->descr, "|u1")   ? 1
               : !strcmp(a->descr, "<f4") ? 4
               : !strcmp(a->descr, "<i8") ? 8
                                          : 0;
  if (!esz || off + hlen + a->count * esz != n) goto bad;
  a->data = a->raw + off + hlen;
  return 0;
bad:
  fprintf(stderr, "%s: not a supported .npy file\n", path);
  t_npy_free(a);
  return -1;
}

// Manifest: one case per line, whitespace-separated tokens, '#' comments.
typedef struct {
  int ntok;
  char tok[10][128];
} t_case;

static int t_manifest_load(t_case **cases) {
  char *text;
  size_t n;
  *cases = NULL;
  if (idoc_read_file(IMG_FIX "manifest.txt", &text, &n)) {
    fprintf(stderr, "%s\n", idoc_last_error());
    return -1;
  }
  int count = 0;
  for (char *line = strtok(text, "\n"); line; line = strtok(NULL, "\n")) {
    if (line[0] == '#' || line[0] == 0) continue;
    *cases = realloc(*cases, sizeof(t_case) * (count + 1));
    t_case *c = &(*cases)[count++];
    memset(c, 0, sizeof *c);
    for (char *p = line; *p && c->ntok < 10;) {
      while (*p == ' ')
        p++;
      size_t l = strcspn(p, " ");
      if (!l) break;
      snprintf(c->tok[c->ntok++], sizeof c->tok[0], "%.*s", (int)l, p);
      p += l;
    }
  }
  free(text);
  return count;
}
