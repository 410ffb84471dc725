#!/usr/bin/env python3
"""Fixtures for the GRPO rewards (rl/rewards.c): tests/fixtures/rewards/cases.jsonl.

The reference's twelve rewards and its registered format reward, written out here with the same
libraries and the same operations as the ImageDoctor GRPO script (spec imagedoctor.md 5.4-5.5):
Python `re` for the score, box and format patterns, float() for the numbers, numpy float32
arrays for boxes and maps, cv2.resize(INTER_LINEAR) of map / 255.0 to 288 x 288, np.clip and
np.mean. Inputs are random completions (well-formed, malformed, out of range, boxes anywhere,
both box-list styles) with rectangle maps at several sizes; each line holds the inputs and the
reference's values.
Run from anywhere:  python3 scripts/make_reward_fixtures.py
It creates scripts/.venv (if missing) with numpy and opencv-python-headless, then re-executes
itself inside it. Output is deterministic.
"""
import json
import os
import random
import re
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "scripts", ".venv")
PKGS = ["numpy", "opencv-python-headless"]


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    if subprocess.call([py, "-c", "import numpy, cv2"], stderr=subprocess.DEVNULL) != 0:
        subprocess.check_call([py, "-m", "pip", "install", "-q"] + PKGS)
    os.execv(py, [py] + sys.argv)


ensure_venv()

import cv2  # noqa: E402
import numpy as np  # noqa: E402

OUT = os.path.join(ROOT, "tests", "fixtures", "rewards")
GRID = 288
FRAME = 512

# ---- the reference's reward functions (one completion, one GT) ----------------------------
SCORE_PATTERNS = [
    r"Semantic Alignment score: ([0-9.]+);",
    r"Aesthetic score: ([0-9.]+);",
    r"Plausibility score: ([0-9.]+);",
    r"Overall Impression score: ([0-9.]+)",
]
BOX_RE = re.compile(
    r'\[\s*([+-]?\d+(?:\.\d+)?)\s*,\s*([+-]?\d+(?:\.\d+)?)\s*,\s*([+-]?\d+(?:\.\d+)?)\s*,'
    r'\s*([+-]?\d+(?:\.\d+)?)\s*\]')


def score_reward(content, k, gt):
    block = re.search(r"<answer>(.*?)</answer>", content, re.DOTALL)
    if block is None:
        return 0.0
    try:
        p = float(re.search(SCORE_PATTERNS[k], block.group(1)).group(1))
    except Exception:
        p = 0
    return 1.0 - 3 * abs(p - gt)


def heatmap_reward(pred, gt, k):
    return 1.0 - np.clip(np.mean((pred - gt) ** 2) * k, 0.0, 1.0)


def extract_bboxes(text):
    scale = GRID / FRAME
    boxes = [[float(v) * scale for v in m.groups()] for m in BOX_RE.finditer(text)]
    return np.array(boxes, dtype=np.float32)


def box_iou(a, b):
    xA, yA = max(a[0], b[0]), max(a[1], b[1])
    xB, yB = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, xB - xA) * max(0, yB - yA)
    areaA = max(0, (a[2] - a[0])) * max(0, (a[3] - a[1]))
    areaB = max(0, (b[2] - b[0])) * max(0, (b[3] - b[1]))
    union = areaA + areaB - inter
    return inter / union if union > 0 else 0.0


def gate(gt, boxes):
    if gt.sum() == 0 and len(boxes) == 0:
        return 1.0
    if gt.sum() == 0 or len(boxes) == 0:
        return 0.0
    return None


def int_boxes(boxes, H, W):
    out = []
    for (x1, y1, x2, y2) in boxes:
        xi1, yi1, xi2, yi2 = map(int, [x1, y1, x2, y2])
        xi1, yi1 = max(0, xi1), max(0, yi1)
        xi2, yi2 = min(W, xi2), min(H, yi2)
        if xi2 > xi1 and yi2 > yi1:
            out.append((xi1, yi1, xi2, yi2))
    return out


def iou_reward(gt, boxes):
    g = gate(gt, boxes)
    if g is not None:
        return g
    ious = [box_iou(boxes[i], boxes[j]) for i in range(len(boxes)) for j in range(i + 1, len(boxes))]
    return 1.0 - (np.mean(ious) if ious else 0.0)


def avepixel_reward(gt, boxes):
    g = gate(gt, boxes)
    if g is not None:
        return g
    means = [gt[y1:y2, x1:x2].mean() for (x1, y1, x2, y2) in int_boxes(boxes, *gt.shape)]
    return float(np.mean(means)) if means else 0.0


