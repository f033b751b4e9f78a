"""Golden fixtures for the multimodal model: a PyTorch mirror of the
decoder-only language model, the projector, the splice at <|image|>, both
attention masks and the answer loss.

Run by hand (never in CI), from the repository root:
    cargo run -p model --example golden_vlm_weights    # writes the weights
    /work/venv-torch/bin/python tools/golden/vlm.py     # needs torch + safetensors
    cargo test -p model --test golden_vlm

The modules below carry the Rust crate's names (`vision_tower.*`,
`multi_modal_projector.linear_1.*`, `language_model.blocks.0.*`, ...), so
`load_state_dict(strict=True)` of the Rust-written safetensors file succeeds
only if every name and shape agrees. Each case then runs, in float64, one
batch of chat rows forward and the answer loss (cross-entropy on the
answers' tokens only) backward, and writes model/tests/golden/<name>.txt:
the batch (images, tokens, weights), the loss's targets and weights in
spliced positions, the logits, the loss and `grad.<name>` of every
parameter.

The same modules are what tools/pytorch/ loads a trained checkpoint into.

References: Liu et al. 2023, "Visual Instruction Tuning" (LLaVA) and
"Improved Baselines with Visual Instruction Tuning" (LLaVA-1.5, the MLP
projector); Beyer et al. 2024, "PaliGemma" (the prefix-LM mask);
Laurencon et al. 2024, Idefics3 (pixel shuffle).
"""

import os
import sys
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(__file__))
from golden_io import f32_input, write_fixture  # noqa: E402
from model import Block, Cnn, Table, Vit  # noqa: E402  the towers and blocks of the CLIP mirror

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "model", "tests", "golden")


# --- the language model ------------------------------------------------------------

class LanguageModel(nn.Module):
    """GPT-2's layout: token + learned positions, pre-LN blocks, final LayerNorm,
    a head tied to the token table or separate (model/src/lm.rs)."""

    def __init__(self, vocab, max_len, width, depth, n_head, hidden, tied):
        super().__init__()
        self.token_embedding = nn.Embedding(vocab, width)
        self.position_embedding = Table(max_len, width)
        self.blocks = nn.ModuleList([Block(width, n_head, hidden) for _ in range(depth)])
        self.ln_final = nn.LayerNorm(width)
        self.tied = tied
        if not tied:
            self.lm_head = nn.Linear(width, vocab, bias=False)

    def forward_embeds(self, x, mask):
        """x: (B, T, C) input vectors; mask: True (causal) or a boolean (B, 1, T, T),
        True where a query may see a key. Returns the logits (B, T, V)."""
        T = x.shape[1]
        x = x + self.position_embedding.weight[:T]
        for block in self.blocks:
            x = block(x, mask)
        h = self.ln_final(x)
        return h @ self.token_embedding.weight.T if self.tied else self.lm_head(h)

    def forward(self, tokens):
        """The text-only model: (B, T) token IDs -> (B, T, V), causal."""
        return self.forward_embeds(self.token_embedding(tokens), True)


# --- the projector -----------------------------------------------------------------

class Projector(nn.Module):
    """LLaVA-1.5's MLP (linear_1, GELU, linear_2) or LLaVA-1's single Linear."""

    def __init__(self, kind, c_in, width):
        super().__init__()
        self.linear_1 = nn.Linear(c_in, width)
        if kind == "mlp":
            self.linear_2 = nn.Linear(width, width)
        self.kind = kind

    def forward(self, x):
        h = self.linear_1(x)
        return self.linear_2(F.gelu(h)) if self.kind == "mlp" else h


