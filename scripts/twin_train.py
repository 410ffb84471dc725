#!/usr/bin/env python3
"""A PyTorch twin of our training, for tests/unit/test_twin_train.c.

The twin is built from code nobody here wrote: transformers' Qwen2_5_VLForConditionalGeneration
(float32, eager attention) loaded with from_pretrained from the checkpoint our run started from,
the torch.nn heatmap decoder of scripts/make_decoder_fixtures.py (the release's module layout)
loaded from the same file, torch.optim.AdamW, transformers' get_{cosine,linear}_schedule_with_warmup
and torch.nn.utils.clip_grad_norm_. It is fed exactly what our run was fed (stage/dump.h: the
token ids, labels, pixel values, ground-truth maps of every step; for GRPO the rollouts our
policy sampled and their advantages) and trains for the same 20 steps of
  stage 1  token cross-entropy (answer only, no decoder),
  stage 2  cross-entropy + heatmap_weight * (MSE_mis + MSE_art), the step's token mean over all
           micro-batches and the step's map means,
  GRPO     TRL's loss (ratio clipped, k3 KL to the frozen starting model, "grpo" aggregation
           normalised over the step's sequences, entropy bonus) on those fixed rollouts (from a
           model that memorised two answers, so the rewards and advantages within a group differ).
It writes the per-step values (loss, ce, mse_*, grad_norm; GRPO: loss, kl, entropy, grad_norm)
to tests/fixtures/twin/losses.txt and prints how far our run's logged values are from them.

Usage:
  python3 scripts/twin_train.py [--idoc-test build/tests/test_twin_train] [--work DIR]
      runs `test_twin_train --dump DIR` (our three stages, dumping their inputs), then the twin,
      then writes the fixture and compares.
  python3 scripts/twin_train.py --no-run --work DIR      reuse a dump already in DIR
  python3 scripts/twin_train.py --stages grpo            retrain one stage, keep the others' rows
The script creates scripts/.venv with the pinned packages on first use (CPU is enough).
"""

import os
import subprocess
import sys

from venv_pins import QWEN_PINS, ensure_venv

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
FIXTURE = os.path.join(ROOT, "tests", "fixtures", "twin", "losses.txt")
STAGES = ("stage1", "stage2", "grpo")


if __name__ == "__main__":
    ensure_venv(__file__, QWEN_PINS)

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
import transformers  # noqa: E402
import yaml  # noqa: E402
from safetensors import safe_open  # noqa: E402
from safetensors.torch import load_file  # noqa: E402
from transformers import Qwen2_5_VLForConditionalGeneration  # noqa: E402

sys.path.insert(0, HERE)
from make_decoder_fixtures import Decoder  # noqa: E402

torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))


# ---- model ----------------------------------------------------------------------------------
def load_model(init_dir):
    with open(os.path.join(init_dir, "config.json")) as f:
        cfg = json.load(f)
    model = Qwen2_5_VLForConditionalGeneration.from_pretrained(
        init_dir, attn_implementation="eager", dtype=torch.float32
    )
    model.train()  # no dropout anywhere in this model; train() only for clarity
    st = load_file(os.path.join(init_dir, "model.safetensors"))
    saved_ndim = {}
    for k, v in st.items():
        saved_ndim[k] = v.dim()
    dec = None
    hd = cfg.get("heatmap_decoder")
    if hd:
        L = cfg["text_config"]["hidden_size"] if "text_config" in cfg and "hidden_size" in cfg["text_config"] else cfg["hidden_size"]
        dec = Decoder(L, hd["dim"], hd["heads"], hd["mlp_dim"], hd["depth"], hd["downsample"],
                      hd["c1"], hd["c2"], hd["c3"])
        sd = dec.state_dict()
        new = {}
        for name in sd:
            ck = "prompt_encoder.pe_layer.positional_encoding_gaussian_matrix" if name == "prompt_encoder.pe_gauss" else name
            if ck not in st:
                raise SystemExit(f"{init_dir}: decoder tensor {ck} missing")
            new[name] = st[ck].reshape(sd[name].shape)
        dec.load_state_dict(new)
        dec.train()
    return model, dec, cfg, saved_ndim


