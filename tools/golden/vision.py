"""Golden values for the `vision` crate: Conv2d, MaxPool2d, AvgPool2d and a ViT patch embedding.

Run from the repository root:  /work/venv-torch/bin/python tools/golden/vision.py
(any Python with torch works). Writes vision/tests/golden/*.txt, read by
vision/tests/golden.rs.

Each case uses the fake loss L = sum(out * dout) with a random dout, so the
gradients written are exactly what backward(dout) must return.
"""

import os

import torch

from golden_io import f32_input, write_fixture

OUT = os.path.normpath(os.path.join(os.path.dirname(__file__), "..", "..", "vision", "tests", "golden"))


def conv2d(g, name, B, C_in, H, W, C_out, k, stride, padding):
    layer = torch.nn.Conv2d(C_in, C_out, k, stride=stride, padding=padding).to(torch.float64)
    with torch.no_grad():
        layer.weight.copy_(f32_input(C_out, C_in, k, k, generator=g, scale=0.5))
        layer.bias.copy_(f32_input(C_out, generator=g, scale=0.5))
    x = f32_input(B, C_in, H, W, generator=g).requires_grad_()
    out = layer(x)
    dout = f32_input(*out.shape, generator=g)
    (out * dout).sum().backward()
    write_fixture(os.path.join(OUT, f"{name}.txt"), {
        "x": x, "weight": layer.weight, "bias": layer.bias, "dout": dout,
        "out": out, "dx": x.grad, "dweight": layer.weight.grad, "dbias": layer.bias.grad,
    }, comment=f"torch.nn.Conv2d({C_in}, {C_out}, {k}, stride={stride}, padding={padding}), "
               f"x: [{B}, {C_in}, {H}, {W}], L = sum(out * dout)")


def pool(g, name, module, B, C, H, W):
    x = f32_input(B, C, H, W, generator=g).requires_grad_()
    out = module(x)
    dout = f32_input(*out.shape, generator=g)
    (out * dout).sum().backward()
    write_fixture(os.path.join(OUT, f"{name}.txt"), {
        "x": x, "dout": dout, "out": out, "dx": x.grad,
    }, comment=f"torch.nn.{module}, x: [{B}, {C}, {H}, {W}], L = sum(out * dout)")


def patch_embed(g):
    # the ViT patch embedding as timm and torchvision write it:
    # a stride-P convolution, then [B, C, H/P, W/P] -> [B, N, C]
    B, C_in, H, W, P, C = 2, 3, 8, 12, 4, 6
    proj = torch.nn.Conv2d(C_in, C, P, stride=P).to(torch.float64)
    with torch.no_grad():
        proj.weight.copy_(f32_input(C, C_in, P, P, generator=g, scale=0.3))
        proj.bias.copy_(f32_input(C, generator=g, scale=0.3))
    x = f32_input(B, C_in, H, W, generator=g).requires_grad_()
    out = proj(x).flatten(2).transpose(1, 2)  # [B, N, C]
    dout = f32_input(*out.shape, generator=g)
    (out * dout).sum().backward()
    write_fixture(os.path.join(OUT, "patch_embed.txt"), {
        "x": x, "weight": proj.weight, "bias": proj.bias, "dout": dout,
        "out": out, "dx": x.grad, "dweight": proj.weight.grad, "dbias": proj.bias.grad,
    }, comment=f"ViT patch embedding: Conv2d({C_in}, {C}, {P}, stride={P})(x).flatten(2).transpose(1, 2), "
               f"x: [{B}, {C_in}, {H}, {W}], L = sum(out * dout)")


def main():
    g = torch.Generator().manual_seed(5)
    conv2d(g, "conv2d_stride2_pad1", B=2, C_in=3, H=7, W=6, C_out=4, k=3, stride=2, padding=1)
    conv2d(g, "conv2d_stride1_pad0", B=2, C_in=2, H=5, W=5, C_out=3, k=2, stride=1, padding=0)
    pool(g, "maxpool2d", torch.nn.MaxPool2d(2), B=2, C=3, H=6, W=4)
    pool(g, "maxpool2d_overlapping", torch.nn.MaxPool2d(3, stride=2), B=1, C=2, H=7, W=7)
    pool(g, "avgpool2d", torch.nn.AvgPool2d(2), B=2, C=2, H=4, W=6)
    patch_embed(g)


if __name__ == "__main__":
    main()
