"""Our trained models in PyTorch: any checkpoint folder of ours loaded into
PyTorch modules, printing what the `train` program prints for the same
image.

    python tools/pytorch/use_checkpoint.py caption IMAGE... --run runs/default
    python tools/pytorch/use_checkpoint.py classify IMAGE --labels "red circle,blue square" --run runs/default
    python tools/pytorch/use_checkpoint.py ask IMAGE --question "what colour is the circle?" --run runs/vlm

`caption` and `classify` read a CLIP + captioner run and print what
`cargo run --release -p train -- caption|classify` prints: the greedy
caption with its log-probability, and the zero-shot ranking of the labels
(each written into the prompt templates "a {}", "a photo of a {}", "an
image of a {}", the prompts' embeddings averaged per label). `ask` reads a
multimodal run and answers each --question in turn (one conversation about
the image, greedy), one answer a line, as `train chat` prints a scripted
conversation and `train ask` one answer; for a text-only language model it
answers without an image. --run takes a run folder or a checkpoint folder.

Everything runs in float32, as the Rust code does, so the tokens and the
printed probabilities agree; the last digit of a log-probability may differ
where the two sum in another order.
"""

import argparse
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import checkpoint as ours  # noqa: E402

PROMPT_TEMPLATES = ["a {}", "a photo of a {}", "an image of a {}"]  # model::PROMPT_TEMPLATES
IMAGE, USER, ASSISTANT, END = "<|image|>", "<|user|>", "<|assistant|>", "<|end|>"


# --- decoding ----------------------------------------------------------------------

def greedy(step, bos, eos, max_new_tokens):
    """model::greedy: feed bos, then always the most likely token (the first on
    ties) until eos or max_new_tokens tokens. Returns (ids without eos,
    finished, sum of log p in float32)."""
    ids, log_prob, finished, token = [], np.float32(0.0), False, bos
    while len(ids) < max_new_tokens:
        logp = F.log_softmax(step(token).float(), dim=-1)
        token = int(torch.argmax(logp))
        log_prob = log_prob + np.float32(logp[token].item())
        if token == eos:
            finished = True
            break
        ids.append(token)
    return ids, finished, float(log_prob)


@torch.no_grad()
def caption(loaded, image):
    """The greedy caption of one image [3, S, S], with the decoder reading the
    whole prefix at every step (the reference the KV cache is tested against)."""
    model, config = loaded.model, loaded.config
    image_tokens, _ = model.image(image.unsqueeze(0))  # (1, N_img, C_img)
    prefix = []

    def step(token):
        prefix.append(token)
        logits = model.decoder(image_tokens, torch.tensor([prefix]))  # (1, T, V)
        return logits[0, -1]

    special = config["special"]
    return greedy(step, special["bos"], special["eos"], config["max_len"] - 1)


@torch.no_grad()
def zero_shot(loaded, image, labels):
    """model::ZeroShotClassifier: probabilities of the labels, and how many
    prompts were cut to fit max_len."""
    model, config, tok = loaded.model, loaded.config, loaded.tokenizer
    prompts = [t.replace("{}", label, 1) for label in labels for t in PROMPT_TEMPLATES]
    bos, eos, pad = (config["special"][k] for k in ("bos", "eos", "pad"))
    rows = [[bos] + tok.encode_ordinary(p)[:config["max_len"] - 2] + [eos] for p in prompts]
    cut = sum(len(tok.encode_ordinary(p)) + 2 > config["max_len"] for p in prompts)
    width = max(map(len, rows))
    tokens = torch.tensor([row + [pad] * (width - len(row)) for row in rows])
    lengths = torch.tensor([len(row) for row in rows])
    text = F.normalize(model.text_projection(model.text(tokens, lengths)), dim=-1, eps=1e-12)
    classes = text.view(len(labels), len(PROMPT_TEMPLATES), -1).mean(dim=1)
    classes = classes / classes.norm(dim=-1, keepdim=True).clamp_min(torch.finfo().tiny)
    _, pooled = model.image(image.unsqueeze(0))
    images = F.normalize(model.image_projection(pooled), dim=-1, eps=1e-12)  # (1, E)
    logits = model.logit_scale.exp() * images @ classes.T  # (1, K)
    return torch.softmax(logits, dim=-1)[0].tolist(), cut


class ContextFull(Exception):
    pass


