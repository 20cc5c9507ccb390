"""Trainers: variants, optimisers, training vs deploy form, and bad input refused before anything is written."""
from __future__ import annotations

import json
from copy import deepcopy

import pytest
import torch
from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

from rep3d_nnunet.conv import CSLADWConv3d, ReparamDWConv3d
from rep3d_nnunet.nnunet import forms
from rep3d_nnunet.nnunet import trainers as T
from rep3d_nnunet.nnunet.architecture import PlansError, Rep3DVariant
from rep3d_nnunet.nnunet.environment import NnUNetEnvironmentError
from rep3d_nnunet.nnunet.templates import merged_plans
from test_nnunet_plans import RESENC_ARCH, plans_with

DATASET_JSON = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": 4,
                "file_ending": ".nii.gz"}
SMALL = Rep3DVariant(large_kernel_size=7, n_blocks_per_stage=1, stem_kernel_size=3)


def _small_rep3d_plans() -> dict:
    arch = deepcopy(RESENC_ARCH)
    arch["arch_kwargs"].update(n_stages=3, features_per_stage=[4, 8, 16], kernel_sizes=[[3, 3, 3]] * 3,
                               strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], n_blocks_per_stage=[1, 1, 1],
                               n_conv_per_stage_decoder=[1, 1])
    plans = plans_with(arch)
    plans["configurations"]["3d_fullres"]["patch_size"] = [16, 16, 16]
    return merged_plans(plans, SMALL, "nnUNetRep3DPlans")


@pytest.fixture
def nnunet_dirs(tmp_path, monkeypatch):
    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / var).mkdir()
        monkeypatch.setenv(var, str(tmp_path / var))
    return tmp_path


def _trainer(cls, plans, configuration="3d_fullres"):
    return cls(dict(plans, continue_training=False), configuration, 0, DATASET_JSON, torch.device("cpu"))


ARCHITECTURES = ("nnUNetTrainerRep3D", "nnUNetTrainerRep3DFixedPrior", "nnUNetTrainerRep3DPlainLK",
                 "nnUNetTrainerRep3DCSLA", "nnUNetTrainerUXNet", "nnUNetTrainerUXNetLRBM")


def test_every_variant_exists_with_its_recipe():
    names = set(T.__all__)
    for arch in ARCHITECTURES:
        assert {arch, f"{arch}_SGD", f"{arch}_tiny", f"{arch}_250epochs"} <= names
    assert {"nnUNetTrainer_tiny", "nnUNetTrainerRep3D_SGD_tiny", "nnUNetTrainerRep3D_SGD_250epochs",
            "nnUNetTrainerRep3D_demo"} <= names
    assert T.nnUNetTrainerRep3D_SGD_250epochs.schedule == {"num_epochs": 250}
    assert T.nnUNetTrainerRep3D_SGD_250epochs.recipe == T.NNUNET_SGD
    assert T.nnUNetTrainerRep3DCSLA_tiny.variant.csla_small_kernel == 3


def test_every_trainer_is_a_written_class_statement():
    """grep finds every -tr name: each class is written in its module (no type(...) generation)."""
    import inspect
    import re

    from rep3d_nnunet.nnunet import baselines

    for module in (T, baselines):
        for name in module.__all__:
            cls = getattr(module, name)
            assert cls.__name__ == cls.__qualname__ == name
            source = inspect.getsource(inspect.getmodule(cls))
            assert re.search(rf"^class {name}\(", source, re.M), f"{name} has no class statement"


class nnUNetTrainerRep3D_SGD_100epochs(T.nnUNetTrainerRep3D_SGD):
    """The three-line subclass docs/nnunet.md shows for a custom schedule."""
    schedule = {"num_epochs": 100}


def test_optimisers_and_schedules(nnunet_dirs):
    plans = _small_rep3d_plans()
    paper = _trainer(T.nnUNetTrainerRep3D, plans)
    assert (paper.initial_lr, paper.weight_decay, paper.num_epochs) == (1e-4, 0.08, 1000)
    paper.network = torch.nn.Conv3d(1, 1, 1)
    opt, sched = paper.configure_optimizers()
    assert isinstance(opt, torch.optim.AdamW) and opt.defaults["betas"] == (0.9, 0.999) and opt.defaults["eps"] == 1e-8
    sgd = _trainer(nnUNetTrainerRep3D_SGD_100epochs, plans)
    assert (sgd.initial_lr, sgd.weight_decay, sgd.num_epochs) == (1e-2, 3e-5, 100)
    sgd.network = torch.nn.Conv3d(1, 1, 1)
    assert isinstance(sgd.configure_optimizers()[0], torch.optim.SGD)
    tiny = _trainer(T.nnUNetTrainerUXNet_tiny, plans)
    assert tiny.num_epochs == 1 and tiny.num_iterations_per_epoch == 2 and tiny.save_every == 1
    demo = _trainer(T.nnUNetTrainerRep3D_demo, plans)
    assert (demo.initial_lr, demo.num_epochs, demo.max_batch_size) == (1e-3, 15, 2)


