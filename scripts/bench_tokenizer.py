#!/usr/bin/env python3
"""Tokenizer speed: `idoc tokenize --bench` against the Hugging Face `tokenizers` library on the
same corpus, one thread each, and a check that both produce the same number of tokens.

  python3 scripts/bench_tokenizer.py [--idoc build/idoc] [--mb 4] [--repeat 5]

Two tokenizers, both configured exactly like Qwen2's: the 4k-vocabulary test fixture and a
larger one (about 20k, what the generated text supports) trained here on the fly (written to build-bench-tokenizer/, not committed;
no hub download is possible, so Qwen's own 151k vocabulary cannot be used). The corpus is one
text a line: ImageDoctor prompts and responses plus generated multilingual text. The library
runs encode_batch on one thread (RAYON_NUM_THREADS=1, TOKENIZERS_PARALLELISM=false); both sides
tokenize every line separately and keep their piece caches warm across passes.
"""
import os

os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"

import argparse  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import make_tokenizer_fixtures as mf  # noqa: E402  (creates/uses scripts/.venv)
from imagedoctor_texts import PROMPT_STAGE2, sample_caption, sample_response  # noqa: E402
import tokenizers  # noqa: E402
from tokenizers import Tokenizer  # noqa: E402

ROOT = mf.ROOT
OUT = os.path.join(ROOT, "build-bench-tokenizer")


def make_corpus(path, mb, seed):
    r = random.Random(seed)
    size, lines = 0, []
    while size < mb * 1e6:
        k = r.random()
        if k < 0.05:
            s = PROMPT_STAGE2.replace("{caption}", sample_caption(r))
        elif k < 0.45:
            s = sample_response(r)
        elif k < 0.9:
            s = mf.sentence(r, 40)
        else:
            s = mf.random_unicode(r)
        s = s.replace("\n", " ")  # one text a line
        lines.append(s)
        size += len(s.encode("utf-8")) + 1
    with open(path, "w", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return lines


def bench_hf(tok_path, lines, repeat):
    tok = Tokenizer.from_file(tok_path)
    best, total, n_tokens = 1e30, 0.0, 0
    for _ in range(repeat):
        t0 = time.perf_counter()
        enc = tok.encode_batch(lines, add_special_tokens=False)
        dt = time.perf_counter() - t0
        n_tokens = sum(len(e.ids) for e in enc)
        best, total = min(best, dt), total + dt
    return n_tokens, n_tokens / best, n_tokens * repeat / total


def bench_idoc(idoc, tok_path, corpus, repeat):
    out = subprocess.run([idoc, "tokenize", "--tokenizer", tok_path, "--bench", corpus,
                          "--repeat", str(repeat)], check=True, capture_output=True, text=True).stdout
    n_tokens = int(re.search(r"(\d+) tokens per pass", out).group(1))
    m = re.search(r"tokens/s: (\d+) \(best pass\), (\d+) \(mean\)", out)
    return n_tokens, float(m.group(1)), float(m.group(2))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idoc", default=os.path.join(ROOT, "build", "idoc"))
    ap.add_argument("--mb", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    corpus = os.path.join(OUT, "corpus.txt")
    lines = make_corpus(corpus, args.mb, 11)
    big = os.path.join(OUT, "tokenizer_big.json")
    if not os.path.exists(big):  # as large as the generated text supports (about 20k)
        r = random.Random(12)
        train = [mf.sentence(r, 30) for _ in range(60000)] + [sample_response(r) for _ in range(20000)]
        mf.save(mf.train(train, 32000, mf.QWEN_ADDED, exact=False), big)
    n_big = Tokenizer.from_file(big).get_vocab_size()
    cases = [("fixture 4k", os.path.join(ROOT, "tests/fixtures/tokenizer/tokenizer.json")),
             (f"trained {n_big // 1000}k", big)]
    print(f"corpus: {len(lines)} lines, {os.path.getsize(corpus) / 1e6:.1f} MB; "
          f"{args.repeat} passes, best and mean; one thread each")
    for name, path in cases:
        n_i, best_i, mean_i = bench_idoc(args.idoc, path, corpus, args.repeat)
        n_h, best_h, mean_h = bench_hf(path, lines, args.repeat)
        same = "same token count" if n_i == n_h else f"TOKEN COUNTS DIFFER ({n_i} vs {n_h})"
        print(f"{name:12s} idoc: {best_i / 1e6:6.2f} M tokens/s (mean {mean_i / 1e6:.2f})   "
              f"tokenizers {tokenizers.__version__}: {best_h / 1e6:6.2f} M tokens/s "
              f"(mean {mean_h / 1e6:.2f})   ratio {best_i / best_h:.2f}x   {n_i} tokens, {same}")


if __name__ == "__main__":
    main()
