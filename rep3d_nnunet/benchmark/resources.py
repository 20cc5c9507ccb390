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

from typing import Dict, Optional

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
            out["flops_device"] = device
            return out
        except Exception as e:  # meta tensors cannot run every op (e.g. data-dependent code): retry on CPU
            last_error = e
    raise RuntimeError(f"cannot count the cost of {trainer_name}: {type(last_error).__name__}: {last_error}")
