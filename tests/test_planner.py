"""Rep3D planner presets (M / L / XL at ResEnc's targets) on fingerprints alone: no data, no folders."""
import json
import warnings

import numpy as np
import pytest

from rep3d_nnunet.nnunet.architecture import NETWORK_CLASS_NAME
from rep3d_nnunet.nnunet.planner import (PRESET_TARGET_GB, PRESETS, ct_like_fingerprint, nnUNetPlannerRep3D,
                                         nnUNetPlannerRep3DL, nnUNetPlannerRep3DM, nnUNetPlannerRep3DXL,
                                         plan_3d_fullres, preset_for_memory)


def _fingerprint(shape=(96, 128, 128), spacing=(1.0, 1.0, 1.0), n=20):
    """A small MRI-like fingerprint: big enough that the targets, not the median shape, bound the patch."""
    fp = {"spacings": [list(spacing)] * n, "shapes_after_crop": [list(shape)] * n,
          "median_relative_size_after_cropping": 1.0}
    dj = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1}, "numTraining": n,
          "file_ending": ".nii.gz"}
    return fp, dj


def _voxels(plan):
    return int(np.prod(plan["patch_size"])) * int(plan["batch_size"])


@pytest.fixture(scope="module")
def plans():
    fp, dj = _fingerprint()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return {b: plan_3d_fullres(PRESETS[b][0], fp, dj) for b in ("M", "L", "XL")}


def test_presets_plan_rep3d_networks_with_distinct_plans_names(plans):
    for b, plan in plans.items():
        assert plan["architecture"]["network_class_name"] == NETWORK_CLASS_NAME
    names = {c.__name__: c.__init__.__defaults__[2] for c in
             (nnUNetPlannerRep3D, nnUNetPlannerRep3DM, nnUNetPlannerRep3DL, nnUNetPlannerRep3DXL)}
    assert names == {"nnUNetPlannerRep3D": "nnUNetRep3DPlans", "nnUNetPlannerRep3DM": "nnUNetRep3DMPlans",
                     "nnUNetPlannerRep3DL": "nnUNetRep3DLPlans", "nnUNetPlannerRep3DXL": "nnUNetRep3DXLPlans"}
    assert [c.__init__.__defaults__[0] for c in (nnUNetPlannerRep3DM, nnUNetPlannerRep3DL,
                                                  nnUNetPlannerRep3DXL)] == [8, 24, 40]


def test_patch_times_batch_grows_with_the_target(plans):
    v = [_voxels(plans[b]) for b in ("M", "L", "XL")]
    assert v[0] < v[1] <= v[2], v


def test_the_m_alias_plans_what_m_plans():
    fp, dj = _fingerprint()
    a, b = plan_3d_fullres(nnUNetPlannerRep3D, fp, dj), plan_3d_fullres(nnUNetPlannerRep3DM, fp, dj)
    assert list(a["patch_size"]) == list(b["patch_size"]) and a["batch_size"] == b["batch_size"]


def test_gpu_memory_target_is_honoured(plans):
    fp, dj = _fingerprint()
    with pytest.warns(UserWarning, match="non-standard gpu_memory_target_in_gb"):  # nnU-Net's own warning
        m_at_24 = plan_3d_fullres(nnUNetPlannerRep3DM, fp, dj, gpu_memory_target_in_gb=24)
    # M's planner at L's target plans about what L plans (ResEnc's references differ by 3% per GB)
    assert _voxels(m_at_24) > _voxels(plans["M"])
    assert 0.8 < _voxels(m_at_24) / _voxels(plans["L"]) < 1.25
    with pytest.warns(UserWarning):
        small = plan_3d_fullres(nnUNetPlannerRep3DM, fp, dj, gpu_memory_target_in_gb=2)
    assert _voxels(small) < _voxels(plans["M"])


def test_rep3d_is_planned_smaller_than_resenc_at_the_same_target():
    # large kernels cost memory: at one target Rep3D never gets more voxels than ResEnc M
    fp, dj = _fingerprint()
    ours, theirs = plan_3d_fullres("nnUNetPlannerRep3DM", fp, dj), plan_3d_fullres("nnUNetPlannerResEncM", fp, dj)
    assert _voxels(ours) <= _voxels(theirs)


def test_ct_like_fingerprint_plans_anisotropic_patches():
    fp, dj = ct_like_fingerprint(n_cases=10)
    plan = plan_3d_fullres(nnUNetPlannerRep3DM, fp, dj)
    assert plan["spacing"][0] == 1.5 and len(plan["patch_size"]) == 3
    assert json.dumps(plan["architecture"]["arch_kwargs"]["dw_kernel_sizes"])


def test_fingerprint_without_shapes_is_refused():
    with pytest.raises(ValueError, match="shapes_after_crop"):
        plan_3d_fullres(nnUNetPlannerRep3DM, {"spacings": [[1, 1, 1]]}, {})


def test_preset_for_memory():
    assert [preset_for_memory(g) for g in (3, 8, 9, 24, 30, 40, 80)] == ["M", "M", "L", "L", "XL", "XL", "XL"]
    assert PRESET_TARGET_GB == {"M": 8, "L": 24, "XL": 40}
