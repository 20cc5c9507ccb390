import pytest
import torch
import torch.nn.functional as F

from rep3d_nnunet import CSLADWConv3d, DepthwiseConv3d, ReparamDWConv3d, distance_prior


def _x(c=3, s=10, b=2):
    return torch.randn(b, c, s, s, s)


def test_one_backward_reaches_w_and_the_generator():
    conv = ReparamDWConv3d(3, 7, "lrbm")
    conv(_x()).square().mean().backward()
    g = conv.mask.generator
    for p in [conv.weight, g.conv2.weight, g.conv2.bias]:
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0
    # The last generator conv is zero-initialised (M == P at init), so at that exact
    # point nothing flows back through it to the first conv and the norm.
    for p in [g.conv1.weight, g.norm.weight, g.norm.bias]:
        assert p.grad is not None and torch.count_nonzero(p.grad) == 0


def test_after_one_step_every_generator_parameter_learns():
    conv = ReparamDWConv3d(3, 7, "lrbm")
    opt = torch.optim.SGD(conv.parameters(), lr=0.1)
    x = _x()
    conv(x).square().mean().backward()
    opt.step()
    opt.zero_grad()
    conv(x).square().mean().backward()
    for name, p in conv.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_generator_with_nontrivial_weights_gets_gradients_everywhere():
    conv = ReparamDWConv3d(3, 7, "lrbm")
    torch.nn.init.normal_(conv.mask.generator.conv2.weight, std=0.05)
    conv(_x()).square().mean().backward()
    for name, p in conv.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("mask", ["lrbm", "prior", "none"])
def test_optimizer_keeps_the_same_parameter_objects_and_nothing_compounds(mask):
    conv = ReparamDWConv3d(3, 5, mask)
    params_before = list(conv.parameters())
    w_leaf = conv.weight
    opt = torch.optim.AdamW(conv.parameters(), lr=1e-2)
    x = _x()
    w0 = w_leaf.detach().clone()
    for _ in range(3):
        opt.zero_grad()
        conv(x).square().mean().backward()
        opt.step()
    assert all(a is b for a, b in zip(params_before, conv.parameters()))
    assert conv.weight is w_leaf and opt.param_groups[0]["params"][0] is w_leaf
    assert not torch.equal(w0, conv.weight)  # the optimizer's W really moved
    with torch.no_grad():
        y1, y2 = conv(x), conv(x)
        m = conv.mask()
        # the forward uses W (.) M of the CURRENT W: no mask compounding into W
        expected = F.conv3d(x, conv.weight if m is None else conv.weight * m, padding=2, groups=3)
    assert torch.equal(y1, y2)
    assert torch.allclose(y1, expected, atol=1e-6)


def test_masking_is_not_switched_off_by_eval():
    conv = ReparamDWConv3d(3, 5, "lrbm")
    torch.nn.init.normal_(conv.mask.generator.conv2.weight, std=0.05)
    x = _x()
    y_train = conv.train()(x)
    y_eval = conv.eval()(x)
    plain = F.conv3d(x, conv.weight, padding=2, groups=3)
    assert torch.equal(y_train, y_eval)
    assert not torch.allclose(y_eval, plain, atol=1e-3)


def test_lrbm_and_prior_agree_at_initialisation():
    a = ReparamDWConv3d(4, 7, "lrbm")
    b = ReparamDWConv3d(4, 7, "prior")
    b.weight.data.copy_(a.weight.data)
    x = _x(4)
    assert torch.equal(a(x), b(x))


def test_one_sgd_step_moves_the_effective_kernel_by_lr_m_squared():
    """The method's core claim: W_eff' - W_eff = -lr * M^2 * dL/dW_eff (plain SGD, 'prior')."""
    torch.manual_seed(1)
    conv = ReparamDWConv3d(3, 7, "prior")
    x, target = _x(), torch.randn(2, 3, 10, 10, 10)
    lr = 0.5
    m = conv.mask().detach()
    w_eff0 = (conv.weight * m).detach().clone()
    # dL/dW_eff from an independent plain conv with W_eff as the leaf
    w_eff_leaf = w_eff0.clone().requires_grad_(True)
    F.mse_loss(F.conv3d(x, w_eff_leaf, padding=3, groups=3), target).backward()
    opt = torch.optim.SGD(conv.parameters(), lr=lr, momentum=0, weight_decay=0)
    F.mse_loss(conv(x), target).backward()
    opt.step()
    w_eff1 = (conv.weight * m).detach()
    expected = -lr * m ** 2 * w_eff_leaf.grad
    scale = expected.abs().max()
    assert scale > 0
    assert torch.allclose(w_eff1 - w_eff0, expected, rtol=1e-4, atol=1e-6 * scale.item())
    # spatially adaptive: the centre tap moves with rate 1, a corner tap with rate P^2
    p = distance_prior(7)
    assert torch.allclose(m[0, 0], p)


def test_no_parameter_is_rewrapped_by_forward():
    conv = ReparamDWConv3d(2, 5, "lrbm")
    names = [n for n, _ in conv.named_parameters()]
    conv(_x(2))
    assert [n for n, _ in conv.named_parameters()] == names
    assert conv.weight.is_leaf and conv.weight.grad_fn is None


@pytest.mark.parametrize("k", [4, 33, 0])
def test_bad_kernel_sizes(k):
    with pytest.raises(ValueError, match="odd integers"):
        ReparamDWConv3d(2, k)


def test_bad_inputs_are_named():
    conv = ReparamDWConv3d(4, 5)
    with pytest.raises(ValueError, match="built for 4 channels but the input has 3"):
        conv(torch.randn(1, 3, 8, 8, 8))
    with pytest.raises(ValueError, match="5D input"):
        conv(torch.randn(4, 8, 8, 8))
    with pytest.raises(ValueError, match="5D input"):
        DepthwiseConv3d(4, 5)(torch.randn(1, 4, 8, 8))
    with pytest.raises(ValueError, match="5D input"):
        CSLADWConv3d(4, 7, 3)(torch.randn(1, 4, 8, 8))


def test_csla_small_branch_is_clipped_to_a_smaller_large_kernel():
    conv = CSLADWConv3d(2, (3, 7, 7), 5)
    assert conv.small.kernel_size == (3, 5, 5)
    assert CSLADWConv3d(2, 3, 3).small.kernel_size == (3, 3, 3)
