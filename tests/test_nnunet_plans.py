"""Plans <-> Rep3D architecture: conversion rules, variants, templates, checks, merge-template."""
from __future__ import annotations

import json
from copy import deepcopy
from dataclasses import replace

import pytest

from rep3d_nnunet.cli import main
from rep3d_nnunet.nnunet.architecture import (NETWORK_CLASS_NAME, TEMPLATES_DIR, PlansError, Rep3DVariant,
                                              apply_variant, check_rep3d_plans, rep3d_architecture)
from rep3d_nnunet.nnunet.planner import nnUNetPlannerRep3D
from rep3d_nnunet.nnunet.templates import merged_plans

RESENC_ARCH = {
    "network_class_name": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
    "arch_kwargs": {
        "n_stages": 5, "features_per_stage": [32, 64, 128, 256, 320], "conv_op": "torch.nn.modules.conv.Conv3d",
        "kernel_sizes": [[1, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3], [3, 3, 3]],
        "strides": [[1, 1, 1], [1, 2, 2], [2, 2, 2], [2, 2, 2], [1, 2, 2]], "n_blocks_per_stage": [1, 3, 4, 6, 6],
        "n_conv_per_stage_decoder": [1, 1, 1, 1], "conv_bias": True,
        "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
        "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
        "nonlin_kwargs": {"inplace": True}},
    "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}
PATCH = [24, 160, 160]  # stage feature maps: 24x160x160, 24x80x80, 12x40x40, 6x20x20, 6x10x10


def _config(arch: dict, patch=PATCH) -> dict:
    return {"data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
            "batch_size": 2, "patch_size": list(patch), "median_image_size_in_voxels": list(patch),
            "spacing": [3.0, 1.0, 1.0], "normalization_schemes": ["ZScoreNormalization"],
            "use_mask_for_norm": [False], "resampling_fn_data": "resample_data_or_seg_to_shape",
            "resampling_fn_seg": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": {},
            "resampling_fn_seg_kwargs": {}, "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
            "resampling_fn_probabilities_kwargs": {}, "batch_dice": False, "architecture": deepcopy(arch)}


def plans_with(arch: dict, name: str = "nnUNetPlans") -> dict:
    """A complete nnU-Net plans dict: a 2d configuration and a 3d_fullres one built by ``arch``."""
    arch_2d = deepcopy(RESENC_ARCH)
    arch_2d["arch_kwargs"].update(conv_op="torch.nn.modules.conv.Conv2d", kernel_sizes=[[3, 3]] * 5,
                                  strides=[[1, 1]] + [[2, 2]] * 4)
    return {"dataset_name": "Dataset999_Test", "plans_name": name, "transpose_forward": [0, 1, 2],
            "transpose_backward": [0, 1, 2], "original_median_spacing_after_transp": [3.0, 1.0, 1.0],
            "original_median_shape_after_transp": PATCH, "image_reader_writer": "SimpleITKIO",
            "configurations": {"2d": _config(arch_2d, PATCH[1:]), "3d_fullres": _config(arch),
                               "3d_cascade_fullres": {"inherits_from": "3d_fullres", "previous_stage": "3d_lowres"}},
            "experiment_planner_used": "ExperimentPlanner", "label_manager": "LabelManager",
            "foreground_intensity_properties_per_channel": {}}


def test_conversion_keeps_geometry_and_chooses_kernels_per_stage():
    arch = rep3d_architecture(RESENC_ARCH, PATCH)
    kw = arch["arch_kwargs"]
    assert arch["network_class_name"] == NETWORK_CLASS_NAME
    for key in ("n_stages", "features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage_decoder"):
        assert kw[key] == RESENC_ARCH["arch_kwargs"][key]
    # full resolution: small kernel; then 21, clipped per axis to 2 * feature map - 1
    assert kw["dw_kernel_sizes"] == [[3, 3, 3], [21, 21, 21], [21, 21, 21], [11, 21, 21], [11, 19, 19]]
    assert kw["n_blocks_per_stage"] == [1, 2, 2, 2, 2]
    # one owner per fact: the plans hold geometry; block, mask and CSLA are the trainer's
    assert not {"block", "mask", "csla_small_kernel"} & set(kw)
    kw_lrbm = apply_variant(kw, Rep3DVariant())
    assert (kw_lrbm["block"], kw_lrbm["mask"], kw_lrbm["csla_small_kernel"]) == ("rep3d", "lrbm", None)


def test_trainer_variants_cap_kernels_and_keep_csla_stages_alike():
    kw = rep3d_architecture(RESENC_ARCH, PATCH)["arch_kwargs"]
    ux = apply_variant(kw, Rep3DVariant(block="uxnet", mask="lrbm", large_kernel_size=7))
    assert ux["dw_kernel_sizes"] == [[3, 3, 3]] + [[7, 7, 7]] * 4 and ux["block"] == "uxnet"
    csla = apply_variant(kw, Rep3DVariant(mask="none", csla_small_kernel=3))
    # CSLA keeps the other variants' kernels (its small branch is clipped where needed)
    assert csla["dw_kernel_sizes"] == kw["dw_kernel_sizes"]
    assert kw["dw_kernel_sizes"][0] == [3, 3, 3]  # input untouched


def test_templates_load_and_the_default_one_is_the_planners():
    names = sorted(p.stem for p in TEMPLATES_DIR.glob("*.json"))
    assert names == ["rep3d", "uxnet"]  # geometry only: the variants are trainers
    for name in names:
        assert json.loads((TEMPLATES_DIR / f"{name}.json").read_text())["description"]
        rep3d_architecture(RESENC_ARCH, PATCH, Rep3DVariant.from_template(name))
    assert Rep3DVariant.from_template("rep3d") == nnUNetPlannerRep3D.variant == Rep3DVariant()
    with pytest.raises(PlansError, match="not found.*rep3d"):
        Rep3DVariant.from_template("nope")


def test_checks_name_what_is_wrong():
    rep3d = merged_plans(plans_with(RESENC_ARCH), Rep3DVariant(), "nnUNetRep3DPlans")
    assert check_rep3d_plans(rep3d, "3d_fullres")["dw_kernel_sizes"][1] == [21, 21, 21]
    assert check_rep3d_plans(rep3d, "3d_cascade_fullres")  # inherited configurations resolve
    with pytest.raises(PlansError, match="no configuration '2d'"):
        check_rep3d_plans(rep3d, "2d")
    with pytest.raises(PlansError, match="3D only"):
        check_rep3d_plans(plans_with(RESENC_ARCH), "2d")
    with pytest.raises(PlansError, match="ResidualEncoderUNet.*Rep3D trainers need Rep3D plans"):
        check_rep3d_plans(plans_with(RESENC_ARCH), "3d_fullres")
    even = deepcopy(rep3d)
    even["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["dw_kernel_sizes"][2] = [20, 21, 21]
    with pytest.raises(PlansError, match=r"dw_kernel_sizes\[2\].*even"):
        check_rep3d_plans(even, "3d_fullres")


def test_merge_template_command_writes_new_plans_and_never_overwrites(tmp_path, monkeypatch, capsys):
    pre = tmp_path / "pre"
    (pre / "Dataset999_Test").mkdir(parents=True)
    for var in ("nnUNet_raw", "nnUNet_results"):
        monkeypatch.setenv(var, str(tmp_path / var))
    monkeypatch.setenv("nnUNet_preprocessed", str(pre))
    source = pre / "Dataset999_Test" / "nnUNetPlans.json"
    source.write_text(json.dumps(plans_with(RESENC_ARCH)))
    before = source.read_bytes()

    assert main(["plans", "merge-template", "-d", "Dataset999_Test", "-t", "uxnet"]) == 0
    target = pre / "Dataset999_Test" / "nnUNetPlans_uxnet.json"
    merged = json.loads(target.read_text())
    assert merged["plans_name"] == "nnUNetPlans_uxnet" and set(merged["configurations"]) == {
        "3d_fullres", "3d_cascade_fullres"}
    cfg = merged["configurations"]["3d_fullres"]
    assert cfg["data_identifier"] == "nnUNetPlans_3d_fullres" and cfg["patch_size"] == PATCH
    assert cfg["architecture"]["arch_kwargs"]["dw_kernel_sizes"][1:] == [[7, 7, 7]] * 4
    assert source.read_bytes() == before

    written = target.read_bytes()
    assert main(["plans", "merge-template", "-d", "Dataset999_Test", "-t", "uxnet"]) == 1
    assert "already exists" in capsys.readouterr().err and target.read_bytes() == written
    assert main(["plans", "merge-template", "-d", "Dataset999_Test", "-t", "uxnet", "--source-plans", "x"]) == 1
    assert "source plans" in capsys.readouterr().err
    monkeypatch.delenv("nnUNet_preprocessed")
    assert main(["plans", "merge-template", "-d", "Dataset999_Test", "-t", "uxnet", "--plans-name", "y"]) == 1
    assert "nnUNet_preprocessed not set" in capsys.readouterr().err


def test_custom_template_file(tmp_path):
    path = tmp_path / "mine.json"
    path.write_text(json.dumps({"description": "x", "rep3d": {"large_kernel_size": 13}}))
    assert Rep3DVariant.from_template(str(path)) == replace(Rep3DVariant(), large_kernel_size=13)
    path.write_text(json.dumps({"description": "x", "rep3d": {"mask": "prior", "large_kernel_size": 13}}))
    with pytest.raises(PlansError, match=r"\['mask'\].*geometry only.*the trainer decides"):
        Rep3DVariant.from_template(str(path))
    path.write_text(json.dumps({"rep3d": {"kernel": 13}}))
    with pytest.raises(PlansError, match="unknown keys"):
        Rep3DVariant.from_template(str(path))
