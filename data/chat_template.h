// The `qwen2_vl` chat template (spec qwen25vl_sam.md section 5) for one user turn and an
// optional assistant answer, with image placeholders expanded and SFT label masks.
//
//   <|im_start|>system\n{system}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n
//   <|im_start|>assistant\n                                   <- generation prompt ends here
//   {answer}<|im_end|>\n                                       <- trained part (training form)
//
// Each image becomes <|vision_start|> + N x <|image_pad|> + <|vision_end|>, N = the image's
// grid_t * grid_h * grid_w / 4. Images are placed where the user text has "<image>" (the
// LLaMA-Factory / ShareGPT convention) or, with no placeholder, before the text (the HF
// processor's content list [image, text]); text after an image has no separator.
// idoc-requires: pcre2 utf8proc cjson
#pragma once
#include <stddef.h>
#include <stdint.h>

#include "data/tokenizer.h"

#define IDOC_DEFAULT_SYSTEM_PROMPT "You are a helpful assistant."
#define IDOC_IGNORE_INDEX (-100)

typedef struct {
  const char *system;          // NULL: the template's default system prompt
  const char *user;            // user text (may hold "<image>" placeholders)
  int n_images;                // images in this turn
  const int32_t *image_tokens; // [n_images] image-pad tokens per image
  const char *answer;          // NULL: generation-prompt form; else training form
} idoc_chat;

typedef struct {
  int32_t *ids;
  int32_t *labels;   // IDOC_IGNORE_INDEX except {answer}<|im_end|>\n, where labels == ids
  size_t n;          // tokens in all
  size_t prompt_len; // tokens up to and including "<|im_start|>assistant\n"
} idoc_chat_tokens;

// The template text (malloc'ed, NUL-terminated), prompt and answer parts; NULL on bad input.
char *idoc_chat_format(const idoc_chat *c, size_t *len, size_t *prompt_len);
// Tokenizes the template: the prompt as one text and "{answer}<|im_end|>\n" as another (as
// LLaMA-Factory encodes each message), added tokens matched whole. Labels are not shifted.
int idoc_chat_encode(idoc_tokenizer *tok, const idoc_chat *c, idoc_chat_tokens *out);
void idoc_chat_tokens_free(idoc_chat_tokens *t);
