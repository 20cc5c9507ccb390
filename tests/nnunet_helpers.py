"""Shared helpers for the end-to-end tests: a Hippocampus subset and nnU-Net's console scripts."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Optional, Sequence

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
HIPPOCAMPUS = SHARED_DATA / "Dataset004_Hippocampus"
BIN = Path(sys.executable).parent


def hippocampus_cases() -> List[str]:
    """Sorted case ids of the shared Hippocampus dataset; a clear error when it is missing."""
    if not (HIPPOCAMPUS / "imagesTr").is_dir():
        raise FileNotFoundError(f"the end-to-end tests read MSD Task04 Hippocampus from {HIPPOCAMPUS}; "
                                "check out the project's shared/ folder beside the repository")
    return sorted(p.name[: -len("_0000.nii.gz")] for p in (HIPPOCAMPUS / "imagesTr").glob("*_0000.nii.gz"))


def make_hippocampus_subset(raw_root: Path, n_train: int, n_test: int, dataset: str = "Dataset004_Hippocampus"
                            ) -> Path:
    """Link ``n_train`` training cases (+ ``n_test`` held-out cases as imagesTs/labelsTs) into ``raw_root``."""
    cases = hippocampus_cases()
    folder = raw_root / dataset
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for i, case in enumerate(cases[: n_train + n_test]):
        split = "Tr" if i < n_train else "Ts"
        (folder / f"images{split}" / f"{case}_0000.nii.gz").symlink_to(HIPPOCAMPUS / "imagesTr" / f"{case}_0000.nii.gz")
        (folder / f"labels{split}" / f"{case}.nii.gz").symlink_to(HIPPOCAMPUS / "labelsTr" / f"{case}.nii.gz")
    meta = json.loads((HIPPOCAMPUS / "dataset.json").read_text())
    meta["numTraining"] = n_train
    (folder / "dataset.json").write_text(json.dumps(meta, indent=2))
    return folder


def nnunet_env(root: Path, **extra: str) -> Dict[str, str]:
    """An environment for nnU-Net's console scripts with nnUNet_raw/preprocessed/results under ``root``."""
    env = dict(os.environ)
    for key in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (root / key).mkdir(parents=True, exist_ok=True)
        env[key] = str(root / key)
    env.pop("nnUNet_n_proc_DA", None)   # planning crashes with it set (torch.set_num_threads(0))
    env.update({"nnUNet_def_n_proc": "2", "OMP_NUM_THREADS": "2", "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env


def run_cli(args: Sequence[str], env: Dict[str, str], timeout: float = 900,
            cwd: Optional[Path] = None) -> subprocess.CompletedProcess:
    """Run a console script from this venv; on failure raise with the tail of its output."""
    exe = shutil.which(args[0], path=str(BIN)) or args[0]
    proc = subprocess.run([exe, *args[1:]], env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        raise AssertionError(f"{' '.join(args)} exited {proc.returncode}\n--- stdout ---\n{proc.stdout[-4000:]}"
                             f"\n--- stderr ---\n{proc.stderr[-4000:]}")
    return proc


TRAIN_ENV = {"nnUNet_n_proc_DA": "0"}
DATASET = "Dataset004_Hippocampus"
SMOKE_TEMPLATE = Path(__file__).resolve().parent / "data" / "nnunet_smoke_template.json"
SMOKE_PLANS = "nnUNetRep3DSmokePlans"


def private_nnunetv2(root: Path) -> Path:
    """Copy the installed nnunetv2 package under ``root`` (sources only) and return the folder to put on
    PYTHONPATH, so `rep3d-nnunet register` writes its shims there and the shared venv is never modified.

    Shims of an earlier `register` into the installed nnunetv2 are left out: every copy starts unregistered."""
    import nnunetv2

    site = root / "site"
    shutil.copytree(Path(nnunetv2.__file__).parent, site / "nnunetv2",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", "rep3d_nnunet_*"))
    return site   # single-threaded augmenter: 2 CI cores, no worker processes
