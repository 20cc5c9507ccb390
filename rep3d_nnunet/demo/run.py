"""The demo: plan -> train -> predict -> evaluate with nnU-Net's stock commands, then a picture.

    rep3d-nnunet demo                    # embedded synthetic dataset
    rep3d-nnunet demo --raw ../shared/data/Dataset004_Hippocampus

Everything is written under ``--work`` (default ``demo_output/``): nnUNet_raw,
nnUNet_preprocessed, nnUNet_results, predictions, the evaluation and the PNG. A
given ``--raw`` dataset is linked, never modified. Steps whose outputs exist are
skipped, and an interrupted training continues (``--c``), so re-running is cheap.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import time
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

from rep3d_nnunet.nnunet.adapter import NNUNET_VARS, ConsoleScriptError, run_console_script

DEMO_TRAINER = "nnUNetTrainerRep3D_demo"
PLANS = "nnUNetRep3DPlans"
CONFIG = "3d_fullres"
SYNTHETIC_ID = 990


class DemoError(RuntimeError):
    """A demo step cannot run; the message says what to fix."""


def _say(msg: str) -> None:
    print(f"[demo] {msg}", flush=True)


def _run(args: Sequence[str], env: Dict[str, str], stream: bool = False) -> str:
    """Run a console script of this environment (the adapter's runner); stream its output live or return it."""
    try:
        return run_console_script(args, env, stream=stream, log=lambda line: _say(line))
    except ConsoleScriptError as e:
        raise DemoError(str(e)) from e


def _dataset_id(folder: Path) -> int:
    m = re.match(r"Dataset(\d{3})_", folder.name)
    if not m:
        raise DemoError(f"{folder} is not an nnU-Net raw dataset folder (expected a name like Dataset004_Name)")
    return int(m.group(1))


def link_raw_dataset(source: Path, raw_root: Path, n_test: int, max_train: Optional[int]) -> Path:
    """Link a user's raw dataset into the demo's nnUNet_raw; hold out ``n_test`` cases when it has no labelsTs."""
    source = source.resolve()
    for sub in ("imagesTr", "labelsTr"):
        if not (source / sub).is_dir():
            raise DemoError(f"{source} has no {sub}/ folder: give --raw an nnU-Net raw dataset folder "
                            "(DatasetXXX_Name with dataset.json, imagesTr/, labelsTr/)")
    meta = json.loads((source / "dataset.json").read_text())
    ending = meta.get("file_ending", ".nii.gz")
    target = raw_root / source.name
    if target.exists():
        return target
    cases = sorted(p.name[: -len(ending)] for p in (source / "labelsTr").glob(f"*{ending}"))
    if len(cases) < n_test + 2:
        raise DemoError(f"{source} has only {len(cases)} labelled cases; the demo needs at least {n_test + 2}")
    has_test = (source / "labelsTs").is_dir() and (source / "imagesTs").is_dir()
    test = [] if has_test else cases[-n_test:]
    train = [c for c in cases if c not in test][: max_train or None]
    n_channels = len(meta["channel_names"])
    for sub in ("imagesTr", "labelsTr", "imagesTs", "labelsTs"):
        (target / sub).mkdir(parents=True)
    for split, subset in (("Tr", train), ("Ts", test)):
        for case in subset:
            for ch in range(n_channels):
                name = f"{case}_{ch:04d}{ending}"
                (target / f"images{split}" / name).symlink_to(source / "imagesTr" / name)
            (target / f"labels{split}" / f"{case}{ending}").symlink_to(source / "labelsTr" / f"{case}{ending}")
    if has_test:
        for sub in ("imagesTs", "labelsTs"):
            for f in sorted((source / sub).iterdir()):
                (target / sub / f.name).symlink_to(f)
    meta["numTraining"] = len(train)
    (target / "dataset.json").write_text(json.dumps(meta, indent=2))
    return target


def demo_env(work: Path) -> Dict[str, str]:
    """Our environment with nnU-Net's three folders under ``work`` (the user's other variables pass through)."""
    env = dict(os.environ)
    for key in NNUNET_VARS:
        (work / key).mkdir(parents=True, exist_ok=True)
        env[key] = str((work / key).resolve())
    env.setdefault("nnUNet_def_n_proc", "2")
    env["PYTHONUNBUFFERED"] = "1"
    return env


def per_class_dice(summary_file: Path) -> Tuple[Dict[str, float], float]:
    """Mean Dice per class and foreground mean from nnU-Net's evaluation summary.json."""
    summary = json.loads(summary_file.read_text())
    per_class = {str(k): float(v["Dice"]) for k, v in summary["mean"].items()}
    return per_class, float(summary["foreground_mean"]["Dice"])


def run_demo(work: Path, raw: Optional[Path] = None, n_test: int = 4, max_train: Optional[int] = 40,
             trainer: str = DEMO_TRAINER, device: str = "cpu") -> Dict[str, float]:
    """The whole demo; returns the per-class Dice of the held-out cases."""
    t0 = time.time()
    work = work.resolve()
    env = demo_env(work)
    raw_root = Path(env["nnUNet_raw"])

    if raw is None:
        existing = sorted(raw_root.glob(f"Dataset{SYNTHETIC_ID:03d}_*"))
        if existing:
            dataset = existing[0]
        else:
            from rep3d_nnunet.demo.synthetic import write_synthetic_dataset

            _say("writing the synthetic demo dataset (ellipsoid + tube on shaded noise)")
            dataset = write_synthetic_dataset(raw_root, SYNTHETIC_ID, n_test=n_test)
    else:
        dataset = link_raw_dataset(Path(raw), raw_root, n_test, max_train)
    did = str(_dataset_id(dataset))
    _say(f"dataset {dataset.name}: {len(list((dataset / 'labelsTr').iterdir()))} training cases, "
         f"{len(list((dataset / 'labelsTs').iterdir()))} held-out cases")

    _run(["rep3d-nnunet", "register"], env)
    pre = Path(env["nnUNet_preprocessed"]) / dataset.name
    if not (pre / "nnUNetPlans.json").is_file() or not (pre / f"nnUNetPlans_{CONFIG}").is_dir():
        _run(["nnUNetv2_plan_and_preprocess", "-d", did, "-c", CONFIG, "-np", "2",
              "--verify_dataset_integrity"], env)
    if not (pre / f"{PLANS}.json").is_file():
        _run(["nnUNetv2_plan_experiment", "-d", did, "-pl", "nnUNetPlannerRep3D"], env)

    results = Path(env["nnUNet_results"]) / dataset.name / f"{trainer}__{PLANS}__{CONFIG}"
    fold = results / "fold_0"
    train_env = dict(env)
    train_env.setdefault("nnUNet_n_proc_DA", "0")  # augmentation in the main process on 2 CPU cores, unless set
    if not (fold / "checkpoint_final.pth").is_file():
        resume = ["--c"] if (fold / "checkpoint_latest.pth").is_file() else []
        _say(f"training {trainer} on fold 0 ({device}); progress below")
        _run(["nnUNetv2_train", did, CONFIG, "0", "-tr", trainer, "-p", PLANS, "-device", device, *resume],
             train_env, stream=True)

    pred = work / "predictions" / trainer
    if not pred.is_dir() or len(list(pred.glob("*.nii.gz"))) < len(list((dataset / "labelsTs").iterdir())):
        _run(["nnUNetv2_predict", "-i", str(dataset / "imagesTs"), "-o", str(pred), "-d", did, "-c", CONFIG,
              "-tr", trainer, "-p", PLANS, "-f", "0", "-device", device, "-npp", "1", "-nps", "1"], env)
    summary = pred / "evaluation.json"
    _run(["nnUNetv2_evaluate_folder", str(dataset / "labelsTs"), str(pred), "-djfile",
          str(results / "dataset.json"), "-pfile", str(results / "plans.json"), "-o", str(summary), "-np", "1"],
         env)
    per_class, fg = per_class_dice(summary)
    labels = json.loads((dataset / "dataset.json").read_text())["labels"]
    names = {str(v): k for k, v in labels.items()}
    _say("Dice on the held-out cases (nnUNetv2_evaluate_folder):")
    for k, v in per_class.items():
        _say(f"  {names.get(k, k):>12} (label {k}): {v:.3f}")
    _say(f"  {'mean':>12}          : {fg:.3f}")

    from rep3d_nnunet.demo.figure import demo_figure

    png = demo_figure(dataset, pred, fold / "checkpoint_final.pth", work / f"demo_{trainer}.png")
    _say(f"picture: {png}")
    _say(f"done in {time.time() - t0:.0f} s; everything is under {work}")
    return per_class


def configure_demo_parser(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """The demo's options (``rep3d-nnunet demo``)."""
    parser.add_argument("--raw", type=Path, default=None,
                        help="an nnU-Net raw dataset folder to use instead of the synthetic one "
                             "(e.g. ../shared/data/Dataset004_Hippocampus)")
    parser.add_argument("--work", type=Path, default=Path("demo_output"), help="output folder (default demo_output)")
    parser.add_argument("--n-test", type=int, default=4, help="cases held out for prediction when --raw has no labelsTs")
    parser.add_argument("--max-train", type=int, default=40,
                        help="use at most this many training cases of --raw (keeps the CPU demo short; 0 = all)")
    parser.add_argument("--trainer", default=DEMO_TRAINER, help=f"trainer to run (default {DEMO_TRAINER})")
    parser.add_argument("--device", default="cpu", choices=("cpu", "cuda", "mps"))
    parser.set_defaults(func=run_from_args)
    return parser


def run_from_args(args: argparse.Namespace) -> int:
    run_demo(args.work, args.raw, args.n_test, args.max_train, args.trainer, args.device)
    return 0

