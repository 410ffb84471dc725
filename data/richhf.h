// RichHF-18K to the HDF5 dataset schema (spec anchors.md Part C; docs/data_format.md).
//
// Input: one TFRecord split of tf.train.Example records with the 8 features filename,
// aesthetics_score, artifact_score, misalignment_score, overall_score (float_list[0]),
// artifact_map, misalignment_map (PNG bytes, 512x512 gray) and prompt_misalignment_label
// (space-separated 0/1 per prompt word); Pick-a-Pic images joined by the uid in `filename`; the
// captions; optionally ImageDoctor's CoT responses (ShareGPT-style JSON/JSONL).
// Score mapping: alignment = misalignment_score, aesthetics = aesthetics_score, plausibility =
// artifact_score, overall = overall_score (all "higher is better").
// idoc-requires: protobufc png hdf5
#pragma once
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef struct {
  char *filename;
  float scores[4]; // alignment, aesthetics, plausibility, overall, as stored in the record
  uint8_t *artifact_png, *misalignment_png;
  size_t artifact_png_len, misalignment_png_len;
  char *labels; // prompt_misalignment_label ("" when the feature is empty)
} idoc_richhf_record;

// Decodes one serialized tf.train.Example. `where` prefixes errors ("train.tfrecord: record 3"),
// which name the feature at fault (missing, wrong kind, empty list).
int idoc_richhf_parse(const uint8_t *buf, size_t n, const char *where, idoc_richhf_record *rec);
void idoc_richhf_record_free(idoc_richhf_record *rec);

enum { IDOC_SCALE_AUTO = 0, IDOC_SCALE_UNIT = 1, IDOC_SCALE_LIKERT5 = 2 };

typedef struct {
  const char *tfrecord, *images_dir, *captions, *cot, *out;
  const char *split; // stored as the file's split attribute (default: the TFRecord's stem)
  int size;          // image side after resizing (default 512; maps must be 512x512)
  int score_scale;   // IDOC_SCALE_*: auto takes [0, 1] as is and maps an all-[1, 5] file by (s-1)/4
  int compression;   // deflate level 1..9; 0: the default (1); < 0: stored uncompressed
  FILE *log;         // one line per skipped record (NULL: stderr)
} idoc_richhf_opts;

typedef struct {
  long records, written, skipped;
  long skipped_no_image, skipped_no_caption, skipped_labels, skipped_bad_record;
  long with_cot;
  int scale; // the scale used (IDOC_SCALE_UNIT or IDOC_SCALE_LIKERT5)
} idoc_richhf_stats;

// Converts; the output is written aside and renamed at the end, so a failed run leaves no file.
// Fatal: unreadable inputs, TFRecord framing/CRC faults, scores off the scale, zero records
// written. Records without an image or caption, with a word-label count that does not match the
// caption, or with undecodable maps are skipped and reported (one line each to opts->log).
int idoc_richhf_convert(const idoc_richhf_opts *opts, idoc_richhf_stats *stats);

// The CLI front end (`idoc data convert-richhf ...`, argv[0] = "convert-richhf").
int idoc_cmd_convert_richhf(int argc, char **argv);
