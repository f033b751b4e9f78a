"""Golden fixtures for the `train` crate: the two losses, and ten AdamW steps
of the whole model.

Run by hand (never in CI), from the repository root:
    cargo test -p train --test golden -- --ignored write_initial_weights
    /work/venv-torch/bin/python tools/golden/train.py   # needs torch + safetensors
    cargo test -p train --test golden

Writes train/tests/golden/:
- contrastive.txt: CLIP's symmetric loss, the mean of F.cross_entropy over
  the rows and over the columns of exp(logit_scale) * I @ T.T, with the
  gradients of both embeddings and of logit_scale;
- caption.txt: F.cross_entropy(..., ignore_index=PAD) of the decoder's logits
  against tokens[:, 1:], with the gradient of the logits;
- steps_vit.txt, steps_cnn.txt: ten training steps of the model crate's
  PyTorch mirror (tools/golden/model.py) from the weights the Rust test
  wrote, with torch.optim.AdamW in two parameter groups (decay / no decay),
  the warmup + cosine schedule, clip_grad_norm_ and the logit-scale clamp:
  the batch, every setting, the losses, gradient norms, learning rates and
  logit scales of each step, and every final weight.
Everything is float64, from float32 inputs.
"""

import math
import os
import sys

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

sys.path.insert(0, os.path.dirname(__file__))
from golden_io import f32_input, write_fixture  # noqa: E402
import model as mirror  # noqa: E402  the model crate's PyTorch mirror

OUT = os.path.join(os.path.dirname(__file__), "..", "..", "train", "tests", "golden")
BOS, EOS, PAD = mirror.BOS, mirror.EOS, mirror.PAD


def clip_loss(image_embeds, text_embeds, logit_scale):
    logits = logit_scale.exp() * image_embeds @ text_embeds.T  # (B, B)
    labels = torch.arange(logits.shape[0], device=logits.device)
    return 0.5 * (F.cross_entropy(logits, labels) + F.cross_entropy(logits.T, labels))


def caption_loss(logits, tokens):
    targets = tokens[:, 1:]  # padding targets are PAD, ignored
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1),
                           ignore_index=PAD)


def contrastive_fixture(gen):
    image = f32_input(5, 4, generator=gen).requires_grad_()
    text = f32_input(5, 4, generator=gen).requires_grad_()
    logit_scale = (f32_input(1, generator=gen)[0] * 0.5 + 2.0).detach().requires_grad_()
    loss = clip_loss(image, text, logit_scale)
    loss.backward()
    write_fixture(os.path.join(OUT, "contrastive.txt"), {
        "image_embeds": image, "text_embeds": text, "logit_scale": logit_scale, "loss": loss,
        "grad.image_embeds": image.grad, "grad.text_embeds": text.grad,
        "grad.logit_scale": logit_scale.grad,
    }, "tools/golden/train.py: CLIP's symmetric contrastive loss, float64")


def caption_fixture(gen):
    tokens = torch.tensor([[BOS, 1, 2, 3, EOS, PAD], [BOS, 4, EOS, PAD, PAD, PAD],
                           [BOS, 5, 6, 7, 8, EOS]])
    lengths = torch.tensor([5, 3, 6])
    logits = (f32_input(3, 5, mirror.VOCAB, generator=gen) * 2.0).detach().requires_grad_()
    loss = caption_loss(logits, tokens)
    loss.backward()
    write_fixture(os.path.join(OUT, "caption.txt"), {
        "tokens": tokens, "lengths": lengths, "logits": logits, "loss": loss,
        "grad.logits": logits.grad,
    }, "tools/golden/train.py: F.cross_entropy(logits, tokens[:, 1:], ignore_index=PAD), float64")


def no_decay(name):
    """train::no_decay: biases, norms, embeddings, the CLS token and the logit scale."""
    parts = name.split(".")
    leaf, module = parts[-1], (parts[-2] if len(parts) > 1 else "")
    return (leaf in ("bias", "logit_scale", "cls_token") or module.startswith("ln")
            or module == "norm" or module.endswith("embedding") or module == "pos_embed")


