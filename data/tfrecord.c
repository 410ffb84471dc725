// TFRecord framing and CRC-32C (slicing-by-8 tables built once).
#include "data/tfrecord.h"

#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "nn/util.h"

static uint32_t crc_tab[8][256];
static pthread_once_t crc_once = PTHREAD_ONCE_INIT;

static void crc_init(void) {
  for (uint32_t i = 0; i < 256; i++) {
    uint32_t c = i;
    for (int k = 0; k < 8; k++)
      c = (c >> 1) ^ (0x82F63B78u & (0u - (c & 1u)));
    crc_tab[0][i] = c;
  }
  for (uint32_t i = 0; i < 256; i++)
    for (int t = 1; t < 8; t++)
      crc_tab[t][i] = (crc_tab[t - 1][i] >> 8) ^ crc_tab[0][crc_tab[t - 1][i] & 0xff];
}

uint32_t idoc_crc32c_update(uint32_t crc, const void *data, size_t n) {
  pthread_once(&crc_once, crc_init);
  const uint8_t *p = data;
  uint32_t c = ~crc;
  while (n >= 8) {
    uint32_t lo =
        c ^ ((uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24);
    c = crc_tab[7][lo & 0xff] ^ crc_tab[6][(lo >> 8) & 0xff] ^ crc_tab[5][(lo >> 16) & 0xff] ^
        crc_tab[4][lo >> 24] ^ crc_tab[3][p[4]] ^ crc_tab[2][p[5]] ^ crc_tab[1][p[6]] ^
        crc_tab[0][p[7]];
    p += 8;
    n -= 8;
  }
  while (n--)
    c = (c >> 8) ^ crc_tab[0][(c ^ *p++) & 0xff];
  return ~c;
}

static uint64_t rd64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 7; i >= 0; i--)
    v = v << 8 | p[i];
  return v;
}
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

int idoc_tfrecord_open(idoc_tfrecord_reader *r, const char *path) {
  memset(r, 0, sizeof *r);
  r->f = fopen(path, "rb");
  if (!r->f) return idoc_set_error("%s: cannot open TFRecord file", path);
  r->name = idoc_xstrdup(path);
  return IDOC_OK;
}

void idoc_tfrecord_close(idoc_tfrecord_reader *r) {
  if (r->f) fclose(r->f);
  free(r->name);
  free(r->buf);
  memset(r, 0, sizeof *r);
}

// Checks a 12-byte header; returns the data length or sets an error.
static int check_header(const uint8_t *h, const char *name, long index, uint64_t off,
                        uint64_t *len) {
  *len = rd64(h);
  if (idoc_crc32c_mask(idoc_crc32c(h, 8)) != rd32(h + 8))
    return idoc_set_error("%s: record %ld (byte %llu): length CRC mismatch (corrupt file)", name,
                          index, (unsigned long long)off);
  if (*len > IDOC_TFRECORD_MAX_LEN)
    return idoc_set_error("%s: record %ld (byte %llu): length %llu exceeds the %llu-byte limit",
                          name, index, (unsigned long long)off, (unsigned long long)*len,
                          (unsigned long long)IDOC_TFRECORD_MAX_LEN);
  return IDOC_OK;
}

static int check_data(const uint8_t *d, uint64_t len, const uint8_t *crc, const char *name,
                      long index, uint64_t off) {
  if (idoc_crc32c_mask(idoc_crc32c(d, len)) != rd32(crc))
    return idoc_set_error("%s: record %ld (byte %llu): data CRC mismatch (corrupt file)", name,
                          index, (unsigned long long)off);
  return IDOC_OK;
}

int idoc_tfrecord_next(idoc_tfrecord_reader *r, const uint8_t **data, size_t *len) {
  uint8_t h[12];
  size_t got = fread(h, 1, 12, r->f);
  if (got == 0 && feof(r->f)) return 0;
  if (got != 12)
    return idoc_set_error("%s: record %ld (byte %llu): truncated header (%zu of 12 bytes)", r->name,
                          r->index, (unsigned long long)r->offset, got);
  uint64_t n;
  if (check_header(h, r->name, r->index, r->offset, &n)) return IDOC_ERR;
  if (n + 4 > r->cap) {
    r->cap = (size_t)n + 4;
    r->buf = idoc_xrealloc(r->buf, r->cap);
  }
  got = fread(r->buf, 1, (size_t)n + 4, r->f);
  if (got != n + 4)
    return idoc_set_error("%s: record %ld (byte %llu): truncated data (%zu of %llu bytes)", r->name,
                          r->index, (unsigned long long)r->offset, got, (unsigned long long)n + 4);
  if (check_data(r->buf, n, r->buf + n, r->name, r->index, r->offset)) return IDOC_ERR;
  r->offset += 12 + n + 4;
  r->index++;
  *data = r->buf;
  *len = (size_t)n;
  return 1;
}

int idoc_tfrecord_next_mem(const uint8_t *buf, size_t n, size_t *pos, long index, const char *name,
                           const uint8_t **data, size_t *len) {
  size_t p = *pos;
  if (p == n) return 0;
  if (n - p < 12)
    return idoc_set_error("%s: record %ld (byte %zu): truncated header (%zu of 12 bytes)", name,
                          index, p, n - p);
  uint64_t m;
  if (check_header(buf + p, name, index, p, &m)) return IDOC_ERR;
  if (n - p - 12 < m + 4)
    return idoc_set_error("%s: record %ld (byte %zu): truncated data (%zu of %llu bytes)", name,
                          index, p, n - p - 12, (unsigned long long)m + 4);
  if (check_data(buf + p + 12, m, buf + p + 12 + m, name, index, p)) return IDOC_ERR;
  *data = buf + p + 12;
  *len = (size_t)m;
  *pos = p + 12 + (size_t)m + 4;
  return 1;
}

int idoc_tfrecord_write(FILE *f, const void *data, size_t len) {
  uint8_t h[12];
  uint64_t l = len;
  for (int i = 0; i < 8; i++)
    h[i] = (uint8_t)(l >> (8 * i));
  uint32_t c = idoc_crc32c_mask(idoc_crc32c(h, 8));
  for (int i = 0; i < 4; i++)
    h[8 + i] = (uint8_t)(c >> (8 * i));
  uint32_t d = idoc_crc32c_mask(idoc_crc32c(data, len));
  uint8_t t[4] = {(uint8_t)d, (uint8_t)(d >> 8), (uint8_t)(d >> 16), (uint8_t)(d >> 24)};
  if (fwrite(h, 1, 12, f) != 12 || fwrite(data, 1, len, f) != len || fwrite(t, 1, 4, f) != 4)
    return idoc_set_error("TFRecord write failed");
  return IDOC_OK;
}
