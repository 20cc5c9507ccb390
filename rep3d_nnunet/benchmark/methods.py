"""The benchmark's method registry: a method name -> (planner, plans, trainer, configuration).

A method is data, like nnU-Net's plans: what ``nnUNetv2_plan_experiment -pl`` to run,
which plans it writes, which ``nnUNetv2_train -tr`` trains it. Schedules map a
trainer to its nnU-Net-style length variant (``<trainer>_<N>epochs``) or to the tiny
variant the trainer authors provide for tests.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional


class MethodError(ValueError):
    """Unknown method or schedule."""


@dataclass(frozen=True)
class Method:
    """How to plan and train one benchmark row.

    Plans come from ``nnUNetv2_plan_experiment -pl planner``, or -- for networks that
    need a patch divisible by ``patch_multiple`` -- are a copy of ``planner``'s plans
    with the patch rounded up (``rep3d_nnunet.nnunet.baselines.plans``; same
    preprocessed data). ``init_from``: a method whose same-fold ``checkpoint_final.pth``
    initialises this one through the environment variable ``init_env`` (MedNeXt UpKern).
    """
    name: str
    planner: str                 # nnUNetv2_plan_experiment -pl
    plans: str                   # the plans identifier it trains with (nnUNetv2_train -p)
    trainer: str                 # full-schedule trainer (nnUNetv2_train -tr)
    tiny_trainer: Optional[str]  # the tiny-schedule variant (tests); None if there is none
    description: str
    configuration: str = "3d_fullres"
    source_plans: Optional[str] = None   # plans that `plans` is derived from (patch rounded to patch_multiple)
    patch_multiple: Optional[int] = None
    init_from: Optional[str] = None
    init_env: Optional[str] = None

    @property
    def planner_plans(self) -> str:
        """The plans file ``planner`` writes (``plans`` itself unless derived)."""
        return self.source_plans or self.plans

    def trainer_for(self, schedule: str) -> str:
        """The trainer name for ``schedule``: 'full' (1000 epochs), 'tiny', or '<N>epochs'."""
        if schedule == "full":
            return self.trainer
        if schedule == "tiny":
            if self.tiny_trainer is None:
                raise MethodError(f"method {self.name!r} has no tiny-schedule trainer")
            return self.tiny_trainer
        m = re.fullmatch(r"(\d+)epochs", schedule)
        if m:
            return f"{self.trainer}_{int(m.group(1))}epochs"
        raise MethodError(f"schedule {schedule!r} is not 'full', 'tiny' or '<N>epochs' (e.g. '250epochs')")


_STOCK = "ExperimentPlanner"
_REP3D = ("nnUNetPlannerRep3D", "nnUNetRep3DPlans")
_RESENC_M = ("nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans")
_RESENC_L = ("nnUNetPlannerResEncL", "nnUNetResEncUNetLPlans")


def _rep3d(name: str, trainer: str, description: str) -> Method:
    return Method(name, *_REP3D, trainer, f"{trainer}_tiny", description)


def _build_registry() -> Dict[str, Method]:
    methods = [
        Method("nnunet", _STOCK, "nnUNetPlans", "nnUNetTrainer", "nnUNetTrainer_tiny",
               "nnU-Net (plain 3D U-Net, the papers' '3D U-Net' row)"),
        Method("resenc_m", *_RESENC_M, "nnUNetTrainer", "nnUNetTrainer_tiny", "nnU-Net ResEnc M (8 GB preset)"),
        Method("resenc_l", *_RESENC_L, "nnUNetTrainer", "nnUNetTrainer_tiny", "nnU-Net ResEnc L (24 GB preset)"),
        _rep3d("rep3d", "nnUNetTrainerRep3D", "Rep3D (LRBM mask, 21^3, AdamW: the paper's recipe)"),
        _rep3d("rep3d_sgd", "nnUNetTrainerRep3D_SGD", "Rep3D (LRBM) with nnU-Net's SGD recipe"),
        _rep3d("rep3d_fixed_prior", "nnUNetTrainerRep3DFixedPrior", "ablation: fixed distance prior mask"),
        _rep3d("rep3d_plain_lk", "nnUNetTrainerRep3DPlainLK", "ablation: plain 21^3 kernel, no mask"),
        _rep3d("rep3d_csla", "nnUNetTrainerRep3DCSLA", "ablation: CSLA structural re-param (21^3 + 3^3)"),
        _rep3d("uxnet", "nnUNetTrainerUXNet", "3D UX-Net blocks (7^3), no mask"),
        _rep3d("uxnet_lrbm", "nnUNetTrainerUXNetLRBM", "3D UX-Net blocks + LRBM mask"),
    ]
    # MONAI baselines: nnUNetPlans with the patch rounded up to what the network accepts
    # (factors as the trainers enforce them: 2^4 for MedNeXt/UNETR, 32 for SwinUNETR, 8 for SegResNet)
    def baseline(name: str, trainer: str, multiple: int, description: str, **kw) -> Method:
        return Method(name, _STOCK, f"nnUNetPlans_div{multiple}", trainer, f"{trainer}_tiny", description,
                      source_plans="nnUNetPlans", patch_multiple=multiple, **kw)

    for size in "SBML":
        for k in (3, 5):
            trainer = f"nnUNetTrainerMedNeXt{size}_k{k}"
            methods.append(baseline(f"mednext_{size.lower()}_k{k}", trainer, 16,
                                    f"MedNeXt {size}, kernel {k} (MONAI network, official recipe)"))
        trainer = f"nnUNetTrainerMedNeXt{size}_k5_UpKern"
        methods.append(baseline(f"mednext_{size.lower()}_k5_upkern", trainer, 16,
                                f"MedNeXt {size}, kernel 5, UpKern-initialised from mednext_{size.lower()}_k3",
                                init_from=f"mednext_{size.lower()}_k3", init_env="MEDNEXT_UPKERN_CHECKPOINT"))
    methods += [baseline("swinunetr", "nnUNetTrainerSwinUNETR", 32, "SwinUNETR (MONAI)"),
                baseline("unetr", "nnUNetTrainerUNETR", 16, "UNETR (MONAI)"),
                baseline("segresnet", "nnUNetTrainerSegResNet", 8, "SegResNet (MONAI)")]
    return {m.name: m for m in methods}


METHODS: Dict[str, Method] = _build_registry()


def get_methods(names: Iterable[str]) -> List[Method]:
    """Look up method names (order kept, duplicates refused); unknown names list what exists."""
    names = list(names)
    unknown = [n for n in names if n not in METHODS]
    if unknown:
        raise MethodError(f"unknown benchmark method(s) {unknown}; known: {', '.join(METHODS)}")
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise MethodError(f"method(s) named twice: {dupes}")
    for n in names:
        dep = METHODS[n].init_from
        if dep and dep not in names:
            raise MethodError(f"method {n} is initialised from {dep}'s checkpoints: add {dep} to the methods")
    return [METHODS[n] for n in names]
