"""LRBM mechanism study: does the learned mask stay a receptive bias, and which generator lr scale to use?

Two parts, each written to ``<out>/lrbm_study_<part>.json`` (+ PNGs); every run re-renders
``<out>/lrbm_study.md`` from the JSON files present, with the exact commands, machine and date.

- ``toy``: one large-kernel block, DWConv(K) -> BatchNorm, fitted to a known K^3 teacher kernel
  (radial decay plus peripheral structure). Plain kernel, fixed prior, LRBM bounded / power /
  additive and CSLA, under AdamW and SGD (Nesterov 0.99). Error of the effective kernel against
  the teacher per radius band over iterations; the mask's centre, minimum and maximum over time.
  Minutes on a CPU (``--tiny``: seconds, what CI runs).
- ``real``: MSD Hippocampus (``../shared/data/Dataset004_Hippocampus``) through stock
  ``nnUNetv2_plan_and_preprocess`` / ``nnUNetv2_train``, one fold, user trainer subclasses
  registered with ``rep3d-nnunet register --user-trainers`` in a private copy of nnunetv2 (the
  venv's is never modified). LRBM bounded with generator_lr_scale 0.01 and 0.1, fixed prior, plain
  large kernel; validation Dice, mask statistics per epoch, max |M - P|, learned masks beside P.

Usage (from the repository root):

    .venv/bin/python scripts/study_lrbm.py --part toy
    .venv/bin/python scripts/study_lrbm.py --part real --schedule 8x12,batch2 --cases 40 --val-cases 12
    .venv/bin/python scripts/study_lrbm.py --tiny --out /tmp/study     # CI: toy part in seconds
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "docs" / "results"
DEFAULT_WORK = REPO / "work_dirs" / "lrbm_study"
DEFAULT_DATA = REPO.parent / "shared" / "data" / "Dataset004_Hippocampus"
BIN = Path(sys.executable).parent
REPORT = "lrbm_study.md"


# ============================================================================ common
def machine() -> str:
    """One line: CPU model, cores, load, torch version (the numbers below depend on all of them)."""
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (f"{cpu}, {os.cpu_count()} cores, load average {load:.1f} at start, torch {torch.__version__}, "
            f"Python {platform.python_version()}")


def now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def command_line(argv: Sequence[str]) -> str:
    """The command as run from the repository root."""
    return " ".join([".venv/bin/python", "scripts/study_lrbm.py", *(shlex.quote(a) for a in argv)])


def write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1))
    tmp.replace(path)


def radius_grid(k: int) -> np.ndarray:
    """Euclidean distance of every tap of a k^3 kernel from its centre."""
    ax = np.arange(k) - k // 2
    return np.sqrt(sum(g ** 2 for g in np.meshgrid(ax, ax, ax, indexing="ij")))


# ============================================================================ toy
# name -> (block: a mask mode or "csla", generator_lr_scale)
TOY_METHODS = {"plain": ("none", None), "prior": ("prior", None), "lrbm": ("lrbm", 0.01),
               "lrbm_s0.1": ("lrbm", 0.1), "lrbm_power": ("lrbm_power", 0.01),
               "lrbm_additive": ("lrbm_additive", 0.01), "csla": ("csla", None)}
# the trainers' recipes at the rates the CPU runs use: AdamW 1e-3 (demo), nnU-Net's SGD 1e-2 (Nesterov 0.99)
TOY_OPTIMISERS = {"adamw": dict(lr=1e-3, weight_decay=0.0), "sgd": dict(lr=1e-2, weight_decay=0.0)}


def teacher_kernel(k: int, seed: int = 0) -> torch.Tensor:
    """A k^3 teacher: a radial decay 1 / (1 + r) plus peripheral structure (a shell bump at 0.7 of the
    radius with a sign pattern, and a small off-centre lobe), normalised to unit L2 norm."""
    g = torch.Generator().manual_seed(seed)
    r = torch.as_tensor(radius_grid(k), dtype=torch.float32)
    rmax = k // 2
    ax = torch.arange(k, dtype=torch.float32) - rmax
    z, y, x = torch.meshgrid(ax, ax, ax, indexing="ij")
    decay = 1.0 / (1.0 + r)
    shell = 0.5 * torch.exp(-((r - 0.7 * rmax) ** 2) / 2.0) * torch.sign(torch.cos(math.pi * x / rmax + 0.3))
    lobe_c = torch.tensor([0.5, -0.4, 0.3]) * rmax
    lobe = 0.6 * torch.exp(-((z - lobe_c[0]) ** 2 + (y - lobe_c[1]) ** 2 + (x - lobe_c[2]) ** 2) / 4.0)
    noise = 0.02 * torch.randn(k, k, k, generator=g)
    t = decay + shell + lobe + noise
    return t / t.norm()


def radius_bands(k: int) -> List[Tuple[str, np.ndarray]]:
    """Three bands of taps by distance: centre (r <= K/6), middle, periphery (r > K/3)."""
    r = radius_grid(k)
    rmax = k // 2
    a, b = rmax / 3, 2 * rmax / 3
    return [(f"r<={a:.1f}", r <= a), (f"{a:.1f}<r<={b:.1f}", (r > a) & (r <= b)), (f"r>{b:.1f}", r > b)]


def _toy_block(kind: str, channels: int, k: int) -> Tuple[nn.Module, nn.Module]:
    from rep3d_nnunet.conv import CSLADWConv3d, ReparamDWConv3d

    if kind == "csla":
        conv = CSLADWConv3d(channels, k, 3)
        return conv, conv  # CSLA carries its BNs
    conv = ReparamDWConv3d(channels, k, kind)
    return conv, nn.Sequential(conv, nn.BatchNorm3d(channels))


def _effective_kernel(conv: nn.Module, block: nn.Module) -> torch.Tensor:
    """The deploy-form kernel of the block (conv + its BN, eval statistics), (C, 1, k, k, k)."""
    import copy

    from rep3d_nnunet.deploy import reparameterize_model
    from rep3d_nnunet.fold import fuse_bn

    with torch.no_grad():
        if block is conv:  # CSLA: folds its own branches and BNs
            return reparameterize_model(copy.deepcopy(conv).eval()).weight.detach().clone()
        w = conv.effective_weight().detach()
        w, _ = fuse_bn(w, None, block[1])
        return w.clone()


def _band_errors(w: torch.Tensor, teacher: torch.Tensor, bands) -> List[float]:
    """Relative error per radius band, per channel with the best scale (BN leaves the scale free):
    ||a w - t||_band / ||t||_band with a fitted over the whole kernel, averaged over channels."""
    t = teacher.reshape(-1)
    errs = []
    for _, band in bands:
        mask = torch.as_tensor(band.reshape(-1))
        e = []
        for c in range(w.shape[0]):
            wc = w[c, 0].reshape(-1).double()
            a = float((wc @ t.double()) / (wc @ wc).clamp_min(1e-30))
            e.append(float((a * wc[mask] - t[mask].double()).norm() / t[mask].double().norm()))
        errs.append(float(np.mean(e)))
    return errs


def record_iterations(steps: int, n: int = 40) -> List[int]:
    """About ``n`` iterations from 0 to ``steps``, log-spaced (early convergence is fast), always with both ends."""
    pts = np.unique(np.round(np.geomspace(1, steps + 1, n)).astype(int) - 1)
    return sorted(set(pts.tolist()) | {0, steps})


def iterations_to(rec: dict, band: int, level: float) -> Optional[int]:
    """The first recorded iteration whose error in ``band`` is below ``level`` (None: never)."""
    for it, err in zip(rec["iteration"], rec["band_error"]):
        if err[band] < level:
            return it
    return None


def run_toy_one(method: str, optimiser: str, teacher: torch.Tensor, steps: int, channels: int, spatial: int,
                batch: int, seed: int = 0) -> dict:
    from rep3d_nnunet.optim import param_groups

    torch.manual_seed(seed)
    k = teacher.shape[-1]
    kind, scale = TOY_METHODS[method]
    conv, block = _toy_block(kind, channels, k)
    cfg = TOY_OPTIMISERS[optimiser]
    groups = param_groups(block, cfg["lr"], cfg["weight_decay"], scale or 1.0)
    if optimiser == "adamw":
        opt = torch.optim.AdamW(groups)
    else:
        opt = torch.optim.SGD(groups, momentum=0.99, nesterov=True)
    tw = teacher[None, None].expand(channels, 1, k, k, k).contiguous()
    bands = radius_bands(k)
    rec = {"iteration": [], "band_error": [], "loss": [], "mask_centre": [], "mask_min": [], "mask_max": [],
           "mask_max_dev": []}
    has_mask = kind.startswith("lrbm") or kind == "prior"
    pad = k // 2
    t0 = time.process_time()
    records = set(record_iterations(steps))
    for it in range(steps + 1):
        if it in records:
            block.eval()
            rec["iteration"].append(it)
            rec["band_error"].append(_band_errors(_effective_kernel(conv, block), teacher, bands))
            if has_mask:
                with torch.no_grad():
                    m = conv.mask()
                c = k // 2
                rec["mask_centre"].append(float(m[:, 0, c, c, c].mean()))
                rec["mask_min"].append(float(m.min()))
                rec["mask_max"].append(float(m.max()))
                rec["mask_max_dev"].append(float((m - conv.mask.prior.transpose(0, 1)).abs().max()))
            block.train()
        if it == steps:
            break
        x = torch.randn(batch, channels, spatial, spatial, spatial)
        with torch.no_grad():
            y = nn.functional.conv3d(x, tw, padding=pad, groups=channels)
            y = (y - y.mean(dim=(0, 2, 3, 4), keepdim=True)) / y.std(dim=(0, 2, 3, 4), keepdim=True)
        loss = (block(x) - y).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        rec["loss"].append(loss.item())
    rec["cpu_seconds"] = time.process_time() - t0
    rec["final_band_error"] = rec["band_error"][-1]
    return rec


def run_toy(args: argparse.Namespace) -> dict:
    torch.set_num_threads(args.threads)
    k, steps, channels, spatial, batch = (7, 12, 2, 5, 2) if args.tiny else (args.toy_kernel, args.toy_steps, 4,
                                                                             args.toy_spatial, 2)
    teacher = teacher_kernel(k)
    bands = radius_bands(k)
    results: Dict[str, Dict[str, dict]] = {}
    for optimiser in TOY_OPTIMISERS:
        for method in TOY_METHODS:
            rec = run_toy_one(method, optimiser, teacher, steps, channels, spatial, batch)
            results.setdefault(optimiser, {})[method] = rec
            fe = ", ".join(f"{e:.3f}" for e in rec["final_band_error"])
            extra = (f" M centre {rec['mask_centre'][-1]:.3g} [{rec['mask_min'][-1]:.3g}, {rec['mask_max'][-1]:.3g}]"
                     if rec["mask_centre"] else "")
            print(f"toy {optimiser:5s} {method:13s} band errors [{fe}]{extra} ({rec['cpu_seconds']:.0f} s CPU)",
                  flush=True)
    data = {"part": "toy", "command": args.command, "machine": machine(), "date": now(), "tiny": args.tiny,
            "setting": dict(kernel=k, steps=steps, channels=channels, spatial=spatial, batch=batch,
                            optimisers={o: dict(c, **({"momentum": 0.99, "nesterov": True} if o == "sgd" else {}))
                                        for o, c in TOY_OPTIMISERS.items()},
                            methods={m: dict(mask=kind, generator_lr_scale=sc) for m, (kind, sc) in
                                     TOY_METHODS.items()},
                            threads=args.threads),
            "bands": [name for name, _ in bands], "results": results}
    out = Path(args.out)
    write_json(out / "lrbm_study_toy.json", data)
    plot_toy(data, out / "lrbm_study_toy.png")
    return data


def plot_toy(data: dict, path: Path) -> Path:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    opts = list(data["results"])
    bands = data["bands"]
    fig, axes = plt.subplots(len(opts), len(bands) + 1, figsize=(3.3 * (len(bands) + 1), 2.9 * len(opts)),
                             squeeze=False)
    colours = dict(zip(TOY_METHODS, plt.rcParams["axes.prop_cycle"].by_key()["color"]))
    for row, opt in zip(axes, opts):
        for method, rec in data["results"][opt].items():
            err = np.array(rec["band_error"])
            for j in range(len(bands)):
                row[j].plot(rec["iteration"], err[:, j], label=method, color=colours[method], lw=1.2)
            if rec["mask_centre"]:
                ax = row[-1]
                ax.plot(rec["iteration"], rec["mask_max"], color=colours[method], lw=1.2, label=f"{method} max")
                ax.plot(rec["iteration"], rec["mask_min"], color=colours[method], lw=1.0, ls="--")
                ax.plot(rec["iteration"], rec["mask_centre"], color=colours[method], lw=0.8, ls=":")
        for j, band in enumerate(bands):
            row[j].set_title(f"{opt}: error of W_eff vs teacher, {band}", fontsize=8)
            row[j].set_xlabel("iteration", fontsize=7)
            row[j].set_xscale("symlog", linthresh=1)
            row[j].set_yscale("log")
            row[j].tick_params(labelsize=6)
        row[0].legend(fontsize=6)
        ax = row[-1]
        ax.set_yscale("symlog", linthresh=1e-2)
        ax.set_title(f"{opt}: mask max (solid), min (dashed), centre (dotted)", fontsize=8)
        ax.set_xlabel("iteration", fontsize=7)
        ax.set_xscale("symlog", linthresh=1)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


# ============================================================================ real data
REAL_METHODS = (
    # key, trainer class name, base trainer, generator_lr_scale, description
    ("lrbm_s0.01", "StudyLRBMScale001", "nnUNetTrainerRep3D", 0.01, "LRBM bounded, generator lr x 0.01"),
    ("lrbm_s0.1", "StudyLRBMScale01", "nnUNetTrainerRep3D", 0.1, "LRBM bounded, generator lr x 0.1"),
    ("prior", "StudyFixedPrior", "nnUNetTrainerRep3DFixedPrior", None, "fixed prior P"),
    ("plain", "StudyPlainLK", "nnUNetTrainerRep3DPlainLK", None, "plain large kernel"),
)
MASK_LOG = "mask_stats.jsonl"

TRAINERS_TEMPLATE = '''"""User trainers of rep3d-nnunet's scripts/study_lrbm.py (written by it; edit the script, not this file).

