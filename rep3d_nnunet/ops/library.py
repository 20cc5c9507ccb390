"""``rep3d::dwconv3d``: the depthwise conv kernels as a registered ``torch.library`` custom op.

One opaque, differentiable op that ``torch.compile`` (dynamo + inductor),
``torch.export``, ``FlopCounterMode`` (also on the meta device) and
``torch.autograd.gradcheck`` all see as a single node:

    torch.ops.rep3d.dwconv3d(x, weight, bias, path) -> (y, saved_a, saved_b)

- ``path`` is the *resolved* algorithm, ``fft`` or ``direct`` (``direct_cl3d``: the
  direct path on ``channels_last_3d`` copies, a measured CUDA candidate that dispatch
  does not use). Resolving ``auto`` / ``REP3D_DWCONV`` happens in ``ops.dwconv3d``,
  outside the op, so a compiled graph holds the path as a constant argument.
- x, weight, bias share one dtype, float32 or float64; the kernel is odd and already
  cropped (``ops.dwconv3d`` does both). Autocast is off inside (FFTs must run in fp32).
- ``saved_a, saved_b`` are what the backward reuses: the spectra (xf, wf) on the FFT
  path, which saves recomputing them (one more transform of x per step), and empty
  tensors on the direct path (whose backward reads x and weight). They are
  non-differentiable; callers use ``y`` only.
- The backward is a second opaque op, ``rep3d::dwconv3d_backward`` (the hand-written
  gradients of ops/fft_dwconv.py and ops/direct_dwconv.py), plus a plain sum for the
  bias gradient.

FLOPs: both ops count as the direct convolution they compute (2 per multiply-add,
taps over the zero padding included, as ``FlopCounterMode`` counts ``F.conv3d``),
whatever algorithm runs.
"""
import math
from typing import List, Optional, Tuple

import torch
from torch import Tensor
from torch.utils.flop_counter import register_flop_formula

from rep3d_nnunet.ops.direct_dwconv import direct_backward, direct_forward
from rep3d_nnunet.ops.fft_dwconv import fft_backward, fft_forward, fft_spectra_shapes

OP_PATHS = ("fft", "direct", "direct_cl3d")


def _check_op_args(x: Tensor, weight: Tensor, bias: Optional[Tensor], path: str) -> None:
    if path not in OP_PATHS:
        raise ValueError(f"rep3d::dwconv3d path must be one of {OP_PATHS} (resolve 'auto' / 'torch' with "
                         f"rep3d_nnunet.ops.dwconv3d), got {path!r}")
    dtypes = {t.dtype for t in (x, weight, bias) if t is not None}
    if len(dtypes) != 1 or not dtypes <= {torch.float32, torch.float64}:
        raise ValueError(f"rep3d::dwconv3d computes in one dtype, float32 or float64; got {sorted(map(str, dtypes))} "
                         "(rep3d_nnunet.ops.dwconv3d casts for you)")


@torch.library.custom_op("rep3d::dwconv3d", mutates_args=(),
                         schema="(Tensor x, Tensor weight, Tensor? bias, str path) -> (Tensor, Tensor, Tensor)")
def dwconv3d_op(x: Tensor, weight: Tensor, bias: Optional[Tensor], path: str) -> Tuple[Tensor, Tensor, Tensor]:
    """'Same' depthwise conv on the given path: (y, saved_a, saved_b), see the module docstring."""
    _check_op_args(x, weight, bias, path)
    with torch.autocast(device_type=x.device.type, enabled=False):
        if path == "fft":
            return fft_forward(x, weight, bias)
        y = direct_forward(x, weight, bias, channels_last=path == "direct_cl3d").contiguous()
    return y, x.new_empty(0), x.new_empty(0)


@dwconv3d_op.register_fake
def _dwconv3d_fake(x: Tensor, weight: Tensor, bias: Optional[Tensor], path: str) -> Tuple[Tensor, Tensor, Tensor]:
    _check_op_args(x, weight, bias, path)
    y = torch.empty_like(x, memory_format=torch.contiguous_format)
    if path != "fft":
        return y, x.new_empty(0), x.new_empty(0)
    # transform sizes depend on the spatial sizes (int(): a shape guard if they are symbolic)
    xs, ws = fft_spectra_shapes([x.shape[0], x.shape[1], *(int(s) for s in x.shape[2:])],
                                [int(k) for k in weight.shape[2:]])
    cdtype = x.dtype.to_complex()
    return y, x.new_empty(xs, dtype=cdtype), x.new_empty(ws, dtype=cdtype)