def checkpoint_name(param_name):
    for mod, ck in (("model.language_model.", "model."), ("model.visual.", "visual.")):
        if param_name.startswith(mod):
            return ck + param_name[len(mod):]
    return param_name


def forward(model, ids, pixels, grid):
    """Final-norm hidden states [n, H], logits [n, V] and the merged image features [m, H] of
    one sequence with one image."""
    image_token = model.config.image_token_id
    input_ids = ids.reshape(1, -1)
    out = model.model(
        input_ids=input_ids,
        attention_mask=torch.ones_like(input_ids),
        pixel_values=pixels,
        image_grid_thw=grid,
        mm_token_type_ids=(input_ids == image_token).long(),
        use_cache=False,
    )
    h = out.last_hidden_state[0]
    return h, model.lm_head(h)


def image_features(model, pixels, grid):
    return torch.cat(list(model.model.get_image_features(pixels, grid).pooler_output))


def optimizer(model, dec, saved_ndim, run):
    """AdamW with the C side's groups: decay on parameters stored with >= 2 dimensions."""
    decay, no_decay, names = [], [], []
    seen = set()
    named = [(checkpoint_name(n), p) for n, p in model.named_parameters()]
    if dec is not None:
        named += [(("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix"
                    if n == "prompt_encoder.pe_gauss" else n), p) for n, p in dec.named_parameters()]
    for n, p in named:
        if id(p) in seen:  # tied embeddings: one parameter
            continue
        seen.add(id(p))
        nd = saved_ndim.get(n, p.dim())
        (decay if nd >= 2 else no_decay).append(p)
        names.append(n)
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": float(run["weight_decay"])},
         {"params": no_decay, "weight_decay": 0.0}],
        lr=float(run["learning_rate"]), betas=(float(run["adam_beta1"]), float(run["adam_beta2"])),
        eps=float(run["adam_epsilon"]), foreach=False)
    total, warm = int(run["max_steps"]), int(run["warmup_steps"])
    kind = run["lr_scheduler_type"]
    if kind == "cosine":
        sched = transformers.get_cosine_schedule_with_warmup(opt, warm, total)
    elif kind == "linear":
        sched = transformers.get_linear_schedule_with_warmup(opt, warm, total)
    else:
        sched = transformers.get_constant_schedule_with_warmup(opt, warm)
    return opt, sched, decay + no_decay


def read_run(stage_out):
    with open(os.path.join(stage_out, "training_args.yaml")) as f:
        return yaml.safe_load(f)


def steps_of(dump):
    return sorted(f for f in os.listdir(dump) if f.startswith("step_"))


def load_step(path):
    with safe_open(path, "pt") as f:
        meta = f.metadata()
        t = {k: f.get_tensor(k) for k in f.keys()}
    return t, meta


