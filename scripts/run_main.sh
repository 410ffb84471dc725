#!/usr/bin/env bash
# The main job on a fresh Debian machine: install dependencies, build, run `idoc` with no
# arguments (its help, then the tiny pipeline: synthetic data, SFT stage 1, stage 2, GRPO, eval;
# about 25 minutes on 2 cores).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install_deps.sh
source scripts/env.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release
cmake --build build -j"$(nproc)"
./build/idoc
