#!/usr/bin/env python3
"""Reference fixtures for the C generation code (nn/generate.c), made with transformers.

Writes tests/fixtures/generate/:
  warpers.safetensors  logits vectors run through transformers' sampling warpers in generate()'s
                       order (TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper):
                       "params" [n, 3] (temperature, top_k, top_p; 0 / 1 = off), "logits" [n, V],
                       "warped" [n, V] (-inf where a token was removed).
  greedy_A.safetensors, greedy_B.safetensors
                       greedy model.generate() (KV cache, M-RoPE rope_deltas) on the Qwen2.5-VL
                       fixtures tests/fixtures/qwen/{A,B}: "prompt_ids" [S] (the fixture's sequence
                       up to and including "<|im_start|>assistant\\n"), "generated" [N],
                       "logits" [N, vocab] (raw logits of each generation step), "stops" [2],
                       "repetition_penalty" [1] (1: none).
  greedy_A_rep.safetensors, greedy_B_rep.safetensors
                       the same with repetition_penalty 1.6 and 1.3.
Everything is float32 on CPU with eager attention; weights come from the committed qwen fixtures.

Usage: python3 scripts/make_generate_fixtures.py
The script creates scripts/.venv and installs the pinned packages on first use, then re-executes
itself inside it.
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "scripts", ".venv")
VENV_PY = os.path.join(VENV, "bin", "python")
PINS = {
    "torch": "2.15.0",
    "transformers": "5.23.0",
    "safetensors": "0.8.0",
    "numpy": "2.4.6",
}
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "generate")
QWEN_DIR = os.path.join(ROOT, "tests", "fixtures", "qwen")


def _venv_has_pins():
    check = (
        "import importlib.metadata as m, sys\n"
        f"pins = {PINS!r}\n"
        "sys.exit(0 if all(m.version(k) == v for k, v in pins.items()) else 1)\n"
    )
    try:
        return subprocess.run([VENV_PY, "-c", check], capture_output=True).returncode == 0
    except OSError:
        return False


def ensure_venv():
    """Re-exec inside scripts/.venv, creating it and installing the pins when needed."""
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(VENV_PY):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    if not _venv_has_pins():
        subprocess.check_call([VENV_PY, "-m", "pip", "install", "--upgrade", "pip"])
        subprocess.check_call(
            [VENV_PY, "-m", "pip", "install"] + [f"{k}=={v}" for k, v in PINS.items()]
        )
    os.execv(VENV_PY, [VENV_PY, os.path.abspath(__file__)] + sys.argv[1:])


if __name__ == "__main__":
    ensure_venv()

import json  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402
from transformers import Qwen2_5_VLForConditionalGeneration  # noqa: E402
from transformers.generation.logits_process import (  # noqa: E402
    TemperatureLogitsWarper,
    TopKLogitsWarper,
    TopPLogitsWarper,
)

# (temperature, top_k, top_p): each filter alone, combined, and the degenerate ends
# (top_k = 1, top_p small enough to keep one token, top_k above the vocabulary).
WARP_CASES = [
    (1.0, 0, 1.0),
    (0.7, 0, 1.0),
    (1.0, 5, 1.0),
    (1.0, 1, 1.0),
    (1.0, 0, 0.9),
    (1.0, 0, 0.5),
    (0.6, 10, 0.8),
    (1.5, 20, 0.95),
    (0.3, 0, 0.7),
    (1.0, 0, 1e-4),
    (2.0, 500, 0.99),
    (1.0, 3, 0.3),
]
WARP_V = 300


def make_warpers():
    g = torch.Generator().manual_seed(77)
    params, inputs, outputs = [], [], []
    for t, k, p in WARP_CASES:
        # spread-out logits with a few dominant tokens, as a language model's
        x = 2.5 * torch.randn(1, WARP_V, generator=g)
        x[0, torch.randint(0, WARP_V, (4,), generator=g)] += 6.0
        y = x.clone()
        if t != 1.0:
            y = TemperatureLogitsWarper(t)(None, y)
        if k > 0:
            y = TopKLogitsWarper(top_k=k)(None, y)
        if p < 1.0:
            y = TopPLogitsWarper(top_p=p)(None, y)
        params.append([t, k, p])
        inputs.append(x[0].numpy())
        outputs.append(y[0].numpy())
    return {
        "params": np.array(params, dtype=np.float32),
        "logits": np.stack(inputs).astype(np.float32),
        "warped": np.stack(outputs).astype(np.float32),
    }


def greedy_fixture(name, max_new, repetition_penalty=1.0):
    d = os.path.join(QWEN_DIR, name)
    manifest = json.load(open(os.path.join(d, "manifest.json")))
    sid = manifest["special_ids"]
    e = load_file(os.path.join(d, "expected.safetensors"))
    ids = e["input_ids"][0].astype(np.int64)
    # the prompt ends after the last "<|im_start|>assistant\n"
    cut = max(i for i in range(len(ids) - 2)
              if ids[i] == sid["im_start"] and ids[i + 1] == sid["assistant"]
              and ids[i + 2] == sid["newline"]) + 3
    prompt = torch.from_numpy(ids[:cut])[None]
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        d, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    stops = [sid["im_end"], sid["endoftext"]]
    with torch.no_grad():
        out = model.generate(
            input_ids=prompt,
            attention_mask=torch.ones_like(prompt),
            pixel_values=torch.from_numpy(e["pixel_values"]),
            image_grid_thw=torch.from_numpy(e["image_grid_thw"].astype(np.int64)),
            mm_token_type_ids=(prompt == sid["image_pad"]).long(),
            do_sample=False,
            repetition_penalty=repetition_penalty,
            max_new_tokens=max_new,
            min_new_tokens=max_new,  # a fixed length: stops are checked on our side
            eos_token_id=stops,
            pad_token_id=sid["endoftext"],
            output_logits=True,
            return_dict_in_generate=True,
        )
    gen = out.sequences[0, cut:].numpy()
    logits = torch.cat(out.logits).numpy()
    assert len(gen) == max_new and logits.shape == (max_new, model.config.text_config.vocab_size)
    if repetition_penalty == 1.0:
        # generate()'s tokens are the argmax of its raw logits (no processors besides
        # min_new_tokens, which only masks the stop ids)
        masked = logits.copy()
        masked[:, stops] = -np.inf
        assert np.array_equal(masked.argmax(-1), gen)
    return {
        "prompt_ids": ids[:cut].astype(np.int32),
        "generated": gen.astype(np.int32),
        "logits": logits.astype(np.float32),
        "stops": np.array(stops, dtype=np.int32),
        "repetition_penalty": np.array([repetition_penalty], dtype=np.float32),
    }


def main():
    os.makedirs(OUT_DIR, exist_ok=True)
    torch.manual_seed(0)
    meta = {"transformers": transformers.__version__, "torch": torch.__version__}
    save_file(make_warpers(), os.path.join(OUT_DIR, "warpers.safetensors"), metadata=meta)
    for name in ("A", "B"):
        save_file(greedy_fixture(name, 24), os.path.join(OUT_DIR, f"greedy_{name}.safetensors"),
                  metadata=meta)
    # penalties strong enough to change these random models' greedy output (the reference
    # inference uses 1.05)
    for name, pen in (("A", 1.6), ("B", 1.3)):
        save_file(greedy_fixture(name, 24, pen),
                  os.path.join(OUT_DIR, f"greedy_{name}_rep.safetensors"), metadata=meta)
    print("wrote", OUT_DIR)


if __name__ == "__main__":
    main()
