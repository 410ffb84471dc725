// One HDF5 file per split: the dataset schema of docs/data_format.md (format version 1).
//
//   /image             uint8   [N, H, W, 3]  chunk [1, H, W, 3], deflate
//   /artifact_map      uint8   [N, Hm, Wm]   chunk [1, Hm, Wm], deflate  (0..255, 512^2 for RichHF)
//   /misalignment_map  uint8   [N, Hm, Wm]   same
//   /scores            float32 [N, 4]        alignment, aesthetics, plausibility, overall in [0, 1]
//   /boxes             float32 [N, K, 4]     xyxy in the 512x512 frame, rows >= n_boxes are 0
//   /box_kind          uint8   [N, K]        0 misalignment, 1 artifact
//   /n_boxes           int32   [N]
//   /map_empty         uint8   [N, 2]        artifact, misalignment map all zero
//   /orig_size         int32   [N, 2]        height, width of the source image before resizing
//   /response_kind     uint8   [N]           0 none, 1 built from the labels, 2 external CoT
//   /prompt /response /word_labels /source_id   variable-length UTF-8 strings [N]
//   root attributes: idoc_format = "imagedoctor-dataset", idoc_version = 1, source, split,
//                    score_names, box_frame = 512
// Writers create "<path>.tmp.<pid>" and rename it over <path> on close, so a reader never sees
// a partial file under the final name; readers validate the whole schema at open and name the
// file, dataset and sample index in every error.
// idoc-requires: hdf5
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "data/sample.h"

#define IDOC_DS_FORMAT "imagedoctor-dataset"
#define IDOC_DS_VERSION 1
typedef struct {
  int img_h, img_w, map_h, map_w;
  const char *source; // e.g. "synthetic", "richhf-18k"
  const char *split;  // e.g. "train"
  int compression;    // deflate level 0..9 for images and maps (default 1)
} idoc_dataset_info;

// ---- writing ----------------------------------------------------------------------------------
typedef struct idoc_dataset_writer idoc_dataset_writer;

idoc_dataset_writer *idoc_dataset_create(const char *path, const idoc_dataset_info *info);
// Checks the sample (sizes, scores in [0, 1], boxes, UTF-8 strings) and appends it.
int idoc_dataset_append(idoc_dataset_writer *w, const idoc_sample *s);

// Appending in two steps lets threads compress in parallel: idoc_dataset_encode() is pure
// computation (thread-safe, no HDF5 calls), idoc_dataset_append_encoded() writes in order.
typedef struct idoc_encoded_sample idoc_encoded_sample;
idoc_encoded_sample *idoc_dataset_encode(const idoc_dataset_info *info, const idoc_sample *s);
int idoc_dataset_append_encoded(idoc_dataset_writer *w, idoc_encoded_sample *e); // frees e
void idoc_encoded_sample_free(idoc_encoded_sample *e);

size_t idoc_dataset_writer_count(const idoc_dataset_writer *w);
// Writes the per-sample tables, closes and renames into place. Frees w (also on error, when the
// temporary is removed).
int idoc_dataset_close(idoc_dataset_writer *w);
void idoc_dataset_abort(idoc_dataset_writer *w); // removes the temporary

// ---- reading ----------------------------------------------------------------------------------
typedef struct idoc_dataset idoc_dataset;

// Opens and validates (schema, types, shapes, counts, score range, box counts, string UTF-8).
idoc_dataset *idoc_dataset_open(const char *path);
void idoc_dataset_close_reader(idoc_dataset *ds);
size_t idoc_dataset_len(const idoc_dataset *ds);
void idoc_dataset_get_info(const idoc_dataset *ds, idoc_dataset_info *info); // strings owned by ds
const char *idoc_dataset_path(const idoc_dataset *ds);

// Reads sample i (all fields; with_pixels false skips image and maps). Errors name file and index.
int idoc_dataset_read(idoc_dataset *ds, size_t i, bool with_pixels, idoc_sample *out);
// Per-sample tables held in memory after open (no I/O): valid for i < len.
const float *idoc_dataset_scores(const idoc_dataset *ds, size_t i);
// The sample's noise-free rule scores (/rule_scores, synthetic sets), NULL when the file has none.
const float *idoc_dataset_rule_scores(const idoc_dataset *ds, size_t i);
const char *idoc_dataset_prompt(const idoc_dataset *ds, size_t i);
int idoc_dataset_n_boxes(const idoc_dataset *ds, size_t i);
bool idoc_dataset_map_empty(const idoc_dataset *ds, size_t i, int which); // 0 artifact, 1 mis.
int idoc_dataset_response_kind(const idoc_dataset *ds, size_t i);
