"""nnU-Net trainers for Rep3D and its ablations, each a written class (``-tr`` name = class name).

- ``base.py``: ``nnUNetTrainerRecipe``, the one base of every trainer here and of the
  baselines (checks, optimiser recipe as data, schedule, network forms);
- ``architectures.py``: the ablation table (``nnUNetTrainerRep3D``, ``...FixedPrior``,
  ``...PlainLK``, ``...CSLA``, ``nnUNetTrainerUXNet``, ``nnUNetTrainerUXNetLRBM``);
- ``variants/optimizer/sgd.py``: ``<architecture>_SGD`` (nnU-Net's recipe);
- ``variants/training_length/``: ``_250epochs`` (``epochs.py``), ``_tiny`` and
  ``nnUNetTrainer_tiny`` (``tiny.py``, smoke tests), ``nnUNetTrainerRep3D_demo`` (``demo.py``).

Which form of the network is built where (training vs deploy) is ``rep3d_nnunet.nnunet.forms``.
"""
from rep3d_nnunet.nnunet.trainers.architectures import (ARCHITECTURE_TRAINERS, nnUNetTrainerRep3D,
                                                        nnUNetTrainerRep3DCSLA, nnUNetTrainerRep3DFixedPrior,
                                                        nnUNetTrainerRep3DPlainLK, nnUNetTrainerUXNet,
                                                        nnUNetTrainerUXNetLRBM)
from rep3d_nnunet.nnunet.trainers.base import (NNUNET_SGD, PAPER_ADAMW, OptimiserRecipe, apply_schedule,
                                               nnUNetTrainerRecipe, read_checkpoint)
from rep3d_nnunet.nnunet.trainers.variants.optimizer.sgd import (SGD_TRAINERS, nnUNetTrainerRep3D_SGD,
                                                                 nnUNetTrainerRep3DCSLA_SGD,
                                                                 nnUNetTrainerRep3DFixedPrior_SGD,
                                                                 nnUNetTrainerRep3DPlainLK_SGD, nnUNetTrainerUXNet_SGD,
                                                                 nnUNetTrainerUXNetLRBM_SGD)
from rep3d_nnunet.nnunet.trainers.variants.training_length.demo import DEMO_SCHEDULE, nnUNetTrainerRep3D_demo
from rep3d_nnunet.nnunet.trainers.variants.training_length.epochs import (
    EPOCH_TRAINERS, nnUNetTrainerRep3D_250epochs, nnUNetTrainerRep3D_SGD_250epochs,
    nnUNetTrainerRep3DCSLA_250epochs, nnUNetTrainerRep3DFixedPrior_250epochs, nnUNetTrainerRep3DPlainLK_250epochs,
    nnUNetTrainerUXNet_250epochs, nnUNetTrainerUXNetLRBM_250epochs)
from rep3d_nnunet.nnunet.trainers.variants.training_length.tiny import (
    TINY_MAX_BATCH_SIZE, TINY_SCHEDULE, TINY_TRAINERS, TinyScheduleMixin, nnUNetTrainer_tiny,
    nnUNetTrainerRep3D_SGD_tiny, nnUNetTrainerRep3D_tiny, nnUNetTrainerRep3DCSLA_tiny,
    nnUNetTrainerRep3DFixedPrior_tiny, nnUNetTrainerRep3DPlainLK_tiny, nnUNetTrainerUXNet_tiny,
    nnUNetTrainerUXNetLRBM_tiny)

TRAINERS = (*ARCHITECTURE_TRAINERS, *SGD_TRAINERS, *EPOCH_TRAINERS, *TINY_TRAINERS, nnUNetTrainerRep3D_demo)
# every -tr name of this package: what `from rep3d_nnunet.nnunet.trainers import *` (the registration shim) exposes
__all__ = [cls.__name__ for cls in TRAINERS]