Each is the documented subclass of a Rep3D trainer: the study's CPU schedule, batch <= {batch},
AdamW at lr {lr} (the paper's 1e-4 is tuned for 60k iterations; a CPU run has a few hundred),
{threads} torch thread(s), and the LRBM mask statistics of every block logged after each epoch.
"""
import json
import os

import torch

from rep3d_nnunet.analysis.masks import mask_infos, mask_stats
from rep3d_nnunet.nnunet.trainers import (TinyScheduleMixin, nnUNetTrainerRep3D, nnUNetTrainerRep3DFixedPrior,
                                          nnUNetTrainerRep3DPlainLK)


class StudyScheduleMixin(TinyScheduleMixin):
    schedule = {schedule!r}
    max_batch_size = {batch}
    reads_cpu_schedule = False

    # nnU-Net records its constructor arguments by name: the signature must be spelled out
    def __init__(self, plans: dict, configuration: str, fold: int, dataset_json: dict,
                 device: torch.device = torch.device("cuda")):
        super().__init__(plans, configuration, fold, dataset_json, device)
        self.initial_lr = {lr!r}
        torch.set_num_threads({threads})

    def on_epoch_end(self):
        stats = {{i.name: mask_stats(i) for i in mask_infos(self.network)}}
        with open(os.path.join(self.output_folder, "{mask_log}"), "a") as f:
            f.write(json.dumps({{"epoch": self.current_epoch, "blocks": stats}}) + "\\n")
        super().on_epoch_end()

'''


def _trainer_source(schedule: dict, batch: int, lr: float, threads: int) -> str:
    src = TRAINERS_TEMPLATE.format(schedule=schedule, batch=batch, lr=lr, threads=threads, mask_log=MASK_LOG)
    for _, name, base, scale, desc in REAL_METHODS:
        body = f"    generator_lr_scale = {scale!r}\n" if scale is not None else "    pass\n"
        src += f"\nclass {name}(StudyScheduleMixin, {base}):\n    \"\"\"{desc}\"\"\"\n{body}\n"
    return src


def _run(cmd: Sequence[str], env: Dict[str, str], log: Path) -> None:
    exe = shutil.which(cmd[0], path=str(BIN)) or cmd[0]
    with open(log, "a") as f:
        f.write(f"$ {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.run([exe, *cmd[1:]], env=env, stdout=f, stderr=subprocess.STDOUT)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} exited {proc.returncode}; see {log}")


def parse_schedule(text: str) -> Tuple[dict, int]:
    """'<epochs>x<iterations>,batch<N>' -> (trainer schedule attributes, batch size)."""
    from rep3d_nnunet.nnunet.schedule import parse_cpu_schedule

    s = parse_cpu_schedule(text)
    batch = s.pop("batch_size")
    s["save_every"] = s["num_epochs"]
    return s, batch


def setup_real(args: argparse.Namespace, schedule: dict, batch: int) -> Dict[str, str]:
    """Raw subset, private nnunetv2 with our classes registered, plans and preprocessed data, split (idempotent)."""
    import nnunetv2

    work = Path(args.work)
    data = Path(args.data)
    if not (data / "imagesTr").is_dir():
        raise SystemExit(f"no Hippocampus dataset at {data} (imagesTr missing); pass --data")
    log = work / "setup.log"
    work.mkdir(parents=True, exist_ok=True)
    cases = sorted(p.name[:-len("_0000.nii.gz")] for p in (data / "imagesTr").glob("*_0000.nii.gz"))
    if len(cases) < args.cases:
        raise SystemExit(f"--cases {args.cases}: the dataset has only {len(cases)} training cases")
    cases = cases[:args.cases]
    raw = work / "nnUNet_raw" / "Dataset004_Hippocampus"
    for sub in ("imagesTr", "labelsTr"):
        (raw / sub).mkdir(parents=True, exist_ok=True)
    for c in cases:
        for src, dst in ((data / "imagesTr" / f"{c}_0000.nii.gz", raw / "imagesTr" / f"{c}_0000.nii.gz"),
                         (data / "labelsTr" / f"{c}.nii.gz", raw / "labelsTr" / f"{c}.nii.gz")):
            if not dst.exists():
                dst.symlink_to(src)
    meta = json.loads((data / "dataset.json").read_text())
    meta["numTraining"] = len(cases)
    (raw / "dataset.json").write_text(json.dumps(meta, indent=2))

    site = work / "nnunetv2_site"
    if not (site / "nnunetv2").is_dir():
        shutil.copytree(Path(nnunetv2.__file__).parent, site / "nnunetv2",
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    trainers_dir = work / "user_trainers"
    trainers_dir.mkdir(exist_ok=True)
    (trainers_dir / "lrbm_study_trainers.py").write_text(_trainer_source(schedule, batch, args.lr, args.threads))

    env = dict(os.environ)
    for key in ("nnUNet_raw", "nnUNet_preprocessed"):
        (work / key).mkdir(exist_ok=True)
        env[key] = str(work / key)
    env["nnUNet_results"] = str(work / f"nnUNet_results_{args.tag}")
    env.pop("nnUNet_n_proc_DA", None)
    env.update(PYTHONPATH=str(site), nnUNet_def_n_proc="1", OMP_NUM_THREADS=str(args.threads), PYTHONUNBUFFERED="1")
    _run(["rep3d-nnunet", "register", "--user-trainers", str(trainers_dir)], env, log)
    pre = work / "nnUNet_preprocessed" / "Dataset004_Hippocampus"
    if not (pre / "nnUNetPlans.json").is_file():
        _run(["nnUNetv2_plan_and_preprocess", "-d", "4", "-c", "3d_fullres", "-np", "2"], env, log)
    if not (pre / "nnUNetRep3DPlans.json").is_file():
        _run(["nnUNetv2_plan_experiment", "-d", "4", "-pl", "nnUNetPlannerRep3D"], env, log)
    # one fixed split: the last --val-cases cases validate (nnU-Net's 5-fold split would leave a few)
    n_val = args.val_cases
    split = [{"train": cases[:-n_val], "val": cases[-n_val:]}]
    (pre / "splits_final.json").write_text(json.dumps(split, indent=1))
    env["nnUNet_n_proc_DA"] = "0"  # data augmentation in the training process: 2 cores, no workers
    return env


def _fold_dir(env: Dict[str, str], trainer: str) -> Path:
    return Path(env["nnUNet_results"]) / "Dataset004_Hippocampus" / f"{trainer}__nnUNetRep3DPlans__3d_fullres" / \
        "fold_0"


def train_real(args: argparse.Namespace, env: Dict[str, str], methods: Sequence[tuple]) -> Dict[str, float]:
    """Train (and validate) every method with stock nnUNetv2_train, ``--lanes`` at a time; skip finished ones."""
    work = Path(args.work)
    pending = [m for m in methods if not (_fold_dir(env, m[1]) / "validation" / "summary.json").is_file()]
    running: List[Tuple[tuple, subprocess.Popen, float, object]] = []
    walls: Dict[str, float] = {}
    exe = shutil.which("nnUNetv2_train", path=str(BIN)) or "nnUNetv2_train"
    while pending or running:
        while pending and len(running) < args.lanes:
            m = pending.pop(0)
            log = open(work / f"train_{args.tag}_{m[0]}.log", "w")
            cmd = [exe, "4", "3d_fullres", "0", "-tr", m[1], "-p", "nnUNetRep3DPlans", "-device", "cpu"]
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            running.append((m, subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), time.time(),
                            log))
            print(f"{now()} started {m[0]} ({m[1]})", flush=True)
        time.sleep(5)
        for item in list(running):
            m, proc, t0, log = item
            if proc.poll() is not None:
                log.close()
                running.remove(item)
                walls[m[0]] = time.time() - t0
                status = "done" if proc.returncode == 0 else f"FAILED (exit {proc.returncode})"
                print(f"{now()} {m[0]} {status} after {walls[m[0]] / 60:.1f} min", flush=True)
    return walls


def collect_real(env: Dict[str, str], methods: Sequence[tuple]) -> Dict[str, dict]:
    """Validation Dice, per-epoch logs and mask statistics of every trained method."""
    results = {}
    for key, trainer, _, scale, desc in methods:
        fold = _fold_dir(env, trainer)
        summary = fold / "validation" / "summary.json"
        if not summary.is_file():
            results[key] = {"trainer": trainer, "description": desc, "error": f"no {summary}"}
            continue
        s = json.loads(summary.read_text())
        ck = torch.load(fold / "checkpoint_final.pth", map_location="cpu", weights_only=False)
        logging = ck.get("logging", {})
        epoch_times = [e - b for b, e in zip(logging.get("epoch_start_timestamps", []),
                                               logging.get("epoch_end_timestamps", []))]
        masks = []
        if (fold / MASK_LOG).is_file():
            masks = [json.loads(line) for line in (fold / MASK_LOG).read_text().splitlines() if line.strip()]
        labels = list(s["mean"])
        per_case = [float(np.mean([c["metrics"][lb]["Dice"] for lb in labels])) for c in s.get("metric_per_case", [])]
        results[key] = {
            "trainer": trainer, "description": desc, "generator_lr_scale": scale,
            "dice_mean": s["foreground_mean"]["Dice"],
            "dice_per_case": per_case,
            # standard error of the mean over validation cases: the noise floor of one run's Dice
            "dice_sem": float(np.std(per_case, ddof=1) / np.sqrt(len(per_case))) if len(per_case) > 1 else None,
            "dice_per_class": {k: v["Dice"] for k, v in s["mean"].items()},
            "n_val_cases": len(s.get("metric_per_case", [])),
            "pseudo_dice_per_epoch": [float(v) for v in logging.get("mean_fg_dice", [])],
            "train_loss_per_epoch": [float(v) for v in logging.get("train_losses", [])],
            "val_loss_per_epoch": [float(v) for v in logging.get("val_losses", [])],
            "mean_epoch_seconds": float(np.mean(epoch_times)) if epoch_times else None,
            "mask_per_epoch": masks,
        }
    return results


def plot_real_masks(env: Dict[str, str], methods: Sequence[tuple], path: Path) -> Optional[Path]:
    """The learned masks of the LRBM runs beside the prior: the largest-kernel blocks of each run."""
    from rep3d_nnunet.analysis.masks import mask_infos_from_state_dict, plot_masks

    infos = []
    for key, trainer, _, scale, _ in methods:
        ck = _fold_dir(env, trainer) / "checkpoint_final.pth"
        if scale is None or not ck.is_file():
            continue
        weights = torch.load(ck, map_location="cpu", weights_only=False)["network_weights"]
        mine = mask_infos_from_state_dict(weights)
        if not mine:
            continue
        kmax = max(int(np.prod(i.kernel_size)) for i in mine)
        big = [i for i in mine if int(np.prod(i.kernel_size)) == kmax]
        # the block that moved most, and the one that moved least, among the largest kernels
        dev = [float(np.abs(i.mask - i.prior[None]).max()) for i in big]
        for i in {int(np.argmax(dev)), int(np.argmin(dev))}:
            big[i].name = f"{key}: {big[i].name}"
            infos.append(big[i])
    if not infos:
        return None
    return Path(plot_masks(infos, str(path), "learned LRBM masks after training (Hippocampus, fold 0)", dpi=60))


def plot_real_stats(results: Dict[str, dict], path: Path) -> Optional[Path]:
    """max |M - P| and min M/P per epoch (over all blocks) for the LRBM runs; pseudo Dice per epoch for all."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(11, 3))
    for key, r in results.items():
        if "error" in r:
            continue
        axes[0].plot(range(len(r["pseudo_dice_per_epoch"])), r["pseudo_dice_per_epoch"], "o-", ms=3, label=key)
        if r["mask_per_epoch"] and r.get("generator_lr_scale"):
            ep = [row["epoch"] for row in r["mask_per_epoch"]]
            axes[1].plot(ep, [max(b["max_dev"] for b in row["blocks"].values()) for row in r["mask_per_epoch"]],
                         "o-", ms=3, label=key)
            axes[2].plot(ep, [min(b["min_ratio"] for b in row["blocks"].values()) for row in r["mask_per_epoch"]],
                         "o-", ms=3, label=key)
    for ax, title in zip(axes, ("pseudo Dice (nnU-Net's per-epoch estimate)", "max |M - P| over all blocks",
                                "min M / P over all blocks")):
        ax.set_title(title, fontsize=8)
        ax.set_xlabel("epoch", fontsize=7)
        ax.tick_params(labelsize=6)
        ax.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=70)
    plt.close(fig)
    return path


