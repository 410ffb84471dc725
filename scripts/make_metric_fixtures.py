#!/usr/bin/env python3
"""Reference fixtures for the evaluation metrics (stage/metrics.c -> tests/fixtures/metrics/).

Score metrics come from scipy.stats (pearsonr, spearmanr, rankdata 'average'). The heatmap
metrics are numpy transcriptions of the MIT saliency benchmark's MATLAB code
(cvzoya/saliency code_forMetrics: CC.m, KLdiv.m, similarity.m, NSS.m, AUC_Judd.m), written
statement by statement so that NaN appears exactly where MATLAB would produce it (0/0, the mean
of nothing), with fixations = G > 0 as spec anchors.md C4 says.

Outputs:
  maps.safetensors  float32 [H, W] maps (predictions and ground truths) by name
  expected.json     heatmap cases (pred name, gt name, MSE/CC/KLD/SIM/NSS/AUC-Judd), AUC-Judd
                    with seeded jitter, score sets (x, y, ranks, PLCC, SRCC) and test-set
                    accumulator runs (samples + expected aggregates). NaN is written as null.

Usage: python3 scripts/make_metric_fixtures.py   (creates scripts/.venv if needed)
"""
import json
import math
import os
import subprocess
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV = os.path.join(HERE, ".venv")
OUT = os.path.join(ROOT, "tests", "fixtures", "metrics")


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if sys.prefix != VENV and os.path.realpath(sys.executable) != os.path.realpath(py):
        if not os.path.exists(py):
            subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([py, "-m", "pip", "install", "-q", "numpy", "scipy", "safetensors"])
        os.execv(py, [py] + sys.argv)


ensure_venv()
import numpy as np  # noqa: E402
import scipy  # noqa: E402
import scipy.stats  # noqa: E402
from safetensors.numpy import save_file  # noqa: E402

EPS = np.finfo(np.float64).eps  # MATLAB eps


# ---- MIT saliency code, MATLAB semantics (double arithmetic, NaN from 0/0) -----------------
def mit_mse(p, g):
    return float(np.mean((p - g) ** 2))


def matlab_std(m):
    # MATLAB std: n - 1 denominator; the std of a single value is 0.
    return 0.0 if m.size == 1 else float(np.std(m, ddof=1))


def mit_cc(p, g):  # CC.m
    with np.errstate(all="ignore"):
        map1 = (p - p.mean()) / matlab_std(p)
        map2 = (g - g.mean()) / matlab_std(g)
        # corr2(map2, map1)
        a = map2 - map2.mean()
        b = map1 - map1.mean()
        return float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))


def mit_kld(p, g):  # KLdiv.m
    map1, map2 = p, g
    if np.any(map1):
        map1 = map1 / map1.sum()
    if np.any(map2):
        map2 = map2 / map2.sum()
    return float(np.sum(map2 * np.log(EPS + map2 / (map1 + EPS))))


def mit_sim(p, g):  # similarity.m
    map1, map2 = p, g
    with np.errstate(all="ignore"):
        if np.any(map1):
            map1 = (map1 - map1.min()) / (map1.max() - map1.min())
            map1 = map1 / map1.sum()
        if np.any(map2):
            map2 = (map2 - map2.min()) / (map2.max() - map2.min())
            map2 = map2 / map2.sum()
    if np.isnan(map1).sum() == map1.size or np.isnan(map2).sum() == map2.size:
        return math.nan
    return float(np.sum(np.minimum(map1, map2)))


def mit_nss(p, g):  # NSS.m with the fixation map G > 0
    with np.errstate(all="ignore"):
        m = (p - p.mean()) / matlab_std(p)
    sel = m[g > 0]
    return float(sel.mean()) if sel.size else math.nan


def mit_auc_judd(p, g, jitter_rng=None):  # AUC_Judd.m with the fixation map G > 0
    fix = g > 0
    if not np.any(fix):
        return math.nan
    sal = p.copy()
    if jitter_rng is not None:
        u = np.array([jitter_rng.uniform() for _ in range(sal.size)]).reshape(sal.shape)
        sal = sal + u / 1e7
    with np.errstate(all="ignore"):
        sal = (sal - sal.min()) / (sal.max() - sal.min())
    if np.isnan(sal).sum() == sal.size:
        return math.nan
    S = sal.ravel()
    F = fix.ravel()
    Sth = S[F]
    nfix = Sth.size
    npix = S.size
    allthreshes = np.sort(Sth)[::-1]
    tp = np.zeros(nfix + 2)
    fp = np.zeros(nfix + 2)
    tp[-1] = 1
    fp[-1] = 1
    with np.errstate(all="ignore"):
        for i in range(1, nfix + 1):
            thresh = allthreshes[i - 1]
            aboveth = np.sum(S >= thresh)
            tp[i] = i / nfix
            fp[i] = (aboveth - i) / (npix - nfix)
        # trapz(fp, tp)
        return float(np.sum(np.diff(fp) * (tp[:-1] + tp[1:]) / 2))


