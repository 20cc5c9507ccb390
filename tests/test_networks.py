import pytest
import torch

from rep3d_nnunet import Rep3DBlock, Rep3DEncoder, UXNetBlock
from rep3d_nnunet.networks.paper import Rep3DPaperNet


def n_params(m):
    return sum(p.numel() for p in m.parameters())


@pytest.mark.parametrize("mask", ["prior", "lrbm", "none"])
def test_paper_network_matches_the_authors_parameter_count(mask):
    # Rep3D (Fixed Prior) 65.8 M / Rep3D 66.0 M in the paper (1 input channel, 16 classes)
    n = n_params(Rep3DPaperNet(1, 16, mask=mask))
    assert abs(n - 65.8e6) <= 0.005 * 65.8e6, n


def test_uxnet_layout_matches_3d_uxnet_parameter_count():
    # 3D UX-Net (k=7): 53.0 M in both papers' tables
    n = n_params(Rep3DPaperNet(1, 16, block="uxnet", kernel_size=7, mask="none"))
    assert abs(n - 53.0e6) <= 0.005 * 53.0e6, n


def test_paper_encoder_defaults_and_shapes():
    enc = Rep3DEncoder(1, kernel_sizes=5)
    assert enc.features == [48, 96, 192, 384] and enc.depths == [2, 2, 2, 2]
    outs = enc(torch.randn(1, 1, 32, 32, 32))
    assert [tuple(o.shape) for o in outs] == [(1, 48, 16, 16, 16), (1, 96, 8, 8, 8), (1, 192, 4, 4, 4),
                                              (1, 384, 2, 2, 2)]
    blocks = [m for m in Rep3DEncoder(1).modules() if isinstance(m, Rep3DBlock)]
    assert len(blocks) == 8 and all(b.conv.kernel_size == (21, 21, 21) for b in blocks)


def test_encoder_anisotropic_strides_and_per_stage_kernels():
    enc = Rep3DEncoder(2, features=(4, 8, 16), depths=[1, 1, 2], kernel_sizes=[(3, 7, 7), 5, 3],
                       strides=[1, (1, 2, 2), 2], stem_kernel_size=3, block="uxnet", mask="lrbm")
    outs = enc(torch.randn(1, 2, 8, 16, 16))
    assert [tuple(o.shape[2:]) for o in outs] == [(8, 16, 16), (8, 8, 8), (4, 4, 4)]
    assert isinstance(enc.stages[2][1], UXNetBlock)
    assert enc.stages[0][0].conv.kernel_size == (3, 7, 7)


def test_paper_network_forward_shape():
    net = Rep3DPaperNet(1, 3, features=(4, 8, 8, 16), kernel_size=5, hidden_size=16)
    assert net(torch.randn(1, 1, 32, 32, 32)).shape == (1, 3, 32, 32, 32)


@pytest.mark.parametrize("kwargs,match", [
    (dict(depths=(2, 2)), "one entry per stage"),
    (dict(block="convnext"), "unknown block"),
    (dict(mask="learned"), "unknown mask mode"),
    (dict(mask="lrbm", csla_small_kernel=3), "alternative to masking"),
    (dict(kernel_sizes=22), "odd integers"),
    (dict(strides=[2, 2, 0, 2]), "stride"),
])
def test_encoder_configuration_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        Rep3DEncoder(1, **kwargs)


def test_encoder_rejects_non_5d_input():
    with pytest.raises(ValueError, match="5D input"):
        Rep3DEncoder(1, features=(4,), depths=1, kernel_sizes=3)(torch.randn(1, 8, 8, 8))


def test_encoder_rejects_wrong_channel_count():
    with pytest.raises(RuntimeError, match="channels"):
        Rep3DEncoder(2, features=(4,), depths=1, kernel_sizes=3)(torch.randn(1, 3, 8, 8, 8))