def run_real(args: argparse.Namespace) -> dict:
    schedule, batch = parse_schedule(args.schedule)
    methods = [m for m in REAL_METHODS if args.methods is None or m[0] in args.methods.split(",")]
    out = Path(args.out)
    if args.tag != "study":  # a measurement: keep it out of the committed results
        out = Path(args.work) / f"measure_{args.tag}"
    t0 = time.time()
    start = now()
    env = setup_real(args, schedule, batch)
    setup_s = time.time() - t0
    walls = train_real(args, env, methods)
    results = collect_real(env, methods)
    data = {"part": "real", "command": args.command, "machine": machine(), "date": start,
            "setting": dict(schedule=args.schedule, trainer_schedule=schedule, batch=batch, lr=args.lr,
                            optimiser="AdamW (paper's betas/eps, weight decay 0.08; generators: wd 0)",
                            cases=args.cases, val_cases=args.val_cases, lanes=args.lanes, threads=args.threads,
                            plans="nnUNetRep3DPlans (nnUNetPlannerRep3D)", configuration="3d_fullres", fold=0),
            "setup_seconds": setup_s, "wall_seconds": walls, "total_wall_seconds": time.time() - t0,
            "results": results}
    previous = out / "lrbm_study_real.json"
    if not walls and previous.is_file():
        # nothing was trained now (all runs existed): keep the run's own command, machine, date and times
        old = json.loads(previous.read_text())
        if old.get("setting") == data["setting"]:
            data = dict(old, results=results)
    write_json(out / "lrbm_study_real.json", data)
    plot_real_masks(env, methods, out / "lrbm_study_real_masks.png")
    plot_real_stats(results, out / "lrbm_study_real_stats.png")
    return data


