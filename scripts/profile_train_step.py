#!/usr/bin/env python
"""Where one Rep3D training iteration spends its time: ``torch.profiler`` over a few iterations.

Same network, geometry and step as ``scripts/bench_train_step.py`` (ResEnc M's geometry
with the Rep3D encoder; forward, loss, backward, AdamW step; AMP = fp16 autocast on CUDA,
bf16 on CPU). Prints the top operators/kernels by self time with their share of the
total, and the share of our large-kernel op (``rep3d::`` custom ops and the FFTs they run).

    python scripts/profile_train_step.py --device cuda --patch 128 128 128 --batch 2 \\
        --out docs/measurements/profile_train_step_h200.txt
    python scripts/profile_train_step.py --quick          # CPU, small shapes
"""
from __future__ import annotations

import datetime
import sys

import torch
from torch.profiler import ProfilerActivity, profile

from rep3d_nnunet.benchmark.timing import (build_from_arch, device_sync, emit_report, make_train_step, resenc_m_arch,
                                           step_parser)
from rep3d_nnunet.nnunet.architecture import Rep3DVariant, trained_architecture


def main(argv=None) -> None:
    p = step_parser(__doc__)
    p.add_argument("--mask", default="lrbm", help="mask mode of the Rep3D variant (lrbm, prior, none)")
    p.add_argument("--no-amp", action="store_true")
    p.add_argument("--compile", action="store_true", help="profile the torch.compile'd network")
    p.add_argument("--iters", type=int, default=3)
    p.add_argument("--rows", type=int, default=30)
    p.add_argument("--quick", action="store_true", help="CPU-sized: patch 32^3, 4 stages, batch 1")
    p.add_argument("--out", help="also write the report to this file")
    args = p.parse_args(argv)
    if args.quick:
        args.patch, args.stages, args.batch, args.iters = [32, 32, 32], 4, 1, 1
    dev = torch.device(args.device)
    cuda = dev.type == "cuda"
    arch = trained_architecture(resenc_m_arch(args.stages), args.patch, Rep3DVariant(mask=args.mask))
    net = build_from_arch(arch, 1, 4).to(dev)
    model = torch.compile(net) if args.compile else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(args.batch, 1, *args.patch, device=dev)
    target = torch.randint(0, 4, (args.batch, *args.patch), device=dev)
    amp = not args.no_amp
    inner = make_train_step(model, opt, x, target, amp=False)

    def step() -> None:
        with torch.autocast(dev.type, dtype=torch.float16 if cuda else torch.bfloat16, enabled=amp):
            inner()
    sync = device_sync(dev)
    for _ in range(2):  # warm-up (compilation, cuFFT plans, cudnn autotuning)
        step()
    sync()
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if cuda else [])
    with profile(activities=activities) as prof:
        for _ in range(args.iters):
            step()
        sync()
    key = "self_device_time_total" if cuda else "self_cpu_time_total"
    events = prof.key_averages()
    total = sum(getattr(e, key) for e in events) or 1.0
    ours = sum(getattr(e, key) for e in events if "rep3d" in e.key or "fft" in e.key.lower())
    top = sorted(events, key=lambda e: getattr(e, key), reverse=True)[: args.rows]
    who = torch.cuda.get_device_name() if cuda else f"CPU, {torch.get_num_threads()} threads"
    lines = [f"# python scripts/profile_train_step.py {' '.join(argv or sys.argv[1:])}",
             f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {who}, torch {torch.__version__}",
             f"# Rep3D (mask {args.mask}), patch {args.patch}, batch {args.batch}, {args.stages} stages, "
             f"AMP {'on' if amp else 'off'}, compiled {'yes' if args.compile else 'no'}, {args.iters} iterations",
             f"# {key.replace('_', ' ')}: {total / 1e3 / args.iters:.1f} ms per iteration; "
             f"rep3d ops + FFTs: {100 * ours / total:.1f}%",
             f"{'share %':>8}  {'ms/iter':>9}  {'calls/iter':>10}  name"]
    for e in top:
        t = getattr(e, key)
        lines.append(f"{100 * t / total:>8.1f}  {t / 1e3 / args.iters:>9.2f}  {e.count / args.iters:>10.0f}  {e.key[:100]}")
    emit_report(lines, args.out)


if __name__ == "__main__":
    main()
