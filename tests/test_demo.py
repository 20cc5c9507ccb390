"""The demo's pieces (the whole demo runs through nnU-Net's commands: `bash scripts/demo.sh`)."""
import json

import numpy as np
import pytest
import SimpleITK as sitk
import torch

from nnunet_helpers import HIPPOCAMPUS
from rep3d_nnunet import Rep3DBlock
from rep3d_nnunet.demo.figure import demo_figure
from rep3d_nnunet.demo.run import DemoError, link_raw_dataset, per_class_dice
from rep3d_nnunet.demo.synthetic import LABELS, synthetic_case, write_synthetic_dataset


def test_synthetic_cases_hold_both_structures_with_overlapping_intensities():
    image, label = synthetic_case(np.random.default_rng(1), (24, 28, 24))
    assert image.shape == label.shape == (24, 28, 24) and image.dtype == np.float32
    assert set(np.unique(label)) == {0, 1, 2}
    blob, tube = image[label == 1], image[label == 2]
    # not separable by a threshold: the classes' intensity ranges overlap
    assert blob.max() > tube.min() and tube.max() > blob.min()


def test_synthetic_dataset_layout_and_no_overwrite(tmp_path):
    folder = write_synthetic_dataset(tmp_path, 991, "Tiny", n_train=3, n_test=1, shape=(16, 16, 16))
    meta = json.loads((folder / "dataset.json").read_text())
    assert meta["labels"] == LABELS and meta["numTraining"] == 3
    assert len(list((folder / "imagesTr").glob("*_0000.nii.gz"))) == 3
    assert len(list((folder / "labelsTs").iterdir())) == 1
    with pytest.raises(FileExistsError):
        write_synthetic_dataset(tmp_path, 991, "Tiny", n_train=3, n_test=1)


def test_link_raw_dataset_holds_out_cases_and_links_only(tmp_path):
    target = link_raw_dataset(HIPPOCAMPUS, tmp_path, n_test=2, max_train=3)
    assert len(list((target / "labelsTr").iterdir())) == 3 and len(list((target / "labelsTs").iterdir())) == 2
    assert all(p.is_symlink() for p in (target / "imagesTr").iterdir())
    assert json.loads((target / "dataset.json").read_text())["numTraining"] == 3
    trained = {p.name for p in (target / "labelsTr").iterdir()}
    assert not trained & {p.name for p in (target / "labelsTs").iterdir()}
    with pytest.raises(DemoError, match="no imagesTr"):
        link_raw_dataset(tmp_path, tmp_path / "other", 2, None)


def test_per_class_dice_and_figure(tmp_path):
    folder = write_synthetic_dataset(tmp_path / "raw", 992, "Fig", n_train=1, n_test=1, shape=(16, 20, 16))
    pred = tmp_path / "pred"
    pred.mkdir()
    label = next((folder / "labelsTs").iterdir())
    sitk.WriteImage(sitk.ReadImage(str(label)), str(pred / label.name))
    (pred / "summary.json").write_text(json.dumps({"mean": {"1": {"Dice": 0.5}, "2": {"Dice": 0.7}},
                                                   "foreground_mean": {"Dice": 0.6}}))
    assert per_class_dice(pred / "summary.json") == ({"1": 0.5, "2": 0.7}, 0.6)
    block = Rep3DBlock(4, 7, "lrbm")
    ckpt = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": {f"encoder.stages.1.0.{k}": v for k, v in block.state_dict().items()}}, ckpt)
    png = demo_figure(folder, pred, ckpt, tmp_path / "demo.png")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
