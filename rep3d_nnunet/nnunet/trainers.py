"""nnU-Net trainers for Rep3D and its ablations: each variant is a class attribute.

The architecture trainers read like the paper's ablation table; the optimiser and
schedule variants (``_SGD``, ``_<N>epochs``, ``_tiny``) are generated below in nnU-Net's
naming style. All of them need Rep3D plans (``nnUNetRep3DPlans`` from
``nnUNetPlannerRep3D``, or a merged template) and a 3D configuration.

Deploy before prediction: a network built inside ``initialize`` (training, ``--c``,
``--val``, the end-of-training validation) is the training form. Built anywhere else
-- i.e. by nnU-Net's predictor, which calls ``build_network_architecture`` on the
class -- it is the deploy form, which folds the checkpoint's training-form weights
as it loads them (``Rep3DUNet.load_state_dict``). Checkpoints stay stock nnU-Net
checkpoints holding the training form.
"""
from __future__ import annotations

import contextlib
from contextvars import ContextVar
from typing import Iterator, Union

import torch
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from nnunetv2.utilities.get_network_from_plans import get_network_from_plans
from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from rep3d_nnunet.nnunet.architecture import (NETWORK_CLASS_NAME, Rep3DVariant, apply_variant,
                                              check_rep3d_configuration, check_rep3d_plans)
from rep3d_nnunet.nnunet.environment import check_nnunet_environment
from rep3d_nnunet.optim import PolyLRSchedulerGroups, param_groups

# True only while a trainer's own initialize() builds its network (see module docstring)
_BUILDING_FOR_TRAINING: ContextVar[bool] = ContextVar("rep3d_building_for_training", default=False)


@contextlib.contextmanager
def training_form() -> Iterator[None]:
    """Within this context ``build_network_architecture`` of our trainers builds the training form."""
    token = _BUILDING_FOR_TRAINING.set(True)
    try:
        yield
    finally:
        _BUILDING_FOR_TRAINING.reset(token)


# the schedule of the *_tiny trainers: seconds on a CPU, for tests and smoke runs only
# one schedule for every trainer family's _tiny variant, so tiny benchmark runs compare like with like
TINY_SCHEDULE = dict(num_epochs=1, num_iterations_per_epoch=2, num_val_iterations_per_epoch=1, save_every=1)
# the demo's schedule (nnUNetTrainerRep3D_demo): minutes on 2 CPU cores
DEMO_SCHEDULE = dict(num_epochs=15, num_iterations_per_epoch=20, num_val_iterations_per_epoch=3, save_every=5)
TINY_MAX_BATCH_SIZE = 2


