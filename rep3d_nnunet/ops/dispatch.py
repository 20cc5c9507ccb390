"""Which exact path computes a depthwise 3D convolution, and the exact kernel crop.

Paths: ``fft`` (ops/fft_dwconv.py), ``direct`` (ops/direct_dwconv.py), ``torch``
(plain ``F.conv3d`` with PyTorch's own backward: the comparison baseline) and
``auto`` (the measured rule below). Choice, first match wins: the ``path``
argument, the ``REP3D_DWCONV`` environment variable (read at every call, so a
benchmark can flip it), ``auto``.
"""
from __future__ import annotations

import math
import os
from typing import Optional, Sequence, Tuple

import torch

from rep3d_nnunet.ops.fft_dwconv import fft_sizes

ENV_VAR = "REP3D_DWCONV"
PATHS = ("auto", "fft", "direct", "torch")

# CPU rule: FFT when  S_d*S_h*S_w * kvol  >  FFT_COST_RATIO * Nvol * log2(Nvol),
# i.e. direct multiply-adds against FFT butterflies (N = FFT size per dim).
# Fitted to forward+backward timings of both paths at the four Rep3D stage
# shapes (B=2, 2 threads, `scripts/bench_dwconv.py --crossover`): crossover
# near k=8 at stage 1, k=7 at stages 2-3, direct at stage 4 (cropped kernel).
FFT_COST_RATIO = 19.0


def requested_path(path: Optional[str] = None) -> str:
    """The path asked for by argument, else by ``REP3D_DWCONV``, else ``auto``."""
    name = (path or os.environ.get(ENV_VAR, "") or "auto").strip().lower()
    if name not in PATHS:
        raise ValueError(f"dwconv3d path {name!r} (argument or {ENV_VAR}) is not one of {PATHS}")
    return name


def crop_slices(spatial: Sequence[int], kernel: Sequence[int]) -> Tuple[slice, ...]:
    """Per-dim tap slices that can touch data: when S <= k//2 only the central 2S-1 do.

    A tap at offset |t - k//2| >= S reads only zero padding for every output
    voxel, so dropping it changes nothing (and its gradient is exactly zero).
    """
    out = []
    for s, k in zip(spatial, kernel):
        c = k // 2
        out.append(slice(c - (s - 1), c + s) if s <= c else slice(0, k))
    return tuple(out)


def fft_preferred(spatial: Sequence[int], kernel: Sequence[int]) -> bool:
    """The CPU cost model: True when the FFT path is expected to be faster."""
    direct = math.prod(spatial) * math.prod(kernel)
    nvol = math.prod(fft_sizes(spatial, kernel))
    return direct > FFT_COST_RATIO * nvol * math.log2(max(nvol, 2))


def choose_path(spatial: Sequence[int], kernel: Sequence[int], device: torch.device) -> str:
    """``fft`` or ``direct`` for an already-cropped kernel on ``device``."""
    return "fft" if fft_preferred(spatial, kernel) else "direct"
