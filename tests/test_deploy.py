import copy

import pytest
import torch
from torch import nn

from rep3d_nnunet import (CSLADWConv3d, DepthwiseConv3d, KernelMask, LRBMGenerator, Rep3DBlock,
                          Rep3DEncoder, ReparamDWConv3d, UXNetBlock, reparameterize_model)
from rep3d_nnunet.fold import fuse_bn, pad_kernel_to
from rep3d_nnunet.networks.paper import Rep3DPaperNet

TRAINING_ONLY = (ReparamDWConv3d, CSLADWConv3d, KernelMask, LRBMGenerator)


def make_nontrivial(model: nn.Module) -> nn.Module:
    """Random BN statistics/affines, trained-looking generators and layer scales, eval mode."""
    g = torch.Generator().manual_seed(3)
    for m in model.modules():
        if isinstance(m, nn.BatchNorm3d):
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.3)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 2 + 0.2)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) + 0.5)
            m.bias.data.copy_(torch.randn(m.num_features, generator=g) * 0.2)
        if isinstance(m, LRBMGenerator):
            m.conv2.weight.data.copy_(torch.randn(m.conv2.weight.shape, generator=g) * 0.05)
            m.conv2.bias.data.copy_(torch.randn(m.conv2.bias.shape, generator=g) * 0.05)
        if isinstance(m, UXNetBlock):
            m.layer_scale.data.copy_(torch.rand(m.layer_scale.shape, generator=g) + 0.5)
    return model.eval()


def assert_deploy_equivalent(model: nn.Module, x: torch.Tensor) -> nn.Module:
    model = make_nontrivial(model)
    with torch.no_grad():
        ref = model(x)
        deployed = reparameterize_model(copy.deepcopy(model))
        out = deployed(x)
    refs = ref if isinstance(ref, (list, tuple)) else [ref]
    outs = out if isinstance(out, (list, tuple)) else [out]
    for r, o in zip(refs, outs):
        assert (r - o).abs().max() <= 1e-5 * r.abs().max(), (r - o).abs().max() / r.abs().max()
    assert not any(isinstance(m, TRAINING_ONLY) for m in deployed.modules())
    assert not any("generator" in n for n, _ in deployed.named_parameters())
    assert not any(n.endswith("prior") for n, _ in deployed.named_buffers())
    return deployed


VARIANTS = {
    "rep3d-lrbm": lambda: Rep3DBlock(4, 9, "lrbm"),
    "rep3d-prior": lambda: Rep3DBlock(4, 9, "prior"),
    "rep3d-none": lambda: Rep3DBlock(4, 9, "none"),
    "rep3d-lrbm-per-channel": lambda: Rep3DBlock(4, 9, "lrbm", per_channel_mask=True),
    "rep3d-csla3": lambda: Rep3DBlock(4, 9, "none", csla_small_kernel=3),
    "rep3d-csla5": lambda: Rep3DBlock(4, 9, "none", csla_small_kernel=5),
    "uxnet": lambda: UXNetBlock(4, 7),
    "uxnet-lrbm": lambda: UXNetBlock(4, 7, "lrbm"),
    "uxnet-csla": lambda: UXNetBlock(4, 7, "none", csla_small_kernel=3),
    "rep3d-21": lambda: Rep3DBlock(4, 21, "lrbm"),
}


@pytest.mark.parametrize("name", VARIANTS)
def test_block_deploy_equivalence(name):
    deployed = assert_deploy_equivalent(VARIANTS[name](), torch.randn(2, 4, 11, 11, 11))
    convs = [m for m in deployed.modules() if isinstance(m, nn.Conv3d)]
    assert isinstance(deployed.conv, DepthwiseConv3d) and deployed.conv.bias is not None
    if name.startswith("rep3d"):
        # DWConv + BN + GELU became DWConv(bias) + GELU: no BatchNorm left to run
        assert not any(isinstance(m, nn.BatchNorm3d) for m in deployed.modules())
        assert len(convs) == 1


