"""End to end through nnU-Net's own console scripts: register, plan, train, predict, evaluate, export.

Every nnU-Net command runs in a subprocess against a private copy of the installed
nnunetv2 package (first on PYTHONPATH), so `rep3d-nnunet register` writes its shims
there and the shared virtual environment is never modified. Rep3D networks are
trained on plans merged from a smoke-test template (7^3 kernels) so that the tiny
schedule takes seconds per epoch on CPU; the planner's own plans are checked, not
trained.
"""
from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from nnunet_helpers import BIN, DATASET, SMOKE_PLANS, TRAIN_ENV, private_nnunetv2, run_cli

pytestmark = pytest.mark.slow



def _run(args, env, expect_ok: bool = True) -> subprocess.CompletedProcess:
    if expect_ok:
        return run_cli(args, env)
    exe = shutil.which(args[0], path=str(BIN)) or args[0]
    return subprocess.run([exe, *args[1:]], env=env, capture_output=True, text=True, timeout=600)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _pre(env) -> Path:
    return Path(env["nnUNet_preprocessed"]) / DATASET


def _model_dir(env, trainer: str, plans: str) -> Path:
    return Path(env["nnUNet_results"]) / DATASET / f"{trainer}__{plans}__3d_fullres"


def _train_predict_evaluate(env, trainer: str, plans: str, tag: str, *train_flags: str) -> Path:
    """Train fold 0 on the tiny schedule, predict imagesTs, evaluate against labelsTs; return the prediction folder."""
    train_env = dict(env, **TRAIN_ENV)
    run_cli(["nnUNetv2_train", "4", "3d_fullres", "0", "-tr", trainer, "-p", plans, "-device", "cpu", *train_flags],
            train_env)
    fold = _model_dir(env, trainer, plans) / "fold_0"
    assert (fold / "checkpoint_final.pth").is_file()
    assert json.loads((fold / "validation" / "summary.json").read_text())["foreground_mean"]["Dice"] >= 0
    raw = Path(env["nnUNet_raw"]) / DATASET
    pred = Path(env["nnUNet_results"]).parent / f"pred_{tag}"
    run_cli(["nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(pred), "-d", "4", "-c", "3d_fullres",
             "-tr", trainer, "-p", plans, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"], env)
    run_cli(["nnUNetv2_evaluate_folder", str(raw / "labelsTs"), str(pred), "-djfile", str(pred / "dataset.json"),
             "-pfile", str(pred / "plans.json")], env)
    summary = json.loads((pred / "summary.json").read_text())
    assert set(summary["mean"]) == {"1", "2"} and len(summary["metric_per_case"]) == 3
    return pred


# A subprocess: nnU-Net's predictor set up exactly as nnUNetv2_predict sets it up. Softmax equality is
# checked on the network outputs: the predictor's exported probabilities pass through its float16
# sliding-window accumulator (nnunetv2 2.8.1), which alone moves them by up to ~5e-4.
_DEPLOY_CHECK = r'''
import json, sys
from pathlib import Path
import torch
import torch.nn.functional as F
from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor
from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class
from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
from rep3d_nnunet.mask import LRBMGenerator
from rep3d_nnunet.nnunet.forms import build_network

def main(model_dir, preprocessed):
    stock = nnUNetPredictor(tile_step_size=0.5, use_gaussian=True, use_mirroring=True, device=torch.device("cpu"),
                            perform_everything_on_device=False, allow_tqdm=False)
    stock.initialize_from_trained_model_folder(model_dir, (0,), "checkpoint_final.pth")
    net = stock.network.eval()
    report = {"class": type(net).__name__, "deploy": bool(net.deploy),
              "generators": [n for n, m in net.named_modules() if isinstance(m, LRBMGenerator)],
              "batchnorms": [n for n, m in net.named_modules() if isinstance(m, torch.nn.BatchNorm3d)]}
    ckpt = torch.load(Path(model_dir) / "fold_0" / "checkpoint_final.pth", map_location="cpu", weights_only=False)
    # the training form, built by the one module that owns the forms, for the predictor's trainer class
    trainer_class = recursive_find_trainer_class_by_name(stock.trainer_name)
    n_in = determine_num_input_channels(stock.plans_manager, stock.configuration_manager, stock.dataset_json)
    training = build_network(trainer_class, stock.plans_manager, stock.configuration_manager, n_in,
                             stock.label_manager.num_segmentation_heads, form="training")
    training.load_state_dict(ckpt["network_weights"])
    training.eval()
    dataset = infer_dataset_class(preprocessed)(preprocessed)
    key = sorted(dataset.identifiers)[0]
    data = torch.from_numpy(dataset.load_case(key)[0][:]).float()
    patch = stock.configuration_manager.patch_size
    x = data[None, :, :patch[0], :patch[1], :patch[2]]
    x = F.pad(x, [p for s, t in zip(reversed(x.shape[2:]), reversed(patch)) for p in (0, t - s)])
    with torch.no_grad():
        report["max_abs_softmax_diff"] = float((net(x).softmax(1) - training(x).softmax(1)).abs().max())
    # the per-case call of nnUNetv2_predict (weights re-loaded, sliding window): no generator may run
    def forbidden(*args):
        raise AssertionError("a mask generator ran during prediction")
    LRBMGenerator.forward = forbidden
    logits = stock.predict_logits_from_preprocessed_data(data)
    report["predicted_shape"] = list(logits.shape)
    print("REPORT" + json.dumps(report))

if __name__ == "__main__":
    main(*sys.argv[1:])
'''


def _deploy_report(env, trainer: str, plans: str, tmp: Path) -> dict:
    script = tmp / "deploy_check.py"
    script.write_text(_DEPLOY_CHECK)
    proc = run_cli([sys.executable, str(script), str(_model_dir(env, trainer, plans)),
                    str(_pre(env) / "nnUNetPlans_3d_fullres")], env)
    return json.loads(proc.stdout.split("REPORT", 1)[1])


def test_planner_writes_rep3d_plans_on_standard_data(rep3d_env):
    pre = _pre(rep3d_env)
    plans = json.loads((pre / "nnUNetRep3DPlans.json").read_text())
    assert set(plans["configurations"]) == {"3d_fullres"}  # no 2d (Rep3D is 3D only); no lowres for this data
    cfg = plans["configurations"]["3d_fullres"]
    assert cfg["data_identifier"] == "nnUNetPlans_3d_fullres"  # same preprocessed data as nnU-Net / ResEnc
    arch = cfg["architecture"]
    assert arch["network_class_name"] == "rep3d_nnunet.networks.unet.Rep3DUNet"
    kw = arch["arch_kwargs"]
    assert not {"block", "mask", "csla_small_kernel"} & set(kw)  # geometry only: the trainer owns the variant
    assert kw["dw_kernel_sizes"][0] == [3, 3, 3] and kw["dw_kernel_sizes"][1] == [21, 21, 21]
    assert all(k % 2 == 1 for ks in kw["dw_kernel_sizes"] for k in ks)
    assert cfg["batch_size"] >= 2
    merged = json.loads((pre / f"{SMOKE_PLANS}.json").read_text())["configurations"]["3d_fullres"]
    standard = json.loads((pre / "nnUNetPlans.json").read_text())["configurations"]["3d_fullres"]
    assert merged["patch_size"] == standard["patch_size"] and merged["batch_size"] == standard["batch_size"]
    assert standard["architecture"]["network_class_name"].endswith("PlainConvUNet")  # source untouched


def test_rep3d_train_predict_evaluate_deployed(rep3d_env, tmp_path):
    trainer = "nnUNetTrainerRep3D_tiny"
    pred = _train_predict_evaluate(rep3d_env, trainer, SMOKE_PLANS, "rep3d", "--npz")
    fold = _model_dir(rep3d_env, trainer, SMOKE_PLANS) / "fold_0"
    assert len(list((fold / "validation").glob("*.npz"))) == 3  # end-of-training validation honoured --npz

    # nnUNetv2_predict's network is the deploy form, equals the training form, never runs a generator
    report = _deploy_report(rep3d_env, trainer, SMOKE_PLANS, tmp_path)
    assert report["class"] == "Rep3DUNet" and report["deploy"] is True
    assert report["generators"] == [] and report["batchnorms"] == []
    assert report["max_abs_softmax_diff"] <= 1e-5 and len(report["predicted_shape"]) == 4

    # a corrupt checkpoint: one clear error, and the file is left as it was
    good = (fold / "checkpoint_final.pth").read_bytes()
    try:
        (fold / "checkpoint_final.pth").write_bytes(good[: len(good) // 3])
        bad = _digest(fold / "checkpoint_final.pth")
        proc = _run(["nnUNetv2_train", "4", "3d_fullres", "0", "-tr", trainer, "-p", SMOKE_PLANS, "-device", "cpu",
                     "--val"], dict(rep3d_env, **TRAIN_ENV), expect_ok=False)
        assert proc.returncode != 0 and "cannot read checkpoint" in proc.stderr
        assert _digest(fold / "checkpoint_final.pth") == bad
    finally:
        (fold / "checkpoint_final.pth").write_bytes(good)

    # export to zip, install into fresh results, predict: identical segmentations
    zip_path = tmp_path / "model.zip"
    run_cli(["nnUNetv2_export_model_to_zip", "-d", "4", "-o", str(zip_path), "-c", "3d_fullres", "-tr", trainer,
             "-p", SMOKE_PLANS, "-f", "0"], rep3d_env)
    fresh = dict(rep3d_env, nnUNet_results=str(tmp_path / "installed_results"))
    Path(fresh["nnUNet_results"]).mkdir()
    run_cli(["nnUNetv2_install_pretrained_model_from_zip", str(zip_path)], fresh)
    raw = Path(rep3d_env["nnUNet_raw"]) / DATASET
    pred2 = tmp_path / "pred_installed"
    run_cli(["nnUNetv2_predict", "-i", str(raw / "imagesTs"), "-o", str(pred2), "-d", "4", "-c", "3d_fullres",
             "-tr", trainer, "-p", SMOKE_PLANS, "-f", "0", "-device", "cpu", "-npp", "1", "-nps", "1"], fresh)
    import SimpleITK as sitk
    for seg in sorted(pred.glob("*.nii.gz")):
        a = sitk.GetArrayFromImage(sitk.ReadImage(str(seg)))
        b = sitk.GetArrayFromImage(sitk.ReadImage(str(pred2 / seg.name)))
        assert np.array_equal(a, b), seg.name


def test_csla_variant_train_predict_evaluate_validate_resume(rep3d_env):
    trainer = "nnUNetTrainerRep3DCSLA_tiny"
    _train_predict_evaluate(rep3d_env, trainer, SMOKE_PLANS, "csla")
    train_env = dict(rep3d_env, **TRAIN_ENV)
    fold = _model_dir(rep3d_env, trainer, SMOKE_PLANS) / "fold_0"
    summary = fold / "validation" / "summary.json"
    summary.unlink()
    # --val reloads checkpoint_final.pth (training form, CSLA branches intact) and validates again
    run_cli(["nnUNetv2_train", "4", "3d_fullres", "0", "-tr", trainer, "-p", SMOKE_PLANS, "-device", "cpu", "--val"],
            train_env)
    assert summary.is_file()
    # --c on a finished run: loads the final checkpoint, trains no further epoch, validates
    proc = run_cli(["nnUNetv2_train", "4", "3d_fullres", "0", "-tr", trainer, "-p", SMOKE_PLANS, "-device", "cpu",
                    "--c"], train_env)
    assert "Mean Validation Dice" in proc.stdout


def test_resenc_m_reference_on_the_same_data(rep3d_env):
    pre = _pre(rep3d_env)
    resenc = json.loads((pre / "nnUNetResEncUNetMPlans.json").read_text())["configurations"]["3d_fullres"]
    assert resenc["data_identifier"] == "nnUNetPlans_3d_fullres"
    _train_predict_evaluate(rep3d_env, "nnUNetTrainer_tiny", "nnUNetResEncUNetMPlans", "resenc_m")


def test_plans_of_another_architecture_are_refused(rep3d_env):
    results = Path(rep3d_env["nnUNet_results"]) / DATASET / "nnUNetTrainerRep3D_tiny__nnUNetResEncUNetMPlans__3d_fullres"
    proc = _run(["nnUNetv2_train", "4", "3d_fullres", "0", "-tr", "nnUNetTrainerRep3D_tiny", "-p",
                 "nnUNetResEncUNetMPlans", "-device", "cpu"], dict(rep3d_env, **TRAIN_ENV), expect_ok=False)
    assert proc.returncode != 0 and "Rep3D trainers need Rep3D plans" in proc.stderr
    assert not results.exists()  # failed before nnU-Net created any folder


def test_user_trainer_visible_after_register_and_gone_after_unregister(hippocampus_preprocessed, tmp_path):
    env0, _ = hippocampus_preprocessed
    env = dict(env0, PYTHONPATH=str(private_nnunetv2(tmp_path)), **TRAIN_ENV)
    user = tmp_path / "my_trainers"
    user.mkdir()
    # the user's trainer announces itself and stops: discovery is what is under test, not training
    (user / "my_rep3d.py").write_text(
        "from rep3d_nnunet.nnunet.trainers import nnUNetTrainerRep3D\n\n"
        "class MyRep3DTrainer(nnUNetTrainerRep3D):\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        print('MY TRAINER WAS FOUND')\n"
        "        raise SystemExit(0)\n")
    train = ["nnUNetv2_train", "4", "3d_fullres", "0", "-tr", "MyRep3DTrainer", "-device", "cpu"]
    out = run_cli(["rep3d-nnunet", "register", "--user-trainers", str(user)], env).stdout
    assert "wrote" in out and str(user) in out
    assert "MY TRAINER WAS FOUND" in run_cli(train, env).stdout

    run_cli(["rep3d-nnunet", "unregister"], env)
    assert not (Path(env["PYTHONPATH"]) / "nnunetv2" / "training" / "nnUNetTrainer" / "rep3d_nnunet_trainers.py").exists()
    after = _run(train, env, expect_ok=False)
    assert after.returncode != 0 and "MY TRAINER WAS FOUND" not in after.stdout
    # (idempotence, foreign files and "nothing to unregister" are covered in test_nnunet_registration.py)
