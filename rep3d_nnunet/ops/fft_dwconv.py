"""Exact depthwise 3D convolution through real FFTs, with a hand-written backward.

'Same' cross-correlation (what ``F.conv3d`` computes) of x (B, C, S) with
w (C, 1, k), per spatial dim, in a circular transform of size N:

    y[p] = sum_t w[t] x[p + t - c],   c = k // 2.

Padding x with c zeros on the *left* (a phase shift) and to N on the right
makes the circular correlation exact for p < S as soon as N >= S + c, instead
of the textbook N >= S + k - 1: wrapped indices p + t - N land in the c
leading zeros. N is then rounded up to the next 2/3/5/7-smooth size, where
FFT libraries are fast. Measured here 1.5-4x faster than S + k - 1 padding.
"""
from __future__ import annotations

from functools import lru_cache
from typing import Optional, Sequence, Tuple

import torch
import torch.nn.functional as F

_DIMS = (-3, -2, -1)


@lru_cache(maxsize=None)
def smooth_size(n: int) -> int:
    """Smallest integer >= n whose only prime factors are 2, 3, 5 and 7."""
    m = max(int(n), 1)
    while True:
        r = m
        for p in (2, 3, 5, 7):
            while r % p == 0:
                r //= p
        if r == 1:
            return m
        m += 1


def fft_sizes(spatial: Sequence[int], kernel: Sequence[int]) -> Tuple[int, ...]:
    """Transform size per dim: smallest smooth N >= S + k // 2 (exact with the phase shift)."""
    return tuple(smooth_size(s + k // 2) for s, k in zip(spatial, kernel))


def _left_pad(x: torch.Tensor, kernel: Sequence[int], n: Sequence[int]) -> torch.Tensor:
    """Zero-pad the 3 spatial dims to n with k//2 zeros in front (F.pad lists dims last-first)."""
    pads = []
    for s, k, nn_ in reversed(list(zip(x.shape[2:], kernel, n))):
        pads += [k // 2, nn_ - s - k // 2]
    return F.pad(x, pads)


def fft_forward(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]
                ) -> Tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(y, xf, wf): y = dwconv(x, w) + b via rfftn/irfftn, and the spectra the backward reuses.

    x, weight, bias: one dtype, float32 or float64. y is contiguous.
    """
    s = tuple(x.shape[2:])
    k = tuple(weight.shape[2:])
    n = fft_sizes(s, k)
    xf = torch.fft.rfftn(_left_pad(x, k, n), dim=_DIMS)
    # rfftn(s=n) pads the kernel at the end: taps sit at offsets 0..k-1,
    # which the left pad of x turns into offsets -c..c.
    wf = torch.fft.rfftn(weight[:, 0], s=n, dim=_DIMS)
    # conj_physical, not the lazy .conj() view: inside a compiled graph this kernel runs with the
    # Conjugate dispatch key excluded (torch 2.13), which silently drops a lazy conj bit. In eager
    # mode the lazy view costs the same copy (the conjugate fallback materialises it for mul).
    y = torch.fft.irfftn(xf * torch.conj_physical(wf), s=n, dim=_DIMS)
    # contiguous copy: a view would keep the whole N^3 buffer alive.
    y = y[..., : s[0], : s[1], : s[2]].contiguous()
    if bias is not None:
        y += bias.view(1, -1, 1, 1, 1)
    return y, xf, wf


def fft_spectra_shapes(x_shape: Sequence[int], kernel: Sequence[int]) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
    """Shapes of (xf, wf) that ``fft_forward`` returns for an input of ``x_shape``."""
    b, c = x_shape[:2]
    n = fft_sizes(x_shape[2:], kernel)
    half = (n[0], n[1], n[2] // 2 + 1)
    return (b, c) + half, (c,) + half


def fft_backward(gy: torch.Tensor, xf: torch.Tensor, wf: torch.Tensor, kernel: Sequence[int],
                 need_x: bool, need_w: bool) -> Tuple[Optional[torch.Tensor], Optional[torch.Tensor]]:
    """(grad x, grad weight) of ``fft_forward`` from the saved spectra; None where not needed."""
    s, k = tuple(gy.shape[2:]), tuple(kernel)
    n = fft_sizes(s, k)
    gx = gw = None
    # The output was cropped to [0, S): its gradient padded at the end to N.
    gyf = torch.fft.rfftn(gy, s=n, dim=_DIMS)
    if need_w:
        # dL/dw[t] = sum_p gy[p] xpad[p + t]: a correlation, summed over the
        # batch in frequency space so only C (not B*C) inverse transforms run.
        gwf = (xf * torch.conj_physical(gyf)).sum(0)
        gw = torch.fft.irfftn(gwf, s=n, dim=_DIMS)[:, : k[0], : k[1], : k[2]]
        gw = gw.unsqueeze(1).contiguous()
    if need_x:
        # dL/dxpad = circular convolution of gy with w; crop the left pad off.
        gxp = torch.fft.irfftn(gyf.mul_(wf), s=n, dim=_DIMS)
        c = [kk // 2 for kk in k]
        gx = gxp[..., c[0] : c[0] + s[0], c[1] : c[1] + s[1], c[2] : c[2] + s[2]].contiguous()
    return gx, gw


def fft_dwconv3d(x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Exact FFT depthwise conv ('same' padding, odd kernel, no crop); inputs in float32 or float64.

    The registered op ``rep3d::dwconv3d`` on its ``fft`` path (differentiable, compilable).
    """
    return torch.ops.rep3d.dwconv3d(x, weight, bias, "fft")[0]
