"""Golden fixtures for the `attention` crate, computed with PyTorch in float64.

Run by hand (never in CI):
    /work/venv-torch/bin/python tools/golden/attention.py

Writes attention/tests/golden/{sdpa,layer_norm,gelu,block,cross_block,prefix_lm}.txt.
Every reference module below uses the Rust crate's parameter names
(`ln_1`, `attn.qkv`, `attn.proj`, `ln_cross`, `cross_attn.q`, `cross_attn.kv`,
`cross_attn.proj`, `ln_2`, `mlp.fc`, `mlp.proj`), so the fixture's names are
the names `Params` lists. Gradients are stored as `grad.<name>`, with the
loss `L = sum(out * dout)` for a random `dout` (llm.c's fakeloss).

GELU is PyTorch's default exact form, nn.GELU() (approximate='none'),
the same one the Rust crate implements.
"""

import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from golden_io import f32_input, write_fixture  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "attention", "tests", "golden")


def causal_mask(t_q, t_kv):
    """Query i sees keys 0..=t_kv - t_q + i (the last query aligned with the last key)."""
    i = torch.arange(t_q).unsqueeze(1)
    j = torch.arange(t_kv).unsqueeze(0)
    return j <= i + (t_kv - t_q)  # [T_q, T_kv]


def prefix_lm_mask(prefix, t_q, t_kv):
    """Sequence b's first prefix[b] keys are seen by every query; after them, causal
    (PaliGemma's prefix-LM): [B, 1, T_q, T_kv]."""
    j = torch.arange(t_kv).view(1, 1, 1, t_kv)
    seen_both_ways = j < torch.tensor(prefix).view(-1, 1, 1, 1)
    return causal_mask(t_q, t_kv) | seen_both_ways


def padding_mask(lengths, t_kv):
    """Sequence b sees its first lengths[b] keys: [B, 1, 1, T_kv]."""
    j = torch.arange(t_kv).view(1, 1, 1, t_kv)
    return j < torch.tensor(lengths).view(-1, 1, 1, 1)


class MultiHeadAttention(nn.Module):
    def __init__(self, width, n_head):
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.n_head = n_head

    def forward(self, x, mask=None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # three (B, T, C)
        heads = lambda t: t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class CrossAttention(nn.Module):
    def __init__(self, width, memory_width, n_head):
        super().__init__()
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(memory_width, 2 * width)
        self.proj = nn.Linear(width, width)
        self.n_head = n_head

    def forward(self, x, memory, mask=None):
        B, T, C = x.shape
        S = memory.shape[1]
        D = C // self.n_head
        q = self.q(x).view(B, T, self.n_head, D).transpose(1, 2)  # (B, H, T, D)
        k, v = self.kv(memory).split(C, dim=2)  # two (B, S, C)
        k = k.view(B, S, self.n_head, D).transpose(1, 2)  # (B, H, S, D)
        v = v.view(B, S, self.n_head, D).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Mlp(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.fc = nn.Linear(width, hidden)
        self.gelu = nn.GELU()  # exact erf form, PyTorch's default
        self.proj = nn.Linear(hidden, width)

    def forward(self, x):
        return self.proj(self.gelu(self.fc(x)))


class Block(nn.Module):
    def __init__(self, width, n_head, hidden):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = MultiHeadAttention(width, n_head)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, hidden)

    def forward(self, x, mask=None):
        x = x + self.attn(self.ln_1(x), mask)
        return x + self.mlp(self.ln_2(x))


class CrossBlock(nn.Module):
    def __init__(self, width, memory_width, n_head, hidden):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = MultiHeadAttention(width, n_head)
        self.ln_cross = nn.LayerNorm(width)
        self.cross_attn = CrossAttention(width, memory_width, n_head)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, hidden)

    def forward(self, x, memory, mask=None, memory_mask=None):
        x = x + self.attn(self.ln_1(x), mask)
        x = x + self.cross_attn(self.ln_cross(x), memory, memory_mask)
        return x + self.mlp(self.ln_2(x))


