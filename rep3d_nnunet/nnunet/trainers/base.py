"""The one base trainer of this package: what every Rep3D and baseline trainer shares.

``nnUNetTrainerRecipe`` is nnU-Net's ``nnUNetTrainer`` (same data loading,
augmentation, loss, poly schedule, epochs, validation, checkpoints) plus:

- **checks before anything is written**: nnU-Net's path variables and the plans
  (``check_configuration``: Rep3D plans for Rep3D trainers, a fitting patch for the
  baselines) fail in ``__init__``, before nnU-Net creates output folders or log files;
- **the optimiser recipe as data** (``recipe``, an :class:`OptimiserRecipe`) with
  nnU-Net's poly decay; LRBM mask generators get their own parameter group
  (``generator_lr_scale``, see ``rep3d_nnunet.optim``), kept in ratio by the schedule;
- **the schedule as data** (``schedule``: trainer attributes such as ``num_epochs``);
- **two network forms** (``rep3d_nnunet.nnunet.forms``): ``build_network_form`` builds
  either; the trainer trains the training form, the predictor gets the deploy form.

A custom schedule or recipe is a three-line subclass::

    class nnUNetTrainerRep3D_300epochs(nnUNetTrainerRep3D):
        schedule = {"num_epochs": 300}
"""
from __future__ import annotations

from copy import deepcopy
from dataclasses import dataclass
from typing import Any, Dict, Iterable, Mapping, Tuple, Union

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from rep3d_nnunet.nnunet import adapter, forms
from rep3d_nnunet.nnunet.architecture import PlansError
from rep3d_nnunet.nnunet.environment import check_nnunet_environment
from rep3d_nnunet.optim import PolyLRSchedulerGroups, param_groups

TRAINER_CHECKPOINT_KEYS = adapter.TRAINER_CHECKPOINT_KEYS


@dataclass(frozen=True)
class OptimiserRecipe:
    """An optimiser as a paper states it; the schedule is always nnU-Net's poly decay (exponent 0.9).

    ``name``: "adamw", "adam" (its ``weight_decay`` is L2 added to the gradient) or
    "sgd" (Nesterov, ``momentum``; nnU-Net's recipe). ``eps`` and ``betas`` are Adam(W)'s.
    """
    name: str
    lr: float
    weight_decay: float
    eps: float = 1e-8
    betas: Tuple[float, float] = (0.9, 0.999)
    momentum: float = 0.99

    def build(self, params: Iterable, lr: float, weight_decay: float) -> torch.optim.Optimizer:
        """The optimiser over ``params`` (tensors or param groups) at ``lr`` / ``weight_decay``."""
        if self.name == "sgd":
            return torch.optim.SGD(params, lr, weight_decay=weight_decay, momentum=self.momentum, nesterov=True)
        adam = {"adamw": torch.optim.AdamW, "adam": torch.optim.Adam}.get(self.name)
        if adam is None:
            raise ValueError(f"unknown optimiser {self.name!r} in {self}; choose 'adamw', 'adam' or 'sgd'")
        return adam(params, lr=lr, weight_decay=weight_decay, eps=self.eps, betas=self.betas)


# Rep3D's paper: AdamW, lr 1e-4, weight decay 0.08, betas (0.9, 0.999), eps 1e-8
PAPER_ADAMW = OptimiserRecipe("adamw", lr=1e-4, weight_decay=0.08)
# nnU-Net's own recipe (nnUNetTrainer.configure_optimizers): SGD, Nesterov momentum 0.99
NNUNET_SGD = OptimiserRecipe("sgd", lr=1e-2, weight_decay=3e-5)


def apply_schedule(trainer: nnUNetTrainer, schedule: Mapping[str, Any]) -> None:
    """Set a schedule's trainer attributes (``num_epochs``, ``num_iterations_per_epoch``, ...) on ``trainer``.

    Unknown names are an error: a typo must not silently train nnU-Net's 1000 epochs.
    """
    for name, value in schedule.items():
        if not hasattr(trainer, name):
            raise AttributeError(f"{type(trainer).__name__}: schedule entry {name!r} is not a trainer attribute "
                                 "(num_epochs, num_iterations_per_epoch, num_val_iterations_per_epoch, save_every, "
                                 "...)")
        setattr(trainer, name, value)


def read_checkpoint(path: str, device: Union[torch.device, str] = "cpu") -> dict:
    """``torch.load`` an nnU-Net checkpoint, or raise a clear error if it is unreadable or incomplete
    (``adapter.read_checkpoint``, the package's one checkpoint reader)."""
    return adapter.read_checkpoint(path, TRAINER_CHECKPOINT_KEYS, device)


