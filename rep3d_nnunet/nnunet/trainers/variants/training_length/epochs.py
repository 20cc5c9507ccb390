"""``_250epochs``: a quarter of nnU-Net's 1000 epochs, as nnU-Net's own ``nnUNetTrainer_250epochs``.

One length for every trainer that ``rep3d-nnunet benchmark`` runs, so ``--schedule 250epochs``
compares Rep3D with nnU-Net and ResEnc at equal length. Any other length is a three-line
subclass in your own trainer folder (``rep3d-nnunet register --user-trainers DIR``)::

    class nnUNetTrainerRep3D_300epochs(nnUNetTrainerRep3D):
        schedule = {"num_epochs": 300}
"""
from __future__ import annotations

from rep3d_nnunet.nnunet.trainers.architectures import (nnUNetTrainerRep3D, nnUNetTrainerRep3DCSLA,
                                                        nnUNetTrainerRep3DFixedPrior, nnUNetTrainerRep3DPlainLK,
                                                        nnUNetTrainerUXNet, nnUNetTrainerUXNetLRBM)
from rep3d_nnunet.nnunet.trainers.variants.optimizer.sgd import nnUNetTrainerRep3D_SGD

EPOCHS_250 = {"num_epochs": 250}


class nnUNetTrainerRep3D_250epochs(nnUNetTrainerRep3D):
    """nnUNetTrainerRep3D for 250 epochs."""
    schedule = EPOCHS_250


class nnUNetTrainerRep3D_SGD_250epochs(nnUNetTrainerRep3D_SGD):
    """nnUNetTrainerRep3D_SGD for 250 epochs."""
    schedule = EPOCHS_250


class nnUNetTrainerRep3DFixedPrior_250epochs(nnUNetTrainerRep3DFixedPrior):
    """nnUNetTrainerRep3DFixedPrior for 250 epochs."""
    schedule = EPOCHS_250


class nnUNetTrainerRep3DPlainLK_250epochs(nnUNetTrainerRep3DPlainLK):
    """nnUNetTrainerRep3DPlainLK for 250 epochs."""
    schedule = EPOCHS_250


class nnUNetTrainerRep3DCSLA_250epochs(nnUNetTrainerRep3DCSLA):
    """nnUNetTrainerRep3DCSLA for 250 epochs."""
    schedule = EPOCHS_250


class nnUNetTrainerUXNet_250epochs(nnUNetTrainerUXNet):
    """nnUNetTrainerUXNet for 250 epochs."""
    schedule = EPOCHS_250


class nnUNetTrainerUXNetLRBM_250epochs(nnUNetTrainerUXNetLRBM):
    """nnUNetTrainerUXNetLRBM for 250 epochs."""
    schedule = EPOCHS_250


EPOCH_TRAINERS = (nnUNetTrainerRep3D_250epochs, nnUNetTrainerRep3D_SGD_250epochs,
                  nnUNetTrainerRep3DFixedPrior_250epochs, nnUNetTrainerRep3DPlainLK_250epochs,
                  nnUNetTrainerRep3DCSLA_250epochs, nnUNetTrainerUXNet_250epochs, nnUNetTrainerUXNetLRBM_250epochs)
