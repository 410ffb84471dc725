// idoc-requires: png jpeg
// libFuzzer target: PNG/JPEG decoding from memory, then resizing and the Qwen processor on
// whatever decodes. Most mutations of a PNG break a chunk CRC and stop at the first chunk, so
// for two inputs in three the harness repairs the CRCs first to let mutations reach the
// decompressor and the pixel transforms.
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"

static uint32_t crc_table[256];

static void crc_init(void) {
  for (uint32_t n = 0; n < 256; n++) {
    uint32_t c = n;
    for (int k = 0; k < 8; k++)
      c = c & 1 ? 0xedb88320u ^ (c >> 1) : c >> 1;
    crc_table[n] = c;
  }
}

static uint32_t crc32_of(const uint8_t *p, size_t n) {
  uint32_t c = 0xffffffffu;
  for (size_t i = 0; i < n; i++)
    c = crc_table[(c ^ p[i]) & 0xff] ^ (c >> 8);
  return c ^ 0xffffffffu;
}

static void fix_png_crcs(uint8_t *d, size_t n) {
  size_t pos = 8;
  while (pos + 12 <= n) {
    uint32_t len = (uint32_t)d[pos] << 24 | (uint32_t)d[pos + 1] << 16 | (uint32_t)d[pos + 2] << 8 |
                   d[pos + 3];
    if (len > n - pos - 12) break;
    uint32_t c = crc32_of(d + pos + 4, (size_t)len + 4);
    uint8_t *q = d + pos + 8 + len;
    q[0] = (uint8_t)(c >> 24);
    q[1] = (uint8_t)(c >> 16);
    q[2] = (uint8_t)(c >> 8);
    q[3] = (uint8_t)c;
    pos += (size_t)len + 12;
  }
}

int LLVMFuzzerInitialize(int *argc, char ***argv) {
  crc_init();
  idoc_image_set_max_pixels(1u << 22); // keep allocations well under the RSS limit
  return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  uint8_t *buf = malloc(size ? size : 1);
  if (size) memcpy(buf, data, size);
  if (size >= 8 && size % 3 != 0 && memcmp(buf, "\x89PNG", 4) == 0) fix_png_crcs(buf, size);
  idoc_image im;
  if (idoc_image_decode(buf, size, "fuzz", &im) == 0) {
    if ((int64_t)im.h * im.w <= 65536) {
      idoc_resample filters[3] = {IDOC_RESAMPLE_BICUBIC, IDOC_RESAMPLE_BILINEAR,
                                  IDOC_RESAMPLE_LANCZOS};
      idoc_image small;
      if (idoc_image_resize(&im, im.h % 7 + 1, im.w % 5 + 1, filters[(im.h + im.w) % 3], &small) ==
          0)
        idoc_image_free(&small);
      idoc_qwen_image_opts o;
      idoc_qwen_image_opts_default(&o);
      o.max_pixels = 28 * 28 * 16;
      float *pv = NULL;
      int64_t np, grid[3];
      if (idoc_qwen_preprocess(&im, &o, "fuzz", &pv, &np, grid) == 0) free(pv);
    }
    idoc_image_free(&im);
  }
  free(buf);
  return 0;
}
