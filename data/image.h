// Image input for Qwen2.5-VL: decode (PNG/JPEG to RGB uint8), PIL-exact resampling, an OpenCV
// INTER_LINEAR float resize for heatmaps, smart_resize, and the HF Qwen2-VL pixel pipeline
// (rescale + CLIP normalize + temporal duplication + merge-grouped patch flattening).
//
// Reference semantics (checked against fixtures made by scripts/make_image_fixtures.py):
//   decode  = PIL Image.open + transformers' convert_to_rgb (alpha composited over white; for
//             uint8 this equals qwen-vl-utils' paste-with-mask, see idoc_image_blend_white).
//   resize  = PIL Image.resize (ImagingResample: two fixed-point passes), bit-exact (Pillow 13;
//             Pillow <= 12 pass order on request).
//   pixels  = transformers Qwen2VLImageProcessor(Pil) pixel_values / image_grid_thw.
#pragma once
#include <stddef.h>
#include <stdint.h>

// An 8-bit RGB image, rows top to bottom, pixels interleaved (H x W x 3).
typedef struct {
  int h, w;
  uint8_t *rgb;
} idoc_image;

void idoc_image_free(idoc_image *im);

// ---- decode / encode (PNG needs libpng, JPEG libjpeg; without them these return an error) ----

// Images with more pixels are refused before any pixel buffer is allocated. The default is
// Pillow's DecompressionBombError threshold (2 * Image.MAX_IMAGE_PIXELS = 178,956,970).
#define IDOC_IMAGE_DEFAULT_MAX_PIXELS 178956970ull
void idoc_image_set_max_pixels(uint64_t max_pixels);
uint64_t idoc_image_get_max_pixels(void);

// Decodes a PNG or JPEG held in memory (format found from the signature). `name` is used in error
// messages (a path, or e.g. "<memory>"). Conversion to RGB follows PIL:
//   - 16-bit samples keep their high byte (PIL's "RGB;16B"-style unpackers). For 16-bit
//     grayscale PIL would clip to 255 in I;16->RGB (turning most of the image white); we take the
//     high byte instead, like its 16-bit RGB path.
//   - 1/2/4-bit gray is scaled to 0..255; palettes are expanded.
//   - any alpha (RGBA, gray+alpha, tRNS for palette/gray/RGB) is composited over opaque white,
//     as transformers' convert_to_rgb does (qwen-vl-utils composites RGBA only and drops the
//     alpha of LA / tRNS images).
//   - JPEG: libjpeg defaults (ISLOW IDCT, fancy upsampling); grayscale is replicated; CMYK/YCCK
//     is read with Adobe polarity (inverted) and converted with PIL's cmyk2rgb.
//   - EXIF orientation and colour profiles are ignored (PIL's Image.open ignores them too).
// Truncated or corrupt data is an error naming `name`.
int idoc_image_decode(const uint8_t *data, size_t n, const char *name, idoc_image *out);
int idoc_image_load(const char *path, idoc_image *out);

// Writes an 8-bit PNG with 1 (gray), 2 (gray+alpha), 3 (RGB) or 4 (RGBA) interleaved channels,
// atomically (a temporary file renamed over `path`). Needs libpng.
int idoc_image_write_png(const char *path, const uint8_t *pix, int h, int w, int channels);

// out = alpha-over-white of one 8-bit sample: round(v * a / 255) + (255 - a) with PIL's
// MULDIV255 rounding. Equal to both PIL paste(mask) and Image.alpha_composite onto white.
static inline uint8_t idoc_image_blend_white(uint8_t v, uint8_t a) {
  unsigned t = (unsigned)v * a + 128u;
  return (uint8_t)((((t >> 8) + t) >> 8) + (255u - a));
}

// ---- resampling (no optional dependencies) ----

typedef enum {
  IDOC_RESAMPLE_BILINEAR = 2, // numbering as PIL's Image.Resampling
  IDOC_RESAMPLE_BICUBIC = 3,
  IDOC_RESAMPLE_LANCZOS = 1,
} idoc_resample;

// Which of PIL's two passes runs first when both axes change. Pillow >= 13 goes vertical first
// when the height loses more than twice as many pixels as the width (tall images); Pillow <= 12
// always went horizontal first. Aspect-preserving resizes of images up to 2:1 portrait take the
// same order in both, so the choice only matters for tall images or skewed target sizes.
typedef enum {
  IDOC_PASS_ORDER_PIL13 = 0,   // the current Pillow rule (default)
  IDOC_PASS_ORDER_H_FIRST = 1, // Pillow <= 12
} idoc_pass_order;

// PIL Image.resize((dst_w, dst_h), filter) on 8-bit data with 1..4 interleaved channels,
// bit-exact: support scaled by the downscale factor (antialias), coefficients normalised and
// quantised to 22 fractional bits, one pass per changed axis, each rounded and clipped to uint8.
// Returns IDOC_ERR for sizes < 1 or unknown filters. (RGBA/LA inputs: PIL premultiplies alpha
// before resizing; these functions do not, so pass alpha-free data.)
int idoc_resample_u8(const uint8_t *src, int h, int w, int channels, uint8_t *dst, int dst_h,
                     int dst_w, idoc_resample filter);
