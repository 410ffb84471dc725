// Internal: the per-format decoders behind idoc_image_decode (built only with their library).
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "data/image.h"

int idoc_png_decode(const uint8_t *data, size_t n, const char *name, idoc_image *out);
int idoc_jpeg_decode(const uint8_t *data, size_t n, const char *name, idoc_image *out);
// Checks a header's dimensions against the pixel limit before anything is allocated.
int idoc_image_check_size(const char *name, uint64_t w, uint64_t h);
