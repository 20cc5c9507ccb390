"""The paper-faithful Rep3D network: Rep3D encoder + the authors' UNETR-style decoder.

The decoder mirrors 3D UX-Net (which the authors' code follows): MONAI's
``UnetrBasicBlock`` on the input and on each encoder stage, a 768-channel
bottleneck on the deepest stage, ``UnetrUpBlock`` upsampling with skips, and a 1x1
output. Use it to check our architecture against the paper (65.8 M parameters for
1 input channel and 16 classes); inside nnU-Net use ``networks.unet`` instead, whose
decoder is nnU-Net's own.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
from monai.networks.blocks import UnetOutBlock, UnetrBasicBlock, UnetrUpBlock
from torch import nn

from rep3d_nnunet.encoder import Rep3DEncoder
from rep3d_nnunet.prior import KernelSize


class Rep3DPaperNet(nn.Module):
    """Rep3D as published: stride-2 stem, 4 stages, UNETR-style decoder at full resolution."""

    def __init__(self, in_channels: int = 1, out_channels: int = 16,
                 features: Sequence[int] = (48, 96, 192, 384), depths: Sequence[int] = (2, 2, 2, 2),
                 kernel_size: KernelSize = 21, block: str = "rep3d", mask: str = "lrbm",
                 csla_small_kernel: Optional[int] = None, hidden_size: int = 768, norm_name: str = "instance",
                 res_block: bool = True, deploy: bool = False) -> None:
        super().__init__()
        if len(features) != 4:
            raise ValueError(f"the paper network has 4 stages; got features={list(features)}")
        f = list(features)
        self.encoder = Rep3DEncoder(in_channels, f, depths, kernel_size, strides=2, stem_kernel_size=7,
                                    block=block, mask=mask, csla_small_kernel=csla_small_kernel, deploy=deploy)

        def basic(cin: int, cout: int) -> UnetrBasicBlock:
            return UnetrBasicBlock(3, cin, cout, kernel_size=3, stride=1, norm_name=norm_name, res_block=res_block)

        def up(cin: int, cout: int) -> UnetrUpBlock:
            return UnetrUpBlock(3, cin, cout, kernel_size=3, upsample_kernel_size=2, norm_name=norm_name,
                                res_block=res_block)

        self.skip0 = basic(in_channels, f[0])       # full resolution, from the input
        self.skips = nn.ModuleList([basic(f[i], f[i + 1]) for i in range(3)])  # stages 1..3 -> wider skips
        self.bottleneck = basic(f[3], hidden_size)
        self.ups = nn.ModuleList([up(hidden_size, f[3]), up(f[3], f[2]), up(f[2], f[1]), up(f[1], f[0])])
        self.head_block = basic(f[0], f[0])
        self.head = UnetOutBlock(3, f[0], out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        stages = self.encoder(x)                      # strides 2, 4, 8, 16
        skips = [self.skip0(x)] + [blk(s) for blk, s in zip(self.skips, stages[:3])]
        y = self.bottleneck(stages[3])
        for up, skip in zip(self.ups, reversed(skips)):
            y = up(y, skip)
        return self.head(self.head_block(y))
