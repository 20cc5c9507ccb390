"""Benchmark ``dwconv3d`` against plain ``F.conv3d`` at the Rep3D stage shapes.

    python scripts/bench_dwconv.py            # full table + whole-encoder step (about 15 min on 2 cores)
    python scripts/bench_dwconv.py --quick    # small subset, a couple of minutes
    python scripts/bench_dwconv.py --json     # machine-readable
    python scripts/bench_dwconv.py --crossover  # FFT vs direct timings behind the dispatch rule
    python scripts/bench_dwconv.py --device cuda  # CUDA candidates (torch, channels_last_3d, direct, fft)

Ours and the baseline (``REP3D_DWCONV=torch``: F.conv3d with PyTorch's own
backward) run side by side in the same process, so their ratio is measured
under the same load. CPU: median thread CPU time (``time.thread_time``, steady
on a shared machine) and median wall time; CUDA: median wall time between
synchronisations. GFLOP/s counts the direct convolution's multiply-adds
(2 * B*C*S^3*k^3 forward, 3x that forward+backward), so FFT rates can exceed peak.
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
from typing import Callable, Dict, List, Optional

import torch

from rep3d_nnunet.benchmark import timing
from rep3d_nnunet.ops import dwconv3d
from rep3d_nnunet.ops.direct_dwconv import direct_dwconv3d
from rep3d_nnunet.ops.dispatch import choose_path, crop_slices, dwconv_path
from rep3d_nnunet.ops.fft_dwconv import fft_dwconv3d

STAGES = [(48, 48), (96, 24), (192, 12), (384, 6)]  # (channels, edge) at B=2 for a 96^3 patch
KERNELS = [7, 13, 21]
PEAK_GFLOPS_PER_CORE = 245.0  # this CPU's fp32 FMA peak (PERF_NOTES.md)


def measure(fn: Callable[[], None], runs: int, warmup: int, device: torch.device,
            budget_s: float = float("inf")) -> Dict[str, float]:
    """Median thread-CPU and wall milliseconds of ``fn`` over ``runs`` runs (stop early past budget_s)."""
    m = timing.measure(fn, runs, warmup, timing.device_sync(device), budget_s)
    return {"cpu_ms": m["thread_cpu_s"] * 1e3, "wall_ms": m["wall_s"] * 1e3, "runs": m["runs"]}


def _step(conv: Callable, x: torch.Tensor, w: torch.Tensor, backward: bool) -> Callable[[], None]:
    def run() -> None:
        x.grad = w.grad = None
        y = conv(x, w)
        if backward:
            y.backward(torch.ones_like(y))
    return run


def bench_op(c: int, s: int, k: int, args, device: torch.device) -> Dict:
    """One stage shape and kernel: ours (auto) vs the torch path, fwd and fwd+bwd."""
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, c, s, s, s, generator=g).to(device).requires_grad_()
    w = (torch.randn(c, 1, k, k, k, generator=g) * 0.01).to(device).requires_grad_()
    kc = [sl.stop - sl.start for sl in crop_slices((s,) * 3, (k,) * 3)]
    row = {"C": c, "S": s, "k": k, "path": choose_path((s,) * 3, kc, device), "cropped_k": kc[0]}
    flops = 2.0 * 2 * c * s ** 3 * k ** 3
    for name, env, runs, warm, budget in (("ours", None, args.runs, 1, float("inf")),
                                          ("torch", "torch", args.baseline_runs, 0, args.baseline_budget)):
        with dwconv_path(env), torch.no_grad():
            # The baseline's forward is its cheap part: it doubles as oneDNN warm-up.
            row[f"{name}_fwd"] = measure(lambda: dwconv3d(x, w), max(runs, 1 if name == "torch" else runs),
                                         1, device, budget)
        with dwconv_path(env):
            row[f"{name}_fwdbwd"] = measure(_step(dwconv3d, x, w, True), runs, warm, device, budget)
    for ph, mult in (("fwd", 1), ("fwdbwd", 3)):
        row[f"ratio_{ph}"] = row[f"torch_{ph}"]["wall_ms"] / row[f"ours_{ph}"]["wall_ms"]
        row[f"ratio_{ph}_cpu"] = row[f"torch_{ph}"]["cpu_ms"] / row[f"ours_{ph}"]["cpu_ms"]
        # thread CPU time: the wall time of an unpreempted run, robust on a shared machine
        t = "wall_ms" if device.type == "cuda" else "cpu_ms"
        row[f"ours_{ph}_gflops"] = mult * flops / row[f"ours_{ph}"][t] / 1e6
        row[f"torch_{ph}_gflops"] = mult * flops / row[f"torch_{ph}"][t] / 1e6
    return row


def bench_encoder(edge: int, args, device: torch.device, amp: bool = False) -> Dict:
    """One training step (forward, loss, backward, SGD) of the paper encoder, ours vs torch path."""
    from rep3d_nnunet.encoder import Rep3DEncoder

    torch.manual_seed(0)
    enc = Rep3DEncoder(in_channels=1).to(device)
    opt = torch.optim.SGD(enc.parameters(), lr=1e-4)
    x = torch.randn(2, 1, edge, edge, edge, device=device)

    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            outs = enc(x)
        loss = sum(o.float().pow(2).mean() for o in outs)
        loss.backward()
        opt.step()

    row: Dict = {"input": [2, 1, edge, edge, edge], "autocast_bf16": amp}
    with dwconv_path(None):
        row["ours"] = measure(step, args.encoder_runs, 1, device)
    with dwconv_path("torch"):
        row["torch"] = measure(step, args.baseline_runs, 0, device, args.baseline_budget)
    row["ratio"] = row["torch"]["wall_ms"] / row["ours"]["wall_ms"]
    row["ratio_cpu"] = row["torch"]["cpu_ms"] / row["ours"]["cpu_ms"]
    return row


def bench_crossover(args, device: torch.device) -> List[Dict]:
    """FFT vs direct, forward (no grad) and forward+backward, at each stage shape and k (fits the rule)."""
    rows = []
    for c, s in STAGES:
        for k in (3, 5, 7, 9, 11, 13, 21):
            kc = [sl.stop - sl.start for sl in crop_slices((s,) * 3, (k,) * 3)]
            if (s == 48 and k > 11) or (s == 24 and k > 13) or kc[0] != k:
                continue  # direct is far too slow there / cropped kernels repeat a smaller k
            x = torch.randn(2, c, s, s, s, device=device, requires_grad=True)
            w = torch.randn(c, 1, k, k, k, device=device, requires_grad=True)
            r = {"C": c, "S": s, "k": k, "auto": choose_path((s,) * 3, (k,) * 3, device)}
            for name, fn in (("fft", fft_dwconv3d), ("direct", direct_dwconv3d)):
                with torch.no_grad():
                    r[name + "_fwd"] = measure(lambda: fn(x, w), args.runs, 1, device)["cpu_ms"]
                r[name] = measure(_step(fn, x, w, True), args.runs, 1, device)["cpu_ms"]
            rows.append(r)
            print(f"  C={c:3d} S={s:2d} k={k:2d}  fwd+bwd: fft {r['fft']:8.1f} direct {r['direct']:8.1f} ms;"
                  f"  fwd: fft {r['fft_fwd']:7.1f} direct {r['direct_fwd']:7.1f} ms  auto={r['auto']}",
                  file=sys.stderr, flush=True)
    return rows


def bench_cuda_candidates(args, device: torch.device) -> List[Dict]:
    """CUDA: F.conv3d contiguous / channels_last_3d vs our direct and FFT paths, fp32 and bf16 autocast."""
    import torch.nn.functional as F

    def torch_conv(cl: bool):
        def conv(x, w):
            xin = x.contiguous(memory_format=torch.channels_last_3d) if cl else x
            return F.conv3d(xin, w, padding=w.shape[-1] // 2, groups=w.shape[0])
        return conv

    def direct_cl3d(x, w):  # our direct path routed to cuDNN, computed in fp32 as dwconv3d does
        with torch.autocast("cuda", enabled=False):
            return direct_dwconv3d(x.float(), w.float(), channels_last=True)

    cands = {"torch": torch_conv(False), "torch_cl3d": torch_conv(True),
             "direct": lambda x, w: dwconv3d(x, w, path="direct"), "direct_cl3d": direct_cl3d,
             "fft": lambda x, w: dwconv3d(x, w, path="fft")}
    rows = []
    for dtype in (torch.float32, torch.bfloat16):
        for c, s in STAGES:
            for k in KERNELS:
                x = torch.randn(2, c, s, s, s, device=device, requires_grad=True)
                w = (0.01 * torch.randn(c, 1, k, k, k, device=device)).requires_grad_()
                r = {"dtype": str(dtype).split(".")[-1], "C": c, "S": s, "k": k}
                for name, fn in cands.items():
                    with torch.autocast("cuda", dtype=torch.bfloat16, enabled=dtype == torch.bfloat16):
                        try:
                            with torch.no_grad():
                                r[name + "_fwd"] = measure(lambda: fn(x, w), args.runs, 1, device, 5.0)["wall_ms"]
                            r[name] = measure(_step(fn, x, w, True), args.runs, 1, device, 5.0)["wall_ms"]
                        except RuntimeError as e:  # e.g. out of memory
                            r[name] = float("nan")
                            print(f"  {name}: {e}", file=sys.stderr)
                rows.append(r)
                print("  " + "  ".join(f"{k_}={v:.2f}" if isinstance(v, float) else f"{k_}={v}"
                                       for k_, v in r.items()), file=sys.stderr, flush=True)
    return rows


def machine(device: torch.device) -> Dict:
    info = {"torch": torch.__version__, "threads": torch.get_num_threads(), "cpu": platform.processor() or
            platform.machine(), "device": str(device)}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def print_table(res: Dict) -> None:
    m = res["machine"]
    peak = PEAK_GFLOPS_PER_CORE * m["threads"]
    print(f"torch {m['torch']}, {m['threads']} threads, {m['device']} {m.get('gpu', '')}; "
          f"ms = median wall (thread CPU in brackets); peak {peak:.0f} GFLOP/s; speed-ups from wall "
          f"[thread CPU]")
    print("| stage C x S^3 | k | path | ours fwd | torch fwd | ours fwd+bwd | torch fwd+bwd | "
          "speed-up fwd / fwd+bwd | ours GFLOP/s fwd+bwd (% peak) |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in res.get("ops", []):
        crop = f" (k{r['cropped_k']})" if r["cropped_k"] != r["k"] else ""
        f = lambda d: f"{d['wall_ms']:.1f} ({d['cpu_ms']:.1f})" + (f" n={d['runs']}" if d["runs"] < 3 else "")
        print(f"| {r['C']} x {r['S']}^3 | {r['k']} | {r['path']}{crop} | {f(r['ours_fwd'])} | {f(r['torch_fwd'])} | "
              f"{f(r['ours_fwdbwd'])} | {f(r['torch_fwdbwd'])} | {r['ratio_fwd']:.1f}x [{r['ratio_fwd_cpu']:.1f}x] / "
              f"{r['ratio_fwdbwd']:.1f}x [{r['ratio_fwdbwd_cpu']:.1f}x] | "
              f"{r['ours_fwdbwd_gflops']:.0f} ({100 * r['ours_fwdbwd_gflops'] / peak:.0f}%) |")
    e = res.get("encoder")
    if e:
        print(f"\nWhole-encoder training step, input {e['input']}: ours {e['ours']['wall_ms']:.0f} ms "
              f"({e['ours']['cpu_ms']:.0f} CPU), torch path {e['torch']['wall_ms']:.0f} ms "
              f"({e['torch']['cpu_ms']:.0f} CPU, n={e['torch']['runs']}): {e['ratio']:.1f}x "
              f"({e['ratio_cpu']:.1f}x thread CPU)")


def main(argv: Optional[List[str]] = None) -> Dict:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true", help="stages 3-4 all k, stage 1-2 k=7, encoder on 32^3")
    p.add_argument("--json", action="store_true", help="print JSON instead of the table")
    p.add_argument("--runs", type=int, default=7, help="timed runs of ours (median), after 1 warm-up")
    p.add_argument("--baseline-runs", type=int, default=3, help="timed runs of the F.conv3d baseline")
    p.add_argument("--baseline-budget", type=float, default=30.0,
                   help="stop the baseline's runs once this many seconds are spent (at least one run)")
    p.add_argument("--encoder-runs", type=int, default=3)
    p.add_argument("--encoder-edge", type=int, default=96, help="encoder input edge (96: stage 1 at 48^3)")
    p.add_argument("--no-encoder", action="store_true")
    p.add_argument("--no-ops", action="store_true", help="only the whole-encoder step")
    p.add_argument("--stages", type=int, nargs="+", default=[1, 2, 3, 4], help="which stage shapes (1-4)")
    p.add_argument("--kernels", type=int, nargs="+", default=KERNELS)
    p.add_argument("--crossover", action="store_true", help="only the FFT-vs-direct crossover sweep")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: torch's). With 1, thread CPU time is the whole op's CPU "
                        "time and stays meaningful on an oversubscribed machine")
    args = p.parse_args(argv)
    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    res: Dict = {"machine": machine(device)}

    if args.crossover:
        res["crossover"] = bench_crossover(args, device)
    elif device.type == "cuda":
        res["cuda_candidates"] = bench_cuda_candidates(args, device)
        if not args.no_encoder:
            res["encoder"] = bench_encoder(args.encoder_edge, args, device)
            res["encoder_bf16"] = bench_encoder(args.encoder_edge, args, device, amp=True)
    else:
        shapes = [(c, s, k) for i, (c, s) in enumerate(STAGES, 1) if i in args.stages and not args.no_ops
                  for k in args.kernels]
        edge = args.encoder_edge
        if args.quick:
            shapes = [(c, s, k) for c, s, k in shapes if s <= 12 or k == 7]
            args.runs, edge = min(args.runs, 5), 32
        res["ops"] = []
        for c, s, k in shapes:
            res["ops"].append(bench_op(c, s, k, args, device))
            r = res["ops"][-1]
            print(f"  C={c} S={s} k={k}: fwd+bwd ours {r['ours_fwdbwd']['wall_ms']:.1f} ms, torch "
                  f"{r['torch_fwdbwd']['wall_ms']:.1f} ms ({r['ratio_fwdbwd']:.1f}x)", file=sys.stderr, flush=True)
        if not args.no_encoder:
            res["encoder"] = bench_encoder(edge, args, device)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print_table(res)
    return res


if __name__ == "__main__":
    main()
