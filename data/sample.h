// One dataset sample in memory (the fields of the HDF5 schema, see data/dataset.h). No
// dependencies, so the synthetic generator and the loader share it with the HDF5 code.
#pragma once
#include <stdint.h>

#define IDOC_DS_MAX_BOXES 8 // K
#define IDOC_DS_BOX_FRAME 512

enum { IDOC_DS_ALIGNMENT, IDOC_DS_AESTHETICS, IDOC_DS_PLAUSIBILITY, IDOC_DS_OVERALL };
enum { IDOC_BOX_MISALIGNMENT = 0, IDOC_BOX_ARTIFACT = 1 };
enum { IDOC_RESPONSE_NONE = 0, IDOC_RESPONSE_TEMPLATE = 1, IDOC_RESPONSE_EXTERNAL = 2 };

// One sample. Readers allocate every pointer (free with idoc_sample_free); writers only read it.
typedef struct {
  int img_h, img_w;
  uint8_t *image; // img_h * img_w * 3
  int map_h, map_w;
  uint8_t *artifact_map, *misalignment_map; // map_h * map_w each
  float scores[4];
  // The noise-free scores the labels were drawn around (synthetic data: the generator's rules
  // before label noise and rounding), when has_rule_scores; /rule_scores in the file.
  float rule_scores[4];
  int has_rule_scores;
  int n_boxes;
  float boxes[IDOC_DS_MAX_BOXES][4];
  uint8_t box_kind[IDOC_DS_MAX_BOXES];
  int orig_h, orig_w; // 0: same as img
  int response_kind;
  char *prompt, *response, *word_labels, *source_id; // NULL is written as ""
} idoc_sample;

// Frees every pointer and zeroes the struct.
void idoc_sample_free(idoc_sample *s);
