"""The one command line: every entry point is a `rep3d-nnunet` subcommand; expected failures are one line."""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import torch

from nnunet_helpers import BIN, make_hippocampus_subset, nnunet_env, private_nnunetv2, run_cli
from rep3d_nnunet.cli import build_parser, main

SUBCOMMANDS = ("register", "unregister", "status", "plan", "plans", "demo", "benchmark", "erf", "masks")


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"rep3d-nnunet {command}: error: ") and "\n" not in err and "Traceback" not in err, err
    return err


def test_help_lists_every_subcommand(capsys):
    text = build_parser().format_help()
    for name in SUBCOMMANDS:
        assert f"\n    {name} " in text or f"\n    {name}\n" in text, (name, text)
    for argv, names in ((["plans", "--help"], ("divisible", "merge-template")),
                        (["benchmark", "--help"], ("run", "report", "methods"))):
        with pytest.raises(SystemExit):
            main(argv)
        out = capsys.readouterr().out
        assert all(n in out for n in names), out
    # the installed console script is this parser
    proc = subprocess.run([str(BIN / "rep3d-nnunet"), "--help"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and all(name in proc.stdout for name in SUBCOMMANDS), proc.stdout + proc.stderr


def test_python_m_alias_kept_where_promised():
    """`python -m rep3d_nnunet.nnunet.baselines.plans` (promised by earlier READMEs) is `plans divisible`."""
    proc = subprocess.run([sys.executable, "-m", "rep3d_nnunet.nnunet.baselines.plans", "--help"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 and "usage: rep3d-nnunet plans divisible" in proc.stdout, proc.stdout + proc.stderr


def test_expected_failures_are_one_line(tmp_path, monkeypatch, capsys):
    for v in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / v).mkdir()
        monkeypatch.setenv(v, str(tmp_path / v))
    assert main(["plans", "divisible", "-d", "4"]) == 1
    assert "exactly one of -tr" in _one_line_error(capsys, "plans divisible")
    assert main(["plan", "-d", "4", "-pl", "nnUNetPlannerNope"]) == 1
    assert "unknown planner 'nnUNetPlannerNope'; ours: nnUNetPlannerRep3D" in _one_line_error(capsys, "plan")
    (tmp_path / "nnUNet_preprocessed" / "Dataset004_Hippocampus").mkdir()
    assert main(["plan", "-d", "4"]) == 1
    assert "dataset_fingerprint.json does not exist" in _one_line_error(capsys, "plan")
    assert main(["demo", "--raw", str(tmp_path), "--work", str(tmp_path / "work")]) == 1
    assert "has no imagesTr/ folder" in _one_line_error(capsys, "demo")


def test_a_model_whose_trainer_is_gone_names_the_registration_command(tmp_path, capsys):
    """Issue 10 item 6: `masks` / `erf` on a model trained with an unregistered user trainer."""
    from test_analysis import _tiny_model_folder

    folder = _tiny_model_folder(str(tmp_path))
    ckpt = os.path.join(folder, "fold_0", "checkpoint_final.pth")
    checkpoint = torch.load(ckpt, weights_only=False)
    checkpoint["trainer_name"] = "nnUNetTrainerMyUnregistered"
    torch.save(checkpoint, ckpt)
    for command in ("masks", "erf"):
        assert main([command, folder, "-o", str(tmp_path / f"{command}.png")]) == 1
        err = _one_line_error(capsys, command)
        assert "'nnUNetTrainerMyUnregistered' not found" in err and "rep3d-nnunet register --user-trainers DIR" in err
        assert "torchvision::nms" not in err


@pytest.mark.slow
def test_plan_runs_our_planner_without_registration(tmp_path):
    """`rep3d-nnunet plan` on an unregistered private nnunetv2: our planner through plan_experiment_dataset."""
    site = private_nnunetv2(tmp_path / "copy")
    env = dict(nnunet_env(tmp_path), PYTHONPATH=str(site), nnUNet_n_proc_DA="0")
    make_hippocampus_subset(tmp_path / "nnUNet_raw", n_train=4, n_test=0)
    run_cli(["nnUNetv2_extract_fingerprint", "-d", "4", "-np", "1"], env)
    out = run_cli(["rep3d-nnunet", "plan", "-d", "4", "-pl", "nnUNetPlannerRep3DL"], env).stdout
    plans_file = tmp_path / "nnUNet_preprocessed" / "Dataset004_Hippocampus" / "nnUNetRep3DLPlans.json"
    assert f"wrote {plans_file}" in out and plans_file.is_file()
    plans = json.loads(plans_file.read_text())
    assert plans["experiment_planner_used"] == "nnUNetPlannerRep3DL" and "3d_fullres" in plans["configurations"]
    assert not list((site / "nnunetv2").rglob("rep3d_nnunet_*"))   # no shim was needed, none was written
