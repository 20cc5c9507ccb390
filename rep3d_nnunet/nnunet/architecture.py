"""Plans <-> network: the Rep3D architecture block of a plans file, its variants and its checks.

One place answers "which Rep3DUNet does this configuration build", with one owner per
fact: the planner and ``plans merge-template`` turn an nnU-Net U-Net architecture block
into a Rep3D one holding the *geometry* (``rep3d_architecture``; templates hold geometry
only), trainers add *block, mask and CSLA* (``apply_variant``), and everything that
reads plans first calls ``check_rep3d_configuration``.
"""
from __future__ import annotations

import json
from copy import deepcopy
from dataclasses import dataclass, fields
from pathlib import Path
from typing import List, Optional, Sequence

import numpy as np

NETWORK_CLASS_NAME = "rep3d_nnunet.networks.unet.Rep3DUNet"
REQUIRES_IMPORT = ("conv_op", "norm_op", "dropout_op", "nonlin")
def _templates_dir() -> Path:
    """``plans_templates/`` of a source checkout, else the copy a wheel installs as package data."""
    checkout = Path(__file__).resolve().parents[2] / "plans_templates"
    return checkout if checkout.is_dir() else Path(__file__).resolve().parents[1] / "plans_templates"


TEMPLATES_DIR = _templates_dir()
# keys of an nnU-Net U-Net architecture block that carry over unchanged (decoder and geometry)
_SHARED_KEYS = ("n_stages", "features_per_stage", "conv_op", "kernel_sizes", "strides", "n_conv_per_stage_decoder",
                "conv_bias", "norm_op", "norm_op_kwargs", "dropout_op", "dropout_op_kwargs", "nonlin",
                "nonlin_kwargs")


class PlansError(ValueError):
    """Plans that a Rep3D trainer, the planner or the merge command cannot use; the message says why."""


@dataclass(frozen=True)
class Rep3DVariant:
    """What a plans template (or the planner) decides beyond nnU-Net's own geometry.

    ``large_kernel_size`` is used at every downsampled stage, ``small_kernel_size`` at
    full-resolution (stride 1) stages, where a large kernel would cost the most and see
    the least context per tap; both are clipped per axis to 2 * feature-map size - 1,
    beyond which taps only ever meet zero padding. ``n_blocks_per_stage`` = blocks per
    downsampled stage (the paper's depth 2); full-resolution stages get one block.
    """
    block: str = "rep3d"
    mask: str = "lrbm"
    csla_small_kernel: Optional[int] = None
    large_kernel_size: int = 21
    small_kernel_size: int = 3
    n_blocks_per_stage: int = 2
    stem_kernel_size: int = 7

    @classmethod
    def from_template(cls, name_or_path: str) -> "Rep3DVariant":
        """Load ``plans_templates/<name>.json`` (or a path); unknown keys are an error."""
        path = Path(name_or_path)
        if not path.suffix:
            path = TEMPLATES_DIR / f"{name_or_path}.json"
        if not path.is_file():
            known = sorted(p.stem for p in TEMPLATES_DIR.glob("*.json"))
            raise PlansError(f"plans template {name_or_path!r} not found (looked for {path}); "
                             f"shipped templates: {known}")
        block = json.loads(path.read_text())["rep3d"]
        owned_by_trainer = set(block) & set(TRAINER_KEYS)
        if owned_by_trainer:
            raise PlansError(f"{path}: {sorted(owned_by_trainer)} in the 'rep3d' block: templates hold geometry only "
                             "(kernel sizes, blocks per stage, stem); the trainer decides block, mask and CSLA "
                             "(e.g. -tr nnUNetTrainerRep3DFixedPrior, nnUNetTrainerUXNetLRBM). Remove those keys.")
        unknown = set(block) - set(GEOMETRY_KEYS)
        if unknown:
            raise PlansError(f"{path}: unknown keys {sorted(unknown)} in the 'rep3d' block "
                             f"(a template holds {list(GEOMETRY_KEYS)})")
        return cls(**block)


# one owner each: plans (templates, planners) hold the geometry, the trainer holds block, mask and CSLA
GEOMETRY_KEYS = ("large_kernel_size", "small_kernel_size", "n_blocks_per_stage", "stem_kernel_size")
TRAINER_KEYS = ("block", "mask", "csla_small_kernel")


def stage_feature_map_sizes(patch_size: Sequence[int], strides: Sequence[Sequence[int]]) -> List[List[int]]:
    """Spatial size of every stage's feature map for a patch (nnU-Net's patches divide evenly)."""
    size = np.array(patch_size, dtype=np.int64)
    out = []
    for s in strides:
        size = size // np.array(s)
        out.append([int(v) for v in size])
    return out


def _clip_kernel(k: int, fm: Sequence[int]) -> List[int]:
    # the largest odd size <= 2 * fm - 1 covers every pair of positions in the map; 3 at least
    return [max(3, min(k, 2 * int(f) - 1)) for f in fm]


