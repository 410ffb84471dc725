#!/usr/bin/env python3
"""Reference fixtures for the GRPO loss (tests/fixtures/grpo/grpo.json).

A PyTorch (float64) implementation of the formulas as TRL's GRPOTrainer (_compute_loss,
get_high_entropy_mask, the advantage computation) and its VLM-R1 fork write them, on a small
padded batch: 4 groups of G = 4 completions of up to L = 6 tokens (one with no valid token, one
group with constant rewards, one whose reward std is below tau = 1e-3), with per-token
current / old / reference log-probs and entropies. Padding positions hold finite garbage that a
correct mask must ignore.

For every loss aggregation (grpo, bnpo, dr_grpo) x num_iterations (1: old = detached new, 2: old
differs) x beta (0, 0.04) x variant (plain, STD filter, entropy gating, entropy bonus, filter +
gating + bonus) it stores the loss, its components, TRL's logged statistics and the autograd
gradients with respect to the new log-probs (and the entropies when the bonus is on). Also:
advantages for each scaling mode with and without the filter, and torch.quantile values
(linear interpolation, ties) for the gating threshold.

Inputs are drawn in float32 and stored exactly, so the C side (float inputs, double math) sees
the same numbers; references are float64.

Usage: python3 scripts/make_grpo_fixtures.py   (creates scripts/.venv with torch if needed)
"""
import json
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV = os.path.join(HERE, ".venv")
OUT = os.path.join(ROOT, "tests", "fixtures", "grpo")


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if sys.prefix != VENV and os.path.realpath(sys.executable) != os.path.realpath(py):
        if not os.path.exists(py):
            subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([py, "-m", "pip", "install", "-q", "torch", "numpy"])
        os.execv(py, [py] + sys.argv)


ensure_venv()
import numpy as np  # noqa: E402
import torch  # noqa: E402

G, N_GROUPS, L = 4, 4, 6
B = G * N_GROUPS
EPS_LOW, EPS_HIGH = 0.2, 0.28  # DAPO's clip-higher, so both sides are exercised
MAX_COMPLETION_LENGTH = 9      # Dr. GRPO's constant (larger than L, as in a real run)
ADV_EPS, TAU = 1e-4, 1e-3


def make_inputs(rng):
    lengths = rng.integers(1, L + 1, size=B)
    lengths[5] = 0   # a completion with no scored token (TRL clamps its count to 1)
    lengths[2] = L   # and at least one full-length one
    lengths[[0, 3, 7, 9]] = np.maximum(lengths[[0, 3, 7, 9]], 3)  # hold the entropy ties below
    mask = (np.arange(L)[None, :] < lengths[:, None]).astype(np.int64)
    rewards = np.concatenate([
        rng.uniform(0.0, 3.0, G),                  # ordinary group
        np.full(G, 1.5),                           # zero variance: advantage 0
        0.7 + np.array([0.0, 4e-4, -2e-4, 1e-4]),  # std ~2.6e-4 <= tau: dropped by the filter
        np.array([2.0, 0.0, 2.0, 1.0]),            # ties inside a group
    ])
    f32 = lambda a: a.astype(np.float32).astype(np.float64)  # exactly representable in f32
    new = f32(-rng.uniform(0.01, 4.0, (B, L)))
    old = f32(new + rng.normal(0.0, 0.2, (B, L)))  # ratios both inside and outside the clip
    ref = f32(new + rng.normal(0.0, 0.3, (B, L)))
    ent = f32(rng.uniform(0.05, 3.0, (B, L)))
    ent[0, 1] = ent[3, 2] = ent[7, 0] = ent[9, 1]  # ties (all valid tokens)
    garbage = f32(rng.uniform(-20.0, 20.0, (B, L)))
    pad = mask == 0
    for a in (new, old, ref, ent):
        a[pad] = garbage[pad]
    ent[pad] = np.abs(ent[pad])
    return rewards, mask, new, old, ref, ent


def advantages_ref(rewards, scale, std_filter):
    r = torch.tensor(rewards, dtype=torch.float64)
    grouped = r.view(-1, G)
    mean = grouped.mean(dim=1).repeat_interleave(G)
    gstd = grouped.std(dim=1)  # unbiased, torch's default
    keep = (gstd > TAU) if std_filter else torch.ones_like(gstd, dtype=torch.bool)
    keep = keep.repeat_interleave(G)
    if scale == "batch":
        std = r[keep].std().expand_as(r)
    else:
        std = gstd.repeat_interleave(G)
    adv = r - mean
    if scale != "none":
        adv = adv / (std + ADV_EPS)
    return adv, keep, gstd


def aggregate(x, mask, agg):
    if agg == "grpo":
        return ((x * mask).sum(-1) / mask.sum(-1).clamp(min=1.0)).mean()
    if agg == "bnpo":
        return (x * mask).sum() / mask.sum().clamp(min=1.0)
    if agg == "dr_grpo":
        return (x * mask).sum() / (x.size(0) * MAX_COMPLETION_LENGTH)
    raise ValueError(agg)