@pytest.mark.parametrize("block,mask,csla", [("rep3d", "lrbm", None), ("rep3d", "none", 3), ("uxnet", "lrbm", None)])
def test_encoder_deploy_equivalence(block, mask, csla):
    enc = Rep3DEncoder(1, features=(4, 8, 8), depths=(2, 1, 1), kernel_sizes=[9, 7, (3, 5, 5)],
                       strides=[1, 2, (1, 2, 2)], stem_kernel_size=3, block=block, mask=mask, csla_small_kernel=csla)
    assert_deploy_equivalent(enc, torch.randn(2, 1, 12, 12, 12))


def test_paper_network_deploy_equivalence():
    net = Rep3DPaperNet(1, 3, features=(4, 8, 8, 16), kernel_size=7, hidden_size=16)
    assert_deploy_equivalent(net, torch.randn(1, 1, 32, 32, 32))


def test_conversion_is_idempotent_and_in_place():
    net = make_nontrivial(Rep3DEncoder(1, features=(4, 8), depths=1, kernel_sizes=5, stem_kernel_size=3))
    out = reparameterize_model(net)
    assert out is net
    state = {k: v.clone() for k, v in net.state_dict().items()}
    structure = repr(net)
    assert reparameterize_model(net) is net
    assert repr(net) == structure
    assert state.keys() == net.state_dict().keys()
    assert all(torch.equal(state[k], v) for k, v in net.state_dict().items())


def test_bare_leaf_returns_its_replacement():
    conv = ReparamDWConv3d(2, 5, "prior")
    deployed = reparameterize_model(conv)
    assert isinstance(deployed, DepthwiseConv3d)
    assert torch.allclose(deployed.weight, conv.weight * conv.mask())


@pytest.mark.parametrize("block,mask,csla", [("rep3d", "lrbm", None), ("rep3d", "none", 5), ("uxnet", "prior", None)])
def test_deploy_form_built_directly_loads_the_converted_weights(block, mask, csla):
    kw = dict(features=(4, 8), depths=1, kernel_sizes=7, stem_kernel_size=3, block=block, mask=mask,
              csla_small_kernel=csla)
    train_form = make_nontrivial(Rep3DEncoder(1, **kw))
    x = torch.randn(1, 1, 10, 10, 10)
    with torch.no_grad():
        ref = train_form(x)
        state = reparameterize_model(copy.deepcopy(train_form)).state_dict()
        direct = Rep3DEncoder(1, deploy=True, **kw).eval()
        direct.load_state_dict(state, strict=True)
        for r, o in zip(ref, direct(x)):
            assert (r - o).abs().max() <= 1e-5 * r.abs().max()


def test_models_without_reparameterisable_modules_are_untouched():
    seq = nn.Sequential(nn.Conv3d(1, 2, 3), nn.BatchNorm3d(2), nn.ReLU())
    state = copy.deepcopy(seq.state_dict())
    assert reparameterize_model(seq) is seq
    assert all(torch.equal(state[k], v) for k, v in seq.state_dict().items())


def test_fuse_bn_and_pad_kernel():
    bn = nn.BatchNorm3d(2).eval()
    bn.running_mean.fill_(0.5)
    bn.running_var.fill_(4.0)
    bn.weight.data.fill_(2.0)
    bn.bias.data.fill_(1.0)
    k, b = fuse_bn(torch.ones(2, 1, 1, 1, 1), None, bn)
    assert torch.allclose(k, torch.full_like(k, 2 / (4 + bn.eps) ** 0.5))
    assert torch.allclose(b, torch.full((2,), 1 - 0.5 * 2 / (4 + bn.eps) ** 0.5))
    padded = pad_kernel_to(torch.ones(1, 1, 3, 3, 3), (7, 5, 3))
    assert padded.shape == (1, 1, 7, 5, 3) and padded.sum() == 27 and padded[0, 0, 3, 2, 1] == 1
    with pytest.raises(ValueError):
        pad_kernel_to(torch.ones(1, 1, 3, 3, 3), (4, 5, 3))
