"""Pure fold/deploy math: BatchNorm into a conv, small kernels into large ones."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def fuse_bn(kernel: torch.Tensor, bias: Optional[torch.Tensor], bn: nn.modules.batchnorm._BatchNorm
            ) -> Tuple[torch.Tensor, torch.Tensor]:
    """Fold an eval-mode BatchNorm that follows a conv into the conv's (kernel, bias).

    BN(conv(x) + b) = t * conv(x) + (beta + t * (b - mean)), t = gamma / sqrt(var + eps).
    Uses the running statistics, i.e. matches the network in ``eval()`` mode.
    """
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("cannot fold a BatchNorm without running statistics (track_running_stats=False)")
    std = torch.sqrt(bn.running_var + bn.eps)
    gamma = bn.weight if bn.weight is not None else torch.ones_like(std)
    beta = bn.bias if bn.bias is not None else torch.zeros_like(std)
    t = gamma / std
    b = bias if bias is not None else torch.zeros_like(std)
    return kernel * t.reshape(-1, *([1] * (kernel.dim() - 1))), beta + t * (b - bn.running_mean)


def pad_kernel_to(kernel: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Zero-pad a (C, 1, k, k, k) kernel symmetrically to spatial ``size`` (both odd)."""
    pads = []
    for have, want in zip(reversed(kernel.shape[2:]), reversed(tuple(size))):
        if want < have or (want - have) % 2:
            raise ValueError(f"cannot centre a kernel of size {tuple(kernel.shape[2:])} in {tuple(size)}")
        pads += [(want - have) // 2] * 2
    return F.pad(kernel, pads)
