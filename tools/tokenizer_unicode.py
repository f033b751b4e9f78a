#!/usr/bin/env python3
"""Write tokenizer/src/unicode_table.rs: the character classes of the GPT-4
pre-tokeniser, for every code point, from one stated version of the Unicode
Character Database.

    python3 tools/tokenizer_unicode.py [--out tokenizer/src/unicode_table.rs]

The cl100k pattern distinguishes four kinds of characters: letters
(`\\p{L}`: general categories Lu Ll Lt Lm Lo), numbers (`\\p{N}`: Nd Nl No),
whitespace (`\\s`: the White_Space property) and everything else. The general
categories come from the `unicodedata2` package (pip install
unicodedata2==16.0.0), which carries the Unicode Character Database of its
version number; this script insists on UNICODE_VERSION below, so the table
and the version it claims cannot drift apart. White_Space is not in
`unicodedata`; its 25 code points (PropList.txt, unchanged since Unicode
6.3) are listed here.

Which version? The one GPT-4's tokenizer uses, so that a vocabulary
exported to tiktoken cuts every text as we do. tiktoken 0.14 runs the
pattern with Rust's `regex` crate, whose tables are Unicode 16.0: the
letters and numbers added in 17.0 and 18.0 (17,480 of them) are
punctuation to it. If tiktoken is installed, the table is checked against
it before anything is written, on every code point: for each one, three
test strings (`a?a`, `1?1`, `!?!`) tell which class tiktoken's regex gives
it, read off from whether the string stays one piece (a vocabulary holding
exactly those strings as tokens makes a whole piece one token).

The table is two-level, like the tables of Rust's standard library: the
code point's top bits pick a block of 128 code points (most blocks are
shared: all-letters, all-other, ...), and the block holds 2 bits per code
point. No class other than "other" occurs at or above MAX_CODE_POINT, so the
index stops there.

Run by hand (it needs `rustfmt`); the output is committed, and CI needs no
Python.
"""

import argparse
import os
import subprocess
import sys

UNICODE_VERSION = "16.0.0"

# PropList.txt, White_Space=yes
WHITE_SPACE = [
    0x0009, 0x000A, 0x000B, 0x000C, 0x000D, 0x0020, 0x0085, 0x00A0, 0x1680,
    *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F, 0x3000,
]

# class numbers: the order of `UnicodeClass` in the generated file
LETTER, NUMBER, SPACE, OTHER = 0, 1, 2, 3
NAMES = ["Letter", "Number", "Space", "Other"]
BLOCK_SHIFT = 7  # 128 code points per block
BLOCK = 1 << BLOCK_SHIFT


def classes():
    try:
        import unicodedata2 as ucd
    except ImportError:
        sys.exit("needs the unicodedata2 package: pip install unicodedata2")
    if ucd.unidata_version != UNICODE_VERSION:
        sys.exit(
            f"unicodedata2 carries Unicode {ucd.unidata_version}, this script makes "
            f"tables for {UNICODE_VERSION}: install unicodedata2=={UNICODE_VERSION} "
            "or change UNICODE_VERSION (and say so in the chapter)"
        )
    white = set(WHITE_SPACE)
    out = []
    for cp in range(0x110000):
        if cp in white:
            out.append(SPACE)
        elif 0xD800 <= cp < 0xE000:
            out.append(OTHER)  # surrogates never occur in a Rust `str`
        else:
            major = ucd.category(chr(cp))[0]
            out.append(LETTER if major == "L" else NUMBER if major == "N" else OTHER)
    return out


def tiktoken_classes(code_points):
    """The class tiktoken's regex gives each code point (see the docstring)."""
    import tiktoken

    pat = (
        r"""'(?i:[sdmt]|ll|ve|re)|[^\r\n\p{L}\p{N}]?+\p{L}++|\p{N}{1,3}+|"""
        r""" ?[^\s\p{L}\p{N}]++[\r\n]*+|\s++$|\s*[\r\n]|\s+(?!\S)|\s"""
    )
    ranks = {bytes([b]): b for b in range(256)}
    tests = []
    for cp in code_points:
        c = chr(cp)
        for s in ("a" + c + "a", "1" + c + "1", "!" + c + "!"):
            ranks.setdefault(s.encode("utf-8"), len(ranks))
            tests.append(s)
    enc = tiktoken.Encoding(name="classes", pat_str=pat, mergeable_ranks=ranks, special_tokens={})
    out = enc.encode_ordinary_batch(tests, num_threads=1)
    classes = []
    for k in range(len(code_points)):
        letter, number, other = (out[3 * k + m] == [ranks[tests[3 * k + m].encode("utf-8")]] for m in range(3))
        classes.append(LETTER if letter else NUMBER if number else OTHER if other else SPACE)
    return classes


