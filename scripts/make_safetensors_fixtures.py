#!/usr/bin/env python3
"""Safetensors fixtures for tests/unit/test_safetensors.c, and a cross-check of files our writer made.

    python3 scripts/make_safetensors_fixtures.py            # (re)make tests/fixtures/safetensors/
    python3 scripts/make_safetensors_fixtures.py --check DIR  # verify files written by our C writer

The script re-executes itself inside scripts/.venv (created if needed) with `safetensors`, `numpy`
and `ml_dtypes` (numpy's bfloat16, so BF16 works without torch) installed from PyPI.

Fixtures (all tiny):
  single.safetensors + single.expected.txt  every loadable dtype, odd shapes, a 0-d scalar, an empty
                                            tensor, inf / -0.0 / f16 subnormals, written by the
                                            reference `safetensors` library
  f64.safetensors                           valid file whose dtype nn/tensor.h lacks
  sharded/                                  a 2-shard Qwen-style checkpoint with
                                            model.safetensors.index.json; shard 2 uses the
                                            transformers >= 4.52 names (model.language_model.*,
                                            model.visual.*); sharded.expected.txt lists the
                                            normalised names
  malformed/*.safetensors + malformed/EXPECTED.tsv   hand-made broken files and the fragment our
                                            error message must contain; each is also checked to
                                            be rejected by the reference library, recorded in
                                            the .tsv's third column
Expected-values format: per tensor two lines, "NAME DTYPE NDIM D0 .. Dn-1" then the values
(floats as Python repr of the float32 value, ints as integers), space separated.

--check DIR: DIR holds what test_safetensors wrote when run with IDOC_ST_KEEP_DIR=DIR:
  single_keep.safetensors   single.safetensors re-written by our writer keeping dtypes
  single_bf16.safetensors   the same with float tensors converted to BF16
  sharded/                  the sharded fixture re-written by our writer in 4 shards, normalised names
Each is opened with the reference library and compared bit-for-bit with the fixtures (BF16 against
numpy/ml_dtypes' round-to-nearest-even conversion).
"""
import json
import os
import struct
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV = os.path.join(HERE, ".venv")
OUT = os.path.join(ROOT, "tests", "fixtures", "safetensors")
PKGS = ["safetensors", "numpy", "ml_dtypes"]


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if os.path.abspath(sys.prefix) == os.path.abspath(VENV):
        try:
            import ml_dtypes, numpy, safetensors  # noqa: F401
            return
        except ImportError:
            pass
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    subprocess.check_call([py, "-m", "pip", "install", "-q"] + PKGS)
    os.execv(py, [py] + sys.argv)


ensure_venv()

import ml_dtypes  # noqa: E402
import numpy as np  # noqa: E402
import safetensors  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

BF16 = ml_dtypes.bfloat16
DT = {np.dtype(np.float32): "F32", np.dtype(BF16): "BF16", np.dtype(np.float16): "F16",
      np.dtype(np.int32): "I32", np.dtype(np.int64): "I64", np.dtype(np.uint8): "U8"}


def write_expected(path, tensors):
    with open(path, "w") as f:
        for name in sorted(tensors):
            a = tensors[name]
            f.write(f"{name} {DT[a.dtype]} {a.ndim}" + "".join(f" {d}" for d in a.shape) + "\n")
            flat = a.reshape(-1)
            if a.dtype.kind == "f" or a.dtype == np.dtype(BF16):
                vals = [repr(float(np.float32(x))) for x in flat]
            else:
                vals = [str(int(x)) for x in flat]
            f.write(" ".join(vals) + "\n")


def single_tensors():
    rng = np.random.default_rng(20240611)
    f32 = rng.standard_normal((3, 5, 7)).astype(np.float32)
    f32.flat[0], f32.flat[1], f32.flat[2] = np.inf, -np.inf, -0.0
    f16 = (rng.standard_normal(13) * 100).astype(np.float16)
    f16[0], f16[1] = np.float16(6e-8), np.float16(-3.0e-5)  # subnormals
    return {
        "f32.odd": f32,
        "bf16.mat": (rng.standard_normal((5, 3)) * 3).astype(np.float32).astype(BF16),
        "f16.vec": f16,
        "i32.ids": np.array([[0, -1, 2147483647], [-2147483648, 151655, 7]], dtype=np.int32),
        "i64.big": np.array([1 << 40, -(1 << 33), 0, 5], dtype=np.int64),
        "u8.bytes": np.arange(250, 259, dtype=np.int64).astype(np.uint8),
        "scalar": np.array(2.5, dtype=np.float32),
        "empty": np.zeros((0, 4), dtype=np.float32),
    }


