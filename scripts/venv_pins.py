"""The reference scripts' one virtual environment (scripts/.venv) and the pins of the scripts
that run transformers' Qwen2.5-VL (make_qwen_fixtures.py, twin_train.py, bench_cpu_vs_torch.py).
Standard library only: a script calls ensure_venv() before it imports anything else."""

import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
VENV = os.path.join(HERE, ".venv")
VENV_PY = os.path.join(VENV, "bin", "python")
QWEN_PINS = {
    "torch": "2.15.0",
    "transformers": "5.23.0",
    "pillow": "13.0.0",
    "safetensors": "0.8.0",
    "numpy": "2.4.6",
}


def venv_has(pins):
    check = (
        "import importlib.metadata as m, sys\n"
        f"pins = {pins!r}\n"
        "sys.exit(0 if all(m.version(k) == v for k, v in pins.items()) else 1)\n"
    )
    try:
        return subprocess.run([VENV_PY, "-c", check], capture_output=True).returncode == 0
    except OSError:
        return False


def ensure_venv(script, pins):
    """Re-exec `script` (with this process's arguments) inside scripts/.venv, creating it and
    installing `pins` when needed; returns at once when already inside it."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(VENV_PY):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    if not venv_has(pins):
        # A plain PyPI torch wheel (CUDA build) imports and runs fine on a CPU-only machine.
        subprocess.check_call([VENV_PY, "-m", "pip", "install", "--upgrade", "pip"])
        subprocess.check_call([VENV_PY, "-m", "pip", "install"] + [f"{k}=={v}" for k, v in pins.items()])
    os.execv(VENV_PY, [VENV_PY, os.path.abspath(script)] + sys.argv[1:])
