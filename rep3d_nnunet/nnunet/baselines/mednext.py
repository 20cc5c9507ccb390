"""MedNeXt S/B/M/L (kernel 3 and 5) as nnU-Net v2 trainers, on MONAI's maintained implementation.

Network: ``monai.networks.nets.mednext.create_mednext`` (the paper's S/B/M/L
configurations: 32 base channels, residual blocks and resampling, GroupNorm), always
built with its deep-supervision heads so checkpoints load with supervision on or off.

Deep supervision: MedNeXt has 4 isotropic stride-2 stages, so its 5 outputs sit at
scales 1, 1/2, 1/4, 1/8, 1/16 whatever nnU-Net's plans say about their own U-Net;
the trainer declares those scales (the targets are downsampled to match) and nnU-Net
weights them 1, 1/2, 1/4, 1/8, 0 (normalised) -- the weighting of the official
nnU-Net v1 MedNeXt trainers. MONAI returns the extra outputs only in training mode;
``MedNeXtForNnUNet`` collects them from the heads themselves, so nnU-Net's
``set_deep_supervision_enabled`` decides, not ``model.train()``.

Recipe (official ``nnUNetTrainerV2_Optim_and_LR``): AdamW, lr 1e-3, eps 1e-4, weight
decay 3e-5 (nnU-Net's), poly decay over nnU-Net's 1000 x 250 iterations.

UpKern: ``nnUNetTrainerMedNeXt<S|B|M|L>_k5_UpKern`` reads a trained k3 checkpoint
from ``$MEDNEXT_UPKERN_CHECKPOINT`` and resamples it into the k5 network before the
first epoch (``upkern.py``). nnU-Net's ``-pretrained_weights`` cannot do this (it
demands equal shapes).
"""
from __future__ import annotations

import os
from typing import List, Sequence, Union

import torch
from monai.networks.nets.mednext import create_mednext
from torch import nn
from torch._dynamo import OptimizedModule

from monai.networks.blocks.mednext_block import MedNeXtBlock

from rep3d_nnunet.conv import DepthwiseConv3d
from rep3d_nnunet.nnunet.baselines.common import OptimiserRecipe, nnUNetTrainerBaseline
from rep3d_nnunet.nnunet.baselines.upkern import upkern_state_dict
from rep3d_nnunet.nnunet.trainers.base import read_checkpoint

UPKERN_ENV = "MEDNEXT_UPKERN_CHECKPOINT"
N_DOWNSAMPLINGS = 4  # MONAI's create_mednext: blocks_down has 4 entries, each followed by a stride-2 block
DS_SCALES = [[1.0 / 2 ** i] * 3 for i in range(N_DOWNSAMPLINGS + 1)]