@torch.no_grad()
def converse(loaded, image, questions, max_answer=None):
    """model::Chat::ask, question after question about one image (or with none,
    for a text-only model): the first question gets `<|image|> ` in front
    unless it holds the placeholder; every step reruns the model on the whole
    conversation. Yields (question, ids, finished, log p)."""
    model, config, tok = loaded.model, loaded.config, loaded.tokenizer
    t = config["tokens"]
    multimodal = loaded.format == ours.VLM_FORMAT
    extra = model.num_image_tokens() - 1 if multimodal else 0  # <|image|> becomes N positions
    max_len = config["lm"]["max_len"]
    text = []  # the conversation so far, <|image|> as one token
    for turn, asked in enumerate(questions):
        question = asked
        if multimodal and turn == 0 and IMAGE not in question:
            question = f"{IMAGE} {question}"
        allowed = (IMAGE,) if multimodal and turn == 0 else ()
        new = [t.user] + tok.encode(question, allowed)
        if multimodal and turn == 0 and new.count(t.image) != 1:
            raise ValueError("<|image|> may stand only once")
        needed = len(text) + (extra if multimodal else 0) + len(new) + 3
        if needed > max_len:
            raise ContextFull(f"the conversation needs {needed} positions, the model reads at "
                              f"most {max_len}: start over")
        text += new
        used = len(text) + extra
        fed = []

        def step(token):
            fed.append(token)
            tokens = torch.tensor([text + fed])
            if multimodal:
                logits = model(image.unsqueeze(0), tokens)[0, -1]
                logits[t.image] = float("-inf")  # the model may not place a second picture
            else:
                logits = model.language_model(tokens)[0, -1]
                logits[t.image] = float("-inf")
            return logits

        max_new = max_len - used if max_answer is None else min(max_len - used, max_answer)
        ids, finished, log_prob = greedy(step, t.assistant, t.end, max_new)
        text += ([t.assistant] + ids + [t.end])[:max_len - used]  # what fits stays in the context
        yield asked, ids, finished, log_prob


# --- the commands ------------------------------------------------------------------

def parse_labels(text):
    labels = [label.strip() for label in text.split(",")]
    for i, label in enumerate(labels):
        if not label:
            sys.exit(f"bad value for --labels: label {i + 1} is empty in {text!r}")
        if label in labels[:i]:
            sys.exit(f"bad value for --labels: {label!r} is given twice")
    if len(labels) < 2:
        sys.exit("bad value for --labels: give at least two labels, separated by commas")
    return labels


def image_size(loaded):
    return loaded.config["image"]["image_size"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("caption", help="greedy captions of image files (a CLIP + captioner run)")
    p.add_argument("images", nargs="+")
    p.add_argument("--run", default="runs/default")
    p = sub.add_parser("classify", help="zero-shot classification among labels")
    p.add_argument("image")
    p.add_argument("--labels", required=True)
    p.add_argument("--run", default="runs/default")
    p = sub.add_parser("ask", help="answers about an image (a multimodal or text-only run)")
    p.add_argument("image", nargs="?")
    p.add_argument("--question", action="append", required=True,
                   help="a question; repeat it for a conversation")
    p.add_argument("--max-answer", type=int, help="the most tokens an answer may have")
    p.add_argument("--run", required=True)
    args = parser.parse_args()

    try:
        loaded = ours.load(args.run)
        if args.command in ("caption", "classify") and loaded.format != ours.CLIP_FORMAT:
            sys.exit(f"{loaded.folder}: `{args.command}` needs a CLIP + captioner checkpoint, "
                     f"this one is {loaded.format}")
        if args.command == "caption":
            images = [ours.load_image(path, image_size(loaded)) for path in args.images]
            for path, image in zip(args.images, images):  # every image read before any caption
                ids, finished, log_prob = caption(loaded, image)
                text = loaded.tokenizer.decode(ids)
                text = "(empty caption)" if not text.strip() else text
                end = "" if finished else " (cut at max_len)"
                print(f"{path}: {text}{end}  [log p = {log_prob:.2f}]")
        elif args.command == "classify":
            labels = parse_labels(args.labels)
            image = ours.load_image(args.image, image_size(loaded))
            probs, cut = zero_shot(loaded, image, labels)
            ranked = sorted(zip(labels, probs), key=lambda lp: -lp[1])  # stable, as sort_by
            print("rank  probability  label")
            for i, (label, p) in enumerate(ranked):
                print(f"{i + 1:>4}  {100 * p:>10.1f} %  {label}")
            if cut:
                print(f"note: {cut} text(s) needed more than the model's {loaded.config['max_len']} "
                      "tokens and were cut to fit")
        else:
            if loaded.format == ours.CLIP_FORMAT:
                sys.exit(f"{loaded.folder}: `ask` needs a multimodal or language model checkpoint")
            image = None
            if loaded.format == ours.VLM_FORMAT:
                if args.image is None:
                    sys.exit("ask: give the image the questions are about")
                image = ours.load_image(args.image, image_size(loaded))
            for question, ids, finished, log_prob in converse(loaded, image, args.question,
                                                             args.max_answer):
                # one answer a line, as `train ask` and a scripted `train chat` print it
                text = loaded.tokenizer.decode(ids).strip() or "(no answer)"
                end = "" if finished else " (cut at the length limit)"
                print(f"{text}{end}")
    except (ours.CheckpointError, ContextFull, ValueError) as e:
        sys.exit(str(e))


if __name__ == "__main__":
    main()
