"""Write plans whose patch size the baseline networks accept: ``rep3d-nnunet plans divisible``.

The new plans are a copy of the source plans (default ``nnUNetPlans``) with every 3D
configuration's patch size rounded to a multiple of the trainers' factor (and of the
product of the plans' own U-Net strides, so nnU-Net's U-Net still builds from them).
``data_identifier`` is kept, so the new plans read the same preprocessed data: same
spacing, normalisation and splits as every other method. Batch size is kept too.

Example (Hippocampus; one plans file serving all four families, factor 32):

    rep3d-nnunet plans divisible -d 4 -tr nnUNetTrainerSwinUNETR nnUNetTrainerUNETR \
        nnUNetTrainerSegResNet nnUNetTrainerMedNeXtS_k3
    nnUNetv2_train 4 3d_fullres 0 -tr nnUNetTrainerSwinUNETR -p nnUNetPlans_div32

``python -m rep3d_nnunet.nnunet.baselines.plans ...`` (the older spelling) is the same command.
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from copy import deepcopy
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import numpy as np

from rep3d_nnunet.nnunet.baselines.constraints import round_patch_size
from rep3d_nnunet.nnunet.adapter import NnUNetEnvironmentError, preprocessed_dataset_folder


def trainer_multiple(trainer_names: Sequence[str]) -> int:
    """The least common multiple of the patch factors of the named baseline trainers."""
    from rep3d_nnunet.nnunet.baselines import BASELINE_TRAINERS

    unknown = [n for n in trainer_names if n not in BASELINE_TRAINERS]
    if unknown:
        raise ValueError(f"unknown baseline trainer(s) {unknown}; known: {sorted(BASELINE_TRAINERS)}")
    return math.lcm(*(BASELINE_TRAINERS[n].patch_multiple for n in trainer_names))


def _strides_product(configuration: dict) -> List[int]:
    strides = configuration.get("architecture", {}).get("arch_kwargs", {}).get("strides")
    if not strides:
        return [1, 1, 1]
    return [int(v) for v in np.prod(np.array(strides, dtype=np.int64).reshape(len(strides), -1), axis=0)]


def divisible_plans(plans: dict, multiple: int, plans_name: str, rounding: str = "up",
                    configurations: Optional[Sequence[str]] = None) -> Dict[str, object]:
    """A copy of ``plans`` named ``plans_name`` whose 3D patch sizes are multiples of ``multiple``.

    Returns ``{"plans": new_plans, "changes": {configuration: (old, new)}}``. Only
    configurations holding their own ``patch_size`` are edited (inheriting ones follow).
    """
    out = deepcopy(plans)
    out["plans_name"] = plans_name
    changes = {}
    for name, conf in out["configurations"].items():
        if configurations and name not in configurations:
            continue
        patch = conf.get("patch_size")
        if patch is None or len(patch) != 3:
            continue
        # the plans' own U-Net must still divide the patch (its strides product per axis)
        axis_multiple = [math.lcm(multiple, s) for s in _strides_product(conf)]
        new = [round_patch_size([p], m, rounding)[0] for p, m in zip(patch, axis_multiple)]
        conf["patch_size"] = new
        changes[name] = (list(patch), new)
    return {"plans": out, "changes": changes}


def write_divisible_plans(dataset: str, multiple: int, source_plans: str = "nnUNetPlans",
                          plans_name: Optional[str] = None, rounding: str = "up",
                          configurations: Optional[Sequence[str]] = None) -> Path:
    """Write ``<source_plans>_div<multiple>.json`` (or ``plans_name``) beside the source plans; return its path."""
    folder = preprocessed_dataset_folder(dataset)
    source = folder / f"{source_plans}.json"
    if not source.is_file():
        raise NnUNetEnvironmentError(f"{source} does not exist: plan the dataset first "
                                     f"(nnUNetv2_plan_and_preprocess -d {dataset} -c 3d_fullres)")
    name = plans_name or f"{source_plans}_div{multiple}"
    result = divisible_plans(json.loads(source.read_text()), multiple, name, rounding, configurations)
    target = folder / f"{name}.json"
    target.write_text(json.dumps(result["plans"], indent=4))
    for conf, (old, new) in result["changes"].items():
        print(f"{name} / {conf}: patch size {old} -> {new}")
    return target


def run_divisible(args: argparse.Namespace) -> int:
    """Write the plans; bad input (unknown trainer, both or neither of -tr/--multiple) is a one-line error."""
    try:
        if (args.multiple is None) == (not args.trainers):
            raise ValueError("give exactly one of -tr TRAINER [...] or --multiple N")
        multiple = args.multiple if args.multiple is not None else trainer_multiple(args.trainers)
        path = write_divisible_plans(args.dataset, multiple, args.source_plans, args.plans_name, args.rounding,
                                     args.configurations)
    except ValueError as e:
        print(f"rep3d-nnunet plans divisible: error: {e}", file=sys.stderr)
        return 1
    print(f"wrote {path}; train with -p {path.stem}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m rep3d_nnunet.nnunet.baselines.plans``: the same as ``rep3d-nnunet plans divisible``."""
    from rep3d_nnunet.cli import main as cli_main

    return cli_main(["plans", "divisible", *(sys.argv[1:] if argv is None else argv)])


if __name__ == "__main__":
    sys.exit(main())
