#!/usr/bin/env python3
"""CPU speed of idoc against PyTorch + transformers on the same model, inputs and cores.

`idoc bench train|generate|image --dump DIR` writes a random Qwen2.5-VL (model.safetensors +
config.json, HF layout) and the exact inputs; this script loads them into
Qwen2_5_VLForConditionalGeneration, checks that both sides compute the same thing (training
losses within 1e-5 relative at every step, identical greedy tokens, identical pixel values),
then runs the three benchmarks interleaved (ours, torch with OpenMP's default wait policy, torch
with OMP_WAIT_POLICY=passive, again and again) and prints the table: training step (forward +
backward + AdamW), greedy generation (HF generate() with its KV cache), large-image
preprocessing (the HF Qwen2-VL image processor), peak memory; ratio ours/theirs, torch taken at
its faster wait policy. Ours runs with no OpenMP/BLAS environment variables (the binary owns its
threading); torch runs with torch.set_num_threads(nproc).

Usage (scripts/bench_cpu_vs_torch.sh builds idoc and calls this):
  python3 scripts/bench_cpu_vs_torch.py --idoc build/idoc [--rounds 3] [--train-iters 2]
      [--gen-iters 1] [--image-iters 5] [--threads N] [--quick]
Each measurement is one fresh process (so each reports its own peak RSS); the checks use the
first round's runs. Exit status 1 when the two sides do not compute the same thing. The worker
modes (`torch-train DIR`, `torch-generate DIR`, `torch-image DIR`) are what the
driver runs for the torch side.
The script creates scripts/.venv with the pins of scripts/venv_pins.py on first use
and re-executes itself inside it.
"""

import os
import subprocess
import sys

from venv_pins import QWEN_PINS, VENV_PY, ensure_venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if __name__ == "__main__":
    ensure_venv(__file__, QWEN_PINS)

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import resource  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

# Environment variables that tune OpenMP / BLAS threading: ours runs without any of them.
THREAD_VARS = re.compile(r"^(OMP_|GOMP_|KMP_|OPENBLAS_|GOTO_|MKL_|BLIS_|VECLIB_)")
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


