#!/usr/bin/env python
"""Peak memory of one real training step, Rep3D (every variant) vs ResEnc M, beside the planner's estimate.

What a planner preset promises is "equal memory at equal target": the Rep3D planners search with ResEnc's
reference values, so (our estimate / ResEnc M's estimate) must track (our measured peak / ResEnc M's
measured peak) at the same patch. This script measures both ratios and writes the table in docs/memory.md.

Per patch size, the geometry is ResEnc M's own plan for that patch (``nnUNetPlannerResEncM`` on a
fingerprint whose median shape is the patch); Rep3D is its twin (``rep3d_architecture``, each trainer
variant). One step = forward, nnU-Net's deep-supervision loss (Dice + CE, nnU-Net's weights), backward,
optimiser step (ResEnc: nnU-Net's SGD; Rep3D: AdamW, the paper's recipe); the peak of the *second* step
is reported (optimiser state then exists, as in every later step).

Memory: on CPU, ``LiveTensorMemory`` (a TorchDispatchMode that counts the bytes of every live tensor
storage; no allocator cache, no fragmentation); on CUDA, ``torch.cuda.max_memory_allocated``. CPU runs
divide every stage's channels by ``--width-divisor`` (default 4) to stay cheap: activations and the
estimate are linear in the channels, so the ratios keep their meaning; parameters shrink 16x (they are
a small part of the peak at nnU-Net's scale too).

    python scripts/measure_memory.py --patches 32 48 64 80 --out docs/memory.md            # CPU
    python scripts/measure_memory.py --device cuda --width-divisor 1 --patches 64 96 128 160 --out x.md
"""
from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import json
import os
import platform
import shlex
import sys
import weakref
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

VARIANTS = ("rep3d", "rep3d_fixed_prior", "rep3d_plain_lk", "rep3d_csla", "uxnet", "uxnet_lrbm")


class LiveTensorMemory(TorchDispatchMode):
    """Bytes of live tensor storage, current and peak, seen through every op's outputs (CPU or CUDA).

    Each storage is counted once (views share it) from the op that returns it until it is freed
    (a ``weakref.finalize`` on the storage). Tensors made before entering are counted only when
    passed to ``track`` (the model's parameters, for instance).
    """

    def __init__(self) -> None:
        super().__init__()
        self.live: Dict[int, int] = {}
        self.current = 0
        self.peak = 0

    def track(self, tensor: torch.Tensor) -> None:
        if not isinstance(tensor, torch.Tensor) or tensor.device.type == "meta":
            return
        storage = tensor.untyped_storage()
        key = storage._cdata
        if key in self.live:
            return
        self.live[key] = storage.nbytes()
        self.current += self.live[key]
        weakref.finalize(storage, self._free, key)
        self.peak = max(self.peak, self.current)

    def _free(self, key: int) -> None:
        self.current -= self.live.pop(key, 0)

    def reset_peak(self) -> None:
        self.peak = self.current

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            self.track(t)
        return out


# ---------------------------------------------------------------- networks at one patch