def loss_ref(inp, agg, iters, beta, std_filter, rho, coef):
    rewards, mask_np, new_np, old_np, ref_np, ent_np = inp
    adv_full, keep, _ = advantages_ref(rewards, "group", std_filter)
    new_full = torch.tensor(new_np, requires_grad=True)
    ent_full = torch.tensor(ent_np, requires_grad=True)
    rows = keep.nonzero(as_tuple=True)[0]  # dropped groups are absent from the batch
    new, ent = new_full[rows], ent_full[rows]
    mask = torch.tensor(mask_np, dtype=torch.float64)[rows]
    ref = torch.tensor(ref_np)[rows]
    adv = adv_full[rows]
    old = torch.tensor(old_np)[rows] if iters > 1 else new.detach()

    coef_1 = torch.exp(new - old)
    coef_2 = torch.clamp(coef_1, 1 - EPS_LOW, 1 + EPS_HIGH)
    per_token_loss = -torch.min(coef_1 * adv.unsqueeze(1), coef_2 * adv.unsqueeze(1))
    threshold = 0.0
    gate = mask.bool()
    if rho < 1.0:
        valid = ent.detach()[mask.bool()]
        threshold = torch.quantile(valid, 1.0 - rho)
        gate = ((ent.detach() * mask) >= threshold) & mask.bool()
        per_token_loss = per_token_loss * gate
        threshold = threshold.item()
    pg_loss = aggregate(per_token_loss, mask, agg)
    per_token_kl = torch.exp(ref - new) - (ref - new) - 1
    if beta != 0.0:
        per_token_loss = per_token_loss + beta * per_token_kl
    loss = aggregate(per_token_loss, mask, agg)
    ent_loss = torch.zeros((), dtype=torch.float64)
    if coef != 0.0:
        ent_loss = -coef * aggregate(ent, mask, agg)
        loss = loss - coef * aggregate(ent, mask, agg)
    loss.backward()

    def mmean(x):  # TRL's masked_batch_mean
        return ((x * mask).sum() / mask.sum()).item()

    a = adv.unsqueeze(1)
    is_low = ((coef_1 < 1 - EPS_LOW) & (a < 0)).double()
    is_high = ((coef_1 > 1 + EPS_HIGH) & (a > 0)).double()
    stats = {
        "pg_loss": pg_loss.item(),
        "kl_loss": (beta * aggregate(per_token_kl, mask, agg)).item(),
        "entropy_loss": ent_loss.item(),
        "kl_mean": mmean(per_token_kl.detach()),
        "ratio_mean": mmean(coef_1.detach()),
        "clip_low": mmean(is_low),
        "clip_high": mmean(is_high),
        "clip_region": mmean(((is_low + is_high) > 0).double()),
        "entropy_mean": mmean(ent.detach()),
        "entropy_threshold": threshold,
        "gate_frac": (gate.double().sum() / mask.sum()).item(),
        "n_tokens": int(mask.sum().item()),
        "n_seq": len(rows),
    }
    return {
        "loss": loss.item(),
        "dlogp": new_full.grad.flatten().tolist(),
        "dentropy": ent_full.grad.flatten().tolist() if coef != 0.0 else None,
        "stats": stats,
    }


def main():
    rng = np.random.default_rng(20250601)
    inp = make_inputs(rng)
    rewards, mask, new, old, ref, ent = inp
    doc = {
        "group_size": G, "n_groups": N_GROUPS, "max_len": L,
        "eps_low": EPS_LOW, "eps_high": EPS_HIGH, "adv_eps": ADV_EPS, "std_tau": TAU,
        "max_completion_length": MAX_COMPLETION_LENGTH,
        "rewards": rewards.tolist(),
        "mask": mask.flatten().tolist(),
        "logp": new.flatten().tolist(), "old_logp": old.flatten().tolist(),
        "ref_logp": ref.flatten().tolist(), "entropy": ent.flatten().tolist(),
    }
    adv_cases = []
    for scale in ("group", "batch", "none"):
        for flt in (False, True):
            adv, keep, gstd = advantages_ref(rewards, scale, flt)
            dropped = int((~keep).sum().item()) // G
            adv_cases.append({"scale": scale, "std_filter": flt, "adv": adv.tolist(),
                              "keep": keep.int().tolist(), "dropped_frac": dropped / N_GROUPS,
                              "reward_std": gstd.mean().item()})
    doc["advantage_cases"] = adv_cases

    variants = [  # name, std_filter, rho, entropy_coef
        ("plain", False, 1.0, 0.0),
        ("std_filter", True, 1.0, 0.0),
        ("gate", False, 0.3, 0.0),
        ("entropy_bonus", False, 1.0, 0.01),
        ("filter_gate_bonus", True, 0.5, 0.02),
    ]
    cases = []
    for agg in ("grpo", "bnpo", "dr_grpo"):
        for iters in (1, 2):
            for beta in (0.0, 0.04):
                for name, flt, rho, coef in variants:
                    c = {"name": f"{agg}/it{iters}/beta{beta}/{name}", "agg": agg,
                         "num_iterations": iters, "beta": beta, "std_filter": flt,
                         "rho": rho, "entropy_coef": coef}
                    c.update(loss_ref(inp, agg, iters, beta, flt, rho, coef))
                    cases.append(c)
    doc["loss_cases"] = cases

    qcases = []
    qrng = np.random.default_rng(7)
    arrays = [[0.5], [2.0, 1.0], [3.0, 1.0, 2.0, 2.0, 2.0, 0.25, 5.0],
              qrng.uniform(0, 3, 23).astype(np.float32).astype(np.float64).tolist()]
    for x in arrays:
        for q in (0.0, 0.2, 0.5, 0.7, 0.8, 0.95, 1.0, 1.0 - 0.3):
            v = torch.quantile(torch.tensor(x, dtype=torch.float64), q).item()
            qcases.append({"x": list(x), "q": q, "value": v})
    doc["quantile_cases"] = qcases

    os.makedirs(OUT, exist_ok=True)
    path = os.path.join(OUT, "grpo.json")
    with open(path, "w") as f:
        json.dump(doc, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {path}: {len(cases)} loss cases, {len(adv_cases)} advantage cases, "
          f"{len(qcases)} quantile cases, {os.path.getsize(path)} bytes")


if __name__ == "__main__":
    main()
