"""The LRBM mask generator f_theta and the mask modes M = P + f_theta(P) | P | none."""
from __future__ import annotations

from typing import Optional

import torch
from torch import nn

from rep3d_nnunet.ops import dwconv3d
from rep3d_nnunet.prior import KernelSize, distance_prior, kernel_size_3d

MASK_MODES = ("lrbm", "prior", "none")


def check_mask_mode(mask: str) -> str:
    """Return ``mask`` if it is a known mode, else raise ``ValueError`` listing the modes."""
    if mask not in MASK_MODES:
        raise ValueError(f"unknown mask mode {mask!r}; choose one of {MASK_MODES} "
                         "('lrbm' = Rep3D, 'prior' = fixed prior, 'none' = plain large kernel)")
    return mask


class LRBMGenerator(nn.Module):
    """f_theta: conv(k7, 'same') -> per-channel norm over the kernel's extent -> sigmoid -> conv(k7, 'same').

    Input is the prior as a (1, 1, kd, kh, kw) volume; output is the additive
    correction f_theta(P) with ``out_channels`` channels (1 = shared by all channels
    of the block, C = one mask per channel).

    - 'same' padding keeps f_theta(P) the size of the kernel (the authors' padding 7
      grew it to K+8).
    - The norm is a GroupNorm with one group per channel, i.e. it normalises each
      hidden channel over the K^3 taps; the authors' LayerNorm over a singleton
      channel returned its bias and collapsed the generator to a constant.
    - The last conv is zero-initialised, so M == P exactly at initialisation (LRBM
      starts where the fixed prior stands). Consequence: at that exact point the
      gradients of the first conv and the norm are zero (they flow through the last
      conv's weights); they become non-zero after the first optimiser step.
    """

    def __init__(self, out_channels: int = 1, hidden_channels: int = 8, generator_kernel_size: int = 7) -> None:
        super().__init__()
        if generator_kernel_size % 2 == 0 or generator_kernel_size < 1:
            raise ValueError(f"generator_kernel_size must be a positive odd integer, got {generator_kernel_size}")
        pad = generator_kernel_size // 2
        # no bias: the per-channel norm right after it would cancel any bias exactly
        self.conv1 = nn.Conv3d(1, hidden_channels, generator_kernel_size, padding=pad, bias=False)
        self.norm = nn.GroupNorm(hidden_channels, hidden_channels)
        self.gate = nn.Sigmoid()
        self.conv2 = nn.Conv3d(hidden_channels, out_channels, generator_kernel_size, padding=pad)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)

    def forward(self, prior: torch.Tensor) -> torch.Tensor:
        # Same maths as conv2(gate(norm(conv1(prior)))), but both convs are run as
        # depthwise convs through the package's fast op: PyTorch's CPU backward of a
        # dense conv with 1 input or 1 output channel was ~0.4 s per block at K=21.
        hidden = self.conv1.out_channels
        h = dwconv3d(prior.expand(-1, hidden, -1, -1, -1), self.conv1.weight)
        h = self.gate(self.norm(h))
        out_c = self.conv2.out_channels
        # conv2[o] = sum_c conv(h_c, W2[o, c]): one depthwise conv over (o, c) pairs, then sum over c
        w2 = self.conv2.weight.reshape(out_c * hidden, 1, *self.conv2.kernel_size)
        y = dwconv3d(h.repeat(1, out_c, 1, 1, 1), w2).unflatten(1, (out_c, hidden)).sum(2)
        return y + self.conv2.bias.reshape(1, -1, 1, 1, 1)


class KernelMask(nn.Module):
    """Computes the mask M for one depthwise kernel, shape (1 or C, 1, kd, kh, kw).

    ``mask='prior'`` returns the fixed prior P; ``'lrbm'`` returns P + f_theta(P);
    ``'none'`` has no mask (``forward`` returns None). The prior is a non-persistent
    buffer: it is a pure function of (kernel size, beta), so state dicts don't carry it.
    """

    def __init__(self, channels: int, kernel_size: KernelSize, mask: str = "lrbm", beta: float = 1.0,
                 per_channel: bool = False, hidden_channels: int = 8) -> None:
        super().__init__()
        self.mode = check_mask_mode(mask)
        self.kernel_size = kernel_size_3d(kernel_size)
        self.beta = beta
        self.per_channel = per_channel
        if self.mode != "none":
            prior = distance_prior(self.kernel_size, beta)[None, None]
            self.register_buffer("prior", prior, persistent=False)
        self.generator: Optional[LRBMGenerator] = None
        if self.mode == "lrbm":
            self.generator = LRBMGenerator(channels if per_channel else 1, hidden_channels)

    def forward(self) -> Optional[torch.Tensor]:
        if self.mode == "none":
            return None
        if self.generator is None:
            return self.prior
        # (1, C_out, k, k, k) -> (C_out, 1, k, k, k), broadcastable over the depthwise weight
        return (self.prior + self.generator(self.prior)).transpose(0, 1)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, kernel_size={self.kernel_size}, beta={self.beta}, per_channel={self.per_channel}"
