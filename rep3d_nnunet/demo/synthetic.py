"""A small synthetic 3D segmentation dataset in nnU-Net's raw format (the demo's default).

Each case holds two structures on a noisy, smoothly shaded background: an
ellipsoid ("blob", label 1) and a tube ("tube", label 2), with randomised
position, size, orientation and intensity. Small enough to plan, preprocess and
train on a CPU in minutes; structured enough that a segmentation network must
learn shape and context, not a threshold (the two classes' intensity ranges
overlap).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence, Tuple

import numpy as np
import SimpleITK as sitk

LABELS = {"background": 0, "blob": 1, "tube": 2}


def synthetic_case(rng: np.random.Generator, shape: Sequence[int] = (32, 40, 32)
                   ) -> Tuple[np.ndarray, np.ndarray]:
    """One (image float32, label uint8) pair of the given (z, y, x) shape."""
    grid = np.stack(np.meshgrid(*[np.arange(s, dtype=np.float32) for s in shape], indexing="ij"), -1)
    label = np.zeros(shape, np.uint8)
    size = np.array(shape, np.float32)

    centre = rng.uniform(0.35, 0.65, 3) * size
    radii = rng.uniform(0.12, 0.22, 3) * size.min()
    rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
    local = (grid - centre) @ rot
    label[((local / radii) ** 2).sum(-1) <= 1] = 1

    # a tube along a random direction through a random point, off the blob where they overlap
    point = rng.uniform(0.3, 0.7, 3) * size
    direction = rng.normal(size=3)
    direction /= np.linalg.norm(direction)
    rel = grid - point
    dist = np.linalg.norm(rel - (rel @ direction)[..., None] * direction, axis=-1)
    tube = (dist <= rng.uniform(2.0, 3.5)) & (label == 0)
    label[tube] = 2

    base = rng.uniform(80, 120)
    means = {1: base + rng.uniform(25, 45), 2: base + rng.uniform(35, 60)}
    image = np.full(shape, base, np.float32)
    for cls, mean in means.items():
        image[label == cls] = mean
    shading = (grid - size / 2) @ rng.normal(scale=0.6, size=3)
    image += shading + rng.normal(scale=12.0, size=shape).astype(np.float32)
    return image.astype(np.float32), label


def _write(array: np.ndarray, path: Path, spacing: Sequence[float]) -> None:
    img = sitk.GetImageFromArray(array)
    img.SetSpacing(tuple(float(s) for s in spacing))
    sitk.WriteImage(img, str(path), useCompression=True)


def write_synthetic_dataset(raw_root: Path, dataset_id: int = 990, name: str = "Rep3DDemo", n_train: int = 24,
                            n_test: int = 4, shape: Sequence[int] = (32, 40, 32), seed: int = 0) -> Path:
    """Write ``Dataset{id:03d}_{name}`` under ``raw_root`` (imagesTr/labelsTr/imagesTs/labelsTs, dataset.json).

    Refuses to touch an existing folder, so a user's data is never overwritten.
    """
    folder = Path(raw_root) / f"Dataset{dataset_id:03d}_{name}"
    if folder.exists():
        raise FileExistsError(f"{folder} already exists; remove it or pick another dataset id")
    rng = np.random.default_rng(seed)
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (folder / sub).mkdir(parents=True)
    spacing = (1.0, 1.0, 1.0)
    for i in range(n_train + n_test):
        split = "Tr" if i < n_train else "Ts"
        image, label = synthetic_case(rng, shape)
        case = f"{name.lower()}_{i:03d}"
        _write(image, folder / f"images{split}" / f"{case}_0000.nii.gz", spacing)
        _write(label, folder / f"labels{split}" / f"{case}.nii.gz", spacing)
    meta = {"channel_names": {"0": "synthetic"}, "labels": LABELS, "numTraining": n_train,
            "file_ending": ".nii.gz", "name": name,
            "description": "rep3d-nnunet synthetic demo data (ellipsoid + tube on shaded noise)"}
    (folder / "dataset.json").write_text(json.dumps(meta, indent=2))
    return folder