def union_reward(gt, boxes):
    g = gate(gt, boxes)
    if g is not None:
        return g
    mask = np.zeros_like(gt, dtype=bool)
    for (x1, y1, x2, y2) in int_boxes(boxes, *gt.shape):
        mask[y1:y2, x1:x2] = True
    return float((gt * mask).sum() / (gt.sum() + 1e-8))


def format_reward(content):
    m = re.fullmatch(r"<think>.*?</think>\s*<answer>.*?</answer>", content, re.DOTALL)
    return 1.0 if m else 0.0


def reference(text, scores, gt_mis_u8, gt_art_u8, pred_mis, pred_art):
    gt_mis = np.asarray(cv2.resize(gt_mis_u8 / 255.0, (GRID, GRID), interpolation=cv2.INTER_LINEAR),
                        dtype=np.float32)
    gt_art = np.asarray(cv2.resize(gt_art_u8 / 255.0, (GRID, GRID), interpolation=cv2.INTER_LINEAR),
                        dtype=np.float32)
    if pred_mis is None or pred_art is None:  # either token missing: both predictions zero
        pred_mis = pred_art = np.zeros((GRID, GRID), np.float32)
    if pred_mis.shape != (GRID, GRID):
        pred_mis = cv2.resize(pred_mis, (GRID, GRID), interpolation=cv2.INTER_LINEAR)
        pred_art = cv2.resize(pred_art, (GRID, GRID), interpolation=cv2.INTER_LINEAR)
    boxes = extract_bboxes(text)
    return {
        "misalignment_location_heatmap": heatmap_reward(pred_mis, gt_mis, 80),
        "artifact_location_heatmap": heatmap_reward(pred_art, gt_art, 40),
        "semantic_score": score_reward(text, 0, scores[0]),
        "aesthetic_score": score_reward(text, 1, scores[1]),
        "plausibility_score": score_reward(text, 2, scores[2]),
        "overall_score": score_reward(text, 3, scores[3]),
        "misalignment_boundingbox_iou": iou_reward(gt_mis, boxes),
        "artifact_boundingbox_iou": iou_reward(gt_art, boxes),
        "artifact_boundingbox_avepixel": avepixel_reward(gt_art, boxes),
        "misalignment_boundingbox_avepixel": avepixel_reward(gt_mis, boxes),
        "artifact_boundingbox_union": union_reward(gt_art, boxes),
        "misalignment_boundingbox_union": union_reward(gt_mis, boxes),
        "format": format_reward(text),
    }


# ---- random cases -------------------------------------------------------------------------
def num(rng, lo, hi):
    v = rng.uniform(lo, hi)
    kind = rng.random()
    if kind < 0.6:
        return str(int(round(v)))
    if kind < 0.9:
        return f"{v:.{rng.randint(1, 3)}f}"
    return f"{v:.7f}"


def box_text(rng):
    lo, hi = (-120, 640) if rng.random() < 0.3 else (0, 512)
    x1, y1 = float(num(rng, lo, hi)), float(num(rng, lo, hi))
    if rng.random() < 0.85:  # mostly well-ordered boxes
        w, h = rng.uniform(1, 300), rng.uniform(1, 300)
        vals = [x1, y1, x1 + w, y1 + h]
        vals = [num(rng, v, v) if rng.random() < 0.5 else str(int(v)) for v in vals]
    else:
        vals = [num(rng, lo, hi) for _ in range(4)]
    sep = ", " if rng.random() < 0.2 else ","
    return "[" + sep.join(vals) + "]"


def score_text(rng, name, semi):
    r = rng.random()
    v = rng.choice(["0", "1", "0.5", "1.0"]) if r < 0.1 else f"{rng.random():.{rng.randint(1, 3)}f}"
    if r > 0.8:
        v = rng.choice(["0.5.5", ".", "1.", ".25", "1.7", "12", "0.58.", "3"])
    end = ";" if semi else ""
    if rng.random() < 0.1:
        end = rng.choice([" ;", "", "."])
    if rng.random() < 0.05:
        return ""
    return f"{name} score: {v}{end}"


