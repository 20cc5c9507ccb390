"""Reading what nnU-Net (and our runner) left in a results folder: no statistics, no decisions.

Layout (nnU-Net's): ``$nnUNet_results/<Dataset>/<trainer>__<plans>__<configuration>/``
holding ``plans.json``, ``dataset.json`` and ``fold_<f>/`` with ``checkpoint_final.pth``,
``validation/summary.json`` and our ``benchmark_job.json``.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Dict, Optional

JOB_RECORD = "benchmark_job.json"
MANIFEST = "rep3d_benchmark_manifest.json"  # <results>/<Dataset>/: splits hash, methods, run command lines
FINAL_CHECKPOINT = "checkpoint_final.pth"
RESUMABLE_CHECKPOINTS = ("checkpoint_final.pth", "checkpoint_latest.pth", "checkpoint_best.pth")


class ResultsError(RuntimeError):
    """A results folder lacks what the benchmark needs."""


def model_folder(dataset_name: str, trainer: str, plans: str, configuration: str,
                 results_root: Optional[str] = None) -> Path:
    """nnU-Net's model output folder for one (trainer, plans, configuration)."""
    root = results_root or os.environ.get("nnUNet_results")
    if not root:
        raise ResultsError("nnUNet_results is not set")
    return Path(root) / dataset_name / f"{trainer}__{plans}__{configuration}"


def fold_dir(folder: Path, fold: int) -> Path:
    return Path(folder) / f"fold_{fold}"


def fold_finished(fold_path: Path) -> bool:
    """nnU-Net finished this fold: final checkpoint and validation summary both written."""
    return (fold_path / FINAL_CHECKPOINT).is_file() and (fold_path / "validation" / "summary.json").is_file()


def fold_started(fold_path: Path) -> bool:
    """Some checkpoint exists, so ``nnUNetv2_train --c`` can continue from it."""
    return any((fold_path / c).is_file() for c in RESUMABLE_CHECKPOINTS)


def case_id(path: str, file_ending: str) -> str:
    name = os.path.basename(path)
    return name[: -len(file_ending)] if file_ending and name.endswith(file_ending) else name.split(".")[0]


def read_summary(summary_path: Path, file_ending: str, metric: str = "Dice") -> Dict[str, Dict[str, float]]:
    """Per-case, per-class ``metric`` from an nnU-Net ``summary.json``: ``{case: {class: value}}``.

    Class keys are nnU-Net's label (or region) keys as strings. NaN (nnU-Net's value
    when reference and prediction are both empty) is kept as NaN.
    """
    try:
        summary = json.loads(Path(summary_path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ResultsError(f"cannot read nnU-Net summary {summary_path}: {e}") from e
    out: Dict[str, Dict[str, float]] = {}
    for entry in summary.get("metric_per_case", []):
        case = case_id(entry.get("reference_file") or entry["prediction_file"], file_ending)
        out[case] = {str(k): float("nan") if v.get(metric) is None else float(v[metric])
                     for k, v in entry["metrics"].items()}
    if not out:
        raise ResultsError(f"{summary_path} holds no per-case metrics")
    return out


def read_json(path: Path) -> dict:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ResultsError(f"cannot read {path}: {e}") from e


def read_job_record(fold_path: Path) -> Optional[dict]:
    path = fold_path / JOB_RECORD
    return read_json(path) if path.is_file() else None


def read_checkpoint_info(checkpoint: Path) -> dict:
    """Epochs trained and mean seconds per epoch (nnU-Net's own epoch timestamps) from a checkpoint."""
    from rep3d_nnunet.nnunet.adapter import read_checkpoint

    ckpt = read_checkpoint(checkpoint)
    log = ckpt.get("logging", {}) or {}
    starts, ends = log.get("epoch_start_timestamps", []), log.get("epoch_end_timestamps", [])
    durations = [e - s for s, e in zip(starts, ends)]
    return {"epochs": int(ckpt.get("current_epoch", len(durations))),
            "seconds_per_epoch": (sum(durations) / len(durations)) if durations else None,
            "trainer_name": ckpt.get("trainer_name")}
