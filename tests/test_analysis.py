"""Analysis tools: ERF maths and radii, learned-mask pictures, the loader and both CLI commands."""
import json
import os

import numpy as np
import pytest
import torch
from torch import nn

from rep3d_nnunet import DepthwiseConv3d, Rep3DEncoder, reparameterize_model
from rep3d_nnunet.analysis.cli import erf_main, masks_main
from rep3d_nnunet.analysis.erf import (compute_erf, erf_of_model, erf_radii, erf_table, plot_erf,
                                       random_inputs)
from rep3d_nnunet.analysis.loading import load_trained_model
from rep3d_nnunet.analysis.masks import (DEPLOYED_MESSAGE, NO_MASK_MESSAGE, describe_no_masks, mask_infos,
                                         mask_infos_from_state_dict, mask_stats, mask_table, plot_masks,
                                         radial_profile)


def _png(path) -> bool:
    with open(path, "rb") as f:
        return f.read(8) == b"\x89PNG\r\n\x1a\n"


# ---- ERF ------------------------------------------------------------------------------------------

def test_erf_of_a_depthwise_conv_is_its_absolute_kernel():
    """d y[c] / d x[c + k - pad] = w[k]: the ERF is |w| summed over channels, centred, no flip."""
    conv = DepthwiseConv3d(2, (5, 3, 7))
    with torch.no_grad():
        conv.weight.normal_()  # asymmetric and signed: a flip, a shift or a missing abs() would show
    shape = (13, 11, 15)
    erf = compute_erf(conv, random_inputs(3, 2, shape, batch_size=2))
    expected = np.zeros(shape)
    kernel = conv.weight.detach().abs().sum(dim=(0, 1)).double().numpy()
    starts = [(s - k) // 2 for s, k in zip(shape, kernel.shape)]
    expected[tuple(slice(a, a + k) for a, k in zip(starts, kernel.shape))] = kernel
    np.testing.assert_allclose(erf / erf.sum(), expected / expected.sum(), atol=1e-7)


def test_erf_radii_of_known_profiles():
    box = np.zeros((15, 15, 15))
    box[4:11, 7, 7] = 1.0  # 7 voxels along z, centred on 7
    r = erf_radii(box, (0.5, 1.0))
    np.testing.assert_allclose(r[0], [2.0, 3.0])  # 3/7 of the mass within 1 (< 50%), 5/7 within 2, all within 3
    np.testing.assert_allclose(r[1:], 0.0)
    with pytest.raises(ValueError, match="zero everywhere"):
        erf_radii(np.zeros((3, 3, 3)))


def test_erf_radius_grows_with_kernel_size_on_an_untrained_rep3d_network():
    r90 = {}
    for k in (7, 13, 21):
        torch.manual_seed(0)
        encoder = Rep3DEncoder(1, (4,), depths=1, kernel_sizes=k, strides=1, stem_kernel_size=3)
        [result] = erf_of_model(encoder, random_inputs(2, 1, (24, 24, 24)),
                                feature_fns=[("stage", lambda x: encoder(x)[-1])])
        r90[k] = result.radii_vox[:, 1].mean()
    assert r90[7] < r90[13] < r90[21], r90


def test_erf_of_model_takes_the_deepest_encoder_stage_and_the_output(tmp_path):
    class Net(nn.Module):
        def __init__(self):
            super().__init__()
            self.encoder = Rep3DEncoder(1, (4, 8), depths=1, kernel_sizes=5, strides=(1, 2), stem_kernel_size=3)
            self.head = nn.Conv3d(8, 2, 1)

        def forward(self, x):
            return [self.head(self.encoder(x)[-1])]  # deep-supervision style list

    net = Net().train()
    results = erf_of_model(net, random_inputs(1, 1, (16, 16, 16)), spacing=(2.0, 1.0, 1.0))
    assert [r.name for r in results] == ["deepest encoder stage", "output"]
    assert net.training  # mode restored
    np.testing.assert_allclose(results[0].radii_mm, results[0].radii_vox * np.array([[2.0], [1.0], [1.0]]))
    table = erf_table(results)
    assert "r90 mm" in table and "deepest encoder stage" in table
    assert _png(plot_erf(results, str(tmp_path / "erf.png")))


def test_erf_of_a_network_without_encoder_uses_its_bottleneck():
    class MedNeXtLike(nn.Module):  # MONAI's MedNeXt: stem, enc_stages, down_blocks, bottleneck, ...
        def __init__(self):
            super().__init__()
            self.stem = nn.Conv3d(1, 2, 3, padding=1)
            self.bottleneck = nn.Conv3d(2, 2, 3, padding=1)
            self.out = nn.Conv3d(2, 1, 3, padding=1)

        def forward(self, x):
            return self.out(self.bottleneck(self.stem(x)))

    results = erf_of_model(MedNeXtLike(), random_inputs(1, 1, (11, 11, 11)))
    assert [r.name for r in results] == ["bottleneck (bottleneck)", "output"]
    # 2 resp. 3 stacked 3^3 convs: the ERF's support is the centre +- 2 resp. +- 3 voxels
    for r, half in zip(results, (2, 3)):
        support = np.nonzero(r.erf.sum(axis=(1, 2)))[0]
        assert (support.min(), support.max()) == (5 - half, 5 + half)


# ---- masks ----------------------------------------------------------------------------------------

def test_lrbm_mask_picture_at_initialisation_is_the_prior(tmp_path):
    encoder = Rep3DEncoder(1, (4, 8), depths=1, kernel_sizes=(7, 13), strides=(1, 2), mask="lrbm")
    infos = mask_infos(encoder)
    assert [(i.name, i.mode, i.kernel_size) for i in infos] == [
        ("stages.0.0.conv", "lrbm", (7, 7, 7)), ("stages.1.0.conv", "lrbm", (13, 13, 13))]
    for info in infos:
        np.testing.assert_allclose(info.mask[0], info.prior, atol=1e-6)
        np.testing.assert_allclose(radial_profile(info.mean_mask)[1], radial_profile(info.prior)[1], atol=1e-6)
        stats = mask_stats(info)
        assert stats["max_dev"] < 1e-6 and stats["centre"] == pytest.approx(1.0)
        k = info.kernel_size[0] // 2
        assert stats["edge"] == pytest.approx(1 / (k + 1), rel=1e-5)  # P at distance k, beta = 1
    assert "lrbm" in mask_table(infos)
    assert _png(plot_masks(infos, str(tmp_path / "masks.png")))


def test_a_changed_generator_shows_as_a_deviation_from_the_prior():
    # additive form: a constant bias of the last conv is a constant shift of M (the bounded
    # 'lrbm' pins the centre, so a constant shift does nothing there)
    encoder = Rep3DEncoder(1, (4,), depths=1, kernel_sizes=7, strides=1, mask="lrbm_additive")
    with torch.no_grad():
        encoder.stages[0][0].conv.mask.generator.conv2.bias.fill_(0.25)
    [info] = mask_infos(encoder)
    assert mask_stats(info)["max_dev"] == pytest.approx(0.25, rel=1e-5)


def test_fixed_prior_masks_are_listed_and_unmasked_convs_are_not():
    assert [i.mode for i in mask_infos(Rep3DEncoder(1, (4,), 1, 7, 1, mask="prior"))] == ["prior"]
    plain = Rep3DEncoder(1, (4,), 1, 7, 1, mask="none")
    assert mask_infos(plain) == [] and describe_no_masks(plain) == NO_MASK_MESSAGE


def test_deployed_model_and_checkpoint_say_masks_are_folded(tmp_path, capsys):
    encoder = Rep3DEncoder(1, (4,), depths=1, kernel_sizes=7, strides=1, mask="lrbm")
    trained_path = tmp_path / "training_form.pth"
    torch.save({"network_weights": encoder.state_dict()}, trained_path)
    deployed = reparameterize_model(encoder)
    assert mask_infos(deployed) == []
    assert describe_no_masks(deployed) == DEPLOYED_MESSAGE
    assert describe_no_masks(nn.Sequential(nn.Conv3d(1, 4, 3))) == NO_MASK_MESSAGE

    deployed_path = tmp_path / "deployed.pth"
    torch.save({"network_weights": deployed.state_dict()}, deployed_path)
    assert masks_main([str(deployed_path), "-o", str(tmp_path / "none.png")]) == 0
    out = capsys.readouterr().out
    assert DEPLOYED_MESSAGE in out
    assert not (tmp_path / "none.png").exists()

    # a bare training-form checkpoint: masks rebuilt from the generator weights alone
    assert masks_main([str(trained_path), "-o", str(tmp_path / "m.png")]) == 0
    out = capsys.readouterr().out
    assert "stages.0.0.conv" in out and "weights alone" in out and _png(tmp_path / "m.png")
    [info] = mask_infos_from_state_dict(torch.load(trained_path)["network_weights"])
    np.testing.assert_allclose(info.mask[0], info.prior, atol=1e-6)


# ---- an nnU-Net model folder (stock trainer, no training) ---------------------------------------------

PLAIN_ARCH_KWARGS = {
    "n_stages": 3, "features_per_stage": [4, 8, 16], "conv_op": "torch.nn.modules.conv.Conv3d",
    "kernel_sizes": [[3, 3, 3]] * 3, "strides": [[1, 1, 1], [2, 2, 2], [2, 2, 2]], "n_conv_per_stage": [1, 1, 1],
    "n_conv_per_stage_decoder": [1, 1], "conv_bias": True, "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d",
    "norm_op_kwargs": {"eps": 1e-05, "affine": True}, "dropout_op": None, "dropout_op_kwargs": None,
    "nonlin": "torch.nn.LeakyReLU", "nonlin_kwargs": {"inplace": True}}
PLAIN_ARCH = {"network_class_name": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
              "arch_kwargs": PLAIN_ARCH_KWARGS, "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"]}


