"""The nnU-Net adapter: paths, dataset names, console scripts, checkpoints, trainer lookup, the predictor's network."""
from __future__ import annotations

import os
import sys
import textwrap

import pytest
import torch

from rep3d_nnunet.nnunet import adapter as A
from rep3d_nnunet.nnunet import registration as R


@pytest.fixture
def nnunet_dirs(tmp_path, monkeypatch):
    for v in A.NNUNET_VARS:
        (tmp_path / v).mkdir()
        monkeypatch.setenv(v, str(tmp_path / v))
    return tmp_path


def test_environment_and_dataset_names(nnunet_dirs, monkeypatch):
    (nnunet_dirs / "nnUNet_raw" / "Dataset004_Hippocampus").mkdir()
    assert A.dataset_name("4") == A.dataset_name(4) == "Dataset004_Hippocampus"
    assert A.dataset_id("Dataset004_Hippocampus") == 4
    with pytest.raises(A.NnUNetEnvironmentError, match=r"no folder Dataset005_\*"):
        A.dataset_name("5")
    with pytest.raises(A.NnUNetEnvironmentError, match="neither an id nor"):
        A.dataset_name("hippo")
    (nnunet_dirs / "nnUNet_results" / "Dataset004_Other").mkdir()
    with pytest.raises(A.NnUNetEnvironmentError, match="more than one"):
        A.dataset_name("4")
    with pytest.raises(A.NnUNetEnvironmentError, match="run nnUNetv2_plan_and_preprocess"):
        A.preprocessed_dataset_folder("Dataset004_Hippocampus")
    monkeypatch.delenv("nnUNet_results")
    with pytest.raises(A.NnUNetEnvironmentError, match="nnUNet_results not set"):
        A.nnunet_paths("nnUNet_preprocessed", "nnUNet_results")


def test_console_scripts_pass_the_environment_through(tmp_path, monkeypatch):
    script = tmp_path / "nnUNetv2_plan_experiment"   # named like a planning script: nnUNet_n_proc_DA=0 is dropped
    script.write_text(f"#!{sys.executable}\nimport os, sys\n"
                      "print('DA', os.environ.get('nnUNet_n_proc_DA'), 'X', os.environ.get('MY_VAR'))\n"
                      "sys.exit(int(sys.argv[1]))\n")
    script.chmod(0o755)
    train = tmp_path / "nnUNetv2_train"
    train.write_bytes(script.read_bytes())
    train.chmod(0o755)
    env = dict(os.environ, nnUNet_n_proc_DA="0", MY_VAR="kept")
    assert "DA None X kept" in A.run_console_script([str(script), "0"], env, log=None)
    assert "DA 0 X kept" in A.run_console_script([str(train), "0"], env, log=None)   # training keeps it
    assert "DA 12 X kept" in A.run_console_script([str(script), "0"], dict(env, nnUNet_n_proc_DA="12"), log=None)
    with pytest.raises(A.ConsoleScriptError, match=r"(?s)exit 3\).*DA None X kept"):   # command + output's tail
        A.run_console_script([str(script), "3"], env, what="planning", log=None)
    with pytest.raises(A.ConsoleScriptError, match="rep3d_no_such_script not found: install"):
        A.run_console_script(["rep3d_no_such_script"], env, log=None)
    assert A.console_script("rep3d_no_such_script", required=False) == "rep3d_no_such_script"


def test_read_checkpoint_errors_are_clear(tmp_path):
    good = tmp_path / "good.pth"
    torch.save({"network_weights": {"w": torch.ones(1)}, "trainer_name": "T"}, good)
    assert A.read_checkpoint(good, required=("trainer_name",))["trainer_name"] == "T"
    assert set(A.state_dict_of(A.read_checkpoint(good))) == {"w"}
    with pytest.raises(A.CheckpointError, match="lacks \\['optimizer_state', 'current_epoch', 'init_args'\\]"):
        A.read_checkpoint(good, required=A.TRAINER_CHECKPOINT_KEYS)
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(good.read_bytes()[:40])
    with pytest.raises(A.CheckpointError, match="cannot read checkpoint .*truncated.pth.*nothing was changed"):
        A.read_checkpoint(truncated)
    assert isinstance(A.CheckpointError("x"), RuntimeError)   # callers catching RuntimeError still catch it


def test_find_trainer_class_everywhere_and_a_clear_error(tmp_path, monkeypatch):
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    assert A.find_trainer_class("nnUNetTrainer") is nnUNetTrainer
    assert A.find_trainer_class("nnUNetTrainerRep3D").__module__.startswith("rep3d_nnunet.nnunet.trainers")
    # a stock variant behind nnU-Net's primus subpackage: found even where primus cannot be imported
    assert A.find_trainer_class("nnUNetTrainer_250epochs").__name__ == "nnUNetTrainer_250epochs"

    # a registered user trainer, through the record `register --user-trainers` wrote
    paths = {"trainers": tmp_path / "t" / "rep3d_nnunet_trainers.py", "planners": tmp_path / "p" / "x.py"}
    for p in paths.values():
        p.parent.mkdir()
    monkeypatch.setattr(R, "shim_paths", lambda: paths)
    user = tmp_path / "user"
    user.mkdir()
    (user / "adapter_user_trainers.py").write_text(textwrap.dedent("""\
        from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
        class nnUNetTrainerAdapterUser(nnUNetTrainer):
            pass
    """))
    R.register([str(user)])
    try:
        assert A.find_trainer_class("nnUNetTrainerAdapterUser").__module__ == "adapter_user_trainers"
    finally:
        sys.modules.pop("adapter_user_trainers", None)
        if str(user) in sys.path:
            sys.path.remove(str(user))

    with pytest.raises(A.TrainerNotFoundError) as info:
        A.find_trainer_class("nnUNetTrainerNobodyWroteThis")
    message = str(info.value)
    assert "rep3d-nnunet register --user-trainers DIR" in message and str(user) in message
    assert "torchvision::nms" not in message   # a named fix, not the torchvision traceback


def test_predictor_network_is_built_for_any_trainer(tmp_path):
    from test_analysis import PLAIN_ARCH, _tiny_model_folder
    import json

    folder = _tiny_model_folder(str(tmp_path))
    plans = json.load(open(os.path.join(folder, "plans.json")))
    dataset = json.load(open(os.path.join(folder, "dataset.json")))
    net = A.build_predictor_network("nnUNetTrainer", plans, dataset, "3d_fullres", device="meta")
    assert type(net).__name__ == PLAIN_ARCH["network_class_name"].rsplit(".", 1)[1]
    assert not net.decoder.deep_supervision and next(net.parameters()).device.type == "meta"
    _, _, n_in, n_out = A.network_io(plans, dataset, "3d_fullres")
    assert (n_in, n_out) == (1, 3)
    with pytest.raises(ValueError, match="form must be"):
        A.build_network(object, None, None, 1, 1, form="predictor")
