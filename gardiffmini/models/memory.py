"""Loaded weights copied into memory of their own.

``from_pretrained`` can leave a model's tensors as views into the buffer it read the
safetensors file into, at addresses that are not 64-byte aligned (``data_ptr() % 64`` of 52
or 56 was seen). On some CPUs a matrix product with a batch of one depends on the address of
its weights: on an AMD EPYC, shifting a Linear layer's weight by 4 or 8 bytes changed its
output by 1.8e-7 (``../shared/FINDINGS.md``). Copied into tensors that PyTorch allocated
itself (64-byte aligned), a loaded model computes exactly what the saved one did.
"""

from __future__ import annotations

import itertools

import torch


def own_memory(module: torch.nn.Module) -> torch.nn.Module:
    """Copy every parameter and buffer of ``module`` into a fresh allocation, in place.

    The values are unchanged bit for bit; parameters stay the same ``Parameter`` objects, so
    tied weights stay tied and optimisers built later see them as usual.
    """
    with torch.no_grad():
        for tensor in itertools.chain(module.parameters(), module.buffers()):
            tensor.data = tensor.data.clone(memory_format=torch.contiguous_format)
    return module

