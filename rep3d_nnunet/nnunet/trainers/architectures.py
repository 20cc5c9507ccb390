"""Rep3D and its ablations, one trainer per row of the paper's ablation table.

The trainer owns the encoder variant -- block, mask, CSLA branch and the kernel cap
(``variant``); the plans own the geometry (stages, strides, features, patch, the
depthwise kernel per stage). All need Rep3D plans (``nnUNetRep3DPlans`` from
``nnUNetPlannerRep3D``, or ``rep3d-nnunet plans merge-template``) and a 3D
configuration. Optimiser: the paper's AdamW (``PAPER_ADAMW``) with nnU-Net's poly
decay; ``variants/optimizer/sgd.py`` has the ``_SGD`` twins.

| trainer                        | block  | mask  | extra                      |
|--------------------------------|--------|-------|----------------------------|
| nnUNetTrainerRep3D             | rep3d  | lrbm  | (the method)               |
| nnUNetTrainerRep3DFixedPrior   | rep3d  | prior |                            |
| nnUNetTrainerRep3DPlainLK      | rep3d  | none  |                            |
| nnUNetTrainerRep3DCSLA         | rep3d  | none  | parallel 3^3 branch        |
| nnUNetTrainerUXNet             | uxnet  | none  | kernels capped at 7        |
| nnUNetTrainerUXNetLRBM         | uxnet  | lrbm  | kernels capped at 7        |
"""
from __future__ import annotations

from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager, PlansManager
from torch import nn

from rep3d_nnunet.nnunet import forms
from rep3d_nnunet.nnunet.architecture import Rep3DVariant, apply_variant, check_rep3d_configuration
from rep3d_nnunet.nnunet.trainers.base import PAPER_ADAMW, nnUNetTrainerRecipe


class nnUNetTrainerRep3D(nnUNetTrainerRecipe):
    """Rep3D: 21^3 depthwise kernels re-parameterised by the learned LRBM mask (the method)."""
    variant = Rep3DVariant(block="rep3d", mask="lrbm")
    recipe = PAPER_ADAMW

    def describe(self) -> str:
        # the trainer owns block, mask and CSLA: say so when the plans record something else
        planned = self.configuration_manager.network_arch_init_kwargs
        ours = {"block": self.variant.block, "mask": self.variant.mask,
                "csla_small_kernel": self.variant.csla_small_kernel}
        differs = {k: planned[k] for k in ours if k in planned and planned[k] != ours[k]}
        note = f" (used instead of the plans' {differs}: the trainer owns the variant)" if differs else ""
        return f"Rep3D variant {self.variant}{note}"

    @classmethod
    def check_configuration(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                            where: str) -> dict:
        return check_rep3d_configuration(configuration_manager, where)

    @classmethod
    def build_network_form(cls, plans_manager: PlansManager, configuration_manager: ConfigurationManager,
                           num_input_channels: int, num_output_channels: int, *, form: str,
                           deep_supervision: bool) -> nn.Module:
        """The plans' Rep3D geometry built as this trainer's ``variant``, in ``form``."""
        where = f"a configuration of plans {plans_manager.plans_name!r}"
        arch_kwargs = apply_variant(check_rep3d_configuration(configuration_manager, where), cls.variant)
        return forms.rep3d_network_from_plans(arch_kwargs, configuration_manager.network_arch_init_kwargs_req_import,
                                              num_input_channels, num_output_channels, form=form,
                                              deep_supervision=deep_supervision)


class nnUNetTrainerRep3DFixedPrior(nnUNetTrainerRep3D):
    """Ablation "Fixed Prior": the mask is the distance prior P alone."""
    variant = Rep3DVariant(block="rep3d", mask="prior")


class nnUNetTrainerRep3DPlainLK(nnUNetTrainerRep3D):
    """Plain large kernel ("vanilla", 3D UX-Net k=21 style): no mask."""
    variant = Rep3DVariant(block="rep3d", mask="none")


class nnUNetTrainerRep3DCSLA(nnUNetTrainerRep3D):
    """CSLA structural re-parameterisation: large kernel + parallel 3^3 branch, merged at deploy."""
    variant = Rep3DVariant(block="rep3d", mask="none", csla_small_kernel=3)


class nnUNetTrainerUXNet(nnUNetTrainerRep3D):
    """3D UX-Net blocks (7^3 depthwise, x4 channel expansion), no mask."""
    variant = Rep3DVariant(block="uxnet", mask="none", large_kernel_size=7)


class nnUNetTrainerUXNetLRBM(nnUNetTrainerRep3D):
    """3D UX-Net + LRBM ("plug-and-play" row): UX-Net's 7^3 kernels under the learned mask."""
    variant = Rep3DVariant(block="uxnet", mask="lrbm", large_kernel_size=7)


ARCHITECTURE_TRAINERS = (nnUNetTrainerRep3D, nnUNetTrainerRep3DFixedPrior, nnUNetTrainerRep3DPlainLK,
                         nnUNetTrainerRep3DCSLA, nnUNetTrainerUXNet, nnUNetTrainerUXNetLRBM)
