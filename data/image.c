// Format dispatch for image decoding; the decoders live in image_png.c / image_jpeg.c and are
// compiled only when libpng / libjpeg were found.
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "data/image_codec.h"
#include "nn/util.h"

static uint64_t max_pixels = IDOC_IMAGE_DEFAULT_MAX_PIXELS;

void idoc_image_set_max_pixels(uint64_t n) { max_pixels = n; }
uint64_t idoc_image_get_max_pixels(void) { return max_pixels; }

int idoc_image_check_size(const char *name, uint64_t w, uint64_t h) {
  if (w == 0 || h == 0)
    return idoc_set_error("%s: image has zero size (%llux%llu)", name, (unsigned long long)w,
                          (unsigned long long)h);
  if (w > (1u << 30) || h > (1u << 30) || w * h > max_pixels)
    return idoc_set_error("%s: image size %llux%llu exceeds the limit of %llu pixels", name,
                          (unsigned long long)w, (unsigned long long)h,
                          (unsigned long long)max_pixels);
  return IDOC_OK;
}

void idoc_image_free(idoc_image *im) {
  if (!im) return;
  free(im->rgb);
  im->rgb = NULL;
  im->h = im->w = 0;
}

int idoc_image_decode(const uint8_t *data, size_t n, const char *name, idoc_image *out) {
  static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
  memset(out, 0, sizeof *out);
  if (!name) name = "<memory>";
  if (n >= 8 && memcmp(data, png_sig, 8) == 0) {
#if IDOC_HAVE_PNG
    return idoc_png_decode(data, n, name, out);
#else
    return idoc_set_error("%s: PNG support was not built (libpng not found)", name);
#endif
  }
  if (n >= 3 && data[0] == 0xff && data[1] == 0xd8 && data[2] == 0xff) {
#if IDOC_HAVE_JPEG
    return idoc_jpeg_decode(data, n, name, out);
#else
    return idoc_set_error("%s: JPEG support was not built (libjpeg not found)", name);
#endif
  }
  return idoc_set_error("%s: not a PNG or JPEG file", name);
}

int idoc_image_load(const char *path, idoc_image *out) {
  char *data;
  size_t n;
  memset(out, 0, sizeof *out);
  if (idoc_read_file(path, &data, &n)) return IDOC_ERR;
  int rc = idoc_image_decode((const uint8_t *)data, n, path, out);
  free(data);
  return rc;
}