# ---- SFT ------------------------------------------------------------------------------------
def train_sft(dump, run):
    model, dec, cfg, saved_ndim = load_model(os.path.join(dump, "init"))
    opt, sched, params = optimizer(model, dec, saved_ndim, run)
    w = float(run["heatmap_weight"])
    mis_id, art_id = cfg.get("misalignment_token_id", 151665), cfg.get("artifact_token_id", 151666)
    ms = cfg["vision_config"]["spatial_merge_size"]
    rows = []
    for si, fn in enumerate(steps_of(dump)):
        t, meta = load_step(os.path.join(dump, fn))
        n = int(meta["examples"])
        ex = []
        for k in range(n):
            e = {key.split(".", 1)[1]: v for key, v in t.items() if key.startswith(f"e{k}.")}
            ex.append(e)
        # The step's denominators: trained tokens after the shift, maps with a task token.
        n_tok = sum(int((e["labels"][1:] != -100).sum()) for e in ex)

        def task_row(ids, tok):
            # the first task token at p >= 1; the decoder reads the state at p - 1
            hits = (ids[1:] == tok).nonzero()
            return int(hits[0]) if len(hits) else None

        n_map = [0, 0]
        for e in ex:
            for q, (tok, key) in enumerate(((mis_id, "gt_mis"), (art_id, "gt_art"))):
                if dec is not None and key in e and task_row(e["ids"].long(), tok) is not None:
                    n_map[q] += 1
        opt.zero_grad(set_to_none=True)
        loss_total = torch.zeros((), dtype=torch.float64)
        ce_sum, mse_sums = 0.0, [0.0, 0.0]
        for e in ex:
            ids = e["ids"].long()
            grid = e["grid"].long().reshape(1, 3)
            h, logits = forward(model, ids, e["pixels"], grid)
            tgt = e["labels"].long()[1:]
            ce = F.cross_entropy(logits[:-1], tgt, ignore_index=-100, reduction="sum")
            loss = ce / n_tok
            ce_sum += float(ce)
            if dec is not None:
                feats = None
                Hm, Wm = int(grid[0, 1]) // ms, int(grid[0, 2]) // ms
                for q, (tok, key) in enumerate(((mis_id, "gt_mis"), (art_id, "gt_art"))):
                    r = task_row(ids, tok)
                    if key not in e or r is None:
                        continue
                    if feats is None:
                        feats = image_features(model, e["pixels"], grid)
                    pred = dec(feats, h[r].reshape(1, -1), 1, Hm, Wm)[0]
                    mse = ((pred - e[key]) ** 2).mean()
                    mse_sums[q] += float(mse)
                    loss = loss + w * mse / n_map[q]
            loss.backward()
            loss_total += float(loss)
        gn = torch.nn.utils.clip_grad_norm_(params, float(run["max_grad_norm"]))
        opt.step()
        sched.step()
        step = si + 1
        rows.append((step, "loss", float(loss_total)))
        rows.append((step, "ce", ce_sum / n_tok))
        if dec is not None:
            rows.append((step, "mse_mis", mse_sums[0] / n_map[0] if n_map[0] else 0.0))
            rows.append((step, "mse_art", mse_sums[1] / n_map[1] if n_map[1] else 0.0))
        rows.append((step, "grad_norm", float(gn)))
        print(f"  step {step:2d}  loss {float(loss_total):.6f}  grad_norm {float(gn):.4f}", flush=True)
    return rows


# ---- GRPO -----------------------------------------------------------------------------------
def token_stats(model, ids, pixels, grid, mask):
    _, logits = forward(model, ids, pixels, grid)
    sel = mask.nonzero().reshape(-1)
    lg = logits[sel]
    logp_all = F.log_softmax(lg, dim=-1)
    lp = logp_all.gather(1, ids[sel + 1].reshape(-1, 1)).reshape(-1)
    ent = -(logp_all.exp() * logp_all).sum(-1)
    return lp, ent


def train_grpo(dump, run):
    model, dec, cfg, saved_ndim = load_model(os.path.join(dump, "init"))
    ref, _, _, _ = load_model(os.path.join(dump, "init"))
    for p in ref.parameters():
        p.requires_grad_(False)
    if run.get("loss_type", "grpo") != "grpo":
        raise SystemExit("the twin implements loss_type grpo only")
    # The decoder is not trained in GRPO.
    opt, sched, params = optimizer(model, None, saved_ndim, run)
    beta, eps_lo = float(run["beta"]), float(run["epsilon"])
    eps_hi = float(run["epsilon_high"]) if float(run["epsilon_high"]) >= 0 else eps_lo
    ent_coef = float(run["entropy_coef"])
    rows = []
    for si, fn in enumerate(steps_of(dump)):
        t, meta = load_step(os.path.join(dump, fn))
        groups, denom = int(meta["groups"]), float(meta["denom"])
        opt.zero_grad(set_to_none=True)
        loss_total, kl_sum, ent_sum, n_tok = 0.0, 0.0, 0.0, 0
        for g in range(groups):
            ids, cu = t[f"g{g}.ids"].long(), t[f"g{g}.cu"].long()
            mask, pix, grids = t[f"g{g}.mask"].bool(), t[f"g{g}.pixels"], t[f"g{g}.grid"].long()
            adv = t[f"g{g}.adv"].double()
            prow = 0
            loss = 0.0
            for j in range(len(cu) - 1):
                a, b = int(cu[j]), int(cu[j + 1])
                npatch = int(grids[j].prod())
                px = pix[prow:prow + npatch]
                prow += npatch
                m = mask[a:b].clone()
                m[-1] = False
                lp, ent = token_stats(model, ids[a:b], px, grids[j].reshape(1, 3), m)
                with torch.no_grad():
                    ref_lp, _ = token_stats(ref, ids[a:b], px, grids[j].reshape(1, 3), m)
                # TRL compute_loss, num_iterations 1: old log-probs are the detached current ones.
                ratio = torch.exp(lp - lp.detach())
                A = adv[j].float()
                pg = -torch.min(ratio * A, torch.clamp(ratio, 1 - eps_lo, 1 + eps_hi) * A)
                d = ref_lp - lp
                kl = torch.exp(d) - d - 1
                per_tok = pg + beta * kl
                nv = max(1, int(m.sum()))
                seq = per_tok.sum() / nv - ent_coef * ent.sum() / nv
                loss = loss + seq / denom
                kl_sum += float(kl.detach().sum())
                ent_sum += float(ent.detach().sum())
                n_tok += int(m.sum())
            loss.backward()
            loss_total += float(loss)
        gn = torch.nn.utils.clip_grad_norm_(params, float(run["max_grad_norm"]))
        opt.step()
        sched.step()
        step = si + 1
        rows.append((step, "loss", loss_total))
        rows.append((step, "kl", kl_sum / max(1, n_tok)))
        rows.append((step, "entropy", ent_sum / max(1, n_tok)))
        rows.append((step, "grad_norm", float(gn)))
        print(f"  step {step:2d}  loss {loss_total:.6f}  kl {kl_sum / max(1, n_tok):.6f}  grad_norm {float(gn):.4f}", flush=True)
    return rows