def select_and_pool(tokens, cls, side, pool, keep_cls):
    """The tokens the projector reads: the CLS token (if kept) first, then the
    side x side grid, every cell ("none"), the mean of each 2x2 block
    ("average2"), or each 2x2 block's four vectors side by side, row by row
    ("pixel_shuffle2"). tokens: (B, N_img, C) -> (B, N, C or 4C)."""
    cells = tokens[:, 1:] if cls else tokens  # (B, side*side, C): the grid alone
    B, _, C = cells.shape
    half = side // 2
    blocks = cells.reshape(B, half, 2, half, 2, C)  # (B, i, dy, j, dx, C)
    if pool == "none":
        out = cells
    elif pool == "average2":
        out = blocks.mean(dim=(2, 4)).reshape(B, half * half, C)
    elif pool == "pixel_shuffle2":
        # (B, i, j, dy, dx, C): cell (i, j) holds x(2i,2j), x(2i,2j+1), x(2i+1,2j), x(2i+1,2j+1)
        out = blocks.permute(0, 1, 3, 2, 4, 5).reshape(B, half * half, 4 * C)
    else:
        raise ValueError(f"unknown pool {pool!r}")
    if keep_cls:
        out = torch.cat([tokens[:, :1], out], dim=1)
    return out


# --- the multimodal model ----------------------------------------------------------

@dataclass
class ChatTokens:
    """The chat format's special token IDs (model::ChatTokens)."""
    image: int
    user: int
    assistant: int
    end: int
    pad: int

    @staticmethod
    def last_five(vocab):
        return ChatTokens(vocab - 5, vocab - 4, vocab - 3, vocab - 2, vocab - 1)


def splice(text, image, image_at):
    """Row b of text (B, T, C) with its image (B, N, C) in place of position
    image_at[b]: (B, T + N - 1, C). One gather from [text | image], so the
    backward pass is one scatter-add."""
    B, T, C = text.shape
    N = image.shape[1]
    both = torch.cat([text, image], dim=1)  # (B, T + N, C): the image's rows after the text's
    rows = [list(range(p)) + list(range(T, T + N)) + list(range(p + 1, T)) for p in image_at]
    index = torch.tensor(rows, device=text.device)  # (B, T + N - 1): where each position comes from
    return both.gather(1, index.unsqueeze(-1).expand(-1, -1, C))


