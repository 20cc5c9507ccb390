"""``rep3d-nnunet plans merge-template``: a plans template applied to an existing plans file.

For users who want nnU-Net's own patch and batch size: every 3D configuration of
the source plans keeps its geometry, patch, batch and data identifier (so no new
preprocessing), and gets a Rep3D architecture built by the template's rules. The
result is written as a new plans file; the source is only read.
"""
from __future__ import annotations

import json
from copy import deepcopy
from pathlib import Path
from typing import Optional

from rep3d_nnunet.nnunet.architecture import PlansError, Rep3DVariant, rep3d_architecture
from rep3d_nnunet.nnunet.environment import preprocessed_dataset_folder


def merged_plans(plans: dict, variant: Rep3DVariant, plans_name: str) -> dict:
    """A copy of ``plans`` named ``plans_name`` whose 3D configurations build Rep3D networks (2D ones dropped)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    out = deepcopy(plans)
    out["plans_name"] = plans_name
    pm = PlansManager(deepcopy(plans))
    configurations = {}
    for name, config in out["configurations"].items():
        patch_size = pm.get_configuration(name).patch_size
        if len(patch_size) != 3:
            continue  # Rep3D is 3D only; configurations inheriting from a 2D one go too
        if "architecture" in config:
            config["architecture"] = rep3d_architecture(config["architecture"], patch_size, variant)
        configurations[name] = config
    if not configurations:
        raise PlansError(f"plans {plans.get('plans_name')!r} have no 3D configuration to merge a template into")
    out["configurations"] = configurations
    return out


def merge_template(dataset: str, template: str, source_plans: str = "nnUNetPlans",
                   plans_name: Optional[str] = None) -> Path:
    """Write ``<plans_name>.json`` next to ``<source_plans>.json``; return its path.

    ``plans_name`` defaults to ``<source_plans>_<template name>``. Refuses to overwrite
    an existing plans file (raises ``PlansError``; nothing written).
    """
    folder = preprocessed_dataset_folder(dataset)
    variant = Rep3DVariant.from_template(template)
    plans_name = plans_name or f"{source_plans}_{Path(template).stem}"
    source = folder / f"{source_plans}.json"
    target = folder / f"{plans_name}.json"
    if not source.is_file():
        raise PlansError(f"source plans {source} not found (run nnUNetv2_plan_and_preprocess, or pass "
                         "--source-plans with the name of an existing plans file)")
    if target.exists():
        raise PlansError(f"{target} already exists; choose another --plans-name (nothing was written)")
    plans = merged_plans(json.loads(source.read_text()), variant, plans_name)
    target.write_text(json.dumps(plans, indent=4))
    return target