# ---- comparison -----------------------------------------------------------------------------
def our_log(out_dir):
    vals = {}
    with open(os.path.join(out_dir, "trainer_log.jsonl")) as f:
        for line in f:
            d = json.loads(line)
            vals[d["current_steps"]] = d
    return vals


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--idoc-test", default=os.path.join(ROOT, "build", "tests", "test_twin_train"))
    ap.add_argument("--work", default=os.path.join(ROOT, "twin_train.tmp"))
    ap.add_argument("--no-run", action="store_true", help="reuse the dump in --work")
    ap.add_argument("--out", default=FIXTURE)
    ap.add_argument("--stages", default=",".join(STAGES),
                    help="stages to retrain (the others' rows are kept from --out)")
    a = ap.parse_args()
    if not a.no_run:
        env = dict(os.environ, OMP_NUM_THREADS="2")
        subprocess.check_call([a.idoc_test, "--dump", a.work], cwd=ROOT, env=env,
                              stdout=subprocess.DEVNULL)
    todo = a.stages.split(",")
    kept = {}
    if set(todo) != set(STAGES):
        with open(a.out) as f:
            for line in f:
                if line.startswith("#") or not line.strip():
                    continue
                st, step, field, v = line.split()
                kept.setdefault(st, []).append((int(step), field, float(v)))
    all_rows, worst = [], {}
    for st in STAGES:
        if st not in todo:
            all_rows += [(st, step, field, v) for step, field, v in kept.get(st, [])]
            continue
        dump, out = os.path.join(a.work, st), os.path.join(a.work, "out", st)
        run = read_run(out)
        print(st, flush=True)
        rows = train_grpo(dump, run) if st == "grpo" else train_sft(dump, run)
        ours = our_log(out)
        for step, field, v in rows:
            o = ours[step][field]
            rel = abs(o - v) / max(abs(v), 1e-6)
            worst[st] = max(worst.get(st, 0.0), rel)
            all_rows.append((st, step, field, v))
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    with open(a.out, "w") as f:
        f.write("# The PyTorch twin's per-step values (scripts/twin_train.py; torch %s, transformers %s,\n"
                "# float32 on CPU) for the three 20-step runs of tests/unit/test_twin_train.c.\n"
                "# stage step field value\n" % (torch.__version__, transformers.__version__))
        for st, step, field, v in all_rows:
            f.write(f"{st} {step} {field} {v:.9e}\n")
    print("wrote", a.out)
    for st in worst:
        print(f"{st}: largest relative difference ours vs twin {worst[st]:.2e}")


if __name__ == "__main__":
    main()
