#!/usr/bin/env python3
"""Compares two training runs for the distributed checks (scripts/dist_checks.sh).

  dist_compare.py losses A B [--field loss] [--rtol 1e-6] [--from N] [--to M] [--exact]
      per-step values of `field` in A/trainer_log.jsonl and B/trainer_log.jsonl (steps both
      logged in [from, to]; at least one), relative difference |a - b| / |b| <= rtol, or the
      same text with --exact
  dist_compare.py tensors A.safetensors B.safetensors [--rtol 1e-5] [--exact]
      every tensor of both files: max |a - b| / max |b| per tensor <= rtol, or the same bytes
  dist_compare.py same FILE_A FILE_B
      byte-identical files

Prints the worst difference found; exits 1 when the check fails. Standard library only (numpy
is used when it is there, for speed).
"""
import argparse
import array
import json
import struct
import sys

try:
    import numpy as np
except ImportError:  # pragma: no cover
    np = None


def log_values(run, field, lo, hi):
    out = {}
    with open(f"{run}/trainer_log.jsonl") as f:
        for line in f:
            d = json.loads(line)
            if "current_steps" not in d or field not in d:
                continue
            s = d["current_steps"]
            if lo <= s <= hi:
                out[s] = d[field]
    return out


def raw_log_values(run, field, lo, hi):
    # The text of each value, for --exact (JSON parsing would round-trip it anyway, but the
    # text is what bitwise equality means here).
    out = {}
    key = f'"{field}": '
    with open(f"{run}/trainer_log.jsonl") as f:
        for line in f:
            if '"current_steps": ' not in line or key not in line:
                continue
            s = int(line.split('"current_steps": ')[1].split(",")[0])
            v = line.split(key)[1].split(",")[0].split("}")[0].strip()
            if lo <= s <= hi:
                out[s] = v
    return out


def cmd_losses(a):
    getter = raw_log_values if a.exact else log_values
    va = getter(a.A, a.field, a.lo, a.hi)
    vb = getter(a.B, a.field, a.lo, a.hi)
    steps = sorted(set(va) & set(vb))
    if not steps:
        print(f"losses: no common logged steps of '{a.field}' in [{a.lo}, {a.hi}]")
        return 1
    missing = sorted(set(va) ^ set(vb))
    worst, at = 0.0, steps[0]
    for s in steps:
        x, y = va[s], vb[s]
        if a.exact:
            d = 0.0 if x == y else float("inf")
        elif x is None or y is None:
            d = 0.0 if x is y else float("inf")
        else:
            d = abs(x - y) / max(abs(y), 1e-30)
        if d > worst:
            worst, at = d, s
    ok = worst <= a.rtol and not missing
    print(
        f"{a.field}: {len(steps)} steps {steps[0]}..{steps[-1]}, worst relative difference "
        f"{worst:.3g} at step {at} ({va[at]} vs {vb[at]}){' missing steps %s' % missing if missing else ''}"
        f" -> {'ok' if ok else 'FAIL'} (rtol {a.rtol:g}{', exact' if a.exact else ''})"
    )
    return 0 if ok else 1


DTYPES = {"F32": ("f", 4), "F16": ("e", 2), "BF16": (None, 2), "I32": ("i", 4), "I64": ("q", 8)}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    head = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, info in head.items():
        if name == "__metadata__":
            continue
        lo, hi = info["data_offsets"]
        out[name] = (info["dtype"], info["shape"], data[base + lo : base + hi])
    return out


def as_floats(dtype, raw):
    if dtype == "BF16":
        if np is not None:
            return (np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16).view(np.float32)
        return [struct.unpack("<f", struct.pack("<I", h << 16))[0] for h in array.array("H", raw)]
    code, _ = DTYPES[dtype]
    if np is not None:
        return np.frombuffer(raw, dtype={"f": np.float32, "e": np.float16, "i": np.int32, "q": np.int64}[code]).astype(np.float64)
    return list(array.array(code, raw))


def cmd_tensors(a):
    ta, tb = read_safetensors(a.A), read_safetensors(a.B)
    if set(ta) != set(tb):
        print(f"tensors: different names: {sorted(set(ta) ^ set(tb))[:5]}")
        return 1
    worst, at = 0.0, None
    for name in sorted(ta):
        (da, sa, ra), (db, sb, rb) = ta[name], tb[name]
        if da != db or sa != sb:
            print(f"tensors: {name}: {da}{sa} vs {db}{sb}")
            return 1
        if a.exact:
            d = 0.0 if ra == rb else float("inf")
        else:
            x, y = as_floats(da, ra), as_floats(db, rb)
            if np is not None:
                scale = float(np.max(np.abs(y))) if len(y) else 0.0
                diff = float(np.max(np.abs(x - y))) if len(y) else 0.0
            else:
                scale = max((abs(v) for v in y), default=0.0)
                diff = max((abs(p - q) for p, q in zip(x, y)), default=0.0)
            d = diff / scale if scale > 0 else (0.0 if diff == 0 else float("inf"))
        if at is None or d > worst:
            worst, at = d, name
    ok = worst <= a.rtol
    print(
        f"tensors: {len(ta)} tensors, worst max|a-b|/max|b| {worst:.3g} ({at}) -> "
        f"{'ok' if ok else 'FAIL'} ({'exact' if a.exact else 'rtol %g' % a.rtol})"
    )
    return 0 if ok else 1


def cmd_same(a):
    with open(a.A, "rb") as f, open(a.B, "rb") as g:
        same = f.read() == g.read()
    print(f"same: {a.A} {a.B} -> {'ok' if same else 'FAIL'}")
    return 0 if same else 1


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    l = sub.add_parser("losses")
    l.add_argument("A")
    l.add_argument("B")
    l.add_argument("--field", default="loss")
    l.add_argument("--rtol", type=float, default=1e-6)
    l.add_argument("--from", dest="lo", type=int, default=1)
    l.add_argument("--to", dest="hi", type=int, default=1 << 30)
    l.add_argument("--exact", action="store_true")
    t = sub.add_parser("tensors")
    t.add_argument("A")
    t.add_argument("B")
    t.add_argument("--rtol", type=float, default=1e-5)
    t.add_argument("--exact", action="store_true")
    s = sub.add_parser("same")
    s.add_argument("A")
    s.add_argument("B")
    a = p.parse_args()
    return {"losses": cmd_losses, "tensors": cmd_tensors, "same": cmd_same}[a.cmd](a)


if __name__ == "__main__":
    sys.exit(main())
