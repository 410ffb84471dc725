# Sourced by the scripts: puts the CUDA toolkit on PATH when it is installed but not on PATH.
if ! command -v nvcc >/dev/null 2>&1 && [ -x /usr/local/cuda/bin/nvcc ]; then
  export PATH="/usr/local/cuda/bin:$PATH"
fi
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
