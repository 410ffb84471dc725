#!/usr/bin/env python3
"""Reference fixtures for ImageDoctor's heatmap decoder (tests/fixtures/decoder/).

A PyTorch model built from torch.nn layers exactly as the ImageDoctor release defines it
(spec imagedoctor.md section 1; module names are the released checkpoint's), at small width and
with random weights. Saves the weights under their checkpoint names, the inputs (vision features
and LLM task-token states for a batch of queries), the heatmaps, the MSE loss against given
ground-truth maps, and gradients of the inputs and of a set of parameters.

Usage: python3 scripts/make_decoder_fixtures.py   (creates scripts/.venv with torch if needed)
"""
import json
import math
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
VENV = os.path.join(HERE, ".venv")
OUT = os.path.join(ROOT, "tests", "fixtures", "decoder")


def ensure_venv():
    py = os.path.join(VENV, "bin", "python")
    if sys.prefix != VENV and os.path.realpath(sys.executable) != os.path.realpath(py):
        if not os.path.exists(py):
            subprocess.check_call([sys.executable, "-m", "venv", VENV])
        subprocess.check_call([py, "-m", "pip", "install", "-q", "torch", "safetensors", "numpy"])
        os.execv(py, [py] + sys.argv)


ensure_venv()
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import save_file  # noqa: E402


class RMSNormC(nn.Module):  # the release's "LayerNorm" (T5 style, over channels)
    def __init__(self, c):
        super().__init__()
        self.scale = nn.Parameter(torch.ones(c, 1, 1))

    def forward(self, x):
        return x * (x.square().mean(dim=1, keepdim=True) + 1e-8).rsqrt() * self.scale


class HeatmapPredictor(nn.Module):
    def __init__(self, d, c1, c2, c3):
        super().__init__()
        self.conv_layers = nn.Sequential(
            nn.Conv2d(d, c1, 3, padding="same"), nn.ReLU(), RMSNormC(c1),
            nn.Conv2d(c1, c2, 3, padding="same"), nn.ReLU(), RMSNormC(c2))
        self.deconv_layers = nn.ModuleList()
        self.conv_layers2 = nn.ModuleList()
        cin = c2
        for cout in [c1, c2, c2, c3]:
            self.deconv_layers.append(nn.Sequential(
                nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, output_padding=1),
                RMSNormC(cout), nn.ReLU()))
            self.conv_layers2.append(nn.Sequential(
                nn.Conv2d(cout, cout, 3, padding="same"), RMSNormC(cout), nn.ReLU(),
                nn.Conv2d(cout, cout, 3, padding="same"), RMSNormC(cout)))
            cin = cout
        self.relu = nn.ReLU()
        self.last_conv1 = nn.Conv2d(cin, c3, 3, padding="same")

    def forward(self, x):
        x = self.conv_layers(x)
        for de, conv in zip(self.deconv_layers, self.conv_layers2):
            x = de(x)
            x = self.relu(conv(x) + x)
        return self.relu(self.last_conv1(x))


