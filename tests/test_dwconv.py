"""dwconv3d: every path against an independent float64 F.conv3d reference."""
from __future__ import annotations

import functools

import pytest
import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode

from rep3d_nnunet.ops import dwconv3d
from rep3d_nnunet.ops.dispatch import ENV_VAR, choose_path, crop_slices, requested_path, valid_pairs
from rep3d_nnunet.ops.fft_dwconv import fft_sizes, smooth_size

EXACT_PATHS = ("fft", "direct", "auto")
RTOL = 1e-5  # max |error| / max |reference|, fp32 against float64

# (B, C, spatial, kernel): anisotropic kernels and volumes, batch 1 and 2, kernels
# larger than the volume (exact crop), and scaled-down stage shapes at k=21.
CASES = [
    (1, 3, (7, 6, 5), (3, 5, 7)),
    (2, 2, (9, 8, 10), (5, 5, 5)),
    (2, 3, (5, 6, 7), (1, 3, 9)),
    (1, 2, (3, 4, 2), (9, 9, 9)),      # S <= k//2 in every dim: kernel cropped
    (2, 3, (12, 11, 12), (21, 21, 21)),  # stage-3-like
    (2, 4, (6, 6, 6), (21, 21, 21)),    # stage-4-like: 21 -> 11 taps
]