class Vlm(nn.Module):
    """vision_tower -> select and pool -> multi_modal_projector, spliced into the
    language model's input at <|image|> (model/src/vlm.rs)."""

    def __init__(self, vision_tower, grid_cls, grid_side, grid_width,
                 kind, pool, keep_cls, lm, mask, tokens):
        super().__init__()
        self.vision_tower = vision_tower
        c_in = 4 * grid_width if pool == "pixel_shuffle2" else grid_width
        self.multi_modal_projector = Projector(kind, c_in, lm.token_embedding.embedding_dim)
        self.language_model = lm
        self.grid = (grid_cls, grid_side)
        self.pool, self.keep_cls, self.mask_kind, self.tokens = pool, keep_cls, mask, tokens

    def num_image_tokens(self):
        cls, side = self.grid
        cells = side * side if self.pool == "none" else (side // 2) ** 2
        return cells + int(self.keep_cls)

    def image_positions(self, tokens):
        """Where <|image|> stands in each row (exactly once)."""
        at = []
        for b, row in enumerate(tokens.tolist()):
            where = [t for t, id in enumerate(row) if id == self.tokens.image]
            assert len(where) == 1, f"row {b} must hold <|image|> exactly once"
            at.append(where[0])
        return at

    def mask(self, tokens):
        """True (causal), or the prefix-LM mask (B, 1, T', T') in spliced
        positions: every position sees the image and the first question (all
        before the first <|assistant|>, the whole row if there is none) both
        ways, and everything before it."""
        if self.mask_kind == "causal":
            return True
        n = self.num_image_tokens()
        prefix = []
        for row in tokens.tolist():
            first = row.index(self.tokens.assistant) if self.tokens.assistant in row else len(row)
            prefix.append(first + n - 1)
        t = tokens.shape[1] + n - 1
        i = torch.arange(t, device=tokens.device).view(1, 1, t, 1)
        j = torch.arange(t, device=tokens.device).view(1, 1, 1, t)
        return (j <= i) | (j < torch.tensor(prefix, device=tokens.device).view(-1, 1, 1, 1))

    def image_embeds(self, images, tower_grad=True):
        """images (B, 3, H, W) -> the projected image tokens (B, N, C_lm). With
        tower_grad=False the tower runs without autograd (a frozen tower)."""
        with torch.set_grad_enabled(tower_grad and torch.is_grad_enabled()):
            tower_tokens, _ = self.vision_tower(images)  # (B, N_img, C_img)
        cls, side = self.grid
        x = select_and_pool(tower_tokens, cls, side, self.pool, self.keep_cls)
        return self.multi_modal_projector(x)

    def forward(self, images, tokens, tower_grad=True):
        """images (B, 3, H, W), tokens (B, T) with one <|image|> per row ->
        logits (B, T + N - 1, V)."""
        image_x = self.image_embeds(images, tower_grad)  # (B, N, C_lm)
        text_x = self.language_model.token_embedding(tokens)  # (B, T, C_lm)
        x = splice(text_x, image_x, self.image_positions(tokens))  # (B, T + N - 1, C_lm)
        return self.language_model.forward_embeds(x, self.mask(tokens))

    def targets(self, tokens, weights):
        """The loss's targets and weights in spliced positions: position j
        predicts what stands at j + 1 when that is text (with that text
        token's weight); the image's positions and the last predict nothing."""
        n = self.num_image_tokens()
        targets, target_weights = [], []
        for b, p in enumerate(self.image_positions(tokens)):
            ids, w = tokens[b].tolist(), weights[b].tolist()
            # the spliced row as (id, weight); image positions have none
            row = ([(ids[t], w[t]) for t in range(p)] + [(self.tokens.pad, 0.0)] * n
                   + [(ids[t], w[t]) for t in range(p + 1, len(ids))])
            shifted = row[1:] + [(self.tokens.pad, 0.0)]
            targets.append([id for id, _ in shifted])
            target_weights.append([wt for _, wt in shifted])
        return torch.tensor(targets), torch.tensor(target_weights, dtype=torch.float64)


def answer_loss(logits, targets, weights):
    """Cross-entropy where the weight says, averaged over the weights (model::answer_loss)."""
    ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                         reduction="none")
    w = weights.reshape(-1).to(logits.dtype)
    return (w * ce).sum() / w.sum()


def chat_weights(tokens, chat):
    """1 on every answer token and the <|end|> closing it, 0 elsewhere
    (model::encode_chat's weights, read back from the IDs)."""
    weights = torch.zeros(tokens.shape, dtype=torch.float64)
    for b, row in enumerate(tokens.tolist()):
        answering = False
        for t, id in enumerate(row):
            if id == chat.assistant:
                answering = True
            elif answering:
                weights[b, t] = 1.0
                answering = id != chat.end
    return weights


# --- the fixtures ------------------------------------------------------------------

VOCAB, MAX_LEN = 16, 20  # model/examples/golden_vlm_weights.rs
CHAT = ChatTokens.last_five(VOCAB)  # image 11, user 12, assistant 13, end 14, pad 15


def micro_lm(tied):
    return LanguageModel(VOCAB, MAX_LEN, width=8, depth=2, n_head=2, hidden=16, tied=tied)


def micro_vit(image_size):
    return Vit(image_size=image_size, in_channels=3, patch=4, depth=1, width=12, n_head=2,
               hidden=16)


# name: (tower, image size, grid (cls, side, width), projector kind, pool, keep_cls, mask, tied)
CASES = {
    "vlm_vit_mlp_cls_causal": ("vit", 8, (True, 2, 12), "mlp", "none", True, "causal", True),
    "vlm_cnn_linear_shuffle_prefix":
        ("cnn", 16, (False, 4, 6), "linear", "pixel_shuffle2", False, "prefix", False),
    "vlm_vit_mlp_average_cls_prefix":
        ("vit", 16, (True, 4, 12), "mlp", "average2", True, "prefix", True),
    "vlm_vit_linear_shuffle_causal":
        ("vit", 16, (True, 4, 12), "linear", "pixel_shuffle2", False, "causal", False),
}

