"""Which exact path computes a depthwise 3D convolution, and the exact kernel crop.

Paths: ``fft`` (ops/fft_dwconv.py), ``direct`` (ops/direct_dwconv.py), ``torch``
(plain ``F.conv3d`` with PyTorch's own backward: the comparison baseline) and
``auto`` (the measured rule below). Choice, first match wins: the ``path``
argument, the ``REP3D_DWCONV`` environment variable, ``auto``.

When the choice is made: in eager mode at every call (so a benchmark can flip
``REP3D_DWCONV`` or use ``dwconv_path``). Under ``torch.compile`` / ``torch.export``
once, when the model is traced: ``resolve_path`` is a constant to dynamo (no guard
on the environment), and the compiled graph holds the path it chose. A later change
of ``REP3D_DWCONV`` does not reach a compiled model until it is traced again
(``torch.compiler.reset()``, then call it).
"""
from __future__ import annotations

import contextlib
import math
import os
from typing import Iterator, Optional, Sequence, Tuple

import torch

from rep3d_nnunet.ops.fft_dwconv import fft_sizes

ENV_VAR = "REP3D_DWCONV"
PATHS = ("auto", "fft", "direct", "torch")

# CPU rule: FFT when  D > RATIO * Nvol * log2(Nvol), D = the direct method's
# multiply-adds that touch data (per channel, taps over the zero padding not
# counted: oneDNN skips them) and N = the FFT size per dim. RATIO was fitted to
# timings of both paths at the four Rep3D stage shapes and k = 3..21
# (B=2, 2 threads; `python scripts/bench_dwconv.py --crossover`). Training
# needs a backward, where the direct path pays two more convs and its weight
# gradient is slow in oneDNN, so it loses much earlier than in inference.
FFT_RATIO_TRAIN = 13.0  # forward+backward: crossover k~7 at stage 1-2, k~9 at stage 3
FFT_RATIO_INFER = 27.0  # forward only: crossover k~10-11 at stages 1-2, k>13 at stage 3
# CUDA (H100, `--device cuda`, fp32 and bf16 autocast): cuFFT's ~1 ms floor of
# about 15 kernel launches loses only on small problems (stage 3 at k=7, stage
# 4): one ratio fits forward and forward+backward.
FFT_RATIO_CUDA = 12.0
@contextlib.contextmanager
def dwconv_path(path: Optional[str]) -> Iterator[None]:
    """Within the block, every ``dwconv3d`` call uses ``path`` (None: the rule, ``auto``).

    Sets ``REP3D_DWCONV`` and restores what was there before. Eager calls read it at every
    call; a compiled model only when it is traced (see the module docstring).
    """
    old = os.environ.get(ENV_VAR)
    if path is None:
        os.environ.pop(ENV_VAR, None)
    else:
        os.environ[ENV_VAR] = path
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV_VAR, None)
        else:
            os.environ[ENV_VAR] = old


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


def valid_pairs(s: int, k: int) -> int:
    """(output voxel, tap) pairs along one dim that read data rather than zero padding."""
    c = k // 2
    return sum(min(s, p - c + k) - max(0, p - c) for p in range(s))


def fft_preferred(spatial: Sequence[int], kernel: Sequence[int], ratio: float) -> bool:
    """The cost model: True when the FFT path is expected to be faster."""
    direct = math.prod(valid_pairs(s, k) for s, k in zip(spatial, kernel))
    nvol = math.prod(fft_sizes(spatial, kernel))
    return direct > ratio * nvol * math.log2(max(nvol, 2))


def choose_path(spatial: Sequence[int], kernel: Sequence[int], device: torch.device,
                backward: bool = True) -> str:
    """``fft`` or ``direct`` for an already-cropped kernel on ``device``.

    CUDA measured on an H100 at the 12 stage shapes x k in {7, 13, 21}, fp32
    and bf16 autocast: the FFT path is 10-130x faster than PyTorch's depthwise
    kernel at stages 1-2; the direct path (PyTorch's contiguous forward kernel,
    our backward) wins below the crossover. ``channels_last_3d`` (cuDNN) was
    slower than the contiguous kernel at every shape, so it is not used.
    """
    if torch.device(device).type == "cuda":
        ratio = FFT_RATIO_CUDA
    else:
        ratio = FFT_RATIO_TRAIN if backward else FFT_RATIO_INFER
    return "fft" if fft_preferred(spatial, kernel, ratio) else "direct"


@torch.compiler.assume_constant_result
def resolve_path(path: Optional[str], spatial: Tuple[int, ...], kernel: Tuple[int, ...], device_type: str,
                 backward: bool) -> str:
    """The path ``dwconv3d`` runs: ``torch``, ``fft`` or ``direct`` (argument, ``REP3D_DWCONV``, rule).

    ``kernel`` is the cropped kernel. Marked constant for dynamo: a compiled model calls
    it once while tracing and keeps the answer, with no guard on ``REP3D_DWCONV``.
    """
    name = requested_path(path)
    if name == "auto":
        name = choose_path(spatial, kernel, torch.device(device_type), backward)
    return name