def resenc_m_architecture(patch: Sequence[int], n_labels: int = 3) -> Tuple[dict, List[int], int]:
    """ResEnc M's plan for a dataset whose median shape is ``patch`` (1 mm isotropic): (architecture, patch, batch)."""
    import warnings

    from rep3d_nnunet.nnunet.planner import plan_3d_fullres

    fingerprint = {"spacings": [[1.0, 1.0, 1.0]] * 10, "shapes_after_crop": [list(patch)] * 10,
                   "median_relative_size_after_cropping": 1.0}
    dataset_json = {"channel_names": {"0": "MRI"}, "labels": {"background": 0, **{f"c{i}": i for i in
                                                                                   range(1, n_labels)}},
                    "numTraining": 10, "file_ending": ".nii.gz"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        plan = plan_3d_fullres("nnUNetPlannerResEncM", fingerprint, dataset_json)
    return plan["architecture"], [int(p) for p in plan["patch_size"]], int(plan["batch_size"])


def narrowed(arch: dict, divisor: int) -> dict:
    """The architecture with every stage's channels divided by ``divisor`` (at least 4)."""
    out = json.loads(json.dumps(arch, default=str))
    out["arch_kwargs"]["features_per_stage"] = [max(4, int(f) // divisor) for f in arch["arch_kwargs"]
                                                ["features_per_stage"]]
    return out


def method_architecture(method: str, resenc_arch: dict, patch: Sequence[int]) -> dict:
    """ResEnc M's architecture, or its Rep3D twin built as ``method``'s trainer variant."""
    if method == "resenc_m":
        return resenc_arch
    from rep3d_nnunet.benchmark.methods import METHODS
    from rep3d_nnunet.nnunet.architecture import apply_variant, rep3d_architecture
    from rep3d_nnunet.nnunet.planner import nnUNetPlannerRep3DM

    arch = rep3d_architecture(resenc_arch, patch, nnUNetPlannerRep3DM.variant)
    arch["arch_kwargs"] = apply_variant(arch["arch_kwargs"], trainer_variant(METHODS[method].trainer))
    return arch


def trainer_variant(trainer: str):
    """The ``variant`` class attribute of a Rep3D trainer of ``rep3d_nnunet.nnunet.trainers``."""
    from rep3d_nnunet.nnunet import trainers

    variant = getattr(getattr(trainers, trainer, None), "variant", None)
    if variant is None:
        raise SystemExit(f"{trainer} is not a Rep3D trainer of rep3d_nnunet.nnunet.trainers")
    return variant


def build(arch: dict, n_in: int, n_out: int, device: str) -> torch.nn.Module:
    from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

    req = arch.get("_kw_requires_import", ("conv_op", "norm_op", "dropout_op", "nonlin"))
    with torch.device(device):
        return get_network_from_plans(arch["network_class_name"], arch["arch_kwargs"], req, n_in, n_out,
                                      allow_init=True, deep_supervision=True)


def estimate(arch: dict, patch: Sequence[int], n_in: int = 1, n_out: int = 3) -> float:
    """nnU-Net's planner estimate (feature-map elements per sample) of the network ``arch`` at ``patch``."""
    return float(build(arch, n_in, n_out, "meta").compute_conv_feature_map_size(list(patch)))


# ---------------------------------------------------------------- one training step

def _loss(n_outputs: int):
    from nnunetv2.training.loss.compound_losses import DC_and_CE_loss
    from nnunetv2.training.loss.deep_supervision import DeepSupervisionWrapper
    from nnunetv2.training.loss.dice import MemoryEfficientSoftDiceLoss

    loss = DC_and_CE_loss({"batch_dice": False, "smooth": 1e-5, "do_bg": False, "ddp": False}, {}, weight_ce=1,
                          weight_dice=1, ignore_label=None, dice_class=MemoryEfficientSoftDiceLoss)
    weights = np.array([1 / (2 ** i) for i in range(n_outputs)])  # nnU-Net's: last output unused, normalised
    weights[-1] = 0
    return DeepSupervisionWrapper(loss, weights / weights.sum())


def _optimizer(method: str, net: torch.nn.Module) -> torch.optim.Optimizer:
    if method == "resenc_m":  # nnU-Net's recipe
        return torch.optim.SGD(net.parameters(), 1e-2, momentum=0.99, nesterov=True, weight_decay=3e-5)
    return torch.optim.AdamW(net.parameters(), 1e-4, weight_decay=1e-2)


def step_peak_bytes(method: str, arch: dict, patch: Sequence[int], batch: int, device: str, steps: int = 2,
                    n_in: int = 1, n_out: int = 3, seed: int = 0) -> Dict[str, float]:
    """Peak bytes of the last of ``steps`` training steps; also the static part (parameters, grads, state)."""
    torch.manual_seed(seed)
    net = build(arch, n_in, n_out, device).train()
    optimizer = _optimizer(method, net)
    tracker = LiveTensorMemory() if device == "cpu" else None
    for p in net.parameters():
        if tracker:
            tracker.track(p)
    loss_fn = None
    result: Dict[str, float] = {}
    for i in range(steps):
        if device == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            before = torch.cuda.memory_allocated()
        with tracker if tracker else contextlib.nullcontext():
            if tracker:
                before = tracker.current
                tracker.reset_peak()
            x = torch.randn(batch, n_in, *patch, device=device)
            seg = torch.randint(0, n_out, (batch, 1, *patch), device=device)
            outputs = net(x)
            if loss_fn is None:
                loss_fn = _loss(len(outputs))
            targets = [seg if o.shape[2:] == seg.shape[2:] else
                       torch.nn.functional.interpolate(seg.float(), size=o.shape[2:], mode="nearest").long()
                       for o in outputs]
            loss = loss_fn(outputs, targets)
            del outputs, targets, x, seg
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            del loss
            gc.collect()
        if device == "cuda":
            torch.cuda.synchronize()
            peak, static = torch.cuda.max_memory_allocated(), before
        else:
            peak, static = tracker.peak, before
        result = {"peak_bytes": float(peak), "static_bytes": float(static)}
    return result


# ---------------------------------------------------------------- table

def measure(patches: Sequence[int], methods: Sequence[str], device: str, divisor: int, batch: int,
            log=print) -> List[dict]:
    rows = []
    for p in patches:
        resenc_arch, patch, _ = resenc_m_architecture([p, p, p])
        resenc_arch = narrowed(resenc_arch, divisor)
        ref: Optional[dict] = None
        for method in ("resenc_m", *methods):
            arch = method_architecture(method, resenc_arch, patch)
            est = estimate(arch, patch)
            m = step_peak_bytes(method, arch, patch, batch, device)
            row = {"patch": patch, "method": method, "estimate": est, **m,
                   "stages": arch["arch_kwargs"]["n_stages"],
                   "features": arch["arch_kwargs"]["features_per_stage"]}
            if method == "resenc_m":
                ref = row
            row["estimate_ratio"] = est / ref["estimate"]
            row["measured_ratio"] = m["peak_bytes"] / ref["peak_bytes"]
            row["agreement"] = row["estimate_ratio"] / row["measured_ratio"]
            rows.append(row)
            log(f"patch {'x'.join(map(str, patch))} {method:18s} est {est / 1e6:9.2f} M  peak "
                f"{m['peak_bytes'] / 2 ** 20:9.1f} MiB  est ratio {row['estimate_ratio']:.3f}  measured ratio "
                f"{row['measured_ratio']:.3f}  agreement {row['agreement']:.3f}")
    return rows


def reestimate(rows: List[dict], divisor: int) -> List[dict]:
    """Rows of an earlier run with the estimates (and ratios) recomputed by the current code."""
    out, ref = [], None
    for row in rows:
        resenc_arch, patch, _ = resenc_m_architecture(row["patch"])
        arch = method_architecture(row["method"], narrowed(resenc_arch, divisor), patch)
        row = {**row, "estimate": estimate(arch, patch)}
        if row["method"] == "resenc_m":
            ref = row
        row["estimate_ratio"] = row["estimate"] / ref["estimate"]
        row["measured_ratio"] = row["peak_bytes"] / ref["peak_bytes"]
        row["agreement"] = row["estimate_ratio"] / row["measured_ratio"]
        out.append(row)
    return out


def markdown(rows: List[dict], args: argparse.Namespace, command: str) -> str:
    machine = f"{platform.machine()} {platform.processor() or ''}".strip()
    if args.device == "cuda":
        machine = torch.cuda.get_device_name()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    worst = max(abs(r["agreement"] - 1) for r in rows if r["method"] != "resenc_m")
    lines = [
        "<!-- generated by scripts/measure_memory.py; do not edit by hand -->",
        f"Command: `{command}`  ",
        f"Machine: {machine}, {os.cpu_count()} CPUs, load average {load:.1f}; torch {torch.__version__}; "
        f"device {args.device}; date {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M} UTC.  ",
        f"Channels divided by {args.width_divisor}; batch {args.batch}; peak of the 2nd training step.  ",
        *([f"Measured peaks read from `{args.from_json}` (an earlier measuring run, see the text above); "
           "estimates and ratios recomputed by this run.  "] if args.from_json else []),
        f"Largest |estimate ratio / measured ratio - 1| over the Rep3D rows: **{worst:.1%}** (target: within 15%).",
        "",
        "| patch | method | stages | estimate (M elements / sample) | measured peak (MiB) | static (MiB) | "
        "estimate / ResEnc M | measured / ResEnc M | agreement |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        lines.append(f"| {'×'.join(map(str, r['patch']))} | {r['method']} | {r['stages']} | "
                     f"{r['estimate'] / 1e6:.2f} | {r['peak_bytes'] / 2 ** 20:.1f} | "
                     f"{r['static_bytes'] / 2 ** 20:.1f} | {r['estimate_ratio']:.3f} | {r['measured_ratio']:.3f} | "
                     f"{r['agreement']:.3f} |")
    return "\n".join(lines) + "\n"


def preset_table(hippocampus: Optional[str]) -> str:
    """Patch and batch of every preset (ResEnc's and ours) on Hippocampus and on the CT-like fingerprint."""
    import warnings

    from rep3d_nnunet.nnunet.planner import PRESETS, ct_like_fingerprint, plan_3d_fullres

    datasets = {"CT-like 512×512×300 @ 0.8×0.8×1.5 mm (synthetic fingerprint, 100 cases)": ct_like_fingerprint()}
    if hippocampus:
        pre, raw = hippocampus.split(",")
        with open(os.path.join(pre, "dataset_fingerprint.json")) as f, \
                open(os.path.join(raw, "dataset.json")) as g:
            datasets = {"Hippocampus (Dataset004, 201 cases)": (json.load(f), json.load(g)), **datasets}
    lines = ["| dataset | preset | ResEnc patch | ResEnc batch | Rep3D patch | Rep3D batch | "
             "Rep3D / ResEnc voxels per step |", "|---|---|---|---|---|---|---|"]
    for name, (fingerprint, dataset_json) in datasets.items():
        for budget, (ours, _, theirs, _) in PRESETS.items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                a, b = (plan_3d_fullres(c, fingerprint, dataset_json) for c in (theirs, ours))
            va, vb = (int(np.prod(p["patch_size"])) * int(p["batch_size"]) for p in (a, b))
            lines.append(f"| {name} | {budget} | {'×'.join(str(int(v)) for v in a['patch_size'])} | "
                         f"{a['batch_size']} | {'×'.join(str(int(v)) for v in b['patch_size'])} | {b['batch_size']} | "
                         f"{vb / va:.2f} |")
    return "\n".join(lines) + "\n"


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--patches", nargs="+", type=int, default=[32, 48, 64, 80],
                        help="isotropic patch edge lengths (ResEnc M's geometry for each)")
    parser.add_argument("--methods", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda"))
    parser.add_argument("--width-divisor", type=int, default=4, help="divide every stage's channels (CPU cost)")
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--out", help="write the Markdown table to this file (between the generated markers)")
    parser.add_argument("--json", help="also write the rows as JSON")
    parser.add_argument("--from-json", metavar="ROWS.json",
                        help="take the measured peaks from an earlier --json and recompute only the estimates "
                             "(the machine line then describes this run, the rows the earlier one)")
    parser.add_argument("--presets", action="store_true",
                        help="instead: the presets' patch and batch (ResEnc's and ours), written between the "
                             "'presets' markers of --out")
    parser.add_argument("--hippocampus", metavar="PREPROCESSED_DIR,RAW_DIR",
                        help="with --presets: Dataset004's preprocessed folder (fingerprint) and raw folder")
    args = parser.parse_args(argv)
    command = shlex.join(["python", "scripts/measure_memory.py", *(sys.argv[1:] if argv is None else argv)])
    if args.presets:
        table = (f"<!-- generated by scripts/measure_memory.py --presets -->\nCommand: `{command}`; "
                 f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d} (planning only, no data read).\n\n"
                 + preset_table(args.hippocampus))
        if args.out:
            write_between_markers(args.out, table, PRESETS_BEGIN, PRESETS_END)
        print(table)
        return 0
    if args.from_json:  # re-estimate measured rows (after a change of the estimate), measure nothing
        with open(args.from_json) as f:
            rows = reestimate(json.load(f), args.width_divisor)
    else:
        rows = measure(args.patches, args.methods, args.device, args.width_divisor, args.batch)
    table = markdown(rows, args, command)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(rows, f, indent=1)
    if args.out:
        write_between_markers(args.out, table)
    print(table)
    return 0


BEGIN, END = "<!-- measure_memory: begin -->", "<!-- measure_memory: end -->"
PRESETS_BEGIN, PRESETS_END = "<!-- measure_memory presets: begin -->", "<!-- measure_memory presets: end -->"


def write_between_markers(path: str, table: str, begin: str = BEGIN, end: str = END) -> None:
    """Put ``table`` between the generated-table markers of ``path`` (a new file holds just the table)."""
    text = open(path).read() if os.path.exists(path) else ""
    block = f"{begin}\n{table}{end}"
    if begin in text and end in text:
        text = text[:text.index(begin)] + block + text[text.index(end) + len(end):]
    elif text:
        raise SystemExit(f"{path} exists without the markers {begin} / {end}; add them where the table goes "
                         "(the file is not overwritten)")
    else:
        text = block + "\n"
    with open(path, "w") as f:
        f.write(text)


if __name__ == "__main__":
    sys.exit(main())
