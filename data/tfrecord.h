// TFRecord files (TensorFlow's record framing) and CRC-32C. No dependencies.
//
// A file is a sequence of records, each
//   uint64 length (little endian) | uint32 masked_crc32c(length bytes) | data[length] |
//   uint32 masked_crc32c(data)
// with masked_crc(c) = ((c >> 15) | (c << 17)) + 0xa282ead8 (tensorflow/core/lib/hash/crc32c.h).
// The reader checks both CRCs and names the file, the record index and the byte offset on any
// fault (short header, bad length CRC, truncated data, bad data CRC).
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as crc32c("123456789") = 0xE3069283.
// `crc` is the value so far (0 to start); returns the updated value.
uint32_t idoc_crc32c_update(uint32_t crc, const void *data, size_t n);
static inline uint32_t idoc_crc32c(const void *data, size_t n) {
  return idoc_crc32c_update(0, data, n);
}
static inline uint32_t idoc_crc32c_mask(uint32_t crc) {
  return ((crc >> 15) | (crc << 17)) + 0xa282ead8u;
}

// Records larger than this are refused before allocating (a corrupt length field).
#define IDOC_TFRECORD_MAX_LEN (1ull << 30)

typedef struct {
  FILE *f;
  char *name;      // for error messages
  long index;      // records returned so far
  uint64_t offset; // byte offset of the next record
  uint8_t *buf;
  size_t cap;
} idoc_tfrecord_reader;

int idoc_tfrecord_open(idoc_tfrecord_reader *r, const char *path);
// Reads the next record: 1 with *data (valid until the next call) and *len, 0 at a clean end of
// file, IDOC_ERR on a framing or CRC fault (message names file, record and offset).
int idoc_tfrecord_next(idoc_tfrecord_reader *r, const uint8_t **data, size_t *len);
void idoc_tfrecord_close(idoc_tfrecord_reader *r);

// Same over a buffer in memory (`name` for messages): walks records from *pos, advancing it.
int idoc_tfrecord_next_mem(const uint8_t *buf, size_t n, size_t *pos, long index, const char *name,
                           const uint8_t **data, size_t *len);

// Appends one framed record to f. IDOC_ERR on a write error.
int idoc_tfrecord_write(FILE *f, const void *data, size_t len);
