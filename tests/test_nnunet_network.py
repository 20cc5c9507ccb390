"""Rep3DUNet as nnU-Net builds it: geometry from plans, deep supervision, memory estimate, deploy loading."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from rep3d_nnunet.mask import LRBMGenerator
from rep3d_nnunet.networks.unet import Rep3DUNet
from rep3d_nnunet.nnunet import forms

# small, anisotropic (stage 1 pools only in-plane), one block per stage
KW = dict(input_channels=1, n_stages=3, features_per_stage=[4, 8, 16], strides=[[1, 1, 1], [1, 2, 2], [2, 2, 2]],
          kernel_sizes=[[1, 3, 3], [3, 3, 3], [3, 3, 3]], dw_kernel_sizes=[[3, 3, 3], [5, 7, 7], [5, 5, 5]],
          n_blocks_per_stage=[1, 1, 1], num_classes=3, n_conv_per_stage_decoder=[1, 1], stem_kernel_size=3,
          norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
          nonlin_kwargs={"inplace": True})
VARIANTS = {
    "lrbm": dict(block="rep3d", mask="lrbm"), "prior": dict(block="rep3d", mask="prior"),
    "plain": dict(block="rep3d", mask="none"), "csla": dict(block="rep3d", mask="none", csla_small_kernel=3, dw_kernel_sizes=[[5, 5, 5], [5, 7, 7], [5, 5, 5]]),
    "uxnet": dict(block="uxnet", mask="none"), "uxnet_lrbm": dict(block="uxnet", mask="lrbm"),
}


def _net(**overrides) -> Rep3DUNet:
    net = Rep3DUNet(**{**KW, **overrides})
    net.apply(net.initialize)
    return net


def test_deep_supervision_outputs_follow_the_anisotropic_strides():
    net = _net(deep_supervision=True)
    outs = net(torch.randn(2, 1, 8, 16, 16))
    assert [tuple(o.shape) for o in outs] == [(2, 3, 8, 16, 16), (2, 3, 8, 8, 8)]
    net.decoder.deep_supervision = False  # what nnU-Net's set_deep_supervision_enabled does
    assert net(torch.randn(1, 1, 8, 16, 16)).shape == (1, 3, 8, 16, 16)


def test_decoder_is_nnunets_own_and_encoder_init_is_kept():
    net = _net()
    # the decoder's convs use the plans' kernel sizes, not the encoder's depthwise ones
    assert net.decoder.stages[-1].convs[0].conv.kernel_size == (1, 3, 3)
    assert isinstance(net.decoder.stages[0].convs[0].norm, nn.InstanceNorm3d)
    assert not any(k.startswith("decoder.encoder.") for k in net.state_dict())  # no aliased encoder copy
    gens = [m for m in net.modules() if isinstance(m, LRBMGenerator)]
    assert gens and all(torch.count_nonzero(g.conv2.weight) == 0 for g in gens)  # M == P at the start


def test_memory_estimate_grows_with_kernel_size_and_counts_padding():
    small = _net(dw_kernel_sizes=[[3, 3, 3]] * 3).compute_conv_feature_map_size((8, 16, 16))
    large = _net(dw_kernel_sizes=[[3, 3, 3], [7, 15, 15], [7, 15, 15]]).compute_conv_feature_map_size((8, 16, 16))
    assert large > small > 0


@pytest.mark.parametrize("variant", list(VARIANTS))
def test_deploy_form_loads_training_weights_and_matches(variant):
    training = _net(**VARIANTS[variant])
    with torch.no_grad():  # move BN statistics and the generator off their initial values
        training.train()
        for _ in range(2):
            training(torch.randn(2, 1, 8, 16, 16))
        for p in training.parameters():
            p.add_(0.01 * torch.randn_like(p))
    training.eval()
    deployed = forms.rep3d_unet(form="deploy", **{**KW, **VARIANTS[variant]}).eval()
    state = training.state_dict()
    needs_folding = set(state) != set(deployed.state_dict())  # False for UX-Net without mask: same layout
    deployed.load_state_dict(state)
    assert not any(isinstance(m, (LRBMGenerator, nn.BatchNorm3d)) for m in deployed.modules())
    x = torch.randn(1, 1, 8, 16, 16)
    with torch.no_grad():
        ref, out = training(x).softmax(1), deployed(x).softmax(1)
    assert (ref - out).abs().max() <= 1e-5
    deployed.load_state_dict(state)  # the predictor reloads the same dict per case: folded once, reused
    assert forms.fold_count(deployed) == int(needs_folding)
    deployed.load_state_dict(deployed.state_dict())  # deploy-form weights load as they are
    assert forms.fold_count(deployed) == int(needs_folding)
    if needs_folding:  # the same tensors changed in place (e.g. fine-tuned further): folded again
        with torch.no_grad():
            next(iter(state.values())).add_(1.0)
        deployed.load_state_dict(state)
        assert forms.fold_count(deployed) == 2
    assert isinstance(Rep3DUNet(**{**KW, **VARIANTS[variant], "deploy": True}), Rep3DUNet)  # a plain module too


def test_deploy_form_rejects_weights_of_another_network():
    deployed = forms.rep3d_unet(form="deploy", **KW)
    other = _net(features_per_stage=[4, 8, 32]).state_dict()
    with pytest.raises(RuntimeError, match="neither the deploy form nor the training form"):
        deployed.load_state_dict(other)


def test_two_dimensional_or_mismatched_plans_are_refused():
    with pytest.raises(ValueError, match="3D only"):
        Rep3DUNet(**{**KW, "conv_op": nn.Conv2d})
    with pytest.raises(ValueError, match="one entry per stage"):
        Rep3DUNet(**{**KW, "dw_kernel_sizes": [[3, 3, 3]]})
    with pytest.raises(ValueError, match="odd"):
        Rep3DUNet(**{**KW, "dw_kernel_sizes": [[3, 3, 3], [6, 6, 6], [5, 5, 5]]})


def test_fold_on_load_surfaces_the_mask_mode_message_of_an_old_checkpoint():
    """Generator weights without a mask-mode record (rep3d-nnunet <= 0.1): the predictor's load names the fix."""
    old = {k: v for k, v in _net(**VARIANTS["lrbm"]).state_dict().items() if not k.endswith("_extra_state")}
    deployed = forms.rep3d_unet(form="deploy", **{**KW, **VARIANTS["lrbm"]})
    with pytest.raises(RuntimeError, match="neither the deploy form nor the training form(.|\n)*no mask-mode record"
                                           "(.|\n)*lrbm_additive"):
        forms.load_weights(deployed, old)
