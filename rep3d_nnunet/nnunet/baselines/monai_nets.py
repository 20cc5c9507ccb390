"""SwinUNETR, UNETR and SegResNet as nnU-Net v2 trainers, on MONAI's maintained networks.

Each network is built at its paper's setting (the one behind the seeds' parameter
counts) and trained with its paper's optimiser under nnU-Net's poly schedule, data,
augmentation, loss and epochs. None has deep-supervision heads, so deep supervision
is off (as nnU-Net's ``nnUNetTrainerNoDeepSupervision``).
"""
from __future__ import annotations

from typing import List, Sequence

from monai.networks.nets import UNETR, SegResNet, SwinUNETR
from torch import nn

from rep3d_nnunet.nnunet.baselines.common import OptimiserRecipe, nnUNetTrainerBaselineNoDS

# SwinUNETR / UNETR: the MONAI research-contributions BTCV scripts of the papers (AdamW, lr 1e-4,
# weight decay 1e-5; their warm-up cosine schedule is replaced by nnU-Net's poly decay)
TRANSFORMER_RECIPE = OptimiserRecipe("adamw", lr=1e-4, weight_decay=1e-5)


class nnUNetTrainerSwinUNETR(nnUNetTrainerBaselineNoDS):
    """SwinUNETR (Hatamizadeh et al. 2022): feature size 48, depths 2-2-2-2, heads 3-6-12-24, window 7."""
    network_name = "SwinUNETR"
    patch_multiple = 32
    patch_reason = "patch embedding of stride 2 followed by 4 patch-merging steps: 2^5 = 32"
    min_bottleneck_voxels = 2  # its 1/32 bottleneck goes through InstanceNorm
    recipe = TRANSFORMER_RECIPE
    network_kwargs = dict(feature_size=48, depths=(2, 2, 2, 2), num_heads=(3, 6, 12, 24), window_size=7,
                          norm_name="instance", drop_rate=0.0, attn_drop_rate=0.0, dropout_path_rate=0.0,
                          use_checkpoint=False, use_v2=False)
    tiny_network_kwargs = dict(feature_size=12)  # its _tiny smoke-test variant (baselines/tiny.py) only

    @classmethod
    def make_network(cls, patch_size: Sequence[int], num_input_channels: int, num_output_channels: int,
                     enable_deep_supervision: bool) -> nn.Module:
        return SwinUNETR(in_channels=num_input_channels, out_channels=num_output_channels, spatial_dims=3,
                         **cls.network_kwargs)


class nnUNetTrainerUNETR(nnUNetTrainerBaselineNoDS):
    """UNETR (Hatamizadeh et al. 2022): ViT-B/16 encoder (768 hidden, 12 layers/heads), feature size 16.

    Its positional embedding is sized by the input, so the network is built for the
    plans' patch size (nnU-Net's predictor always feeds tiles of exactly that size).
    """
    network_name = "UNETR"
    patch_multiple = 16
    patch_reason = "16^3 patch embedding; the position embedding is built for patch_size / 16 tokens per axis"
    recipe = TRANSFORMER_RECIPE
    network_kwargs = dict(feature_size=16, hidden_size=768, mlp_dim=3072, num_heads=12, proj_type="perceptron",
                          norm_name="instance", conv_block=True, res_block=True, dropout_rate=0.0)
    tiny_network_kwargs = dict(feature_size=8, hidden_size=96, mlp_dim=384, num_heads=4)  # _tiny only

    @classmethod
    def make_network(cls, patch_size: Sequence[int], num_input_channels: int, num_output_channels: int,
                     enable_deep_supervision: bool) -> nn.Module:
        return UNETR(in_channels=num_input_channels, out_channels=num_output_channels,
                     img_size=tuple(int(p) for p in patch_size), spatial_dims=3, **cls.network_kwargs)


class nnUNetTrainerSegResNet(nnUNetTrainerBaselineNoDS):
    """SegResNet (Myronenko 2018, without the VAE branch): MONAI's default, 8 initial filters, 1-2-2-4 blocks.

    Optimiser as the paper: Adam, lr 1e-4, L2 weight regularisation 1e-5, poly decay
    (exponent 0.9, as nnU-Net's); spatial dropout 0.2 after the initial convolution.
    """
    network_name = "SegResNet"
    blocks_down = (1, 2, 2, 4)
    patch_multiple = 2 ** (len(blocks_down) - 1)
    patch_reason = "4 levels with 3 stride-2 downsamplings: 2^3 = 8"
    recipe = OptimiserRecipe("adam", lr=1e-4, weight_decay=1e-5)
    network_kwargs = dict(init_filters=8, blocks_down=blocks_down, blocks_up=(1, 1, 1), dropout_prob=0.2,
                          norm=("GROUP", {"num_groups": 8}), upsample_mode="nontrainable")
    tiny_network_kwargs: dict = {}  # already small (1.2 M parameters)

    @classmethod
    def make_network(cls, patch_size: Sequence[int], num_input_channels: int, num_output_channels: int,
                     enable_deep_supervision: bool) -> nn.Module:
        return SegResNet(spatial_dims=3, in_channels=num_input_channels, out_channels=num_output_channels,
                         **cls.network_kwargs)


MONAI_TRAINERS: List[type] = [nnUNetTrainerSwinUNETR, nnUNetTrainerUNETR, nnUNetTrainerSegResNet]
__all__ = [cls.__name__ for cls in MONAI_TRAINERS]  # the -tr names (star-imported by baselines/__init__)
