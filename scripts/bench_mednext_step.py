#!/usr/bin/env python
"""Seconds per training iteration and peak memory of MONAI's MedNeXt (the benchmark's MedNeXt rows).

Same step and timer as ``scripts/bench_train_step.py`` (``rep3d_nnunet.benchmark.timing``) (forward with deep-supervision heads, cross
entropy on the full-resolution output, backward, AdamW step; AMP on CUDA), so its numbers
sit beside that script's ResEnc M and Rep3D rows. Needs only torch and monai.
Multiply seconds/iteration by 250 x 1000 for nnU-Net's full schedule (one fold).

    python scripts/bench_mednext_step.py --device cuda --patch 128 128 128 --batch 2
"""
from __future__ import annotations

import argparse

import torch
from monai.networks.nets.mednext import create_mednext

from rep3d_nnunet.benchmark.timing import make_train_step, measure


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--patch", type=int, nargs=3, default=[128, 128, 128])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--variants", nargs="+", default=["S:3", "S:5", "B:3", "M:3"], help="SIZE:KERNEL")
    args = p.parse_args()
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    if cuda:
        torch.backends.cudnn.benchmark = True
    x = torch.randn(args.batch, 1, *args.patch, device=dev)
    target = torch.randint(0, args.classes, (args.batch, *args.patch), device=dev)
    name = torch.cuda.get_device_name() if cuda else "CPU"
    print(f"{name}, torch {torch.__version__}, patch {args.patch}, batch {args.batch}, medians of {args.runs}")
    print(f"{'network':<16}{'params M':>9}{'train s/it':>12}{'h/1000 ep':>11}{'peak GiB':>10}")
    for v in args.variants:
        size, k = v.split(":")
        net = create_mednext(size, spatial_dims=3, in_channels=1, out_channels=args.classes, kernel_size=int(k),
                             deep_supervision=True).to(dev).train()
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, eps=1e-4)

        if cuda:
            torch.cuda.reset_peak_memory_stats()
        s = measure(make_train_step(net, opt, x, target, amp=cuda), args.runs, sync=sync)["wall_s"]
        peak = torch.cuda.max_memory_allocated() / 2 ** 30 if cuda else float("nan")
        params = sum(q.numel() for q in net.parameters()) / 1e6
        print(f"{'MedNeXt ' + size + ' k' + k:<16}{params:>9.1f}{s:>12.3f}{s * 250 * 1000 / 3600:>11.1f}{peak:>10.2f}",
              flush=True)
        del net, opt
        if cuda:
            torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
