"""Golden fixtures for the `model` crate: a PyTorch mirror of the whole model.

Run by hand (never in CI), from the repository root:
    cargo run -p model --example golden_weights      # writes the weights
    /work/venv-torch/bin/python tools/golden/model.py  # needs torch + safetensors
    cargo test -p model --test golden

The mirror below is built from scratch with the Rust crate's module names,
so `load_state_dict(strict=True)` of the Rust-written safetensors file
succeeds only if every name and shape agrees. It then runs, in float64, the
forward pass of a fixed batch and the backward pass of the fake loss

    L = sum(image_embeds * d_image_embeds) + sum(text_embeds * d_text_embeds)
      + exp(logit_scale) * d_logit_scale + sum(logits * d_logits)

and writes model/tests/golden/<name>.txt: the batch, the `d_*` tensors,
the four outputs and `grad.<name>` for every parameter.

The two micro configs mirror `ModelConfig::micro(12)` (ViT tower, tied
decoder head) and the same with `ModelConfig::micro_cnn()` and a separate
head.
"""

import math
import os
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(__file__))
from golden_io import f32_input, write_fixture  # noqa: E402

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "model", "tests", "golden")
VOCAB, MAX_LEN, EMBED_DIM = 12, 6, 6
BOS, EOS, PAD = 9, 10, 11


# --- the attention crate's pieces -------------------------------------------------

class MultiHeadAttention(nn.Module):
    def __init__(self, width, n_head):
        super().__init__()
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)
        self.n_head = n_head

    def forward(self, x, causal):
        """causal: True (causal), False (no mask), or a boolean mask [B, 1, T, T]
        that is True where a query may see a key (the prefix-LM of tools/golden/vlm.py)."""
        B, T, C = x.shape
        q, k, v = self.qkv(x).split(C, dim=2)  # three (B, T, C)
        heads = lambda t: t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2)  # (B, H, T, D)
        if isinstance(causal, torch.Tensor):
            y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), attn_mask=causal)
        else:
            y = F.scaled_dot_product_attention(heads(q), heads(k), heads(v), is_causal=causal)
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class CrossAttention(nn.Module):
    def __init__(self, width, memory_width, n_head):
        super().__init__()
        self.q = nn.Linear(width, width)
        self.kv = nn.Linear(memory_width, 2 * width)
        self.proj = nn.Linear(width, width)
        self.n_head = n_head

    def forward(self, x, memory):
        B, T, C = x.shape
        S, D = memory.shape[1], C // self.n_head
        q = self.q(x).view(B, T, self.n_head, D).transpose(1, 2)  # (B, H, T, D)
        k, v = self.kv(memory).split(C, dim=2)  # two (B, S, C)
        k = k.view(B, S, self.n_head, D).transpose(1, 2)  # (B, H, S, D)
        v = v.view(B, S, self.n_head, D).transpose(1, 2)
        y = F.scaled_dot_product_attention(q, k, v)  # every text token sees every image token
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Mlp(nn.Module):
    def __init__(self, width, hidden):
        super().__init__()
        self.fc = nn.Linear(width, hidden)
        self.proj = nn.Linear(hidden, width)

    def forward(self, x):
        return self.proj(F.gelu(self.fc(x)))  # exact erf GELU


class Block(nn.Module):
    def __init__(self, width, n_head, hidden):
        super().__init__()
        self.ln_1 = nn.LayerNorm(width)
        self.attn = MultiHeadAttention(width, n_head)
        self.ln_2 = nn.LayerNorm(width)
        self.mlp = Mlp(width, hidden)

    def forward(self, x, causal):
        x = x + self.attn(self.ln_1(x), causal)
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

    def forward(self, x, memory):
        x = x + self.attn(self.ln_1(x), causal=True)
        x = x + self.cross_attn(self.ln_cross(x), memory)
        return x + self.mlp(self.ln_2(x))


class Table(nn.Module):
    """A bare `weight` parameter (learned positions: `pos_embed.weight`, ...)."""

    def __init__(self, rows, cols):
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(rows, cols))


# --- the vision crate's towers ------------------------------------------------------

class PatchEmbed(nn.Module):
    def __init__(self, in_channels, dim, patch):
        super().__init__()
        self.proj = nn.Conv2d(in_channels, dim, patch, stride=patch)

    def forward(self, images):
        return self.proj(images).flatten(2).transpose(1, 2)  # (B, N, C), patches row by row


