"""Rep3D planners: nnU-Net's ResEnc M / L / XL presets, with the Rep3D network in the memory estimate.

``nnUNetPlannerRep3DM``, ``nnUNetPlannerRep3DL`` and ``nnUNetPlannerRep3DXL`` run ResEnc's patch / batch
search at ResEnc's 8, 24 and 40 GB targets (same reference values, same ``-gpu_memory_target`` handling:
the target scales the reference), but every candidate is measured with the Rep3D network
(``Rep3DUNet.compute_conv_feature_map_size``, calibrated against measured training memory, see
docs/memory.md). So "Rep3D L vs ResEnc L" compares two networks planned for the same GPU memory.
They write plans ``nnUNetRep3D{M,L,XL}Plans``; ``nnUNetPlannerRep3D`` (plans ``nnUNetRep3DPlans``)
is the M preset under its historical name.

The 3D configurations reuse nnUNetPlans' preprocessed data (same data identifier, as ResEnc's planners
do), so Rep3D, ResEnc and nnU-Net train on identical inputs. The plans hold 3D configurations only.
"""
from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Mapping, Optional, Tuple, Type, Union

import numpy as np
from nnunetv2.experiment_planning.experiment_planners.residual_unets.residual_encoder_unet_planners import (
    nnUNetPlannerResEncL, nnUNetPlannerResEncM, nnUNetPlannerResEncXL)

from rep3d_nnunet.nnunet.architecture import REQUIRES_IMPORT, Rep3DVariant, rep3d_architecture

SpacingLike = Optional[Union[List[float], Tuple[float, ...]]]


class Rep3DPlannerMixin:
    """Measures (and writes) the Rep3D twin of every ResEnc candidate; mixed into a ResEnc planner."""
    variant = Rep3DVariant()

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


class nnUNetPlannerRep3DM(Rep3DPlannerMixin, nnUNetPlannerResEncM):
    """ResEnc M's search (8 GB target) measuring Rep3D networks; plans ``nnUNetRep3DMPlans``."""

    def __init__(self, dataset_name_or_id: Union[str, int], gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = "DefaultPreprocessor", plans_name: str = "nnUNetRep3DMPlans",
                 overwrite_target_spacing: SpacingLike = None, suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)


class nnUNetPlannerRep3DL(Rep3DPlannerMixin, nnUNetPlannerResEncL):
    """ResEnc L's search (24 GB target) measuring Rep3D networks; plans ``nnUNetRep3DLPlans``."""

    def __init__(self, dataset_name_or_id: Union[str, int], gpu_memory_target_in_gb: float = 24,
                 preprocessor_name: str = "DefaultPreprocessor", plans_name: str = "nnUNetRep3DLPlans",
                 overwrite_target_spacing: SpacingLike = None, suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)


class nnUNetPlannerRep3DXL(Rep3DPlannerMixin, nnUNetPlannerResEncXL):
    """ResEnc XL's search (40 GB target) measuring Rep3D networks; plans ``nnUNetRep3DXLPlans``."""

    def __init__(self, dataset_name_or_id: Union[str, int], gpu_memory_target_in_gb: float = 40,
                 preprocessor_name: str = "DefaultPreprocessor", plans_name: str = "nnUNetRep3DXLPlans",
                 overwrite_target_spacing: SpacingLike = None, suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)


class nnUNetPlannerRep3D(nnUNetPlannerRep3DM):
    """The M preset under its historical name; plans ``nnUNetRep3DPlans``."""

    def __init__(self, dataset_name_or_id: Union[str, int], gpu_memory_target_in_gb: float = 8,
                 preprocessor_name: str = "DefaultPreprocessor", plans_name: str = "nnUNetRep3DPlans",
                 overwrite_target_spacing: SpacingLike = None, suppress_transpose: bool = False):
        super().__init__(dataset_name_or_id, gpu_memory_target_in_gb, preprocessor_name, plans_name,
                         overwrite_target_spacing, suppress_transpose)


# budget -> (our planner, its plans, ResEnc's planner, its plans): what `benchmark run --budget` pairs
PRESETS: Dict[str, Tuple[str, str, str, str]] = {
    "M": ("nnUNetPlannerRep3DM", "nnUNetRep3DMPlans", "nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans"),
    "L": ("nnUNetPlannerRep3DL", "nnUNetRep3DLPlans", "nnUNetPlannerResEncL", "nnUNetResEncUNetLPlans"),
    "XL": ("nnUNetPlannerRep3DXL", "nnUNetRep3DXLPlans", "nnUNetPlannerResEncXL", "nnUNetResEncUNetXLPlans"),
}
PRESET_TARGET_GB = {"M": 8, "L": 24, "XL": 40}
PLANNER_CLASSES: Dict[str, type] = {c.__name__: c for c in (
    nnUNetPlannerRep3D, nnUNetPlannerRep3DM, nnUNetPlannerRep3DL, nnUNetPlannerRep3DXL,
    nnUNetPlannerResEncM, nnUNetPlannerResEncL, nnUNetPlannerResEncXL)}