@torch.library.custom_op("rep3d::dwconv3d_backward", mutates_args=(),
                         schema="(Tensor grad, Tensor a, Tensor b, int[] kernel, str path, bool need_x, "
                                "bool need_w) -> (Tensor, Tensor)")
def dwconv3d_backward_op(grad: Tensor, a: Tensor, b: Tensor, kernel: List[int], path: str, need_x: bool,
                         need_w: bool) -> Tuple[Tensor, Tensor]:
    """(grad x, grad weight) of ``rep3d::dwconv3d`` (empty where not needed).

    ``a, b``: the spectra (xf, wf) on the FFT path, (x, weight) on the direct paths.
    """
    with torch.autocast(device_type=grad.device.type, enabled=False):
        if path == "fft":
            gx, gw = fft_backward(grad, a, b, kernel, need_x, need_w)
        else:
            gx, gw = direct_backward(grad, a, b, need_x, need_w, channels_last=path == "direct_cl3d")
    empty = grad.new_empty(0)
    return (gx.contiguous() if gx is not None else empty,
            gw.contiguous() if gw is not None else empty.clone())


@dwconv3d_backward_op.register_fake
def _dwconv3d_backward_fake(grad: Tensor, a: Tensor, b: Tensor, kernel: List[int], path: str, need_x: bool,
                            need_w: bool) -> Tuple[Tensor, Tensor]:
    gx = torch.empty_like(grad, memory_format=torch.contiguous_format) if need_x else grad.new_empty(0)
    gw = grad.new_empty((grad.shape[1], 1, *kernel)) if need_w else grad.new_empty(0)
    return gx, gw


def _setup_context(ctx, inputs, output) -> None:
    x, weight, bias, path = inputs
    _, saved_a, saved_b = output
    ctx.mark_non_differentiable(saved_a, saved_b)
    # no zero-filled gradients for the saved outputs (a memset of the spectra's size per backward)
    ctx.set_materialize_grads(False)
    # FFT: keep the spectra (not x); direct: its backward convolves x and weight again
    ctx.save_for_backward(*((saved_a, saved_b) if path == "fft" else (x, weight)))
    ctx.path = path
    ctx.kernel = [int(k) for k in weight.shape[2:]]
    ctx.has_bias = bias is not None


def _backward(ctx, grad_y: Optional[Tensor], _grad_a: Optional[Tensor], _grad_b: Optional[Tensor]):
    a, b = ctx.saved_tensors
    need_x, need_w, need_b = ctx.needs_input_grad[:3]
    gx = gw = gb = None
    if grad_y is None:  # y did not reach the loss (grads are not materialised, see _setup_context)
        return None, None, None, None
    if need_x or need_w:
        gx, gw = torch.ops.rep3d.dwconv3d_backward(grad_y, a, b, ctx.kernel, ctx.path, need_x, need_w)
    if ctx.has_bias and need_b:
        gb = grad_y.sum(dim=(0, 2, 3, 4))
    return (gx if need_x else None), (gw if need_w else None), gb, None


dwconv3d_op.register_autograd(_backward, setup_context=_setup_context)


def _conv_flops(x_shape, kernel) -> int:
    return 2 * math.prod(x_shape) * math.prod(kernel)


@register_flop_formula(torch.ops.rep3d.dwconv3d)
def _dwconv3d_flops(x_shape, w_shape, bias_shape, path, out_shape=None, **kwargs) -> int:
    return _conv_flops(x_shape, w_shape[2:])


@register_flop_formula(torch.ops.rep3d.dwconv3d_backward)
def _dwconv3d_backward_flops(grad_shape, a_shape, b_shape, kernel, path, need_x, need_w, out_shape=None,
                             **kwargs) -> int:
    return (int(need_x) + int(need_w)) * _conv_flops(grad_shape, kernel)
