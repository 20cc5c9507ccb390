"""The one timer of the benchmark scripts (``scripts/bench_*.py``) and the training step they time.

``measure`` runs a callable a few times and reports medians of wall time, process CPU
time and thread CPU time (on a shared CPU machine the thread CPU time is the steadier
number; wall time is what a GPU user sees). ``sync`` makes asynchronous devices finish
before each clock is read.
"""
from __future__ import annotations

import statistics
import time
from typing import Callable, Dict, Optional

import torch
from torch import nn


def device_sync(device: torch.device) -> Callable[[], None]:
    """A function that waits for ``device`` to finish its queued work (a no-op on the CPU)."""
    if device.type == "cuda":
        return lambda: torch.cuda.synchronize(device)
    return lambda: None


def measure(fn: Callable[[], None], runs: int, warmup: int = 1, sync: Optional[Callable[[], None]] = None,
            budget_s: float = float("inf")) -> Dict[str, float]:
    """Medians over ``runs`` runs of ``fn`` after ``warmup`` runs (stopping early once ``budget_s`` is spent).

    Returns ``{"wall_s", "cpu_s" (process CPU), "thread_cpu_s", "runs"}``, times in seconds.
    """
    sync = sync or (lambda: None)
    for _ in range(warmup):
        fn()
    sync()
    wall, cpu, thread = [], [], []
    start = time.perf_counter()
    for _ in range(max(1, runs)):
        w0, c0, t0 = time.perf_counter(), time.process_time(), time.thread_time()
        fn()
        sync()
        thread.append(time.thread_time() - t0)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        if time.perf_counter() - start > budget_s:
            break
    return {"wall_s": statistics.median(wall), "cpu_s": statistics.median(cpu),
            "thread_cpu_s": statistics.median(thread), "runs": len(wall)}


def make_train_step(net: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, target: torch.Tensor,
                    amp: bool) -> Callable[[], None]:
    """One training iteration: forward (deep-supervision heads ride along), cross entropy on the
    full-resolution output, backward, optimiser step; autocast when ``amp``."""
    def step() -> None:
        opt.zero_grad(set_to_none=True)
        with torch.autocast(x.device.type, enabled=amp):
            outs = net(x)
            out = outs[0] if isinstance(outs, (list, tuple)) else outs
            loss = nn.functional.cross_entropy(out.float(), target)
        loss.backward()
        opt.step()
    return step


def resenc_m_arch(n_stages: int) -> dict:
    """nnU-Net's ResEnc M architecture block for an isotropic 3D patch (the planner's output shape).

    The geometry every step benchmark shares: Rep3D's twin of it comes from
    ``rep3d_nnunet.nnunet.architecture.rep3d_architecture`` (what the planner does).
    """
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


def build_from_arch(arch: dict, input_channels: int, num_classes: int, deep_supervision: bool = True) -> nn.Module:
    """The network an architecture block names, built and initialised as ``get_network_from_plans`` does."""
    import pydoc

    cls = pydoc.locate(arch["network_class_name"])
    net = cls(input_channels=input_channels, num_classes=num_classes, deep_supervision=deep_supervision,
              **arch["arch_kwargs"])
    if hasattr(net, "initialize"):
        net.apply(net.initialize)
    return net


def emit_report(lines: list, out: Optional[str] = None) -> str:
    """Print a measurement report (a list of lines) and, with ``out``, also write it to that file."""
    text = "\n".join(lines) + "\n"
    print(text, end="")
    if out:
        with open(out, "w") as f:
            f.write(text)
    return text


def step_parser(description: str):
    """An argparse parser with the step scripts' shared geometry options: --device, --patch, --batch, --stages."""
    import argparse

    p = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--patch", type=int, nargs=3, default=[128, 128, 128])
    p.add_argument("--batch", type=int, default=2)
    p.add_argument("--stages", type=int, default=6, help="U-Net stages of ResEnc M's geometry")
    return p
