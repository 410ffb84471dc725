// idoc_sample helpers.
#include "data/sample.h"

#include <stdlib.h>
#include <string.h>

void idoc_sample_free(idoc_sample *s) {
  free(s->image);
  free(s->artifact_map);
  free(s->misalignment_map);
  free(s->prompt);
  free(s->response);
  free(s->word_labels);
  free(s->source_id);
  memset(s, 0, sizeof *s);
}
