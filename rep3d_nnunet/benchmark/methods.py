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
    name: str
    planner: str                 # nnUNetv2_plan_experiment -pl
    plans: str                   # the plans identifier it writes (nnUNetv2_train -p)
    trainer: str                 # full-schedule trainer (nnUNetv2_train -tr)
    tiny_trainer: Optional[str]  # the tiny-schedule variant (tests); None if there is none
    description: str
    configuration: str = "3d_fullres"

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
    for size in "SBML":
        for k in (3, 5):
            trainer = f"nnUNetTrainerMedNeXt{size}_k{k}"
            methods.append(Method(f"mednext_{size.lower()}_k{k}", _STOCK, "nnUNetPlans", trainer, f"{trainer}_tiny",
                                  f"MedNeXt {size}, kernel {k} (MONAI network, official recipe)"))
    for name, trainer, description in (("swinunetr", "nnUNetTrainerSwinUNETR", "SwinUNETR (MONAI)"),
                                       ("unetr", "nnUNetTrainerUNETR", "UNETR (MONAI)"),
                                       ("segresnet", "nnUNetTrainerSegResNet", "SegResNet (MONAI)")):
        methods.append(Method(name, _STOCK, "nnUNetPlans", trainer, f"{trainer}_tiny", description))
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
    return [METHODS[n] for n in names]
