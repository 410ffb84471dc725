// RichHF-18K's per-word misalignment labels: how a prompt is split into words and how the label
// string reads (anchors.md C2; RichHF's match_label_to_token.py). No dependencies.
#pragma once
#include <stddef.h>
#include <stdint.h>

// Splits on any of , . ? ! " : ; and space and drops empty tokens. Returns the number of words;
// when starts/lens are non-NULL, the first `cap` word spans (byte offsets, lengths) go there.
int idoc_prompt_words(const char *prompt, size_t *starts, size_t *lens, int cap);
// Parses a label string: tokens "0" / "1" separated by whitespace (1 = aligned, 0 = misaligned).
// Returns the count (the first `cap` go to labels, which may be NULL), or -1 on any other token.
int idoc_parse_word_labels(const char *s, uint8_t *labels, int cap);
// Strict UTF-8 check (no overlongs, surrogates or code points above U+10FFFF).
int idoc_utf8_is_valid(const char *s, size_t n);
