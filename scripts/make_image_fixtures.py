#!/usr/bin/env python3
"""Fixtures for the C image pipeline (data/image*.c): tests/fixtures/image/ and fuzz seeds.

References come from the real libraries, nothing is re-derived here:
  * decode:  PIL Image.open + transformers' convert_to_rgb (alpha over white);
  * resize:  PIL Image.resize (BICUBIC / BILINEAR / LANCZOS) on uint8 RGB;
  * linear:  cv2.resize(INTER_LINEAR) on float32 maps;
  * qwen:    transformers' Qwen2VLImageProcessorPil (the numpy/PIL processor; no torch needed)
             pixel_values and image_grid_thw, and its smart_resize.
Run from anywhere:  python3 scripts/make_image_fixtures.py
It creates scripts/.venv (if missing) and installs pillow, numpy, opencv-python-headless and
transformers there, then re-executes itself inside it. Output is deterministic.
"""
import os
import subprocess
import sys
import zlib

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
VENV = os.path.join(ROOT, "scripts", ".venv")
PKGS = ["pillow", "numpy", "opencv-python-headless", "transformers"]


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if os.path.realpath(sys.prefix) == os.path.realpath(VENV):
        return
    if not os.path.exists(py):
        subprocess.check_call([sys.executable, "-m", "venv", VENV])
    probe = "import PIL, numpy, cv2, transformers.models.qwen2_vl.image_processing_pil_qwen2_vl"
    if subprocess.call([py, "-c", probe], stderr=subprocess.DEVNULL) != 0:
        subprocess.check_call([py, "-m", "pip", "install", "-q"] + PKGS)
    os.execv(py, [py] + sys.argv)


ensure_venv()


import cv2  # noqa: E402
import numpy as np  # noqa: E402
import PIL  # noqa: E402
import transformers  # noqa: E402
from PIL import Image  # noqa: E402
from transformers.image_transforms import convert_to_rgb  # noqa: E402
from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import (  # noqa: E402
    Qwen2VLImageProcessorPil,
    smart_resize,
)

OUT = os.path.join(ROOT, "tests", "fixtures", "image")
SEEDS = os.path.join(ROOT, "tests", "fuzz", "corpus", "fuzz_image_decode")
manifest = []


def path(name):
    return os.path.join(OUT, name)


def save_npy(name, arr):
    np.save(path(name), np.ascontiguousarray(arr), allow_pickle=False)
    return name


