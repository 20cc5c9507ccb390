"""``nnUNetPlannerRep3D``: nnU-Net's ResEnc M planning, with the Rep3D encoder in the memory estimate.

Writes plans ``nnUNetRep3DPlans``. The 3D configurations reuse nnUNetPlans'
preprocessed data (same data identifier, as ResEnc's planners do), so Rep3D,
ResEnc and nnU-Net train on identical inputs. The patch / batch search is
ResEnc M's (8 GB target, its reference value), but every candidate is measured
with the Rep3D network (``Rep3DUNet.compute_conv_feature_map_size``), which counts
what large depthwise kernels add; see README for the assumptions. The plans hold
3D configurations only (Rep3D is 3D only).
"""
from __future__ import annotations

from typing import List, Optional, Tuple, Union

from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import \
    nnUNetPlannerResEncM

from rep3d_nnunet.nnunet.architecture import REQUIRES_IMPORT, Rep3DVariant, rep3d_architecture


class nnUNetPlannerRep3D(nnUNetPlannerResEncM):
    """ResEnc M's planner measuring (and writing) Rep3D networks; ``variant`` picks the architecture block."""
    variant = Rep3DVariant()

    def __init__(self, dataset_name_or_id: Union[str, int], gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = "DefaultPreprocessor", plans_name: str = "nnUNetRep3DPlans",
                 overwrite_target_spacing: Optional[Union[List[float], Tuple[float, ...]]] = None,
                 suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)

    def static_estimate_VRAM_usage(self, patch_size, input_channels, output_channels, arch_class_name, arch_kwargs,
                                   arch_kwargs_req_import):
        # called by the inherited patch-size search with a ResEnc candidate: measure its Rep3D twin
        if len(patch_size) == 3:
            arch = rep3d_architecture({"network_class_name": arch_class_name, "arch_kwargs": arch_kwargs},
                                      patch_size, self.variant)
            arch_class_name, arch_kwargs = arch["network_class_name"], arch["arch_kwargs"]
            arch_kwargs_req_import = REQUIRES_IMPORT
        return super().static_estimate_VRAM_usage(patch_size, input_channels, output_channels, arch_class_name,
                                                  arch_kwargs, arch_kwargs_req_import)

    def get_plans_for_configuration(self, spacing, median_shape, data_identifier, approximate_n_voxels_dataset,
                                    _cache) -> dict:
        plan = super().get_plans_for_configuration(spacing, median_shape, data_identifier,
                                                   approximate_n_voxels_dataset, _cache)
        if len(spacing) == 3:
            plan["architecture"] = rep3d_architecture(plan["architecture"], plan["patch_size"], self.variant)
        return plan

    def save_plans(self, plans: dict) -> None:
        # nnU-Net always plans a 2d configuration; Rep3D has none, so it is not written
        plans["configurations"].pop("2d", None)
        super().save_plans(plans)
