// idoc-requires: jpeg
// JPEG decode to RGB with PIL's settings: libjpeg defaults (ISLOW IDCT, fancy upsampling), gray
// replicated, CMYK/YCCK read inverted (PIL's "CMYK;I", Adobe polarity) and converted by PIL's
// cmyk2rgb. A premature end of data is an error (PIL: "image file is truncated"); other libjpeg
// warnings are ignored, as PIL does.
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jerror.h>
#include <jpeglib.h>

#include "data/image.h"
#include "data/image_codec.h"
#include "nn/util.h"

typedef struct {
  struct jpeg_error_mgr mgr; // first: libjpeg hands us a pointer to it
  jmp_buf jb;
  char msg[JMSG_LENGTH_MAX];
  struct jpeg_decompress_struct cinfo;
  uint8_t *row, *rgb;
} jpeg_ctx;

static void ctx_error_exit(j_common_ptr ci) {
  jpeg_ctx *c = (jpeg_ctx *)ci->err;
  ci->err->format_message(ci, c->msg);
  longjmp(c->jb, 1);
}

static void ctx_emit(j_common_ptr ci, int level) {
  if (level == -1 && ci->err->msg_code == JWRN_JPEG_EOF) ctx_error_exit(ci);
}

static inline uint8_t muldiv255(int a, int b) {
  int t = a * b + 128;
  return (uint8_t)(((t >> 8) + t) >> 8);
}

static int jpeg_decode_inner(jpeg_ctx *c, const uint8_t *data, size_t n, const char *name,
                             idoc_image *out) {
  if (setjmp(c->jb)) return 1;
  struct jpeg_decompress_struct *ci = &c->cinfo;
  jpeg_create_decompress(ci);
  jpeg_mem_src(ci, data, (unsigned long)n);
  jpeg_read_header(ci, TRUE);
  if (idoc_image_check_size(name, ci->image_width, ci->image_height)) return 2;
  int cmyk = ci->num_components == 4;
  if (cmyk)
    ci->out_color_space = JCS_CMYK;
  else if (ci->num_components == 1 || ci->num_components == 3)
    ci->out_color_space = ci->num_components == 1 ? JCS_GRAYSCALE : JCS_RGB;
  else
    ERREXIT1(ci, JERR_BAD_J_COLORSPACE, ci->jpeg_color_space);
  jpeg_start_decompress(ci);
  int w = (int)ci->output_width, h = (int)ci->output_height, nc = ci->output_components;
  c->row = idoc_xmalloc((size_t)w * nc);
  c->rgb = idoc_xmalloc((size_t)w * h * 3);
  for (int y = 0; y < h; y++) {
    JSAMPROW rp = c->row;
    if (jpeg_read_scanlines(ci, &rp, 1) != 1) ERREXIT(ci, JERR_INPUT_EOF);
    uint8_t *o = c->rgb + (size_t)y * w * 3;
    for (int x = 0; x < w; x++, o += 3) {
      const uint8_t *p = c->row + (size_t)x * nc;
      if (nc == 1) {
        o[0] = o[1] = o[2] = p[0];
      } else if (nc == 3) {
        memcpy(o, p, 3);
      } else {         // PIL: "CMYK;I" unpack (invert), then cmyk2rgb
        int nk = p[3]; // 255 - (255 - k)
        for (int b = 0; b < 3; b++) {
          int v = nk - muldiv255(255 - p[b], nk);
          o[b] = (uint8_t)(v < 0 ? 0 : v);
        }
      }
    }
  }
  // Remaining markers are not needed; jpeg_abort leaves the object reusable for destroy.
  jpeg_abort_decompress(ci);
  out->h = h;
  out->w = w;
  out->rgb = c->rgb;
  c->rgb = NULL;
  return 0;
}

int idoc_jpeg_decode(const uint8_t *data, size_t n, const char *name, idoc_image *out) {
  jpeg_ctx *c = idoc_xcalloc(1, sizeof *c);
  c->cinfo.err = jpeg_std_error(&c->mgr);
  c->mgr.error_exit = ctx_error_exit;
  c->mgr.emit_message = ctx_emit;
  int rc = jpeg_decode_inner(c, data, n, name, out);
  jpeg_destroy_decompress(&c->cinfo);
  free(c->row);
  free(c->rgb);
  char msg[JMSG_LENGTH_MAX];
  memcpy(msg, c->msg, sizeof msg);
  free(c);
  if (rc == 1) return idoc_set_error("%s: invalid JPEG: %s", name, msg);
  return rc ? IDOC_ERR : IDOC_OK;
}
