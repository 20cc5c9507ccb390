#!/usr/bin/env python
"""Micro-benchmark of Rep3D blocks: the LRBM training overhead and the deploy-form cost.

For each Rep3D stage shape (paper encoder at a 96^3 patch, batch 2):
  1. forward+backward of a Rep3D block (DWConv(K) -> BN -> GELU) with mask
     'none' / 'prior' / 'lrbm' -- ratios against 'none' are the cost of masking;
  2. forward of the deployed block (mask and BN folded) against a block that was
     plain from the start (same op, same shape) -- must be the same cost.
All variants of one shape are timed interleaved, in one run, so ratios are side by
side. Prints a table; --json for machines.

    python scripts/bench_blocks.py                 # paper shapes, k=21
    python scripts/bench_blocks.py --quick         # small shapes, a few seconds
"""
from __future__ import annotations

import argparse
import copy
import json
from typing import Callable, Dict, List

import torch

from rep3d_nnunet import Rep3DBlock, reparameterize_model
from rep3d_nnunet.benchmark.timing import measure

PAPER_STAGES = [(48, 48), (96, 24), (192, 12), (384, 6)]   # (channels, spatial size) at a 96^3 patch
QUICK_STAGES = [(8, 16), (16, 8)]


def timed(fn: Callable[[], None], runs: int) -> Dict[str, float]:
    """Median wall and process-CPU seconds of ``fn`` (``rep3d_nnunet.benchmark.timing.measure``)."""
    m = measure(fn, runs)
    return {"wall_s": m["wall_s"], "cpu_s": m["cpu_s"]}


def bench_stage(channels: int, size: int, kernel: int, batch: int, runs: int) -> List[dict]:
    x = torch.randn(batch, channels, size, size, size)
    rows = []
    blocks = {mask: Rep3DBlock(channels, kernel, mask).train() for mask in ("none", "prior", "lrbm")}

    def train_step(block: torch.nn.Module) -> Callable[[], None]:
        def step() -> None:
            block.zero_grad(set_to_none=True)
            block(x).sum().backward()
        return step

    results = {mask: timed(train_step(b), runs) for mask, b in blocks.items()}
    for mask, r in results.items():
        rows.append({"what": f"fwd+bwd {mask}", "C": channels, "S": size, "k": kernel, **r,
                     "ratio": r["wall_s"] / results["none"]["wall_s"], "vs": "none"})

    deployed = reparameterize_model(copy.deepcopy(blocks["lrbm"]).eval())
    plain = Rep3DBlock(channels, kernel, "none", deploy=True).eval()
    with torch.no_grad():
        fwd = {"deployed lrbm": timed(lambda: deployed(x), runs), "plain DWConv": timed(lambda: plain(x), runs)}
    for name, r in fwd.items():
        rows.append({"what": f"fwd {name}", "C": channels, "S": size, "k": kernel, **r,
                     "ratio": r["wall_s"] / fwd["plain DWConv"]["wall_s"], "vs": "plain DWConv"})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", type=int, default=21)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--quick", action="store_true", help="small shapes and k=7, a few seconds")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    stages, kernel = (QUICK_STAGES, 7) if args.quick else (PAPER_STAGES, args.kernel)
    rows = [r for c, s in stages for r in bench_stage(c, s, kernel, args.batch, args.runs)]
    if args.json:
        print(json.dumps(rows, indent=1))
        return
    print(f"torch {torch.__version__}, {args.threads} threads, batch {args.batch}, medians of {args.runs} runs")
    print(f"{'what':<22}{'C':>5}{'S^3':>5}{'k':>4}{'wall ms':>11}{'cpu ms':>11}  ratio")
    for r in rows:
        print(f"{r['what']:<22}{r['C']:>5}{r['S']:>5}{r['k']:>4}{1e3 * r['wall_s']:>11.1f}{1e3 * r['cpu_s']:>11.1f}"
              f"  {r['ratio']:.2f}x vs {r['vs']}")


if __name__ == "__main__":
    main()