def pattern(h, w, seed):
    """Noise mixed with gradients and flat blocks: exercises clipping and smooth areas."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:h, 0:w]
    img = np.empty((h, w, 3), np.float64)
    img[..., 0] = 255.0 * x / max(w - 1, 1)
    img[..., 1] = 255.0 * y / max(h - 1, 1)
    img[..., 2] = 127.5 + 127.5 * np.sin(x * 0.4) * np.cos(y * 0.3)
    noise = rng.integers(0, 256, (h, w, 3))
    mask = (x // 8 + y // 8) % 2 == 0
    img[mask] = noise[mask]
    img[: h // 4, : w // 4] = 255.0  # flat white corner: overshoot clipping at its border
    img[-(h // 5):, -(w // 5):] = 0.0
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def hf_rgb(im):
    return np.asarray(convert_to_rgb(im, return_numpy=True))


# ---- PNG writer for an Adam7-interlaced RGB image (PIL and cv2 cannot write one) ----
def chunk(tag, data):
    return len(data).to_bytes(4, "big") + tag + data + zlib.crc32(tag + data).to_bytes(4, "big")


def png_interlaced(rgb):
    h, w, _ = rgb.shape
    raw = b""
    for xs, ys, dx, dy in [(0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4),
                           (1, 0, 2, 2), (0, 1, 1, 2)]:
        sub = rgb[ys::dy, xs::dx]
        if sub.size == 0:
            continue
        for row in sub:
            raw += b"\x00" + row.tobytes()
    ihdr = w.to_bytes(4, "big") + h.to_bytes(4, "big") + bytes([8, 2, 0, 0, 1])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw, 9)) +
            chunk(b"IEND", b""))


def write_bytes(name, data):
    with open(path(name), "wb") as f:
        f.write(data)
    return name


def decode_case(fname, ref):
    manifest.append(f"decode {fname} {save_npy(fname + '.npy', ref)}")


def main():
    os.makedirs(OUT, exist_ok=True)
    os.makedirs(SEEDS, exist_ok=True)
    for f in os.listdir(OUT):
        os.remove(path(f))

    # ---- sources ----
    src = {
        "noise_61x97": pattern(61, 97, 1),
        "grad_40x33": pattern(40, 33, 2),
        "big_100x150": pattern(100, 150, 3),
        "small_30x30": pattern(30, 30, 8),
        "tall_120x40": pattern(120, 40, 10),
    }
    for k, v in src.items():
        save_npy(k + ".npy", v)

    # ---- decode: PNG in every colour type / depth, JPEG variants ----
    rgb = src["noise_61x97"]
    Image.fromarray(rgb).save(path("rgb8.png"))
    manifest.append("decode rgb8.png noise_61x97.npy")
    write_bytes("rgb8_interlaced.png", png_interlaced(rgb))
    manifest.append("decode rgb8_interlaced.png noise_61x97.npy")

    h, w = 48, 64
    y, x = np.mgrid[0:h, 0:w]
    rgba = np.concatenate([pattern(h, w, 4), ((x * 4 + y * 3) % 256)[..., None]], -1).astype(np.uint8)
    rgba[:8, :8, 3] = 0
    rgba[-8:, -8:, 3] = 255
    Image.fromarray(rgba, "RGBA").save(path("rgba8.png"))
    decode_case("rgba8.png", hf_rgb(Image.open(path("rgba8.png"))))

    gray = pattern(30, 45, 5)[..., 1]
    Image.fromarray(gray, "L").save(path("gray8.png"))
    decode_case("gray8.png", hf_rgb(Image.open(path("gray8.png"))))

    la = np.stack([gray, ((np.mgrid[0:30, 0:45][1] * 6) % 256).astype(np.uint8)], -1)
    Image.fromarray(la, "LA").save(path("gray_alpha8.png"))
    decode_case("gray_alpha8.png", hf_rgb(Image.open(path("gray_alpha8.png"))))

    Image.fromarray(gray, "L").save(path("gray8_trns.png"), transparency=int(gray[3, 3]))
    decode_case("gray8_trns.png", hf_rgb(Image.open(path("gray8_trns.png"))))

    pal_idx = (pattern(30, 45, 6)[..., 0] // 16).astype(np.uint8)  # 16 colours
    palette = pattern(1, 16, 7).reshape(-1).tolist()
    pim = Image.fromarray(pal_idx, "P")
    pim.putpalette(palette)
    pim.save(path("palette4.png"), bits=4)
    decode_case("palette4.png", hf_rgb(Image.open(path("palette4.png"))))
    alphas = bytes([(i * 37) % 256 for i in range(16)])
    pim.save(path("palette8_trns.png"), transparency=alphas)
    decode_case("palette8_trns.png", hf_rgb(Image.open(path("palette8_trns.png"))))

    Image.fromarray(gray > 128).save(path("bilevel1.png"))
    decode_case("bilevel1.png", hf_rgb(Image.open(path("bilevel1.png"))))

    # 16-bit: PIL keeps the high byte of RGB(A) samples; for 16-bit gray it would clip to 255,
    # our decoder takes the high byte there too (documented in data/image.h), so the reference
    # for gray16 is PIL's I;16 array shifted, not convert("RGB").
    g16 = (gray.astype(np.uint16) * 257 + np.arange(45, dtype=np.uint16)[None, :] * 3)
    Image.fromarray(g16).save(path("gray16.png"))
    a16 = np.asarray(Image.open(path("gray16.png")))
    assert a16.dtype == np.uint16 and np.array_equal(a16, g16)
    decode_case("gray16.png", np.repeat((a16 >> 8).astype(np.uint8)[..., None], 3, -1))
    rgb16 = rgb.astype(np.uint16) * 257 + np.arange(97, dtype=np.uint16)[None, :, None]
    write_bytes("rgb16.png", cv2.imencode(".png", rgb16[..., ::-1])[1].tobytes())
    decode_case("rgb16.png", hf_rgb(Image.open(path("rgb16.png"))))
    rgba16 = rgba.astype(np.uint16) * 257 + np.arange(64, dtype=np.uint16)[None, :, None] * 5
    write_bytes("rgba16.png", cv2.imencode(".png", rgba16[..., [2, 1, 0, 3]])[1].tobytes())
    decode_case("rgba16.png", hf_rgb(Image.open(path("rgba16.png"))))

    Image.fromarray(rgb).save(path("rgb_420.jpg"), quality=90)  # 4:2:0, odd size
    decode_case("rgb_420.jpg", hf_rgb(Image.open(path("rgb_420.jpg"))))
    g = src["grad_40x33"]
    Image.fromarray(g).save(path("rgb_444_prog.jpg"), quality=85, subsampling=0, progressive=True)
    decode_case("rgb_444_prog.jpg", hf_rgb(Image.open(path("rgb_444_prog.jpg"))))
    Image.fromarray(g).save(path("rgb_422.jpg"), quality=75, subsampling=1)
    decode_case("rgb_422.jpg", hf_rgb(Image.open(path("rgb_422.jpg"))))
    Image.fromarray(gray, "L").save(path("gray.jpg"), quality=90)
    decode_case("gray.jpg", hf_rgb(Image.open(path("gray.jpg"))))
    Image.fromarray(g).convert("CMYK").save(path("cmyk.jpg"), quality=90)
    cm = Image.open(path("cmyk.jpg"))
    assert cm.mode == "CMYK"
    decode_case("cmyk.jpg", hf_rgb(cm))

    # Alpha over white for every (value, alpha) pair, via PIL paste (qwen-vl-utils' to_rgb).
    v, a = np.meshgrid(np.arange(256), np.arange(256))
    la_all = Image.fromarray(np.stack([v, v, v, a], -1).astype(np.uint8), "RGBA")
    bg = Image.new("RGB", la_all.size, (255, 255, 255))
    bg.paste(la_all, mask=la_all.split()[3])
    blend = np.asarray(bg)[..., 0]
    comp = np.asarray(hf_rgb(la_all))[..., 0]
    assert np.array_equal(blend, comp), "paste and alpha_composite differ"
    manifest.append(f"blend {save_npy('blend_table.npy', blend)}")

    # ---- PIL resize ----
    names = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR,
             "lanczos": Image.Resampling.LANCZOS}
    resize_cases = [
        ("noise_61x97", "bicubic", 70, 120), ("noise_61x97", "bilinear", 70, 120),
        ("noise_61x97", "lanczos", 70, 120), ("noise_61x97", "bicubic", 30, 40),
        ("noise_61x97", "bilinear", 30, 40), ("noise_61x97", "lanczos", 30, 40),
        ("noise_61x97", "bicubic", 61, 50), ("noise_61x97", "bicubic", 80, 97),
        ("noise_61x97", "lanczos", 17, 200), ("grad_40x33", "bicubic", 84, 56),
        ("big_100x150", "bicubic", 28, 56), ("big_100x150", "lanczos", 64, 64),
        ("big_100x150", "bicubic", 7, 9), ("noise_61x97", "bilinear", 60, 96),
    ]
    resize_cases += [("tall_120x40", "bicubic", 56, 28), ("tall_120x40", "lanczos", 20, 37)]
    for s, f, oh, ow in resize_cases:
        out = np.asarray(Image.fromarray(src[s]).resize((ow, oh), names[f]))
        ref = save_npy(f"resize_{s}_{f}_{oh}x{ow}.npy", out)
        manifest.append(f"resize {s}.npy {f} {oh} {ow} {ref} pil13")
    # Pillow <= 12 always ran the horizontal pass first; the same as two one-axis resizes.
    for s, f, oh, ow in [("tall_120x40", "bicubic", 56, 28), ("noise_61x97", "lanczos", 17, 200)]:
        im = Image.fromarray(src[s])
        out = np.asarray(im.resize((ow, im.height), names[f]).resize((ow, oh), names[f]))
        ref = save_npy(f"resize_{s}_{f}_{oh}x{ow}_hfirst.npy", out)
        manifest.append(f"resize {s}.npy {f} {oh} {ow} {ref} hfirst")

    # ---- cv2 INTER_LINEAR on float32 maps ----
    rng = np.random.default_rng(11)
    fmap = rng.random((64, 64), dtype=np.float32)
    save_npy("fmap_64x64.npy", fmap)
    fmap2 = rng.random((50, 70), dtype=np.float32)
    save_npy("fmap_50x70.npy", fmap2)
    # opencv-python uses IPP for this by default on x86; OpenCV's own kernel differs slightly
    # (see data/image.h), so both are recorded: "ipp" with IPP on, "noipp" with it off.
    cases = [("fmap_64x64", fmap, 36, 36, "ipp"), ("fmap_64x64", fmap, 40, 90, "ipp"),
             ("fmap_64x64", fmap, 32, 32, "ipp"), ("fmap_50x70", fmap2, 29, 41, "ipp"),
             ("fmap_50x70", fmap2, 77, 33, "ipp"), ("fmap_64x64", fmap, 36, 36, "noipp"),
             ("fmap_50x70", fmap2, 29, 41, "noipp")]
    for s, arr, oh, ow, mode in cases:
        cv2.ipp.setUseIPP(mode == "ipp")
        out = cv2.resize(arr, (ow, oh), interpolation=cv2.INTER_LINEAR)
        ref = save_npy(f"linear_{s}_{oh}x{ow}_{mode}.npy", out)
        manifest.append(f"linear {s}.npy {oh} {ow} {ref} 1 {mode}")
    # The real heatmap case, 512x512 -> 288x288, on a map both sides generate from integers
    # (value = hash(y, x) & 255, divided by 255 in float32); every 12th (24th) output row is stored.
    yy, xx = np.mgrid[0:512, 0:512].astype(np.uint32)
    hashed = ((xx * np.uint32(2654435761)) ^ (yy * np.uint32(40503)) ^ (xx * yy)) & np.uint32(255)
    gt = hashed.astype(np.float32) / np.float32(255.0)
    for mode in ["ipp", "noipp"]:
        cv2.ipp.setUseIPP(mode == "ipp")
        r288 = cv2.resize(gt, (288, 288), interpolation=cv2.INTER_LINEAR)
        step = 12 if mode == "ipp" else 24
        ref = save_npy(f"linear_hash512_288x288_rows{step}_{mode}.npy", r288[::step])
        manifest.append(f"linear gen:hash512 288 288 {ref} {step} {mode}")
    cv2.ipp.setUseIPP(True)

    # ---- Qwen2-VL processor ----
    def qwen(tag, image, min_px, max_px):
        proc = Qwen2VLImageProcessorPil(size={"shortest_edge": min_px, "longest_edge": max_px})
        out = proc(images=[image], return_tensors="np")
        pv = np.asarray(out["pixel_values"], np.float32)
        grid = np.asarray(out["image_grid_thw"], np.int64).reshape(-1)
        assert pv.shape == (int(np.prod(grid)), 1176)
        a = save_npy(f"qwen_{tag}_pv.npy", pv)
        b = save_npy(f"qwen_{tag}_grid.npy", grid)
        return f"{min_px} {max_px} {a} {b}"

    manifest.append("qwen noise_61x97.npy " + qwen("noise", Image.fromarray(src["noise_61x97"]), 3136, 12845056))
    manifest.append("qwen small_30x30.npy " + qwen("small_up", Image.fromarray(src["small_30x30"]), 3136, 12845056))
    manifest.append("qwen tall_120x40.npy " + qwen("tall", Image.fromarray(src["tall_120x40"]), 784, 1568))
    manifest.append("qwen big_100x150.npy " + qwen("big_down", Image.fromarray(src["big_100x150"]), 3136, 4000))
    manifest.append("qwenfile rgba8.png " + qwen("rgba_file", Image.open(path("rgba8.png")), 784, 1568))
    manifest.append("qwenfile rgb_420.jpg " + qwen("jpeg_file", Image.open(path("rgb_420.jpg")), 3136, 3136))

    # ---- smart_resize table (transformers' function; sides >= 28 only) ----
    sizes = [(480, 640), (1080, 1920), (720, 1280), (224, 224), (70, 70), (42, 42), (98, 70),
             (512, 512), (28, 28), (28, 5600), (5600, 28), (61, 97), (40, 33), (150, 230),
             (3000, 4000), (4032, 3024), (33, 6000), (1000, 29), (14 * 41, 14 * 61)]
    ranges = [(3136, 12845056), (3136, 1003520), (3136, 8000), (100000, 12845056), (56 * 56, 28 * 28 * 4)]
    for hh, ww in sizes:
        for lo, hi in ranges:
            rh, rw = smart_resize(hh, ww, factor=28, min_pixels=lo, max_pixels=hi)
            manifest.append(f"smart {hh} {ww} {lo} {hi} {rh} {rw}")

    with open(path("manifest.txt"), "w") as f:
        f.write(f"# made by scripts/make_image_fixtures.py: Pillow {PIL.__version__}, numpy {np.__version__}, "
                f"opencv {cv2.__version__}, transformers {transformers.__version__}\n")
        f.write("\n".join(manifest) + "\n")

    # Fuzz seeds: small valid files of each kind.
    for f in os.listdir(SEEDS):
        os.remove(os.path.join(SEEDS, f))
    for f in ["gray8.png", "palette4.png", "palette8_trns.png", "gray_alpha8.png", "bilevel1.png",
              "gray16.png", "gray.jpg", "rgb_422.jpg", "cmyk.jpg", "rgb_444_prog.jpg"]:
        with open(path(f), "rb") as a, open(os.path.join(SEEDS, f), "wb") as b:
            b.write(a.read())
    tiny = pattern(9, 11, 9)
    write_bytes("_tmp.png", png_interlaced(tiny))
    os.replace(path("_tmp.png"), os.path.join(SEEDS, "interlaced_9x11.png"))

    total = sum(os.path.getsize(path(f)) for f in os.listdir(OUT))
    print(f"wrote {len(os.listdir(OUT))} files, {total} bytes to {OUT}")


if __name__ == "__main__":
    main()
