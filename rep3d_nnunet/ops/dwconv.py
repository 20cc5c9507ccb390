"""Depthwise 3D convolution with 'same' padding: the op every block calls.

Placeholder implementation (plain ``F.conv3d``); the fast exact paths land with
the large-kernel-op issue behind the same signature.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F


def dwconv3d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Depthwise conv: x (B, C, D, H, W), weight (C, 1, kd, kh, kw) odd sizes, 'same' padding."""
    k = weight.shape[2:]
    return F.conv3d(x, weight, bias, padding=tuple(s // 2 for s in k), groups=weight.shape[0])
