"""The base of every baseline trainer: the patch-size check and the network hook on top of the one base trainer.

A baseline trainer is ``nnUNetTrainerRecipe`` (``rep3d_nnunet.nnunet.trainers.base``:
nnU-Net's trainer plus environment and plans checks before anything is written, the
optimiser recipe as data, the schedule, the network forms) with three things set: the
network (``make_network``), the optimiser (``recipe``), and a patch-size check
(``patch_multiple``) run before nnU-Net creates any output folder and again whenever
the network is built (the predictor builds it through the class too). Baseline
networks have one form; ``build_network_form`` ignores it.
"""
from __future__ import annotations

from typing import List, Sequence

import torch
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from rep3d_nnunet.nnunet.baselines.constraints import check_patch_size
from rep3d_nnunet.nnunet.trainers.base import OptimiserRecipe, nnUNetTrainerRecipe

__all__ = ["OptimiserRecipe", "nnUNetTrainerBaseline", "nnUNetTrainerBaselineNoDS"]


class nnUNetTrainerBaseline(nnUNetTrainerRecipe):
    """Abstract: subclasses set ``network_name``, ``patch_multiple``, ``patch_reason``, ``recipe``, ``make_network``."""
    network_name: str = ""
    patch_multiple: int = 1
    patch_reason: str = ""
    min_bottleneck_voxels: int = 1
    recipe: OptimiserRecipe = OptimiserRecipe("adamw", 1e-4, 1e-5)

    def describe(self) -> str:
        return f"baseline {self.network_name}"

    @classmethod
    def check_configuration(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                            where: str) -> List[int]:
        """The configuration's patch size, or ``PatchSizeError`` if the network cannot take it."""
        patch = [int(p) for p in configuration_manager.patch_size]
        check_patch_size(patch, cls.patch_multiple, cls.network_name, cls.patch_reason, where,
                         plans_manager.dataset_name, plans_manager.plans_name, cls.__name__,
                         cls.min_bottleneck_voxels)
        return patch

    @classmethod
    def make_network(cls, patch_size: Sequence[int], num_input_channels: int, num_output_channels: int,
                     enable_deep_supervision: bool) -> nn.Module:
        raise NotImplementedError

    @classmethod
    def build_network_form(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                           num_input_channels: int, num_output_channels: int, *, form: str,
                           deep_supervision: bool) -> nn.Module:
        """The network for the plans' patch (one form: ``form`` changes nothing)."""
        patch = cls.check_configuration(plans_manager, configuration_manager,
                                        f"a configuration of plans {plans_manager.plans_name!r}")
        return cls.make_network(patch, num_input_channels, num_output_channels, deep_supervision)


class nnUNetTrainerBaselineNoDS(nnUNetTrainerBaseline):
    """For networks without deep-supervision heads: as nnU-Net's ``nnUNetTrainerNoDeepSupervision``."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.enable_deep_supervision = False

    def set_deep_supervision_enabled(self, enabled: bool) -> None:
        # nnU-Net toggles `network.decoder.deep_supervision` (and re-enables it after the final
        # validation, whatever enable_deep_supervision says); these networks have one output: no-op
        pass
