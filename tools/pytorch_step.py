"""Times PyTorch eager's training step for the tiny model, for comparison
with `cargo bench -p train` (groups `train/step` and `train/vlm_step`). Run
by hand, never in CI:

    /work/venv-torch/bin/python tools/pytorch_step.py [--steps 30] [--only clip|vlm]

The model is the model crate's PyTorch mirror (tools/golden/model.py) at the
tiny config (`ModelConfig::tiny(512)`): 32x32 images, width 64 everywhere,
2 layers of 4 heads, MLP 256, captions of 16 tokens, shared space 64, tied
decoder head; image tower the ViT (4x4 patches) or the CNN (3 -> 32 -> 64
channels). One step is what `train::train_step` does: zero the gradients,
forward, contrastive + 2 x captioning loss, backward, clip the global norm
to 1, AdamW in two parameter groups, clamp the logit scale. float32, batch
64, the same batch as the Rust bench; 1 and 2 threads (torch.set_num_threads).
Prints the median and the minimum wall time over the timed steps, and the
median CPU time (all threads).

The multimodal model's step is the instruction-tuning stage of the Rust
bench (`train/vlm_step`, `instruct_B64`): the mirror of tools/golden/vlm.py
at `VlmConfig::tiny(512, 64)` (the CNN tower's 8x8 grid of width 64, 2x2
averages: 16 image tokens; an MLP projector; the language model of width 64,
2 blocks of 4 heads, MLP 256, tied head; causal), batch 64 of the bench's
conversations (16 text tokens: <|user|> <|image|>, nine question tokens,
<|assistant|>, three answer tokens, <|end|>; the answer and <|end|> are the
targets). One step: zero the gradients, the vision tower forward under
torch.no_grad (frozen), projector and language model forward, the answer
loss, backward, clip the global norm to 1, AdamW (two groups) on the
projector and the language model.
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
import vlm as vlm_mirror  # noqa: E402  tools/golden/vlm.py: the multimodal model

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

    return timed(step, steps)


def timed(step, steps):
    """Median and minimum wall time, and median CPU time (all threads), of
    `steps` calls after 3 untimed ones, in ms. CPU time is what compares on
    a machine other programs share: it does not count the time the process
    waited for a core."""
    for _ in range(3):  # warm up allocator and kernels
        step()
    times, cpu = [], []
    for _ in range(steps):
        start, start_cpu = time.perf_counter(), time.process_time()
        step()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return statistics.median(times) * 1e3, min(times) * 1e3, statistics.median(cpu) * 1e3


VLM_MAX_LEN = 64  # VlmConfig::tiny(VOCAB, 64) in the Rust bench
CHAT = vlm_mirror.ChatTokens.last_five(VOCAB)


def tiny_vlm():
    """The mirror at VlmConfig::tiny(VOCAB, VLM_MAX_LEN)."""
    tower = mirror.Cnn(in_channels=3, channels=[32, 64], kernel=3, pool=2)  # 8x8 grid, width 64
    lm = vlm_mirror.LanguageModel(VOCAB, VLM_MAX_LEN, WIDTH, depth=2, n_head=4, hidden=256,
                                  tied=True)
    return vlm_mirror.Vlm(tower, False, 8, 64, "mlp", "average2", False, lm, "causal", CHAT)


def vlm_batch():
    """The Rust bench's conversations (train/benches/common: vlm_batch_of)."""
    g = torch.Generator().manual_seed(2)
    images = torch.randn(BATCH, 3, 32, 32, generator=g)
    tokens = torch.tensor([[{0: CHAT.user, 1: CHAT.image, 11: CHAT.assistant, 15: CHAT.end}
                            .get(i, (b * 31 + i * 7) % 300) for i in range(16)]
                           for b in range(BATCH)])
    weights = (torch.arange(16) >= 12).to(torch.float32).expand(BATCH, 16)
    return images, tokens, weights


def time_vlm_steps(threads, steps):
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = tiny_vlm()
    images, tokens, weights = vlm_batch()
    targets, target_weights = net.targets(tokens, weights)
    for p in net.vision_tower.parameters():
        p.requires_grad_(False)  # frozen: no gradient, not in the optimiser
    named = [(n, p) for n, p in net.named_parameters() if p.requires_grad]
    trainable = [p for _, p in named]
    opt = torch.optim.AdamW([
        {"params": [p for n, p in named if not losses.no_decay(n)], "weight_decay": 0.1},
        {"params": [p for n, p in named if losses.no_decay(n)], "weight_decay": 0.0},
    ], lr=1e-3, betas=(0.9, 0.98), eps=1e-6)

    def step():
        opt.zero_grad()
        logits = net(images, tokens, tower_grad=False)  # the tower under torch.no_grad
        loss = vlm_mirror.answer_loss(logits, targets, target_weights)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(trainable, 1.0)
        opt.step()
        return loss

    return timed(step, steps)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--only", choices=["clip", "vlm"],
                        help="time only the CLIP model's step or only the multimodal model's")
    args = parser.parse_args()
    print(f"torch {torch.__version__}, batch {BATCH}, float32, eager")
    if args.only != "vlm":
        for tower in ("vit", "cnn"):
            for threads in (1, 2):
                median, best, cpu = time_steps(tower, threads, args.steps)
                print(f"{tower} threads={threads}: median {median:.1f} ms, "
                      f"min {best:.1f} ms, cpu {cpu:.1f} ms per step")
    if args.only != "clip":
        for threads in (1, 2):
            median, best, cpu = time_vlm_steps(threads, args.steps)
            print(f"vlm instruct threads={threads}: median {median:.1f} ms, "
                  f"min {best:.1f} ms, cpu {cpu:.1f} ms per step")


if __name__ == "__main__":
    main()
