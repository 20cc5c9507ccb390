#!/usr/bin/env python
"""Seconds per training iteration and peak memory: Rep3D (nnU-Net plans form) vs ResEnc M, side by side.

Both networks get the same nnU-Net geometry (ResEnc M's stages, features, strides and
decoder; Rep3D swaps the encoder, as ``nnUNetPlannerRep3D`` does) at one patch and
batch size. One iteration = forward + cross entropy on the full-resolution output +
backward + AdamW step (``rep3d_nnunet.benchmark.timing.make_train_step``). Modes:
``eager``/``compiled`` (``torch.compile``, as stock ``nnUNetv2_train`` does on CUDA) x
``fp32``/``amp`` (fp16 autocast on CUDA as nnU-Net, bf16 on CPU). Each table row ends with
the network's ratio to ResEnc M in the same mode, measured in the same run. Multiply
seconds/iteration by 250 x 1000 for nnU-Net's full schedule.

    python scripts/bench_train_step.py --quick                          # CPU, small shapes
    python scripts/bench_train_step.py --device cuda --patch 128 128 128 --batch 2 \\
        --modes eager-fp32,eager-amp,compiled-amp --out docs/measurements/train_step_h200.txt
"""
from __future__ import annotations

import argparse
import datetime
import json
import platform
import sys
from typing import Dict, List

import torch

from rep3d_nnunet.benchmark.timing import (build_from_arch, device_sync, emit_report, make_train_step, measure,
                                           resenc_m_arch, step_parser)
from rep3d_nnunet.nnunet.architecture import Rep3DVariant, trained_architecture

MODES = ("eager-fp32", "eager-amp", "compiled-fp32", "compiled-amp")
NETWORKS = {"ResEnc M": None, "Rep3D (LRBM)": Rep3DVariant(mask="lrbm"),
            "Rep3D fixed prior": Rep3DVariant(mask="prior"), "Rep3D plain LK": Rep3DVariant(mask="none")}


def parse_modes(text: str) -> List[str]:
    modes = [m.strip() for m in text.split(",") if m.strip()]
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise SystemExit(f"--modes: unknown {bad or text!r}; choose from {', '.join(MODES)} (comma-separated)")
    return modes


def time_one(arch: dict, mode: str, args: argparse.Namespace, dev: torch.device) -> Dict:
    """Seconds/iteration (median) and peak memory of one network in one mode."""
    compiled, amp = mode.startswith("compiled"), mode.endswith("amp")
    net = build_from_arch(arch, 1, args.classes).to(dev)
    params = sum(q.numel() for q in net.parameters())
    model = torch.compile(net) if compiled else net
    opt = torch.optim.AdamW(net.parameters(), lr=1e-4)
    x = torch.randn(args.batch, 1, *args.patch, device=dev)
    target = torch.randint(0, args.classes, (args.batch, *args.patch), device=dev)
    amp_dtype = torch.float16 if dev.type == "cuda" else torch.bfloat16
    inner = make_train_step(model, opt, x, target, amp=False)

    def step() -> None:
        with torch.autocast(dev.type, dtype=amp_dtype, enabled=amp):
            inner()
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    # the first (warm-up) run of a compiled model includes its compilation: reported apart
    import time
    t0 = time.perf_counter()
    step()
    device_sync(dev)()
    first = time.perf_counter() - t0
    timing = measure(step, args.runs, warmup=1, sync=device_sync(dev))
    peak = torch.cuda.max_memory_allocated() / 2 ** 30 if dev.type == "cuda" else float("nan")
    return {"params_M": params / 1e6, "s_per_iter": timing["wall_s"], "first_s": first, "peak_GiB": peak}


def main(argv=None) -> None:
    p = step_parser(__doc__)
    p.add_argument("--classes", type=int, default=4)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--modes", default="eager-fp32,eager-amp", help=f"comma-separated, from {', '.join(MODES)}")
    p.add_argument("--networks", default="ResEnc M,Rep3D (LRBM),Rep3D plain LK",
                   help=f"comma-separated, from {', '.join(NETWORKS)}")
    p.add_argument("--quick", action="store_true", help="CPU-sized: patch 32^3, 4 stages, batch 1, 2 runs")
    p.add_argument("--out", help="also write the table to this file (with command, machine and date)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.quick:
        args.patch, args.stages, args.batch, args.runs = [32, 32, 32], 4, 1, 2
    modes = parse_modes(args.modes)
    names = [n.strip() for n in args.networks.split(",")]
    unknown = [n for n in names if n not in NETWORKS]
    if unknown or "ResEnc M" not in names:
        raise SystemExit(f"--networks: unknown {unknown}; choose from {list(NETWORKS)} (ResEnc M is required)")
    dev = torch.device(args.device)
    if dev.type == "cuda":
        torch.backends.cudnn.benchmark = True

    base = resenc_m_arch(args.stages)
    archs = {n: base if NETWORKS[n] is None else trained_architecture(base, args.patch, NETWORKS[n])
             for n in names}
    rows: List[Dict] = []
    for mode in modes:
        for name, arch in archs.items():
            r = time_one(arch, mode, args, dev)
            rows.append({"network": name, "mode": mode, **r})
            if dev.type == "cuda":
                torch.cuda.empty_cache()
            torch._dynamo.reset()
    ref = {r["mode"]: r["s_per_iter"] for r in rows if r["network"] == "ResEnc M"}
    for r in rows:
        r["ratio_to_resenc_m"] = r["s_per_iter"] / ref[r["mode"]]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    machine = torch.cuda.get_device_name() if dev.type == "cuda" else \
        f"CPU ({platform.processor() or platform.machine()}), {torch.get_num_threads()} threads"
    lines = [f"# {' '.join(['python', 'scripts/bench_train_step.py'] + (argv or sys.argv[1:]))}",
             f"# {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC, {machine}, torch {torch.__version__}",
             f"# patch {args.patch}, batch {args.batch}, {args.stages} stages, medians of {args.runs} iterations; "
             "'first s' = the first iteration (includes compilation in compiled modes)",
             f"{'network':<19}{'mode':<15}{'params M':>9}{'s/iter':>9}{'x ResEnc M':>11}{'h/1000 ep':>10}"
             f"{'peak GiB':>9}{'first s':>9}"]
    for r in rows:
        lines.append(f"{r['network']:<19}{r['mode']:<15}{r['params_M']:>9.1f}{r['s_per_iter']:>9.3f}"
                     f"{r['ratio_to_resenc_m']:>11.2f}{r['s_per_iter'] * 250 * 1000 / 3600:>10.1f}"
                     f"{r['peak_GiB']:>9.2f}{r['first_s']:>9.1f}")
    emit_report(lines, args.out)


if __name__ == "__main__":
    main()
