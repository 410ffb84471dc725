#!/usr/bin/env python3
"""Fixtures for the RichHF-18K converter: tests/fixtures/richhf/.

Writes real tf.train.Example TFRecords with the `tfrecord` PyPI package's TFRecordWriter (its own
compiled example.proto and CRC32C framing, nothing re-derived here), using RichHF-18K's 8
feature names and types (spec anchors.md C2): filename / artifact_map / misalignment_map /
prompt_misalignment_label as bytes_list, the four scores as float_list; maps are 512x512 8-bit
grayscale PNGs. Pick-a-Pic stand-in images (PNG and JPEG, odd sizes), a captions JSONL (both
row styles), an ImageDoctor-style CoT file (ShareGPT "conversations" and "messages" forms), a
copy with a corrupted CRC, a 1-5 scale file, and expected.json with what the converter must
produce (CRC-32C of PIL's decode + bicubic resize to 512x512 and of the decoded maps).

Run from anywhere:  python3 scripts/make_richhf_fixture.py   (creates scripts/.venv if needed)
"""
import io
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "scripts", ".venv")
PKGS = ["tfrecord", "protobuf", "crc32c", "numpy", "pillow"]


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    if subprocess.call([py, "-c", "import tfrecord, crc32c, numpy, PIL"], stderr=subprocess.DEVNULL):
        subprocess.check_call([py, "-m", "pip", "install", "-q"] + PKGS)
    os.execv(py, [py] + sys.argv)


ensure_venv()

import crc32c  # noqa: E402
import numpy as np  # noqa: E402
import tfrecord  # noqa: E402
from PIL import Image  # noqa: E402

OUT = os.path.join(ROOT, "tests", "fixtures", "richhf")
rng = np.random.default_rng(20240607)


def png_bytes(arr, mode):
    b = io.BytesIO()
    Image.fromarray(arr, mode).save(b, format="PNG", optimize=True)
    return b.getvalue()


def heatmap(blobs):
    """512x512 uint8 map: sum of Gaussian bumps (like averaged annotator clicks), clipped."""
    y, x = np.mgrid[0:512, 0:512].astype(np.float64)
    m = np.zeros((512, 512))
    for cx, cy, s, a in blobs:
        m += a * np.exp(-((x - cx) ** 2 + (y - cy) ** 2) / (2 * s * s))
    return np.clip(np.round(m * 255), 0, 255).astype(np.uint8)


