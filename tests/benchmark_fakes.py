"""Hand-made nnU-Net-like results folders for the benchmark's fast tests (no training)."""
from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Dict, Optional

import numpy as np

CASES = [f"hippocampus_{i:03d}" for i in range(1, 21)]
SPLITS = {0: CASES[0:10], 1: CASES[10:20]}   # fold -> validation cases

PLANS = {
    "dataset_name": "Dataset004_Hippocampus", "plans_name": "nnUNetPlans",
    "transpose_forward": [0, 1, 2], "transpose_backward": [0, 1, 2], "image_reader_writer": "SimpleITKIO",
    "foreground_intensity_properties_per_channel": {"0": {"mean": 80.0, "std": 20.0}},
    "configurations": {"3d_fullres": {
        "data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
        "spacing": [1.0, 1.0, 1.0], "normalization_schemes": ["ZScoreNormalization"], "use_mask_for_norm": [False],
        "resampling_fn_data": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": {"order": 3},
        "resampling_fn_seg": "resample_data_or_seg_to_shape", "resampling_fn_seg_kwargs": {"order": 1},
        "patch_size": [40, 56, 40], "batch_size": 9,
        "architecture": {"network_class_name": "x.Y", "arch_kwargs": {}, "_kw_requires_import": []}}},
}
DATASET_JSON = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "Anterior": 1, "Posterior": 2},
                "numTraining": 20, "file_ending": ".nii.gz"}


def dice_table(seed: int, shift: float = 0.0) -> Dict[str, Dict[str, float]]:
    rng = np.random.default_rng(seed)
    return {c: {"1": float(np.clip(rng.normal(0.8 + shift, 0.05), 0, 1)),
                "2": float(np.clip(rng.normal(0.75 + shift, 0.05), 0, 1))} for c in CASES}


def make_model_folder(results: Path, trainer: str, plans_name: str = "nnUNetPlans", dice: Optional[dict] = None,
                      plans: Optional[dict] = None, dataset_json: Optional[dict] = None, epochs: int = 1000,
                      splits: Optional[Dict[int, list]] = None, splits_sha256: str = "abc123",
                      configuration: str = "3d_fullres", seconds_per_epoch: float = 100.0,
                      peak_gpu_memory_mb: Optional[float] = 7000.0, peak_cpu_rss_mb: Optional[float] = 3000.0,
                      schedule: Optional[str] = None, device: str = "cuda") -> Path:
    """``<results>/<trainer>__<plans>__<config>/`` with plans, dataset.json, per-fold summary and job record."""
    dice = dice if dice is not None else dice_table(0)
    plans = copy.deepcopy(plans or PLANS)
    plans["plans_name"] = plans_name
    folder = results / f"{trainer}__{plans_name}__{configuration}"
    folder.mkdir(parents=True)
    (folder / "plans.json").write_text(json.dumps(plans))
    (folder / "dataset.json").write_text(json.dumps(dataset_json or DATASET_JSON))
    for fold, cases in (splits or SPLITS).items():
        val = folder / f"fold_{fold}" / "validation"
        val.mkdir(parents=True)
        per_case = [{"metrics": {k: {"Dice": v, "IoU": v / (2 - v)} for k, v in dice[c].items()},
                     "prediction_file": str(val / f"{c}.nii.gz"), "reference_file": f"/gt/{c}.nii.gz"}
                    for c in cases if c in dice]
        (val / "summary.json").write_text(json.dumps({"metric_per_case": per_case}))
        record = {"status": "finished", "epochs": epochs, "splits_sha256": splits_sha256, "wall_time_s": 3600.0,
                  "seconds_per_epoch": seconds_per_epoch, "peak_gpu_memory_mb": peak_gpu_memory_mb,
                  "peak_cpu_rss_mb": peak_cpu_rss_mb, "device": device}
        if schedule:
            record["schedule"] = schedule
        (folder / f"fold_{fold}" / "benchmark_job.json").write_text(json.dumps(record))
    return folder