class Attention(nn.Module):  # SAM's
    def __init__(self, d, heads, downsample=1):
        super().__init__()
        self.internal = d // downsample
        self.heads = heads
        self.q_proj = nn.Linear(d, self.internal)
        self.k_proj = nn.Linear(d, self.internal)
        self.v_proj = nn.Linear(d, self.internal)
        self.out_proj = nn.Linear(self.internal, d)

    def sep(self, x):
        b, n, c = x.shape
        return x.reshape(b, n, self.heads, c // self.heads).transpose(1, 2)

    def forward(self, q, k, v):
        q, k, v = self.sep(self.q_proj(q)), self.sep(self.k_proj(k)), self.sep(self.v_proj(v))
        attn = torch.softmax(q @ k.permute(0, 1, 3, 2) / math.sqrt(q.shape[-1]), dim=-1)
        out = (attn @ v).transpose(1, 2)
        return self.out_proj(out.reshape(out.shape[0], out.shape[1], -1))


class MLPBlock(nn.Module):
    def __init__(self, d, m):
        super().__init__()
        self.lin1 = nn.Linear(d, m)
        self.lin2 = nn.Linear(m, d)

    def forward(self, x):
        return self.lin2(F.relu(self.lin1(x)))


class TwoWayBlock(nn.Module):
    def __init__(self, d, heads, mlp, ds, skip_pe):
        super().__init__()
        self.self_attn = Attention(d, heads)
        self.norm1 = nn.LayerNorm(d)
        self.cross_attn_token_to_image = Attention(d, heads, ds)
        self.norm2 = nn.LayerNorm(d)
        self.mlp = MLPBlock(d, mlp)
        self.norm3 = nn.LayerNorm(d)
        self.norm4 = nn.LayerNorm(d)
        self.cross_attn_image_to_token = Attention(d, heads, ds)
        self.skip_pe = skip_pe

    def forward(self, queries, keys, qpe, kpe):
        if self.skip_pe:
            queries = self.self_attn(queries, queries, queries)
        else:
            q = queries + qpe
            queries = queries + self.self_attn(q, q, queries)
        queries = self.norm1(queries)
        q, k = queries + qpe, keys + kpe
        queries = self.norm2(queries + self.cross_attn_token_to_image(q, k, keys))
        queries = self.norm3(queries + self.mlp(queries))
        q, k = queries + qpe, keys + kpe
        keys = self.norm4(keys + self.cross_attn_image_to_token(k, q, queries))
        return queries, keys


class TwoWayTransformer(nn.Module):
    def __init__(self, d, heads, mlp, depth, ds):
        super().__init__()
        self.layers = nn.ModuleList(TwoWayBlock(d, heads, mlp, ds, i == 0) for i in range(depth))
        self.final_attn_token_to_image = Attention(d, heads, ds)
        self.norm_final_attn = nn.LayerNorm(d)

    def forward(self, src, pos, tokens):  # src/pos [B, HW, D], tokens [B, 2, D]
        queries, keys = tokens, src
        for layer in self.layers:
            queries, keys = layer(queries, keys, tokens, pos)
        q, k = queries + tokens, keys + pos
        queries = self.norm_final_attn(queries + self.final_attn_token_to_image(q, k, keys))
        return queries, keys


class MLP(nn.Module):
    def __init__(self, i, h, o, n):
        super().__init__()
        dims = [i] + [h] * (n - 1)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(dims, [h] * (n - 1) + [o]))

    def forward(self, x):
        for j, layer in enumerate(self.layers):
            x = layer(x)
            if j < len(self.layers) - 1:
                x = F.relu(x)
        return x


class MaskDecoder(nn.Module):
    def __init__(self, d, heads, mlp, depth, ds, c1, c2, c3):
        super().__init__()
        self.mask_tokens = nn.Embedding(1, d)
        self.transformer = TwoWayTransformer(d, heads, mlp, depth, ds)
        self.output_upscaling = HeatmapPredictor(d, c1, c2, c3)
        self.output_hypernetworks_mlps = nn.ModuleList([MLP(d, d, c3, 3)])