def _tiny_model_folder(root, trainer_name: str = "nnUNetTrainer", architecture: dict = PLAIN_ARCH) -> str:
    """An nnU-Net results folder with an untrained checkpoint of ``trainer_name``'s network (training form),
    written the way nnU-Net writes one: plans.json + dataset.json + fold_0/checkpoint_final.pth."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    from rep3d_nnunet.nnunet.adapter import build_network, find_trainer_class

    config = {"data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
              "batch_size": 2, "patch_size": [16, 16, 16], "median_image_size_in_voxels": [16, 16, 16],
              "spacing": [2.0, 1.0, 1.0], "normalization_schemes": ["ZScoreNormalization"],
              "use_mask_for_norm": [False], "resampling_fn_data": "resample_data_or_seg_to_shape",
              "resampling_fn_seg": "resample_data_or_seg_to_shape", "resampling_fn_data_kwargs": {},
              "resampling_fn_seg_kwargs": {}, "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
              "resampling_fn_probabilities_kwargs": {}, "batch_dice": False, "architecture": architecture}
    plans = {"dataset_name": "Dataset999_Tiny", "plans_name": "nnUNetPlans", "transpose_forward": [0, 1, 2],
             "transpose_backward": [0, 1, 2], "original_median_spacing_after_transp": [2.0, 1.0, 1.0],
             "original_median_shape_after_transp": [16, 16, 16], "image_reader_writer": "SimpleITKIO",
             "configurations": {"3d_fullres": config}, "experiment_planner_used": "ExperimentPlanner",
             "label_manager": "LabelManager", "foreground_intensity_properties_per_channel": {}}
    dataset = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, "a": 1, "b": 2}, "numTraining": 1,
               "file_ending": ".nii.gz"}
    folder = os.path.join(root, "Dataset999_Tiny", f"{trainer_name}__nnUNetPlans__3d_fullres")
    os.makedirs(os.path.join(folder, "fold_0"))
    with open(os.path.join(folder, "plans.json"), "w") as f:
        json.dump(plans, f)
    with open(os.path.join(folder, "dataset.json"), "w") as f:
        json.dump(dataset, f)
    pm = PlansManager(plans)
    trainer = find_trainer_class(trainer_name)
    net = build_network(trainer, pm, pm.get_configuration("3d_fullres"), 1, 3, form="training")
    torch.save({"network_weights": net.state_dict(), "trainer_name": trainer_name,
                "init_args": {"configuration": "3d_fullres", "fold": 0, "device": torch.device("cpu")}},
               os.path.join(folder, "fold_0", "checkpoint_final.pth"))
    return folder


def test_erf_and_masks_commands_on_a_stock_nnunet_model_folder(tmp_path, capsys):
    folder = _tiny_model_folder(str(tmp_path))
    model = load_trained_model(folder)
    assert model.trainer_name == "nnUNetTrainer" and model.patch_size == (16, 16, 16)
    assert model.spacing == (2.0, 1.0, 1.0) and not model.network.training

    png = tmp_path / "erf.png"
    assert erf_main([folder, "-f", "0", "-n", "1", "--size", "12", "16", "16", "-o", str(png)]) == 0
    out = capsys.readouterr().out
    assert "deepest encoder stage" in out and "output" in out and "r99 mm" in out and _png(png)
    assert erf_main([folder, "-n", "1", "--module", "encoder.stages.1", "-o", str(png)]) == 0
    assert "encoder.stages.1" in capsys.readouterr().out

    assert masks_main([folder]) == 0
    assert NO_MASK_MESSAGE in capsys.readouterr().out
    assert masks_main([os.path.join(folder, "fold_0", "checkpoint_final.pth")]) == 0
    assert NO_MASK_MESSAGE in capsys.readouterr().out

    from rep3d_nnunet.cli import main  # the package CLI routes both subcommands here
    assert main(["masks", folder]) == 0 and NO_MASK_MESSAGE in capsys.readouterr().out
    with pytest.raises(FileNotFoundError, match="fold_3"):
        load_trained_model(folder, 3)
    with pytest.raises(FileNotFoundError, match="plans.json"):
        load_trained_model(str(tmp_path))


def test_erf_and_masks_of_a_rep3d_model_folder(tmp_path, capsys):
    """Our trainer: the predictor's (deploy) form for the ERF, the training form for the masks."""
    from rep3d_nnunet.conv import ReparamDWConv3d
    from rep3d_nnunet.nnunet.architecture import Rep3DVariant, rep3d_architecture

    arch = rep3d_architecture(PLAIN_ARCH, (16, 16, 16),
                              Rep3DVariant(large_kernel_size=7, n_blocks_per_stage=1, stem_kernel_size=3))
    folder = _tiny_model_folder(str(tmp_path), "nnUNetTrainerRep3D", arch)
    deployed = load_trained_model(folder).network
    training = load_trained_model(folder, form="training").network
    assert not any(isinstance(m, ReparamDWConv3d) for m in deployed.modules())
    assert any(isinstance(m, ReparamDWConv3d) for m in training.modules())
    x = random_inputs(1, 1, (16, 16, 16))[0]
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), training.eval()(x), atol=1e-4, rtol=1e-4)

    assert erf_main([folder, "-n", "1", "-o", str(tmp_path / "erf.png")]) == 0
    assert "deepest encoder stage" in capsys.readouterr().out
    assert masks_main([folder, "-o", str(tmp_path / "masks.png")]) == 0
    out = capsys.readouterr().out
    assert "encoder.stages.1.0.conv" in out and "lrbm" in out and _png(tmp_path / "masks.png")
    assert masks_main([folder, "--blocks", "stages.1", "-o", str(tmp_path / "one.png")]) == 0
    out = capsys.readouterr().out
    assert "encoder.stages.1.0.conv" in out and "encoder.stages.0." not in out
    assert masks_main([folder, "--blocks", "nope"]) == 1 and "no masked block" in capsys.readouterr().err
    infos = mask_infos(training)
    assert infos and all(np.abs(i.mask - i.prior[None]).max() < 1e-6 for i in infos)  # untrained: M == P


