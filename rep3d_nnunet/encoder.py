"""The Rep3D / 3D UX-Net hierarchical encoder (the paper's backbone, every choice configurable)."""
from __future__ import annotations

from typing import List, Optional, Sequence, Tuple, Union

import torch
from torch import nn

from rep3d_nnunet.blocks import LayerNorm3d, Rep3DBlock, UXNetBlock
from rep3d_nnunet.mask import check_mask_mode
from rep3d_nnunet.prior import KernelSize

Stride = Union[int, Sequence[int]]
BLOCKS = {"rep3d": Rep3DBlock, "uxnet": UXNetBlock}


def _per_stage(value, n_stages: int, name: str) -> list:
    """An int applies to every stage; a sequence gives one entry per stage (int or 3-tuple each)."""
    values = [value] * n_stages if isinstance(value, int) else list(value)
    if len(values) != n_stages:
        raise ValueError(f"{name} must be an int or one entry per stage: got {len(values)} entries "
                         f"for {n_stages} stages ({value!r})")
    return values


def _stride_3d(stride: Stride) -> Tuple[int, int, int]:
    s = (stride,) * 3 if isinstance(stride, int) else tuple(int(v) for v in stride)
    if len(s) != 3 or any(v < 1 for v in s):
        raise ValueError(f"a stride must be a positive int or 3 positive ints, got {stride!r}")
    return s  # type: ignore[return-value]


class Rep3DEncoder(nn.Module):
    """Stem + stages of large-kernel blocks; returns one feature map per stage.

    Stage i = downsampling, then ``depths[i]`` blocks. Stage 0's downsampling is the
    stem, Conv3d(``stem_kernel_size``, stride ``strides[0]``) + LayerNorm; later
    stages use LayerNorm + Conv3d(kernel = stride = ``strides[i]``) (the paper's k2 s2;
    anisotropic strides such as (1, 2, 2) work). ``out_norm`` adds 3D UX-Net's
    LayerNorm on every stage output.

    ``depths``, ``kernel_sizes`` and ``strides`` take an int (every stage) or one entry
    per stage; an anisotropic kernel or stride is a 3-tuple inside that list.

    Defaults are the paper's: 1 -> [48, 96, 192, 384], depths [2, 2, 2, 2], stem k7 s2,
    21^3 Rep3D blocks with LRBM.
    """

    def __init__(self, in_channels: int = 1, features: Sequence[int] = (48, 96, 192, 384),
                 depths: Union[int, Sequence[int]] = (2, 2, 2, 2),
                 kernel_sizes: Union[KernelSize, Sequence[KernelSize]] = 21,
                 strides: Union[Stride, Sequence[Stride]] = 2, stem_kernel_size: int = 7,
                 block: str = "rep3d", mask: str = "lrbm", csla_small_kernel: Optional[int] = None,
                 beta: float = 1.0, per_channel_mask: bool = False, out_norm: bool = True,
                 deploy: bool = False) -> None:
        super().__init__()
        if block not in BLOCKS:
            raise ValueError(f"unknown block {block!r}; choose one of {tuple(BLOCKS)}")
        check_mask_mode(mask)
        n = len(features)
        self.features = [int(f) for f in features]
        self.depths = [int(d) for d in _per_stage(depths, n, "depths")]
        self.kernel_sizes = _per_stage(kernel_sizes, n, "kernel_sizes")
        self.strides = [_stride_3d(s) for s in _per_stage(strides, n, "strides")]
        self.block, self.mask, self.csla_small_kernel = block, mask, csla_small_kernel

        self.downsample = nn.ModuleList()
        self.stages = nn.ModuleList()
        self.out_norms = nn.ModuleList()
        prev = in_channels
        for i, (c, depth, k, s) in enumerate(zip(self.features, self.depths, self.kernel_sizes, self.strides)):
            if i == 0:
                down = nn.Sequential(nn.Conv3d(prev, c, stem_kernel_size, stride=s, padding=stem_kernel_size // 2),
                                     LayerNorm3d(c))
            else:
                down = nn.Sequential(LayerNorm3d(prev), nn.Conv3d(prev, c, kernel_size=s, stride=s))
            self.downsample.append(down)
            self.stages.append(nn.Sequential(*[
                BLOCKS[block](c, k, mask=mask, csla_small_kernel=csla_small_kernel, beta=beta,
                              per_channel_mask=per_channel_mask, deploy=deploy)
                for _ in range(depth)]))
            self.out_norms.append(LayerNorm3d(c) if out_norm else nn.Identity())
            prev = c

    def forward(self, x: torch.Tensor) -> List[torch.Tensor]:
        if x.dim() != 5:
            raise ValueError(f"{type(self).__name__} expects a 5D input (batch, channels, depth, height, width), "
                             f"got shape {tuple(x.shape)}")
        outs = []
        for down, stage, norm in zip(self.downsample, self.stages, self.out_norms):
            x = stage(down(x))
            outs.append(norm(x))
        return outs
