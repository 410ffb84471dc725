#!/usr/bin/env python3
"""Fixtures for config.json keys that change the math, made with Hugging Face transformers.

Each case is fixture A of make_qwen_fixtures.py (its weights and inputs, tests/fixtures/qwen/A)
under a config.json with one key changed, run through Qwen2_5_VLForConditionalGeneration
(float32, eager). Writes tests/fixtures/qwen_keys/NAME/{config.json, expected.safetensors
(logits, image_embeds), manifest.json} for:
  vision_rope_theta       vision_config.rope_parameters.rope_theta 5000 (transformers 5 layout)
  vision_rope_theta_flat  vision_config.rope_theta 5000 (the flat key)
  text_hidden_act         text_config.hidden_act gelu_pytorch_tanh (the C code refuses it: the
                          manifest records how far transformers' logits move)
  tie_in_text_config      tie_word_embeddings only inside text_config (older saves), no lm_head
manifest.json records max |logits - fixture A logits| / max |A logits| for each: a key that moved
nothing would prove nothing.

Usage: python3 scripts/make_config_key_fixtures.py (creates scripts/.venv with the pins).
"""

import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "scripts", ".venv")
VENV_PY = os.path.join(VENV, "bin", "python")
PINS = {"torch": "2.15.0", "transformers": "5.23.0", "safetensors": "0.8.0", "numpy": "2.4.6"}
SRC = os.path.join(ROOT, "tests", "fixtures", "qwen", "A")
OUT = os.path.join(ROOT, "tests", "fixtures", "qwen_keys")


def ensure_venv():
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(VENV_PY):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    check = "import importlib.metadata as m, sys\n" f"pins = {PINS!r}\n"
    check += "sys.exit(0 if all(m.version(k) == v for k, v in pins.items()) else 1)\n"
    if subprocess.run([VENV_PY, "-c", check], capture_output=True).returncode != 0:
        subprocess.check_call([VENV_PY, "-m", "pip", "install"] + [f"{k}=={v}" for k, v in PINS.items()])
    os.execv(VENV_PY, [VENV_PY, os.path.abspath(__file__)] + sys.argv[1:])


if __name__ == "__main__":
    ensure_venv()

import copy  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import tempfile  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402
from transformers import Qwen2_5_VLForConditionalGeneration  # noqa: E402


def vision_rope(c):
    """vision_config.rope_parameters.rope_theta: 10000 -> 5000"""
    c["vision_config"]["rope_parameters"]["rope_theta"] = 5000.0


def vision_rope_flat(c):
    """vision_config.rope_theta 5000 (flat key, no rope_parameters)"""
    del c["vision_config"]["rope_parameters"]
    c["vision_config"]["rope_theta"] = 5000.0


def text_act(c):
    """text_config.hidden_act: silu -> gelu_pytorch_tanh"""
    c["text_config"]["hidden_act"] = "gelu_pytorch_tanh"


def tie_text_only(c):
    """tie_word_embeddings only in text_config (top-level key removed)"""
    del c["tie_word_embeddings"]
    c["text_config"]["tie_word_embeddings"] = True


CASES = {
    "vision_rope_theta": vision_rope,
    "vision_rope_theta_flat": vision_rope_flat,
    "text_hidden_act": text_act,
    "tie_in_text_config": tie_text_only,
}


def run(config):
    """Logits and image features of fixture A's inputs under `config` (A's weights)."""
    e = load_file(os.path.join(SRC, "expected.safetensors"))
    with tempfile.TemporaryDirectory() as d:
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(config, f, indent=2)
        shutil.copy(os.path.join(SRC, "model.safetensors"), d)
        model, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            d, attn_implementation="eager", dtype=torch.float32, output_loading_info=True
        )
    problems = {k: v for k, v in info.items() if v}
    assert not problems, problems
    model.eval()
    with torch.no_grad():
        pv = torch.from_numpy(e["pixel_values"])
        grid = torch.from_numpy(e["image_grid_thw"].astype(np.int64))
        img = torch.cat(model.model.get_image_features(pv, grid).pooler_output)
        out = model(
            input_ids=torch.from_numpy(e["input_ids"].astype(np.int64)),
            attention_mask=torch.from_numpy(e["attention_mask"].astype(np.int64)),
            pixel_values=torch.from_numpy(e["pixel_values"]),
            image_grid_thw=torch.from_numpy(e["image_grid_thw"].astype(np.int64)),
            mm_token_type_ids=torch.from_numpy(e["mm_token_type_ids"].astype(np.int64)),
            use_cache=False,
        )
    logits = out.logits[0].numpy().astype(np.float32)
    rel = float(np.abs(logits - e["logits"].reshape(logits.shape)).max() / np.abs(e["logits"]).max())
    arrs = {"logits": np.ascontiguousarray(logits),
            "image_embeds": np.ascontiguousarray(img.numpy().astype(np.float32))}
    return arrs, rel


def main():
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    with open(os.path.join(SRC, "config.json")) as f:
        base = json.load(f)
    _, rel0 = run(base)
    assert rel0 < 1e-5, f"fixture A does not reproduce ({rel0})"
    os.makedirs(OUT, exist_ok=True)
    for name, change in CASES.items():
        c = copy.deepcopy(base)
        change(c)
        arrs, rel = run(c)
        d = os.path.join(OUT, name)
        os.makedirs(d, exist_ok=True)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(c, f, indent=2)
        save_file(arrs, os.path.join(d, "expected.safetensors"), metadata={"fixture": name})
        manifest = dict(
            name=name,
            weights_and_inputs="tests/fixtures/qwen/A",
            change=change.__doc__ or change.__name__,
            logits_rel_change_vs_A=rel,
            versions=dict(transformers=transformers.__version__, torch=torch.__version__),
        )
        with open(os.path.join(d, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=1)
        for fn in os.listdir(d):
            os.chmod(os.path.join(d, fn), 0o644)
        print(f"[{name}] logits moved by {rel:.3e} (relative to A)")


if __name__ == "__main__":
    main()
