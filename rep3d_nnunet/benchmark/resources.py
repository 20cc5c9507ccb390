"""Parameters and GFLOPs of a trained method's network, built exactly as ``nnUNetv2_predict`` builds it.

The network comes from the trainer's static ``build_network_architecture`` (the
inference form: Rep3D's deploy form, deep supervision off), so the numbers are the
cost of the model a user deploys. FLOPs are counted by
``torch.utils.flop_counter.FlopCounterMode`` for one forward pass of one patch of
the plans' size (2 FLOPs per multiply-add), on the meta device where possible (no
memory, no compute), else on the CPU. Rep3D's large depthwise convolutions are
forced onto the plain ``F.conv3d`` path while counting, so they are counted as
direct convolutions (an FFT path would hide them from the counter).
"""
from __future__ import annotations

from typing import Dict, List, Optional, Tuple

import torch

from rep3d_nnunet.nnunet.adapter import build_predictor_network, network_io
from rep3d_nnunet.ops.dispatch import dwconv_path


def build_inference_network(trainer_name: str, plans: dict, dataset_json: dict, configuration: str,
                            device: str = "cpu") -> torch.nn.Module:
    """The trainer's network as nnU-Net's predictor builds it (the adapter's trainer lookup and builder)."""
    return build_predictor_network(trainer_name, plans, dataset_json, configuration, form="deploy", device=device)


def count_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())  # parameters() already yields shared ones once


def count_flops(model: torch.nn.Module, input_shape, device: str) -> int:
    """FLOPs of one forward pass (FlopCounterMode; 2 per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    model.eval()
    x = torch.zeros(*input_shape, device=device)
    with torch.no_grad(), dwconv_path("torch"), FlopCounterMode(display=False) as counter:
        model(x)
    return int(counter.get_total_flops())


def _large_depthwise(module: torch.nn.Module) -> bool:
    # a depthwise Conv3d (one filter per channel) with a kernel larger than 3 on some axis: what the FFT path runs
    return (isinstance(module, torch.nn.Conv3d) and module.groups == module.in_channels == module.out_channels > 1
            and max(module.kernel_size) > 3)


def fft_dwconv_flops(batch: int, channels: int, spatial, kernel) -> int:
    """FLOPs of one depthwise conv on the FFT path (``ops/fft_dwconv.py``), counted like FFT benchmarks do.

    Per channel, transform size N = ``fft_sizes`` (the kernel cropped as the op crops it): a real
    transform costs 2.5 Np log2 Np (half of a complex FFT's 5 Np log2 Np); the input and the output are
    transformed per sample, the kernel once; the spectral product is 6 FLOPs per complex bin (Np / 2 bins).
    """
    import math

    from rep3d_nnunet.ops.dispatch import crop_slices
    from rep3d_nnunet.ops.fft_dwconv import fft_sizes

    cropped = [sl.stop - sl.start for sl in crop_slices(tuple(spatial), tuple(kernel))]
    n = math.prod(fft_sizes(tuple(spatial), cropped))
    transform = 2.5 * n * math.log2(n)
    return int(channels * (batch * (2 * transform + 3 * n) + transform))


def large_dwconv_flops(model: torch.nn.Module, input_shape, device: str) -> Tuple[int, int]:
    """(direct, FFT) FLOPs of the model's large depthwise convs in one forward pass.

    Direct = what ``count_flops`` counted for them (2 x C x prod(k) per output voxel, the full kernel);
    FFT = ``fft_dwconv_flops``. (0, 0) without such convs (no second pass then).
    """
    import math

    convs = [m for m in model.modules() if _large_depthwise(m)]
    if not convs:
        return 0, 0
    seen: List[Tuple[int, int]] = []

    def hook(module, inputs, output):
        x = inputs[0]
        b, c, spatial = int(x.shape[0]), int(x.shape[1]), [int(s) for s in x.shape[2:]]
        seen.append((2 * b * c * math.prod(spatial) * math.prod(module.kernel_size),
                     fft_dwconv_flops(b, c, spatial, module.kernel_size)))

    handles = [m.register_forward_hook(hook) for m in convs]
    try:
        model.eval()
        with torch.no_grad(), dwconv_path("torch"):
            model(torch.zeros(*input_shape, device=device))
    finally:
        for h in handles:
            h.remove()
    return sum(d for d, _ in seen), sum(f for _, f in seen)


def network_cost(trainer_name: str, plans: dict, dataset_json: dict, configuration: str, flops: bool = True
                 ) -> Dict[str, Optional[float]]:
    """``{'params_m': ..., 'gflops': ..., 'patch_size': [...], 'flops_device': 'meta'|'cpu'|None}``."""
    _, cm, n_in, _ = network_io(plans, dataset_json, configuration)
    shape = (1, n_in, *cm.patch_size)
    out: Dict[str, Optional[float]] = {"patch_size": list(cm.patch_size), "gflops": None, "flops_device": None}
    last_error = None
    for device in ("meta", "cpu"):
        try:
            net = build_inference_network(trainer_name, plans, dataset_json, configuration, device)
            out["params_m"] = count_parameters(net) / 1e6
            if not flops:
                return out
            out["gflops"] = count_flops(net, shape, device) / 1e9
            direct, fft = large_dwconv_flops(net, shape, device)
            out["gflops_fft"] = out["gflops"] + (fft - direct) / 1e9  # large depthwise convs at their FFT cost
            out["flops_device"] = device
            return out
        except Exception as e:  # meta tensors cannot run every op (e.g. data-dependent code): retry on CPU
            last_error = e
    raise RuntimeError(f"cannot count the cost of {trainer_name}: {type(last_error).__name__}: {last_error}")