class Vit(nn.Module):
    def __init__(self, image_size, in_channels, patch, depth, width, n_head, hidden):
        super().__init__()
        n = (image_size // patch) ** 2
        self.patch_embed = PatchEmbed(in_channels, width, patch)
        self.cls_token = nn.Parameter(torch.zeros(width))
        self.pos_embed = Table(n + 1, width)
        self.blocks = nn.ModuleList([Block(width, n_head, hidden) for _ in range(depth)])
        self.norm = nn.LayerNorm(width)

    def forward(self, images):
        x = self.patch_embed(images)  # (B, N, C)
        cls = self.cls_token.expand(x.shape[0], 1, -1)
        x = torch.cat([cls, x], dim=1) + self.pos_embed.weight  # (B, N+1, C)
        for block in self.blocks:
            x = block(x, causal=False)
        tokens = self.norm(x)
        return tokens, tokens[:, 0]  # tokens, pooled = CLS


class ConvBlock(nn.Module):
    def __init__(self, c_in, c_out, kernel, pool):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, kernel, padding=kernel // 2)
        self.pool = pool

    def forward(self, x):
        return F.max_pool2d(F.relu(self.conv(x)), self.pool)


class Cnn(nn.Module):
    def __init__(self, in_channels, channels, kernel, pool):
        super().__init__()
        ins = [in_channels] + channels[:-1]
        self.blocks = nn.ModuleList([ConvBlock(a, b, kernel, pool) for a, b in zip(ins, channels)])

    def forward(self, images):
        x = images
        for block in self.blocks:
            x = block(x)
        tokens = x.flatten(2).transpose(1, 2)  # (B, H'W', C), row by row
        return tokens, tokens.mean(dim=1)  # tokens, pooled = mean


# --- the model crate ----------------------------------------------------------------

class TextEncoder(nn.Module):
    def __init__(self, width, depth, n_head, hidden, vocab=None, max_len=None):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab or VOCAB, width)
        self.position_embedding = Table(max_len or MAX_LEN, width)
        self.blocks = nn.ModuleList([Block(width, n_head, hidden) for _ in range(depth)])
        self.ln_final = nn.LayerNorm(width)

    def forward(self, tokens, lengths):
        T = tokens.shape[1]
        x = self.token_embedding(tokens) + self.position_embedding.weight[:T]
        for block in self.blocks:
            x = block(x, causal=True)
        x = self.ln_final(x)  # CLIP: normalise all, then take the <|eos|> position
        return x[torch.arange(x.shape[0]), lengths - 1]


class Decoder(nn.Module):
    def __init__(self, width, depth, n_head, hidden, memory_width, tied, vocab=None, max_len=None):
        super().__init__()
        vocab = vocab or VOCAB
        self.token_embedding = nn.Embedding(vocab, width)
        self.position_embedding = Table(max_len or MAX_LEN, width)
        self.blocks = nn.ModuleList(
            [CrossBlock(width, memory_width, n_head, hidden) for _ in range(depth)])
        self.ln_final = nn.LayerNorm(width)
        self.tied = tied
        if not tied:
            self.lm_head = nn.Linear(width, vocab, bias=False)

    def forward(self, image_tokens, tokens):
        T = tokens.shape[1]
        x = self.token_embedding(tokens) + self.position_embedding.weight[:T]
        for block in self.blocks:
            x = block(x, image_tokens)
        h = self.ln_final(x)
        return h @ self.token_embedding.weight.T if self.tied else self.lm_head(h)


class Model(nn.Module):
    def __init__(self, image, image_width, tied):
        super().__init__()
        self.image = image
        self.text = TextEncoder(8, 1, 2, 16)
        self.image_projection = nn.Linear(image_width, EMBED_DIM, bias=False)
        self.text_projection = nn.Linear(8, EMBED_DIM, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.decoder = Decoder(10, 1, 2, 16, image_width, tied)

    def forward(self, images, tokens, lengths):
        image_tokens, image_pooled = self.image(images)
        image_embeds = F.normalize(self.image_projection(image_pooled), dim=-1)
        text_embeds = F.normalize(self.text_projection(self.text(tokens, lengths)), dim=-1)
        logits = self.decoder(image_tokens, tokens[:, :-1])
        return image_embeds, text_embeds, self.logit_scale.exp(), logits


def run(name, model, gen):
    state = load_file(os.path.join(OUT, f"{name}.safetensors"))
    model.load_state_dict(state, strict=True)  # every name and shape must agree
    model.double()

    images = f32_input(3, 3, 8, 8, generator=gen)
    tokens = torch.tensor([
        [BOS, 1, 2, 3, EOS, PAD],
        [BOS, 4, EOS, PAD, PAD, PAD],
        [BOS, 5, 6, 7, 8, EOS],
    ])
    lengths = torch.tensor([5, 3, 6])
    image_embeds, text_embeds, logit_scale, logits = model(images, tokens, lengths)

    d_image_embeds = f32_input(*image_embeds.shape, generator=gen)
    d_text_embeds = f32_input(*text_embeds.shape, generator=gen)
    d_logit_scale = f32_input(1, generator=gen)[0]
    d_logits = f32_input(*logits.shape, generator=gen)
    loss = ((image_embeds * d_image_embeds).sum() + (text_embeds * d_text_embeds).sum()
            + logit_scale * d_logit_scale + (logits * d_logits).sum())
    loss.backward()

    fixture = {
        "images": images, "tokens": tokens, "lengths": lengths,
        "d_image_embeds": d_image_embeds, "d_text_embeds": d_text_embeds,
        "d_logit_scale": d_logit_scale, "d_logits": d_logits,
        "image_embeds": image_embeds, "text_embeds": text_embeds,
        "logit_scale": logit_scale, "logits": logits,
    }
    for param_name, p in model.named_parameters():
        fixture["grad." + param_name] = p.grad
    write_fixture(os.path.join(OUT, f"{name}.txt"), fixture,
                  f"tools/golden/model.py: the {name} mirror loaded from {name}.safetensors,\n"
                  "float64, L = sum of every output times its d_*; grad.<name> for every parameter")


def main():
    gen = torch.Generator().manual_seed(0)
    vit = Vit(image_size=8, in_channels=3, patch=4, depth=1, width=12, n_head=2, hidden=16)
    run("micro_vit", Model(vit, 12, tied=True), gen)
    cnn = Cnn(in_channels=3, channels=[4, 6], kernel=3, pool=2)
    run("micro_cnn", Model(cnn, 6, tied=False), gen)


if __name__ == "__main__":
    main()
