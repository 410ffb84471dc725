// The memory plan (stage/plan.h) against the arenas of real SFT runs of the tiny model on the
// CPU (tests/unit/plan_test_util.h): stage 1, stage 2, stage 2 with gradient checkpointing.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include "tests/unit/plan_test_util.h"

int main(void) {
  plan_checks("test_plan.tmp", "cpu");
  return t_summary("test_plan");
}