class PromptEncoder(nn.Module):  # only the used pieces
    def __init__(self, d):
        super().__init__()
        self.register_buffer("pe_gauss", torch.randn(2, d // 2))
        self.no_mask_embed = nn.Embedding(1, d)

    def dense_pe(self, h, w):
        grid = torch.ones((h, w), dtype=self.pe_gauss.dtype)
        y = (grid.cumsum(0) - 0.5) / h
        x = (grid.cumsum(1) - 0.5) / w
        c = 2 * torch.stack([x, y], dim=-1) - 1
        c = 2 * np.pi * (c @ self.pe_gauss)
        return torch.cat([torch.sin(c), torch.cos(c)], dim=-1)  # [h, w, d]


class Decoder(nn.Module):
    def __init__(self, L, d, heads, mlp, depth, ds, c1, c2, c3):
        super().__init__()
        self.text_hidden_fcs = nn.ModuleList([nn.Sequential(
            nn.Linear(L, L), nn.ReLU(), nn.Linear(L, d), nn.Dropout(0.0))])
        self.image_hidden_fcs = nn.ModuleList([nn.Sequential(
            nn.Linear(L, L), nn.ReLU(), nn.Linear(L, d), nn.Dropout(0.0))])
        self.prompt_encoder = PromptEncoder(d)
        self.heatmap = MaskDecoder(d, heads, mlp, depth, ds, c1, c2, c3)

    def forward(self, image_feats, tokens, B, H, W):
        d = self.prompt_encoder.no_mask_embed.weight.shape[1]
        src = self.image_hidden_fcs[0](image_feats).reshape(B, H * W, d)
        src = src + self.prompt_encoder.no_mask_embed.weight.reshape(1, 1, d)
        pos = self.prompt_encoder.dense_pe(H, W).reshape(1, H * W, d).expand(B, -1, -1)
        task = self.text_hidden_fcs[0](tokens).reshape(B, 1, d)
        toks = torch.cat([self.heatmap.mask_tokens.weight.reshape(1, 1, d).expand(B, -1, -1), task], 1)
        hs, keys = self.heatmap.transformer(src, pos, toks)
        img = keys.transpose(1, 2).reshape(B, d, H, W)
        up = self.heatmap.output_upscaling(img)
        w = self.heatmap.output_hypernetworks_mlps[0](hs[:, 0, :])
        b, c, h, ww = up.shape
        logits = (w.reshape(b, 1, c) @ up.reshape(b, c, h * ww)).reshape(b, h, ww)
        return torch.sigmoid(logits)


def main():
    torch.manual_seed(20261123)
    L, d, heads, mlp, depth, ds, c1, c2, c3 = 24, 16, 4, 32, 2, 2, 12, 8, 6
    B, H, W = 2, 3, 4  # one misalignment and one artifact query, a non-square 3x4 grid
    model = Decoder(L, d, heads, mlp, depth, ds, c1, c2, c3).double()
    with torch.no_grad():  # non-trivial values everywhere (norm gains, biases, embeddings)
        for name, p in model.named_parameters():
            if name.endswith(".scale") or "norm" in name and name.endswith("weight"):
                p.copy_(1 + 0.1 * torch.randn_like(p))
            elif name.endswith("bias"):
                p.copy_(0.1 * torch.randn_like(p))
            elif p.dim() == 2 and "embed" in name or "mask_tokens" in name:
                p.copy_(torch.randn_like(p))
    image_feats = torch.randn(B * H * W, L, dtype=torch.float64, requires_grad=True)
    tokens = torch.randn(B, L, dtype=torch.float64, requires_grad=True)
    gt = torch.rand(B, 16 * H, 16 * W, dtype=torch.float64)
    gt[gt < 0.6] = 0  # sparse maps, as heatmaps are
    pred = model(image_feats, tokens, B, H, W)
    weight = 1.0
    mse_mis = ((pred[0] - gt[0]) ** 2).mean()
    mse_art = ((pred[1] - gt[1]) ** 2).mean()
    loss = weight * (mse_art + mse_mis)
    loss.backward()

    # fp32 copy of everything, computed in fp64 (the C side computes in fp32; the fixture is the
    # exact value it approximates).
    os.makedirs(OUT, exist_ok=True)
    sd = {("prompt_encoder.pe_layer.positional_encoding_gaussian_matrix" if k == "prompt_encoder.pe_gauss" else k):
          v.detach().float().contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(OUT, "decoder.safetensors"), metadata={"format": "pt"})
    exp = {"image_feats": image_feats.detach().float(), "tokens": tokens.detach().float(),
           "gt": gt.float(), "pred": pred.detach().float(),
           "loss": loss.detach().float().reshape(1), "mse_mis": mse_mis.detach().float().reshape(1),
           "mse_art": mse_art.detach().float().reshape(1),
           "grad.image_feats": image_feats.grad.float(), "grad.tokens": tokens.grad.float()}
    for name, p in model.named_parameters():
        exp["grad." + name] = p.grad.float().contiguous()
    save_file({k: v.contiguous() for k, v in exp.items()}, os.path.join(OUT, "expected.safetensors"),
              metadata={"format": "pt"})
    manifest = {"llm_hidden": L, "dim": d, "heads": heads, "mlp_dim": mlp, "depth": depth,
                "downsample": ds, "c1": c1, "c2": c2, "c3": c3, "B": B, "H": H, "W": W,
                "query_kinds": ["misalignment", "artifact"], "heatmap_weight": weight,
                "computed_in": "float64, stored as float32",
                "versions": {"torch": torch.__version__, "numpy": np.__version__}}
    with open(os.path.join(OUT, "manifest.json"), "w") as f:
        json.dump(manifest, f, indent=1)
    print("wrote", OUT, "loss", loss.item())


if __name__ == "__main__":
    main()
