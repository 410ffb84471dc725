#!/usr/bin/env bash
# CPU speed of `idoc` against PyTorch + transformers on the same Qwen2.5-VL, inputs and cores:
# training step, greedy generation, large-image preprocessing and peak memory, from interleaved
# runs, with the machine's CPU and load average. Builds idoc (Release) in build/ when needed;
# scripts/bench_cpu_vs_torch.py makes its own venv (scripts/.venv, the pins of
# scripts/venv_pins.py) on first use. Arguments go to the Python driver:
#   --rounds N (interleaved rounds, default 3)  --train-iters N (timed steps per process after
#   one warmup, 2)  --gen-iters N (timed generate calls per process, 1)  --image-iters N (5)
#   --threads N (torch.set_num_threads, default nproc)
#   --quick (a tiny shape, one round: checks the script, not the speed)
# Exit status 1 when the two sides do not compute the same losses, tokens or pixel values.
set -euo pipefail
cd "$(dirname "$0")/.."
BUILD=${BUILD:-build}
if [ ! -f "$BUILD/build.ninja" ] && [ ! -f "$BUILD/Makefile" ]; then
  cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
fi
cmake --build "$BUILD" --target idoc_cli -j "$(nproc)" >/dev/null
exec python3 scripts/bench_cpu_vs_torch.py --idoc "$BUILD/idoc" "$@"
