"""``rep3d-nnunet``: a thin argparse shell over the package's Python functions.

Adding a subcommand = one ``_add_<name>(subparsers)`` function that builds its parser
and sets ``func`` (taking the parsed args, returning an exit code or None), plus one
entry in ``SUBCOMMANDS``. Expected failures are ``CLIError``s: printed as one line,
exit code 1.
"""
from __future__ import annotations

import argparse
import sys
from typing import Callable, List, Optional

from rep3d_nnunet.analysis.cli import add_erf_parser, add_masks_parser
from rep3d_nnunet.benchmark.cli import add_benchmark_parser
from rep3d_nnunet.nnunet.architecture import PlansError
from rep3d_nnunet.nnunet.environment import NnUNetEnvironmentError
from rep3d_nnunet.nnunet.registration import RegistrationError

# errors that mean "bad input or state", reported without a traceback
CLIError = (PlansError, NnUNetEnvironmentError, RegistrationError)


def _add_register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("register", help="make nnU-Net's commands find the Rep3D trainers and planner",
                       description="Write two small re-export modules into the installed nnunetv2 so that "
                                   "nnUNetv2_plan_experiment -pl, nnUNetv2_train -tr and nnUNetv2_predict find "
                                   "our classes (and the trainers in --user-trainers folders). Idempotent.")
    p.add_argument("--user-trainers", metavar="DIR", action="append", default=[],
                   help="folder of your own trainer modules (e.g. subclasses of nnUNetTrainerRep3D); repeatable")

    def run(args: argparse.Namespace) -> None:
        from rep3d_nnunet.nnunet.registration import register

        result = register(args.user_trainers)
        for path in result.written:
            print(f"wrote {path}")
        if not result.written:
            print("already registered; nothing changed")
        print(f"user trainer folders: {', '.join(result.user_dirs) or 'none'}")
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


def _add_plans(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("plans", help="plans files: merge a Rep3D template into existing plans")
    plans_sub = p.add_subparsers(dest="plans_command", required=True)
    m = plans_sub.add_parser(
        "merge-template", help="write new plans: an existing plans file with a Rep3D architecture template",
        description="Keep nnU-Net's patch size, batch size and preprocessed data of SOURCE_PLANS; give every 3D "
                    "configuration the architecture of TEMPLATE; write it as a new plans file (the source is "
                    "never modified).")
    m.add_argument("-d", "--dataset", required=True, help="dataset id or name, e.g. 4 or Dataset004_Hippocampus")
    m.add_argument("-t", "--template", required=True,
                   help="template name in plans_templates/ (e.g. rep3d_lrbm, uxnet) or a path to a .json")
    m.add_argument("--source-plans", default="nnUNetPlans", help="plans to start from (default: nnUNetPlans)")
    m.add_argument("--plans-name", default=None,
                   help="name of the new plans (default: <source-plans>_<template>); use it with -p")

    def run(args: argparse.Namespace) -> None:
        from rep3d_nnunet.nnunet.templates import merge_template

        path = merge_template(args.dataset, args.template, args.source_plans, args.plans_name)
        print(f"wrote {path}\ntrain with: nnUNetv2_train {args.dataset} 3d_fullres FOLD -tr nnUNetTrainerRep3D "
              f"-p {path.stem}")
    m.set_defaults(func=run)


SUBCOMMANDS: List[Callable[[argparse._SubParsersAction], None]] = [
    _add_register,
    _add_unregister,
    _add_status,
    _add_plans,
    add_erf_parser,
    add_masks_parser,
    add_benchmark_parser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rep3d-nnunet", description="Rep3D for nnU-Net v2")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args) or 0
    except CLIError as e:
        print(f"rep3d-nnunet {args.command}: error: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
