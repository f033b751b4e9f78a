"""Continue training one of our runs in PyTorch, on any number of processes
with DistributedDataParallel, and write the result back as a checkpoint
folder our `train` program reads.

    # the toy data as files (or your own folder of images and captions.tsv)
    cargo run --release -p train -- dataset export --out data/toy --count 5000
    # two processes on one machine (CPU: gloo; one per GPU: nccl)
    torchrun --nproc_per_node 2 tools/pytorch/continue_training.py \\
        --from runs/default --data data/toy --out runs/default-torch/checkpoint --steps 500
    cargo run --release -p train -- caption some.png --run runs/default-torch

A CLIP + captioner run trains on DIR/captions.tsv (`file<TAB>caption`), a
multimodal run on DIR/questions.tsv (`file<TAB>question<TAB>answer`, an
optional fourth column ignored), each question asked as `<|user|> <|image|>
question <|assistant|> answer <|end|>`. Every 10th line is validation and
left out, as in the Rust program. Each process reads its share, preprocessed
exactly as the Rust code does (tools/pytorch/checkpoint.py).

One step is the Rust training step: for CLIP + captioner the contrastive
loss plus 2 x the captioning loss, the logit scale clamped to the config's
maximum after the update; for the multimodal model the answer loss (the
answers' tokens only), with the parts named by --freeze frozen (default: the
vision tower, which then runs under torch.no_grad, as in LLaVA's
instruction tuning). Then backward, the global gradient norm clipped to 1,
AdamW (no weight decay on biases, norms, embeddings, the CLS token and the
logit scale) with a cosine decay of the learning rate. DDP averages the
gradients over the processes; each process contrasts the captions of its
own batch (open_clip gathers the embeddings of all processes first, a step
further).

The folder holds the weights, config and tokenizer, not a whole run: the
`train` program's `caption`, `classify` and `search` read it as the
checkpoint/ of a run folder (`--run runs/default-torch` above); `eval` and
`train --resume` need a run of ours (its run.json and optimiser state).
"""

import argparse
import math
import os
import shutil
import sys

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import checkpoint as ours  # noqa: E402
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
import train as losses  # noqa: E402  tools/golden/train.py: the two losses, no_decay

VALIDATION_EVERY = 10  # train::data::folder::VALIDATION_EVERY
PARTS = ("vision_tower", "projector", "language_model")  # model::Freeze
IMAGE = "<|image|>"


def training_lines(folder, name, columns):
    """The training lines of DIR/name split at tabs: (fields, line number).
    Blank lines are skipped; every VALIDATION_EVERY-th line is validation."""
    path = os.path.join(folder, name)
    items = []
    with open(path, encoding="utf-8-sig") as f:  # a BOM is skipped, as in Rust
        for n, line in enumerate(ours.rust_lines(f.read()), start=1):
            if not line.strip():
                continue
            fields = [field.strip() for field in line.split("\t")]
            if len(fields) not in columns or not all(fields[:3]):
                sys.exit(f"{path}:{n}: expected {' or '.join(map(str, columns))} "
                         "tab-separated fields, none empty")
            items.append((fields, n))
    return path, [item for i, item in enumerate(items) if (i + 1) % VALIDATION_EVERY != 0]


class Captions(torch.utils.data.Dataset):
    """The training lines of DIR/captions.tsv (`file<TAB>caption`), as
    (image [3, S, S], tokens [max_len], length)."""

    def __init__(self, folder, loaded):
        self.path, self.items = training_lines(folder, "captions.tsv", (2,))
        self.folder, self.tokenizer, self.config = folder, loaded.tokenizer, loaded.config

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        (file, caption), line = self.items[i]
        c = self.config
        bos, eos, pad = (c["special"][k] for k in ("bos", "eos", "pad"))
        ids = [bos] + self.tokenizer.encode_ordinary(caption) + [eos]
        if len(ids) > c["max_len"]:
            raise ValueError(f"{self.path}:{line}: the caption needs {len(ids)} tokens, "
                             f"the model reads {c['max_len']}")
        tokens = torch.tensor(ids + [pad] * (c["max_len"] - len(ids)))
        image = ours.load_image(os.path.join(self.folder, file), c["image"]["image_size"])
        return image, tokens, len(ids)


class Questions(torch.utils.data.Dataset):
    """The training lines of DIR/questions.tsv, as (image [3, S, S], tokens
    [T], weights [T]): `<|user|> <|image|> question <|assistant|> answer
    <|end|>`, weight 1 on the answer and its <|end|> (model::encode_chat),
    padded to the model's longest text."""

    def __init__(self, folder, loaded):
        self.path, self.items = training_lines(folder, "questions.tsv", (3, 4))
        self.folder, self.loaded = folder, loaded
        # the longest text: the image's placeholder becomes N positions
        self.length = loaded.config["lm"]["max_len"] - loaded.model.num_image_tokens() + 1

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        (file, question, answer, *_), line = self.items[i]
        tok, t = self.loaded.tokenizer, self.loaded.config["tokens"]
        try:
            q = tok.encode(f"{IMAGE} {question}", allowed=(IMAGE,))
            a = tok.encode(answer)
        except ValueError as e:
            raise ValueError(f"{self.path}:{line}: {e}") from None
        ids = [t.user] + q + [t.assistant] + a + [t.end]
        weights = [0.0] * (len(q) + 2) + [1.0] * (len(a) + 1)
        if q.count(t.image) != 1 or len(ids) > self.length:
            raise ValueError(f"{self.path}:{line}: the question must not hold <|image|> and the "
                             f"conversation must fit the model's {self.length} text tokens")
        pad = self.length - len(ids)
        image = ours.load_image(os.path.join(self.folder, file),
                                self.loaded.config["image"]["image_size"])
        return image, torch.tensor(ids + [t.pad] * pad), torch.tensor(weights + [0.0] * pad)


