"""``rep3d-nnunet``: the one command line of the package, a thin argparse shell over its Python functions.

Subcommands: ``register``, ``unregister``, ``status``, ``plan``, ``plans divisible``,
``plans merge-template``, ``demo``, ``benchmark``, ``erf``, ``masks``. Adding one = one
``_add_<name>(subparsers)`` function that builds its parser and sets ``func`` (taking the
parsed args, returning an exit code or None), plus one entry in ``SUBCOMMANDS``. Expected
failures are the errors in ``CLIError``: printed as one line, exit code 1.
"""
from __future__ import annotations

import argparse
import shlex
import sys
from typing import Callable, List, Optional

from rep3d_nnunet.nnunet.adapter import (CheckpointError, ConsoleScriptError, NnUNetEnvironmentError, PlanError,
                                         TrainerNotFoundError)
from rep3d_nnunet.nnunet.registration import RegistrationError


def _cli_errors() -> tuple:
    """Errors that mean "bad input or state", reported without a traceback (imported late: they pull in torch)."""
    from rep3d_nnunet.demo.run import DemoError
    from rep3d_nnunet.nnunet.architecture import PlansError

    return (PlansError, NnUNetEnvironmentError, RegistrationError, ConsoleScriptError, CheckpointError,
            TrainerNotFoundError, DemoError, PlanError)


def _add_register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("register", help="make nnU-Net's commands find the Rep3D trainers and planners",
                       description="Write two small modules (and their JSON records) into the installed nnunetv2 so "
                                   "that nnUNetv2_plan_experiment -pl, nnUNetv2_train -tr and nnUNetv2_predict find "
                                   "our classes (and the trainers in --user-trainers folders). Idempotent; safe if "
                                   "rep3d-nnunet is later removed without `unregister`.")
    p.add_argument("--user-trainers", metavar="DIR", action="append", default=[],
                   help="folder of your own trainer modules (e.g. subclasses of nnUNetTrainerRep3D); repeatable. "
                        "Run register again after adding a trainer class")
    p.add_argument("--use-ext-trainer", action="store_true",
                   help="leave the --user-trainers folders to nnU-Net's own nnUNet_extTrainer search (checked to "
                        "work on this install first) and print the line to export")

    def run(args: argparse.Namespace) -> None:
        from rep3d_nnunet.nnunet.registration import register

        result = register(args.user_trainers, use_ext_trainer=args.use_ext_trainer)
        for path in result.written:
            print(f"wrote {path}")
        if not result.written:
            print("already registered; nothing changed")
        print(f"classes: {result.classes.get('trainers', 0)} trainers, {result.classes.get('planners', 0)} planners")
        print(f"user trainer folders: {', '.join(result.user_dirs) or 'none'}")
        if result.ext_trainer:
            print("nnU-Net's own trainer search works on this install; it finds your folders with:\n"
                  f"    {result.ext_trainer}")
    p.set_defaults(func=run)