def sharded_tensors():
    """A miniature Qwen2.5-VL: normalised name -> (array, shard, name in that shard)."""
    rng = np.random.default_rng(7)

    def w(*shape):
        return (rng.standard_normal(shape) * 0.1).astype(np.float32).astype(BF16)

    t = {}
    t["model.embed_tokens.weight"] = (w(16, 8), 1, "model.embed_tokens.weight")
    t["model.layers.0.self_attn.q_proj.weight"] = (w(8, 8), 1, "model.layers.0.self_attn.q_proj.weight")
    t["model.layers.0.self_attn.q_proj.bias"] = (w(8), 1, "model.layers.0.self_attn.q_proj.bias")
    t["visual.patch_embed.proj.weight"] = (w(4, 3, 2, 2, 2), 1, "visual.patch_embed.proj.weight")
    # Shard 2: the re-nested naming of transformers >= 4.52.
    t["model.layers.0.mlp.down_proj.weight"] = (w(8, 12), 2, "model.language_model.layers.0.mlp.down_proj.weight")
    t["model.norm.weight"] = ((1 + w(8).astype(np.float32)).astype(np.float32), 2, "model.language_model.norm.weight")
    t["visual.blocks.0.attn.qkv.weight"] = (w(12, 4), 2, "model.visual.blocks.0.attn.qkv.weight")
    t["visual.merger.mlp.0.bias"] = (w(16), 2, "model.visual.merger.mlp.0.bias")
    t["lm_head.weight"] = (w(16, 8), 2, "lm_head.weight")
    return t


def raw_file(header, data=b"", length=None):
    """A safetensors file from a header (dict or raw bytes) and data, optionally lying about length."""
    h = header if isinstance(header, bytes) else json.dumps(header).encode()
    n = len(h) if length is None else length
    return struct.pack("<Q", n) + h + data


def malformed():
    """(file name, bytes, fragment our error must contain)."""
    ok = {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 16]}
    d16 = bytes(16)
    cases = [
        ("too_short", b"\x05\x00\x00", "too short for a safetensors header"),
        ("truncated_header", raw_file({"a": ok}, d16)[:40], "runs past the end of the file"),
        ("header_len_huge", struct.pack("<Q", 1 << 63) + b"{}", "exceeds the limit"),
        ("bad_json", raw_file(b'{"a": {"dtype": "F32",, "shape": [1]}}', d16), "JSON error at byte 22"),
        ("trailing_garbage", raw_file(b'{"a": {"dtype": "F32", "shape": [2,2], "data_offsets": [0,16]}} x', d16),
         "unexpected data after the JSON value"),
        ("not_object", raw_file(b"[1, 2]"), "header is a JSON array, expected an object"),
        ("offsets_out_of_range", raw_file({"x.weight": {"dtype": "F32", "shape": [128], "data_offsets": [0, 512]}},
                                          bytes(400)),
         "tensor 'x.weight': data_offsets end 512 past the data section (400 bytes)"),
        ("overlap", raw_file({"a": ok, "b": {"dtype": "F32", "shape": [2, 2], "data_offsets": [8, 24]}}, bytes(24)),
         "overlap"),
        ("size_mismatch", raw_file({"a": {"dtype": "F32", "shape": [2, 2], "data_offsets": [0, 12]}}, d16),
         "data_offsets span 12 bytes but F32 [2, 2] needs 16"),
        ("unknown_dtype", raw_file({"a": {"dtype": "F128", "shape": [1], "data_offsets": [0, 16]}}, d16),
         "unknown dtype \"F128\""),
        ("negative_shape", raw_file({"a": {"dtype": "F32", "shape": [-1, 4], "data_offsets": [0, 16]}}, d16),
         "tensor 'a': shape[0]: integer -1 out of range"),
        ("numel_overflow", raw_file({"a": {"dtype": "F32", "shape": [1 << 32, 1 << 32, 4], "data_offsets": [0, 16]}},
                                    d16),
         "has too many elements"),
        ("begin_after_end", raw_file({"a": {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}}, d16),
         "data_offsets begin 8 > end 4"),
        ("offset_not_integer", raw_file(b'{"a": {"dtype": "F32", "shape": [4], "data_offsets": [0.0, 16]}}', d16),
         "data_offsets[0]: expected an integer, found 0.0"),
        ("offsets_one_number", raw_file({"a": {"dtype": "F32", "shape": [4], "data_offsets": [16]}}, d16),
         "\"data_offsets\" must be an array of two integers"),
        ("shape_not_array", raw_file({"a": {"dtype": "F32", "shape": 4, "data_offsets": [0, 16]}}, d16),
         "missing or non-array \"shape\""),
        ("missing_dtype", raw_file({"a": {"shape": [4], "data_offsets": [0, 16]}}, d16),
         "missing or non-string \"dtype\""),
        ("entry_not_object", raw_file({"a": [1, 2]}, d16), "tensor 'a': entry is an array, expected an object"),
        ("metadata_not_string", raw_file({"__metadata__": {"format": 1}, "a": ok}, d16),
         "\"__metadata__\" value \"format\" is a number, expected a string"),
        ("duplicate_name", raw_file(b'{"a": {"dtype": "F32", "shape": [2,2], "data_offsets": [0,16]}, '
                                    b'"a": {"dtype": "F32", "shape": [2,2], "data_offsets": [0,16]}}', d16),
         "duplicate key \"a\""),
        ("bad_utf8", raw_file(b'{"\xff": {"dtype": "F32", "shape": [2,2], "data_offsets": [0,16]}}', d16),
         "invalid UTF-8"),
        ("deep_nesting", raw_file(b'{"__metadata__": ' + b"[" * 1000 + b"]" * 1000 + b"}"),
         "nesting deeper than"),
    ]
    return cases