# ---- end to end: a model trained by nnU-Net's own console scripts ----------------------------------

@pytest.mark.slow
def test_erf_and_masks_commands_on_a_model_trained_end_to_end(rep3d_env, tmp_path):
    """`rep3d-nnunet erf` / `masks` on the tiny Rep3D model of the end-to-end tests (test_nnunet_e2e.py),
    reused from the shared results folder when that test ran first, else trained here the same way."""
    from nnunet_helpers import DATASET, SMOKE_PLANS, TRAIN_ENV, run_cli

    env = rep3d_env
    trainer = "nnUNetTrainerRep3D_tiny"
    folder = os.path.join(env["nnUNet_results"], DATASET, f"{trainer}__{SMOKE_PLANS}__3d_fullres")
    if not os.path.isfile(os.path.join(folder, "fold_0", "checkpoint_final.pth")):
        run_cli(["nnUNetv2_train", "4", "3d_fullres", "0", "-tr", trainer, "-p", SMOKE_PLANS, "-device", "cpu"],
                dict(env, **TRAIN_ENV))
    preprocessed = os.path.join(env["nnUNet_preprocessed"], DATASET, "nnUNetPlans_3d_fullres")
    out = run_cli(["rep3d-nnunet", "erf", folder, "-f", "0", "-n", "2", "--data", preprocessed,
                   "-o", str(tmp_path / "erf.png")], env).stdout
    assert "2 preprocessed patches" in out and "deepest encoder stage" in out and _png(tmp_path / "erf.png")
    out = run_cli(["rep3d-nnunet", "masks", folder, "-o", str(tmp_path / "masks.png")], env).stdout
    assert "lrbm" in out and "encoder.stages" in out and _png(tmp_path / "masks.png")
    # trained: the masks have left the prior (the generator learns from the second optimiser step on)
    model = load_trained_model(folder, 0, form="training")
    assert max(mask_stats(i)["max_dev"] for i in mask_infos(model.network)) > 1e-4
