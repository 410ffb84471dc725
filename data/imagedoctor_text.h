// ImageDoctor's texts (spec imagedoctor.md sections 5.3, 5.5, 6): the instruction prompts byte
// for byte, the GRPO prefix, a response builder, and parsers for untrusted completions.
//
// Paper vs code (spec, top section) are options, the code's behaviour the default:
//   box list   code `1.[x1,y1,x2,y2];` one per line   | paper `1:[..]; 2:[..].` on one line
//   answer     code has `Misalignment Locations: <|mis|>` / `Artifact Locations: <|art|>` lines
//              | paper has the four scores only (then the task tokens, when wanted, go last)
// The parsers accept both, since the reference's box regex ignores the list numbering.
#pragma once
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

// The stage-2 (chain of thought) prompt as inference.py builds it: 1453 bytes (1449 characters)
// with the "{caption}" placeholder, typos included.
extern const char idoc_prompt_stage2_template[];
// The likely stage-1 (answer-only) prompt (DenseFlow's doctor_hp.py; spec marks it [U]).
extern const char idoc_prompt_stage1_template[];
// The GRPO question template's sentence (VLM-R1 "odLength"), ending in "\n"; the problem follows.
extern const char idoc_grpo_prefix[];

#define IDOC_MIS_TOKEN "<|mis|>"
#define IDOC_ART_TOKEN "<|art|>"

// The prompt of stage 1 or 2 with the caption substituted (malloc'ed); NULL for another stage.
char *idoc_imagedoctor_prompt(int stage, const char *caption);
// The GRPO prompt text: prefix + the SFT prompt with every "<image>" removed (malloc'ed).
char *idoc_grpo_prompt(const char *sft_prompt);

// ---- responses ----------------------------------------------------------------------------
enum {
  IDOC_SCORE_SEMANTIC,
  IDOC_SCORE_AESTHETIC,
  IDOC_SCORE_PLAUSIBILITY,
  IDOC_SCORE_OVERALL,
  IDOC_N_SCORES
};
extern const char *const idoc_score_names[IDOC_N_SCORES]; // "Semantic Alignment", ...

typedef enum { IDOC_BOXES_CODE, IDOC_BOXES_PAPER } idoc_box_style;

typedef struct {
  bool think; // stage 2: a <think> block with the box list and the reasoning
  idoc_box_style box_style;
  bool locations_lines;  // code: the task tokens on "... Locations:" lines (needs task_tokens)
  bool task_tokens;      // the answer carries the two task tokens
  int score_decimals;    // < 0: shortest round-trip, as Python's str(float); else fixed
  const char *mis_token; // NULL: IDOC_MIS_TOKEN
  const char *art_token; // NULL: IDOC_ART_TOKEN
} idoc_response_opts;

// Stage 1: answer only, no task tokens. Stage 2: the code's format with think block and tokens.
idoc_response_opts idoc_response_opts_default(int stage);

typedef struct {
  double scores[IDOC_N_SCORES];
  const double (*boxes)[4]; // [n_boxes] x1, y1, x2, y2 in 512x512 image pixels
  size_t n_boxes;
  const char *reasoning; // text after the box list inside <think> (NULL: none)
} idoc_response;

// Builds the response text (malloc'ed). Code style, stage 2:
//   <think>I need to focus on the bounding box area. Proposed regions (xyxy): 1.[a,b,c,d];
//   2.[...];\n\n{reasoning}</think>\n\n<answer>Semantic Alignment score: S;
//   Misalignment Locations: <|mis|>\nAesthetic score: A;\nPlausibility score: P;
//   Artifact Locations: <|art|>\nOverall Impression score: O</answer>
// With no boxes the list reads "none.". Integral coordinates print without decimals.
char *idoc_build_response(const idoc_response *r, const idoc_response_opts *o, size_t *len);

// Python's repr(float) (shortest round-trip digits; "1.0", "0.58", "1e-05", "inf").
void idoc_format_py_float(double x, char out[32]);

// ---- parsing untrusted completions --------------------------------------------------------
typedef struct {
  double x1, y1, x2, y2; // as float() reads them: may be inf for huge numbers, negative, x2 < x1
  size_t begin, end;     // byte span of the match "[...]" in the text
} idoc_box;

typedef struct {
  // First `<answer>(.*?)</answer>` (DOTALL): content span; has_answer false when absent.
  bool has_answer;
  size_t answer_begin, answer_end;
  // First `<think>(.*?)</think>`, the same way.
  bool has_think;
  size_t think_begin, think_end;
  // Per score, searched inside the answer content only, with the reference's regexes
  // `Semantic Alignment score: ([0-9.]+);`, `Aesthetic score: ([0-9.]+);`,
  // `Plausibility score: ([0-9.]+);` (trailing ';' required) and
  // `Overall Impression score: ([0-9.]+)` (none):
  //   score_found: the regex matched; score_valid: float() accepted the digits ("1.2.3" and "."
  //   do not); score: the value when valid, else 0 (the reference's fallback, also when there is
  //   no answer block). Values are not clipped: "7.5" gives 7.5.
  bool score_found[IDOC_N_SCORES];
  bool score_valid[IDOC_N_SCORES];
  double score[IDOC_N_SCORES];
  // Every `\[\s*num\s*,\s*num\s*,\s*num\s*,\s*num\s*\]`, num = `[+-]?\d+(\.\d+)?`, over the whole
  // text in finditer order (think and answer alike), \d and \s with Python's Unicode meaning.
  idoc_box *boxes;
  size_t n_boxes;
  // Task tokens as text: byte offset of the first occurrence (-1 if none) and the count.
  long mis_pos, art_pos;
  int n_mis, n_art;
} idoc_parsed_response;

// Never fails and never reads outside text[0..len) (any bytes: invalid UTF-8, NULs). Options
// may be NULL (default token strings). Free with idoc_parsed_response_free.
void idoc_parse_response(const char *text, size_t len, const idoc_response_opts *opts,
                         idoc_parsed_response *out);
void idoc_parsed_response_free(idoc_parsed_response *r);

// Task tokens in generated ids: first index of each (-1 if absent) and counts. The heatmap
// decoder reads the hidden state one position before the first of each (spec 5.4).
typedef struct {
  long first_mis, first_art;
  int n_mis, n_art;
} idoc_task_token_pos;
idoc_task_token_pos idoc_find_task_tokens(const int32_t *ids, size_t n, int32_t mis_id,
                                          int32_t art_id);