def peak_rss_mib():
    """Peak RSS of this process's own address space (VmHWM, as `idoc bench` reports it):
    getrusage's ru_maxrss survives exec and so can hold the peak of the parent that spawned us."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---------------------------------------------------------------------------------------------
# torch workers (one measurement per process)


def _torch_setup(threads):
    import torch

    torch.set_num_threads(threads)
    return torch


def _load_model(d):
    from transformers import Qwen2_5_VLForConditionalGeneration

    import torch

    return Qwen2_5_VLForConditionalGeneration.from_pretrained(d, dtype=torch.float32)


def worker_train(d, threads, warmup, iters):
    torch = _torch_setup(threads)
    from safetensors.numpy import load_file

    b = load_file(os.path.join(d, "train_batch.safetensors"))
    hp = json.load(open(os.path.join(d, "train.json")))
    model = _load_model(d)
    model.train()
    cfg = model.config
    ids = torch.from_numpy(b["input_ids"].astype("int64"))
    inputs = dict(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        pixel_values=torch.from_numpy(b["pixel_values"]),
        image_grid_thw=torch.from_numpy(b["image_grid_thw"].astype("int64")),
        mm_token_type_ids=(ids == cfg.image_token_id).long(),
        labels=torch.from_numpy(b["labels"].astype("int64")),
        use_cache=False,
    )
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=hp["lr"], betas=tuple(hp["betas"]), eps=hp["eps"],
                            weight_decay=hp["weight_decay"])
    ms, losses = [], []
    for it in range(warmup + iters):
        t0 = time.perf_counter()
        loss = model(**inputs).loss
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, hp["max_grad_norm"])
        opt.step()
        opt.zero_grad(set_to_none=True)
        dt = (time.perf_counter() - t0) * 1e3
        losses.append(float(loss.detach()))
        if it >= warmup:
            ms.append(dt)
    return dict(ms=ms, losses=losses, peak_rss_mib=peak_rss_mib())


def worker_generate(d, threads, warmup, iters):
    torch = _torch_setup(threads)
    from safetensors.numpy import load_file
    from transformers import GenerationConfig

    b = load_file(os.path.join(d, "generate_batch.safetensors"))
    model = _load_model(d)
    model.eval()
    cfg = model.config
    ids = torch.from_numpy(b["input_ids"].astype("int64"))
    n_new = b["generated"].shape[1]
    # greedy, a fixed length, no stop token (as `idoc bench generate`)
    # (set on the model, so generate() has no stop id to fall back on from config.json)
    model.generation_config = GenerationConfig(do_sample=False, max_new_tokens=n_new,
                                               eos_token_id=None, bos_token_id=None,
                                               pad_token_id=0, use_cache=True)
    kw = dict(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        pixel_values=torch.from_numpy(b["pixel_values"]),
        image_grid_thw=torch.from_numpy(b["image_grid_thw"].astype("int64")),
        mm_token_type_ids=(ids == cfg.image_token_id).long(),
    )
    ms, tokens = [], None
    with torch.inference_mode():
        for it in range(warmup + iters):
            t0 = time.perf_counter()
            out = model.generate(**kw)
            dt = (time.perf_counter() - t0) * 1e3
            if tokens is None:
                tokens = out[:, ids.shape[1]:].tolist()
            if it >= warmup:
                ms.append(dt)
    return dict(ms=ms, tokens=tokens, peak_rss_mib=peak_rss_mib())


def _processors():
    """The HF Qwen2-VL image processors this transformers has: the PIL one (our preprocessing is
    bit-exact to it) and the torchvision one when torchvision is installed."""
    import transformers

    kw = dict(min_pixels=3136, max_pixels=12845056, patch_size=14, temporal_patch_size=2,
              merge_size=2, image_mean=CLIP_MEAN, image_std=CLIP_STD)
    out = {}
    if hasattr(transformers, "Qwen2VLImageProcessorPil"):
        out["Qwen2VLImageProcessorPil"] = transformers.Qwen2VLImageProcessorPil(**kw)
    try:
        import torchvision  # noqa: F401

        out["Qwen2VLImageProcessor"] = transformers.Qwen2VLImageProcessor(**kw)
    except Exception:
        pass
    if not out:
        out["Qwen2VLImageProcessor"] = transformers.Qwen2VLImageProcessor(**kw)
    return out


def worker_image(d, threads, warmup, iters):
    _torch_setup(threads)
    import numpy as np
    from PIL import Image
    from safetensors.numpy import load_file

    e = load_file(os.path.join(d, "image.safetensors"))
    img = Image.fromarray(e["image"], "RGB")
    res = {}
    for name, proc in _processors().items():
        ms = []
        for it in range(warmup + iters):
            t0 = time.perf_counter()
            out = proc(images=[img], return_tensors="np")
            dt = (time.perf_counter() - t0) * 1e3
            if it >= warmup:
                ms.append(dt)
        pv = np.asarray(out["pixel_values"], dtype=np.float32)
        same_shape = pv.shape == e["pixel_values"].shape
        res[name] = dict(
            ms=ms,
            max_abs_vs_ours=float(np.abs(pv - e["pixel_values"]).max()) if same_shape else None,
            grid=[int(v) for v in np.asarray(out["image_grid_thw"]).reshape(-1)],
        )
    return dict(processors=res, peak_rss_mib=peak_rss_mib())


# ---------------------------------------------------------------------------------------------
# driver


def run(cmd, env):
    p = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if p.returncode != 0:
        sys.stderr.write(p.stdout + p.stderr)
        raise SystemExit(f"failed ({p.returncode}): {' '.join(cmd)}")
    return p.stdout


def ours_env():
    return {k: v for k, v in os.environ.items() if not THREAD_VARS.match(k)}


def torch_env(policy):
    env = ours_env()
    if policy == "passive":
        env["OMP_WAIT_POLICY"] = "passive"
    return env


def parse_ours(out, kind):
    def num(pat):
        m = re.search(pat, out)
        if not m:
            raise SystemExit(f"idoc bench {kind}: no match for {pat!r} in:\n{out}")
        return float(m.group(1))

    pat = {"train": r"train step: median ([\d.]+) ms", "generate": r"generate: median ([\d.]+) ms",
           "image": r"image: median ([\d.]+) ms"}[kind]
    res = dict(median=num(pat), peak_rss_mib=num(r"peak RSS: ([\d.]+) MiB"))
    res["threading"] = re.search(r"^cpu: .*$", out, re.M).group(0)
    if kind == "train":
        res["losses"] = [float(x) for x in re.findall(r"^step \d+: loss (\S+)", out, re.M)]
    return res


def cpu_model():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        m = re.search(r"^Model name:\s*(.+)$", out, re.M)
        return m.group(1).strip() if m else "unknown"
    except OSError:
        return "unknown (no lscpu)"


def loadavg():
    return " ".join(open("/proc/loadavg").read().split()[:3])


def check_same(d, ours_losses, torch_train, torch_gen, torch_image):
    """Both sides computed the same thing: (ok_loss, ok_tokens, ok_pixels, max loss rel diff)."""
    from safetensors.numpy import load_file

    rel = [abs(a - b) / abs(b) for a, b in zip(ours_losses, torch_train["losses"])]
    print("losses, step by step (ours | torch | rel diff): " + "; ".join(
        f"{a:.7f} | {b:.7f} | {r:.1e}" for a, b, r in zip(ours_losses, torch_train["losses"], rel)))
    ok_loss = len(rel) == len(ours_losses) and max(rel) <= 1e-5
    ours_tokens = load_file(os.path.join(d, "generate_batch.safetensors"))["generated"].tolist()
    theirs = torch_gen["tokens"]
    diverge = [next((j for j, (x, y) in enumerate(zip(a, b)) if x != y), None)
               for a, b in zip(ours_tokens, theirs)]
    same_len = len(ours_tokens) == len(theirs) and all(len(a) == len(b) for a, b in zip(ours_tokens, theirs))
    ok_tokens = same_len and all(x is None for x in diverge)
    distinct = min(len(set(a)) for a in ours_tokens)
    print(f"greedy tokens identical ({len(ours_tokens)} x {len(ours_tokens[0])}, at least {distinct} "
          f"distinct per sequence): {ok_tokens}" + ("" if ok_tokens else
          f" (first difference per sequence: {diverge}, lengths equal: {same_len})"))
    for name, r in torch_image["processors"].items():
        print(f"pixel values vs {name}: max abs difference {r['max_abs_vs_ours']}")
    ok_pixels = all(r["max_abs_vs_ours"] is not None and r["max_abs_vs_ours"] <= 1e-6
                    for n, r in torch_image["processors"].items() if n.endswith("Pil"))
    return ok_loss, ok_tokens, ok_pixels, max(rel) if rel else float("inf"), ours_tokens


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("mode", nargs="?", default="compare",
                    choices=["compare", "torch-train", "torch-generate", "torch-image"])
    ap.add_argument("dir", nargs="?", help="dump folder (worker modes)")
    ap.add_argument("--idoc", default=os.path.join(ROOT, "build", "idoc"))
    ap.add_argument("--work", default=os.path.join(ROOT, "out", "bench_cpu_vs_torch"))
    ap.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    ap.add_argument("--train-iters", type=int, default=2,
                    help="timed training steps per process, after one warmup step (default 2)")
    ap.add_argument("--gen-iters", type=int, default=1,
                    help="timed generate calls per process, no warmup (default 1)")
    ap.add_argument("--image-iters", type=int, default=5,
                    help="timed preprocessing runs per process, after one warmup (default 5)")
    ap.add_argument("--iters", type=int, default=1, help="worker modes: timed iterations")
    ap.add_argument("--warmup", type=int, default=1, help="worker modes: warmup iterations")
    ap.add_argument("--threads", type=int, default=os.cpu_count(),
                    help="torch.set_num_threads (default: the machine's logical cores)")
    ap.add_argument("--quick", action="store_true",
                    help="a small shape and one round (checks the script, not the speed)")
    args = ap.parse_args()

    if args.mode != "compare":
        fn = {"torch-train": worker_train, "torch-generate": worker_generate,
              "torch-image": worker_image}[args.mode]
        print(json.dumps(fn(args.dir, args.threads, args.warmup, args.iters)))
        return

    import importlib.metadata as md  # the driver itself stays light: torch runs in the workers

    versions = {k: md.version(k) for k in ("torch", "transformers")}
    shape, image_size = [], ["--size", "1080x1920"]
    if args.quick:
        shape = ["--hidden", "64", "--layers", "2", "--intermediate", "128", "--vocab", "2048",
                 "--vision-hidden", "32", "--vision-intermediate", "64", "--image", "56",
                 "--seqs", "2", "--seq-len", "64", "--gen-seqs", "2", "--prompt-len", "32",
                 "--new-tokens", "16"]
        image_size = ["--size", "270x480"]
        args.rounds = 1
    d = args.work
    os.makedirs(d, exist_ok=True)
    nproc = args.threads
    me = os.path.abspath(__file__)
    cpu, load0 = cpu_model(), loadavg()
    print(f"cpu: {cpu}, {os.cpu_count()} logical cores; load average at start {load0}")
    print(f"torch {versions['torch']}, transformers {versions['transformers']}; "
          f"torch.set_num_threads({nproc})", flush=True)
    # --device cpu: the CPU comparison even where a GPU is present (the default is auto).
    its = {"train": ["--iters", str(args.train_iters), "--warmup", "1", "--device", "cpu"],
           "generate": ["--iters", str(args.gen_iters), "--warmup", "0", "--device", "cpu"],
           "image": ["--iters", str(args.image_iters), "--warmup", "1"]}

    # Interleaved rounds: ours, torch (libgomp's default waits), torch (passive waits). Ours
    # dumps the model and inputs in round 1 (before torch runs); round 1's torch-default
    # results are also checked against ours.
    variants = ["ours", "torch default", "torch passive"]
    kinds = ("train", "generate", "image")
    times = {k: {v: [] for v in variants} for k in kinds}
    rss = {k: {v: [] for v in variants} for k in kinds}
    first, threading, image_proc = {}, "", "?"
    for rnd in range(args.rounds):
        for kind in kinds:
            for v in variants:
                if v == "ours":
                    cmd = [args.idoc, "bench", kind] + its[kind] + (image_size if kind == "image" else shape)
                    if rnd == 0:
                        cmd += ["--dump", d]
                    o = parse_ours(run(cmd, ours_env()), kind)
                    times[kind][v].append(o["median"])
                    rss[kind][v].append(o["peak_rss_mib"])
                    threading = o["threading"]
                    continue
                w = json.loads(run([VENV_PY, me, f"torch-{kind}", d, "--threads", str(nproc)] + its[kind],
                                   torch_env(v.split()[1])).strip().splitlines()[-1])
                if rnd == 0 and v == "torch default":
                    first[kind] = w
                if kind == "image":  # the faster of the processors this transformers has
                    image_proc, best = min(w["processors"].items(),
                                           key=lambda kv: statistics.median(kv[1]["ms"]))
                    w["ms"] = best["ms"]
                times[kind][v].append(statistics.median(w["ms"]))
                rss[kind][v].append(w["peak_rss_mib"])
            print(f"round {rnd + 1}/{args.rounds} {kind}: " + ", ".join(
                f"{v} {times[kind][v][-1]:.1f} ms" for v in variants) + f" (load {loadavg()})", flush=True)

    ours_losses = json.load(open(os.path.join(d, "train.json")))["losses"]
    ok_loss, ok_tokens, ok_pixels, max_rel, ours_tokens = check_same(
        d, ours_losses, first["train"], first["generate"], first["image"])

    def med(x):
        return statistics.median(x)

    load1 = loadavg()
    n_seq, n_new = len(ours_tokens), len(ours_tokens[0])
    n_tok = n_seq * n_new
    print()
    print(f"CPU: {cpu}, {os.cpu_count()} logical cores; load average {load0} (start), {load1} (end)")
    print(f"ours: `idoc bench` with no OpenMP/BLAS variables ({threading}); torch {versions['torch']}, "
          f"transformers {versions['transformers']}, set_num_threads({nproc}); torch best = the faster "
          f"of its two OpenMP wait policies per row")
    print()
    print("| benchmark | ours | torch default | torch passive | torch best | ours / torch best |")
    print("|---|---|---|---|---|---|")
    rows = [("training step (fwd+bwd+AdamW), ms", "train"),
            (f"greedy generate {n_seq} x {n_new} tokens, ms", "generate"),
            ("image preprocessing 1080x1920, ms" if not args.quick else "image preprocessing, ms", "image")]
    for label, kind in rows:
        o, td, tp = med(times[kind]["ours"]), med(times[kind]["torch default"]), med(times[kind]["torch passive"])
        best = min(td, tp)
        which = "default" if td <= tp else "passive"
        print(f"| {label} | {o:.1f} | {td:.1f} | {tp:.1f} | {best:.1f} ({which}) | {o / best:.2f}x |")
        if kind == "generate":
            print(f"| generate, new tokens/s | {n_tok / o * 1e3:.0f} | {n_tok / td * 1e3:.0f} | "
                  f"{n_tok / tp * 1e3:.0f} | {n_tok / best * 1e3:.0f} | {best / o:.2f}x the tokens/s |")
    for label, kind in (("peak RSS, training, MiB", "train"), ("peak RSS, generate, MiB", "generate"),
                        ("peak RSS, image, MiB", "image")):
        o, td, tp = max(rss[kind]["ours"]), max(rss[kind]["torch default"]), max(rss[kind]["torch passive"])
        best = min(td, tp)
        print(f"| {label} | {o:.0f} | {td:.0f} | {tp:.0f} | {best:.0f} | {o / best:.2f}x |")
    print()
    print(f"medians over {args.rounds} interleaved rounds (per process: training {args.train_iters} "
          f"steps after 1 warmup, generate {args.gen_iters} call(s), image {args.image_iters} runs "
          f"after 1 warmup); torch's image processor: {image_proc}; checks: losses "
          f"{'agree' if ok_loss else 'DIFFER'} (max rel {max_rel:.1e} over {len(ours_losses)} steps), "
          f"greedy tokens {'identical' if ok_tokens else 'DIFFERENT'}, pixel values "
          f"{'identical' if ok_pixels else 'DIFFERENT'}")
    sys.exit(0 if (ok_loss and ok_tokens and ok_pixels) else 1)


if __name__ == "__main__":
    main()