def _is_same_depthwise(conv: nn.Module) -> bool:
    """A plain stride-1 depthwise ``nn.Conv3d`` with odd kernels and 'same' padding (what dwconv3d computes)."""
    return (type(conv) is nn.Conv3d and conv.groups == conv.in_channels == conv.out_channels
            and conv.stride == (1, 1, 1) and conv.dilation == (1, 1, 1) and conv.padding_mode == "zeros"
            and all(k % 2 == 1 for k in conv.kernel_size) and conv.padding == tuple(k // 2 for k in conv.kernel_size))


def use_fast_depthwise(network: nn.Module) -> int:
    """Route the stride-1 depthwise convs of MONAI's MedNeXt blocks through ``rep3d_nnunet.ops.dwconv3d``.

    Each such ``conv1`` becomes a ``DepthwiseConv3d`` holding the *same* parameters, so
    the state dict (keys, shapes, values), the parameter count, UpKern and checkpoints are
    unchanged; only the convolution's implementation differs (PyTorch's CPU depthwise
    backward is slow). Returns how many convs were routed.
    """
    n = 0
    for block in network.modules():
        if isinstance(block, MedNeXtBlock) and _is_same_depthwise(block.conv1):
            old = block.conv1
            fast = DepthwiseConv3d(old.in_channels, old.kernel_size, bias=old.bias is not None)
            fast.weight, fast.bias = old.weight, old.bias
            block.conv1 = fast
            n += 1
    return n


class MedNeXtForNnUNet(nn.Module):
    """MONAI's MedNeXt with nnU-Net's deep-supervision interface.

    ``deep_supervision`` True: ``forward`` returns ``[full, 1/2, 1/4, 1/8, 1/16]``
    (highest resolution first, nnU-Net's order) in train and eval mode alike; False:
    the full-resolution logits only. Parameters live under ``mednext.``.
    """

    def __init__(self, size: str, in_channels: int, num_classes: int, kernel_size: int,
                 deep_supervision: bool = True):
        super().__init__()
        self.mednext = create_mednext(size, spatial_dims=3, in_channels=in_channels, out_channels=num_classes,
                                      kernel_size=kernel_size, deep_supervision=True)
        use_fast_depthwise(self.mednext)
        self.deep_supervision = deep_supervision
        self._head_outputs: List[torch.Tensor] = []
        for head in self.mednext.out_blocks:
            head.register_forward_hook(self._keep_head_output)

    def _keep_head_output(self, module: nn.Module, inputs, output: torch.Tensor) -> None:
        self._head_outputs.append(output)

    def forward(self, x: torch.Tensor) -> Union[torch.Tensor, List[torch.Tensor]]:
        # MONAI runs the heads iff do_ds, lowest resolution first; it returns them only in train mode
        self.mednext.do_ds = self.deep_supervision
        self._head_outputs = []
        out = self.mednext(x)
        full = out[0] if isinstance(out, (tuple, list)) else out
        heads, self._head_outputs = self._head_outputs, []
        if not self.deep_supervision:
            return full
        return [full, *heads[::-1]]


class nnUNetTrainerMedNeXt(nnUNetTrainerBaseline):
    """Abstract MedNeXt trainer; subclasses set ``mednext_size`` and ``kernel_size``."""
    network_name = "MedNeXt"
    mednext_size = "S"
    kernel_size = 3
    patch_multiple = 2 ** N_DOWNSAMPLINGS
    patch_reason = "4 stride-2 down/upsampling blocks; the up blocks pad to 2x and add the skip of equal size"
    recipe = OptimiserRecipe("adamw", lr=1e-3, weight_decay=3e-5, eps=1e-4)

    @classmethod
    def make_network(cls, patch_size: Sequence[int], num_input_channels: int, num_output_channels: int,
                     enable_deep_supervision: bool) -> nn.Module:
        return MedNeXtForNnUNet(cls.mednext_size, num_input_channels, num_output_channels, cls.kernel_size,
                                enable_deep_supervision)

    def _get_deep_supervision_scales(self):
        return [list(s) for s in DS_SCALES] if self.enable_deep_supervision else None

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        mod = self.network.module if self.is_ddp else self.network
        if isinstance(mod, OptimizedModule):
            mod = mod._orig_mod
        mod.deep_supervision = enabled


class nnUNetTrainerMedNeXtUpKern(nnUNetTrainerMedNeXt):
    """Abstract: before the first epoch, UpKern the k3 checkpoint named by ``$MEDNEXT_UPKERN_CHECKPOINT``.

    Skipped when training resumes (``--c`` with a checkpoint: its weights win). Fails
    before training if the variable is unset or the checkpoint does not match.
    """

    def on_train_start(self):
        super().on_train_start()
        if self.current_epoch == 0:
            self.load_upkern(os.environ.get(UPKERN_ENV, ""))

    def load_upkern(self, path: str) -> None:
        """Resample the network weights of the nnU-Net checkpoint at ``path`` into this k5 network."""
        if not path:
            raise RuntimeError(f"{self.__class__.__name__} initialises from a trained MedNeXt{self.mednext_size} k3 "
                               f"checkpoint: set {UPKERN_ENV}=/path/to/nnUNetTrainerMedNeXt{self.mednext_size}_k3__"
                               "<plans>__<configuration>/fold_<f>/checkpoint_final.pth (same dataset and fold)")
        if not os.path.isfile(path):
            raise RuntimeError(f"{UPKERN_ENV}={path}: no such file")
        checkpoint = read_checkpoint(path)
        source_name = checkpoint["trainer_name"]
        expected = f"nnUNetTrainerMedNeXt{self.mednext_size}_k"
        if not source_name.startswith(expected):
            raise RuntimeError(f"{path} was trained by {source_name}; UpKern into {self.__class__.__name__} needs "
                               f"a checkpoint of the same MedNeXt size ({expected}3...)")
        mod = self.network.module if self.is_ddp else self.network
        if isinstance(mod, OptimizedModule):
            mod = mod._orig_mod
        mod.load_state_dict(upkern_state_dict(mod.state_dict(), checkpoint["network_weights"]))
        self.print_to_log_file(f"UpKern: initialised from {path} ({source_name}), kernels resampled trilinearly")


# ---------------------------------------------------------------- the trainers (-tr names)

class nnUNetTrainerMedNeXtS_k3(nnUNetTrainerMedNeXt):
    """MedNeXt-S, kernel 3, official recipe."""
    mednext_size, kernel_size = "S", 3


class nnUNetTrainerMedNeXtS_k5(nnUNetTrainerMedNeXt):
    """MedNeXt-S, kernel 5, official recipe."""
    mednext_size, kernel_size = "S", 5


class nnUNetTrainerMedNeXtS_k5_UpKern(nnUNetTrainerMedNeXtUpKern):
    """MedNeXt-S k5 initialised by UpKern from a k3 checkpoint ($MEDNEXT_UPKERN_CHECKPOINT)."""
    mednext_size, kernel_size = "S", 5


class nnUNetTrainerMedNeXtB_k3(nnUNetTrainerMedNeXt):
    """MedNeXt-B, kernel 3, official recipe."""
    mednext_size, kernel_size = "B", 3


class nnUNetTrainerMedNeXtB_k5(nnUNetTrainerMedNeXt):
    """MedNeXt-B, kernel 5, official recipe."""
    mednext_size, kernel_size = "B", 5


class nnUNetTrainerMedNeXtB_k5_UpKern(nnUNetTrainerMedNeXtUpKern):
    """MedNeXt-B k5 initialised by UpKern from a k3 checkpoint ($MEDNEXT_UPKERN_CHECKPOINT)."""
    mednext_size, kernel_size = "B", 5


class nnUNetTrainerMedNeXtM_k3(nnUNetTrainerMedNeXt):
    """MedNeXt-M, kernel 3, official recipe."""
    mednext_size, kernel_size = "M", 3


class nnUNetTrainerMedNeXtM_k5(nnUNetTrainerMedNeXt):
    """MedNeXt-M, kernel 5, official recipe."""
    mednext_size, kernel_size = "M", 5


class nnUNetTrainerMedNeXtM_k5_UpKern(nnUNetTrainerMedNeXtUpKern):
    """MedNeXt-M k5 initialised by UpKern from a k3 checkpoint ($MEDNEXT_UPKERN_CHECKPOINT)."""
    mednext_size, kernel_size = "M", 5


class nnUNetTrainerMedNeXtL_k3(nnUNetTrainerMedNeXt):
    """MedNeXt-L, kernel 3, official recipe."""
    mednext_size, kernel_size = "L", 3


class nnUNetTrainerMedNeXtL_k5(nnUNetTrainerMedNeXt):
    """MedNeXt-L, kernel 5, official recipe."""
    mednext_size, kernel_size = "L", 5


class nnUNetTrainerMedNeXtL_k5_UpKern(nnUNetTrainerMedNeXtUpKern):
    """MedNeXt-L k5 initialised by UpKern from a k3 checkpoint ($MEDNEXT_UPKERN_CHECKPOINT)."""
    mednext_size, kernel_size = "L", 5


MEDNEXT_TRAINERS: List[type] = [
    nnUNetTrainerMedNeXtS_k3, nnUNetTrainerMedNeXtS_k5, nnUNetTrainerMedNeXtS_k5_UpKern,
    nnUNetTrainerMedNeXtB_k3, nnUNetTrainerMedNeXtB_k5, nnUNetTrainerMedNeXtB_k5_UpKern,
    nnUNetTrainerMedNeXtM_k3, nnUNetTrainerMedNeXtM_k5, nnUNetTrainerMedNeXtM_k5_UpKern,
    nnUNetTrainerMedNeXtL_k3, nnUNetTrainerMedNeXtL_k5, nnUNetTrainerMedNeXtL_k5_UpKern]
__all__ = [cls.__name__ for cls in MEDNEXT_TRAINERS]  # the -tr names (star-imported by baselines/__init__)