# Three conversations of 12 IDs: the image in three places, a second turn in
# row 1 (the prefix-LM's prefix ends at the *first* <|assistant|>), padding.
U, I, A, E, P = CHAT.user, CHAT.image, CHAT.assistant, CHAT.end, CHAT.pad
TOKENS = torch.tensor([
    [U, 1, I, 2, A, 3, 4, E, P, P, P, P],  # <|user|> a <|image|> b <|assistant|> c d <|end|>
    [U, I, 5, A, 6, E, U, 7, 8, A, 9, E],  # two turns
    [U, 0, 10, I, A, 2, E, P, P, P, P, P],  # the image last in the question
])


def load(module, name):
    from safetensors.torch import load_file
    state = load_file(os.path.join(OUT, f"{name}.safetensors"))
    module.load_state_dict(state, strict=True)  # every name and shape must agree
    return module.double()


def gradients(module):
    return {"grad." + name: p.grad for name, p in module.named_parameters()}


def lm_fixture():
    """The text-only model on the conversations without their image: every
    position after the first learns its next token, padding excepted."""
    lm = load(micro_lm(tied=True), "lm_text")
    tokens = torch.where(TOKENS == I, torch.full_like(TOKENS, 0), TOKENS)
    logits = lm(tokens)
    targets = torch.cat([tokens[:, 1:], torch.full((3, 1), P)], dim=1)
    weights = (targets != P).to(torch.float64)
    loss = answer_loss(logits, targets, weights)
    loss.backward()
    fixture = {"tokens": tokens, "targets": targets, "weights": weights,
               "logits": logits, "loss": loss, **gradients(lm)}
    write_fixture(os.path.join(OUT, "lm_text.txt"), fixture,
                  "tools/golden/vlm.py: the text-only LanguageModel (width 8, 2 blocks, tied head)\n"
                  "loaded from lm_text.safetensors, float64, causal; loss = answer_loss(logits,\n"
                  "targets, weights); grad.<name> for every parameter")


def vlm_fixture(name, gen):
    tower, image_size, (cls, side, width), kind, pool, keep_cls, mask, tied = CASES[name]
    if tower == "vit":
        vision = micro_vit(image_size)
    else:
        vision = Cnn(in_channels=3, channels=[4, 6], kernel=3, pool=2)
    vlm = Vlm(vision, cls, side, width, kind, pool, keep_cls, micro_lm(tied), mask, CHAT)
    load(vlm, name)

    images = f32_input(3, 3, image_size, image_size, generator=gen)
    weights = chat_weights(TOKENS, CHAT)
    targets, target_weights = vlm.targets(TOKENS, weights)
    logits = vlm(images, TOKENS)
    loss = answer_loss(logits, targets, target_weights)
    loss.backward()
    fixture = {"images": images, "tokens": TOKENS, "weights": weights, "targets": targets,
               "target_weights": target_weights, "logits": logits, "loss": loss,
               **gradients(vlm)}
    write_fixture(os.path.join(OUT, f"{name}.txt"), fixture,
                  f"tools/golden/vlm.py: {name} ({tower} tower, {kind} projector, pool {pool},\n"
                  f"keep_cls {keep_cls}, {mask} mask, {'tied' if tied else 'separate'} head) loaded\n"
                  f"from {name}.safetensors, float64; loss = answer_loss(logits, targets,\n"
                  "target_weights); grad.<name> for every parameter")


def main():
    gen = torch.Generator().manual_seed(14)
    lm_fixture()
    for name in CASES:
        vlm_fixture(name, gen)


if __name__ == "__main__":
    main()
