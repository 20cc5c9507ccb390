"""nnU-Net's path variables, checked where we need them (one clear error instead of a late crash)."""
from __future__ import annotations

import os
from pathlib import Path


class NnUNetEnvironmentError(RuntimeError):
    """A required nnU-Net path variable is unset or points nowhere."""


def check_nnunet_environment(*names: str) -> None:
    """Raise ``NnUNetEnvironmentError`` naming every variable among ``names`` that is unset."""
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise NnUNetEnvironmentError(
            f"environment variable(s) {', '.join(missing)} not set: nnU-Net needs nnUNet_raw, nnUNet_preprocessed "
            "and nnUNet_results to point at folders (see nnU-Net's documentation/setting_up_paths.md)")


def preprocessed_dataset_folder(dataset: str) -> Path:
    """``$nnUNet_preprocessed/DatasetXXX_Name`` for a dataset id or name; raises if it does not exist."""
    check_nnunet_environment("nnUNet_preprocessed")
    from nnunetv2.utilities.dataset_name_id_conversion import maybe_convert_to_dataset_name

    try:
        name = maybe_convert_to_dataset_name(dataset)
    except RuntimeError as e:
        raise NnUNetEnvironmentError(f"dataset {dataset!r} not found: {e}") from e
    folder = Path(os.environ["nnUNet_preprocessed"]) / name
    if not folder.is_dir():
        raise NnUNetEnvironmentError(f"{folder} does not exist: run nnUNetv2_plan_and_preprocess for {name} first")
    return folder