# ============================================================================ report
def _fmt(v, spec=".3f") -> str:
    return "-" if v is None else format(v, spec)


def render_report(out: Path) -> Path:
    """``lrbm_study.md`` from the part JSON files present in ``out``."""
    lines = ["# LRBM mechanism study", "",
             "Written by `scripts/study_lrbm.py` (re-run it to regenerate; each part records its own "
             "command, machine and date). Question: does the learned mask M stay a receptive bias "
             "(positive, largest at the centre) and which `generator_lr_scale` should be the default?", ""]
    toy_path, real_path = out / "lrbm_study_toy.json", out / "lrbm_study_real.json"
    if toy_path.is_file():
        lines += _toy_section(json.loads(toy_path.read_text()))
    else:
        lines += ["## Toy", "", "Not run (`--part toy`).", ""]
    if real_path.is_file():
        lines += _real_section(json.loads(real_path.read_text()))
    else:
        lines += ["## Real data (Hippocampus)", "", "Not run (`--part real`).", ""]
    conclusions = out / "lrbm_study_conclusions.md"
    if conclusions.is_file():
        lines += [conclusions.read_text().rstrip(), ""]
    path = out / REPORT
    path.write_text("\n".join(lines))
    return path


TOY_LEVEL = 0.1


def _toy_section(d: dict) -> List[str]:
    s = d["setting"]
    lines = ["## Toy: one block, DWConv -> BN, fitted to a known teacher", "",
             f"- Command: `{d['command']}`", f"- Machine: {d['machine']}", f"- Date: {d['date']}",
             f"- Setting: kernel {s['kernel']}^3, {s['channels']} channels, input {s['spatial']}^3 x batch "
             f"{s['batch']} of white noise, target = teacher conv, standardised; {s['steps']} steps; "
             f"AdamW lr {s['optimisers']['adamw']['lr']:g}, SGD lr {s['optimisers']['sgd']['lr']:g} "
             f"(Nesterov, momentum 0.99); no weight decay; LRBM generators in their own group at lr x "
             "generator_lr_scale (0.01; `lrbm_s0.1`: 0.1). CSLA: parallel 3^3 branch, both with BN. One seed.",
             "- Teacher: radial decay 1/(1+r) + a signed shell at 0.7 of the radius + an off-centre lobe.",
             "- Error: per channel, ||a W_eff - T|| / ||T|| within the band, a fitted once over the whole "
             "kernel (BN leaves the scale free); W_eff includes the folded BN.", "",
             "![toy](lrbm_study_toy.png)", ""]
    bands = d["bands"]
    lines += [f"Iterations until the error of W_eff falls below {TOY_LEVEL:g} in each radius band (first "
              "recorded iteration; `-` never), the final errors, and the mask at the end:", ""]
    head = "| optimiser | method | " + " | ".join(f"its to {TOY_LEVEL:g}, {b}" for b in bands) + " | " + \
        " | ".join(f"final error {b}" for b in bands) + " | M centre | M min | M max | max abs(M-P) |"
    lines += [head, "|" + "---|" * (head.count("|") - 1)]
    for opt, methods in d["results"].items():
        for m, r in methods.items():
            its = " | ".join(_fmt(iterations_to(r, j, TOY_LEVEL), "d") for j in range(len(bands)))
            fe = its + " | " + " | ".join(f"{e:.2g}" for e in r["final_band_error"])
            mk = (f"{r['mask_centre'][-1]:.4g} | {r['mask_min'][-1]:.3g} | {r['mask_max'][-1]:.3g} | "
                  f"{r['mask_max_dev'][-1]:.3g}" if r["mask_centre"] else "- | - | - | -")
            lines.append(f"| {opt} | {m} | {fe} | {mk} |")
    lines.append("")
    return lines


