// Fuzzes the ImageDoctor completion parser with any bytes (no terminating NUL: the input is an
// exactly sized buffer), checks the structural invariants of what it returns, and checks that a
// response built from fuzzed scores and boxes parses back to them.
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/imagedoctor_text.h"
#include "nn/util.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  idoc_parsed_response r;
  idoc_parse_response((const char *)data, size, NULL, &r);
  if (r.has_answer)
    IDOC_CHECK(r.answer_begin >= 8 && r.answer_begin <= r.answer_end && r.answer_end + 9 <= size &&
                   !memcmp(data + r.answer_begin - 8, "<answer>", 8) &&
                   !memcmp(data + r.answer_end, "</answer>", 9),
               "answer span");
  if (r.has_think)
    IDOC_CHECK(r.think_begin <= r.think_end && r.think_end + 8 <= size, "think span");
  for (int k = 0; k < IDOC_N_SCORES; k++) {
    IDOC_CHECK(!r.score_valid[k] || r.score_found[k], "valid implies found");
    IDOC_CHECK(r.score_valid[k] || r.score[k] == 0, "invalid score reads as 0");
    IDOC_CHECK(r.has_answer || !r.score_found[k], "scores only inside an answer");
    IDOC_CHECK(!isnan(r.score[k]) && r.score[k] >= 0, "[0-9.]+ is never negative or NaN");
  }
  size_t prev_end = 0;
  for (size_t i = 0; i < r.n_boxes; i++) {
    const idoc_box *b = &r.boxes[i];
    IDOC_CHECK(b->begin >= prev_end && b->begin + 9 <= b->end && b->end <= size &&
                   data[b->begin] == '[' && data[b->end - 1] == ']',
               "box span");
    IDOC_CHECK(!isnan(b->x1) && !isnan(b->y1) && !isnan(b->x2) && !isnan(b->y2), "box NaN");
    prev_end = b->end;
  }
  IDOC_CHECK((r.mis_pos < 0) == (r.n_mis == 0) && (r.art_pos < 0) == (r.n_art == 0), "tokens");
  idoc_parsed_response_free(&r);

  // Build from fuzzed numbers and parse back.
  if (size >= 8) {
    idoc_response resp = {0};
    for (int k = 0; k < IDOC_N_SCORES; k++)
      resp.scores[k] = data[k] / 255.0 * (data[4] + 1);
    double boxes[16][4];
    resp.n_boxes = (data[5] % 17) * 4 <= size - 8 ? data[5] % 17 : 0;
    for (size_t i = 0; i < resp.n_boxes; i++)
      for (int c = 0; c < 4; c++) {
        int8_t v = (int8_t)data[8 + i * 4 + (size_t)c];
        boxes[i][c] = v * (data[6] & 1 ? 4.0 : 0.5);
      }
    resp.boxes = (const double(*)[4])boxes;
    idoc_response_opts o = idoc_response_opts_default(data[7] & 1 ? 2 : 1);
    if (data[7] & 2) o.box_style = IDOC_BOXES_PAPER;
    if (data[7] & 4) o.locations_lines = false;
    o.score_decimals = data[7] & 8 ? -1 : 17;
    size_t len;
    char *t = idoc_build_response(&resp, &o, &len);
    idoc_parse_response(t, len, &o, &r);
    IDOC_CHECK(r.has_answer && r.n_boxes == (o.think ? resp.n_boxes : 0), "rebuilt count");
    for (int k = 0; k < IDOC_N_SCORES; k++) { // fixed decimals round, shortest repr is exact
      char want[64];
      snprintf(want, sizeof want, "%.17f", resp.scores[k]);
      double w = o.score_decimals < 0 ? resp.scores[k] : strtod(want, NULL);
      IDOC_CHECK(r.score_valid[k] && r.score[k] == w, "rebuilt score");
    }
    for (size_t i = 0; i < r.n_boxes; i++)
      IDOC_CHECK(r.boxes[i].x1 == boxes[i][0] && r.boxes[i].y2 == boxes[i][3], "rebuilt box");
    idoc_parsed_response_free(&r);
    free(t);
  }
  return 0;
}
