// The memory plan (stage/plan.h) against the arenas of real SFT runs of the tiny model on the
// CPU (tests/unit/plan_test_util.h): stage 1, stage 2, stage 2 with gradient checkpointing.
// idoc-requires: yaml hdf5 pcre2 utf8proc cjson png
#include "tests/unit/plan_test_util.h"

int main(void) {
  // Within 5% (the plan is within 3.1% here; 5% catches, e.g., a plan that forgets the logits'
  // gradient, -8%).
  plan_checks("test_plan.tmp", "cpu", 0.05, 3);
  return t_summary("test_plan");
}
