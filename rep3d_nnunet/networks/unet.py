"""Rep3D encoder + nnU-Net's own decoder: the network nnU-Net builds from Rep3D plans.

Plans name it by import path (``network_class_name =
"rep3d_nnunet.networks.unet.Rep3DUNet"``) and ``get_network_from_plans`` calls
``Rep3DUNet(input_channels=..., num_classes=..., **arch_kwargs, deep_supervision=...)``.
The decoder is dynamic-network-architectures' ``UNetDecoder`` configured exactly as
in nnU-Net's ResEnc/plain U-Nets (plans' conv kernel sizes, InstanceNorm,
LeakyReLU, deep supervision), so a comparison with ResEnc differs only in the encoder.

A network built with ``deploy=True`` is the folded form (plain depthwise convs, no
mask generator); it loads deploy-form weights. Which form is built where, and how the
predictor's deploy network takes the checkpoint's training-form weights (folded on
load), is decided in one place: ``rep3d_nnunet.nnunet.forms``.
"""
from __future__ import annotations

from types import SimpleNamespace
from typing import List, Optional, Sequence, Type, Union

import numpy as np
import torch
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder
from dynamic_network_architectures.initialization.weight_init import InitWeights_He
from torch import nn

from rep3d_nnunet.encoder import Rep3DEncoder
from rep3d_nnunet.prior import kernel_size_3d

IntOrTriple = Union[int, Sequence[int]]


class Rep3DUNet(nn.Module):
    """Rep3D (or 3D UX-Net) encoder with dynamic-network-architectures' ``UNetDecoder``.

    Geometry follows nnU-Net's plans: ``n_stages``, ``features_per_stage``,
    ``strides`` (stage 0's stride is the stem's; nnU-Net plans use 1 there, so the
    stem runs at full resolution), ``kernel_sizes`` (the decoder's conv kernels, as in
    every nnU-Net U-Net), ``dw_kernel_sizes`` (the encoder's depthwise kernel per
    stage, int or 3-tuple, odd), ``n_blocks_per_stage`` (encoder blocks per stage)
    and ``n_conv_per_stage_decoder``. ``block`` / ``mask`` / ``csla_small_kernel``
    pick the variant (see ``rep3d_nnunet.encoder.Rep3DEncoder``). ``deploy``: build the
    folded form (see ``rep3d_nnunet.nnunet.forms`` for loading training-form weights).
    """

    def __init__(self, input_channels: int, n_stages: int, features_per_stage: Sequence[int],
                 strides: Sequence[IntOrTriple], kernel_sizes: Sequence[IntOrTriple],
                 dw_kernel_sizes: Sequence[IntOrTriple], n_blocks_per_stage: Union[int, Sequence[int]],
                 num_classes: int, n_conv_per_stage_decoder: Union[int, Sequence[int]],
                 conv_op: Type[nn.Module] = nn.Conv3d, block: str = "rep3d", mask: str = "lrbm",
                 csla_small_kernel: Optional[int] = None, stem_kernel_size: int = 7, beta: float = 1.0,
                 per_channel_mask: bool = False, conv_bias: bool = True,
                 norm_op: Optional[Type[nn.Module]] = nn.InstanceNorm3d, norm_op_kwargs: Optional[dict] = None,
                 dropout_op: Optional[Type[nn.Module]] = None, dropout_op_kwargs: Optional[dict] = None,
                 nonlin: Optional[Type[nn.Module]] = nn.LeakyReLU, nonlin_kwargs: Optional[dict] = None,
                 deep_supervision: bool = False, deploy: bool = False) -> None:
        super().__init__()
        if conv_op is not nn.Conv3d:
            raise ValueError(f"Rep3DUNet is 3D only (conv_op must be torch.nn.Conv3d, got {conv_op}); "
                             "use a 3d_fullres / 3d_lowres configuration")
        for name, seq in (("features_per_stage", features_per_stage), ("strides", strides),
                          ("kernel_sizes", kernel_sizes), ("dw_kernel_sizes", dw_kernel_sizes)):
            if len(seq) != n_stages:
                raise ValueError(f"{name} needs one entry per stage ({n_stages}), got {len(seq)}: {list(seq)}")
        self.deploy = deploy

        self.encoder = Rep3DEncoder(
            input_channels, features_per_stage, n_blocks_per_stage,
            [kernel_size_3d(k) for k in dw_kernel_sizes], strides, stem_kernel_size=stem_kernel_size,
            block=block, mask=mask, csla_small_kernel=csla_small_kernel, beta=beta,
            per_channel_mask=per_channel_mask, deploy=deploy)
        # UNetDecoder reads its conv settings from the encoder object it is given. Hand it a
        # plain description (not the Rep3D encoder) so its convs are nnU-Net's own (plans'
        # kernel sizes, InstanceNorm, LeakyReLU), and so the state dict has no aliased
        # decoder.encoder.* copy of the encoder.
        decoder_spec = SimpleNamespace(
            output_channels=[int(f) for f in features_per_stage], strides=self.encoder.strides,
            kernel_sizes=[list(kernel_size_3d(k, min_size=1)) for k in kernel_sizes], conv_op=nn.Conv3d,
            conv_bias=conv_bias,
            norm_op=norm_op, norm_op_kwargs=norm_op_kwargs, dropout_op=dropout_op,
            dropout_op_kwargs=dropout_op_kwargs, nonlin=nonlin, nonlin_kwargs=nonlin_kwargs)
        self.decoder = UNetDecoder(decoder_spec, num_classes, n_conv_per_stage_decoder, deep_supervision)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        return self.decoder(self.encoder(x))

    # ---- what nnU-Net's planner and trainer call -------------------------------------------
    def compute_conv_feature_map_size(self, input_size: Sequence[int]) -> np.int64:
        """Activation elements stored for one sample (nnU-Net's planner unit), see ``encoder_feature_map_size``."""
        assert len(input_size) == 3, "give the spatial patch size (x, y, z) only"
        return encoder_feature_map_size(self.encoder, input_size) + \
            self.decoder.compute_conv_feature_map_size(input_size)

    def initialize(self, module: nn.Module) -> None:
        """nnU-Net calls ``network.apply(network.initialize)``: He-init the decoder, as nnU-Net's U-Nets do.

        The encoder keeps the initialisation its modules chose (e.g. the LRBM generator's
        zero-initialised last conv, which makes M == P at the start), so this acts once,
        when ``apply`` reaches the network itself.
        """
        if module is self:
            self.decoder.apply(InitWeights_He(1e-2))


