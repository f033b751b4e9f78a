"""Our checkpoint folders in PyTorch: the config, the tokenizer, the image
preprocessing and the weights, read exactly as the Rust crates read them.

    folder/
    ├── model.safetensors   every tensor under its PyTorch-style name
    ├── config.txt          `format = model-config 1` (CLIP + captioner),
    │                       `format = vlm-config 1` (multimodal LLM) or
    │                       `format = lm-config 1` (text-only language model)
    └── tokenizer.txt       `bpe-tokenizer 1`

`load(folder)` returns a `Loaded`: the PyTorch module (the mirror of
tools/golden/model.py and tools/golden/vlm.py, loaded with
`load_state_dict(strict=True)`), the tokenizer and the config. A run folder
(runs/NAME) is accepted too: its checkpoint/ is read.

What follows the Rust code, and where:
- config.txt: model/src/checkpoint.rs and model/src/vlm_checkpoint.rs (every
  key once, unknown keys are errors, errors name the file and the line);
- tokenizer.txt and encoding: tokenizer/src/file.rs, pretokenize.rs (the
  GPT-4 split as a hand-written scanner), bpe.rs (lowest-rank merge first),
  special.rs (leftmost, then longest special token);
- images: vision/src/images.rs and train/src/data/folder.rs: decode, 8-bit
  RGB (alpha dropped), resized to the model's size with the `image` crate's
  "triangle" filter (reproduced below, float32 for float32), scaled to [0, 1]
  with no further normalisation.
"""

import os
import re
import sys
import unicodedata
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn as nn

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "golden"))
import model as clip_mirror  # noqa: E402  the CLIP + captioner mirror
import vlm as vlm_mirror  # noqa: E402  the language model and multimodal mirror

WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE = "model.safetensors", "config.txt", "tokenizer.txt"
CLIP_FORMAT, VLM_FORMAT, LM_FORMAT = "model-config 1", "vlm-config 1", "lm-config 1"
# the weights' metadata: format name of each kind, and the version this code reads
WEIGHTS_FORMATS = {CLIP_FORMAT: "model-checkpoint", VLM_FORMAT: "vlm-checkpoint",
                   LM_FORMAT: "lm-checkpoint"}
WEIGHTS_VERSION = "1"
MAX_IMAGE_SIZE = 1024  # model::checkpoint::MAX_IMAGE_SIZE
MAX_LM_LEN = 1 << 16  # model::vlm_checkpoint::MAX_LM_LEN


class CheckpointError(Exception):
    """A problem with a checkpoint file, naming the file (and the line)."""


# --- config.txt ----------------------------------------------------------------------

class Settings:
    """The `key = value` lines of a config; reading a key removes it, so the
    keys left at the end are unknown (model::checkpoint's Settings)."""

    def __init__(self, path, text, format):
        self.path, self.values = path, {}
        for n, raw in enumerate(rust_lines(text), start=1):
            content = raw.split("#")[0].strip()
            if not content:
                continue
            if "=" not in content:
                self.fail(n, f"expected `key = value`, found {content!r}")
            key, value = (part.strip() for part in content.split("=", 1))
            if not key:
                self.fail(n, "empty key")
            if not self.values and (key != "format" or value != format):
                self.fail(n, f"the first setting must be `format = {format}`, "
                             f"found `{key} = {value}`")
            if key in self.values:
                self.fail(n, f"`{key}` is set twice (first on line {self.values[key][0]})")
            self.values[key] = (n, value)
        if not self.values:
            self.fail(0, "empty config: no settings")

    def fail(self, line, message):
        where = f"{self.path}:{line}" if line else self.path
        raise CheckpointError(f"{where}: {message}")

    def take(self, key):
        if key not in self.values:
            self.fail(0, f"missing key `{key}`")
        return self.values.pop(key)

    def usize(self, key, at_most=None):
        line, value = self.take(key)
        if not re.fullmatch(r"\+?[0-9]+", value):
            self.fail(line, f"`{key}` must be a non-negative integer, found {value!r}")
        if at_most is not None and int(value) > at_most:
            self.fail(line, f"`{key}` must be at most {at_most}, found {int(value)}")
        return int(value)

    def number(self, key):
        line, value = self.take(key)
        try:
            x = float(value)
        except ValueError:
            x = float("nan")
        if not np.isfinite(x):
            self.fail(line, f"`{key}` must be a finite number, found {value!r}")
        return x

    def usize_list(self, key):
        line, value = self.take(key)
        items = [item.strip() for item in value.split(",")]
        if not all(re.fullmatch(r"\+?[0-9]+", item) for item in items):
            self.fail(line, f"`{key}` must be integers separated by commas, found {value!r}")
        return [int(item) for item in items]

    def choice(self, key, choices):
        line, value = self.take(key)
        if value not in choices:
            self.fail(line, f"`{key}` must be one of {choices}, found {value!r}")
        return value

    def finish(self):
        if self.values:
            key, (line, _) = min(self.values.items(), key=lambda kv: kv[1][0])
            self.fail(line, f"unknown key `{key}`")