def save(loaded, model, out):
    """model.safetensors (our metadata), config.txt and tokenizer.txt, into a
    folder written beside `out` and renamed into place once complete."""
    from safetensors.torch import save_file
    tmp = out.rstrip("/") + ".tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    state = {name: t.detach().float().contiguous() for name, t in model.state_dict().items()}
    save_file(state, os.path.join(tmp, ours.WEIGHTS_FILE),
              metadata={"format": ours.WEIGHTS_FORMATS[loaded.format],
                        "format_version": ours.WEIGHTS_VERSION})
    for name in (ours.CONFIG_FILE, ours.TOKENIZER_FILE):
        shutil.copyfile(os.path.join(loaded.folder, name), os.path.join(tmp, name))
    if os.path.exists(out):
        shutil.rmtree(out)
    os.replace(tmp, out)


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--from", dest="run", required=True,
                        help="a run or checkpoint folder of ours to start from")
    parser.add_argument("--data", required=True,
                        help="a folder of images and captions.tsv (or questions.tsv)")
    parser.add_argument("--out", required=True, help="the checkpoint folder to write")
    parser.add_argument("--steps", type=int, default=500)
    parser.add_argument("--batch", type=int, default=64, help="images per step and process")
    parser.add_argument("--lr", type=float, default=1e-4, help="peak; cosine decay to 0")
    parser.add_argument("--freeze", default="vision_tower",
                        help=f"multimodal model: the parts not trained, comma-separated, of "
                             f"{', '.join(PARTS)} (or none)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    distributed = "RANK" in os.environ  # started by torchrun
    if distributed:
        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    rank = dist.get_rank() if distributed else 0
    device = torch.device(f"cuda:{int(os.environ.get('LOCAL_RANK', 0))}"
                          if torch.cuda.is_available() else "cpu")
    torch.manual_seed(args.seed)

    loaded = ours.load(args.run)
    if loaded.format == ours.LM_FORMAT:
        sys.exit(f"{loaded.folder}: a text-only language model; this script trains the "
                 "CLIP + captioner and the multimodal model")
    model = loaded.model.to(device).train()
    multimodal = loaded.format == ours.VLM_FORMAT
    frozen = set() if args.freeze == "none" else set(args.freeze.split(","))
    if not multimodal:
        frozen = set()
    elif not frozen <= set(PARTS) or frozen == set(PARTS):
        sys.exit(f"--freeze: name some of {', '.join(PARTS)} (not all), or none")
    parts = {"vision_tower": model.vision_tower if multimodal else None,
             "projector": model.multi_modal_projector if multimodal else None,
             "language_model": model.language_model if multimodal else None}
    for part in frozen:
        parts[part].requires_grad_(False)  # no gradient, not in the optimiser
    data = (Questions if multimodal else Captions)(args.data, loaded)
    if not multimodal:
        losses.PAD = loaded.config["special"]["pad"]  # the caption loss ignores this id
    sampler = torch.utils.data.DistributedSampler(data, seed=args.seed) if distributed else None
    batches = torch.utils.data.DataLoader(data, batch_size=args.batch, sampler=sampler,
                                          shuffle=sampler is None, drop_last=True)
    ddp = DistributedDataParallel(model) if distributed else model
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    trainable = [p for _, p in named]
    opt = torch.optim.AdamW([
        {"params": [p for n, p in named if not losses.no_decay(n)], "weight_decay": 0.1},
        {"params": [p for n, p in named if losses.no_decay(n)], "weight_decay": 0.0},
    ], lr=args.lr, betas=(0.9, 0.98), eps=1e-6)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: 0.5 * (1 + math.cos(math.pi * min(step, args.steps) / args.steps)))

    def loss_of(batch):
        if multimodal:
            images, tokens, weights = batch
            targets, target_weights = model.targets(tokens, weights)
            logits = ddp(images.to(device), tokens.to(device),
                         tower_grad="vision_tower" not in frozen)
            return ours.vlm_mirror.answer_loss(logits, targets.to(device),
                                               target_weights.to(device))
        images, tokens, lengths = (t.to(device) for t in batch)
        image_embeds, text_embeds, _, logits = ddp(images, tokens, lengths)
        return (losses.clip_loss(image_embeds, text_embeds, model.logit_scale)
                + 2.0 * losses.caption_loss(logits, tokens))

    step, epoch = 0, 0
    while step < args.steps:
        if sampler is not None:
            sampler.set_epoch(epoch)
        for batch in batches:
            loss = loss_of(batch)
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(trainable, 1.0)
            opt.step()
            schedule.step()
            if not multimodal:
                with torch.no_grad():
                    model.logit_scale.clamp_(max=loaded.config["logit_scale_max"])
            step += 1
            if rank == 0 and (step % 50 == 0 or step == args.steps):
                print(f"step {step}: loss {loss.item():.4f}", flush=True)
            if step == args.steps:
                break
        epoch += 1

    if rank == 0:
        save(loaded, model.cpu(), args.out)
        print(f"wrote {args.out}")
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
