"""Golden values for the `embedding` crate: Linear, Embedding, learned and sinusoidal positions.

Run from the repository root:  python tools/golden/embedding.py
Writes embedding/tests/golden/*.txt, read by embedding/tests/golden.rs.

Each case uses the fake loss L = sum(out * dout) with a random dout, so the
gradients written are exactly what backward(dout) must return.
"""

import os

import torch

from golden_io import f32_input, write_fixture

OUT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "embedding", "tests", "golden"))


def linear(g):
    B, T, C_in, C_out = 2, 3, 4, 5
    layer = torch.nn.Linear(C_in, C_out).to(torch.float64)
    with torch.no_grad():
        layer.weight.copy_(f32_input(C_out, C_in, generator=g, scale=0.5))
        layer.bias.copy_(f32_input(C_out, generator=g, scale=0.5))
    x = f32_input(B, T, C_in, generator=g).requires_grad_()
    dout = f32_input(B, T, C_out, generator=g)
    out = layer(x)
    (out * dout).sum().backward()
    write_fixture(os.path.join(OUT, "linear.txt"), {
        "x": x, "weight": layer.weight, "bias": layer.bias, "dout": dout,
        "out": out, "dx": x.grad, "dweight": layer.weight.grad, "dbias": layer.bias.grad,
    }, comment="torch.nn.Linear(4, 5), x: [2, 3, 4], L = sum(out * dout)")


def embedding(g):
    V, C = 7, 3
    table = torch.nn.Embedding(V, C).to(torch.float64)
    with torch.no_grad():
        table.weight.copy_(f32_input(V, C, generator=g))
    ids = torch.tensor([[1, 4, 4, 0], [6, 1, 2, 4]])  # id 4 three times, ids 3 and 5 never
    dout = f32_input(2, 4, C, generator=g)
    out = table(ids)
    (out * dout).sum().backward()
    write_fixture(os.path.join(OUT, "embedding.txt"), {
        "ids": ids, "weight": table.weight, "dout": dout,
        "out": out, "dweight": table.weight.grad,
    }, comment="torch.nn.Embedding(7, 3), ids: [2, 4] with repeats, L = sum(out * dout)")


def positions(g):
    B, T, T_max, C = 2, 3, 5, 4
    wpe = f32_input(T_max, C, generator=g).requires_grad_()
    x = f32_input(B, T, C, generator=g).requires_grad_()
    dout = f32_input(B, T, C, generator=g)
    out = x + wpe[:T]
    (out * dout).sum().backward()
    # the sinusoidal table of "Attention Is All You Need", section 3.5
    t = torch.arange(8, dtype=torch.float64)[:, None]
    i = torch.arange(0, 6, 2, dtype=torch.float64)[None, :]
    angle = t / torch.pow(10000.0, i / 6)
    table = torch.zeros(8, 6, dtype=torch.float64)
    table[:, 0::2] = torch.sin(angle)
    table[:, 1::2] = torch.cos(angle)
    write_fixture(os.path.join(OUT, "positions.txt"), {
        "x": x, "weight": wpe, "dout": dout, "out": out, "dx": x.grad, "dweight": wpe.grad,
        "sinusoidal_8x6": table,
    }, comment="learned positions out = x + wpe[:T] (T=3 of 5); sinusoidal table T_max=8, C=6")


if __name__ == "__main__":
    g = torch.Generator().manual_seed(0)
    linear(g)
    embedding(g)
    positions(g)
