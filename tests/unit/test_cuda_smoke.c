// idoc-requires: cuda
// The smoke training (train/smoke.h) with its parameters, activations and AdamW on cuda:0: the
// per-step losses equal the CPU run's within 1e-5 relative, the loss falls, and the device's
// activation arena stops growing after the first step (no device allocation in the loop).
// Also `idoc smoke --device`'s errors. Skips (exit 0) when no GPU is present.
#include <math.h>
#include <string.h>

#include "cli/commands.h"
#include "kernels/ops.h"
#include "nn/util.h"
#include "tests/test.h"
#include "train/smoke.h"

int main(void) {
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (!idoc_cuda_available()) {
    T_SKIP("no CUDA device");
    return t_summary("test_cuda_smoke");
  }
  idoc_smoke_cfg cfg = idoc_smoke_default();
  cfg.steps = 30;
  cfg.warmup = 3;
  float a[30], b[30];
  idoc_smoke_train(&cfg, a, NULL, false);
  cfg.dev = idoc_dev_cuda(0);
  idoc_smoke_stats st;
  idoc_smoke_train(&cfg, b, &st, false);
  double worst = 0;
  for (int i = 0; i < cfg.steps; i++)
    worst = fmax(worst, fabs((double)a[i] - b[i]) / fabs((double)a[i]));
  printf("30 steps: cpu %.6f -> %.6f, cuda %.6f -> %.6f, worst relative difference %.3g, %.1f s\n",
         a[0], a[29], b[0], b[29], worst, st.seconds);
  T_CHECK(worst <= 1e-5, "device losses within 1e-5 of the cpu's: %.3g", worst);
  T_CHECK(b[29] < b[0] - 0.3, "the device run learns: %.4f -> %.4f", b[0], b[29]);
  T_CHECK(st.act_blocks_at_end == st.act_blocks_after_first_step,
          "device arena grew after the first step: %zu -> %zu blocks",
          st.act_blocks_after_first_step, st.act_blocks_at_end);

  char *bad[] = {"smoke", "--device", "gpu"}, *absent[] = {"smoke", "--device", "cuda:7"};
  T_CHECK(idoc_cmd_smoke(3, bad) == 2, "--device gpu refused");
  if (idoc_cuda_device_count() < 8)
    T_CHECK(idoc_cmd_smoke(3, absent) == 2 && strstr(idoc_last_error(), "cuda:7"),
            "a device that does not exist is refused: %s", idoc_last_error());
  return t_summary("test_cuda_smoke");
}
