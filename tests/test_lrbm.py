"""LRBM stays a receptive bias: bounded centre-pinned masks, the generator's optimiser group, fp32 under
autocast, the mask-mode record in checkpoints, and the study script's tiny setting."""
from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from rep3d_nnunet import reparameterize_model
from rep3d_nnunet.conv import ReparamDWConv3d
from rep3d_nnunet.mask import LEARNED_MODES, KernelMask, mask_from_generator
from rep3d_nnunet.optim import PolyLRSchedulerGroups, generator_parameters, param_groups
from rep3d_nnunet.prior import distance_prior

K = 13  # kernel of the toy blocks: large enough for a periphery, cheap enough for 200 steps in CI


@pytest.fixture
def one_thread():
    # the toy loops are tiny ops: one thread avoids contention on a shared 2-core runner
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _perturb(km: KernelMask, std: float = 0.5) -> None:
    for p in km.generator.parameters():
        nn.init.normal_(p, std=std)


def _centre(m: torch.Tensor) -> torch.Tensor:
    """Centre tap of every mask channel, m (C, 1, kd, kh, kw) -> (C,)."""
    kd, kh, kw = m.shape[2:]
    return m[:, 0, kd // 2, kh // 2, kw // 2]


# ---- the mask modes --------------------------------------------------------------------------
@pytest.mark.parametrize("mode", LEARNED_MODES)
@pytest.mark.parametrize("per_channel", [False, True])
def test_every_learned_mode_is_the_prior_at_init(mode, per_channel):
    m = KernelMask(3, (5, 7, 9), mode, per_channel=per_channel)()
    assert torch.equal(m, distance_prior((5, 7, 9)).expand_as(m))


@pytest.mark.parametrize("mode", ["lrbm", "lrbm_power"])
@pytest.mark.parametrize("per_channel", [False, True])
def test_bounded_modes_pin_each_centre_and_stay_in_their_range(mode, per_channel):
    km = KernelMask(4, 9, mode, per_channel=per_channel)
    _perturb(km, std=0.5)  # far from init (g spans about +-10), not so far that fp32 sigmoid underflows
    m = km()
    p = km.prior.transpose(0, 1)
    assert torch.allclose(_centre(m), torch.ones(m.shape[0]), atol=1e-6, rtol=0)
    assert (m > 0).all() and (m <= 1).all()
    if mode == "lrbm":
        assert (m < 2 * p + 1e-7).all()  # 0 < M < 2P
    else:
        assert (m >= p ** 2 - 1e-7).all()  # P^2 <= M <= 1
    if per_channel:
        assert not torch.allclose(m[0], m[1])  # each channel has its own mask, each pinned


def test_additive_mode_is_p_plus_g_and_unbounded():
    km = KernelMask(2, 7, "lrbm_additive")
    _perturb(km, std=3.0)
    g = km.generator(km.prior)
    assert torch.allclose(km(), (km.prior + g).transpose(0, 1))
    assert not torch.allclose(_centre(km()), torch.ones(1))


def test_bounded_formula_is_p_plus_p_tanh():
    # the two spellings of the same mask: 2 P sigmoid(g - g_c) == P + P tanh((g - g_c) / 2)
    p = distance_prior(7)[None, None]
    g = torch.randn(1, 3, 7, 7, 7, dtype=torch.float64)
    m = mask_from_generator(p.double(), g, "lrbm")
    gc = g[:, :, 3:4, 3:4, 3:4]
    assert torch.allclose(m, p + p * torch.tanh((g - gc) / 2))


def test_unknown_mode_lists_the_modes():
    with pytest.raises(ValueError, match="lrbm_additive"):
        KernelMask(2, 5, "bounded")


# ---- acceptance: training a block with BN after the conv -------------------------------------
def _train_toy(mode: str, optimiser: str, steps: int = 200, per_channel: bool = False) -> ReparamDWConv3d:
    """Fit DWConv(K) -> BN to a 5^3 teacher, with the trainers' param groups (generator lr x 0.01)."""
    torch.manual_seed(0)
    c = 2
    conv = ReparamDWConv3d(c, K, mode, per_channel_mask=per_channel)
    block = nn.Sequential(conv, nn.BatchNorm3d(c))
    teacher = torch.randn(c, 1, 5, 5, 5)
    if optimiser == "adamw":
        opt = torch.optim.AdamW(param_groups(block, 1e-2, 0.08, 0.01))
    else:
        opt = torch.optim.SGD(param_groups(block, 1e-1, 3e-5, 0.01), momentum=0.99, nesterov=True)
    for _ in range(steps):
        x = torch.randn(2, c, 7, 7, 7)
        y = nn.functional.conv3d(x, teacher, padding=2, groups=c)
        loss = (block(x) - (y - y.mean()) / y.std()).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return conv


@pytest.mark.parametrize("optimiser, per_channel", [("adamw", False), ("sgd", False), ("sgd", True)])
def test_bounded_mask_stays_in_0_1_with_centre_1_after_training(one_thread, optimiser, per_channel):
    conv = _train_toy("lrbm", optimiser, per_channel=per_channel)
    with torch.no_grad():
        m = conv.mask()
    assert (m > 0).all() and (m <= 1).all(), (m.min(), m.max())
    assert torch.allclose(_centre(m), torch.ones(m.shape[0]), atol=1e-6, rtol=0)
    # it did learn: the test is not passing because nothing moved
    assert (m - conv.mask.prior.transpose(0, 1)).abs().max() > 1e-3


@pytest.mark.parametrize("optimiser", ["adamw", "sgd"])
def test_additive_ablation_drifts_out_of_0_1(one_thread, optimiser):
    conv = _train_toy("lrbm_additive", optimiser)
    with torch.no_grad():
        m = conv.mask()
    assert (m <= 0).any() or (m > 1).any(), (m.min(), m.max())


# ---- optimiser groups and the schedule ------------------------------------------------------
def test_param_groups_split_generators_from_the_rest():
    net = nn.Sequential(ReparamDWConv3d(2, 5, "lrbm"), ReparamDWConv3d(2, 5, "prior"), nn.Conv3d(2, 2, 1))
    gen = generator_parameters(net)
    assert len(gen) == 5  # conv1.weight, norm weight + bias, conv2 weight + bias
    main, g = param_groups(net, 1e-3, 0.05, 0.1)
    assert {id(p) for p in g["params"]} == {id(p) for p in gen}
    assert len(main["params"]) + len(g["params"]) == len(list(net.parameters()))
    assert (main["lr"], main["weight_decay"], main["lr_scale"]) == (1e-3, 0.05, 1.0)
    assert g["lr"] == pytest.approx(1e-4) and g["weight_decay"] == 0.0 and g["lr_scale"] == 0.1
    assert len(param_groups(nn.Conv3d(1, 1, 1), 1e-3, 0.0)) == 1  # no generator: one group
    with pytest.raises(ValueError, match="generator_lr_scale"):
        param_groups(net, 1e-3, 0.0, 0.0)


def test_poly_scheduler_keeps_each_groups_ratio():
    net = nn.Sequential(ReparamDWConv3d(2, 5, "lrbm"), nn.Conv3d(2, 2, 1))
    opt = torch.optim.SGD(param_groups(net, 1e-2, 3e-5, 0.01), lr=1e-2, momentum=0.99, nesterov=True)
    sched = PolyLRSchedulerGroups(opt, 1e-2, 100)
    for epoch in (0, 1, 50, 99):
        sched.step(epoch)
        base = 1e-2 * (1 - epoch / 100) ** 0.9
        assert opt.param_groups[0]["lr"] == pytest.approx(base)
        assert opt.param_groups[1]["lr"] == pytest.approx(base * 0.01)
    assert sched.get_last_lr() == [g["lr"] for g in opt.param_groups]
    # counter mode (step() without an epoch), as nnU-Net's PolyLRScheduler
    sched2 = PolyLRSchedulerGroups(opt, 1e-2, 100)
    sched2.step()
    assert opt.param_groups[1]["lr"] == pytest.approx(1e-2 * (1 - 1 / 100) ** 0.9 * 0.01)
    # the scale survives the optimiser's state dict (nnU-Net checkpoints save it)
    opt2 = torch.optim.SGD(param_groups(net, 1e-2, 3e-5, 0.01), lr=1e-2, momentum=0.99, nesterov=True)
    opt2.load_state_dict(opt.state_dict())
    assert [g["lr_scale"] for g in opt2.param_groups] == [1.0, 0.01]


def _lrbm_trainer_classes():
    from rep3d_nnunet.nnunet import trainers as T
    classes = [getattr(T, n) for n in T.__all__]
    return [c for c in classes if getattr(getattr(c, "variant", None), "mask", None) in LEARNED_MODES]


def _initialized_trainer(cls, tmp_path, monkeypatch):
    from test_nnunet_trainers import DATASET_JSON, _small_rep3d_plans

    for var in ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results"):
        (tmp_path / var).mkdir(exist_ok=True)
        monkeypatch.setenv(var, str(tmp_path / var))
    trainer = cls(dict(_small_rep3d_plans(), continue_training=False), "3d_fullres", 0, DATASET_JSON,
                  torch.device("cpu"))
    # initialize() infers the dataset class from the preprocessed files' ending: one empty stand-in
    folder = tmp_path / "nnUNet_preprocessed" / trainer.plans_manager.dataset_name / \
        trainer.configuration_manager.data_identifier
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "case_000.b2nd").touch()
    trainer.initialize()
    return trainer


