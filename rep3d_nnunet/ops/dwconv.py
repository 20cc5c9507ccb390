"""Depthwise 3D convolution with 'same' padding: the op every large-kernel block calls.

``dwconv3d`` is exact on every path (same result as ``F.conv3d`` up to float
rounding) and differentiable in x, weight and bias. It crops taps that cannot
touch data, then dispatches (ops/dispatch.py) to the FFT path or the direct
path with a fast backward; ``REP3D_DWCONV=torch`` gives plain ``F.conv3d``.

Dtypes: fp16/bf16/fp32 inputs are computed in fp32 (float64 stays float64).
The result has the autocast dtype when autocast is on for the input's device
(as ``F.conv3d`` would), else the promoted dtype of the inputs.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from rep3d_nnunet.ops import library  # noqa: F401  (registers rep3d::dwconv3d)
from rep3d_nnunet.ops.dispatch import crop_slices, resolve_path


def _check(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> None:
    if x.dim() != 5 or weight.dim() != 5:
        raise ValueError(f"dwconv3d wants x (B,C,D,H,W) and weight (C,1,kd,kh,kw); got {tuple(x.shape)}, "
                         f"{tuple(weight.shape)}")
    c = x.shape[1]
    if weight.shape[0] != c or weight.shape[1] != 1:
        raise ValueError(f"depthwise weight must be ({c}, 1, kd, kh, kw); got {tuple(weight.shape)}")
    if any(k % 2 == 0 for k in weight.shape[2:]):
        raise ValueError(f"'same' padding needs odd kernel sizes; got {tuple(weight.shape[2:])}")
    if bias is not None and tuple(bias.shape) != (c,):
        raise ValueError(f"bias must be ({c},); got {tuple(bias.shape)}")


def _dtypes(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> Tuple[torch.dtype, torch.dtype]:
    """(result dtype, compute dtype)."""
    tensors = [t for t in (x, weight, bias) if t is not None]
    if any(t.dtype == torch.float64 for t in tensors):
        return torch.float64, torch.float64
    dev = x.device.type
    # is_autocast_available: no autocast on e.g. the meta device (FLOP counting)
    if torch.amp.is_autocast_available(dev) and torch.is_autocast_enabled(dev):
        return torch.get_autocast_dtype(dev), torch.float32
    out = x.dtype
    for t in tensors[1:]:
        out = torch.promote_types(out, t.dtype)
    return out, torch.float32


def dwconv3d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None,
             path: Optional[str] = None) -> torch.Tensor:
    """Depthwise conv: x (B, C, D, H, W), weight (C, 1, kd, kh, kw) odd sizes, 'same' padding.

    ``path``: ``auto`` (default), ``fft``, ``direct`` or ``torch``; overrides ``REP3D_DWCONV``.
    The ``fft`` and ``direct`` paths run the registered op ``rep3d::dwconv3d``; under
    ``torch.compile`` the path is chosen once, at trace time (ops/dispatch.py).
    """
    _check(x, weight, bias)
    # int(): a compiled model specialises on the spatial sizes (they pick the crop and the path)
    spatial = tuple(int(s) for s in x.shape[2:])
    crop = crop_slices(spatial, tuple(int(k) for k in weight.shape[2:]))
    cropped = tuple(sl.stop - sl.start for sl in crop)
    backward = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    name = resolve_path(path, spatial, cropped, x.device.type, backward)
    if name == "torch":
        k = weight.shape[2:]
        return F.conv3d(x, weight, bias, padding=tuple(s // 2 for s in k), groups=weight.shape[0])

    out_dtype, compute_dtype = _dtypes(x, weight, bias)
    weight = weight[(slice(None), slice(None)) + crop]
    # The op runs with autocast off: the FFT must run in fp32 (cuFFT/MKL half transforms
    # are inexact or unsupported), and the direct path stays exact in fp32 too.
    xc, wc = x.to(compute_dtype), weight.to(compute_dtype)
    bc = bias.to(compute_dtype) if bias is not None else None
    y = torch.ops.rep3d.dwconv3d(xc, wc, bc, name)[0]
    return y.to(out_dtype)