def randomise(module, gen):
    """Every parameter drawn in float32 (LayerNorm gains around 1), then float64."""
    module.double()
    with torch.no_grad():
        for name, p in module.named_parameters():
            scale = 0.3 if name.startswith("ln") else 0.5
            value = f32_input(*p.shape, generator=gen, scale=scale)
            if name.endswith("weight") and name.startswith("ln"):
                value = (value + 1.0).float().double()  # keep it exactly representable in f32
            p.copy_(value)


def module_fixture(module, inputs, run, gen):
    """Parameters, inputs, output, dout, input grads and grad.<param> for L = sum(out * dout)."""
    for t in inputs.values():
        t.requires_grad_(True)
    out = run(**inputs)
    dout = f32_input(*out.shape, generator=gen)
    (out * dout).sum().backward()
    fixture = {}
    for name, p in module.named_parameters():
        fixture[name] = p
    for name, t in inputs.items():
        fixture[name] = t
    fixture["out"] = out
    fixture["dout"] = dout
    for name, t in inputs.items():
        fixture["d" + name] = t.grad
    for name, p in module.named_parameters():
        fixture["grad." + name] = p.grad
    return fixture


def sdpa(gen):
    B, H, D = 2, 2, 4
    cases = {
        "none": (3, 5, None),
        "causal": (4, 4, causal_mask(4, 4)),
        "causal_tq_lt_tkv": (2, 5, causal_mask(2, 5)),  # queries at the end, as with a KV cache
        "padding": (3, 5, padding_mask([5, 2], 5)),
        "causal_padding": (4, 4, causal_mask(4, 4) & padding_mask([4, 3], 4)),
        "fully_masked": (3, 4, padding_mask([4, 0], 4)),  # sequence 1 sees no key at all
    }
    fixture = {}
    for name, (t_q, t_kv, mask) in cases.items():
        q = f32_input(B, H, t_q, D, generator=gen).requires_grad_(True)
        k = f32_input(B, H, t_kv, D, generator=gen).requires_grad_(True)
        v = f32_input(B, H, t_kv, D, generator=gen).requires_grad_(True)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        dout = f32_input(*out.shape, generator=gen)
        (out * dout).sum().backward()
        for key, t in [("q", q), ("k", k), ("v", v), ("out", out), ("dout", dout),
                       ("dq", q.grad), ("dk", k.grad), ("dv", v.grad)]:
            fixture[f"{name}.{key}"] = t
    write_fixture(os.path.join(OUT, "sdpa.txt"), fixture,
                  "F.scaled_dot_product_attention, float64, masks: none, causal (T_q = T_kv and\n"
                  "T_q < T_kv, last query aligned with last key), key padding, causal + padding,\n"
                  "and a sequence with no visible key (PyTorch >= 2.5 gives zeros there, not NaN)")


def layer_norm(gen):
    ln = nn.LayerNorm(5)
    randomise(ln, gen)
    x = f32_input(2, 3, 5, generator=gen, scale=2.0)
    write_fixture(os.path.join(OUT, "layer_norm.txt"),
                  module_fixture(ln, {"x": x}, lambda x: ln(x), gen),
                  "nn.LayerNorm(5), eps 1e-5, float64")


def gelu(gen):
    x = f32_input(64, generator=gen, scale=3.0).requires_grad_(True)
    out = nn.GELU()(x)
    dout = f32_input(64, generator=gen)
    (out * dout).sum().backward()
    write_fixture(os.path.join(OUT, "gelu.txt"),
                  {"x": x, "out": out, "dout": dout, "dx": x.grad},
                  "nn.GELU() (exact erf form), float64")