# Weights of the terms below, in nnU-Net's unit: one counted feature map stands for what a conv + norm +
# non-linearity keeps for backward (about 2.3 stored maps, measured for ResEnc M). Calibrated so that
# (Rep3D estimate / ResEnc M estimate) tracks (Rep3D measured peak / ResEnc M measured peak) of a real
# training step at the same patch (scripts/measure_memory.py, docs/memory.md).
# the FFT path keeps the input spectrum (~prod(N) floats per sample) and the kernel's (once per batch, half a
# tensor per sample at batch 2): ~1.5 stored tensors, ~0.7 unit (fitted: 0.7 puts 48-80^3 at 0.98-1.01)
SPECTRUM_WEIGHT = 0.7
SHARED_WEIGHT = 0.5     # tensors made once per batch (masked kernel), per sample at nnU-Net's reference batch 2
UXNET_MLP_WEIGHT = 4.0  # 3D UX-Net's LayerNorm + x4 MLP keep ~9 maps beyond the depthwise conv: ~4 units


def fft_padded_voxels(spatial: Sequence[int], kernel: Sequence[int]) -> int:
    """Voxels of the transform the FFT path runs for a depthwise conv (kernel cropped as the op crops it)."""
    from rep3d_nnunet.ops.dispatch import crop_slices
    from rep3d_nnunet.ops.fft_dwconv import fft_sizes

    spatial, kernel = tuple(int(v) for v in spatial), tuple(int(v) for v in kernel)
    cropped = tuple(sl.stop - sl.start for sl in crop_slices(spatial, kernel))
    return int(np.prod(fft_sizes(spatial, cropped), dtype=np.int64))


def block_feature_map_size(encoder: Rep3DEncoder, channels: int, spatial: Sequence[int],
                           kernel: Sequence[int]) -> float:
    """One encoder block's estimate (per sample, nnU-Net's unit) at a stage of ``spatial`` size.

    - the depthwise conv's output (its BatchNorm and GELU ride along, as nnU-Net counts);
    - where the GPU's training path is the FFT (``ops.dispatch.choose_path``: large kernels on large
      maps), the input spectrum kept for backward: ``SPECTRUM_WEIGHT`` x C x the transform's voxels
      (``fft_padded_voxels``);
    - a masked kernel keeps the effective kernel W * M (once per batch: ``SHARED_WEIGHT``);
    - CSLA keeps its second branch's output; 3D UX-Net blocks their x4 MLP: ``UXNET_MLP_WEIGHT`` units
      (LayerNorm, 4C expansion, GELU, compression: ~9 stored maps, measured).
    """
    from rep3d_nnunet.ops.dispatch import choose_path, crop_slices

    vox = int(np.prod(spatial, dtype=np.int64))
    k3 = [int(k) for k in kernel_size_3d(kernel)]
    spatial = tuple(int(v) for v in spatial)
    cropped = tuple(sl.stop - sl.start for sl in crop_slices(spatial, tuple(k3)))
    total = float(channels * vox)
    # the GPU's training path decides (the planner plans GPU memory); the direct path keeps no padded copy
    if choose_path(spatial, cropped, torch.device("cuda"), backward=True) == "fft":
        total += SPECTRUM_WEIGHT * channels * fft_padded_voxels(spatial, k3)
    if encoder.mask != "none":
        total += SHARED_WEIGHT * channels * float(np.prod(cropped))
    if encoder.csla_small_kernel is not None:
        total += channels * vox
    if encoder.block == "uxnet":
        total += UXNET_MLP_WEIGHT * channels * vox
    return total


def encoder_feature_map_size(encoder: Rep3DEncoder, input_size: Sequence[int]) -> np.int64:
    """Elements of the activations the encoder keeps for backward, per sample (nnU-Net's planner unit).

    Per stage: the downsampling conv's output and the stage's output norm (LayerNorms ride along,
    as norms do in dynamic-network-architectures' count), plus ``block_feature_map_size`` per block.
    Measured against a real training step in docs/memory.md; the large-kernel terms are what make the
    planner choose smaller patches (or batches) for Rep3D than for ResEnc at the same target.
    """
    size = np.array(input_size, dtype=np.int64)
    total = 0.0
    for c, depth, k, s in zip(encoder.features, encoder.depths, encoder.kernel_sizes, encoder.strides):
        size = size // np.array(s)
        vox = int(np.prod(size))
        total += 2 * c * vox  # downsampling conv (+ its LayerNorm) and the stage output norm
        total += depth * block_feature_map_size(encoder, c, size, k)
    return np.int64(round(total))
