"""Patch-size constraints of the baseline networks, checked against nnU-Net plans.

nnU-Net's planner sizes patches for its own U-Net (divisible by the product of that
U-Net's strides). MedNeXt, SwinUNETR, UNETR and SegResNet downsample a fixed number
of times, so they need the patch divisible by their own factor. We never round
silently: a trainer whose plans do not fit raises ``PatchSizeError`` naming the
constraint, a compatible patch size, and the command that writes such plans
(``python -m rep3d_nnunet.nnunet.baselines.plans``, see ``plans.py``).
"""
from __future__ import annotations

import math
from typing import List, Sequence

from rep3d_nnunet.nnunet.architecture import PlansError


class PatchSizeError(PlansError):
    """A configuration's patch size that a baseline network cannot take; the message says how to fix it."""


def round_patch_size(patch_size: Sequence[int], multiple: int, rounding: str = "up") -> List[int]:
    """Each axis of ``patch_size`` rounded to a multiple of ``multiple`` ("up" or "down"; never below one multiple)."""
    if rounding not in ("up", "down"):
        raise ValueError(f"rounding must be 'up' or 'down', not {rounding!r}")
    step = math.ceil if rounding == "up" else math.floor
    return [max(multiple, int(step(int(p) / multiple)) * multiple) for p in patch_size]


def check_patch_size(patch_size: Sequence[int], multiple: int, network: str, reason: str, where: str,
                     dataset: str, plans_name: str, trainer: str, min_bottleneck_voxels: int = 1) -> None:
    """Raise ``PatchSizeError`` unless every axis of a 3D ``patch_size`` is divisible by ``multiple``.

    ``reason`` explains where the factor comes from; ``where`` names the configuration;
    ``dataset``/``plans_name``/``trainer`` go into the suggested fix. ``min_bottleneck_voxels``:
    the least number of voxels of the ``patch_size / multiple`` bottleneck (SwinUNETR: 2).
    """
    if len(patch_size) != 3:
        raise PatchSizeError(f"{trainer}: {network} is 3D only, but {where} has a {len(patch_size)}D patch "
                             f"{list(patch_size)}. Use 3d_fullres (or 3d_lowres).")
    fix = (f"`python -m rep3d_nnunet.nnunet.baselines.plans -d {dataset} -tr {trainer} --source-plans {plans_name}`"
           f" writes such plans (same preprocessed data); train with `-p {plans_name}_div{multiple}`. Or copy the "
           "plans JSON under a new name and edit that configuration's \"patch_size\" by hand.")
    if all(int(p) % multiple == 0 for p in patch_size):
        if math.prod(int(p) // multiple for p in patch_size) < min_bottleneck_voxels:
            raise PatchSizeError(
                f"{trainer}: patch size {list(patch_size)} of {where} leaves {network} a bottleneck of "
                f"{[int(p) // multiple for p in patch_size]} voxels; it needs at least {min_bottleneck_voxels} "
                f"(InstanceNorm cannot normalise a single voxel while training). Copy the plans JSON under a new "
                f"name and set that configuration's \"patch_size\" with at least one axis >= {2 * multiple}, "
                f"e.g. {[2 * multiple] + [int(p) for p in patch_size[1:]]}; train with -p <new plans name>.")
        return
    up, down = round_patch_size(patch_size, multiple, "up"), round_patch_size(patch_size, multiple, "down")
    raise PatchSizeError(
        f"{trainer}: patch size {list(patch_size)} of {where} is not divisible by {multiple} on every axis, which "
        f"{network} requires ({reason}). Compatible patch sizes: {up} (rounded up) or {down} (rounded down). "
        f"Fix: {fix} (add `--round down` to the command for the smaller patch)")