def test_every_lrbm_trainer_has_a_generator_group_whose_ratio_survives_the_schedule(tmp_path, monkeypatch):
    from rep3d_nnunet.nnunet import trainers as T

    class MyTrainer(T.nnUNetTrainerRep3D):  # the documented 3-line subclass
        generator_lr_scale = 0.1

    classes = _lrbm_trainer_classes() + [MyTrainer]
    names = {c.__name__ for c in classes}
    assert {"nnUNetTrainerRep3D", "nnUNetTrainerRep3D_SGD", "nnUNetTrainerUXNetLRBM", "nnUNetTrainerRep3D_demo",
            "nnUNetTrainerRep3D_tiny"} <= names
    for cls in classes:
        trainer = _initialized_trainer(cls, tmp_path, monkeypatch)
        opt, sched = trainer.optimizer, trainer.lr_scheduler
        scale, lr, n = cls.generator_lr_scale, trainer.initial_lr, trainer.num_epochs
        assert len(opt.param_groups) == 2, cls.__name__
        main, gen = opt.param_groups
        assert {id(p) for p in gen["params"]} == {id(p) for p in generator_parameters(trainer.network)}
        assert gen["weight_decay"] == 0.0 and main["weight_decay"] == trainer.weight_decay
        assert gen["lr"] == pytest.approx(scale * lr) and main["lr"] == pytest.approx(lr), cls.__name__
        for epoch in sorted({0, n // 2, n - 1}):  # what nnU-Net's on_epoch_start does
            sched.step(epoch)
            assert main["lr"] == pytest.approx(lr * (1 - epoch / n) ** 0.9), (cls.__name__, epoch)
            assert gen["lr"] == pytest.approx(scale * main["lr"]), (cls.__name__, epoch)
        assert isinstance(opt, torch.optim.SGD if "_SGD" in cls.__name__ else torch.optim.AdamW), cls.__name__
    assert MyTrainer.generator_lr_scale == 0.1 and T.nnUNetTrainerRep3D.generator_lr_scale == 0.01


# ---- fp32 under autocast ----------------------------------------------------------------------
@pytest.mark.parametrize("mode", LEARNED_MODES)
def test_mask_is_fp32_under_autocast_and_deploy_stays_exact(mode):
    conv = ReparamDWConv3d(3, 9, mode)
    _perturb(conv.mask, std=0.3)
    with torch.no_grad():
        m32 = conv.mask()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            m_amp = conv.mask()
            w_amp = conv.effective_weight()
    assert m_amp.dtype == torch.float32 and torch.equal(m_amp, m32)
    deployed = reparameterize_model(copy.deepcopy(conv).eval())
    assert (w_amp - deployed.weight).abs().max() <= 1e-5
    x = torch.randn(1, 3, 8, 8, 8)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        y_train, y_deploy = conv.eval()(x), deployed(x)
    assert (y_train.float() - y_deploy.float()).abs().max() <= 1e-5 * y_deploy.float().abs().max()


def test_mask_traces_without_graph_breaks_under_autocast():
    # fullgraph=True raises on any graph break (e.g. data-dependent Python branching in the mask)
    km = KernelMask(3, 7, "lrbm")
    _perturb(km, std=0.3)
    compiled = torch.compile(km, backend="eager", fullgraph=True)
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        m = compiled()
    assert m.dtype == torch.float32 and torch.equal(m, km())


# ---- the mask mode in checkpoints ---------------------------------------------------------------
def _tiny_unet(mask: str, deploy: bool = False) -> nn.Module:
    """A 2-stage Rep3DUNet; the deploy form folds training-form weights on load, as the predictor's does."""
    from rep3d_nnunet.nnunet.forms import rep3d_unet

    return rep3d_unet(form="deploy" if deploy else "training", input_channels=1, n_stages=2,
                      features_per_stage=[4, 8], strides=[1, 2], kernel_sizes=[3, 3], dw_kernel_sizes=[3, 7],
                      n_blocks_per_stage=1, num_classes=2, n_conv_per_stage_decoder=1, stem_kernel_size=3,
                      mask=mask)


def _old_checkpoint(net: nn.Module) -> dict:
    """What rep3d-nnunet <= 0.1 saved: the same parameter names, no mask-mode record."""
    return {k: v for k, v in net.state_dict().items() if not k.endswith("_extra_state")}


def test_state_dict_records_the_mask_mode_as_a_tensor():
    sd = _tiny_unet("lrbm_power").state_dict()
    records = {k: v for k, v in sd.items() if k.endswith("mask._extra_state")}
    assert records and all(isinstance(v, torch.Tensor) for v in records.values())  # nnU-Net compares .shape
    net = _tiny_unet("lrbm_power")
    net.load_state_dict(sd)  # round trip


def test_unrecorded_unbounded_checkpoint_never_loads_into_a_bounded_mask():
    torch.manual_seed(0)
    old = _tiny_unet("lrbm_additive")
    for m in old.modules():
        if isinstance(m, KernelMask):
            _perturb(m, 0.2)
    old_sd = _old_checkpoint(old)
    for mask in ("lrbm", "lrbm_power"):
        with pytest.raises(RuntimeError, match=r"unbounded \(additive\) LRBM of rep3d-nnunet <= 0.1.*'lrbm_additive'"):
            _tiny_unet(mask).load_state_dict(old_sd)
        # the deploy form folds training-form weights on load (nnU-Net's predictor): same message
        with pytest.raises(RuntimeError, match=r"unbounded \(additive\).*'lrbm_additive'"):
            _tiny_unet(mask, deploy=True).load_state_dict(old_sd)
    # the fix the message names loads them, exactly as they were trained
    fixed = _tiny_unet("lrbm_additive")
    fixed.load_state_dict(old_sd)
    x = torch.randn(1, 1, 8, 8, 8)
    assert torch.equal(fixed.eval()(x), old.eval()(x))
    deployed = _tiny_unet("lrbm_additive", deploy=True)
    deployed.load_state_dict(old_sd)
    assert torch.allclose(deployed.eval()(x), old(x), atol=1e-5)


def test_recorded_mode_mismatch_is_refused_and_old_prior_checkpoints_still_load():
    sd = _tiny_unet("lrbm").state_dict()
    with pytest.raises(RuntimeError, match="trained with mask mode 'lrbm' but this network uses 'lrbm_additive'"):
        _tiny_unet("lrbm_additive").load_state_dict(sd)
    with pytest.raises(RuntimeError, match="mask mode 'prior'"):
        _tiny_unet("none").load_state_dict(_tiny_unet("prior").state_dict())
    # 'prior' and 'none' meant the same in rep3d-nnunet <= 0.1: their unrecorded weights load
    for mask in ("prior", "none"):
        _tiny_unet(mask).load_state_dict(_old_checkpoint(_tiny_unet(mask)))
        _tiny_unet(mask, deploy=True).load_state_dict(_old_checkpoint(_tiny_unet(mask)))


# ---- pictures and the study script ------------------------------------------------------------
def test_mask_pictures_keep_the_priors_scale_and_show_negative_taps(tmp_path):
    from rep3d_nnunet.analysis.masks import mask_colour_scale, mask_infos, mask_table, plot_masks

    assert mask_colour_scale(distance_prior(7).numpy()) == ("viridis", 0.0, 1.0)
    cmap, lo, hi = mask_colour_scale(np.array([-0.5, 0.2, 3.0]))
    assert cmap == "RdBu_r" and lo == -3.0 and hi == 3.0  # diverging, symmetric about 0
    convs = nn.ModuleList([ReparamDWConv3d(2, 7, "lrbm"), ReparamDWConv3d(2, 7, "lrbm_additive")])
    with torch.no_grad():
        convs[1].mask.generator.conv2.bias.fill_(-1.5)  # additive: every tap negative
    infos = mask_infos(convs)
    table = mask_table(infos)
    assert "M min" in table and "-0.5" in table  # centre 1 - 1.5
    png = tmp_path / "m.png"
    plot_masks(infos, str(png))
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_old_checkpoint_masks_are_drawn_as_the_additive_form():
    from rep3d_nnunet.analysis.masks import mask_infos_from_state_dict

    conv = ReparamDWConv3d(2, 7, "lrbm_additive")
    with torch.no_grad():
        conv.mask.generator.conv2.bias.fill_(0.25)
    old = {k: v for k, v in conv.state_dict().items() if not k.endswith("_extra_state")}
    [info] = mask_infos_from_state_dict(old)
    assert info.mode == "lrbm_additive" and "no mask-mode record" in info.note
    np.testing.assert_allclose(info.mask[0], info.prior + 0.25, atol=1e-6)
    bounded = ReparamDWConv3d(2, 7, "lrbm")
    _perturb(bounded.mask)
    [info] = mask_infos_from_state_dict(bounded.state_dict())
    assert info.mode == "lrbm" and info.mask.max() <= 1 + 1e-6


def _study_module():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "scripts" / "study_lrbm.py"
    spec = importlib.util.spec_from_file_location("study_lrbm", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_study_script_tiny_writes_parsable_outputs(tmp_path, one_thread):
    import json

    study = _study_module()
    assert study.main(["--tiny", "--out", str(tmp_path)]) == 0
    data = json.loads((tmp_path / "lrbm_study_toy.json").read_text())
    assert set(data["results"]) == {"adamw", "sgd"}
    for opt, methods in data["results"].items():
        assert set(methods) == set(study.TOY_METHODS)
        for name, rec in methods.items():
            assert len(rec["final_band_error"]) == 3 and all(np.isfinite(rec["final_band_error"]))
            if study.TOY_METHODS[name][0] in ("lrbm", "lrbm_power", "prior"):
                assert rec["mask_centre"][-1] == pytest.approx(1.0, abs=1e-6)
                assert 0 < rec["mask_min"][-1] and rec["mask_max"][-1] <= 1 + 1e-6
    assert (tmp_path / "lrbm_study_toy.png").read_bytes()[:4] == b"\x89PNG"
    report = (tmp_path / "lrbm_study.md").read_text()
    assert "## Toy" in report and "study_lrbm.py --tiny" in report and "| adamw | lrbm |" in report
    assert "Not run (`--part real`)" in report