def test_generators_get_their_own_group_in_every_recipe(nnunet_dirs):
    pm = PlansManager(_small_rep3d_plans())
    cm = pm.get_configuration("3d_fullres")
    for cls in (T.nnUNetTrainerRep3D, T.nnUNetTrainerRep3D_SGD):
        trainer = _trainer(cls, _small_rep3d_plans())
        trainer.network = trainer.build_network_architecture(pm, cm, 1, 3, True)
        opt, sched = trainer.configure_optimizers()
        assert [g["lr"] for g in opt.param_groups] == pytest.approx([trainer.initial_lr, trainer.initial_lr * 0.01])
        sched.step(trainer.num_epochs // 2)  # the poly schedule keeps the ratio
        assert opt.param_groups[1]["lr"] == pytest.approx(0.01 * opt.param_groups[0]["lr"])


def test_cpu_schedule_from_the_environment_replaces_the_tiny_one(nnunet_dirs, monkeypatch):
    plans = _small_rep3d_plans()
    monkeypatch.setenv("REP3D_CPU_SCHEDULE", "10x25,batch3")
    tiny = _trainer(T.nnUNetTrainerRep3D_tiny, plans)
    assert (tiny.num_epochs, tiny.num_iterations_per_epoch, tiny.num_val_iterations_per_epoch) == (10, 25, 5)
    assert tiny.max_batch_size == 3
    log = tiny.log_file
    assert "REP3D_CPU_SCHEDULE=10x25,batch3" in open(log).read()
    assert _trainer(T.nnUNetTrainerRep3D_demo, plans).num_epochs == 15  # the demo keeps its own schedule
    stock = _trainer(T.nnUNetTrainer_tiny, plans)  # nnU-Net's own trainer under the mixin
    assert (stock.num_epochs, stock.max_batch_size) == (10, 3)
    monkeypatch.setenv("REP3D_CPU_SCHEDULE", "ten epochs")
    before = sorted(p.name for p in (nnunet_dirs / "nnUNet_results").rglob("*"))
    with pytest.raises(ValueError, match="REP3D_CPU_SCHEDULE.*<epochs>x<iterations>,batch<N>"):
        _trainer(T.nnUNetTrainerRep3D_tiny, plans)
    assert sorted(p.name for p in (nnunet_dirs / "nnUNet_results").rglob("*")) == before


@pytest.mark.parametrize("cls, conv", [(T.nnUNetTrainerRep3D, ReparamDWConv3d),
                                       (T.nnUNetTrainerRep3DCSLA, CSLADWConv3d)])
def test_builder_gives_training_form_in_training_and_deploy_form_to_the_predictor(cls, conv, nnunet_dirs):
    pm = PlansManager(_small_rep3d_plans())
    cm = pm.get_configuration("3d_fullres")
    trainer = _trainer(cls, _small_rep3d_plans())
    training = trainer.build_network_architecture(pm, cm, 1, 3, True)  # what the trainer's initialize() calls
    deployed = cls.build_network_architecture(pm, cm, 1, 3, False)  # how nnU-Net's predictor calls it
    assert not training.deploy and any(isinstance(m, conv) for m in training.modules())
    assert deployed.deploy and not any(isinstance(m, conv) for m in deployed.modules())
    assert not forms.build_network(cls, pm, cm, 1, 3, form="training").deploy  # the analysis' route
    deployed.load_state_dict(training.state_dict())
    training.decoder.deep_supervision = False
    x = torch.randn(1, 1, 16, 16, 16)
    with torch.no_grad():
        diff = (training.eval()(x).softmax(1) - deployed.eval()(x).softmax(1)).abs().max()
    assert diff <= 1e-5
    with pytest.raises(ValueError, match="form must be 'deploy'"):
        forms.build_network(cls, pm, cm, 1, 3, form="predictor")


def test_overriding_the_nnunet_hook_is_refused_with_the_fix(nnunet_dirs):
    class Mine(T.nnUNetTrainerRep3D):
        @classmethod
        def build_network_architecture(cls, *args, **kwargs):
            return super().build_network_architecture(*args, **kwargs)

    with pytest.raises(TypeError, match="override build_network_form"):
        _trainer(Mine, _small_rep3d_plans())
    assert list((nnunet_dirs / "nnUNet_results").iterdir()) == []


@pytest.mark.parametrize("configuration, plans_fn, message", [
    ("2d", _small_rep3d_plans, "no configuration '2d'"),
    ("2d", lambda: plans_with(RESENC_ARCH), "3D only"),
    ("3d_fullres", lambda: plans_with(RESENC_ARCH), "Rep3D trainers need Rep3D plans"),
])
def test_bad_plans_fail_before_any_folder_is_created(nnunet_dirs, configuration, plans_fn, message):
    with pytest.raises(PlansError, match=message):
        _trainer(T.nnUNetTrainerRep3D, plans_fn(), configuration)
    assert list((nnunet_dirs / "nnUNet_results").iterdir()) == []


def test_even_kernel_in_plans_fails_before_any_folder_is_created(nnunet_dirs):
    plans = _small_rep3d_plans()
    plans["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"]["dw_kernel_sizes"][1] = [6, 7, 7]
    with pytest.raises(PlansError, match="even"):
        _trainer(T.nnUNetTrainerRep3DFixedPrior, plans)
    assert list((nnunet_dirs / "nnUNet_results").iterdir()) == []


def test_missing_environment_is_named(nnunet_dirs, monkeypatch):
    monkeypatch.delenv("nnUNet_results")
    with pytest.raises(NnUNetEnvironmentError, match="nnUNet_results not set"):
        _trainer(T.nnUNetTrainerRep3D, _small_rep3d_plans())


def test_corrupt_or_foreign_checkpoints_are_clear_errors(tmp_path):
    truncated = tmp_path / "checkpoint_final.pth"
    torch.save({"network_weights": {"w": torch.zeros(1000)}}, truncated)
    truncated.write_bytes(truncated.read_bytes()[:200])
    with pytest.raises(RuntimeError, match="cannot read checkpoint .*truncated"):
        T.read_checkpoint(str(truncated))
    foreign = tmp_path / "weights.pth"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(RuntimeError, match="lacks .*network_weights"):
        T.read_checkpoint(str(foreign))
    (tmp_path / "text.pth").write_text(json.dumps({"a": 1}))
    with pytest.raises(RuntimeError, match="cannot read checkpoint"):
        T.read_checkpoint(str(tmp_path / "text.pth"))