int idoc_resample_u8_order(const uint8_t *src, int h, int w, int channels, uint8_t *dst, int dst_h,
                           int dst_w, idoc_resample filter, idoc_pass_order order);
// Same on an idoc_image (allocates out->rgb).
int idoc_image_resize(const idoc_image *src, int dst_h, int dst_w, idoc_resample filter,
                      idoc_image *out);
int idoc_image_resize_order(const idoc_image *src, int dst_h, int dst_w, idoc_resample filter,
                            idoc_pass_order order, idoc_image *out);

// cv2.resize(src, (dst_w, dst_h), interpolation=INTER_LINEAR) on a single-channel float map:
// half-pixel centres, edge clamping, no antialiasing (a downscale only looks at 2x2 source
// pixels per output). Used for ground-truth heatmaps (e.g. 512x512 -> 288x288).
// opencv-python on x86 runs this through IPP by default, which takes each weight's fraction in
// double; OpenCV's own kernel (IPP off, or other CPUs) rounds the position to float first. The
// two differ by up to ~2e-5 on [0, 1] maps of 512 px; pick the one the reference used.
typedef enum {
  IDOC_CV_LINEAR_IPP = 0,    // default cv2 on x86-64 (within 2 float ulp)
  IDOC_CV_LINEAR_NO_IPP = 1, // cv2 with cv2.ipp.setUseIPP(False) (exact up to 1 ulp)
} idoc_cv_linear_mode;
int idoc_resize_linear_f32(const float *src, int h, int w, float *dst, int dst_h, int dst_w);
int idoc_resize_linear_f32_mode(const float *src, int h, int w, float *dst, int dst_h, int dst_w,
                                idoc_cv_linear_mode mode);

// Size used by ImageDoctor's inference.py before the processor: scale by
// r = sqrt(area / (w*h)) with int() truncation of w*r and h*r (keeps aspect ratio, ~area pixels).
void idoc_image_area_size(int h, int w, int area, int *out_h, int *out_w);

// ---- Qwen2-VL processor ----

#define IDOC_QWEN_PATCH 14
#define IDOC_QWEN_MERGE 2
#define IDOC_QWEN_TEMPORAL 2
#define IDOC_QWEN_FACTOR (IDOC_QWEN_PATCH * IDOC_QWEN_MERGE)                             // 28
#define IDOC_QWEN_PATCH_DIM (3 * IDOC_QWEN_TEMPORAL * IDOC_QWEN_PATCH * IDOC_QWEN_PATCH) // 1176
#define IDOC_QWEN_MIN_PIXELS 3136     // preprocessor_config.json of Qwen2.5-VL-3B/7B-Instruct
#define IDOC_QWEN_MAX_PIXELS 12845056 // 16384 * 28 * 28
#define IDOC_QWEN_MAX_RATIO 200

// transformers' smart_resize: both sides multiples of `factor`, area within [min, max] pixels,
// aspect ratio kept. Python semantics: round() is round-half-to-even; float math in double.
// Errors (message names the size): aspect ratio > 200, a side < factor (transformers 4.x; 5.x
// dropped that check and upsamples instead), or a non-positive argument.
int idoc_smart_resize(int h, int w, int factor, int64_t min_pixels, int64_t max_pixels, int *out_h,
                      int *out_w);

typedef struct {
  int64_t min_pixels;    // default IDOC_QWEN_MIN_PIXELS
  int64_t max_pixels;    // default IDOC_QWEN_MAX_PIXELS
  idoc_resample filter;  // default BICUBIC (the processor's resample)
  idoc_pass_order order; // default IDOC_PASS_ORDER_PIL13
} idoc_qwen_image_opts;

void idoc_qwen_image_opts_default(idoc_qwen_image_opts *o);

// Normalised value of an 8-bit sample in channel c exactly as the HF processor computes it:
// x = float32(float64(v) * (1/255)); (x - float32(mean[c])) / float32(std[c]) in float32.
float idoc_qwen_normalize(uint8_t v, int c);

// Flattens an RGB image whose sides are multiples of 28 into [P, 1176] rows (P = h*w/196):
// rows (merged row, merged col, dy, dx), columns (channel, temporal, py, px), both temporal
// frames identical. `out` holds P*1176 floats.
void idoc_qwen_patchify(const idoc_image *im, float *out);

// The whole processor on one RGB image: smart_resize, resize (PIL-exact), normalise, patchify.
// *pixel_values gets malloc'd [P, 1176] floats; grid_thw = {1, h'/14, w'/14}; P = product.
// `opts` may be NULL (defaults). `name` prefixes error messages (may be NULL).
int idoc_qwen_preprocess(const idoc_image *im, const idoc_qwen_image_opts *opts, const char *name,
                         float **pixel_values, int64_t *n_patches, int64_t grid_thw[3]);