def rust_lines(text):
    """str::lines: split at \\n, drop one \\r before it, no empty last line."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return [line[:-1] if line.endswith("\r") else line for line in lines]


def image_config(s):
    kind = s.choice("image.kind", ["vit", "cnn"])
    config = {"kind": kind, "image_size": s.usize("image.image_size", MAX_IMAGE_SIZE),
              "in_channels": s.usize("image.in_channels")}
    if kind == "vit":
        for key in ("patch", "depth", "width", "n_head", "mlp_hidden"):
            config[key] = s.usize(f"image.{key}")
    else:
        config["channels"] = s.usize_list("image.channels")
        config["kernel"] = s.usize("image.kernel")
        config["pool"] = s.usize("image.pool")
    return config


def lm_config(s):
    config = {key: s.usize(f"lm.{key}", MAX_LM_LEN if key == "max_len" else None)
              for key in ("vocab", "max_len", "width", "depth", "n_head", "mlp_hidden")}
    config["head"] = s.choice("lm.head", ["tied", "separate"])
    return config


def chat_tokens(s):
    return vlm_mirror.ChatTokens(*(s.usize(f"tokens.{key}") for key in
                                   ("image", "user", "assistant", "end", "pad")))


def read_config(path):
    """config.txt -> (format, config dict). The format is its first setting."""
    text = read_text(path)
    first = next((line.split("#")[0].strip() for line in rust_lines(text)
                  if line.split("#")[0].strip()), "")
    format = first.split("=", 1)[1].strip() if first.split("=", 1)[0].strip() == "format" else None
    if format not in (CLIP_FORMAT, VLM_FORMAT, LM_FORMAT):
        raise CheckpointError(
            f"{path}:1: the first setting must name a checkpoint format: `format = {CLIP_FORMAT}`, "
            f"`format = {LM_FORMAT}` or `format = {VLM_FORMAT}`")
    s = Settings(path, text, format)
    s.take("format")
    if format == CLIP_FORMAT:
        config = {"vocab": s.usize("vocab"), "max_len": s.usize("max_len"),
                  "special": {k: s.usize(f"special.{k}") for k in ("bos", "eos", "pad")},
                  "text": {k: s.usize(f"text.{k}") for k in ("width", "depth", "n_head",
                                                              "mlp_hidden")},
                  "image": image_config(s),
                  "decoder": {k: s.usize(f"decoder.{k}") for k in ("width", "depth", "n_head",
                                                                    "mlp_hidden")}}
        config["decoder"]["head"] = s.choice("decoder.head", ["tied", "separate"])
        config["embed_dim"] = s.usize("embed_dim")
        config["logit_scale_init"] = s.number("logit_scale_init")
        config["logit_scale_max"] = s.number("logit_scale_max")
    elif format == VLM_FORMAT:
        config = {"image": image_config(s),
                  "projector": {"kind": s.choice("projector.kind", ["linear", "mlp"]),
                                "pool": s.choice("projector.pool",
                                                 ["none", "average2", "pixel_shuffle2"]),
                                "keep_cls": s.choice("projector.keep_cls",
                                                     ["false", "true"]) == "true"},
                  "lm": lm_config(s),
                  "mask": s.choice("mask", ["causal", "prefix_lm"])}
        config["tokens"] = chat_tokens(s)
    else:
        config = {"lm": lm_config(s)}
        config["tokens"] = chat_tokens(s)
    s.finish()
    return format, config


def read_text(path):
    if not os.path.isfile(path):
        raise CheckpointError(f"{path}: missing from the checkpoint")
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise CheckpointError(f"{path}: not UTF-8 text ({e})") from None


# --- tokenizer.txt and encoding ------------------------------------------------------

class Tokenizer:
    """Byte-level BPE: IDs 0..256 are bytes, 256.. merges in rank order, then
    the special tokens (tokenizer::Tokenizer)."""

    def __init__(self, merges, split, specials):
        self.split = split  # "gpt4" or "none"
        self.vocab = [bytes([b]) for b in range(256)]  # id -> bytes
        self.ranks = {}  # (left, right) -> merged id; a lower id was learned earlier
        for left, right in merges:
            self.ranks[(left, right)] = len(self.vocab)
            self.vocab.append(self.vocab[left] + self.vocab[right])
        self.specials = list(specials)
        self.special_ids = {t: len(self.vocab) + i for i, t in enumerate(self.specials)}
        # leftmost, then longest: alternatives longest first
        by_length = sorted(self.specials, key=len, reverse=True)
        self.special_pattern = re.compile("|".join(map(re.escape, by_length))) if by_length else None

    @staticmethod
    def from_file(path):
        """Parses the version-1 text format; errors name the file and the line."""
        lines = rust_lines(read_text(path))
        at = 0

        def fail(line, message):
            raise CheckpointError(f"{path}: line {line}: {message}")

        def expect(what):
            nonlocal at
            if at >= len(lines):
                fail(at + 1, f"file is truncated: expected {what}")
            at += 1
            return at, lines[at - 1]

        def header(keyword):
            n, line = expect(f'"{keyword} ..."')
            key, _, value = line.partition(" ")
            if key != keyword or not _:
                fail(n, f'expected "{keyword} ...", found {line!r}')
            return n, value

        def count(n, value):
            if not value.isdigit():
                fail(n, f"expected a count, found {value!r}")
            return int(value)

        n, version = header("bpe-tokenizer")
        if version != "1":
            fail(n, f"unsupported version {version!r}, this reader knows 1")
        n, split = header("split")
        if split not in ("gpt4", "none"):
            fail(n, f"unknown split {split!r}")
        n, value = header("merges")
        merges, seen = [], set()
        for i in range(count(n, value)):
            n, line = expect(f"merge {i}")
            ids = line.split(" ")
            if len(ids) != 2 or not all(x.isdigit() for x in ids):
                fail(n, f"expected two token ids, found {line!r}")
            pair = (int(ids[0]), int(ids[1]))
            if max(pair) >= 256 + i:
                fail(n, f"merge {i} {pair} uses a token that does not exist yet")
            if pair in seen:
                fail(n, f"merge {i} {pair} repeats an earlier merge")
            seen.add(pair)
            merges.append(pair)
        n, value = header("specials")
        specials = []
        for i in range(count(n, value)):
            n, token = expect(f"special token {i}")
            if not token or any(is_rust_whitespace(c) or unicodedata.category(c) == "Cc"
                                for c in token):
                fail(n, f"invalid special token {token!r}")
            if token in specials:
                fail(n, f"special token {token!r} is already registered")
            specials.append(token)
        if at < len(lines):
            fail(at + 1, f"unexpected line after the last special token: {lines[at]!r}")
        return Tokenizer(merges, split, specials)

    def vocab_size(self):
        return len(self.vocab) + len(self.specials)

    def special_id(self, token):
        return self.special_ids.get(token)

    def encode_piece(self, piece):
        """Merge the adjacent pair learned earliest (the leftmost on ties) until none is left."""
        ids = list(piece)
        while len(ids) >= 2:
            ranks = [self.ranks.get(pair) for pair in zip(ids, ids[1:])]
            known = [(r, i) for i, r in enumerate(ranks) if r is not None]
            if not known:
                break
            rank, i = min(known)
            ids[i:i + 2] = [rank]
        return ids

    def encode_ordinary(self, text):
        """Special-token text is encoded as ordinary text."""
        out = []
        pieces = [text] if self.split == "none" else gpt4_pieces(text)
        for piece in pieces:
            out.extend(self.encode_piece(piece.encode("utf-8")))
        return out

    def encode(self, text, allowed=()):
        """Special tokens in `allowed` become their IDs; any other registered
        special token in the text is an error."""
        out, pos = [], 0
        if self.special_pattern is not None:
            for m in self.special_pattern.finditer(text):
                if m.group() not in allowed:
                    raise ValueError(f"the text holds the special token {m.group()} "
                                     f"at byte {len(text[:m.start()].encode())}, "
                                     "which is not allowed here")
                out.extend(self.encode_ordinary(text[pos:m.start()]))
                out.append(self.special_ids[m.group()])
                pos = m.end()
        out.extend(self.encode_ordinary(text[pos:]))
        return out

    def decode_bytes(self, ids):
        n = len(self.vocab)
        return b"".join(self.vocab[i] if i < n else self.specials[i - n].encode() for i in ids)

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


# The GPT-4 split (tokenizer/src/pretokenize.rs): rules tried in order at each
# position. "Letter" is Unicode Alphabetic and not numeric; Python has no
# Alphabetic property, so letters here are the categories L* (the same for
# Latin, Greek, Cyrillic, CJK, Hangul; combining vowel signs such as Devanagari
# ि differ). "Digit" is a numeric category, "whitespace" Unicode White_Space,
# both exactly as in Rust.

WHITE_SPACE = set("\t\n\x0b\x0c\r \x85\xa0\u1680\u2028\u2029\u202f\u205f\u3000") | {
    chr(c) for c in range(0x2000, 0x200B)}
LETTER, DIGIT, NEWLINE, SPACE, OTHER = range(5)


def is_rust_whitespace(c):
    return c in WHITE_SPACE


def char_class(c):
    if c in "\r\n":
        return NEWLINE
    if c.isascii():
        if c.isalpha():
            return LETTER
        if c.isdigit():
            return DIGIT
        return SPACE if c in " \t\x0b\x0c" else OTHER
    if unicodedata.category(c) in ("Nd", "Nl", "No"):
        return DIGIT
    if c.isalpha():
        return LETTER
    return SPACE if c in WHITE_SPACE else OTHER


def contraction_len(rest):
    low = rest[:2].lower() if rest[:2].isascii() else rest[:1].lower() if rest[:1].isascii() else ""
    if low[:1] in ("s", "d", "m", "t"):
        return 1
    if low in ("ll", "ve", "re"):
        return 2
    return None


def gpt4_pieces(text):
    pieces, start, n = [], 0, len(text)
    cls = [char_class(c) for c in text]

    def run_end(i, keep):
        while i < n and cls[i] in keep:
            i += 1
        return i

    while start < n:
        c0 = cls[start]
        c1 = cls[start + 1] if start + 1 < n else None
        end = None
        if text[start] == "'" and contraction_len(text[start + 1:start + 3]):  # 1. contractions
            end = start + 1 + contraction_len(text[start + 1:start + 3])
        elif c0 == LETTER:  # 2. letters, with at most one leading other character
            end = run_end(start + 1, (LETTER,))
        elif c0 in (SPACE, OTHER) and c1 == LETTER:
            end = run_end(start + 1, (LETTER,))
        elif c0 == DIGIT:  # 3. one to three digits
            end = start + 1
            while end < min(start + 3, n) and cls[end] == DIGIT:
                end += 1
        elif (text[start] == " " and c1 == OTHER) or c0 == OTHER:  # 4. punctuation
            end = run_end(start + 1 if c0 != OTHER else start, (OTHER,))
            end = run_end(end, (NEWLINE,))
        else:  # whitespace: 5. up to its last newline; 6. all but its last; 7. one
            end, last_newline, last_char = start, None, start
            while end < n and cls[end] in (NEWLINE, SPACE):
                if cls[end] == NEWLINE:
                    last_newline = end + 1
                last_char = end
                end += 1
            if last_newline is not None:
                end = last_newline
            elif not (end == n or last_char == start):
                end = last_char
        pieces.append(text[start:end])
        start = end
    return pieces


# --- images --------------------------------------------------------------------------

def triangle_weights(in_size, out_size):
    """For each output pixel: the first input pixel it reads and the weights,
    as image::imageops::resize computes them with FilterType::Triangle, in float32."""
    f32 = np.float32
    ratio = f32(in_size) / f32(out_size)
    sratio = ratio if ratio >= f32(1.0) else f32(1.0)
    support = f32(1.0) * sratio
    rows = []
    for out in range(out_size):
        center = (f32(out) + f32(0.5)) * ratio
        left = min(max(int(np.floor(center - support)), 0), in_size - 1)
        right = min(max(int(np.ceil(center + support)), left + 1), in_size)
        center = center - f32(0.5)
        ws = []
        total = f32(0.0)
        for i in range(left, right):
            x = abs((f32(i) - center) / sratio)
            w = f32(1.0) - x if x < f32(1.0) else f32(0.0)
            ws.append(w)
            total = total + w
        rows.append((left, [w / total for w in ws]))
    return rows


def resize_triangle(pixels, width, height):
    """uint8 [H, W, 3] -> uint8 [height, width, 3]: the rows first (float32, not
    rounded), then the columns, rounded half away from zero and clamped to 0..=255."""
    if pixels.shape[:2] == (height, width):
        return pixels
    src = pixels.astype(np.float32)
    tmp = np.zeros((height, src.shape[1], 3), np.float32)
    for y, (top, ws) in enumerate(triangle_weights(src.shape[0], height)):
        t = np.zeros((src.shape[1], 3), np.float32)
        for i, w in enumerate(ws):
            t = t + src[top + i] * w  # one rounding per product and per sum, as in Rust
        tmp[y] = t
    out = np.zeros((height, width, 3), np.float32)
    for x, (left, ws) in enumerate(triangle_weights(tmp.shape[1], width)):
        t = np.zeros((height, 3), np.float32)
        for i, w in enumerate(ws):
            t = t + tmp[:, left + i] * w
        out[:, x] = t
    out = np.clip(out, 0.0, 255.0)
    rounded = np.floor(out)
    rounded += (out - rounded) >= 0.5  # f32::round: half away from zero
    return rounded.astype(np.uint8)


MAX_FILE_BYTES, MAX_SIDE = 64 << 20, 16_384  # vision::MAX_FILE_BYTES, vision::MAX_SIDE


def load_image(path, size):
    """An image file as the model's input [3, size, size], float32 in [0, 1]:
    8-bit RGB (grey replicated, alpha dropped), resized, divided by 255.
    Files over 64 MiB and pictures over 16384 pixels a side are refused
    before decoding, as in Rust."""
    from PIL import Image
    try:
        if os.path.getsize(path) > MAX_FILE_BYTES:
            raise CheckpointError(f"{path}: the file holds {os.path.getsize(path)} bytes; "
                                  f"at most {MAX_FILE_BYTES >> 20} MiB are read")
        with Image.open(path) as image:
            if image.format not in ("PNG", "JPEG"):
                raise CheckpointError(f"{path}: unsupported image format {image.format}")
            if max(image.size) > MAX_SIDE:
                raise CheckpointError(f"{path}: the image is {image.size[0]}x{image.size[1]}; "
                                      f"at most {MAX_SIDE} pixels a side are decoded")
            rgb = np.asarray(image.convert("RGB"))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: {e}") from None
    pixels = resize_triangle(rgb, size, size)
    x = torch.from_numpy(pixels.astype(np.float32) / np.float32(255.0))  # [size, size, 3]
    return x.permute(2, 0, 1).contiguous()


# --- the modules ---------------------------------------------------------------------

def image_tower(config):
    if config["kind"] == "vit":
        return clip_mirror.Vit(config["image_size"], config["in_channels"], config["patch"],
                               config["depth"], config["width"], config["n_head"],
                               config["mlp_hidden"])
    return clip_mirror.Cnn(config["in_channels"], config["channels"], config["kernel"],
                           config["pool"])


def image_grid(config):
    """(cls, side, width) of the tower's tokens (model::ImageConfig::grid)."""
    if config["kind"] == "vit":
        side = config["image_size"] // config["patch"]
        return True, side, config["width"]
    side = config["image_size"]
    for _ in config["channels"]:
        side //= config["pool"]
    return False, side, config["channels"][-1]