def check_with_tiktoken(table):
    try:
        import tiktoken
    except ImportError:
        print("tiktoken not installed: table not cross-checked", file=sys.stderr)
        return
    bad, checked = [], 0
    code_points = [cp for cp in range(0x80, 0x110000) if not 0xD800 <= cp < 0xE000]
    step = 100_000  # a vocabulary of 300,000 test strings at a time
    for start in range(0, len(code_points), step):
        chunk = code_points[start:start + step]
        for cp, theirs in zip(chunk, tiktoken_classes(chunk)):
            checked += 1
            if theirs != table[cp]:
                bad.append(f"U+{cp:04X}: table {NAMES[table[cp]]}, tiktoken {NAMES[theirs]}")
    if bad:
        sys.exit(f"{len(bad)} code points disagree with tiktoken {tiktoken.__version__}:\n" + "\n".join(bad[:20]))
    print(f"checked against tiktoken {tiktoken.__version__}: all {checked:,} non-ASCII code points agree", file=sys.stderr)


def build(table):
    max_cp = max(cp for cp, c in enumerate(table) if c != OTHER) + 1
    n_blocks = -(-max_cp // BLOCK)
    blocks, index = {}, []
    for b in range(n_blocks):
        chunk = tuple(table[b * BLOCK:(b + 1) * BLOCK])
        index.append(blocks.setdefault(chunk, len(blocks)))
    assert len(blocks) <= 256, "the index holds u8"
    words = []
    for chunk in blocks:  # dicts keep insertion order: block k is the k-th distinct
        ws = []
        for w in range(BLOCK // 32):
            v = 0
            for i, c in enumerate(chunk[w * 32:(w + 1) * 32]):
                v |= c << (2 * i)
            ws.append(v)
        words.append(ws)
    return n_blocks * BLOCK, index, words


def render(max_cp, index, words, counts):
    lines = [
        "// @generated by tools/tokenizer_unicode.py from the Unicode Character Database",
        f"// {UNICODE_VERSION}; do not edit by hand.",
        "//",
        "// Letters: " + f"{counts[LETTER]:,}" + ", numbers: " + f"{counts[NUMBER]:,}"
        + ", whitespace: " + f"{counts[SPACE]:,}" + " code points.",
        "",
        f"/// The Unicode version the table was generated from.",
        f"pub const UNICODE_VERSION: (u8, u8, u8) = ({', '.join(UNICODE_VERSION.split('.'))});",
        "",
        "/// Code points from here on are all \"other\".",
        f"pub const MAX_CODE_POINT: u32 = {max_cp:#x};",
        "",
        f"/// Code points per block: `1 << {BLOCK_SHIFT}`.",
        f"pub const BLOCK_SHIFT: u32 = {BLOCK_SHIFT};",
        "",
        "/// `INDEX[cp >> BLOCK_SHIFT]` is the block holding `cp`'s class.",
        f"pub static INDEX: [u8; {len(index)}] = [",
    ]
    for i in range(0, len(index), 24):
        lines.append("    " + " ".join(f"{x}," for x in index[i:i + 24]))
    lines += [
        "];",
        "",
        f"/// {len(words)} distinct blocks of {BLOCK} code points, 2 bits each",
        "/// (0 letter, 1 number, 2 whitespace, 3 other), code point `32 w + i`",
        "/// of a block in bits `2 i..2 i + 2` of word `w`.",
        f"pub static BLOCKS: [[u64; {BLOCK // 32}]; {len(words)}] = [",
    ]
    for ws in words:
        lines.append("    [" + ", ".join(f"{w:#018x}" for w in ws) + "],")
    lines += ["];", ""]
    return "\n".join(lines)


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..")
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default=os.path.normpath(os.path.join(root, "tokenizer/src/unicode_table.rs")))
    args = parser.parse_args()
    table = classes()
    check_with_tiktoken(table)
    counts = [table.count(k) for k in range(4)]
    text = render(*build(table), counts)
    tmp = args.out + ".tmp"
    with open(tmp, "w", encoding="utf-8") as f:
        f.write(text)
    # in the layout `cargo fmt` gives it, so CI's format check passes
    subprocess.run(["rustfmt", "--edition", "2024", tmp], check=True)
    os.replace(tmp, args.out)
    print(f"wrote {args.out} (Unicode {UNICODE_VERSION})", file=sys.stderr)


if __name__ == "__main__":
    main()