# The project's RNG (xoshiro256** seeded through splitmix64, uniform = (u64 >> 11) * 2^-53), so
# the seeded jitter can be replayed here.
M64 = (1 << 64) - 1


def rotl(x, k):
    return ((x << k) | (x >> (64 - k))) & M64


class Xoshiro:
    def __init__(self, seed):
        x = seed & M64
        self.s = []
        for _ in range(4):
            x = (x + 0x9E3779B97F4A7C15) & M64
            z = x
            z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & M64
            z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & M64
            self.s.append(z ^ (z >> 31))

    def u64(self):
        s = self.s
        out = (rotl((s[1] * 5) & M64, 7) * 9) & M64
        t = (s[1] << 17) & M64
        s[2] ^= s[0]
        s[3] ^= s[1]
        s[1] ^= s[2]
        s[0] ^= s[3]
        s[2] ^= t
        s[3] = rotl(s[3], 45)
        return out

    def uniform(self):
        return (self.u64() >> 11) * 2.0**-53


# ---- scores -------------------------------------------------------------------------------
def scipy_corr(x, y):
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            plcc = float(scipy.stats.pearsonr(x, y).statistic)
        except ValueError:  # n < 2: scipy refuses; our definition is NaN
            plcc = math.nan
        try:
            srcc = float(scipy.stats.spearmanr(x, y).statistic)
        except ValueError:
            srcc = math.nan
    return plcc, srcc