class Clip(nn.Module):
    """The CLIP-style dual encoder and its caption decoder (model::Model)."""

    def __init__(self, config):
        super().__init__()
        image_width = image_grid(config["image"])[2]
        t, d = config["text"], config["decoder"]
        vocab, max_len = config["vocab"], config["max_len"]
        self.image = image_tower(config["image"])
        self.text = clip_mirror.TextEncoder(t["width"], t["depth"], t["n_head"], t["mlp_hidden"],
                                            vocab=vocab, max_len=max_len)
        self.image_projection = nn.Linear(image_width, config["embed_dim"], bias=False)
        self.text_projection = nn.Linear(t["width"], config["embed_dim"], bias=False)
        self.logit_scale = nn.Parameter(torch.tensor(float(config["logit_scale_init"])))
        self.decoder = clip_mirror.Decoder(d["width"], d["depth"], d["n_head"], d["mlp_hidden"],
                                           image_width, d["head"] == "tied", vocab=vocab,
                                           max_len=max_len)

    forward = clip_mirror.Model.forward


class TextOnly(nn.Module):
    """A text-only language model under its checkpoint names (language_model.*)."""

    def __init__(self, lm):
        super().__init__()
        self.language_model = lm


def language_model(c):
    return vlm_mirror.LanguageModel(c["vocab"], c["max_len"], c["width"], c["depth"],
                                    c["n_head"], c["mlp_hidden"], c["head"] == "tied")