def read_checkpoint(path: str, device: Union[torch.device, str] = "cpu") -> dict:
    """``torch.load`` an nnU-Net checkpoint, or raise a clear error if it is unreadable or incomplete."""
    try:
        checkpoint = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # truncated zip, wrong file, pickle error: all mean "not a usable checkpoint"
        raise RuntimeError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}. The file is truncated "
                           "or not an nnU-Net checkpoint; nothing was changed. Restore it or use another "
                           "checkpoint of this fold (checkpoint_best.pth / checkpoint_latest.pth).") from e
    needed = ("network_weights", "optimizer_state", "current_epoch", "init_args", "trainer_name")
    missing = [k for k in needed if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise RuntimeError(f"checkpoint {path} lacks {missing}: not a checkpoint written by an nnU-Net trainer")
    return checkpoint


class nnUNetTrainerRep3D(nnUNetTrainer):
    """Rep3D: 21^3 depthwise kernels re-parameterised by the learned LRBM mask (the method).

    Optimiser: the paper's AdamW (lr 1e-4, weight decay 0.08, betas (0.9, 0.999),
    eps 1e-8) with nnU-Net's poly decay; the ``_SGD`` variants use nnU-Net's recipe.
    """
    variant = Rep3DVariant(block="rep3d", mask="lrbm")
    optimiser = "adamw"  # "adamw" (paper) | "sgd" (nnU-Net: SGD Nesterov 0.99, lr 1e-2, wd 3e-5)
    schedule: dict = {}  # attribute overrides applied after nnU-Net's defaults (num_epochs, ...)
    # lr of the LRBM mask generators relative to the network's (rep3d_nnunet.optim); a 3-line subclass changes it
    generator_lr_scale: float = 0.01

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        # fail before nnUNetTrainer.__init__ creates output folders and log files
        check_nnunet_environment("nnUNet_preprocessed", "nnUNet_results")
        check_rep3d_plans(plans, configuration)
        super().__init__(plans, configuration, fold, dataset_json, device)
        if self.optimiser == "adamw":
            self.initial_lr, self.weight_decay = 1e-4, 0.08
        for name, value in self.schedule.items():
            setattr(self, name, value)
        self.print_to_log_file(f"Rep3D variant: {self.variant}, optimiser: {self.optimiser}",
                               also_print_to_console=False)

    def initialize(self):
        with training_form():
            super().initialize()

    @classmethod
    def build_network_architecture(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                                   num_input_channels: int, num_output_channels: int,
                                   enable_deep_supervision: bool = True) -> nn.Module:
        """The training form inside ``initialize``; the deploy form everywhere else (the predictor)."""
        where = f"a configuration of plans {plans_manager.plans_name!r}"
        arch_kwargs = apply_variant(check_rep3d_configuration(configuration_manager, where), cls.variant)
        arch_kwargs["deploy"] = not _BUILDING_FOR_TRAINING.get()
        return get_network_from_plans(NETWORK_CLASS_NAME, arch_kwargs,
                                      configuration_manager.network_arch_init_kwargs_req_import,
                                      num_input_channels, num_output_channels, allow_init=True,
                                      deep_supervision=enable_deep_supervision)

    def configure_optimizers(self):
        # LRBM generators get their own group (lr x generator_lr_scale, no weight decay) in both
        # recipes, and the poly schedule keeps that ratio (rep3d_nnunet.optim)
        groups = param_groups(self.network, self.initial_lr, self.weight_decay, self.generator_lr_scale)
        if self.optimiser == "sgd":  # nnU-Net's recipe (nnUNetTrainer.configure_optimizers)
            optimizer = torch.optim.SGD(groups, self.initial_lr, weight_decay=self.weight_decay,
                                        momentum=0.99, nesterov=True)
        else:
            optimizer = torch.optim.AdamW(groups, lr=self.initial_lr, weight_decay=self.weight_decay,
                                          betas=(0.9, 0.999), eps=1e-8)
        return optimizer, PolyLRSchedulerGroups(optimizer, self.initial_lr, self.num_epochs)

    def load_checkpoint(self, filename_or_checkpoint: Union[dict, str]) -> None:
        if isinstance(filename_or_checkpoint, str):
            # validate first for a clear error; nnU-Net 2.8.1's load_checkpoint only accepts a
            # path (given a dict it reads an unbound variable), so it reads the file again
            read_checkpoint(filename_or_checkpoint)
        super().load_checkpoint(filename_or_checkpoint)


class nnUNetTrainerRep3DFixedPrior(nnUNetTrainerRep3D):
    """Ablation "Fixed Prior": the mask is the distance prior P alone."""
    variant = Rep3DVariant(block="rep3d", mask="prior")


class nnUNetTrainerRep3DPlainLK(nnUNetTrainerRep3D):
    """Plain large kernel ("vanilla", 3D UX-Net k=21 style): no mask."""
    variant = Rep3DVariant(block="rep3d", mask="none")


class nnUNetTrainerRep3DCSLA(nnUNetTrainerRep3D):
    """CSLA structural re-parameterisation: 21^3 + parallel 3^3 branch, merged at deploy."""
    variant = Rep3DVariant(block="rep3d", mask="none", csla_small_kernel=3)


class nnUNetTrainerUXNet(nnUNetTrainerRep3D):
    """3D UX-Net blocks (7^3 depthwise, x4 channel expansion), no mask."""
    variant = Rep3DVariant(block="uxnet", mask="none", large_kernel_size=7)


class nnUNetTrainerUXNetLRBM(nnUNetTrainerRep3D):
    """3D UX-Net + LRBM ("plug-and-play" row): UX-Net's 7^3 kernels under the learned mask."""
    variant = Rep3DVariant(block="uxnet", mask="lrbm", large_kernel_size=7)


class TinyScheduleMixin:
    """Smoke-test schedule (``TINY_SCHEDULE``), batch size at most 2, no mirroring (training or inference).

    For tests and CPU smoke runs of the whole pipeline; the numbers it produces mean nothing.
    """
    schedule = TINY_SCHEDULE
    max_batch_size = TINY_MAX_BATCH_SIZE

    def _set_batch_size_and_oversample(self):
        super()._set_batch_size_and_oversample()
        self.batch_size = min(self.batch_size, self.max_batch_size)

    def configure_rotation_dummyDA_mirroring_and_inital_patch_size(self):
        rotation, dummy_2d, patch_size, _ = super().configure_rotation_dummyDA_mirroring_and_inital_patch_size()
        self.inference_allowed_mirroring_axes = None  # as nnU-Net's nnUNetTrainerNoMirroring
        return rotation, dummy_2d, patch_size, None


class nnUNetTrainer_tiny(TinyScheduleMixin, nnUNetTrainer):
    """nnU-Net's own trainer (any plans, e.g. ResEnc M) on the tiny schedule: the reference path of smoke tests."""

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        for name, value in self.schedule.items():
            setattr(self, name, value)


class nnUNetTrainerRep3D_demo(TinyScheduleMixin, nnUNetTrainerRep3D):
    """The demo's CPU schedule (``scripts/demo.sh``): a few minutes on 2 cores, batch at most 2.

    AdamW at lr 1e-3 instead of the paper's 1e-4: 1e-4 is tuned for 60k iterations, the
    demo has a few hundred. Enough to see the pipeline learn; not a benchmark.
    """
    schedule = DEMO_SCHEDULE
    max_batch_size = 2

    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = 1e-3


ARCHITECTURE_TRAINERS = (nnUNetTrainerRep3D, nnUNetTrainerRep3DFixedPrior, nnUNetTrainerRep3DPlainLK,
                         nnUNetTrainerRep3DCSLA, nnUNetTrainerUXNet, nnUNetTrainerUXNetLRBM)
EPOCH_VARIANTS = (50, 100, 250, 500)


def _derive(base: type, suffix: str, doc: str, mixins: tuple = (), **attrs) -> type:
    """A one-attribute subclass named ``<base><suffix>``, registered in this module (nnU-Net finds it by name)."""
    cls = type(base.__name__ + suffix, (*mixins, base), {"__doc__": doc, "__module__": __name__, **attrs})
    globals()[cls.__name__] = cls
    return cls


def _generate_variants() -> list:
    made = []
    for arch in ARCHITECTURE_TRAINERS:
        sgd = _derive(arch, "_SGD", f"{arch.__name__} with nnU-Net's SGD recipe (lr 1e-2, poly, 1000 epochs).",
                      optimiser="sgd")
        made.append(sgd)
        for base in (arch, sgd):
            for n in EPOCH_VARIANTS:
                made.append(_derive(base, f"_{n}epochs", f"{base.__name__} for {n} epochs.",
                                    schedule={**base.schedule, "num_epochs": n}))
            made.append(_derive(base, "_tiny", f"{base.__name__} on the tiny smoke-test schedule (tests).",
                                mixins=(TinyScheduleMixin,)))
    return made


GENERATED_TRAINERS = _generate_variants()
# what `from rep3d_nnunet.nnunet.trainers import *` (the registration shim) exposes to nnU-Net
__all__ = [c.__name__ for c in (*ARCHITECTURE_TRAINERS, nnUNetTrainer_tiny, nnUNetTrainerRep3D_demo,
                                *GENERATED_TRAINERS)]
