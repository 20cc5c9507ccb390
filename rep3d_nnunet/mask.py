"""The LRBM mask M over a depthwise kernel, and its modes.

Modes (``MASK_MODES``), with P the distance prior, g = f_theta(P) the generator's raw
output and g_c its value at the centre tap (per mask channel):

- ``'lrbm'`` (the default, bounded): ``M = 2 P sigmoid(g - g_c)`` = ``P + P tanh((g - g_c) / 2)``.
  The centre is pinned at M_c = P_c = 1, every tap has 0 < M < 2P, and M == P at
  initialisation (the generator's last conv starts at zero).
- ``'lrbm_power'``: ``M = P ** (1 + tanh(g - g_c))``: centre 1, P^2 < M < 1, M == P at init.
- ``'lrbm_additive'``: ``M = P + g``, unbounded (rep3d-nnunet <= 0.1's 'lrbm'). An ablation:
  with a BatchNorm after the conv nothing holds M's scale and it drifts (docs/method.md).
- ``'prior'``: M = P, fixed. ``'none'``: no mask (plain large kernel).

Why the centre pin: BN after the conv makes the block's output invariant to the scale
of W (.) M, so no gradient restrains M's overall size; pinning M_c = 1 removes exactly
that free direction. The mask is computed in fp32 even under autocast, so the kernel
folded at deploy (in fp32) equals the one trained with.
"""
from __future__ import annotations

from typing import Any, Optional

import torch
from torch import nn

from rep3d_nnunet.ops import dwconv3d
from rep3d_nnunet.prior import KernelSize, distance_prior, kernel_size_3d

# order matters: a checkpoint records a mode by its index here (``mode_record``); append, never reorder
MASK_MODES = ("lrbm", "lrbm_power", "lrbm_additive", "prior", "none")
LEARNED_MODES = ("lrbm", "lrbm_power", "lrbm_additive")
# the meaning a checkpoint without a mask-mode record has: rep3d-nnunet <= 0.1 only had the additive form
LEGACY_MODE = "lrbm_additive"
MASK_RECORD_VERSION = 1


def check_mask_mode(mask: str) -> str:
    """Return ``mask`` if it is a known mode, else raise ``ValueError`` listing the modes."""
    if mask not in MASK_MODES:
        raise ValueError(f"unknown mask mode {mask!r}; choose one of {MASK_MODES} ('lrbm' = Rep3D's "
                         "learned mask, bounded and centre-pinned; 'lrbm_power' = bounded power form; "
                         "'lrbm_additive' = unbounded ablation; 'prior' = fixed prior; 'none' = plain large kernel)")
    return mask