def completion(rng):
    n = rng.choice([0, 0, 1, 1, 2, 3, 4, 6])
    paper = rng.random() < 0.3
    if n == 0:
        lst = "none."
    elif paper:
        lst = " ".join(f"{i + 1}:{box_text(rng)};" for i in range(n))
    else:
        lst = "\n".join(f"{i + 1}.{box_text(rng)};" for i in range(n))
    reasoning = rng.choice(["", "\n\nThe cat's tail [sic] looks odd.", "\n\nsee [1,2,3] and [x]."])
    think = f"<think>I need to focus on the bounding box area. Proposed regions (xyxy): {lst}{reasoning}</think>"
    scores = [score_text(rng, "Semantic Alignment", True), "Misalignment Locations: ",
              score_text(rng, "Aesthetic", True), score_text(rng, "Plausibility", True),
              "Artifact Locations: ", score_text(rng, "Overall Impression", False)]
    body = "\n".join(scores)
    if rng.random() < 0.1:
        body += " extra box " + box_text(rng)
    answer = f"<answer>{body}</answer>"
    r = rng.random()
    if r < 0.07:
        answer = f"<answer>{body}"  # unclosed
    elif r < 0.12:
        answer = body  # no tags
    sep = rng.choice(["\n\n", "", " ", "\nx"])
    text = think + sep + answer
    if rng.random() < 0.08:
        text = rng.choice([" ", "Sure. "]) + text
    if rng.random() < 0.08:
        text += "\n"
    return text


def rects(rng, h, w, n, u8):
    out = []
    for _ in range(n):
        x0, y0 = rng.randrange(w), rng.randrange(h)
        x1, y1 = rng.randint(x0 + 1, w), rng.randint(y0 + 1, h)
        v = rng.randint(1, 255) if u8 else float(np.float32(rng.random()))
        out.append([x0, y0, x1, y1, v])
    return out


def near(rng, gt_rects, gh, gw, ph, pw):
    """The GT rectangles moved onto the prediction grid, values /255 plus a little noise."""
    out = []
    for x0, y0, x1, y1, v in gt_rects:
        X0, Y0 = x0 * pw // gw, y0 * ph // gh
        X1, Y1 = max(X0 + 1, x1 * pw // gw), max(Y0 + 1, y1 * ph // gh)
        val = min(1.0, max(0.0, v / 255 + rng.uniform(-0.1, 0.1)))
        out.append([X0, Y0, X1, Y1, float(np.float32(val))])
    return out


def raster(h, w, base, rs, dtype):
    m = np.full((h, w), base, dtype=dtype)
    for x0, y0, x1, y1, v in rs:
        m[y0:y1, x0:x1] = v
    return m


def main():
    rng = random.Random(20250601)
    os.makedirs(OUT, exist_ok=True)
    lines = []
    for i in range(80):
        gh, gw = rng.choice([(288, 288), (512, 512), (512, 512), (100, 130)])
        empty = rng.random() < 0.2
        gm = [] if empty or rng.random() < 0.2 else rects(rng, gh, gw, rng.randint(1, 3), True)
        ga = [] if empty or rng.random() < 0.2 else rects(rng, gh, gw, rng.randint(1, 3), True)
        scores = [float(np.float32(round(rng.random(), rng.randint(1, 3)))) for _ in range(4)]
        pred = None
        r = rng.random()
        if r < 0.7:
            ph, pw = (GRID, GRID) if rng.random() < 0.8 else (144, 144)
            if rng.random() < 0.5:  # random maps: mostly clipped to 0 by the code's k
                base = float(np.float32(rng.random() * 0.2))
                pm_r = rects(rng, ph, pw, rng.randint(0, 3), False)
                pa_r = rects(rng, ph, pw, rng.randint(0, 3), False)
            else:  # near the GT: the code's 1 - clip(k MSE) stays inside (0, 1)
                base = float(np.float32(rng.random() * 0.03))
                pm_r, pa_r = near(rng, gm, gh, gw, ph, pw), near(rng, ga, gh, gw, ph, pw)
            pred = {"size": [ph, pw], "base": base, "mis": pm_r, "art": pa_r,
                    "missing": rng.choice(["none"] * 6 + ["mis", "art"])}
        text = completion(rng)
        mis_u8 = raster(gh, gw, 0, gm, np.uint8)
        art_u8 = raster(gh, gw, 0, ga, np.uint8)
        pm = pa = None
        if pred is not None:
            ph, pw = pred["size"]
            pm = raster(ph, pw, pred["base"], pred["mis"], np.float32)
            pa = raster(ph, pw, pred["base"], pred["art"], np.float32)
            if pred["missing"] == "mis":
                pm = None
            if pred["missing"] == "art":
                pa = None
        want = {k: float(v) for k, v in reference(text, scores, mis_u8, art_u8, pm, pa).items()}
        lines.append(json.dumps({"text": text, "scores": scores, "gt_size": [gh, gw],
                                 "gt_mis": gm, "gt_art": ga, "pred": pred, "want": want}))
    with open(os.path.join(OUT, "cases.jsonl"), "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"wrote {len(lines)} cases to {OUT}/cases.jsonl (numpy {np.__version__}, cv2 {cv2.__version__})")


if __name__ == "__main__":
    main()
