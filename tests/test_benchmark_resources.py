"""FLOP and parameter counting of the report's resource columns, checked by hand (fast)."""
import torch
from torch import nn

from rep3d_nnunet.benchmark.resources import count_flops, count_parameters


def test_flops_of_a_conv_stack_by_hand():
    net = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.Conv3d(4, 4, 5, padding=2, groups=4))
    shape = (1, 2, 8, 6, 4)
    voxels = 8 * 6 * 4
    expected = 2 * voxels * 4 * (2 * 27) + 2 * voxels * 4 * (1 * 125)  # 2 FLOPs per multiply-add
    assert count_flops(net, shape, "cpu") == expected
    with torch.device("meta"):
        meta_net = nn.Sequential(nn.Conv3d(2, 4, 3, padding=1), nn.Conv3d(4, 4, 5, padding=2, groups=4))
    assert count_flops(meta_net, shape, "meta") == expected   # shapes only, no compute


def test_rep3d_large_kernel_is_counted_as_a_direct_convolution():
    from rep3d_nnunet import Rep3DBlock, reparameterize_model

    block = reparameterize_model(Rep3DBlock(4, 7, mask="lrbm").eval())
    flops = count_flops(block, (1, 4, 8, 8, 8), "cpu")
    assert flops >= 2 * 512 * 4 * 7 ** 3 * 0.99   # the depthwise 7^3 conv dominates; nothing hidden in an FFT


def test_parameters_counted_once_when_shared():
    lin = nn.Linear(3, 3)
    net = nn.Sequential(lin, lin)
    assert count_parameters(net) == 12


def test_large_depthwise_convs_at_fft_cost_by_hand():
    import math

    from rep3d_nnunet.benchmark.resources import fft_dwconv_flops, large_dwconv_flops
    from rep3d_nnunet.ops.fft_dwconv import fft_sizes

    # one 21^3 depthwise conv on 4 channels of 16^3 (uncropped: 16 > 21 // 2), plus a 3^3 one that stays direct
    net = nn.Sequential(nn.Conv3d(4, 4, 21, padding=10, groups=4), nn.Conv3d(4, 4, 3, padding=1, groups=4))
    direct, fft = large_dwconv_flops(net, (2, 4, 16, 16, 16), "cpu")
    assert direct == 2 * 2 * 4 * 16 ** 3 * 21 ** 3  # what count_flops counts for it
    n = math.prod(fft_sizes((16, 16, 16), (21, 21, 21)))
    transform = 2.5 * n * math.log2(n)
    assert fft == fft_dwconv_flops(2, 4, (16, 16, 16), (21, 21, 21)) == int(4 * (2 * (2 * transform + 3 * n)
                                                                               + transform))
    assert fft < direct / 10  # why the report shows both
    assert large_dwconv_flops(nn.Conv3d(4, 4, 3, padding=1, groups=4), (1, 4, 8, 8, 8), "cpu") == (0, 0)
