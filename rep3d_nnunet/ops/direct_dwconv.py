"""Direct depthwise 3D convolution whose backward reuses the forward kernel.

PyTorch's own depthwise 3D backward falls back to im2col + GEMM (20-200x its
forward on this CPU; on CUDA its ``conv_depthwise3d`` backward is also slow).
Both gradients are themselves depthwise convolutions, so we run them through
the fast forward kernel:

- input gradient: the same 'same' conv of gy with the spatially flipped kernel;
- weight gradient: gw[c, t] = sum_{b,p} gy[b,c,p] x[b,c,p+t-k//2], i.e. a
  depthwise conv of the padded x with gy as a (B*C)-group kernel of size S,
  whose output is exactly k taps; then summed over the batch.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F


def _same_pad(weight: torch.Tensor) -> tuple:
    return tuple(k // 2 for k in weight.shape[2:])


def _fmt(t: torch.Tensor, channels_last: bool) -> torch.Tensor:
    # channels_last_3d is what routes a CUDA depthwise conv to cuDNN (a measured
    # candidate, slower than the contiguous kernel on an H100; off by default).
    return t.contiguous(memory_format=torch.channels_last_3d) if channels_last else t.contiguous()


def direct_forward(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                   channels_last: bool = False) -> torch.Tensor:
    """y = F.conv3d(x, w, b, groups=C, 'same'), on a contiguous (or channels_last_3d) copy of x."""
    return F.conv3d(_fmt(x, channels_last), weight, bias, padding=_same_pad(weight), groups=weight.shape[0])


def direct_backward(gy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, need_x: bool, need_w: bool,
                    channels_last: bool = False) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """(grad x, grad weight) of ``direct_forward``, both through the forward kernel; None where not needed."""
    b, c = x.shape[:2]
    pad = _same_pad(weight)
    gx = gw = None
    if need_x:
        gx = F.conv3d(_fmt(gy, channels_last), weight.flip(2, 3, 4), padding=pad, groups=c)
    if need_w:
        # Batch folded into channels: (1, B*C, S) correlated with (B*C, 1, S).
        xr = x.contiguous().reshape(1, b * c, *x.shape[2:])
        gyr = gy.contiguous().reshape(b * c, 1, *gy.shape[2:])
        gw = F.conv3d(xr, gyr, padding=pad, groups=b * c)
        gw = gw.reshape(b, c, *weight.shape[2:]).sum(0).unsqueeze(1)
    return gx, gw


def direct_dwconv3d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
                    channels_last: bool = False) -> torch.Tensor:
    """Direct depthwise conv ('same' padding, odd kernel, no crop) with the fast backward.

    The registered op ``rep3d::dwconv3d`` on its ``direct`` path (``direct_cl3d`` with
    ``channels_last``: the measured CUDA cuDNN candidate, slower, not used by dispatch).
    """
    return torch.ops.rep3d.dwconv3d(x, weight, bias, "direct_cl3d" if channels_last else "direct")[0]