def build(format, config):
    """An untrained module of the config's shape, with the checkpoint's names."""
    if format == CLIP_FORMAT:
        return Clip(config)
    if format == LM_FORMAT:
        return TextOnly(language_model(config["lm"]))
    cls, side, width = image_grid(config["image"])
    p = config["projector"]
    mask = "prefix" if config["mask"] == "prefix_lm" else "causal"
    return vlm_mirror.Vlm(image_tower(config["image"]), cls, side, width, p["kind"], p["pool"],
                          p["keep_cls"], language_model(config["lm"]), mask, config["tokens"])


@dataclass
class Loaded:
    format: str  # CLIP_FORMAT, VLM_FORMAT or LM_FORMAT
    config: dict
    model: nn.Module
    tokenizer: Tokenizer
    folder: str


def checkpoint_folder(path):
    """A checkpoint folder, or a run folder's complete checkpoint (checkpoint/,
    or after a crash in the middle of a save checkpoint.new/ or checkpoint.old/,
    as train::run::checkpoint_dir reads it); for a multimodal run, that of its
    last stage, 4-instruct/."""
    if os.path.isfile(os.path.join(path, CONFIG_FILE)):
        return path
    # a multimodal run (train vlm): its last stage's checkpoint is the model
    stage = os.path.join(path, "4-instruct")
    run = stage if os.path.isdir(stage) else path
    for name in ("checkpoint", "checkpoint.new", "checkpoint.old"):
        if os.path.isdir(os.path.join(run, name)):
            return os.path.join(run, name)
    raise CheckpointError(f"{path}: neither a checkpoint folder (config.txt, model.safetensors, "
                          "tokenizer.txt) nor a run folder holding checkpoint/ (or "
                          "4-instruct/checkpoint/ for a multimodal run)")


