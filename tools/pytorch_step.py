"""Times PyTorch eager's training step for the tiny model, for comparison
with `cargo bench -p train` (group `train/step`). Run by hand, never in CI:

    /work/venv-torch/bin/python tools/pytorch_step.py [--steps 30]

The model is the model crate's PyTorch mirror (tools/golden/model.py) at the
tiny config (`ModelConfig::tiny(512)`): 32x32 images, width 64 everywhere,
2 layers of 4 heads, MLP 256, captions of 16 tokens, shared space 64, tied
decoder head; image tower the ViT (4x4 patches) or the CNN (3 -> 32 -> 64
channels). One step is what `train::train_step` does: zero the gradients,
forward, contrastive + 2 x captioning loss, backward, clip the global norm
to 1, AdamW in two parameter groups, clamp the logit scale. float32, batch
64, the same batch as the Rust bench; 1 and 2 threads (torch.set_num_threads).
Prints the median and the minimum over the timed steps.
"""

import argparse
import math
import os
import statistics
import sys
import time

import torch
import torch.nn as nn

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "golden"))
import model as mirror  # noqa: E402
import train as losses  # noqa: E402  tools/golden/train.py: the losses, no_decay

VOCAB, MAX_LEN, WIDTH, BATCH = 512, 16, 64, 64
mirror.VOCAB, mirror.MAX_LEN = VOCAB, MAX_LEN  # the mirror's modules read these at construction
BOS, EOS, PAD = VOCAB - 3, VOCAB - 2, VOCAB - 1  # SpecialTokens::last_three


class Tiny(nn.Module):
    """mirror.Model with the tiny config's widths."""

    def __init__(self, tower):
        super().__init__()
        if tower == "vit":
            self.image = mirror.Vit(image_size=32, in_channels=3, patch=4, depth=2, width=WIDTH,
                                    n_head=4, hidden=256)
        else:
            self.image = mirror.Cnn(in_channels=3, channels=[32, 64], kernel=3, pool=2)
        self.text = mirror.TextEncoder(WIDTH, 2, 4, 256)
        self.image_projection = nn.Linear(WIDTH, WIDTH, bias=False)
        self.text_projection = nn.Linear(WIDTH, WIDTH, bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.decoder = mirror.Decoder(WIDTH, 2, 4, 256, WIDTH, tied=True)

    forward = mirror.Model.forward


def batch():
    """The Rust bench's batch shape: lengths 6..=16, random images."""
    g = torch.Generator().manual_seed(1)
    images = torch.randn(BATCH, 3, 32, 32, generator=g)
    lengths = torch.tensor([6 + b % (MAX_LEN - 5) for b in range(BATCH)])
    tokens = torch.full((BATCH, MAX_LEN), PAD)
    for b in range(BATCH):
        tokens[b, 0] = BOS
        for i in range(1, lengths[b] - 1):
            tokens[b, i] = (b * 31 + i * 7) % 300
        tokens[b, lengths[b] - 1] = EOS
    return images, tokens, lengths


def time_steps(tower, threads, steps):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = Tiny(tower)
    images, tokens, lengths = batch()
    named = list(net.named_parameters())
    opt = torch.optim.AdamW([
        {"params": [p for n, p in named if not losses.no_decay(n)], "weight_decay": 0.1},
        {"params": [p for n, p in named if losses.no_decay(n)], "weight_decay": 0.0},
    ], lr=1e-3, betas=(0.9, 0.98), eps=1e-6)
    losses.PAD = PAD  # the caption loss ignores this model's padding id

    def step():
        opt.zero_grad()
        image_embeds, text_embeds, _, logits = net(images, tokens, lengths)
        loss = (losses.clip_loss(image_embeds, text_embeds, net.logit_scale)
                + 2.0 * losses.caption_loss(logits, tokens))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(net.parameters(), 1.0)
        opt.step()
        with torch.no_grad():
            net.logit_scale.clamp_(max=math.log(100))
        return loss

    for _ in range(3):  # warm up allocator and kernels
        step()
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3, min(times) * 1e3


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    args = parser.parse_args()
    print(f"torch {torch.__version__}, batch {BATCH}, float32, eager")
    for tower in ("vit", "cnn"):
        for threads in (1, 2):
            median, best = time_steps(tower, threads, args.steps)
            print(f"{tower} threads={threads}: median {median:.1f} ms, min {best:.1f} ms per step")


if __name__ == "__main__":
    main()