def reference_rejects(path):
    try:
        with safe_open(path, framework="numpy") as f:
            for k in f.keys():
                f.get_tensor(k)
        return False
    except Exception:
        return True


def make():
    os.makedirs(os.path.join(OUT, "sharded"), exist_ok=True)
    os.makedirs(os.path.join(OUT, "malformed"), exist_ok=True)

    single = single_tensors()
    save_file(single, os.path.join(OUT, "single.safetensors"), metadata={"format": "pt", "note": "fixture"})
    write_expected(os.path.join(OUT, "single.expected.txt"), single)
    save_file({"f64.values": np.array([1.5, -2.0], dtype=np.float64)}, os.path.join(OUT, "f64.safetensors"))

    sh = sharded_tensors()
    shards = {1: {}, 2: {}}
    weight_map, total = {}, 0
    for arr, s, fname in sh.values():
        shards[s][fname] = arr
        weight_map[fname] = f"model-0000{s}-of-00002.safetensors"
        total += arr.nbytes
    for s, ts in shards.items():
        save_file(ts, os.path.join(OUT, "sharded", f"model-0000{s}-of-00002.safetensors"), metadata={"format": "pt"})
    with open(os.path.join(OUT, "sharded", "model.safetensors.index.json"), "w") as f:
        json.dump({"metadata": {"total_size": total}, "weight_map": weight_map}, f, indent=2, sort_keys=True)
        f.write("\n")
    write_expected(os.path.join(OUT, "sharded.expected.txt"), {k: v[0] for k, v in sh.items()})

    rows = []
    for name, data, frag in malformed():
        p = os.path.join(OUT, "malformed", name + ".safetensors")
        with open(p, "wb") as f:
            f.write(data)
        rows.append(f"{name}.safetensors\t{frag}\t{'rejected' if reference_rejects(p) else 'ACCEPTED'}")
    with open(os.path.join(OUT, "malformed", "EXPECTED.tsv"), "w") as f:
        f.write("# file\tfragment our error message must contain\tsafetensors " + safetensors.__version__ + "\n")
        f.write("\n".join(rows) + "\n")
    print("fixtures written to", OUT)
    for r in rows:
        print(" ", r)


def load_all(path):
    with safe_open(path, framework="numpy") as f:
        return {k: f.get_tensor(k) for k in f.keys()}, f.metadata()


def same_bits(a, b):
    return a.dtype == b.dtype and a.shape == b.shape and a.tobytes() == b.tobytes()


def check(d):
    problems, n_checked = [], 0
    ref_single = single_tensors()

    def cmp(label, got, want):
        nonlocal n_checked
        if sorted(got) != sorted(want):
            problems.append(f"{label}: names {sorted(got)} != {sorted(want)}")
            return
        for k in want:
            n_checked += 1
            if not same_bits(got[k], want[k]):
                problems.append(f"{label}: '{k}' differs: {got[k].dtype}{got[k].shape} vs {want[k].dtype}{want[k].shape}")

    got, meta = load_all(os.path.join(d, "single_keep.safetensors"))
    cmp("single_keep", got, ref_single)
    if meta.get("format") != "pt":
        problems.append(f"single_keep: metadata {meta}")
    got, _ = load_all(os.path.join(d, "single_bf16.safetensors"))
    want = {k: (v.astype(np.float32).astype(BF16) if v.dtype.kind == "f" or v.dtype == np.dtype(BF16) else v)
            for k, v in ref_single.items()}
    cmp("single_bf16", got, want)

    sd = os.path.join(d, "sharded")
    with open(os.path.join(sd, "model.safetensors.index.json")) as f:
        index = json.load(f)
    got, total = {}, 0
    for shard in sorted(set(index["weight_map"].values())):
        ts, _ = load_all(os.path.join(sd, shard))
        for k, v in ts.items():
            if index["weight_map"].get(k) != shard:
                problems.append(f"sharded: '{k}' in {shard} but index says {index['weight_map'].get(k)}")
            got[k] = v
            total += v.nbytes
    if total != index["metadata"]["total_size"]:
        problems.append(f"sharded: total_size {index['metadata']['total_size']} != {total}")
    cmp("sharded", got, {k: v[0] for k, v in sharded_tensors().items()})
    n_shards = len(set(index["weight_map"].values()))

    print(f"safetensors {safetensors.__version__}, numpy {np.__version__}, ml_dtypes {ml_dtypes.__version__}")
    print(f"checked {n_checked} tensors in 2 single files and a {n_shards}-shard checkpoint")
    if problems:
        print("MISMATCH:\n  " + "\n  ".join(problems))
        sys.exit(1)
    print("OK: every tensor identical (dtype, shape, bytes)")


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == "--check":
        check(sys.argv[2])
    elif len(sys.argv) == 1:
        make()
    else:
        sys.exit(__doc__)