def load(path):
    """Reads a checkpoint (or run) folder into its PyTorch module, float32, in eval mode."""
    from safetensors import safe_open
    from safetensors.torch import load_file
    folder = checkpoint_folder(path)
    weights, config_path, tok_path = (os.path.join(folder, f) for f in
                                      (WEIGHTS_FILE, CONFIG_FILE, TOKENIZER_FILE))
    for f in (weights, config_path, tok_path):
        if not os.path.isfile(f):
            raise CheckpointError(f"{f}: missing from the checkpoint")
    format, config = read_config(config_path)
    tokenizer = Tokenizer.from_file(tok_path)
    vocab = config["vocab"] if format == CLIP_FORMAT else config["lm"]["vocab"]
    if tokenizer.vocab_size() != vocab:
        raise CheckpointError(f"{tok_path}: the tokenizer has {tokenizer.vocab_size()} tokens "
                              f"but the config says vocab = {vocab}")
    check_special_tokens(tok_path, tokenizer, format, config)
    check_shape(config_path, format, config)
    with torch.device("meta"):  # shapes only: nothing is allocated before they are checked
        model = build(format, config)
    try:
        with safe_open(weights, framework="pt") as f:
            metadata = f.metadata() or {}
            found = {name: tuple(f.get_slice(name).get_shape()) for name in f.keys()}
    except Exception as e:  # safetensors raises its own error types
        raise CheckpointError(f"{weights}: {e}") from None
    if metadata.get("format_version") != WEIGHTS_VERSION:
        raise CheckpointError(f"{weights}: checkpoint format version "
                              f"{metadata.get('format_version')!r} is not supported "
                              f"(expected {WEIGHTS_VERSION!r})")
    wanted = {name: tuple(t.shape) for name, t in model.state_dict().items()}
    problems = ([f"missing {n} {list(s)}" for n, s in wanted.items() if n not in found]
                + [f"unexpected {n}" for n in found if n not in wanted]
                + [f"{n} is {list(found[n])}, the config's model has {list(s)}"
                   for n, s in wanted.items() if n in found and found[n] != s])
    if problems:
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise CheckpointError(f"{weights}: the tensors are not those of {config_path}'s model: "
                              + "; ".join(problems[:5]) + more)
    model = model.to_empty(device="cpu")  # the file holds exactly these tensors: allocate
    model.load_state_dict(load_file(weights), strict=True)  # every name and shape must agree
    for name, p in model.named_parameters():
        if not torch.isfinite(p).all():
            raise CheckpointError(f"{weights}: tensor {name} holds a NaN or an infinity")
    return Loaded(format, config, model.float().eval(), tokenizer, folder)


