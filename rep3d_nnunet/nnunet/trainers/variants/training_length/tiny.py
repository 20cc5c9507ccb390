"""``_tiny``: the smoke-test schedule, for tests and CPU runs of the whole pipeline (the numbers mean nothing).

``TINY_SCHEDULE`` (1 epoch x 2 iterations, 1 validation iteration), batch size at most
2, no mirroring in training or inference. One schedule for every trainer family's
``_tiny`` variant (Rep3D here, the baselines in ``baselines/tiny.py``), so tiny
benchmark runs compare like with like.

A CPU benchmark sets a longer schedule for all ``_tiny`` trainers at once through
``REP3D_CPU_SCHEDULE=<epochs>x<iterations>,batch<N>`` (``rep3d_nnunet.nnunet.schedule``);
the schedule used is written to the training log.
"""
from __future__ import annotations

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

from rep3d_nnunet.nnunet.schedule import CPU_SCHEDULE_ENV, format_cpu_schedule, schedule_from_env
from rep3d_nnunet.nnunet.trainers.architectures import (nnUNetTrainerRep3D, nnUNetTrainerRep3DCSLA,
                                                        nnUNetTrainerRep3DFixedPrior, nnUNetTrainerRep3DPlainLK,
                                                        nnUNetTrainerUXNet, nnUNetTrainerUXNetLRBM)
from rep3d_nnunet.nnunet.trainers.base import apply_schedule
from rep3d_nnunet.nnunet.trainers.variants.optimizer.sgd import nnUNetTrainerRep3D_SGD

TINY_SCHEDULE = dict(num_epochs=1, num_iterations_per_epoch=2, num_val_iterations_per_epoch=1, save_every=1)
TINY_MAX_BATCH_SIZE = 2


class TinyScheduleMixin:
    """A short schedule (``schedule``), batch size at most ``max_batch_size``, no mirroring; put it first in the bases.

    Works on any nnU-Net trainer (it sets the schedule itself). With ``reads_cpu_schedule``
    (default), a non-empty ``REP3D_CPU_SCHEDULE`` replaces ``schedule`` and the batch cap.
    """
    schedule = TINY_SCHEDULE
    max_batch_size = TINY_MAX_BATCH_SIZE
    reads_cpu_schedule = True

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        cpu = schedule_from_env() if self.reads_cpu_schedule else None  # bad text: an error before any output
        super().__init__(plans, configuration, fold, dataset_json, device)
        schedule, source = dict(self.schedule), f"{type(self).__name__}'s schedule"
        if cpu is not None:
            self.max_batch_size = cpu.pop("batch_size")
            schedule, source = cpu, f"{CPU_SCHEDULE_ENV}={format_cpu_schedule(dict(cpu, batch_size=self.max_batch_size))}"
        apply_schedule(self, schedule)
        self.print_to_log_file(f"schedule from {source}: {schedule}, batch size at most {self.max_batch_size}, "
                               "no mirroring")

    def _set_batch_size_and_oversample(self):
        super()._set_batch_size_and_oversample()
        self.batch_size = min(self.batch_size, self.max_batch_size)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None  # as nnU-Net's nnUNetTrainerNoMirroring
        return rotation, dummy_2d, patch_size, None


class nnUNetTrainer_tiny(TinyScheduleMixin, nnUNetTrainer):
    """nnU-Net's own trainer (any plans, e.g. ResEnc M) on the tiny schedule: the reference path of smoke tests."""


class nnUNetTrainerRep3D_tiny(TinyScheduleMixin, nnUNetTrainerRep3D):
    """nnUNetTrainerRep3D on the tiny schedule."""


class nnUNetTrainerRep3D_SGD_tiny(TinyScheduleMixin, nnUNetTrainerRep3D_SGD):
    """nnUNetTrainerRep3D_SGD on the tiny schedule."""


class nnUNetTrainerRep3DFixedPrior_tiny(TinyScheduleMixin, nnUNetTrainerRep3DFixedPrior):
    """nnUNetTrainerRep3DFixedPrior on the tiny schedule."""


class nnUNetTrainerRep3DPlainLK_tiny(TinyScheduleMixin, nnUNetTrainerRep3DPlainLK):
    """nnUNetTrainerRep3DPlainLK on the tiny schedule."""


class nnUNetTrainerRep3DCSLA_tiny(TinyScheduleMixin, nnUNetTrainerRep3DCSLA):
    """nnUNetTrainerRep3DCSLA on the tiny schedule."""


class nnUNetTrainerUXNet_tiny(TinyScheduleMixin, nnUNetTrainerUXNet):
    """nnUNetTrainerUXNet on the tiny schedule."""


class nnUNetTrainerUXNetLRBM_tiny(TinyScheduleMixin, nnUNetTrainerUXNetLRBM):
    """nnUNetTrainerUXNetLRBM on the tiny schedule."""


TINY_TRAINERS = (nnUNetTrainer_tiny, nnUNetTrainerRep3D_tiny, nnUNetTrainerRep3D_SGD_tiny,
                 nnUNetTrainerRep3DFixedPrior_tiny, nnUNetTrainerRep3DPlainLK_tiny, nnUNetTrainerRep3DCSLA_tiny,
                 nnUNetTrainerUXNet_tiny, nnUNetTrainerUXNetLRBM_tiny)
