#!/usr/bin/env python3
"""Added tokens marked normalized=true, tokenized by the Hugging Face `tokenizers` library.

The library matches added tokens in two passes: those with normalized=false on the raw text,
then, inside the text between them, after the normalizer (NFC for Qwen2), those with
normalized=true against their own normalized content. Writes
  tests/fixtures/tokenizer/normalized_added/tokenizer.json  the fixture tokenizer
      (tests/fixtures/tokenizer/tokenizer.json) plus normalized and raw added tokens;
  tests/fixtures/tokenizer/normalized_added/cases.jsonl     {"text", "ids"} per case.
Usage: python3 scripts/make_normalized_token_fixtures.py (creates scripts/.venv with tokenizers).
"""
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "scripts", ".venv")
TOKENIZERS_VERSION = "0.23.3"


def ensure_venv():
    try:
        import tokenizers  # noqa: F401

        return
    except ImportError:
        pass
    py = os.path.join(VENV, "bin", "python")
    if os.path.abspath(sys.executable) == os.path.abspath(py):
        raise SystemExit("tokenizers is not installed in scripts/.venv")
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    subprocess.check_call([py, "-m", "pip", "install", "-q", f"tokenizers=={TOKENIZERS_VERSION}"])
    os.execv(py, [py] + sys.argv)


ensure_venv()
from tokenizers import AddedToken, Tokenizer  # noqa: E402

SRC = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "tokenizer.json")
OUT = os.path.join(ROOT, "tests", "fixtures", "tokenizer", "normalized_added")

# (content, normalized): "tke" only matches text whose NFC still spells it; "A\u030a" (not NFC)
# matches as its NFC "\u00c5"; "ab" (normalized) and "bc" (raw) overlap, and the raw pass runs
# first.
ADDED = [("tke", True), ("\u00e9t\u00e9", True), ("A\u030a", True), ("ab", True), ("bc", False)]
CASES = [
    "tke\u0301",
    "tke",
    "xtkey tke\u0301 tke",
    "e\u0301te\u0301",
    "\u00e9t\u00e9 d'\u00e9te\u0301",
    "\u00c5 and A\u030a",
    "abc",
    "xabcab",
    "<|im_start|>tke<|im_end|>",
    "<|im_start|>tke\u0301\n",
    "caf\u00e9 tke\u0301ab",
]


def main():
    tok = Tokenizer.from_file(SRC)
    tok.add_tokens([AddedToken(c, single_word=False, lstrip=False, rstrip=False, normalized=n)
                    for c, n in ADDED])
    os.makedirs(OUT, exist_ok=True)
    with open(os.path.join(OUT, "tokenizer.json"), "w") as f:
        f.write(tok.to_str())
    with open(os.path.join(OUT, "cases.jsonl"), "w") as f:
        for text in CASES:
            ids = tok.encode(text, add_special_tokens=False).ids
            f.write(json.dumps({"text": text, "ids": ids}, ensure_ascii=True) + "\n")
            print(repr(text), [tok.id_to_token(i) for i in ids])


if __name__ == "__main__":
    main()
