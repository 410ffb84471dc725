// SFT examples: a dataset sample (data/sample.h) turned into what the model trains on, and
// examples packed into a batch.
//
// Text: the stage-1 or stage-2 instruction (data/imagedoctor_text.h) with the caption, in the
// qwen2_vl chat template, image before the text; the target is built from the sample's own
// labels (scores, boxes, reasoning of its stored response), so the ablation variants (answer
// only, w/o look, w/o think, without task tokens) come from the data and the config, never
// from edited files. Labels cover the answer and the closing "<|im_end|>\n" (LLaMA-Factory,
// train_on_prompt false). Images go through the Qwen2.5-VL processor (smart_resize within the
// configured pixel bounds, PIL bicubic, normalise, patchify); ground-truth maps are resized with
// cv2's INTER_LINEAR to the decoder's output size, 16 x the merged grid, and scaled to [0, 1].
// idoc-requires: pcre2 utf8proc cjson
#pragma once
#include <stdbool.h>
#include <stdint.h>

#include "data/sample.h"
#include "data/tokenizer.h"

typedef struct {
  bool cot;         // stage 2 target (think block) instead of the answer only
  bool task_tokens; // <|mis|> / <|art|> in the answer
  bool look, think; // the box list / the reasoning inside <think>
  int cutoff_len;
  int image_size; // > 0: the image is first resized to this square
  int64_t min_pixels, max_pixels;
  bool with_maps;   // compute the ground-truth maps at decoder resolution
  bool with_answer; // false: generation prompt only (eval / GRPO)
  bool grpo_prompt; // the GRPO question: the reasoning-format sentence + the stage-2 prompt
} idoc_sft_opts;

typedef struct {
  int32_t *ids, *labels; // [n]
  int n, prompt_len;
  float *pixels; // [n_patches, 1176]
  int n_patches;
  int32_t grid[3];
  float *gt_mis, *gt_art; // [map_h * map_w] or NULL
  int map_h, map_w;
  float scores[4]; // ground truth, for evaluation
  char *target;    // the response text trained on (or "" without an answer)
} idoc_sft_example;

// The response the sample trains on, as text (malloc'ed); NULL with an error when the sample
// has no usable response for a CoT target.
char *idoc_sft_target_text(const idoc_sample *s, const idoc_sft_opts *o);
// Builds one example. `name` prefixes errors (file and sample index).
int idoc_sft_example_make(idoc_tokenizer *tok, const idoc_sample *s, const idoc_sft_opts *o,
                          const char *name, idoc_sft_example *ex);
void idoc_sft_example_free(idoc_sft_example *ex);
