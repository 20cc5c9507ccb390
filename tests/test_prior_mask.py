import math

import pytest
import torch

from rep3d_nnunet import KernelMask, LRBMGenerator, distance_prior, kernel_size_3d


def test_prior_values_follow_the_formula():
    p = distance_prior(5, beta=1.0)
    assert p.shape == (5, 5, 5)
    assert p[2, 2, 2] == 1.0
    assert p[2, 2, 3] == pytest.approx(0.5)
    assert p[0, 0, 0] == pytest.approx(1 / (math.sqrt(12) + 1))
    p2 = distance_prior(5, beta=2.0)
    assert p2[2, 2, 4] == pytest.approx(2 / (2 + 2))


def test_prior_is_symmetric_and_decays_with_distance():
    p = distance_prior(21)
    assert torch.equal(p, p.flip(0)) and torch.equal(p, p.flip(1)) and torch.equal(p, p.permute(1, 2, 0))
    profile = p[10, 10, 10:]
    assert torch.all(profile[1:] < profile[:-1])


def test_prior_anisotropic():
    p = distance_prior((3, 7, 11))
    assert p.shape == (3, 7, 11)
    assert p[1, 3, 5] == 1.0
    assert p[1, 3, 6] == pytest.approx(0.5) and p[2, 3, 5] == pytest.approx(0.5)


@pytest.mark.parametrize("bad", [4, 0, -3, 1, 33, 22, (3, 4, 5), (3, 3), 2.5])
def test_invalid_kernel_sizes_name_the_valid_ones(bad):
    with pytest.raises(ValueError, match="odd integers from 3 to 31|tuple of 3 ints"):
        kernel_size_3d(bad)


def test_invalid_beta():
    with pytest.raises(ValueError, match="beta"):
        distance_prior(5, beta=0.0)


def test_lrbm_mask_equals_prior_at_init():
    m = KernelMask(6, 9, "lrbm")
    assert torch.equal(m(), distance_prior(9)[None, None])


@pytest.mark.parametrize("k", [3, 7, 21, (5, 9, 13)])
def test_generator_output_has_the_kernel_shape(k):
    # the authors' padding 7 grew f(P) to K+8; 'same' padding must keep K
    m = KernelMask(4, k, "lrbm")
    nn_init_nonzero(m.generator)
    expected = tuple([k] * 3) if isinstance(k, int) else k
    assert m().shape == (1, 1, *expected)


def nn_init_nonzero(gen: LRBMGenerator) -> None:
    torch.nn.init.normal_(gen.conv2.weight, std=0.05)
    torch.nn.init.normal_(gen.conv2.bias, std=0.05)


def test_generator_does_not_collapse_to_a_constant():
    # pitfall 2: a LayerNorm over a singleton channel returns its bias (a constant field)
    m = KernelMask(4, 11, "lrbm")
    nn_init_nonzero(m.generator)
    delta = (m() - m.prior)[0, 0]
    assert delta.std() > 1e-3
    hidden = m.generator.norm(m.generator.conv1(m.prior))
    # normalised per hidden channel over the kernel's spatial extent
    assert torch.allclose(hidden.mean(dim=(2, 3, 4)), torch.zeros(1, 8), atol=1e-5)
    assert torch.allclose(hidden.var(dim=(2, 3, 4), unbiased=False), torch.ones(1, 8), atol=0.05)  # eps=1e-5 vs var~1e-3


def test_per_channel_mask_shape_and_shared_default():
    shared = KernelMask(6, 7, "lrbm")
    per = KernelMask(6, 7, "lrbm", per_channel=True)
    nn_init_nonzero(per.generator)
    assert shared().shape == (1, 1, 7, 7, 7)
    out = per()
    assert out.shape == (6, 1, 7, 7, 7)
    assert not torch.allclose(out[0], out[1])


def test_generator_is_small():
    n = sum(p.numel() for p in KernelMask(384, 21, "lrbm").parameters())
    assert 300 < n < 10_000


def test_mask_modes():
    assert KernelMask(2, 5, "none")() is None
    assert torch.equal(KernelMask(2, 5, "prior")(), distance_prior(5)[None, None])
    assert list(KernelMask(2, 5, "prior").parameters()) == []
    with pytest.raises(ValueError, match="unknown mask mode"):
        KernelMask(2, 5, "fixed")


def test_prior_is_not_in_the_state_dict():
    assert "prior" not in KernelMask(2, 5, "prior").state_dict()


@pytest.mark.parametrize("per_channel", [False, True])
def test_generator_fast_path_equals_dense_convs(per_channel):
    g = LRBMGenerator(out_channels=3 if per_channel else 1)
    nn_init_nonzero(g)
    p = distance_prior((7, 9, 11))[None, None]
    ref = g.conv2(g.gate(g.norm(g.conv1(p))))
    assert (g(p) - ref).abs().max() <= 1e-5 * ref.abs().max()
    grads = torch.autograd.grad(g(p).square().sum(), list(g.parameters()))
    ref_grads = torch.autograd.grad(ref.square().sum(), list(g.parameters()))
    for a, b in zip(grads, ref_grads):
        assert (a - b).abs().max() <= 1e-5 * b.abs().max()