def rep3d_architecture(unet_arch: dict, patch_size: Sequence[int], variant: Rep3DVariant = Rep3DVariant()) -> dict:
    """Turn an nnU-Net U-Net architecture block (PlainConvUNet / ResidualEncoderUNet) into a Rep3D one.

    Keeps the geometry (stages, strides, features, decoder) and adds the encoder's
    geometry from ``variant``'s geometry fields (``GEOMETRY_KEYS``): depthwise kernel
    and blocks per stage, stem. Block, mask and CSLA are not written: the trainer owns
    them (``apply_variant``); a network built from these plans without a trainer gets
    ``Rep3DUNet``'s defaults (Rep3D blocks, LRBM mask).
    """
    kw = unet_arch["arch_kwargs"]
    missing = [k for k in _SHARED_KEYS if k not in kw]
    if missing:
        raise PlansError(f"architecture {unet_arch.get('network_class_name')} lacks {missing}: "
                         "expected an nnU-Net U-Net architecture block")
    strides = [[int(v) for v in (s if isinstance(s, (list, tuple)) else [s] * len(patch_size))]
               for s in kw["strides"]]
    if len(patch_size) != 3:
        raise PlansError(f"Rep3D is 3D only; this configuration has a {len(patch_size)}D patch {list(patch_size)}")
    dw, blocks = [], []
    for s, fm in zip(strides, stage_feature_map_sizes(patch_size, strides)):
        full_res = all(v == 1 for v in s)
        dw.append(_clip_kernel(variant.small_kernel_size if full_res else variant.large_kernel_size, fm))
        blocks.append(1 if full_res else variant.n_blocks_per_stage)
    arch_kwargs = {k: deepcopy(kw[k]) for k in _SHARED_KEYS}
    arch_kwargs.update(strides=strides, dw_kernel_sizes=dw, n_blocks_per_stage=blocks,
                       stem_kernel_size=variant.stem_kernel_size)
    # geometry only: block, mask and CSLA are the trainer's (apply_variant, when it builds the network)
    return {"network_class_name": NETWORK_CLASS_NAME, "arch_kwargs": arch_kwargs,
            "_kw_requires_import": list(REQUIRES_IMPORT)}


def trained_architecture(unet_arch: dict, patch_size: Sequence[int], variant: Rep3DVariant) -> dict:
    """The architecture block a trainer of ``variant`` builds from plans made with ``variant``'s geometry.

    ``rep3d_architecture`` (the plans' part) followed by ``apply_variant`` (the trainer's part):
    what benchmarks and tests use to build one variant at one geometry.
    """
    arch = rep3d_architecture(unet_arch, patch_size, variant)
    arch["arch_kwargs"] = apply_variant(arch["arch_kwargs"], variant)
    return arch


def apply_variant(arch_kwargs: dict, variant: Rep3DVariant) -> dict:
    """A copy of Rep3D ``arch_kwargs`` built as ``variant`` (what a trainer does to its plans).

    Block, mask and CSLA come from the variant; the plans' depthwise kernels are kept
    but capped at the variant's ``large_kernel_size`` (3D UX-Net: 7). CSLA's small
    branch is clipped to a stage's kernel where that kernel is smaller (``CSLADWConv3d``).
    """
    out = deepcopy(arch_kwargs)
    out.update(block=variant.block, mask=variant.mask, csla_small_kernel=variant.csla_small_kernel)
    out["dw_kernel_sizes"] = [[min(int(k), variant.large_kernel_size)
                               for k in (ks if isinstance(ks, (list, tuple)) else [ks] * 3)]
                              for ks in out["dw_kernel_sizes"]]
    return out


def check_rep3d_configuration(configuration_manager, where: str) -> dict:
    """Return a configuration's Rep3D ``arch_kwargs`` or raise ``PlansError`` saying what is wrong.

    ``configuration_manager`` is nnU-Net's ``ConfigurationManager``; ``where`` names it in
    messages. Checks: 3D, builds ``Rep3DUNet``, odd kernel sizes.
    """
    cm = configuration_manager
    if len(cm.patch_size) != 3:
        raise PlansError(f"Rep3D is 3D only: {where} is {len(cm.patch_size)}D. "
                         "Use 3d_fullres (or 3d_lowres / 3d_cascade_fullres).")
    if cm.network_arch_class_name != NETWORK_CLASS_NAME:
        raise PlansError(
            f"{where} builds {cm.network_arch_class_name}, not {NETWORK_CLASS_NAME}: Rep3D trainers need "
            "Rep3D plans. Create them with `nnUNetv2_plan_experiment -d ID -pl nnUNetPlannerRep3D` "
            "(plans nnUNetRep3DPlans) or `rep3d-nnunet plans merge-template ...`, and pass them with -p.")
    kw = cm.network_arch_init_kwargs
    for key in ("dw_kernel_sizes", "kernel_sizes"):
        for stage, ks in enumerate(kw.get(key, [])):
            sizes = ks if isinstance(ks, (list, tuple)) else [ks]
            if any(int(k) % 2 == 0 or int(k) < 1 for k in sizes):
                raise PlansError(f"{where}: {key}[{stage}] = {ks} has an even (or non-positive) size; "
                                 "kernel sizes must be odd (3, 5, ..., 21)")
    return kw


def check_rep3d_plans(plans: dict, configuration: str) -> dict:
    """``check_rep3d_configuration`` for a configuration named in a plans dict (which must exist)."""
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = PlansManager(deepcopy(plans))
    where = f"configuration {configuration!r} of plans {pm.plans_name!r}"
    if configuration not in pm.available_configurations:
        raise PlansError(f"plans {pm.plans_name!r} have no configuration {configuration!r} "
                         f"(available: {pm.available_configurations})")
    return check_rep3d_configuration(pm.get_configuration(configuration), where)
