"""The distance-decay prior P[k] = beta / (||k - c||_2 + beta) over a kernel's taps."""
from __future__ import annotations

from typing import Optional, Sequence, Tuple, Union

import torch

KernelSize = Union[int, Sequence[int]]

MIN_KERNEL_SIZE = 3
MAX_KERNEL_SIZE = 31


def kernel_size_3d(kernel_size: KernelSize, min_size: int = MIN_KERNEL_SIZE,
                   max_size: int = MAX_KERNEL_SIZE) -> Tuple[int, int, int]:
    """Validate an odd 3D kernel size (int or 3-tuple) and return it as a 3-tuple.

    Odd sizes keep a single centre tap (needed by the prior and by 'same' padding).
    Raises ``ValueError`` naming the valid sizes otherwise.
    """
    valid = f"odd integers from {min_size} to {max_size} (e.g. 3, 5, 7, ..., 21, ..., {max_size})"
    if isinstance(kernel_size, int):
        sizes = (kernel_size,) * 3
    elif isinstance(kernel_size, (tuple, list)):
        sizes = tuple(kernel_size)
    else:
        raise ValueError(f"kernel_size must be an int or a tuple of 3 ints, got {kernel_size!r}")
    if len(sizes) != 3:
        raise ValueError(f"kernel_size must be an int or a tuple of 3 ints, got {kernel_size!r}")
    for s in sizes:
        if isinstance(s, bool) or not isinstance(s, int) or s < min_size or s > max_size or s % 2 == 0:
            raise ValueError(
                f"invalid kernel size {kernel_size!r}: every size must be one of the {valid}"
            )
    return sizes  # type: ignore[return-value]


def distance_prior(kernel_size: KernelSize, beta: float = 1.0, dtype: torch.dtype = torch.float32,
                   device: Optional[torch.device] = None) -> torch.Tensor:
    """The reciprocal distance-decay prior, shape ``kernel_size`` (kd, kh, kw); 1 at the centre.

    Distances are Euclidean in tap units from the centre tap, so anisotropic kernels
    decay at the same rate per tap along every axis.
    """
    if not beta > 0:
        raise ValueError(f"beta must be > 0, got {beta}")
    sizes = kernel_size_3d(kernel_size)
    axes = [torch.arange(s, dtype=torch.float64, device=device) - s // 2 for s in sizes]
    zz, yy, xx = torch.meshgrid(*axes, indexing="ij")
    dist = torch.sqrt(zz ** 2 + yy ** 2 + xx ** 2)
    return (beta / (dist + beta)).to(dtype)
