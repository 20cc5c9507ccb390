"""Depthwise large-kernel conv modules: plain (deploy form), mask-re-parameterised, CSLA.

Every module here routes its convolution through ``rep3d_nnunet.ops.dwconv3d``.
Training-form modules implement ``reparameterize() -> nn.Module`` returning their
deploy form; ``rep3d_nnunet.reparameterize_model`` walks a model and swaps them.
"""
from __future__ import annotations

import math
from typing import Optional

import torch
from torch import nn

from rep3d_nnunet.deploy import Reparameterizable
from rep3d_nnunet.fold import fuse_bn, pad_kernel_to
from rep3d_nnunet.mask import KernelMask
from rep3d_nnunet.ops import dwconv3d
from rep3d_nnunet.prior import KernelSize, kernel_size_3d


def check_input(x: torch.Tensor, channels: int, who: str) -> None:
    """Raise ``ValueError`` unless x is (batch, channels, depth, height, width)."""
    if x.dim() != 5:
        raise ValueError(f"{who} expects a 5D input (batch, channels, depth, height, width), "
                         f"got shape {tuple(x.shape)}; add the missing batch/channel axes")
    if x.shape[1] != channels:
        raise ValueError(f"{who} was built for {channels} channels but the input has {x.shape[1]} "
                         f"(shape {tuple(x.shape)})")


class DepthwiseConv3d(nn.Conv3d):
    """A plain ``nn.Conv3d`` (depthwise, 'same' padding) whose forward uses the fast op.

    This is the deploy form of every re-parameterised conv: same state dict as
    ``nn.Conv3d(C, C, k, padding=k//2, groups=C)``.
    """

    def __init__(self, channels: int, kernel_size: KernelSize, bias: bool = False,
                 max_kernel_size: int = 31) -> None:
        k = kernel_size_3d(kernel_size, min_size=1, max_size=max_kernel_size)
        super().__init__(channels, channels, k, padding=tuple(s // 2 for s in k), groups=channels, bias=bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.in_channels, type(self).__name__)
        return dwconv3d(x, self.weight, self.bias)


class ReparamDWConv3d(Reparameterizable, nn.Module):
    """Depthwise conv with an element-wise re-parameterised kernel: conv3d(x, W * M).

    W (``self.weight``) is the trainable leaf; W * M is recomputed inside autograd at
    every forward (no parameter re-wrapping, no in-place writes), so the optimiser's
    W receives dL/dW = M * dL/dW_eff and masks never compound. The mask is applied in
    ``train()`` and ``eval()`` alike; only ``reparameterize()`` folds it.
    """

    def __init__(self, channels: int, kernel_size: KernelSize = 21, mask: str = "lrbm", beta: float = 1.0,
                 per_channel_mask: bool = False, bias: bool = False, generator_channels: int = 8) -> None:
        super().__init__()
        self.channels = channels
        self.kernel_size = kernel_size_3d(kernel_size)
        self.weight = nn.Parameter(torch.empty(channels, 1, *self.kernel_size))
        self.bias = nn.Parameter(torch.empty(channels)) if bias else None
        self.mask = KernelMask(channels, self.kernel_size, mask, beta, per_channel_mask, generator_channels)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        # nn.Conv3d's default initialisation, so 'none' is exactly a plain conv
        nn.init.kaiming_uniform_(self.weight, a=math.sqrt(5))
        if self.bias is not None:
            bound = 1 / math.sqrt(self.weight[0].numel())
            nn.init.uniform_(self.bias, -bound, bound)

    def effective_weight(self) -> torch.Tensor:
        """W (.) M (W when the mask mode is 'none')."""
        m = self.mask()
        return self.weight if m is None else self.weight * m

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels, type(self).__name__)
        return dwconv3d(x, self.effective_weight(), self.bias)

    @torch.no_grad()
    def reparameterize(self) -> DepthwiseConv3d:
        """The deploy form: a plain depthwise conv holding W (.) M."""
        conv = DepthwiseConv3d(self.channels, self.kernel_size, bias=self.bias is not None)
        conv.weight.copy_(self.effective_weight())
        if self.bias is not None:
            conv.bias.copy_(self.bias)
        return conv.to(self.weight.device)

    def extra_repr(self) -> str:
        return f"{self.channels}, kernel_size={self.kernel_size}, bias={self.bias is not None}"


class CSLADWConv3d(Reparameterizable, nn.Module):
    """CSLA structural re-parameterisation (RepLKNet style): BN(DW_K(x)) + BN(DW_k(x)).

    The small branch only overlaps the centre of the large one, which gives central
    taps two gradient paths: the implicit learning-rate field Rep3D makes explicit.
    Folds into one K^3 depthwise kernel plus bias at deploy.
    """

    def __init__(self, channels: int, kernel_size: KernelSize = 21, small_kernel_size: KernelSize = 3) -> None:
        super().__init__()
        self.channels = channels
        self.kernel_size = kernel_size_3d(kernel_size)
        # where a stage's large kernel is itself small (full-resolution stages, or kernels
        # clipped to tiny feature maps) the small branch is clipped to it per axis, so the
        # same CSLA setting works at every stage
        small = tuple(min(s, k) for s, k in zip(kernel_size_3d(small_kernel_size), self.kernel_size))
        self.large = DepthwiseConv3d(channels, self.kernel_size)
        self.large_bn = nn.BatchNorm3d(channels)
        self.small = DepthwiseConv3d(channels, small)
        self.small_bn = nn.BatchNorm3d(channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_input(x, self.channels, type(self).__name__)
        return self.large_bn(self.large(x)) + self.small_bn(self.small(x))

    @torch.no_grad()
    def reparameterize(self) -> DepthwiseConv3d:
        """One K^3 depthwise conv with bias, equal to the eval-mode two-branch output."""
        k_large, b_large = fuse_bn(self.large.weight, None, self.large_bn)
        k_small, b_small = fuse_bn(self.small.weight, None, self.small_bn)
        conv = DepthwiseConv3d(self.channels, self.kernel_size, bias=True)
        conv.weight.copy_(k_large + pad_kernel_to(k_small, self.kernel_size))
        conv.bias.copy_(b_large + b_small)
        return conv.to(self.large.weight.device)


def make_dwconv(channels: int, kernel_size: KernelSize, mask: str = "lrbm",
                csla_small_kernel: Optional[int] = None, bias: bool = False, beta: float = 1.0,
                per_channel_mask: bool = False, deploy: bool = False) -> nn.Module:
    """Build the training-form (or, with ``deploy=True``, the deploy-form) depthwise conv of a block.

    Every deploy form carries a bias: it receives the folded BatchNorm / CSLA shifts.
    """
    if csla_small_kernel is not None and mask != "none":
        raise ValueError(f"CSLA (csla_small_kernel={csla_small_kernel}) is an alternative to masking: "
                         f"use mask='none' with it, not mask={mask!r}")
    if deploy:
        return DepthwiseConv3d(channels, kernel_size_3d(kernel_size), bias=True)
    if csla_small_kernel is not None:
        return CSLADWConv3d(channels, kernel_size, csla_small_kernel)
    return ReparamDWConv3d(channels, kernel_size, mask, beta, per_channel_mask, bias=bias)