def _reference(x, w, b):
    """Float64 F.conv3d with PyTorch's own autograd: independent of our code."""
    return F.conv3d(x, w, b, padding=tuple(k // 2 for k in w.shape[2:]), groups=w.shape[0])


def _rel(a: torch.Tensor, ref: torch.Tensor) -> float:
    return ((a.double() - ref).abs().max() / ref.abs().max()).item()


def _inputs(b, c, spatial, kernel, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(b, c, *spatial, generator=g, dtype=dtype)
    w = torch.randn(c, 1, *kernel, generator=g, dtype=dtype)
    bias = torch.randn(c, generator=g, dtype=dtype)
    return x, w, bias


@functools.lru_cache(maxsize=None)
def _reference_case(case):
    """Inputs, output gradient and float64 reference (output, grads) for one case, computed once."""
    x, w, b = _inputs(*case)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    y_ref = _reference(*leaves)
    gy = torch.randn(y_ref.shape, generator=torch.Generator().manual_seed(9), dtype=y_ref.dtype)
    return (x, w, b), gy, (y_ref.detach(),) + torch.autograd.grad(y_ref, leaves, gy)


@pytest.mark.parametrize("path", EXACT_PATHS)
@pytest.mark.parametrize("case", CASES, ids=lambda c: f"B{c[0]}C{c[1]}S{c[2]}k{c[3]}")
def test_matches_float64_reference(path, case):
    (x, w, b), gy, refs = _reference_case(case)
    y_ref = refs[0]

    ours = [t.float().requires_grad_() for t in (x, w, b)]
    y = dwconv3d(*ours, path=path)
    assert y.dtype == torch.float32 and y.shape == y_ref.shape
    got = (y,) + torch.autograd.grad(y, ours, gy.float())
    for name, a, r in zip(("out", "grad x", "grad w", "grad bias"), got, refs):
        assert a.shape == r.shape, name
        assert _rel(a, r) < RTOL, f"{path} {name}: rel err {_rel(a, r):.2e}"


@pytest.mark.parametrize("path", ("fft", "direct"))
@pytest.mark.parametrize("spatial,kernel", [((4, 3, 5), (3, 5, 3)), ((2, 3, 2), (7, 5, 5))])
def test_gradcheck_float64(path, spatial, kernel):
    # The second case crops the kernel (S <= k//2). fast_mode: a random projection
    # of the Jacobian, checked against finite differences, in a few evaluations.
    x, w, b = (t.requires_grad_() for t in _inputs(2, 2, spatial, kernel, seed=1))
    assert torch.autograd.gradcheck(lambda *a: dwconv3d(*a, path=path), (x, w, b), fast_mode=True)
    x1 = x[:1].detach().requires_grad_()  # batch 1
    assert torch.autograd.gradcheck(lambda *a: dwconv3d(*a, path=path), (x1, w, b), fast_mode=True)


@pytest.mark.parametrize("path", EXACT_PATHS)
def test_no_bias_and_grad_of_x_only(path):
    x, w, _ = _inputs(2, 3, (6, 7, 5), (5, 3, 3), seed=2)
    y = dwconv3d(x.float().requires_grad_(), w.float(), path=path)
    assert _rel(y, _reference(x, w, None)) < RTOL
    y.sum().backward()


@pytest.mark.parametrize("path", EXACT_PATHS)
def test_non_contiguous_and_channels_last_input(path):
    x, w, b = _inputs(2, 3, (8, 6, 10), (5, 5, 3), seed=3)
    ref = _reference(x, w, b)
    # A strided view (every other voxel of a bigger volume) and a channels_last_3d copy.
    big = torch.zeros(2, 3, 8, 6, 20, dtype=torch.float64)
    big[..., ::2] = x
    strided = big.float()[..., ::2]
    assert not strided.is_contiguous()
    cl = x.float().contiguous(memory_format=torch.channels_last_3d)
    for xin in (strided, cl):
        xin = xin.detach().requires_grad_()
        y = dwconv3d(xin, w.float(), b.float(), path=path)
        assert _rel(y, ref) < RTOL
        (gx,) = torch.autograd.grad(y, xin, torch.ones_like(y))
        xr = x.clone().requires_grad_()
        (gx_ref,) = torch.autograd.grad(_reference(xr, w, b).sum(), xr)
        assert gx.shape == xin.shape and _rel(gx, gx_ref) < RTOL


@pytest.mark.parametrize("path", EXACT_PATHS + ("torch",))
def test_autocast_bf16_cpu(path):
    """Under autocast the result has the autocast dtype; weights keep fp32 gradients."""
    x, w, b = _inputs(2, 3, (6, 6, 6), (5, 5, 5), seed=4, dtype=torch.float32)
    w.requires_grad_()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = dwconv3d(x, w, b, path=path)
    assert y.dtype == torch.bfloat16
    assert _rel(y, _reference(x.double(), w.detach().double(), b.double())) < 2e-2
    y.float().sum().backward()
    assert w.grad is not None and w.grad.dtype == torch.float32


@pytest.mark.parametrize("dtype", (torch.float16, torch.bfloat16))
def test_half_inputs_keep_their_dtype(dtype):
    x, w, b = _inputs(1, 2, (5, 6, 7), (3, 3, 5), seed=5)
    y = dwconv3d(x.to(dtype), w.to(dtype), b.to(dtype), path="fft")
    assert y.dtype == dtype
    assert _rel(y, _reference(x.to(dtype).double(), w.to(dtype).double(), b.to(dtype).double())) < 1e-2


class _RecordPaths(TorchDispatchMode):
    """Records which path each dwconv3d call ran: the op's path argument, or 'torch' for F.conv3d."""

    def __init__(self) -> None:
        super().__init__()
        self.paths = []

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.rep3d.dwconv3d.default:
            self.paths.append(args[3])
        elif func is torch.ops.aten.convolution.default:
            self.paths.append("torch")
        return func(*args, **(kwargs or {}))


def test_path_selection(monkeypatch):
    x, w, _ = _inputs(1, 2, (10, 10, 10), (9, 9, 9), dtype=torch.float32)
    x.requires_grad_()
    monkeypatch.setenv(ENV_VAR, "fft")
    with _RecordPaths() as rec:
        dwconv3d(x, w)
        dwconv3d(x, w, path="direct")  # argument wins
        monkeypatch.setenv(ENV_VAR, "torch")
        dwconv3d(x, w)
        monkeypatch.delenv(ENV_VAR)
        # auto at a stage-3-like shape: FFT for training, direct for inference (see the rule's test)
        x3, w3, _ = _inputs(1, 1, (12, 12, 12), (21, 21, 21), dtype=torch.float32)
        dwconv3d(x3, w3.requires_grad_())
        with torch.no_grad():
            dwconv3d(x3, w3)
    assert rec.paths == ["fft", "direct", "torch", "fft", "direct"]
    monkeypatch.setenv(ENV_VAR, "nonsense")
    with pytest.raises(ValueError, match=ENV_VAR):
        dwconv3d(x, w)
    monkeypatch.delenv(ENV_VAR)
    assert requested_path() == "auto"


def test_dispatch_rule_at_stage_shapes():
    cpu = torch.device("cpu")
    assert choose_path((48,) * 3, (21,) * 3, cpu) == "fft"
    assert choose_path((48,) * 3, (5,) * 3, cpu) == "direct"
    assert choose_path((24,) * 3, (13,) * 3, cpu) == "fft"
    # stage 4: 6^3 volume, 21^3 kernel cropped to 11^3, then direct.
    assert [s.stop - s.start for s in crop_slices((6, 6, 6), (21, 21, 21))] == [11, 11, 11]
    assert choose_path((6,) * 3, (11,) * 3, cpu) == "direct"
    # stage 3, k=21: FFT when training, direct forward (it skips the padding) for inference.
    assert choose_path((12,) * 3, (21,) * 3, cpu, backward=True) == "fft"
    assert choose_path((12,) * 3, (21,) * 3, cpu, backward=False) == "direct"
    gpu = torch.device("cuda")  # a device object only: no GPU needed
    assert choose_path((48,) * 3, (21,) * 3, gpu) == "fft" and choose_path((24,) * 3, (7,) * 3, gpu) == "fft"
    assert choose_path((6,) * 3, (11,) * 3, gpu) == "direct" and choose_path((12,) * 3, (7,) * 3, gpu) == "direct"
    assert valid_pairs(12, 21) == 142 and valid_pairs(48, 1) == 48


def test_fft_sizes_are_smooth_and_sufficient():
    assert smooth_size(58) == 60 and smooth_size(11) == 12 and smooth_size(1) == 1
    assert fft_sizes((48, 24, 12), (21, 21, 21)) == (60, 35, 24)


def test_rejects_bad_shapes():
    x = torch.zeros(1, 2, 4, 4, 4)
    with pytest.raises(ValueError):
        dwconv3d(x, torch.zeros(2, 1, 4, 3, 3))  # even kernel
    with pytest.raises(ValueError):
        dwconv3d(x, torch.zeros(3, 1, 3, 3, 3))  # channel mismatch
    with pytest.raises(ValueError):
        dwconv3d(x, torch.zeros(2, 1, 3, 3, 3), torch.zeros(3))


cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device (CPU tests cover the same paths)")


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("path", EXACT_PATHS + ("torch",))
def test_cuda_matches_float64_reference(path):
    x, w, b = _inputs(2, 4, (12, 10, 14), (21, 9, 7), seed=6)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    y_ref = _reference(*leaves)
    gy = torch.randn_like(y_ref)
    refs = (y_ref,) + torch.autograd.grad(y_ref, leaves, gy)
    ours = [t.float().cuda().requires_grad_() for t in (x, w, b)]
    with torch.backends.cudnn.flags(enabled=True, allow_tf32=False):  # TF32 would cost ~1e-3
        y = dwconv3d(*ours, path=path)
        got = (y,) + torch.autograd.grad(y, ours, gy.float().cuda())
    for a, r in zip(got, refs):
        assert _rel(a.cpu(), r) < RTOL


@pytest.mark.gpu
@cuda
@pytest.mark.parametrize("path", EXACT_PATHS)
def test_cuda_autocast_bf16(path):
    x, w, b = _inputs(2, 3, (8, 8, 8), (7, 7, 7), seed=7, dtype=torch.float32)
    x, w, b = x.cuda(), w.cuda().requires_grad_(), b.cuda()
    with torch.autocast("cuda", dtype=torch.bfloat16):
        y = dwconv3d(x, w, b, path=path)
    assert y.dtype == torch.bfloat16
    assert _rel(y.cpu(), _reference(x.cpu().double(), w.detach().cpu().double(), b.cpu().double())) < 2e-2
    y.float().sum().backward()
    assert w.grad.dtype == torch.float32


def test_dwconv_path_context_sets_and_restores_the_override(monkeypatch):
    from rep3d_nnunet.ops.dispatch import ENV_VAR, dwconv_path, requested_path

    monkeypatch.setenv(ENV_VAR, "fft")
    with dwconv_path("torch"):
        assert requested_path() == "torch"
        with dwconv_path(None):
            assert requested_path() == "auto"
        assert requested_path() == "torch"
    assert requested_path() == "fft"
    monkeypatch.delenv(ENV_VAR)
    with dwconv_path("direct"):
        assert requested_path() == "direct"
    assert requested_path() == "auto"
