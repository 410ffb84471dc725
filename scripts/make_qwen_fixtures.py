#!/usr/bin/env python3
"""Reference fixtures for the C Qwen2.5-VL implementation, made with Hugging Face transformers.

Writes tests/fixtures/qwen/{A,B,P}/ (see tests/fixtures/qwen/README.md for the file contents):
  A  tied embeddings, GQA, one non-square image whose merged grid leaves partial windows,
     vision depth 4 with full-attention blocks 1 and 3;
  B  untied lm_head, two images of different sizes in one sequence (text before/between/after),
     one image grid with empty (deduplicated) windows;
  P  image-processor-only cases: RGBA (alpha on white), grayscale, min_pixels / max_pixels
     branches, banker's rounding.
Everything is float32 on CPU, eager attention, random seeded weights; nothing comes from the hub.

Usage:
  python3 scripts/make_qwen_fixtures.py                      # (re)generate all fixtures
  python3 scripts/make_qwen_fixtures.py --check-ours DIR --config A
      load a checkpoint directory written by our C code into transformers, run the saved inputs of
      fixture A and compare logits/loss with the saved ones; appends a line to
      tests/fixtures/qwen/ROUNDTRIP.md.  Exit status 1 when the logits do not match.
The script creates scripts/.venv and installs the pinned packages on first use, then re-executes
itself inside it.
"""

import os
import sys

from venv_pins import QWEN_PINS, ensure_venv

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PINS = QWEN_PINS
OUT_DIR = os.path.join(ROOT, "tests", "fixtures", "qwen")


if __name__ == "__main__":
    ensure_venv(__file__, PINS)

import argparse  # noqa: E402
import copy  # noqa: E402
import datetime  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import shutil  # noqa: E402

import numpy as np  # noqa: E402
import PIL  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from safetensors.numpy import load_file, save_file  # noqa: E402
from transformers import (  # noqa: E402
    Qwen2_5_VLConfig,
    Qwen2_5_VLForConditionalGeneration,
    Qwen2VLImageProcessorPil,
)

PATCH, TPATCH, MERGE = 14, 2, 2
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]

# ----------------------------------------------------------------------------------------------
# Fixture definitions.  Token ids live inside the small vocabularies; the layout mirrors the
# Qwen chat template (spec section 5): <|im_start|>system\n...<|im_end|>\n<|im_start|>user\n
# <|vision_start|><|image_pad|>*N<|vision_end|>text<|im_end|>\n<|im_start|>assistant\n answer
# <|im_end|>\n.  Words ("system", "user", "assistant", "\n") get fixed small ids.

CONFIGS = {
    "A": dict(
        description="tied embeddings, GQA 4q/2kv, head_dim 16, mrope [2,3,3], rope_theta 1e4; "
        "vision depth 4, full attention in blocks 1 and 3, one 150x190 image -> 140x196 "
        "(grid 10x14, merged 5x7: partial windows on both edges)",
        seed=1234,
        text=dict(
            vocab_size=512,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            rope_theta=10000.0,
            mrope_section=[2, 3, 3],
        ),
        vision=dict(
            depth=4,
            hidden_size=32,
            intermediate_size=64,
            num_heads=2,
            fullatt_block_indexes=[1, 3],
        ),
        tie=True,
        ids=dict(
            endoftext=489,
            im_start=490,
            im_end=491,
            vision_start=498,
            vision_end=499,
            image_pad=500,
            video_pad=501,
            vision_pad=502,
            system=12,
            user=13,
            assistant=14,
            newline=10,
        ),
        text_id_range=[20, 480],
        # processor bounds: neither min nor max branch for this image
        processor=dict(min_pixels=56 * 56, max_pixels=28 * 28 * 64),
        images=[dict(file="image0.png", h=150, w=190, mode="RGB", seed=11)],
        # segments: ("text", n) random ids, ("img", k) = vision_start, pads, vision_end
        user_segments=[("img", 0), ("text", 6)],
        system_len=5,
        answer_len=8,
    ),
    "B": dict(
        description="untied lm_head, MQA 3q/1kv, head_dim 24, mrope [2,5,5], rope_theta 1e6; "
        "vision depth 3 (hidden 40, 2 heads of 20: 5 rotary frequencies per axis), full attention "
        "in block 1; two images in one "
        "sequence: 98x70 -> 112x56 (banker's rounding 3.5->4, 2.5->2; merged 4x2 so an empty "
        "window row is dropped) and 300x220 -> 140x84 (max_pixels branch, merged 5x3)",
        seed=4321,
        text=dict(
            vocab_size=400,
            hidden_size=72,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=3,
            num_key_value_heads=1,
            rope_theta=1000000.0,
            mrope_section=[2, 5, 5],
        ),
        vision=dict(
            depth=3,
            hidden_size=40,
            intermediate_size=80,
            num_heads=2,
            fullatt_block_indexes=[1],
        ),
        tie=False,
        ids=dict(
            endoftext=379,
            im_start=380,
            im_end=381,
            vision_start=395,
            vision_end=396,
            image_pad=397,
            video_pad=398,
            vision_pad=399,
            system=7,
            user=8,
            assistant=9,
            newline=5,
        ),
        text_id_range=[16, 370],
        processor=dict(min_pixels=56 * 56, max_pixels=28 * 28 * 20),
        images=[
            dict(file="image0.png", h=98, w=70, mode="RGB", seed=21),
            dict(file="image1.png", h=300, w=220, mode="RGB", seed=22),
        ],
        user_segments=[("text", 4), ("img", 0), ("text", 3), ("img", 1), ("text", 5)],
        system_len=3,
        answer_len=6,
    ),
}

# Processor-only cases: (file, h, w, mode, seed, min_pixels, max_pixels, what it exercises)
PROC_CASES = [
    ("p0_rgba.png", 30, 40, "RGBA", 31, 3136, 28 * 28 * 1280,
     "RGBA with varying alpha (composited on white); min_pixels branch 30x40 -> 56x84"),
    ("p1_gray.png", 33, 130, "L", 32, 3136, 28 * 28 * 1280,
     "grayscale; 33x130 -> 28x140 (a single merged row)"),
    ("p2_round.png", 42, 126, "RGB", 33, 3136, 28 * 28 * 1280,
     "banker's rounding both ways: 42/28=1.5 -> 2, 126/28=4.5 -> 4: 56x112"),
    ("p3_down.png", 280, 200, "RGB", 34, 3136, 28 * 28 * 6,
     "max_pixels branch, strong antialiased downscale 280x200 -> 56x56"),
]


# ----------------------------------------------------------------------------------------------
# helpers


def py_round_half_even(x):
    return int(round(x))  # Python's round is half-to-even; kept explicit for readers


