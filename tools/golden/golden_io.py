"""Writing golden fixtures in the text format `embedding::testing::Golden` reads.

    # comments start with '#'
    tensor NAME DIM...
    v0 v1 v2 ...

Every value is written with 9 significant digits, enough to round-trip an
f32 exactly, so the Rust test reads back the very inputs PyTorch used.

Inputs are drawn in float32 (what the Rust code computes in) and the
reference outputs and gradients are computed from those same values in
float64: the fixture holds the exact answer, and each Rust test states how
far its f32 arithmetic may stray from it.
"""

import os

import torch


def f32_input(*shape, generator, scale=1.0):
    """A float32 tensor of N(0, scale^2) values, promoted to float64 for the reference."""
    x = torch.randn(*shape, generator=generator, dtype=torch.float32) * scale
    return x.to(torch.float64)


def write_fixture(path, tensors, comment=""):
    """Write `tensors` (a dict name -> tensor or number) to `path`, in insertion order."""
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lines = []
    for line in comment.strip().splitlines():
        lines.append(f"# {line}")
    for name, value in tensors.items():
        t = torch.as_tensor(value).detach().to(torch.float64).cpu()
        dims = " ".join(str(d) for d in t.shape)
        lines.append(f"tensor {name} {dims}".rstrip())
        flat = t.reshape(-1).tolist()
        for start in range(0, len(flat), 8):
            lines.append(" ".join(f"{float(v):.9g}" for v in flat[start:start + 8]))
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
    os.replace(tmp, path)
    print(f"wrote {path}")