class LRBMGenerator(nn.Module):
    """f_theta: conv(k7, 'same') -> per-channel norm over the kernel's extent -> sigmoid -> conv(k7, 'same').

    Input is the prior as a (1, 1, kd, kh, kw) volume; output is the raw map g with
    ``out_channels`` channels (1 = shared by all channels of the block, C = one mask
    per channel); ``KernelMask`` turns g into M according to its mode.

    - 'same' padding keeps g the size of the kernel (the authors' padding 7 grew it to K+8).
    - The norm is a GroupNorm with one group per channel, i.e. it normalises each
      hidden channel over the K^3 taps; the authors' LayerNorm over a singleton
      channel returned its bias and collapsed the generator to a constant.
    - The last conv is zero-initialised, so g == 0 and M == P exactly at initialisation
      (LRBM starts where the fixed prior stands). Consequence: at that exact point the
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


def mask_from_generator(prior: torch.Tensor, g: torch.Tensor, mode: str) -> torch.Tensor:
    """M from the prior (1, 1, k, k, k) and the generator's raw map g (1, C, k, k, k) for a learned mode.

    Pure tensor maths without data-dependent branching (traceable by ``torch.compile``).
    """
    if mode == "lrbm_additive":
        return prior + g
    kd, kh, kw = g.shape[2:]
    # each mask channel pins its own centre: g - g_c is 0 there, whatever g learned
    g = g - g[:, :, kd // 2:kd // 2 + 1, kh // 2:kh // 2 + 1, kw // 2:kw // 2 + 1]
    if mode == "lrbm":
        # 2 P sigmoid(0) == P exactly (sigmoid(0) = 0.5 and x2 are exact in floating point)
        return 2 * prior * torch.sigmoid(g)
    if mode == "lrbm_power":
        return prior ** (1 + torch.tanh(g))
    raise ValueError(f"mask mode {mode!r} has no generator; learned modes are {LEARNED_MODES}")


class KernelMask(nn.Module):
    """Computes the mask M for one depthwise kernel, shape (1 or C, 1, kd, kh, kw).

    See the module docstring for the modes; ``'none'`` has no mask (``forward`` returns
    None). The prior is a non-persistent buffer (a pure function of kernel size and
    beta). The mode is recorded in the state dict (``<prefix>_extra_state``), and a
    state dict whose generator weights were trained under another mode (or, without a
    record, under rep3d-nnunet <= 0.1's unbounded form) is refused with a clear error:
    the same parameter names mean another mask there.
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
        if self.mode in LEARNED_MODES:
            self.generator = LRBMGenerator(channels if per_channel else 1, hidden_channels)

    def forward(self) -> Optional[torch.Tensor]:
        if self.mode == "none":
            return None
        if self.generator is None:
            return self.prior
        # fp32 even inside autocast: the deploy fold computes M in fp32, and bf16 rounding of
        # the generator's hidden maps would make the trained and the folded kernel differ
        with torch.autocast(device_type=self.prior.device.type, enabled=False):
            m = mask_from_generator(self.prior, self.generator(self.prior), self.mode)
        # (1, C_out, k, k, k) -> (C_out, 1, k, k, k), broadcastable over the depthwise weight
        return m.transpose(0, 1)

    # ---- the mode record in checkpoints ----------------------------------------------------
    # A small int tensor, not a dict: nnU-Net's load_pretrained_weights compares .shape of every entry.
    def get_extra_state(self) -> torch.Tensor:
        return mode_record(self.mode)

    def set_extra_state(self, state: Any) -> None:
        pass  # checked in _load_from_state_dict, which knows the prefix (for the message)

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                              error_msgs) -> None:
        key = prefix + "_extra_state"
        if key in state_dict:
            saved = recorded_mode(state_dict[key])
            if saved != self.mode:
                raise RuntimeError(mask_mode_mismatch_message(prefix, saved, self.mode, recorded=True))
        elif any(k.startswith(prefix + "generator.") for k in state_dict):
            # generator weights without a record: rep3d-nnunet <= 0.1, whose only learned mask was additive
            if self.mode != LEGACY_MODE:
                raise RuntimeError(mask_mode_mismatch_message(prefix, LEGACY_MODE, self.mode, recorded=False))
            state_dict = {**state_dict, key: self.get_extra_state()}
        else:
            # no record and no generator: a 'prior' / 'none' mask of <= 0.1, whose meaning is unchanged
            # (or a learned mode missing its weights, which the strict key check reports)
            state_dict = {**state_dict, key: self.get_extra_state()}
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys, unexpected_keys,
                                      error_msgs)

    def extra_repr(self) -> str:
        return f"mode={self.mode}, kernel_size={self.kernel_size}, beta={self.beta}, per_channel={self.per_channel}"


def mode_record(mode: str) -> torch.Tensor:
    """The checkpoint record of a mask mode: int64 tensor [record version, index in MASK_MODES]."""
    return torch.tensor([MASK_RECORD_VERSION, MASK_MODES.index(check_mask_mode(mode))], dtype=torch.int64)


def recorded_mode(record: Any) -> str:
    """The mask mode a checkpoint record (``mode_record``) names; ``ValueError`` if it is not one."""
    if isinstance(record, torch.Tensor) and record.shape == (2,) and int(record[0]) == MASK_RECORD_VERSION \
            and 0 <= int(record[1]) < len(MASK_MODES):
        return MASK_MODES[int(record[1])]
    raise ValueError(f"unreadable mask-mode record {record!r}: written by a newer rep3d-nnunet? "
                     "Upgrade rep3d-nnunet to load this checkpoint.")


def mask_mode_mismatch_message(prefix: str, saved: Optional[str], wanted: str, recorded: bool) -> str:
    """The error for weights trained under another mask mode than the network being loaded into."""
    where = prefix.rstrip(".") or "mask"
    if not recorded:
        return (f"{where}: these LRBM generator weights carry no mask-mode record, so they were trained with the "
                f"unbounded (additive) LRBM of rep3d-nnunet <= 0.1, M = P + f(P); this network uses mask "
                f"{wanted!r}, where the same weights mean another mask. Build the network with mask "
                f"'lrbm_additive' to use them (e.g. a trainer subclass with "
                f"variant = Rep3DVariant(mask='lrbm_additive'), or Rep3DUNet(..., mask='lrbm_additive')), "
                f"or retrain with the current (bounded) 'lrbm'.")
    return (f"{where}: these weights were trained with mask mode {saved!r} but this network uses {wanted!r}; "
            f"the generator's weights mean a different mask under each mode. Build the network with "
            f"mask {saved!r} (e.g. a trainer subclass with variant = Rep3DVariant(mask={saved!r})).")