def smart_resize_ref(h, w, min_pixels, max_pixels, factor=28):
    """Spec 4.2, written independently of transformers to cross-check the processor."""
    assert max(h, w) / min(h, w) <= 200
    hb = py_round_half_even(h / factor) * factor
    wb = py_round_half_even(w / factor) * factor
    branch = "round"
    if hb * wb > max_pixels:
        beta = math.sqrt(h * w / max_pixels)
        hb = max(factor, math.floor(h / beta / factor) * factor)
        wb = max(factor, math.floor(w / beta / factor) * factor)
        branch = "max_pixels"
    elif hb * wb < min_pixels:
        beta = math.sqrt(min_pixels / (h * w))
        hb = math.ceil(h * beta / factor) * factor
        wb = math.ceil(w * beta / factor) * factor
        branch = "min_pixels"
    return hb, wb, branch


def make_image(h, w, mode, seed):
    """Deterministic test picture: smooth gradients + sinusoids + a few rectangles + mild noise,
    so bicubic resampling sees both smooth areas and sharp edges."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    chans = []
    for c in range(3):
        fy, fx = rng.uniform(0.02, 0.25, size=2)
        ph = rng.uniform(0, 2 * np.pi)
        v = 128 + 60 * np.sin(fy * yy + fx * xx + ph) + 50 * (xx / w - 0.5) * (1 if c % 2 else -1)
        v += 30 * (yy / h - 0.5)
        chans.append(v)
    img = np.stack(chans, axis=-1)
    for _ in range(4):
        y0, x0 = rng.integers(0, h - 2), rng.integers(0, w - 2)
        y1, x1 = rng.integers(y0 + 1, h), rng.integers(x0 + 1, w)
        img[y0:y1, x0:x1] = rng.uniform(0, 255, size=3)
    img += rng.normal(0, 4, size=img.shape)
    img = np.clip(np.rint(img), 0, 255).astype(np.uint8)
    if mode == "RGB":
        return Image.fromarray(img, "RGB")
    if mode == "L":
        return Image.fromarray(img[..., 0], "L")
    if mode == "RGBA":
        alpha = np.clip(np.rint(255 * (xx / (w - 1))), 0, 255).astype(np.uint8)
        alpha[: h // 3] = 255  # opaque band
        alpha[h // 3 : h // 3 + 3] = 0  # fully transparent rows
        return Image.fromarray(np.dstack([img, alpha]), "RGBA")
    raise ValueError(mode)


def pil_bicubic_taps(in_size, out_size):
    """Per output pixel: first input index and 22-bit fixed-point weights, as Pillow computes
    them for 8-bit images (libImaging/Resample.c: precompute_coeffs, normalize_coeffs_8bpc)."""

    def cubic(x):  # Keys kernel, a = -0.5
        x = abs(x)
        if x < 1.0:
            return (1.5 * x - 2.5) * x * x + 1
        if x < 2.0:
            return (((x - 5) * x + 8) * x - 4) * -0.5
        return 0.0

    scale = in_size / out_size
    fscale = max(scale, 1.0)  # antialias: widen the kernel when downscaling
    support, inv = 2.0 * fscale, 1.0 / fscale
    taps = []
    for o in range(out_size):
        center = (o + 0.5) * scale
        lo = max(int(center - support + 0.5), 0)
        n = min(int(center + support + 0.5), in_size) - lo
        w = [cubic((i + lo - center + 0.5) * inv) for i in range(n)]
        tot = sum(w)
        w = [v / tot for v in w] if tot != 0.0 else w
        taps.append((lo, [int(v * (1 << 22) + (0.5 if v >= 0 else -0.5)) for v in w]))
    return taps


def pil_bicubic_ref(rgb, out_h, out_w):
    """Pillow's uint8 BICUBIC resize in numpy.  Two separable passes, each rounding to uint8:
    acc = 2^21 + sum(pixel * w_fixed), out = clip(acc >> 22, 0, 255).  A pass is skipped when
    that size is unchanged.  Pillow >= 13 runs the vertical pass first when
    (in_h - out_h) > 0 and (in_h - out_h) > 2 * (in_w - out_w); older Pillow always horizontal first."""
    a = np.asarray(rgb).astype(np.int64)
    in_h, in_w = a.shape[:2]

    def one_pass(x, n_out, axis):
        x = np.moveaxis(x, axis, 0)
        out = np.empty((n_out,) + x.shape[1:], dtype=np.int64)
        for o, (lo, k) in enumerate(pil_bicubic_taps(x.shape[0], n_out)):
            acc = np.full(x.shape[1:], 1 << 21, dtype=np.int64)
            for j, kv in enumerate(k):
                acc += x[lo + j] * kv
            out[o] = np.clip(acc >> 22, 0, 255)
        return np.moveaxis(out, 0, axis)

    vertical_first = (in_h - out_h) > 0 and (in_h - out_h) > 2 * (in_w - out_w)
    order = [(out_h, 0), (out_w, 1)] if vertical_first else [(out_w, 1), (out_h, 0)]
    for n_out, axis in order:
        if a.shape[axis] != n_out:
            a = one_pass(a, n_out, axis)
    return a.astype(np.uint8), ("vertical" if vertical_first else "horizontal") + " pass first"


def composite_on_white_ref(img):
    """RGB conversion as the processor does it: alpha composited on opaque white, which for
    8-bit values is exactly round_half_up((c*a + 255*(255-a)) / 255) (checked for all c, a)."""
    if img.mode == "RGBA":
        x = np.asarray(img).astype(np.int64)
        c, a = x[..., :3], x[..., 3:]
        return np.floor((c * a + 255 * (255 - a)) / 255 + 0.5).astype(np.uint8)
    return np.asarray(img.convert("RGB"))


def make_processor(min_pixels, max_pixels):
    return Qwen2VLImageProcessorPil(
        min_pixels=min_pixels,
        max_pixels=max_pixels,
        patch_size=PATCH,
        temporal_patch_size=TPATCH,
        merge_size=MERGE,
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        do_convert_rgb=True,
        do_resize=True,
        do_rescale=True,
        do_normalize=True,
    )


def hf_resized_rgb(img, min_pixels, max_pixels):
    """The uint8 RGB picture the PIL processor feeds to rescale/normalize (for debugging the C
    resize on its own): convert_rgb (alpha on white) then PIL BICUBIC to the smart_resize size."""
    from transformers.image_transforms import convert_to_rgb

    rgb = Image.fromarray(convert_to_rgb(img, return_numpy=True), "RGB")
    hb, wb, _ = smart_resize_ref(img.height, img.width, min_pixels, max_pixels)
    return rgb, rgb.resize((wb, hb), resample=Image.Resampling.BICUBIC)


def pixel_values_ref(resized_rgb):
    """Spec 4.3 steps 3-5 in numpy, from the resized uint8 picture (cross-check of the processor)."""
    a = np.asarray(resized_rgb).astype(np.float64) * (1 / 255)  # rescale in f64, like HF
    a = a.astype(np.float32)
    mean = np.array(CLIP_MEAN, dtype=np.float32)
    std = np.array(CLIP_STD, dtype=np.float32)
    a = (a - mean) / std  # float32 arithmetic
    a = a.transpose(2, 0, 1)  # C,H,W
    C, H, W = a.shape
    gh, gw = H // PATCH, W // PATCH
    frames = np.stack([a, a])  # temporal duplication: 2 identical frames
    x = frames.reshape(1, TPATCH, C, gh // 2, 2, PATCH, gw // 2, 2, PATCH)
    x = x.transpose(0, 3, 6, 4, 7, 2, 1, 5, 8)
    return np.ascontiguousarray(x.reshape(gh * gw, C * TPATCH * PATCH * PATCH)), (1, gh, gw)


def rope_index_ref(input_ids, grids, image_token_id):
    """Spec 3.3 for one sequence: text positions advance by 1, an image run gets
    (next, next+r, next+c) and advances next by max(H', W')."""
    pos = np.zeros((3, len(input_ids)), dtype=np.int64)
    nxt, i, k = 0, 0, 0
    while i < len(input_ids):
        if input_ids[i] == image_token_id:
            t, gh, gw = grids[k]
            hh, ww = gh // 2, gw // 2
            n = t * hh * ww
            for j in range(n):
                r, c = (j % (hh * ww)) // ww, j % ww
                pos[:, i + j] = (nxt, nxt + r, nxt + c)
            nxt += max(hh, ww)
            i += n
            k += 1
        else:
            pos[:, i] = nxt
            nxt += 1
            i += 1
    return pos, int(pos.max()) + 1 - len(input_ids)


def spec_forward(w, cfg, input_ids, pixel_values, grids):
    """Independent float64 re-implementation of the spec (sections 2 and 3) on the checkpoint's
    tensors (file names).  Not used to make the fixtures: it proves the spec the C code follows
    agrees with transformers.  Returns (image_embeds [N,H], logits [S,V])."""
    f64 = {k: v.double() for k, v in w.items()}
    vc, tc = cfg["vision"], cfg["text"]
    Dv, nh = vc["hidden_size"], vc["num_heads"]
    hd = Dv // nh

    def rms(x, g, eps=1e-6):
        return g * (x * torch.rsqrt((x * x).mean(-1, keepdim=True) + eps))

    def rot_half(x):
        h = x.shape[-1] // 2
        return torch.cat([-x[..., h:], x[..., :h]], -1)

    # 2.1 patch embedding as a GEMM
    x = pixel_values.double() @ f64["visual.patch_embed.proj.weight"].reshape(Dv, -1).T
    # 2.2 rotary angles per patch in merge-grouped order
    inv = 1.0 / 10000 ** (torch.arange(hd // 4, dtype=torch.float64) * 2 / (hd // 2))
    hw = []
    for t, gh, gw in grids:
        for _ in range(t):
            for i2 in range(gh // 2):
                for j2 in range(gw // 2):
                    for dy in range(2):
                        for dx in range(2):
                            hw.append((2 * i2 + dy, 2 * j2 + dx))
    hw = torch.tensor(hw, dtype=torch.float64)
    ang = torch.cat([hw[:, :1] * inv, hw[:, 1:] * inv], -1)
    ang = torch.cat([ang, ang], -1)
    # 2.3 windows of 4x4 merged tokens, empty ones dropped
    win_idx, cu_win, cu_full, off, poff = [], [0], [0], 0, 0
    for t, gh, gw in grids:
        H, W = gh // 2, gw // 2
        for ti in range(t):
            for wr in range(0, H + (4 - H % 4), 4):
                for wc in range(0, W + (4 - W % 4), 4):
                    toks = [off + ti * H * W + r * W + c
                            for r in range(wr, min(wr + 4, H)) for c in range(wc, min(wc + 4, W))]
                    win_idx += toks
                    if toks:
                        cu_win.append(cu_win[-1] + 4 * len(toks))
            cu_full.append(cu_full[-1] + gh * gw)
        off += t * H * W
    gidx = torch.tensor([4 * m + u for m in win_idx for u in range(4)])
    x, ang = x[gidx], ang[gidx]
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]

    def vattn(x, b, cu):
        p = f"visual.blocks.{b}.attn."
        qkv = (x @ f64[p + "qkv.weight"].T + f64[p + "qkv.bias"]).reshape(-1, 3, nh, hd)
        q, k, v = qkv[:, 0], qkv[:, 1], qkv[:, 2]
        q, k = q * cos + rot_half(q) * sin, k * cos + rot_half(k) * sin
        o = torch.empty_like(q)
        for a, e in zip(cu[:-1], cu[1:]):
            sc = torch.einsum("qhd,khd->hqk", q[a:e], k[a:e]) / math.sqrt(hd)
            o[a:e] = torch.einsum("hqk,khd->qhd", sc.softmax(-1), v[a:e])
        return o.reshape(-1, Dv) @ f64[p + "proj.weight"].T + f64[p + "proj.bias"]

    def mlp(x, p, bias):
        def lin(n, y):
            return y @ f64[p + n + ".weight"].T + (f64[p + n + ".bias"] if bias else 0)
        return lin("down_proj", torch.nn.functional.silu(lin("gate_proj", x)) * lin("up_proj", x))

    for b in range(vc["depth"]):
        cu = cu_full if b in vc["fullatt_block_indexes"] else cu_win
        p = f"visual.blocks.{b}."
        x = x + vattn(rms(x, f64[p + "norm1.weight"]), b, cu)
        x = x + mlp(rms(x, f64[p + "norm2.weight"]), p + "mlp.", True)
    m = rms(x, f64["visual.merger.ln_q.weight"]).reshape(-1, 4 * Dv)
    m = m @ f64["visual.merger.mlp.0.weight"].T + f64["visual.merger.mlp.0.bias"]
    m = 0.5 * m * (1 + torch.special.erf(m / math.sqrt(2)))
    m = m @ f64["visual.merger.mlp.2.weight"].T + f64["visual.merger.mlp.2.bias"]
    img = torch.empty_like(m)
    img[torch.tensor(win_idx)] = m  # reverse the window order
    # 3.4 embeddings with image rows scattered in, 3.3 positions, 3.1/3.2 decoder
    ids = torch.tensor(input_ids)
    h = f64["model.embed_tokens.weight"][ids].clone()
    h[ids == cfg["ids"]["image_pad"]] = img
    pos = torch.from_numpy(rope_index_ref(input_ids, grids, cfg["ids"]["image_pad"])[0]).double()
    H, nq, nkv = tc["hidden_size"], tc["num_attention_heads"], tc["num_key_value_heads"]
    d = H // nq
    inv = 1.0 / tc["rope_theta"] ** (torch.arange(d // 2, dtype=torch.float64) * 2 / d)
    axis = torch.tensor(sum(([a] * n for a, n in enumerate(tc["mrope_section"])), []))
    ang = pos[axis].T * inv  # frequency j uses axis axis[j]
    ang = torch.cat([ang, ang], -1)
    cos, sin = ang.cos()[:, None, :], ang.sin()[:, None, :]
    S = len(input_ids)
    causal = torch.full((S, S), float("-inf"), dtype=torch.float64).triu(1)
    for i in range(tc["num_hidden_layers"]):
        p = f"model.layers.{i}."
        n = rms(h, f64[p + "input_layernorm.weight"])

        def proj(name, heads):
            y = n @ f64[p + f"self_attn.{name}.weight"].T + f64[p + f"self_attn.{name}.bias"]
            return y.reshape(S, heads, d)

        q, k, v = proj("q_proj", nq), proj("k_proj", nkv), proj("v_proj", nkv)
        q, k = q * cos + rot_half(q) * sin, k * cos + rot_half(k) * sin
        k, v = k.repeat_interleave(nq // nkv, 1), v.repeat_interleave(nq // nkv, 1)
        sc = torch.einsum("qhd,khd->hqk", q, k) / math.sqrt(d) + causal
        o = torch.einsum("hqk,khd->qhd", sc.softmax(-1), v).reshape(S, H)
        h = h + o @ f64[p + "self_attn.o_proj.weight"].T
        h = h + mlp(rms(h, f64[p + "post_attention_layernorm.weight"]), p + "mlp.", False)
    h = rms(h, f64["model.norm.weight"])
    head = f64["model.embed_tokens.weight"] if cfg["tie"] else f64["lm_head.weight"]
    return img, h @ head.T


def build_sequence(cfg, grids):
    """input_ids, labels and a human-readable layout of one chat-template sequence."""
    ids = cfg["ids"]
    rng = np.random.default_rng(cfg["seed"] + 7)
    lo, hi = cfg["text_id_range"]
    seq, lab, layout = [], [], []

    def add(tok_list, what, labelled=False):
        start = len(seq)
        seq.extend(int(t) for t in tok_list)
        lab.extend(int(t) if labelled else -100 for t in tok_list)
        layout.append(dict(what=what, start=start, len=len(tok_list), labelled=labelled))

    def text(n):
        return list(rng.integers(lo, hi, size=n))

    add([ids["im_start"], ids["system"], ids["newline"]], "<|im_start|>system\\n")
    add(text(cfg["system_len"]), "system text")
    add([ids["im_end"], ids["newline"]], "<|im_end|>\\n")
    add([ids["im_start"], ids["user"], ids["newline"]], "<|im_start|>user\\n")
    for kind, v in cfg["user_segments"]:
        if kind == "text":
            add(text(v), "user text")
        else:
            t, gh, gw = grids[v]
            add([ids["vision_start"]], "<|vision_start|>")
            add([ids["image_pad"]] * (t * gh * gw // 4), f"<|image_pad|> x N (image {v})")
            add([ids["vision_end"]], "<|vision_end|>")
    add([ids["im_end"], ids["newline"]], "<|im_end|>\\n")
    add([ids["im_start"], ids["assistant"], ids["newline"]], "<|im_start|>assistant\\n")
    add(text(cfg["answer_len"]), "answer", labelled=True)
    add([ids["im_end"]], "<|im_end|>", labelled=True)
    add([ids["newline"]], "\\n (not labelled)")
    return seq, lab, layout


def make_config(cfg):
    t, v, ids = cfg["text"], cfg["vision"], cfg["ids"]
    text_config = dict(
        vocab_size=t["vocab_size"],
        hidden_size=t["hidden_size"],
        intermediate_size=t["intermediate_size"],
        num_hidden_layers=t["num_hidden_layers"],
        num_attention_heads=t["num_attention_heads"],
        num_key_value_heads=t["num_key_value_heads"],
        hidden_act="silu",
        max_position_embeddings=4096,
        rms_norm_eps=1e-6,
        rope_parameters=dict(
            rope_type="default", rope_theta=t["rope_theta"], mrope_section=t["mrope_section"]
        ),
        use_sliding_window=False,
        attention_dropout=0.0,
        bos_token_id=ids["endoftext"],
        eos_token_id=ids["im_end"],
        tie_word_embeddings=cfg["tie"],
        dtype="float32",
    )
    vision_config = dict(
        depth=v["depth"],
        hidden_size=v["hidden_size"],
        intermediate_size=v["intermediate_size"],
        num_heads=v["num_heads"],
        hidden_act="silu",
        in_channels=3,
        patch_size=PATCH,
        spatial_merge_size=MERGE,
        temporal_patch_size=TPATCH,
        window_size=4 * MERGE * PATCH,  # 112 px = 4x4 merged tokens, as in the real models
        out_hidden_size=t["hidden_size"],
        fullatt_block_indexes=v["fullatt_block_indexes"],
        tokens_per_second=2,
        dtype="float32",
    )
    return Qwen2_5_VLConfig(
        text_config=text_config,
        vision_config=vision_config,
        image_token_id=ids["image_pad"],
        video_token_id=ids["video_pad"],
        vision_start_token_id=ids["vision_start"],
        vision_end_token_id=ids["vision_end"],
        tie_word_embeddings=cfg["tie"],
        dtype="float32",
    )


def randomize(model, seed):
    """Random non-trivial weights: biases and norm gains are non-zero / non-one so a C
    implementation that forgets one of them fails."""
    g = torch.Generator().manual_seed(seed)
    rms_cls = type(model.model.language_model.norm)
    with torch.no_grad():
        for name, mod in model.named_modules():
            if isinstance(mod, rms_cls):
                mod.weight.copy_(1 + 0.1 * torch.randn(mod.weight.shape, generator=g))
            elif isinstance(mod, torch.nn.Embedding):
                mod.weight.copy_(0.25 * torch.randn(mod.weight.shape, generator=g))
            elif isinstance(mod, (torch.nn.Linear, torch.nn.Conv3d)):
                if name == "lm_head" and model.config.tie_word_embeddings:
                    continue
                fan_in = mod.weight[0].numel()
                mod.weight.copy_(torch.randn(mod.weight.shape, generator=g) / math.sqrt(fan_in))
                if mod.bias is not None:
                    mod.bias.copy_(0.1 * torch.randn(mod.bias.shape, generator=g))


def build_model(cfg):
    torch.manual_seed(cfg["seed"])
    config = make_config(cfg)
    model = Qwen2_5_VLForConditionalGeneration._from_config(
        config, attn_implementation="eager", dtype=torch.float32
    )
    randomize(model, cfg["seed"])
    model.eval()
    if cfg["tie"]:
        assert model.lm_head.weight is model.model.language_model.embed_tokens.weight
    return model


def forward(model, inputs, labels=None):
    return model(
        input_ids=inputs["input_ids"],
        attention_mask=inputs["attention_mask"],
        pixel_values=inputs["pixel_values"],
        image_grid_thw=inputs["image_grid_thw"],
        mm_token_type_ids=inputs["mm_token_type_ids"],
        labels=labels,
        use_cache=False,
    )


def inputs_from_arrays(e):
    ids = torch.from_numpy(e["input_ids"].astype(np.int64))
    return dict(
        input_ids=ids,
        attention_mask=torch.from_numpy(e["attention_mask"].astype(np.int64)),
        pixel_values=torch.from_numpy(e["pixel_values"]),
        image_grid_thw=torch.from_numpy(e["image_grid_thw"].astype(np.int64)),
        mm_token_type_ids=torch.from_numpy(e["mm_token_type_ids"].astype(np.int64)),
    )


def grad_param_names(cfg):
    L = cfg["text"]["num_hidden_layers"] - 1
    full = cfg["vision"]["fullatt_block_indexes"][0]
    win = next(b for b in range(cfg["vision"]["depth"]) if b not in cfg["vision"]["fullatt_block_indexes"])
    lm = "model.language_model."
    vi = "model.visual."
    names = [
        lm + "embed_tokens.weight",
        lm + "layers.0.input_layernorm.weight",
        lm + "layers.0.self_attn.q_proj.weight",
        lm + "layers.0.self_attn.q_proj.bias",
        lm + "layers.0.self_attn.k_proj.bias",
        lm + "layers.0.self_attn.v_proj.weight",
        lm + f"layers.{L}.self_attn.o_proj.weight",
        lm + f"layers.{L}.post_attention_layernorm.weight",
        lm + f"layers.{L}.mlp.gate_proj.weight",
        lm + f"layers.{L}.mlp.down_proj.weight",
        lm + "norm.weight",
        vi + "patch_embed.proj.weight",
        vi + f"blocks.{win}.norm1.weight",
        vi + f"blocks.{win}.attn.qkv.weight",
        vi + f"blocks.{win}.attn.qkv.bias",
        vi + f"blocks.{full}.attn.proj.bias",
        vi + f"blocks.{full}.mlp.gate_proj.weight",
        vi + f"blocks.{full}.mlp.down_proj.weight",
        vi + "merger.ln_q.weight",
        vi + "merger.mlp.0.weight",
        vi + "merger.mlp.2.bias",
    ]
    if not cfg["tie"]:
        names.append("lm_head.weight")
    return names


def checkpoint_name(param_name):
    """Module path -> tensor name in the files (the hub's original Qwen naming)."""
    for mod, ck in (("model.language_model.", "model."), ("model.visual.", "visual.")):
        if param_name.startswith(mod):
            return ck + param_name[len(mod):]
    return param_name


def file_sizes(d):
    """Sizes of the files in a fixture dir; also makes them world-readable (safetensors writes 0600)."""
    for f in os.listdir(d):
        os.chmod(os.path.join(d, f), 0o644)
    return {f: os.path.getsize(os.path.join(d, f)) for f in sorted(os.listdir(d))}


def to_np(t):
    return t.detach().cpu().contiguous().numpy()


def i32(a):
    a = np.asarray(a)
    assert np.abs(a).max(initial=0) < 2**31
    return np.ascontiguousarray(a.astype(np.int32))


def tensor_table(arrs, desc):
    return {
        k: dict(dtype=str(v.dtype), shape=list(v.shape), desc=desc.get(k.split(".")[0], desc.get(k, "")))
        for k, v in sorted(arrs.items())
    }


# ----------------------------------------------------------------------------------------------
# generation


def gen_model_fixture(name):
    cfg = CONFIGS[name]
    d = os.path.join(OUT_DIR, name)
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    proc_kw = cfg["processor"]
    processor = make_processor(**proc_kw)

    # images: write the raw PNG, read it back, let the HF processor resize it
    pil_images, image_meta, resized_ref = [], [], []
    for k, im in enumerate(cfg["images"]):
        make_image(im["h"], im["w"], im["mode"], im["seed"]).save(os.path.join(d, im["file"]))
        img = Image.open(os.path.join(d, im["file"]))
        img.load()
        pil_images.append(img)
        hb, wb, branch = smart_resize_ref(im["h"], im["w"], **proc_kw)
        rgb, resized = hf_resized_rgb(img, **proc_kw)
        ref, order = pil_bicubic_ref(composite_on_white_ref(img), hb, wb)
        assert np.array_equal(ref, np.asarray(resized)), "Pillow resize model is off"
        rfile = im["file"].replace(".png", "_resized.png")
        resized.save(os.path.join(d, rfile))
        resized_ref.append(resized)
        image_meta.append(
            dict(file=im["file"], mode=im["mode"], height=im["h"], width=im["w"],
                 resized_file=rfile, resized_height=hb, resized_width=wb, smart_resize_branch=branch,
                 pillow_pass_order=order)
        )
    proc_out = processor(images=pil_images, return_tensors="pt")
    pixel_values = proc_out["pixel_values"].to(torch.float32)
    grid = proc_out["image_grid_thw"]
    grids = [tuple(int(x) for x in g) for g in grid.tolist()]
    # independent cross-checks of the processor against spec sections 4.2 / 4.3
    pv_ref = np.concatenate([pixel_values_ref(r)[0] for r in resized_ref])
    assert np.array_equal(pv_ref, to_np(pixel_values)), "processor differs from spec 4.3"
    for m, g in zip(image_meta, grids):
        assert g == (1, m["resized_height"] // PATCH, m["resized_width"] // PATCH), (g, m)
        m["grid_thw"] = list(g)
        m["merged_tokens"] = g[0] * g[1] * g[2] // 4

    input_ids, labels, layout = build_sequence(cfg, grids)
    ids_t = torch.tensor([input_ids], dtype=torch.long)
    labels_t = torch.tensor([labels], dtype=torch.long)
    mm_types = (ids_t == cfg["ids"]["image_pad"]).long()
    inputs = dict(
        input_ids=ids_t,
        attention_mask=torch.ones_like(ids_t),
        pixel_values=pixel_values,
        image_grid_thw=grid,
        mm_token_type_ids=mm_types,
    )

    model = build_model(cfg)
    model.save_pretrained(d, safe_serialization=True)
    ckpt_names = sorted(load_file(os.path.join(d, "model.safetensors")).keys())

    # rope index: transformers vs spec 3.3
    pos_ids, rope_deltas = model.model.get_rope_index(
        ids_t, mm_token_type_ids=mm_types, image_grid_thw=grid, attention_mask=inputs["attention_mask"]
    )
    pos_ref, delta_ref = rope_index_ref(input_ids, grids, cfg["ids"]["image_pad"])
    assert np.array_equal(to_np(pos_ids)[:, 0], pos_ref) and int(rope_deltas[0, 0]) == delta_ref

    # vision internals (windowing), straight from transformers' helpers
    from transformers.vision_utils import (
        get_vision_cu_seqlens,
        get_vision_position_ids,
        get_vision_window_index,
    )

    window_index, cu_window = get_vision_window_index(
        grid, spatial_merge_size=MERGE, window_size=model.config.vision_config.window_size, patch_size=PATCH
    )
    cu_full = get_vision_cu_seqlens(grid)
    vis_pos = get_vision_position_ids(grid, MERGE)

    # capture intermediates with hooks
    cap = {}
    hooks = []
    vis = model.model.visual
    lmod = model.model.language_model

    def keep(key):
        def hook(_m, _inp, out):
            out = out[0] if isinstance(out, tuple) else out
            cap[key] = to_np(out)
        return hook

    hooks.append(vis.patch_embed.register_forward_hook(keep("vision_patch_embed")))
    for b, blk in enumerate(vis.blocks):
        hooks.append(blk.register_forward_hook(keep(f"vision_block_out.{b}")))
    hooks.append(vis.merger.register_forward_hook(keep("vision_merger_out_window_order")))
    for i, layer in enumerate(lmod.layers):
        hooks.append(layer.register_forward_hook(keep(f"llm_layer_out.{i}")))
    hooks.append(lmod.norm.register_forward_hook(keep("llm_final_norm")))

    def lm_pre(_m, args, kwargs):
        cap["inputs_embeds"] = to_np(kwargs["inputs_embeds"])
        cap["llm_position_ids"] = to_np(kwargs["position_ids"])

    hooks.append(lmod.register_forward_pre_hook(lm_pre, with_kwargs=True))

    model.zero_grad(set_to_none=True)
    out = forward(model, inputs, labels_t)
    out.loss.backward()
    for h in hooks:
        h.remove()
    assert np.array_equal(cap["llm_position_ids"][:, 0], pos_ref), "forward did not use M-RoPE ids"

    with torch.no_grad():
        img_embeds = torch.cat(model.model.get_image_features(pixel_values, grid).pooler_output)
        # explicit position_ids give the same logits (what a C test feeds)
        out_pos = model(
            input_ids=ids_t, attention_mask=inputs["attention_mask"], pixel_values=pixel_values,
            image_grid_thw=grid, position_ids=pos_ids, use_cache=False,
        )
        assert torch.equal(out_pos.logits, out.logits)
        # without mm_token_type_ids transformers 5 silently falls back to 1-D positions
        out_1d = model(
            input_ids=ids_t, attention_mask=inputs["attention_mask"], pixel_values=pixel_values,
            image_grid_thw=grid, use_cache=False,
        )
        logits_1d_diff = float((out_1d.logits - out.logits).abs().max())
        # loss formula check: mean CE over labels shifted left by one, ignoring -100
        lg = out.logits[0, :-1].double()
        tgt = labels_t[0, 1:]
        keep_mask = tgt != -100
        ce = torch.nn.functional.cross_entropy(lg[keep_mask], tgt[keep_mask], reduction="mean")
        assert abs(float(ce) - float(out.loss)) < 1e-5 * max(1.0, abs(float(ce)))

        # the spec, re-implemented in float64 from the saved file, agrees with transformers
        from safetensors.torch import load_file as load_torch
        sw = load_torch(os.path.join(d, "model.safetensors"))
        if cfg["tie"]:
            assert "lm_head.weight" not in sw
        s_img, s_logits = spec_forward(sw, cfg, input_ids, pixel_values, grids)
        spec_img_rel = float((s_img - img_embeds.double()).abs().max() / s_img.abs().max())
        spec_logits_rel = float((s_logits - out.logits[0].double()).abs().max() / s_logits.abs().max())
        assert spec_img_rel < 1e-5 and spec_logits_rel < 1e-5, (spec_img_rel, spec_logits_rel)

    params = dict(model.named_parameters())
    grad_names = grad_param_names(cfg)
    # precision floor of the fp32 reference itself: the same model in float64 (transformers still
    # rounds RMSNorm and softmax through float32 there, so this is an estimate, not exact)
    m64 = copy.deepcopy(model).double()
    m64.zero_grad(set_to_none=True)
    out64 = forward(m64, dict(inputs, pixel_values=pixel_values.double()), labels_t)
    out64.loss.backward()
    with torch.no_grad():
        d64 = (out.logits.double() - out64.logits).abs().max()
        fp64_logits_maxabs = float(d64)
        fp64_logits_rel = float(d64 / out64.logits.abs().max())
        fp64_loss_rel = float(abs(out.loss.double() - out64.loss) / out64.loss.abs())
        p64 = dict(m64.named_parameters())
        fp64_grad_rel = {
            checkpoint_name(n): float((params[n].grad.double() - p64[n].grad).abs().max()
                                      / p64[n].grad.abs().max())
            for n in grad_names
        }
    grad_maxabs = {checkpoint_name(n): float(params[n].grad.abs().max()) for n in grad_names}
    # save_pretrained writes the original Qwen names (model.layers.*, visual.*), not the module
    # paths (model.language_model.*, model.visual.*); gradients are stored under the file names.
    # Tied: lm_head shares embed_tokens, so that gradient is the sum of both uses.
    ckpt_name_of = {}
    for n in grad_names:
        assert params[n].grad is not None, n
        ckpt_name_of[n] = checkpoint_name(n)
        assert ckpt_name_of[n] in ckpt_names, (n, ckpt_names[:5])
    assert len(ckpt_names) == len(params), (len(ckpt_names), len(params))

    arrs = {
        "input_ids": i32(ids_t),
        "labels": i32(labels_t),
        "attention_mask": i32(inputs["attention_mask"]),
        "mm_token_type_ids": i32(mm_types),
        "position_ids": i32(pos_ids),
        "rope_deltas": i32(rope_deltas.reshape(-1)),
        "pixel_values": to_np(pixel_values),
        "image_grid_thw": i32(grid),
        "vision_window_index": i32(window_index),
        "vision_cu_window_seqlens": i32(cu_window),
        "vision_cu_seqlens": i32(cu_full),
        "vision_position_ids": i32(vis_pos),
        "vision_patch_embed": cap["vision_patch_embed"],
        "vision_merger_out_window_order": cap["vision_merger_out_window_order"],
        "image_embeds": to_np(img_embeds),
        "inputs_embeds": cap["inputs_embeds"],
        "llm_final_norm": cap["llm_final_norm"],
        "logits": to_np(out.logits),
        "loss": to_np(out.loss.reshape(1)),
    }
    for b in range(cfg["vision"]["depth"]):
        arrs[f"vision_block_out.{b}"] = cap[f"vision_block_out.{b}"]
    for i in range(cfg["text"]["num_hidden_layers"]):
        arrs[f"llm_layer_out.{i}"] = cap[f"llm_layer_out.{i}"]
    for n in grad_names:
        arrs["grad." + ckpt_name_of[n]] = to_np(params[n].grad)
    for k, v in arrs.items():
        assert v.dtype in (np.float32, np.int32), (k, v.dtype)
    save_file(arrs, os.path.join(d, "expected.safetensors"), metadata={"fixture": name})

    S = len(input_ids)
    desc = {
        "input_ids": "[1,S] token ids (chat-template layout, see 'layout')",
        "labels": "[1,S] next-token targets before the shift; -100 = ignored (prompt masking)",
        "attention_mask": "[1,S] all ones (no padding)",
        "mm_token_type_ids": "[1,S] 1 where input_ids == image_token_id, else 0",
        "position_ids": "[3,1,S] M-RoPE ids (t,h,w) from model.model.get_rope_index",
        "rope_deltas": "[1] max(position_ids)+1-S",
        "pixel_values": "[P,1176] processor output, rows merge-grouped, cols (c,t,y,x)",
        "image_grid_thw": "[n_images,3] (t,h,w) in patches",
        "vision_window_index": "[P/4] merged-token gather order for window attention",
        "vision_cu_window_seqlens": "window segment boundaries in patches (after dedup)",
        "vision_cu_seqlens": "full-attention segment boundaries in patches",
        "vision_position_ids": "[P,2] (row, col) patch coordinates in pixel_values order",
        "vision_patch_embed": "[P,Dv] patch embedding (pixel_values order, before window gather)",
        "vision_block_out": "[P,Dv] output of vision block b, in WINDOW order",
        "vision_merger_out_window_order": "[P/4,H] merger output before the reverse gather",
        "image_embeds": "[P/4,H] vision tower output in raster order (rows for <|image_pad|>)",
        "inputs_embeds": "[1,S,H] token embeddings with image rows scattered in",
        "llm_layer_out": "[1,S,H] output of decoder layer i (residual stream)",
        "llm_final_norm": "[1,S,H] model.norm output",
        "logits": "[1,S,V] logits at every position",
        "loss": "[1] HF loss: mean CE of logits[:, :-1] vs labels[:, 1:], ignore -100",
        "grad": "d loss / d parameter (checkpoint tensor name after 'grad.')",
    }
    vc, tc = cfg["vision"], cfg["text"]
    manifest = dict(
        name=name,
        description=cfg["description"],
        versions=dict(
            transformers=transformers.__version__, torch=torch.__version__,
            pillow=PIL.__version__, numpy=np.__version__, python=sys.version.split()[0],
        ),
        dtype="float32 everywhere (weights, activations, loss), CPU, attn_implementation=eager",
        seed=cfg["seed"],
        tied_embeddings=cfg["tie"],
        text_config=dict(tc, head_dim=tc["hidden_size"] // tc["num_attention_heads"], rms_norm_eps=1e-6),
        vision_config=dict(vc, head_dim=vc["hidden_size"] // vc["num_heads"], patch_size=PATCH,
                           temporal_patch_size=TPATCH, spatial_merge_size=MERGE,
                           window_size=4 * MERGE * PATCH, out_hidden_size=tc["hidden_size"],
                           rope_theta=model.config.vision_config.rope_parameters["rope_theta"]),
        special_ids=cfg["ids"],
        processor=dict(
            cls="Qwen2VLImageProcessorPil (PIL backend, BICUBIC, uint8 resize)",
            min_pixels=proc_kw["min_pixels"], max_pixels=proc_kw["max_pixels"],
            patch_size=PATCH, temporal_patch_size=TPATCH, merge_size=MERGE,
            image_mean=CLIP_MEAN, image_std=CLIP_STD,
            call="processor(images=[PIL.Image.open(f) for f in image files], return_tensors='pt')",
        ),
        images=image_meta,
        seq_len=S,
        n_patches=int(pixel_values.shape[0]),
        layout=layout,
        checkpoint=dict(
            files=["config.json", "model.safetensors"],
            naming="as written by save_pretrained of this transformers version",
            tensor_names=ckpt_names,
            n_tensors=len(ckpt_names),
        ),
        calls=dict(
            forward="model(input_ids, attention_mask, pixel_values, image_grid_thw, "
            "mm_token_type_ids=(input_ids==image_token_id), labels, use_cache=False); loss.backward()",
            model="Qwen2_5_VLForConditionalGeneration._from_config(Qwen2_5_VLConfig(...), "
            "attn_implementation='eager', dtype=torch.float32), then seeded random re-init "
            "(norm gains 1+0.1N, embeddings 0.25N, linear/conv W ~ N/sqrt(fan_in), biases 0.1N)",
            rope_index="model.model.get_rope_index(input_ids, mm_token_type_ids, image_grid_thw, attention_mask)",
            image_embeds="torch.cat(model.model.get_image_features(pixel_values, image_grid_thw).pooler_output)",
        ),
        loss=float(out.loss.detach()),
        n_labelled=int(keep_mask.sum()),
        checks=dict(
            fp32_vs_fp64_logits_maxabs=fp64_logits_maxabs,
            fp32_vs_fp64_logits_rel_to_max=fp64_logits_rel,
            fp32_vs_fp64_loss_rel=fp64_loss_rel,
            fp32_vs_fp64_grad_rel_to_max=fp64_grad_rel,
            grad_maxabs=grad_maxabs,
            logits_maxabs=float(out.logits.detach().abs().max()),
            logits_maxabs_change_if_1d_positions=logits_1d_diff,
            spec_float64_reimpl_image_embeds_rel_to_max=spec_img_rel,
            spec_float64_reimpl_logits_rel_to_max=spec_logits_rel,
            processor_equals_spec_numpy_pipeline=True,
            rope_index_equals_spec_rule=True,
        ),
        gradients=[ckpt_name_of[n] for n in grad_names],
        tensors=tensor_table(arrs, desc),
    )
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    sizes = file_sizes(d)
    print(f"[{name}] S={S} P={pixel_values.shape[0]} loss={float(out.loss.detach()):.6f} "
          f"fp64 rel={fp64_logits_rel:.2e} spec rel={spec_logits_rel:.2e} 1d-pos change={logits_1d_diff:.3f} sizes={sizes}")
    return manifest


def gen_processor_fixture():
    d = os.path.join(OUT_DIR, "P")
    if os.path.isdir(d):
        shutil.rmtree(d)
    os.makedirs(d)
    arrs, cases = {}, []
    for k, (fname, h, w, mode, seed, mn, mx, what) in enumerate(PROC_CASES):
        make_image(h, w, mode, seed).save(os.path.join(d, fname))
        img = Image.open(os.path.join(d, fname))
        img.load()
        out = make_processor(mn, mx)(images=[img], return_tensors="np")
        rgb, resized = hf_resized_rgb(img, mn, mx)
        rfile = fname.replace(".png", "_resized.png")
        resized.save(os.path.join(d, rfile))
        pv, g = pixel_values_ref(resized)
        assert np.array_equal(pv, out["pixel_values"]), fname
        assert tuple(out["image_grid_thw"][0]) == g
        hb, wb, branch = smart_resize_ref(h, w, mn, mx)
        assert np.array_equal(composite_on_white_ref(img), np.asarray(rgb)), fname
        ref, order = pil_bicubic_ref(np.asarray(rgb), hb, wb)
        assert np.array_equal(ref, np.asarray(resized)), fname
        arrs[f"pixel_values.{k}"] = np.ascontiguousarray(out["pixel_values"].astype(np.float32))
        arrs[f"image_grid_thw.{k}"] = i32(out["image_grid_thw"])
        case = dict(index=k, file=fname, mode=mode, height=h, width=w, min_pixels=mn, max_pixels=mx,
                    resized_file=rfile, resized_height=hb, resized_width=wb,
                    smart_resize_branch=branch, pillow_pass_order=order, grid_thw=list(g), what=what)
        if mode != "RGB":
            cfile = fname.replace(".png", "_rgb.png")
            rgb.save(os.path.join(d, cfile))
            case["rgb_file"] = cfile
        cases.append(case)
    save_file(arrs, os.path.join(d, "expected.safetensors"), metadata={"fixture": "P"})
    manifest = dict(
        name="P",
        description="Qwen2VLImageProcessorPil on single images; one processor per case",
        versions=dict(transformers=transformers.__version__, pillow=PIL.__version__, numpy=np.__version__),
        call="Qwen2VLImageProcessorPil(min_pixels, max_pixels, patch_size=14, temporal_patch_size=2, "
        "merge_size=2, CLIP mean/std)(images=[PIL.Image.open(file)], return_tensors='np')",
        image_mean=CLIP_MEAN,
        image_std=CLIP_STD,
        cases=cases,
        tensors=tensor_table(arrs, {"pixel_values": "[P,1176] float32", "image_grid_thw": "[1,3] (t,h,w)"}),
    )
    with open(os.path.join(d, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print(f"[P] sizes={file_sizes(d)}")


# ----------------------------------------------------------------------------------------------
# round trip: a checkpoint written by our C code must load in transformers and reproduce logits


def check_ours(ckpt_dir, name, rel_tol=1e-4, record=True):
    fx = os.path.join(OUT_DIR, name)
    e = load_file(os.path.join(fx, "expected.safetensors"))
    ref = torch.from_numpy(e["logits"])
    problems, out = {}, None
    try:
        model, info = Qwen2_5_VLForConditionalGeneration.from_pretrained(
            ckpt_dir, attn_implementation="eager", dtype=torch.float32, output_loading_info=True
        )
        model.eval()
        # missing tensors would be silently random-initialised: treat any of these as failure
        problems = {k: sorted(v) if isinstance(v, set) else v for k, v in info.items() if v}
        with torch.no_grad():
            inputs = inputs_from_arrays(e)
            labels = torch.from_numpy(e["labels"].astype(np.int64))
            out = forward(model, inputs, labels)
    except Exception as ex:  # a broken checkpoint is a FAIL line, not a traceback
        problems["exception"] = f"{type(ex).__name__}: {str(ex).splitlines()[0] if str(ex) else ''}"
    if out is None:
        max_abs = rel = loss_rel = float("inf")
    elif out.logits.shape != ref.shape:
        problems["shape"] = f"logits {tuple(out.logits.shape)} vs {tuple(ref.shape)}"
        max_abs = rel = loss_rel = float("inf")
    else:
        diff = (out.logits - ref).abs()
        max_abs = float(diff.max())
        rel = max_abs / float(ref.abs().max())  # relative to the largest reference logit
        ref_loss = float(e["loss"][0])
        loss_rel = abs(float(out.loss) - ref_loss) / abs(ref_loss)
    ok = not problems and rel <= rel_tol
    verdict = "PASS" if ok else "FAIL"
    msg = (f"{verdict} config {name}: max abs err {max_abs:.3e}, max rel err {rel:.3e} "
           f"(|diff|max / |ref|max), loss rel err {loss_rel:.3e}")
    if problems:
        msg += f"; loading problems: {problems}"
    print(msg)
    line = (f"| {datetime.date.today().isoformat()} | {name} | `{os.path.relpath(os.path.abspath(ckpt_dir), ROOT)}` "
            f"| {max_abs:.3e} | {rel:.3e} | {loss_rel:.3e} | transformers {transformers.__version__} "
            f"| {verdict}{' ' + str(problems) if problems else ''} |\n")
    if not record:
        return ok
    path = os.path.join(OUT_DIR, "ROUNDTRIP.md")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(
                "# Checkpoint round trip\n\n"
                "Each line: `scripts/make_qwen_fixtures.py --check-ours DIR --config NAME` loaded DIR with\n"
                "`Qwen2_5_VLForConditionalGeneration.from_pretrained` (float32, eager), ran the saved inputs\n"
                "of fixture NAME and compared logits with the saved `logits`. rel = max|diff| / max|ref|.\n"
                f"PASS needs rel <= {rel_tol:g} and no missing/unexpected/mismatched tensors.\n\n"
                "| date | fixture | checkpoint dir | max abs | max rel | loss rel | version | result |\n"
                "|---|---|---|---|---|---|---|---|\n"
            )
    with open(path, "a") as f:
        f.write(line)
    return ok


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--check-ours", metavar="DIR", help="checkpoint dir written by our C code")
    ap.add_argument("--config", default="A", choices=sorted(CONFIGS))
    ap.add_argument("--no-record", action="store_true", help="--check-ours without writing ROUNDTRIP.md")
    ap.add_argument("--only", choices=sorted(CONFIGS) + ["P"], help="regenerate one fixture only")
    args = ap.parse_args()
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    if args.check_ours:
        sys.exit(0 if check_ours(args.check_ours, args.config, record=not args.no_record) else 1)
    os.makedirs(OUT_DIR, exist_ok=True)
    for name in sorted(CONFIGS):
        if args.only in (None, name):
            gen_model_fixture(name)
    if args.only in (None, "P"):
        gen_processor_fixture()


if __name__ == "__main__":
    main()
