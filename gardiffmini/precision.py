"""Which mixed precision to train in on a device: bf16 where the GPU has it, else fp16.

bf16 keeps fp32's exponent range, so it needs no loss scaling; GPUs compute in it natively
from compute capability 8.0 (Ampere: A100, A10, L4; Hopper: H100). Older GPUs, the free
Colab T4 (7.5) and the V100 (7.0) among them, have fast fp16 but no bf16: there the loss is
scaled, so that small gradients do not underflow fp16's range (accelerate's
``mixed_precision="fp16"`` keeps a ``torch.amp.GradScaler``; a step whose gradients overflow
is skipped and the scale halved). ``torch.cuda.is_bf16_supported()`` is not the test: by
default it counts emulation and answers ``True`` on a T4, where bf16 runs slower than fp32.
On a CPU the answer is fp32 (``"no"``): accelerate's fp16 does nothing there, and bf16
autocast trains the book's recipe 6.6 to 9 times *slower* even on a CPU with AVX512-BF16
(a 2-core AMD EPYC, ``book/results/bench-cpu-bf16-amd-epyc.json``).
"""

from __future__ import annotations

import torch

BF16_CAPABILITY = (8, 0)  # the first CUDA compute capability with native bf16 (Ampere)


def mixed_precision_for(device: torch.device | str | None = None) -> str:
    """accelerate's ``mixed_precision`` for training on ``device`` (default: the first GPU if
    there is one, else the CPU): ``"bf16"``, ``"fp16"`` (with loss scaling) or ``"no"``."""
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cpu":
        return "no"
    if device.type != "cuda":
        raise ValueError(f"mixed_precision_for: device {device} is neither a CUDA GPU nor the "
                         "CPU; pass accelerate's mixed_precision ('no', 'fp16', 'bf16') yourself")
    return "bf16" if torch.cuda.get_device_capability(device) >= BF16_CAPABILITY else "fp16"