class nnUNetTrainerRecipe(nnUNetTrainer):
    """Abstract base of every trainer here; subclasses define ``check_configuration`` and ``build_network_form``."""
    recipe: OptimiserRecipe = NNUNET_SGD
    schedule: Mapping[str, Any] = {}  # trainer attributes set after nnU-Net's defaults
    # lr of the LRBM mask generators relative to the network's (rep3d_nnunet.optim); no effect without generators
    generator_lr_scale: float = 0.01

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        # fail before nnUNetTrainer.__init__ creates output folders and log files
        check_nnunet_environment("nnUNet_preprocessed", "nnUNet_results")
        self.check_network_hook()
        self.check_plans(plans, configuration)
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr, self.weight_decay = self.recipe.lr, self.recipe.weight_decay
        apply_schedule(self, self.schedule)
        # nnU-Net's initialize() builds self.network through self.build_network_architecture: on an
        # instance that is the training form; on the class (nnU-Net's predictor) the deploy form
        self.build_network_architecture = forms.training_form_builder(type(self))
        self.print_to_log_file(f"{type(self).__name__}: {self.describe()}; optimiser {self.recipe} with poly "
                               f"decay; {self.num_epochs} epochs x {self.num_iterations_per_epoch} iterations",
                               also_print_to_console=False)

    def describe(self) -> str:
        """One line for the training log: what this trainer changes."""
        return "nnU-Net trainer"

    # ---- plans ----------------------------------------------------------------------------
    @classmethod
    def check_plans(cls, plans: dict, configuration: str) -> Any:
        """Check a configuration named in a plans dict (which must exist) with ``check_configuration``."""
        pm = PlansManager(deepcopy(plans))
        if configuration not in pm.available_configurations:
            raise PlansError(f"plans {pm.plans_name!r} have no configuration {configuration!r} "
                             f"(available: {pm.available_configurations})")
        where = f"configuration {configuration!r} of plans {pm.plans_name!r}"
        return cls.check_configuration(pm, pm.get_configuration(configuration), where)

    @classmethod
    def check_configuration(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                            where: str) -> Any:
        """Raise a ``PlansError`` naming the problem if this trainer cannot use the configuration."""
        raise NotImplementedError

    # ---- network --------------------------------------------------------------------------
    @classmethod
    def check_network_hook(cls) -> None:
        """Refuse a subclass that overrides ``build_network_architecture``: it would build one form for both uses."""
        own = cls.build_network_architecture.__func__
        if own is not nnUNetTrainerRecipe.build_network_architecture.__func__:
            raise TypeError(f"{cls.__name__} overrides build_network_architecture; override build_network_form(cls, "
                            "plans_manager, configuration_manager, num_input_channels, num_output_channels, *, form, "
                            "deep_supervision) instead, so that training builds the training form and nnU-Net's "
                            "predictor the deploy form (rep3d_nnunet.nnunet.forms, docs/nnunet.md)")

    @classmethod
    def build_network_form(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                           num_input_channels: int, num_output_channels: int, *, form: str,
                           deep_supervision: bool) -> nn.Module:
        """This trainer's network in ``form`` ('training' or 'deploy'; networks with one form ignore it)."""
        raise NotImplementedError

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """What nnU-Net's predictor calls on the class: the deploy form (see ``rep3d_nnunet.nnunet.forms``)."""
        return forms.build_network(cls, plans_manager, configuration_manager, num_input_channels,
                                   num_output_channels, form="deploy", deep_supervision=enable_deep_supervision)

    # ---- optimiser ------------------------------------------------------------------------
    def configure_optimizers(self):
        # LRBM generators get their own group (lr x generator_lr_scale, no weight decay) in every recipe;
        # without generators this is one group and exactly nnU-Net's poly schedule
        groups = param_groups(self.network, self.initial_lr, self.weight_decay, self.generator_lr_scale)
        optimizer = self.recipe.build(groups, self.initial_lr, self.weight_decay)
        return optimizer, PolyLRSchedulerGroups(optimizer, self.initial_lr, self.num_epochs)

    # ---- checkpoints ----------------------------------------------------------------------
    def load_checkpoint(self, filename_or_checkpoint: Union[Dict, str]) -> None:
        if isinstance(filename_or_checkpoint, str):
            # validate first for a clear error; nnU-Net 2.8.1's load_checkpoint only accepts a
            # path (given a dict it reads an unbound variable), so it reads the file again
            read_checkpoint(filename_or_checkpoint)
        super().load_checkpoint(filename_or_checkpoint)