def preset_for_memory(peak_gb: float) -> str:
    """The smallest ResEnc preset whose target holds ``peak_gb`` (XL beyond 40 GB)."""
    for name, target in PRESET_TARGET_GB.items():
        if peak_gb <= target:
            return name
    return "XL"


# ---------------------------------------------------------------- planning without nnU-Net's folders

@contextmanager
def _fingerprint_folders(fingerprint: Mapping, dataset_json: Mapping, name: str) -> Iterator[None]:
    """nnU-Net's raw / preprocessed folders holding only ``dataset.json`` and the fingerprint, seen by the planner.

    nnU-Net's planner reads its folders from module globals bound at import; they are pointed at a
    temporary tree for the duration (and restored), so no data and no environment are needed.
    """
    from unittest import mock

    from nnunetv2.experiment_planning.experiment_planners import default_experiment_planner as dep

    with tempfile.TemporaryDirectory() as tmp:
        raw, pre = Path(tmp) / "raw", Path(tmp) / "preprocessed"
        (raw / name / "imagesTr").mkdir(parents=True)
        (pre / name).mkdir(parents=True)
        (raw / name / "dataset.json").write_text(json.dumps(dataset_json))
        (pre / name / "dataset_fingerprint.json").write_text(json.dumps(fingerprint))
        with mock.patch.multiple(dep, nnUNet_raw=str(raw), nnUNet_preprocessed=str(pre)):
            yield


def plan_3d_fullres(planner_class: Union[str, Type], fingerprint: Mapping, dataset_json: Mapping,
                    gpu_memory_target_in_gb: Optional[float] = None, name: str = "Dataset999_Fingerprint") -> dict:
    """The ``3d_fullres`` configuration a planner writes for a dataset fingerprint, without data or folders.

    Same steps as nnU-Net's ``plan_experiment`` for that configuration (transpose, target spacing,
    median shape after resampling, patch / batch search), so it matches ``nnUNetv2_plan_experiment``.
    ``fingerprint`` needs ``spacings`` and ``shapes_after_crop`` (array axis order); ``dataset_json``
    needs ``channel_names``, ``labels``, ``numTraining`` and ``file_ending``.
    """
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape

    cls = PLANNER_CLASSES[planner_class] if isinstance(planner_class, str) else planner_class
    missing = [k for k in ("spacings", "shapes_after_crop") if k not in fingerprint]
    if missing:
        raise ValueError(f"fingerprint lacks {missing} (nnU-Net's dataset_fingerprint.json has them)")
    kwargs = {} if gpu_memory_target_in_gb is None else {"gpu_memory_target_in_gb": gpu_memory_target_in_gb}
    with _fingerprint_folders(fingerprint, dataset_json, name):
        planner = cls(name, **kwargs)
        transpose_forward, _ = planner.determine_transpose()
        spacing = planner.determine_fullres_target_spacing()
        shapes = [compute_new_shape(j, i, spacing) for i, j in zip(fingerprint["spacings"],
                                                                     fingerprint["shapes_after_crop"])]
        median = np.median(shapes, 0)[transpose_forward]
        n_voxels = float(np.prod(median, dtype=np.float64) * dataset_json["numTraining"])
        return planner.get_plans_for_configuration(spacing[transpose_forward], median,
                                                   planner.generate_data_identifier("3d_fullres"), n_voxels, {})


def ct_like_fingerprint(n_cases: int = 100) -> Tuple[dict, dict]:
    """A synthetic CT fingerprint (every case 512 x 512 x 300 at 0.8 x 0.8 x 1.5 mm; 2 foreground labels).

    Axis order is nnU-Net's array order (z, y, x). For comparing planners on a large-volume dataset.
    """
    fingerprint = {"spacings": [[1.5, 0.8, 0.8]] * n_cases, "shapes_after_crop": [[300, 512, 512]] * n_cases,
                   "median_relative_size_after_cropping": 1.0}
    dataset_json = {"channel_names": {"0": "CT"}, "labels": {"background": 0, "organ": 1, "lesion": 2},
                    "numTraining": n_cases, "file_ending": ".nii.gz"}
    return fingerprint, dataset_json


# ResEnc's reference points: a per-sample estimate of REFERENCE[p][0] elements fills REFERENCE[p][1] GB at batch 2
RESENC_REFERENCE = {"M": (680_000_000, 8), "L": (2_100_000_000, 24), "XL": (3_600_000_000, 40)}
REFERENCE_BATCH = 2


def planned_memory_gb(estimate_per_sample: float, batch_size: int, preset: str = "M") -> float:
    """GPU memory (GB) a plan is sized for: nnU-Net's estimate x batch on the preset's reference line.

    The planner picks ``batch = reference / estimate * 2`` at ``target`` GB, so a plan of ``estimate``
    elements per sample at ``batch_size`` is sized for ``estimate * batch_size / 2 / reference * target`` GB.
    """
    reference, target = RESENC_REFERENCE[preset]
    return float(estimate_per_sample) * batch_size / REFERENCE_BATCH / reference * target
