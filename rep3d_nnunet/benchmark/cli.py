"""``rep3d-nnunet benchmark run|report|methods``: argparse shells over ``runner`` and ``report``.

Registered in ``rep3d_nnunet/cli.py`` with one line (``add_benchmark_parser``).
Expected failures print one line (or the guard's list) and exit 1.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from pathlib import Path
from typing import Dict, List, Optional

from rep3d_nnunet.benchmark.fairness import KINDS, UnfairComparisonError
from rep3d_nnunet.benchmark.methods import BUDGETS, METHODS, SCHEDULE_HELP, MethodError, get_methods
from rep3d_nnunet.benchmark.results import ResultsError, model_folder


def _pairs(items: List[str], what: str) -> Dict[str, str]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key or not value:
            raise MethodError(f"{what} {item!r} is not NAME=VALUE")
        out[key] = value
    return out


def _slurm_parameters(args: argparse.Namespace) -> Optional[dict]:
    if not args.slurm:
        return None
    params = {"timeout_min": int(args.slurm_hours * 60), "gpus_per_node": args.slurm_gpus,
              "cpus_per_task": args.slurm_cpus}
    if args.slurm_partition:
        params["slurm_partition"] = args.slurm_partition
    if args.slurm_mem_gb:
        params["mem_gb"] = args.slurm_mem_gb
    if args.slurm_array_parallelism:
        params["slurm_array_parallelism"] = args.slurm_array_parallelism
    if args.slurm_setup:
        params["slurm_setup"] = args.slurm_setup
    params.update({k: _num(v) for k, v in _pairs(args.slurm_param, "--slurm-param").items()})
    return params


def _num(v: str):
    try:
        return int(v)
    except ValueError:
        return v


def _run(args: argparse.Namespace) -> int:
    from rep3d_nnunet.benchmark.runner import benchmark_run

    gpus = [g for item in args.gpus for g in item.split(",") if g]
    benchmark_run(args.dataset, get_methods(args.methods, args.budget), args.folds, schedule=args.schedule,
                  device=args.device, gpus=gpus, slurm=_slurm_parameters(args), slurm_cluster=args.submitit_cluster,
                  dry_run=args.dry_run, num_processes=args.np, train_args=args.train_arg,
                  allow_unfair=args.allow_unfair, command=getattr(args, "command_line", None))
    return 0


def _report(args: argparse.Namespace) -> int:
    from rep3d_nnunet.benchmark.report import benchmark_report
    from rep3d_nnunet.benchmark.runner import dataset_name

    folders: Dict[str, Path] = {}
    if args.methods:
        if not args.dataset:
            raise MethodError("-m needs -d DATASET (or give folders with --folder NAME=PATH)")
        name = dataset_name(args.dataset)
        for m in get_methods(args.methods, args.budget):
            folders[m.name] = model_folder(name, m.trainer_for(args.schedule), m.plans, m.configuration)
    folders.update({k: Path(v) for k, v in _pairs(args.folder, "--folder").items()})
    if not folders:
        raise MethodError("no methods: give -m METHOD ... (with -d) or --folder NAME=PATH")
    out = Path(args.output) if args.output else (next(iter(folders.values())).parent / "rep3d_benchmark_report")
    tests = {k: Path(v) for k, v in _pairs(args.test, "--test").items()} or None
    report = benchmark_report(folders, args.folds, out, reference=args.reference, test_predictions=tests,
                              test_labels=Path(args.test_labels) if args.test_labels else None,
                              allow_unfair=args.allow_unfair, cost=args.cost,
                              n_resamples=args.bootstrap, seed=args.seed, title=args.title, budget=args.budget,
                              command=getattr(args, "command_line", None))
    print(f"wrote {report} (tables: {out}/*.csv, plots: {out}/boxplot_*.png)")
    return 0


def _methods(args: argparse.Namespace) -> int:
    for m in METHODS.values():
        print(f"{m.name:20s} {m.planner:22s} {m.plans:24s} {m.trainer:32s} {m.description}")
    return 0


def _guarded(func):
    def run(args: argparse.Namespace) -> int:
        from rep3d_nnunet.benchmark.runner import BenchmarkError
        from rep3d_nnunet.benchmark.stats import StatisticsError  # scipy: imported only when a benchmark runs

        try:
            return func(args)
        except (BenchmarkError, MethodError, ResultsError, StatisticsError, UnfairComparisonError) as e:
            print(f"rep3d-nnunet benchmark: error: {e}", file=sys.stderr)
            return 1
    return run


def add_benchmark_parser(sub: argparse._SubParsersAction) -> None:
    """Add ``benchmark`` with its ``run``, ``report`` and ``methods`` subcommands."""
    p = sub.add_parser("benchmark", help="fair full-schedule benchmark: run the (method x fold) matrix, report it",
                       description="Benchmark methods on one dataset under identical preprocessing and splits.")
    bsub = p.add_subparsers(dest="benchmark_command", required=True)
    methods_help = f"benchmark methods (see `rep3d-nnunet benchmark methods`): {', '.join(METHODS)}"

    r = bsub.add_parser("run", help="prepare plans, preprocessing and splits once, then train every method x fold",
                        description="Plan every method on ONE preprocessed data identifier and ONE splits_final.json, "
                                    "then run stock nnUNetv2_train for each (method, fold): sequentially, one job per "
                                    "GPU (--gpus), or as a SLURM job array via submitit (--slurm). Resumable: "
                                    "finished folds are skipped, interrupted ones continue with --c.")
    r.add_argument("-d", "--dataset", required=True, help="dataset id or name")
    r.add_argument("-m", "--methods", nargs="+", required=True, metavar="METHOD", help=methods_help)
    r.add_argument("-f", "--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    r.add_argument("--schedule", default="full", help=f"training schedule: {SCHEDULE_HELP} (default full)")
    r.add_argument("--budget", choices=BUDGETS, default=None,
                   help="plan the nnU-Net-family methods with this planner preset (ResEnc's and ours: M, L, XL)")
    r.add_argument("--device", default="cuda", choices=("cuda", "cpu", "mps"), help="nnUNetv2_train -device")
    r.add_argument("--gpus", nargs="+", default=[], metavar="ID",
                   help="run one job per GPU of this machine in parallel (CUDA_VISIBLE_DEVICES), e.g. --gpus 0 1 2 3")
    r.add_argument("--np", type=int, default=4, help="processes for fingerprint/preprocessing (default 4)")
    r.add_argument("--train-arg", action="append", default=[], metavar="ARG",
                   help="extra argument passed to every nnUNetv2_train call (repeatable), e.g. --train-arg=--npz")
    r.add_argument("--allow-unfair", nargs="+", default=[], choices=("preprocessing",),
                   help="plan anyway although the methods' preprocessing settings differ (the report will say so)")
    r.add_argument("--dry-run", action="store_true",
                   help="prepare plans/preprocessing/splits and list every job with its command; train nothing")
    r.add_argument("--slurm", action="store_true", help="submit the jobs as a SLURM job array (submitit)")
    r.add_argument("--slurm-partition")
    r.add_argument("--slurm-hours", type=float, default=24.0, help="time limit per job; preempted/timed-out jobs "
                   "requeue and continue with --c (default 24)")
    r.add_argument("--slurm-gpus", type=int, default=1, help="GPUs per job (default 1)")
    r.add_argument("--slurm-cpus", type=int, default=8, help="CPUs per job (nnU-Net's augmentation workers)")
    r.add_argument("--slurm-mem-gb", type=int)
    r.add_argument("--slurm-array-parallelism", type=int)
    r.add_argument("--slurm-setup", nargs="+", metavar="LINE",
                   help="shell lines run before each job (e.g. 'module load cuda' 'source venv/bin/activate')")
    r.add_argument("--slurm-param", action="append", default=[], metavar="KEY=VALUE",
                   help="any other submitit parameter, e.g. slurm_account=abc (repeatable)")
    r.add_argument("--submitit-cluster", default=None, choices=("slurm", "local", "debug"),
                   help=argparse.SUPPRESS)  # tests / machines without SLURM: submitit's local executors
    r.set_defaults(func=_guarded(_run))

    rep = bsub.add_parser("report", help="per-case Dice statistics, fairness guard, tables and box plots",
                          description="Collect per-case Dice from nnU-Net's fold_X/validation/summary.json (and "
                                      "test predictions), refuse unfair comparisons, and write report.md, CSV tables "
                                      "and PNG box plots.")
    rep.add_argument("-d", "--dataset", help="dataset id or name (with -m)")
    rep.add_argument("-m", "--methods", nargs="+", default=[], metavar="METHOD", help=methods_help)
    rep.add_argument("--folder", action="append", default=[], metavar="NAME=PATH",
                     help="a method given by its nnU-Net model folder <trainer>__<plans>__<config> (repeatable)")
    rep.add_argument("-f", "--folds", nargs="+", type=int, default=[0, 1, 2, 3, 4])
    rep.add_argument("--schedule", default="full", help="the schedule the methods were run with (picks the trainer)")
    rep.add_argument("--budget", choices=BUDGETS, default=None, help="the planner preset the methods were run with")
    rep.add_argument("--reference", help="method tested against every other (default: the first)")
    rep.add_argument("--test", action="append", default=[], metavar="NAME=PRED_FOLDER",
                     help="test-set predictions of a method (its summary.json, or evaluated with --test-labels)")
    rep.add_argument("--test-labels", help="reference segmentations of the test set")
    rep.add_argument("--allow-unfair", nargs="+", default=[], choices=KINDS,
                     help="report anyway despite these differences; they are printed at the top of the report")
    rep.add_argument("--cost", default="full", choices=("full", "params", "none"),
                     help="network cost columns: parameters and GFLOPs (full, default), parameters only, or none")
    rep.add_argument("--bootstrap", type=int, default=10000, help="bootstrap resamples (default 10000)")
    rep.add_argument("--seed", type=int, default=0, help="bootstrap seed (default 0)")
    rep.add_argument("--title")
    rep.add_argument("-o", "--output", help="output folder (default: <results>/<dataset>/rep3d_benchmark_report)")
    rep.set_defaults(func=_guarded(_report))

    lst = bsub.add_parser("methods", help="list the benchmark's methods")
    lst.set_defaults(func=_methods)


def main(argv: Optional[List[str]] = None) -> int:
    """``benchmark ...`` from Python (tests, scripts): the same as ``rep3d-nnunet benchmark ...``."""
    parser = argparse.ArgumentParser(prog="rep3d-nnunet")
    add_benchmark_parser(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    args.command_line = shlex.join(["rep3d-nnunet", *(sys.argv[1:] if argv is None else argv)])
    return args.func(args) or 0
