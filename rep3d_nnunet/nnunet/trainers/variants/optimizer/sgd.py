"""Each architecture with nnU-Net's own optimiser recipe instead of the paper's AdamW.

SGD, Nesterov momentum 0.99, lr 1e-2, weight decay 3e-5, poly decay (``NNUNET_SGD``):
for a comparison in which only the encoder differs from nnU-Net's ResEnc. The LRBM
generators keep their own parameter group (``generator_lr_scale``) here too.
"""
from __future__ import annotations

from rep3d_nnunet.nnunet.trainers.architectures import (nnUNetTrainerRep3D, nnUNetTrainerRep3DCSLA,
                                                        nnUNetTrainerRep3DFixedPrior, nnUNetTrainerRep3DPlainLK,
                                                        nnUNetTrainerUXNet, nnUNetTrainerUXNetLRBM)
from rep3d_nnunet.nnunet.trainers.base import NNUNET_SGD


class nnUNetTrainerRep3D_SGD(nnUNetTrainerRep3D):
    """Rep3D (LRBM) with nnU-Net's SGD recipe."""
    recipe = NNUNET_SGD


class nnUNetTrainerRep3DFixedPrior_SGD(nnUNetTrainerRep3DFixedPrior):
    """Fixed-prior ablation with nnU-Net's SGD recipe."""
    recipe = NNUNET_SGD


class nnUNetTrainerRep3DPlainLK_SGD(nnUNetTrainerRep3DPlainLK):
    """Plain large kernel with nnU-Net's SGD recipe."""
    recipe = NNUNET_SGD


class nnUNetTrainerRep3DCSLA_SGD(nnUNetTrainerRep3DCSLA):
    """CSLA ablation with nnU-Net's SGD recipe."""
    recipe = NNUNET_SGD


class nnUNetTrainerUXNet_SGD(nnUNetTrainerUXNet):
    """3D UX-Net blocks with nnU-Net's SGD recipe."""
    recipe = NNUNET_SGD


class nnUNetTrainerUXNetLRBM_SGD(nnUNetTrainerUXNetLRBM):
    """3D UX-Net + LRBM with nnU-Net's SGD recipe."""
    recipe = NNUNET_SGD


SGD_TRAINERS = (nnUNetTrainerRep3D_SGD, nnUNetTrainerRep3DFixedPrior_SGD, nnUNetTrainerRep3DPlainLK_SGD,
                nnUNetTrainerRep3DCSLA_SGD, nnUNetTrainerUXNet_SGD, nnUNetTrainerUXNetLRBM_SGD)
