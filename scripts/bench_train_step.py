#!/usr/bin/env python
"""Seconds per training iteration and peak memory: Rep3D (nnU-Net plans form) vs ResEnc M.

Both networks get the same nnU-Net geometry (ResEnc M's stages, features, strides and
decoder; Rep3D swaps the encoder, as ``nnUNetPlannerRep3D`` does) at one patch and
batch size. One iteration = forward + deep-supervision-style loss + backward + AdamW
step (AMP on CUDA). Also the deployed Rep3D network's inference forward against the
training form. Multiply seconds/iteration by 250 x 1000 for nnU-Net's full schedule.

    python scripts/bench_train_step.py --quick                          # CPU, small shapes
    python scripts/bench_train_step.py --device cuda --patch 128 128 128 --batch 2
"""
from __future__ import annotations

import argparse
import copy
import json
from typing import Callable, Dict, List

import torch
from torch import nn

from rep3d_nnunet.benchmark.timing import make_train_step, measure
from rep3d_nnunet.deploy import reparameterize_model
from rep3d_nnunet.nnunet.architecture import Rep3DVariant, rep3d_architecture


def resenc_m_arch(n_stages: int) -> dict:
    """nnU-Net's ResEnc M architecture block for an isotropic 3D patch (planner output shape)."""
    features = [min(32 * 2 ** i, 320) for i in range(n_stages)]
    return {"network_class_name": "dynamic_network_architectures.architectures.unet.ResidualEncoderUNet",
            "arch_kwargs": {
                "n_stages": n_stages, "features_per_stage": features, "conv_op": nn.Conv3d,
                "kernel_sizes": [[3, 3, 3]] * n_stages, "strides": [[1, 1, 1]] + [[2, 2, 2]] * (n_stages - 1),
                "n_blocks_per_stage": [1, 3, 4, 6, 6, 6, 6][:n_stages],
                "n_conv_per_stage_decoder": [1] * (n_stages - 1), "conv_bias": True,
                "norm_op": nn.InstanceNorm3d, "norm_op_kwargs": {"eps": 1e-5, "affine": True},
                "dropout_op": None, "dropout_op_kwargs": None, "nonlin": nn.LeakyReLU,
                "nonlin_kwargs": {"inplace": True}}}


def build(arch: dict, in_ch: int, n_cls: int, deep_supervision: bool = True) -> nn.Module:
    import pydoc

    cls = pydoc.locate(arch["network_class_name"])
    net = cls(input_channels=in_ch, num_classes=n_cls, deep_supervision=deep_supervision, **arch["arch_kwargs"])
    if hasattr(net, "initialize"):
        net.apply(net.initialize)
    return net


def timed(fn: Callable[[], None], runs: int, sync: Callable[[], None]) -> float:
    """Median wall seconds of ``fn`` after one warm-up run (``rep3d_nnunet.benchmark.timing.measure``)."""
    return measure(fn, runs, warmup=1, sync=sync)["wall_s"]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--patch", type=int, nargs=3, default=[128, 128, 128])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--stages", type=int, default=6)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--quick", action="store_true", help="CPU-sized: patch 32^3, 4 stages, batch 1")
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if args.quick:
        args.patch, args.stages, args.batch = [32, 32, 32], 4, 1
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.backends.cudnn.benchmark = True

    base = resenc_m_arch(args.stages)
    archs = {"ResEnc M": base}
    for name, variant in (("Rep3D (LRBM)", Rep3DVariant(mask="lrbm")), ("Rep3D plain LK", Rep3DVariant(mask="none"))):
        archs[name] = rep3d_architecture(base, args.patch, variant)
    x = torch.randn(args.batch, 1, *args.patch, device=dev)
    rows: List[Dict] = []
    for name, arch in archs.items():
        net = build(arch, 1, args.classes).to(dev)
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
        target = torch.randint(0, args.classes, (args.batch, *args.patch), device=dev)
        step = make_train_step(net, opt, x, target, amp=cuda)
        if cuda:
            torch.cuda.reset_peak_memory_stats()
        t_train = timed(step, args.runs, sync)
        peak = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float("nan")
        net.eval()
        infer = build(arch, 1, args.classes, deep_supervision=False).to(dev).eval()
        infer.load_state_dict(net.state_dict(), strict=False)
        deployed = reparameterize_model(copy.deepcopy(infer))
        with torch.no_grad(), torch.autocast(dev.type, enabled=cuda):
            t_inf = timed(lambda: infer(x), args.runs, sync)
            t_dep = timed(lambda: deployed(x), args.runs, sync)
        rows.append({"network": name, "params_M": sum(q.numel() for q in net.parameters()) / 1e6,
                     "train_s_per_iter": t_train, "peak_GiB": peak, "infer_s": t_inf, "deployed_infer_s": t_dep,
                     "dw_kernels": arch["arch_kwargs"].get("dw_kernel_sizes")})
        del net, opt
        if cuda:
            torch.cuda.empty_cache()
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    name = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    print(f"{name}, torch {torch.__version__}, patch {args.patch}, batch {args.batch}, {args.stages} stages, "
          f"medians of {args.runs}")
    print(f"{'network':<16}{'params M':>9}{'train s/it':>12}{'h/1000 ep':>11}{'peak GiB':>10}{'infer s':>9}"
          f"{'deployed s':>11}")
    for r in rows:
        print(f"{r['network']:<16}{r['params_M']:>9.1f}{r['train_s_per_iter']:>12.3f}"
              f"{r['train_s_per_iter'] * 250 * 1000 / 3600:>11.1f}{r['peak_GiB']:>10.2f}{r['infer_s']:>9.3f}"
              f"{r['deployed_infer_s']:>11.3f}")


if __name__ == "__main__":
    main()
