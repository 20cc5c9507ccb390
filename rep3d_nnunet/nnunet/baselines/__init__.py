"""Baseline networks as nnU-Net v2 trainers: MedNeXt (S/B/M/L, k3/k5, UpKern), SwinUNETR, UNETR, SegResNet.

Same nnU-Net preprocessing, splits, augmentation, loss and schedule as every other
method; only the network, its optimiser and its patch-size constraint differ. The
3D U-Net row of the papers is nnU-Net's own ``nnUNetTrainer`` with ``nnUNetPlans``.
Every trainer is a written class: ``mednext.py``, ``monai_nets.py`` (full schedule),
``tiny.py`` (``<name>_tiny``, the smoke-test schedule).

- ``TRAINERS``: the user-facing trainers (full nnU-Net schedule);
- ``TINY_TRAINERS``: the same on the tiny smoke-test schedule (``<name>_tiny``);
- ``BASELINE_TRAINERS``: every class above by name.
"""
from __future__ import annotations

from typing import Dict, List

from rep3d_nnunet.nnunet.baselines.constraints import PatchSizeError  # noqa: F401  (re-exported)
from rep3d_nnunet.nnunet.baselines.mednext import *  # noqa: F401,F403  (the -tr names)
from rep3d_nnunet.nnunet.baselines.mednext import MEDNEXT_TRAINERS
from rep3d_nnunet.nnunet.baselines.monai_nets import *  # noqa: F401,F403  (the -tr names)
from rep3d_nnunet.nnunet.baselines.monai_nets import MONAI_TRAINERS
from rep3d_nnunet.nnunet.baselines.tiny import *  # noqa: F401,F403  (the -tr names)
from rep3d_nnunet.nnunet.baselines.tiny import TINY_BASELINE_TRAINERS

TRAINERS: List[type] = [*MEDNEXT_TRAINERS, *MONAI_TRAINERS]
TINY_TRAINERS: List[type] = list(TINY_BASELINE_TRAINERS)
BASELINE_TRAINERS: Dict[str, type] = {cls.__name__: cls for cls in (*TRAINERS, *TINY_TRAINERS)}

# what `from rep3d_nnunet.nnunet.baselines import *` (the registration shim) exposes to nnU-Net
__all__ = list(BASELINE_TRAINERS)
