// TFRecord framing and CRC-32C: published check values, a file written by the `tfrecord` PyPI
// package (scripts/make_richhf_fixture.py), round trips, and every corruption named.
#include <string.h>

#include "data/tfrecord.h"
#include "nn/util.h"
#include "tests/test.h"

static void test_crc(void) {
  // RFC 3720 (iSCSI) B.4 test vectors and the common "123456789" check value.
  T_CHECK(idoc_crc32c("123456789", 9) == 0xE3069283u, "check value");
  uint8_t z[32] = {0}, o[32], inc[32], dec[32];
  for (int i = 0; i < 32; i++)
    o[i] = 0xff, inc[i] = (uint8_t)i, dec[i] = (uint8_t)(31 - i);
  T_CHECK(idoc_crc32c(z, 32) == 0x8A9136AAu, "zeros");
  T_CHECK(idoc_crc32c(o, 32) == 0x62A8AB43u, "ones");
  T_CHECK(idoc_crc32c(inc, 32) == 0x46DD794Eu, "incrementing");
  T_CHECK(idoc_crc32c(dec, 32) == 0x113FDB5Cu, "decrementing");
  T_CHECK(idoc_crc32c_update(idoc_crc32c(inc, 13), inc + 13, 19) == 0x46DD794Eu, "incremental");
  T_CHECK(idoc_crc32c_mask(0) == 0xa282ead8u, "mask of zero");
}

static void test_fixture(void) {
  const char *path = "tests/fixtures/richhf/train.tfrecord";
  idoc_tfrecord_reader r;
  T_CHECK(idoc_tfrecord_open(&r, path) == IDOC_OK, "%s", idoc_last_error());
  const uint8_t *d;
  size_t n;
  int got, count = 0;
  while ((got = idoc_tfrecord_next(&r, &d, &n)) == 1) {
    count++;
    T_CHECK(n > 100, "record %d has %zu bytes", count, n);
  }
  T_CHECK(got == 0, "clean end: %s", idoc_last_error());
  T_CHECK(count == 5, "records: %d", count);
  idoc_tfrecord_close(&r);

  // The fixture with a flipped data byte in record 1: the error names file, record, CRC.
  const char *bad = "tests/fixtures/richhf/bad_crc.tfrecord";
  T_CHECK(idoc_tfrecord_open(&r, bad) == IDOC_OK, "%s", idoc_last_error());
  T_CHECK(idoc_tfrecord_next(&r, &d, &n) == 1, "record 0 intact");
  T_CHECK(idoc_tfrecord_next(&r, &d, &n) == IDOC_ERR, "record 1 corrupt");
  const char *e = idoc_last_error();
  T_CHECK(strstr(e, bad) && strstr(e, "record 1") && strstr(e, "data CRC mismatch"), "%s", e);
  idoc_tfrecord_close(&r);
}

static void test_roundtrip_and_corruption(void) {
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  const char *recs[3] = {"", "hello", "a longer record with more than eight bytes"};
  for (int i = 0; i < 3; i++)
    T_CHECK(idoc_tfrecord_write(f, recs[i], strlen(recs[i])) == 0, "w");
  fclose(f);
  T_CHECK(len == 3 * 16 + 0 + 5 + 42, "file size %zu", len);
  size_t pos = 0;
  const uint8_t *d;
  size_t n;
  for (int i = 0; i < 3; i++) {
    T_CHECK(idoc_tfrecord_next_mem((uint8_t *)buf, len, &pos, i, "mem", &d, &n) == 1, "read %d", i);
    T_CHECK(n == strlen(recs[i]) && !memcmp(d, recs[i], n), "record %d content", i);
  }
  T_CHECK(idoc_tfrecord_next_mem((uint8_t *)buf, len, &pos, 3, "mem", &d, &n) == 0, "end");

  // Truncated inside the last record's data, and inside a header.
  pos = 16 + 21;
  T_CHECK(idoc_tfrecord_next_mem((uint8_t *)buf, len - 3, &pos, 2, "mem", &d, &n) == IDOC_ERR,
          "truncated data");
  T_CHECK(strstr(idoc_last_error(), "record 2") && strstr(idoc_last_error(), "truncated data"),
          "%s", idoc_last_error());
  pos = 16 + 21;
  T_CHECK(idoc_tfrecord_next_mem((uint8_t *)buf, 16 + 21 + 7, &pos, 2, "mem", &d, &n) == IDOC_ERR,
          "truncated header");
  T_CHECK(strstr(idoc_last_error(), "truncated header"), "%s", idoc_last_error());
  // A corrupt length field fails its own CRC before anything is allocated.
  buf[16 + 21 + 3] ^= 0x40;
  pos = 16 + 21;
  T_CHECK(idoc_tfrecord_next_mem((uint8_t *)buf, len, &pos, 2, "mem", &d, &n) == IDOC_ERR, "len");
  T_CHECK(strstr(idoc_last_error(), "length CRC mismatch") && strstr(idoc_last_error(), "byte 37"),
          "%s", idoc_last_error());
  free(buf);
}

int main(void) {
  test_crc();
  test_fixture();
  test_roundtrip_and_corruption();
  return t_summary("test_tfrecord");
}