def _real_section(d: dict) -> List[str]:
    s = d["setting"]
    ts = s["trainer_schedule"]
    lines = ["## Real data: Hippocampus through stock nnUNetv2_train", "",
             f"- Command: `{d['command']}`", f"- Machine: {d['machine']}", f"- Date: {d['date']}; wall "
             f"{d['total_wall_seconds'] / 60:.1f} min in all ({s['lanes']} runs at a time, {s['threads']} thread each)",
             f"- Data: the first {s['cases']} training cases of MSD Task04 Hippocampus; one fixed split, the last "
             f"{s['val_cases']} validate (fold 0). Plans {s['plans']}, {s['configuration']}.",
             f"- Schedule: {ts['num_epochs']} epochs x {ts['num_iterations_per_epoch']} iterations, batch "
             f"{s['batch']}, {ts['num_val_iterations_per_epoch']} validation iteration(s) per epoch; {s['optimiser']}, "
             f"lr {s['lr']:g} with poly decay. Trainers: user subclasses registered with "
             "`rep3d-nnunet register --user-trainers DIR` (a private nnunetv2 copy).",
             "- Dice: nnU-Net's end-of-training validation (sliding window, the training form in eval mode, "
             "which equals the deploy form to 1e-5) on the validation cases; +- is the standard error over "
             "cases.", "",
             "| method | trainer | val Dice (mean fg) | per class | last pseudo Dice | s / epoch | "
             "max abs(M-P) | M min | M max | min M/P |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for key, r in d["results"].items():
        if "error" in r:
            lines.append(f"| {key} | {r['trainer']} | failed: {r['error']} | | | | | | | |")
            continue
        per = ", ".join(f"{v:.3f}" for v in r["dice_per_class"].values())
        last = r["pseudo_dice_per_epoch"][-1] if r["pseudo_dice_per_epoch"] else None
        mk = "- | - | - | -"
        if r["mask_per_epoch"] and r.get("generator_lr_scale"):
            blocks = r["mask_per_epoch"][-1]["blocks"].values()
            mk = (f"{max(b['max_dev'] for b in blocks):.3g} | {min(b['min'] for b in blocks):.3g} | "
                  f"{max(b['max'] for b in blocks):.3g} | {min(b['min_ratio'] for b in blocks):.3g}")
        sem = f" +- {r['dice_sem']:.3f}" if r.get("dice_sem") is not None else ""
        lines.append(f"| {key} | {r['trainer']} | {r['dice_mean']:.4f}{sem} | {per} | {_fmt(last)} | "
                     f"{_fmt(r['mean_epoch_seconds'], '.0f')} | {mk} |")
    lines += ["", "Mask statistics per epoch (LRBM runs; over all blocks):", "",
              "| method | epoch | max abs(M-P) | M min | M max | min M/P |", "|---|---|---|---|---|---|"]
    for key, r in d["results"].items():
        if "error" in r or not r.get("generator_lr_scale"):
            continue
        for row in r["mask_per_epoch"]:
            b = row["blocks"].values()
            lines.append(f"| {key} | {row['epoch']} | {max(x['max_dev'] for x in b):.3g} | "
                         f"{min(x['min'] for x in b):.3g} | {max(x['max'] for x in b):.3g} | "
                         f"{min(x['min_ratio'] for x in b):.3g} |")
    lines += ["", "![stats](lrbm_study_real_stats.png)", "", "![masks](lrbm_study_real_masks.png)", ""]
    return lines


# ============================================================================ main
def main(argv: Optional[Sequence[str]] = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--part", choices=("toy", "real", "all", "report"), default="all")
    p.add_argument("--tiny", action="store_true", help="toy part only, tiny sizes: seconds (CI)")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="folder of lrbm_study.md, JSON and PNGs")
    p.add_argument("--threads", type=int, default=1, help="torch threads per run (1: best on a loaded machine)")
    p.add_argument("--toy-kernel", type=int, default=21)
    p.add_argument("--toy-steps", type=int, default=300)
    p.add_argument("--toy-spatial", type=int, default=21)
    p.add_argument("--work", default=str(DEFAULT_WORK), help="nnU-Net folders of the real part (gitignored)")
    p.add_argument("--data", default=str(DEFAULT_DATA), help="raw Dataset004_Hippocampus")
    p.add_argument("--schedule", default="8x12,batch2", help="<epochs>x<iterations>,batch<N>")
    p.add_argument("--cases", type=int, default=40, help="training cases used (a subset of the 260)")
    p.add_argument("--val-cases", type=int, default=12, help="of those, how many validate")
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--lanes", type=int, default=2, help="trainings at a time")
    p.add_argument("--methods", default=None, help="comma-separated subset of " +
                   ",".join(m[0] for m in REAL_METHODS))
    p.add_argument("--tag", default="study", help="results subfolder; anything but 'study' is a measurement")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = p.parse_args(argv)
    args.command = command_line(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if args.tiny and args.part in ("real", "all"):
        args.part = "toy"
    if args.part in ("toy", "all"):
        run_toy(args)
    if args.part in ("real", "all"):
        run_real(args)
    print(f"wrote {render_report(out)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