def block(gen):
    blk = Block(8, 2, 16)
    randomise(blk, gen)
    x = f32_input(2, 4, 8, generator=gen)
    write_fixture(os.path.join(OUT, "block.txt"),
                  module_fixture(blk, {"x": x}, lambda x: blk(x), gen),
                  "pre-LN Block(width 8, 2 heads, MLP hidden 16), no mask, float64")
    blk = Block(8, 2, 16)
    randomise(blk, gen)
    x = f32_input(2, 4, 8, generator=gen)
    mask = causal_mask(4, 4) & padding_mask([4, 3], 4)
    write_fixture(os.path.join(OUT, "block_causal_padding.txt"),
                  module_fixture(blk, {"x": x}, lambda x: blk(x, mask), gen),
                  "pre-LN Block(width 8, 2 heads, MLP hidden 16), causal + key padding [4, 3], float64")


def cross_block(gen):
    blk = CrossBlock(8, 6, 2, 16)
    randomise(blk, gen)
    x = f32_input(2, 4, 8, generator=gen)
    memory = f32_input(2, 5, 6, generator=gen)
    mask = causal_mask(4, 4)
    memory_mask = padding_mask([5, 3], 5)
    write_fixture(os.path.join(OUT, "cross_block.txt"),
                  module_fixture(blk, {"x": x, "memory": memory},
                                 lambda x, memory: blk(x, memory, mask, memory_mask), gen),
                  "CrossBlock(width 8, memory width 6, 2 heads, MLP hidden 16),\n"
                  "causal self-attention, memory key padding [5, 3], float64")


def prefix_lm():
    """Mask::PrefixLm, in a file of its own drawn from its own generator, so the
    fixtures above stay byte for byte what they were."""
    gen = torch.Generator().manual_seed(4321)
    B, H, D = 2, 2, 4
    cases = {
        "prefix": (5, 5, [3, 1]),  # row 1: a prefix of one is plain causal
        "prefix_tq_lt_tkv": (2, 6, [5, 2]),  # the last queries, as with a KV cache
        "prefix_clamped": (4, 4, [9, 0]),  # longer than the sequence: no mask at all; 0: causal
    }
    fixture = {}
    for name, (t_q, t_kv, prefix) in cases.items():
        q = f32_input(B, H, t_q, D, generator=gen).requires_grad_(True)
        k = f32_input(B, H, t_kv, D, generator=gen).requires_grad_(True)
        v = f32_input(B, H, t_kv, D, generator=gen).requires_grad_(True)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=prefix_lm_mask(prefix, t_q, t_kv))
        dout = f32_input(*out.shape, generator=gen)
        (out * dout).sum().backward()
        for key, t in [("q", q), ("k", k), ("v", v), ("out", out), ("dout", dout),
                       ("dq", q.grad), ("dk", k.grad), ("dv", v.grad)]:
            fixture[f"{name}.{key}"] = t
    blk = Block(8, 2, 16)
    randomise(blk, gen)
    x = f32_input(2, 5, 8, generator=gen)
    mask = prefix_lm_mask([3, 1], 5, 5)
    for key, t in module_fixture(blk, {"x": x}, lambda x: blk(x, mask), gen).items():
        fixture[f"block.{key}"] = t
    write_fixture(os.path.join(OUT, "prefix_lm.txt"), fixture,
                  "Mask::PrefixLm: F.scaled_dot_product_attention with attn_mask =\n"
                  "causal | (key < prefix[b]), float64: prefix [3, 1] at T = 5; the last two\n"
                  "queries of six, prefix [5, 2]; prefix [9, 0] at T = 4 (clamped, and causal);\n"
                  "block.*: pre-LN Block(width 8, 2 heads, MLP hidden 16), prefix [3, 1], T = 5")


if __name__ == "__main__":
    gen = torch.Generator().manual_seed(1234)
    sdpa(gen)
    layer_norm(gen)
    gelu(gen)
    block(gen)
    cross_block(gen)
    prefix_lm()