def _add_unregister(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("unregister", help="remove exactly the files `register` wrote")

    def run(args: argparse.Namespace) -> None:
        from rep3d_nnunet.nnunet.registration import unregister

        for path in unregister():
            print(f"removed {path}")
    p.set_defaults(func=run)


def _add_status(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("status", help="show what is registered")

    def run(args: argparse.Namespace) -> None:
        from rep3d_nnunet.nnunet.registration import status

        for key, value in status().items():
            print(f"{key}: {value}")
    p.set_defaults(func=run)


def _add_plan(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plan", help="run a Rep3D planner through nnU-Net's planning API (no registration needed)",
                       description="Plan a dataset with one of our planners (rep3d_nnunet.nnunet.planner) through "
                                   "nnU-Net's plan_experiment_dataset. Needs the dataset fingerprint "
                                   "(nnUNetv2_plan_and_preprocess -d D -c 3d_fullres writes it, and the "
                                   "preprocessed data the plans reuse).")
    p.add_argument("-d", "--dataset", required=True, help="dataset id or name, e.g. 4 or Dataset004_Hippocampus")
    p.add_argument("-pl", "--planner", default="nnUNetPlannerRep3D",
                   help="planner class of rep3d_nnunet.nnunet.planner (default nnUNetPlannerRep3D)")
    p.add_argument("-gpu_memory_target", type=float, default=None, help="GPU memory target in GB (planner default)")
    p.add_argument("-overwrite_plans_name", default=None, help="plans name (default: the planner's)")
    p.add_argument("-preprocessor_name", default="DefaultPreprocessor")

    def run(args: argparse.Namespace) -> None:
        from rep3d_nnunet.nnunet.adapter import plan_experiment

        path = plan_experiment(args.dataset, args.planner, args.gpu_memory_target, args.overwrite_plans_name,
                               args.preprocessor_name)
        print(f"wrote {path}\ntrain with: nnUNetv2_train {args.dataset} 3d_fullres FOLD -tr nnUNetTrainerRep3D "
              f"-p {path.stem}")
    p.set_defaults(func=run)


def _add_plans(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plans", help="plans files: patch-divisible copies, Rep3D templates merged into plans")
    plans_sub = p.add_subparsers(dest="plans_command", required=True, metavar="{divisible,merge-template}")
    m = plans_sub.add_parser(
        "merge-template", help="write new plans: an existing plans file with a Rep3D architecture template",
        description="Keep nnU-Net's patch size, batch size and preprocessed data of SOURCE_PLANS; give every 3D "
                    "configuration the architecture of TEMPLATE; write it as a new plans file (the source is "
                    "never modified).")
    m.add_argument("-d", "--dataset", required=True, help="dataset id or name, e.g. 4 or Dataset004_Hippocampus")
    m.add_argument("-t", "--template", required=True,
                   help="geometry template in plans_templates/ (rep3d, uxnet) or a path to a .json")
    m.add_argument("--source-plans", default="nnUNetPlans", help="plans to start from (default: nnUNetPlans)")
    m.add_argument("--plans-name", default=None,
                   help="name of the new plans (default: <source-plans>_<template>); use it with -p")

    def run(args: argparse.Namespace) -> None:
        from rep3d_nnunet.nnunet.templates import merge_template

        path = merge_template(args.dataset, args.template, args.source_plans, args.plans_name)
        print(f"wrote {path}\ntrain with: nnUNetv2_train {args.dataset} 3d_fullres FOLD -tr nnUNetTrainerRep3D "
              f"-p {path.stem}")
    m.set_defaults(func=run)

    d = plans_sub.add_parser(
        "divisible", help="write plans whose patch size the MONAI baselines accept (same preprocessed data)",
        description="Write plans (a copy of existing plans, same preprocessed data) whose 3D patch sizes the "
                    "baseline networks accept. Give the trainers (-tr) or the factor (--multiple).")
    d.add_argument("-d", "--dataset", required=True, help="dataset id or name, e.g. 4 or Dataset004_Hippocampus")
    d.add_argument("-tr", "--trainers", nargs="+", default=[], help="baseline trainer names; factor = their LCM")
    d.add_argument("--multiple", type=int, default=None, help="explicit factor instead of -tr")
    d.add_argument("--source-plans", default="nnUNetPlans", help="plans to copy (default nnUNetPlans)")
    d.add_argument("--plans-name", default=None, help="name of the new plans (default <source>_div<factor>)")
    d.add_argument("--round", dest="rounding", choices=("up", "down"), default="up",
                   help="round the patch up (more context and memory; default) or down")
    d.add_argument("-c", "--configurations", nargs="+", default=None, help="only these configurations")

    def divisible(args: argparse.Namespace) -> int:
        from rep3d_nnunet.nnunet.baselines.plans import run_divisible  # imports MONAI: only when it runs

        return run_divisible(args)
    d.set_defaults(func=divisible)


def _add_demo(sub: argparse._SubParsersAction) -> None:
    from rep3d_nnunet.demo.run import configure_demo_parser

    configure_demo_parser(sub.add_parser(
        "demo", help="plan, train, predict and evaluate a small model with nnU-Net's commands, then a picture",
        description="The demo (also `bash scripts/demo.sh`, which sets up the environment first): a synthetic "
                    "dataset or --raw DIR, nnU-Net's stock commands, a PNG and the Dice of held-out cases."))


def _add_benchmark(sub: argparse._SubParsersAction) -> None:
    from rep3d_nnunet.benchmark.cli import add_benchmark_parser

    add_benchmark_parser(sub)


def _add_analysis(sub: argparse._SubParsersAction) -> None:
    from rep3d_nnunet.analysis.cli import add_erf_parser, add_masks_parser

    add_erf_parser(sub)
    add_masks_parser(sub)


SUBCOMMANDS: List[Callable[[argparse._SubParsersAction], None]] = [
    _add_register,
    _add_unregister,
    _add_status,
    _add_plan,
    _add_plans,
    _add_demo,
    _add_benchmark,
    _add_analysis,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rep3d-nnunet", description="Rep3D for nnU-Net v2")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    args = build_parser().parse_args(argv)
    args.command_line = shlex.join(["rep3d-nnunet", *argv])  # recorded by `benchmark run` / `report`
    try:
        return args.func(args) or 0
    except _cli_errors() as e:
        what = " ".join(filter(None, [args.command, getattr(args, "plans_command", None)]))
        print(f"rep3d-nnunet {what}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