def image(h, w):
    yy, xx = np.mgrid[0:h, 0:w]
    third = rng.integers(0, 256, (h, w)) if h * w <= 4096 else (xx // 64 + yy // 64) * 37 % 256
    img = np.stack([xx * 255 // max(w - 1, 1), yy * 255 // max(h - 1, 1), third], -1)
    img = img.astype(np.uint8)
    return img


def twelfths(k):
    return np.float32(k / 12.0).item()


UIDS = ["1140cc3a-b190-40de-a9ab-777011e782dd", "2f0e4b7d-6a3c-4f7e-9a51-0c2d9e8b7a61",
        "3a9d1c55-0b8e-4c2a-8f17-6e4d2b1a9c03", "4c7e2a19-5d3f-4b6a-a2e8-9f1c0d7b3e45",
        "5e1b9d72-8a4c-4f3e-b6d1-2c9a7e0f4b88"]
CAPTION_AB = "a Ferrari car that is made out of wood"   # shared by the uid 0/1 Pick-a-Pic pair
CAPTIONS = {UIDS[2]: "an owl, reading a book; at night", UIDS[3]: "a red bicycle",
            UIDS[4]: "two cats \"playing\" chess: digital art?"}

# (uid, scores in twelfths (alignment, aesthetics, plausibility, overall), labels, art, mis)
RECORDS = [
    (UIDS[0], (8, 6, 7, 7), "1 1 1 1 1 1 1 1 0", [(300, 200, 20, 0.9)], [(100, 400, 25, 0.6)]),
    (UIDS[1], (12, 9, 12, 11), "1 1 1 1 1 1 1 1 1", [], []),
    (UIDS[2], (4, 5, 3, 4), "1 0 1 1 1", [(50, 60, 15, 1.0), (420, 90, 12, 0.5)],
     [(256, 256, 40, 0.4)]),                  # caption has 6 words: skipped (label count)
    (UIDS[3], (12, 12, 12, 12), "1 1 1", [], []),  # image missing: skipped
    (UIDS[4], (3, 7, 5, 4), "0 1 1 1 1 1", [(256, 300, 30, 0.8)],
     [(100, 100, 15, 0.7), (110, 120, 15, 0.7)]),
]
IMAGES = {  # where each image lives under images/, and its format/size
    UIDS[0]: ("train/%s.png" % UIDS[0], "PNG", (48, 64)),
    UIDS[1]: ("%s.jpg" % UIDS[1], "JPEG", (40, 40)),
    UIDS[2]: ("%s.png" % UIDS[2], "PNG", (32, 32)),
    UIDS[4]: ("%s.png" % UIDS[4], "PNG", (512, 512)),
}
COT = {
    UIDS[0]: "<think>I need to focus on the bounding box area. Proposed regions (xyxy): "
             "1.[70,370,130,430];\n2.[280,180,320,220];\n\nThe car is made of metal, not wood."
             "</think>\n\n<answer>Semantic Alignment score: 0.67;\nMisalignment Locations: "
             "<|mis|>\nAesthetic score: 0.5;\nPlausibility score: 0.58;\nArtifact Locations: "
             "<|art|>\nOverall Impression score: 0.58</answer>",
    UIDS[4]: "<think>I need to focus on the bounding box area. Proposed regions (xyxy): "
             "1.[80,80,130,140];\n\nOnly one cat.</think>\n\n<answer>Semantic Alignment score: "
             "0.25;\nMisalignment Locations: <|mis|>\nAesthetic score: 0.58;\nPlausibility "
             "score: 0.42;\nArtifact Locations: <|art|>\nOverall Impression score: 0.33</answer>",
}


def write_records(path, recs, scale=lambda k: twelfths(k)):
    w = tfrecord.TFRecordWriter(path)
    for uid, sc, labels, art, mis in recs:
        w.write({
            "filename": (("train/%s.png" % uid).encode(), "byte"),
            "aesthetics_score": (scale(sc[1]), "float"),
            "artifact_score": (scale(sc[2]), "float"),
            "misalignment_score": (scale(sc[0]), "float"),
            "overall_score": (scale(sc[3]), "float"),
            "artifact_map": (png_bytes(heatmap(art), "L"), "byte"),
            "misalignment_map": (png_bytes(heatmap(mis), "L"), "byte"),
            "prompt_misalignment_label": (labels.encode(), "byte"),
        })
    w.close()


def main():
    os.makedirs(os.path.join(OUT, "images", "train"), exist_ok=True)
    write_records(os.path.join(OUT, "train.tfrecord"), RECORDS)
    # The same file with one data byte of record 1 flipped (its data CRC no longer matches).
    raw = bytearray(open(os.path.join(OUT, "train.tfrecord"), "rb").read())
    n0 = int.from_bytes(raw[0:8], "little")
    raw[(16 + n0) + 12 + 40] ^= 0x01
    open(os.path.join(OUT, "bad_crc.tfrecord"), "wb").write(bytes(raw))
    # Scores on a 1..5 scale: 1 + 4 * (k / 12).
    write_records(os.path.join(OUT, "likert.tfrecord"), [RECORDS[0], RECORDS[4]],
                  scale=lambda k: np.float32(1 + 4 * k / 12.0).item())

    expected = {"records": len(RECORDS), "written": [], "skipped_labels": 1, "skipped_no_image": 1}
    for uid, (rel, fmt, (h, w)) in IMAGES.items():
        img = image(h, w)
        p = os.path.join(OUT, "images", rel)
        if fmt == "JPEG":
            Image.fromarray(img).save(p, format="JPEG", quality=90)
        else:
            Image.fromarray(img).save(p, format="PNG")
    with open(os.path.join(OUT, "captions.jsonl"), "w") as f:
        f.write(json.dumps({"caption": CAPTION_AB, "image_0_uid": UIDS[0],
                            "image_1_uid": UIDS[1], "best_image_uid": UIDS[0]}) + "\n")
        for uid, c in CAPTIONS.items():
            f.write(json.dumps({"uid": uid, "caption": c}) + "\n")
    cot = [
        {"images": ["richhf/%s.png" % UIDS[0], "richhf/%s_artifact.npy" % UIDS[0],
                    "richhf/%s_misalignment.npy" % UIDS[0]],
         "conversations": [{"from": "human", "value": "<image>Given a caption ..."},
                           {"from": "gpt", "value": COT[UIDS[0]]}]},
        {"images": ["x/%s.png" % UIDS[4]],
         "messages": [{"role": "user", "content": "<image>..."},
                      {"role": "assistant", "content": COT[UIDS[4]]}]},
    ]
    with open(os.path.join(OUT, "cot.json"), "w") as f:
        json.dump(cot, f, indent=1)

    for uid, sc, labels, art, mis in RECORDS:
        if uid not in IMAGES or len(labels.split()) != len(
                [t for t in __import__("re").split(r"[,.?!\":; ]", CAPTIONS.get(uid, CAPTION_AB)) if t]):
            continue
        im = Image.open(os.path.join(OUT, "images", IMAGES[uid][0])).convert("RGB")
        orig = [im.height, im.width]
        if im.size != (512, 512):
            im = im.resize((512, 512), Image.BICUBIC)
        a, m = heatmap(art), heatmap(mis)
        expected["written"].append({
            "filename": "train/%s.png" % uid,
            "caption": CAPTIONS.get(uid, CAPTION_AB),
            "labels": labels,
            "scores": [twelfths(k) for k in sc],
            "orig_size": orig,
            "image_crc32c": crc32c.crc32c(np.asarray(im, np.uint8).tobytes()),
            "artifact_map_crc32c": crc32c.crc32c(a.tobytes()),
            "misalignment_map_crc32c": crc32c.crc32c(m.tobytes()),
            "artifact_empty": bool(a.max() == 0),
            "misalignment_empty": bool(m.max() == 0),
            "response": COT.get(uid),
        })
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
    total = sum(os.path.getsize(os.path.join(d, x)) for d, _, fs in os.walk(OUT) for x in fs)
    print("wrote %s (%d bytes)" % (OUT, total))


if __name__ == "__main__":
    main()
