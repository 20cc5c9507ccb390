"""``<baseline>_tiny``: every baseline trainer on the project's one smoke-test schedule (tests, CPU runs).

Same mixin as the Rep3D ``_tiny`` trainers (``TinyScheduleMixin``: ``TINY_SCHEDULE``,
batch at most 2, no mirroring, ``REP3D_CPU_SCHEDULE`` honoured), so tiny benchmark runs
compare like with like. SwinUNETR and UNETR are also narrowed by their
``tiny_network_kwargs`` (same code path, a fraction of the CPU cost); their full
networks are covered by the parameter-count and build tests.
"""
from __future__ import annotations

from typing import List

from rep3d_nnunet.nnunet.baselines.mednext import (
    nnUNetTrainerMedNeXtB_k3, nnUNetTrainerMedNeXtB_k5, nnUNetTrainerMedNeXtB_k5_UpKern, nnUNetTrainerMedNeXtL_k3,
    nnUNetTrainerMedNeXtL_k5, nnUNetTrainerMedNeXtL_k5_UpKern, nnUNetTrainerMedNeXtM_k3, nnUNetTrainerMedNeXtM_k5,
    nnUNetTrainerMedNeXtM_k5_UpKern, nnUNetTrainerMedNeXtS_k3, nnUNetTrainerMedNeXtS_k5,
    nnUNetTrainerMedNeXtS_k5_UpKern)
from rep3d_nnunet.nnunet.baselines.monai_nets import nnUNetTrainerSegResNet, nnUNetTrainerSwinUNETR, nnUNetTrainerUNETR
from rep3d_nnunet.nnunet.trainers.variants.training_length.tiny import TinyScheduleMixin


class nnUNetTrainerMedNeXtS_k3_tiny(TinyScheduleMixin, nnUNetTrainerMedNeXtS_k3):
    """nnUNetTrainerMedNeXtS_k3 on the tiny schedule."""


class nnUNetTrainerMedNeXtS_k5_tiny(TinyScheduleMixin, nnUNetTrainerMedNeXtS_k5):
    """nnUNetTrainerMedNeXtS_k5 on the tiny schedule."""


class nnUNetTrainerMedNeXtS_k5_UpKern_tiny(TinyScheduleMixin, nnUNetTrainerMedNeXtS_k5_UpKern):
    """nnUNetTrainerMedNeXtS_k5_UpKern on the tiny schedule."""


class nnUNetTrainerMedNeXtB_k3_tiny(TinyScheduleMixin, nnUNetTrainerMedNeXtB_k3):
    """nnUNetTrainerMedNeXtB_k3 on the tiny schedule."""


class nnUNetTrainerMedNeXtB_k5_tiny(TinyScheduleMixin, nnUNetTrainerMedNeXtB_k5):
    """nnUNetTrainerMedNeXtB_k5 on the tiny schedule."""


class nnUNetTrainerMedNeXtB_k5_UpKern_tiny(TinyScheduleMixin, nnUNetTrainerMedNeXtB_k5_UpKern):
    """nnUNetTrainerMedNeXtB_k5_UpKern on the tiny schedule."""


class nnUNetTrainerMedNeXtM_k3_tiny(TinyScheduleMixin, nnUNetTrainerMedNeXtM_k3):
    """nnUNetTrainerMedNeXtM_k3 on the tiny schedule."""


class nnUNetTrainerMedNeXtM_k5_tiny(TinyScheduleMixin, nnUNetTrainerMedNeXtM_k5):
    """nnUNetTrainerMedNeXtM_k5 on the tiny schedule."""


class nnUNetTrainerMedNeXtM_k5_UpKern_tiny(TinyScheduleMixin, nnUNetTrainerMedNeXtM_k5_UpKern):
    """nnUNetTrainerMedNeXtM_k5_UpKern on the tiny schedule."""


class nnUNetTrainerMedNeXtL_k3_tiny(TinyScheduleMixin, nnUNetTrainerMedNeXtL_k3):
    """nnUNetTrainerMedNeXtL_k3 on the tiny schedule."""


class nnUNetTrainerMedNeXtL_k5_tiny(TinyScheduleMixin, nnUNetTrainerMedNeXtL_k5):
    """nnUNetTrainerMedNeXtL_k5 on the tiny schedule."""


class nnUNetTrainerMedNeXtL_k5_UpKern_tiny(TinyScheduleMixin, nnUNetTrainerMedNeXtL_k5_UpKern):
    """nnUNetTrainerMedNeXtL_k5_UpKern on the tiny schedule."""


class nnUNetTrainerSwinUNETR_tiny(TinyScheduleMixin, nnUNetTrainerSwinUNETR):
    """nnUNetTrainerSwinUNETR on the tiny schedule, feature size 12 (tests only)."""
    network_kwargs = {**nnUNetTrainerSwinUNETR.network_kwargs, **nnUNetTrainerSwinUNETR.tiny_network_kwargs}


class nnUNetTrainerUNETR_tiny(TinyScheduleMixin, nnUNetTrainerUNETR):
    """nnUNetTrainerUNETR on the tiny schedule, hidden size 96 (tests only)."""
    network_kwargs = {**nnUNetTrainerUNETR.network_kwargs, **nnUNetTrainerUNETR.tiny_network_kwargs}


class nnUNetTrainerSegResNet_tiny(TinyScheduleMixin, nnUNetTrainerSegResNet):
    """nnUNetTrainerSegResNet on the tiny schedule (the network is already small)."""


TINY_BASELINE_TRAINERS: List[type] = [
    nnUNetTrainerMedNeXtS_k3_tiny, nnUNetTrainerMedNeXtS_k5_tiny, nnUNetTrainerMedNeXtS_k5_UpKern_tiny,
    nnUNetTrainerMedNeXtB_k3_tiny, nnUNetTrainerMedNeXtB_k5_tiny, nnUNetTrainerMedNeXtB_k5_UpKern_tiny,
    nnUNetTrainerMedNeXtM_k3_tiny, nnUNetTrainerMedNeXtM_k5_tiny, nnUNetTrainerMedNeXtM_k5_UpKern_tiny,
    nnUNetTrainerMedNeXtL_k3_tiny, nnUNetTrainerMedNeXtL_k5_tiny, nnUNetTrainerMedNeXtL_k5_UpKern_tiny,
    nnUNetTrainerSwinUNETR_tiny, nnUNetTrainerUNETR_tiny, nnUNetTrainerSegResNet_tiny]
__all__ = [cls.__name__ for cls in TINY_BASELINE_TRAINERS]  # the -tr names (star-imported by baselines/__init__)
