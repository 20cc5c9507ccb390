"""Blocks: the Rep3D block, the 3D UX-Net block, and a channels-first LayerNorm."""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn

from rep3d_nnunet.conv import DepthwiseConv3d, make_dwconv
from rep3d_nnunet.deploy import Reparameterizable
from rep3d_nnunet.fold import fuse_bn
from rep3d_nnunet.prior import KernelSize


class LayerNorm3d(nn.LayerNorm):
    """LayerNorm over the channel axis of a (B, C, D, H, W) tensor (ConvNeXt's channels_first LN)."""

    def __init__(self, channels: int, eps: float = 1e-6) -> None:
        super().__init__(channels, eps=eps)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x.movedim(1, -1), self.normalized_shape, self.weight, self.bias, self.eps).movedim(-1, 1)


class Rep3DBlock(Reparameterizable, nn.Module):
    """DWConv(K) -> BatchNorm -> GELU, the conv masked ('lrbm' | 'prior' | 'none') or CSLA.

    With CSLA the branches carry their own BatchNorms (RepLKNet), so the block adds
    none. Deploy form (``deploy=True`` or after ``reparameterize``): one depthwise conv
    with bias (mask, CSLA branches and BN folded) -> GELU.
    """

    def __init__(self, channels: int, kernel_size: KernelSize = 21, mask: str = "lrbm",
                 csla_small_kernel: Optional[int] = None, beta: float = 1.0, per_channel_mask: bool = False,
                 deploy: bool = False) -> None:
        super().__init__()
        self.conv = make_dwconv(channels, kernel_size, mask, csla_small_kernel, bias=False, beta=beta,
                                per_channel_mask=per_channel_mask, deploy=deploy)
        has_own_norm = csla_small_kernel is not None or deploy
        self.norm = nn.Identity() if has_own_norm else nn.BatchNorm3d(channels)
        self.act = nn.GELU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(self.norm(self.conv(x)))

    @torch.no_grad()
    def reparameterize(self) -> "Rep3DBlock":
        """Fold the BatchNorm into the (already deployed) conv; called by ``reparameterize_model``."""
        if isinstance(self.conv, Reparameterizable):
            self.conv = self.conv.reparameterize()
        if isinstance(self.norm, nn.BatchNorm3d):
            conv: DepthwiseConv3d = self.conv
            kernel, bias = fuse_bn(conv.weight, conv.bias, self.norm)
            folded = DepthwiseConv3d(conv.in_channels, conv.kernel_size, bias=True).to(kernel.device)
            folded.weight.copy_(kernel)
            folded.bias.copy_(bias)
            self.conv, self.norm = folded, nn.Identity()
        return self


class UXNetBlock(nn.Module):
    """3D UX-Net block: DWConv(7^3) -> LayerNorm -> per-channel 1x1 expansion x4 -> GELU
    -> per-channel 1x1 compression -> layer scale -> residual.

    The depthwise conv takes any mask mode or CSLA ("3D UX-Net + LRBM" is mask='lrbm').
    Its LayerNorm normalises over channels, so it cannot be folded; deploy folds the
    mask / CSLA branches only.
    """

    def __init__(self, channels: int, kernel_size: KernelSize = 7, mask: str = "none",
                 csla_small_kernel: Optional[int] = None, layer_scale_init: float = 1e-6, beta: float = 1.0,
                 per_channel_mask: bool = False, expansion: int = 4, deploy: bool = False) -> None:
        super().__init__()
        self.conv = make_dwconv(channels, kernel_size, mask, csla_small_kernel, bias=True, beta=beta,
                                per_channel_mask=per_channel_mask, deploy=deploy)
        self.norm = LayerNorm3d(channels)
        self.expand = nn.Conv3d(channels, expansion * channels, 1, groups=channels)
        self.act = nn.GELU()
        self.compress = nn.Conv3d(expansion * channels, channels, 1, groups=channels)
        self.layer_scale = nn.Parameter(torch.full((channels, 1, 1, 1), float(layer_scale_init)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.compress(self.act(self.expand(self.norm(self.conv(x)))))
        return x + self.layer_scale * y