def clean(v):
    """NaN -> None for JSON; floats keep their repr (round-trips exactly)."""
    if isinstance(v, dict):
        return {k: clean(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [clean(x) for x in v]
    if isinstance(v, (float, np.floating)):
        v = float(v)
        return None if not math.isfinite(v) else v
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.bool_):
        return bool(v)
    return v


# ---- maps ---------------------------------------------------------------------------------
def blobs(h, w, spec):
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    m = np.zeros((h, w))
    for cy, cx, sy, sx, a in spec:
        m += a * np.exp(-0.5 * (((yy - cy) / sy) ** 2 + ((xx - cx) / sx) ** 2))
    return np.clip(m, 0, 1)


def quantize255(m):
    # RichHF ground truth: uint8 PNG / 255, so most background pixels are exactly 0.
    return (np.round(m * 255) / 255).astype(np.float32)


def make_maps(rng):
    H, W = 32, 48
    maps = {}
    holes = rng.random((H, W)) > 0.05
    gt1 = quantize255(blobs(H, W, [(8, 10, 3, 4, 0.9), (22, 35, 4, 3, 0.6)]) * holes)
    gt2 = quantize255(blobs(H, W, [(16, 24, 5, 7, 0.7)]))
    maps["gt_blob1"] = gt1
    maps["gt_blob2"] = gt2
    maps["gt_empty"] = np.zeros((H, W), np.float32)
    single = np.zeros((H, W), np.float32)
    single[5, 40] = np.float32(128 / 255)
    maps["gt_single"] = single
    maps["gt_full"] = quantize255(np.clip(blobs(H, W, [(10, 30, 6, 6, 0.8)]) + 2 / 255, 0, 1))
    close = blobs(H, W, [(9, 11, 3.5, 4, 0.8), (21, 33, 4, 4, 0.5)]) + 0.05 * rng.random((H, W))
    maps["pred_close1"] = np.clip(close, 0, 1).astype(np.float32)
    maps["pred_noise"] = rng.random((H, W)).astype(np.float32)
    maps["pred_zero"] = np.zeros((H, W), np.float32)
    maps["pred_const"] = np.full((H, W), 0.3, np.float32)
    tied = np.round(maps["pred_close1"].astype(np.float64) * 4) / 4
    maps["pred_tied"] = tied.astype(np.float32)
    maps["pred_binary"] = (gt2 > 0.2).astype(np.float32)
    b2 = blobs(H, W, [(18, 27, 6, 6, 0.6)]) + 0.02 * rng.random((H, W))
    maps["pred_blob2"] = np.clip(b2, 0, 1).astype(np.float32)
    # Nearly empty prediction: small positive values and exact zeros (typical ReLU output).
    faint = blobs(H, W, [(8, 10, 2, 2, 0.02)])
    faint[faint < 1e-3] = 0
    maps["pred_faint"] = faint.astype(np.float32)
    # Distinct values 5e-8 apart in random order: a U(0,1)/1e7 jitter reorders some neighbours,
    # a 10x smaller one none, a 10x larger one many (this pins the jitter's scale).
    maps["pred_fine"] = (0.01 + 5e-8 * rng.permutation(H * W).reshape(H, W)).astype(np.float32)
    # A small odd-shaped pair with heavy ties in both maps.
    maps["pred_small"] = np.array(rng.integers(0, 3, (5, 7)) / 2, np.float32)
    levels = rng.integers(0, 3, (5, 7)) * 0.25
    maps["gt_small"] = np.array(levels * (rng.random((5, 7)) > 0.4), np.float32)
    # A larger pair (radix sort over many distinct values).
    HL, WL = 96, 128
    gl = quantize255(blobs(HL, WL, [(20, 30, 8, 10, 0.8), (70, 90, 12, 9, 0.5),
                                    (50, 10, 5, 5, 0.3)]))
    pl = blobs(HL, WL, [(24, 34, 9, 9, 0.7), (66, 95, 10, 10, 0.6)]) + 0.1 * rng.random((HL, WL))
    maps["gt_large"] = gl
    maps["pred_large"] = np.clip(pl, 0, 1).astype(np.float32)
    return maps


HEATMAP_CASES = [
    ("pred_close1", "gt_blob1"),
    ("pred_noise", "gt_blob1"),
    ("pred_tied", "gt_blob1"),
    ("pred_zero", "gt_blob1"),
    ("pred_const", "gt_blob1"),
    ("gt_blob1", "gt_blob1"),
    ("gt_blob2", "gt_blob1"),
    ("pred_faint", "gt_blob1"),
    ("pred_binary", "gt_blob2"),
    ("pred_blob2", "gt_blob2"),
    ("pred_blob2", "gt_empty"),
    ("pred_zero", "gt_empty"),
    ("pred_close1", "gt_single"),
    ("pred_noise", "gt_full"),
    ("pred_small", "gt_small"),
    ("pred_large", "gt_large"),
]

JITTER_CASES = [("pred_tied", "gt_blob1", 7), ("pred_const", "gt_blob1", 11),
                ("pred_zero", "gt_blob2", 12345), ("pred_close1", "gt_blob1", 3),
                ("pred_fine", "gt_blob1", 21)]

METRICS = ["cc", "kld", "sim", "nss", "auc_judd"]
MIT = {"cc": mit_cc, "kld": mit_kld, "sim": mit_sim, "nss": mit_nss}


def f64(m):
    return m.astype(np.float64)


def heatmap_values(p, g, jitter_rng=None):
    p, g = f64(p), f64(g)
    v = {"mse": mit_mse(p, g)}
    for k, fn in MIT.items():
        v[k] = fn(p, g)
    v["auc_judd"] = mit_auc_judd(p, g, jitter_rng)
    v["empty"] = not bool(np.any(g > 0))
    return v


def score_sets(rng):
    sets = []
    n = 50
    x = rng.normal(size=n)
    sets.append(("continuous", x, 0.7 * x + 0.5 * rng.normal(size=n)))
    # RichHF-like: GT multiples of 1/12, predictions on a 0.25 grid (many ties on both sides).
    g = rng.integers(0, 13, 60) / 12
    sets.append(("ties", np.round((g + 0.2 * rng.normal(size=60)) * 4).clip(0, 4) / 4, g))
    sets.append(("constant_pred", np.full(20, 0.5), rng.random(20)))
    cx = np.full(20, 0.5)
    cx[7] = 0.75
    sets.append(("constantish", cx, rng.random(20)))
    sets.append(("n2", np.array([0.1, 0.9]), np.array([0.7, 0.2])))
    sets.append(("n1", np.array([0.3]), np.array([0.4])))
    xr = np.linspace(-2, 3, 25)
    sets.append(("monotone_reverse", xr, -(xr ** 3)))
    sets.append(("large_offset", 1e6 + rng.random(30), 1e6 + rng.random(30)))
    out = []
    for name, x, y in sets:
        plcc, srcc = scipy_corr(x, y)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rx = scipy.stats.rankdata(x, method="average")
            ry = scipy.stats.rankdata(y, method="average")
        out.append({"name": name, "x": x.tolist(), "y": y.tolist(), "rank_x": rx.tolist(),
                    "rank_y": ry.tolist(), "plcc": plcc, "srcc": srcc})
    return out


DIMS = ["alignment", "aesthetics", "plausibility", "overall"]
KINDS = ["artifact", "misalignment"]


def make_samples(rng, n_cases):
    samples = []
    for i in range(40):
        gt = rng.integers(0, 13, 4) / 12
        pred = np.round((gt + 0.15 * rng.normal(size=4)).clip(0, 1), 2)
        parsed = rng.random(4) > 0.1
        pred_l = [float(v) for v in pred]
        if i == 5:
            pred_l[2] = None  # a parsed-but-non-finite prediction (e.g. a 400-digit number)
        maps = {}
        for k in KINDS:
            r = rng.random()
            maps[k] = None if r < 0.15 else int(rng.integers(0, n_cases))
        samples.append({"pred": pred_l, "gt": gt.tolist(), "parsed": parsed.tolist(), "maps": maps})
    return samples


def accumulate(samples, maps, cases, unparsed, jitter_seed):
    xs = {d: [] for d in DIMS}
    ys = {d: [] for d in DIMS}
    n_unp = {d: 0 for d in DIMS}
    n_samples_unparsed = 0
    rng = Xoshiro(jitter_seed) if jitter_seed is not None else None
    acc = {k: {"mse": [], "mse0": [], "vals": {m: [] for m in METRICS},
               "undef": {m: 0 for m in METRICS}, "nonempty": 0} for k in KINDS}
    for s in samples:
        any_unp = False
        for j, d in enumerate(DIMS):
            v = s["pred"][j]
            ok = s["parsed"][j] and v is not None and math.isfinite(v)
            if ok:
                xs[d].append(v)
                ys[d].append(s["gt"][j])
                continue
            any_unp = True
            n_unp[d] += 1
            if unparsed == "zero":
                xs[d].append(0.0)
                ys[d].append(s["gt"][j])
        n_samples_unparsed += any_unp
        for k in KINDS:
            c = s["maps"][k]
            if c is None:
                continue
            pn, gn = cases[c]
            v = heatmap_values(maps[pn], maps[gn], rng)
            a = acc[k]
            a["mse"].append(v["mse"])
            if v["empty"]:
                a["mse0"].append(v["mse"])
                continue
            a["nonempty"] += 1
            for m in METRICS:
                if math.isfinite(v[m]):
                    a["vals"][m].append(v[m])
                else:
                    a["undef"][m] += 1

    def mean(lst):
        return float(np.mean(lst)) if lst else math.nan

    res = {"n_samples": len(samples), "n_samples_unparsed": n_samples_unparsed, "scores": {}}
    pl, sr = [], []
    for d in DIMS:
        p, s_ = scipy_corr(xs[d], ys[d])
        res["scores"][d] = {"plcc": p, "srcc": s_, "n": len(xs[d]), "n_unparsed": n_unp[d]}
        pl.append(p)
        sr.append(s_)
    res["scores"]["average"] = {"plcc": float(np.mean(pl)), "srcc": float(np.mean(sr))}
    res["heatmaps"] = {}
    for k in KINDS:
        a = acc[k]
        h = {"n": len(a["mse"]), "mse_all": mean(a["mse"]), "n_gt_zero": len(a["mse0"]),
             "mse_gt_zero": mean(a["mse0"]), "n_gt_nonempty": a["nonempty"]}
        for m in METRICS:
            h[m] = mean(a["vals"][m])
        h["n_undefined"] = a["undef"]
        res["heatmaps"][k] = h
    return res


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20240611)
    maps = make_maps(rng)
    save_file({k: np.ascontiguousarray(v) for k, v in maps.items()},
              os.path.join(OUT, "maps.safetensors"))

    cases = []
    for pn, gn in HEATMAP_CASES:
        v = heatmap_values(maps[pn], maps[gn])
        cases.append({"pred": pn, "gt": gn, **v})
    jitter = []
    for pn, gn, seed in JITTER_CASES:
        jitter.append({"pred": pn, "gt": gn, "seed": seed,
                       "auc_judd": mit_auc_judd(f64(maps[pn]), f64(maps[gn]), Xoshiro(seed))})

    samples = make_samples(rng, len(HEATMAP_CASES))
    runs = []
    for unparsed, seed in [("exclude", None), ("zero", 99)]:
        runs.append({"unparsed": unparsed, "auc_jitter": seed is not None,
                     "jitter_seed": seed if seed is not None else 0,
                     "expected": accumulate(samples, maps, HEATMAP_CASES, unparsed, seed)})

    doc = {"heatmap_cases": cases, "jitter_cases": jitter, "score_sets": score_sets(rng),
           "samples": samples, "accumulator_runs": runs,
           "versions": {"numpy": np.__version__, "scipy": scipy.__version__}}
    with open(os.path.join(OUT, "expected.json"), "w") as f:
        json.dump(clean(doc), f, separators=(",", ":"), allow_nan=False)
        f.write("\n")
    total = sum(os.path.getsize(os.path.join(OUT, n)) for n in os.listdir(OUT))
    print(f"wrote {OUT}: {len(maps)} maps, {len(cases)} heatmap cases, {len(samples)} samples, "
          f"{total} bytes")


if __name__ == "__main__":
    main()
