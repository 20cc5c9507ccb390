"""The base of every baseline trainer: plans check, network builder hook, optimiser recipe, tiny schedule.

A baseline trainer is nnU-Net's ``nnUNetTrainer`` (same data loading, augmentation,
loss, poly schedule, epochs, validation and checkpoints) with three things swapped:
the network (``make_network``), the optimiser (``recipe``), and a patch-size check
(``patch_multiple``) run before nnU-Net creates any output folder and again whenever
the network is built (the predictor builds it through the class too).
"""
from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from typing import List, Sequence

import torch
from nnunetv2.training.lr_scheduler.polylr import PolyLRScheduler
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from rep3d_nnunet.nnunet.architecture import PlansError
from rep3d_nnunet.nnunet.baselines.constraints import check_patch_size
from rep3d_nnunet.nnunet.environment import check_nnunet_environment
from rep3d_nnunet.nnunet.trainers import TinyScheduleMixin


@dataclass(frozen=True)
class OptimiserRecipe:
    """An optimiser as a paper states it; the schedule is always nnU-Net's poly decay (exponent 0.9)."""
    name: str                 # "adamw" | "adam" (Adam's weight_decay is L2 added to the gradient)
    lr: float
    weight_decay: float
    eps: float = 1e-8
    betas: tuple = (0.9, 0.999)


class nnUNetTrainerBaseline(nnUNetTrainer):
    """Abstract: subclasses set ``network_name``, ``patch_multiple``, ``patch_reason``, ``recipe``, ``make_network``."""
    network_name: str = ""
    patch_multiple: int = 1
    patch_reason: str = ""
    min_bottleneck_voxels: int = 1
    recipe: OptimiserRecipe = OptimiserRecipe("adamw", 1e-4, 1e-5)
    schedule: dict = {}  # attribute overrides after nnU-Net's defaults (num_epochs, ...)

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        # fail before nnUNetTrainer.__init__ creates output folders and log files
        check_nnunet_environment("nnUNet_preprocessed", "nnUNet_results")
        pm = PlansManager(deepcopy(plans))
        if configuration not in pm.available_configurations:
            raise PlansError(f"plans {pm.plans_name!r} have no configuration {configuration!r} "
                             f"(available: {pm.available_configurations})")
        self.check_configuration(pm, pm.get_configuration(configuration), f"configuration {configuration!r} "
                                 f"of plans {pm.plans_name!r}")
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr, self.weight_decay = self.recipe.lr, self.recipe.weight_decay
        for name, value in self.schedule.items():
            setattr(self, name, value)
        self.print_to_log_file(f"{self.network_name}: optimiser {self.recipe}, poly schedule, "
                               f"{self.num_epochs} epochs", also_print_to_console=False)

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
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """Called by ``initialize`` and by nnU-Net's predictor (on the class, deep supervision off)."""
        patch = cls.check_configuration(plans_manager, configuration_manager,
                                        f"a configuration of plans {plans_manager.plans_name!r}")
        return cls.make_network(patch, num_input_channels, num_output_channels, enable_deep_supervision)

    def configure_optimizers(self):
        r = self.recipe
        opt_class = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}[r.name]
        optimizer = opt_class(self.network.parameters(), lr=self.initial_lr, weight_decay=self.weight_decay,
                              eps=r.eps, betas=r.betas)
        return optimizer, PolyLRScheduler(optimizer, self.initial_lr, self.num_epochs)


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


# the project's one smoke-test mixin (TINY_SCHEDULE, batch <= 2, no mirroring), shared with the Rep3D trainers
TinySchedule = TinyScheduleMixin


def make_trainer(name: str, bases: tuple, doc: str, module: str, **attrs) -> type:
    """A trainer class ``name`` deriving from ``bases`` with class attributes ``attrs``, placed in ``module``.

    The caller also binds it as a module attribute: nnU-Net finds trainers by module attribute name.
    """
    return type(name, bases, {"__doc__": doc, "__module__": module, "__qualname__": name, **attrs})
