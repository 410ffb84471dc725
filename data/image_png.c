// idoc-requires: png
// PNG decode (any bit depth / colour type, interlaced or not) to RGB with alpha over white, and
// an atomic 8-bit PNG writer. libpng reports errors by longjmp; everything that must be freed
// afterwards lives in a context struct, never in locals of the function that called setjmp.
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/image.h"
#include "data/image_codec.h"
#include "nn/util.h"

typedef struct {
  const uint8_t *data;
  size_t n, pos;
  char msg[256];
  png_structp png;
  png_infop info;
  uint8_t *row, *full, *rgb;
  png_bytep *rows;
} png_ctx;

static void ctx_error(png_structp png, png_const_charp msg) {
  png_ctx *c = png_get_error_ptr(png);
  snprintf(c->msg, sizeof c->msg, "%s", msg);
  png_longjmp(png, 1);
}

static void ctx_warning(png_structp png, png_const_charp msg) {} // PIL ignores them too

static void ctx_read(png_structp png, png_bytep out, size_t len) {
  png_ctx *c = png_get_io_ptr(png);
  if (len > c->n - c->pos) png_error(png, "unexpected end of data (file truncated)");
  memcpy(out, c->data + c->pos, len);
  c->pos += len;
}

// One decoded row (8-bit, 1..4 channels) to RGB, compositing alpha over white.
static void row_to_rgb(const uint8_t *in, int channels, int w, uint8_t *out) {
  for (int x = 0; x < w; x++, out += 3) {
    const uint8_t *p = in + (size_t)x * channels;
    switch (channels) {
    case 1: out[0] = out[1] = out[2] = p[0]; break;
    case 2: out[0] = out[1] = out[2] = idoc_image_blend_white(p[0], p[1]); break;
    case 3: memcpy(out, p, 3); break;
    default:
      for (int b = 0; b < 3; b++)
        out[b] = idoc_image_blend_white(p[b], p[3]);
      break;
    }
  }
}

// Returns 0 on success, 1 after a libpng error (message in c->msg), 2 after our own error.
static int png_decode_inner(png_ctx *c, const char *name, idoc_image *out) {
  if (setjmp(png_jmpbuf(c->png))) return 1;
  png_set_read_fn(c->png, c, ctx_read);
  png_read_info(c->png, c->info);
  png_uint_32 w, h;
  int depth, ctype, interlace;
  png_get_IHDR(c->png, c->info, &w, &h, &depth, &ctype, &interlace, NULL, NULL);
  if (idoc_image_check_size(name, w, h)) return 2;
  if (ctype == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(c->png);
  if (ctype == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(c->png);
  if (png_get_valid(c->png, c->info, PNG_INFO_tRNS)) png_set_tRNS_to_alpha(c->png);
  if (depth == 16) png_set_strip_16(c->png); // keep the high byte, as PIL's ;16B unpackers
  int passes = png_set_interlace_handling(c->png);
  png_read_update_info(c->png, c->info);
  int channels = png_get_channels(c->png, c->info);
  size_t rowbytes = png_get_rowbytes(c->png, c->info);
  if (png_get_bit_depth(c->png, c->info) != 8 || channels < 1 || channels > 4 ||
      rowbytes != (size_t)w * channels)
    png_error(c->png, "unsupported pixel layout after expansion");
  c->rgb = idoc_xmalloc((size_t)w * h * 3);
  if (passes == 1) {
    c->row = idoc_xmalloc(rowbytes);
    for (png_uint_32 y = 0; y < h; y++) {
      png_read_row(c->png, c->row, NULL);
      row_to_rgb(c->row, channels, (int)w, c->rgb + (size_t)y * w * 3);
    }
  } else {
    c->full = idoc_xcalloc(h, rowbytes);
    c->rows = idoc_xmalloc(sizeof(png_bytep) * h);
    for (png_uint_32 y = 0; y < h; y++)
      c->rows[y] = c->full + (size_t)y * rowbytes;
    png_read_image(c->png, c->rows);
    for (png_uint_32 y = 0; y < h; y++)
      row_to_rgb(c->rows[y], channels, (int)w, c->rgb + (size_t)y * w * 3);
  }
  out->h = (int)h;
  out->w = (int)w;
  out->rgb = c->rgb;
  c->rgb = NULL;
  return 0;
}

int idoc_png_decode(const uint8_t *data, size_t n, const char *name, idoc_image *out) {
  png_ctx c = {.data = data, .n = n};
  c.png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &c, ctx_error, ctx_warning);
  if (!c.png) return idoc_set_error("%s: cannot create PNG reader", name);
  c.info = png_create_info_struct(c.png);
  int rc = c.info ? png_decode_inner(&c, name, out) : 1;
  if (!c.info) snprintf(c.msg, sizeof c.msg, "out of memory");
  png_destroy_read_struct(&c.png, c.info ? &c.info : NULL, NULL);
  free(c.row);
  free(c.full);
  free(c.rows);
  free(c.rgb);
  if (rc == 1) return idoc_set_error("%s: invalid PNG: %s", name, c.msg);
  return rc ? IDOC_ERR : IDOC_OK;
}

// ---- writer ----

typedef struct {
  char msg[256];
  png_structp png;
  png_infop info;
} png_wctx;

static void wctx_error(png_structp png, png_const_charp msg) {
  png_wctx *c = png_get_error_ptr(png);
  snprintf(c->msg, sizeof c->msg, "%s", msg);
  png_longjmp(png, 1);
}

static int png_write_inner(png_wctx *c, FILE *f, const uint8_t *pix, int h, int w, int ch) {
  if (setjmp(png_jmpbuf(c->png))) return 1;
  static const int types[5] = {0, PNG_COLOR_TYPE_GRAY, PNG_COLOR_TYPE_GRAY_ALPHA,
                               PNG_COLOR_TYPE_RGB, PNG_COLOR_TYPE_RGB_ALPHA};
  png_init_io(c->png, f);
  png_set_IHDR(c->png, c->info, (png_uint_32)w, (png_uint_32)h, 8, types[ch], PNG_INTERLACE_NONE,
               PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
  png_write_info(c->png, c->info);
  for (int y = 0; y < h; y++)
    png_write_row(c->png, pix + (size_t)y * w * ch);
  png_write_end(c->png, c->info);
  return 0;
}

int idoc_image_write_png(const char *path, const uint8_t *pix, int h, int w, int channels) {
  if (h < 1 || w < 1 || channels < 1 || channels > 4)
    return idoc_set_error("%s: cannot write a %dx%dx%d PNG", path, h, w, channels);
  idoc_atomic_file af;
  if (idoc_atomic_open(&af, path)) return IDOC_ERR;
  png_wctx c = {0};
  c.png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &c, wctx_error, ctx_warning);
  c.info = c.png ? png_create_info_struct(c.png) : NULL;
  int rc = c.info ? png_write_inner(&c, af.f, pix, h, w, channels) : 1;
  if (!c.info) snprintf(c.msg, sizeof c.msg, "out of memory");
  png_destroy_write_struct(&c.png, &c.info);
  if (rc) {
    idoc_atomic_abort(&af);
    return idoc_set_error("%s: PNG write failed: %s", path, c.msg);
  }
  return idoc_atomic_commit(&af);
}