def schedule(step, warmup, total, peak, floor):
    if step < warmup:
        return peak * (step + 1) / warmup
    progress = min((step - warmup) / max(total - warmup, 1), 1.0)
    return floor + (peak - floor) * 0.5 * (1 + math.cos(math.pi * progress))


SETTINGS = {
    "warmup": 3, "total": 10, "peak_lr": 1e-2, "min_lr": 1e-3,
    "beta1": 0.9, "beta2": 0.98, "eps": 1e-6, "weight_decay": 0.1,
    "max_grad_norm": 1.0, "weight_contrastive": 1.0, "weight_caption": 2.0,
}


def steps_fixture(name, net, gen):
    net.load_state_dict(load_file(os.path.join(OUT, f"{name}.safetensors")), strict=True)
    net.double()
    s = SETTINGS
    images = f32_input(4, 3, 8, 8, generator=gen)
    tokens = torch.tensor([[BOS, 1, 2, 3, EOS, PAD], [BOS, 4, EOS, PAD, PAD, PAD],
                           [BOS, 5, 6, 7, 8, EOS], [BOS, 2, 1, EOS, PAD, PAD]])
    lengths = torch.tensor([5, 3, 6, 4])

    named = list(net.named_parameters())
    groups = [
        {"params": [p for n, p in named if not no_decay(n)], "weight_decay": s["weight_decay"]},
        {"params": [p for n, p in named if no_decay(n)], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=s["peak_lr"], betas=(s["beta1"], s["beta2"]),
                            eps=s["eps"], foreach=False)
    record = {k: [] for k in ("losses", "contrastive", "caption", "grad_norms", "lrs",
                              "logit_scales")}
    for step in range(10):
        lr = schedule(step, s["warmup"], s["total"], s["peak_lr"], s["min_lr"])
        for group in opt.param_groups:
            group["lr"] = lr
        opt.zero_grad()
        image_embeds, text_embeds, _, logits = net(images, tokens, lengths)
        contrastive = clip_loss(image_embeds, text_embeds, net.logit_scale)
        caption = caption_loss(logits, tokens)
        loss = s["weight_contrastive"] * contrastive + s["weight_caption"] * caption
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(net.parameters(), s["max_grad_norm"])
        opt.step()
        with torch.no_grad():
            net.logit_scale.clamp_(max=math.log(100))
        for key, value in zip(record, (loss, contrastive, caption, norm, lr,
                                       net.logit_scale.exp())):
            record[key].append(float(torch.as_tensor(value).detach()))
        print(f"{name} step {step}: loss {float(loss):.6f} norm {float(norm):.4f} "
              f"scale {float(net.logit_scale.exp()):.4f}")

    fixture = {"images": images, "tokens": tokens, "lengths": lengths}
    fixture.update({k: torch.tensor(float(v)) for k, v in s.items()})
    fixture.update({k: torch.tensor(v, dtype=torch.float64) for k, v in record.items()})
    for param_name, p in net.named_parameters():
        fixture["final." + param_name] = p
    write_fixture(os.path.join(OUT, f"{name}.txt"), fixture,
                  f"tools/golden/train.py: ten AdamW steps of the {name} mirror from "
                  f"{name}.safetensors, float64;\nper-step losses (before the update), "
                  "gradient norms (before clipping), learning rates, logit scales (after the clamp)")


def main():
    gen = torch.Generator().manual_seed(0)
    contrastive_fixture(gen)
    caption_fixture(gen)
    vit = mirror.Vit(image_size=8, in_channels=3, patch=4, depth=1, width=12, n_head=2, hidden=16)
    steps_fixture("steps_vit", mirror.Model(vit, 12, tied=True), gen)
    cnn = mirror.Cnn(in_channels=3, channels=[4, 6], kernel=3, pool=2)
    steps_fixture("steps_cnn", mirror.Model(cnn, 6, tied=False), gen)


if __name__ == "__main__":
    main()