def check_shape(path, format, config):
    """The checks of the Rust configs' `validate` that PyTorch would otherwise
    meet as an obscure error deep in a forward pass."""
    def fail(message):
        raise CheckpointError(f"{path}: invalid config: {message}")

    blocks = {"lm": config.get("lm")} if format != CLIP_FORMAT else {
        "text": config["text"], "decoder": config["decoder"]}
    image = config.get("image")
    if image is not None and image["kind"] == "vit":
        blocks["image"] = image
        if image["patch"] == 0 or image["image_size"] % image["patch"]:
            fail(f"image.image_size = {image['image_size']} is not a multiple of "
                 f"image.patch = {image['patch']}")
    for name, c in blocks.items():
        if min(c["width"], c["n_head"], c["depth"], c.get("mlp_hidden", 1)) == 0:
            fail(f"{name}: width, n_head, depth and mlp_hidden must be positive")
        if c["width"] % c["n_head"]:
            fail(f"{name}.width = {c['width']} is not divisible by {name}.n_head = {c['n_head']}")
    if image is not None and image["kind"] == "cnn" and (
            not image["channels"] or min(image["channels"] + [image["kernel"], image["pool"]]) == 0):
        fail("image.channels, image.kernel and image.pool must be positive")
    if format == VLM_FORMAT:
        cls, side, _ = image_grid(image)
        p = config["projector"]
        if p["pool"] != "none" and side % 2:
            fail(f"projector.pool pools 2x2 blocks, but the image grid is {side}x{side}")
        if p["keep_cls"] and (not cls or p["pool"] == "pixel_shuffle2"):
            fail("projector.keep_cls = true needs a ViT tower and no pixel shuffle")


def check_special_tokens(path, tokenizer, format, config):
    if format == CLIP_FORMAT:
        wanted = {"<|bos|>": config["special"]["bos"], "<|eos|>": config["special"]["eos"],
                  "<|pad|>": config["special"]["pad"]}
    else:
        t = config["tokens"]
        wanted = {"<|image|>": t.image, "<|user|>": t.user, "<|assistant|>": t.assistant,
                  "<|end|>": t.end, "<|pad|>": t.pad}
    for token, id in wanted.items():
        found = tokenizer.special_id(token)
        if found != id:
            raise CheckpointError(f"{path}: special token {token} has id {found} in the tokenizer "
                                  f"but {id} in the config")
