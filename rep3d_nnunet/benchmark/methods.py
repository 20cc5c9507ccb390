"""The benchmark's method registry: a method name -> (planner, plans, trainer, configuration).

A method is data, like nnU-Net's plans: what ``nnUNetv2_plan_experiment -pl`` to run,
which plans it writes, which ``nnUNetv2_train -tr`` trains it. Schedules map a
trainer to its nnU-Net-style length variant (``<trainer>_<N>epochs``), to the tiny
variant the trainer authors provide for tests, or -- ``cpu:<epochs>x<iterations>,batch<N>`` --
to that tiny variant driven by ``REP3D_CPU_SCHEDULE`` (the same schedule for every method).
A budget (``M``, ``L``, ``XL``) moves the nnU-Net-family methods to the matching planner
preset (ResEnc's and ours, ``rep3d_nnunet.nnunet.planner.PRESETS``).

Facts the trainer classes own (a baseline's patch multiple, the UpKern variable) are read
from the classes when needed, not re-typed here.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import lru_cache
from typing import Dict, Iterable, List, Optional

from rep3d_nnunet.nnunet.schedule import CPU_SCHEDULE_ENV, SCHEDULE_PREFIX, parse_cpu_schedule

BUDGETS = ("M", "L", "XL")
SCHEDULE_HELP = ("full (1000 epochs), <N>epochs, cpu:<epochs>x<iterations>,batch<N> (every method's _tiny trainer "
                 "on that schedule, for CPU benchmarks), or tiny (tests only)")


class MethodError(ValueError):
    """Unknown method, schedule or budget."""


def check_schedule(schedule: str) -> str:
    """``schedule`` if it is one the runner knows, else ``MethodError`` listing the forms."""
    if schedule in ("full", "tiny") or re.fullmatch(r"\d+epochs", schedule):
        return schedule
    if schedule.startswith(SCHEDULE_PREFIX):
        try:
            parse_cpu_schedule(schedule)
        except ValueError as e:
            raise MethodError(str(e)) from None
        return schedule
    raise MethodError(f"schedule {schedule!r} is not one of: {SCHEDULE_HELP}")


def schedule_env(schedule: str) -> Dict[str, str]:
    """Environment a training job needs for ``schedule`` (``REP3D_CPU_SCHEDULE`` for cpu:..., else none)."""
    check_schedule(schedule)
    return {CPU_SCHEDULE_ENV: schedule[len(SCHEDULE_PREFIX):]} if schedule.startswith(SCHEDULE_PREFIX) else {}


@lru_cache(maxsize=None)
def _baseline_class(trainer: str) -> type:
    from rep3d_nnunet.nnunet.baselines import BASELINE_TRAINERS  # torch + MONAI: only when asked

    if trainer not in BASELINE_TRAINERS:
        raise MethodError(f"baseline trainer {trainer!r} is not among rep3d_nnunet's baseline trainers")
    return BASELINE_TRAINERS[trainer]


def trainer_patch_multiple(trainer: str) -> int:
    """The patch factor a baseline trainer enforces (its class attribute ``patch_multiple``)."""
    return int(_baseline_class(trainer).patch_multiple)


def upkern_env() -> str:
    """The variable MedNeXt's UpKern trainers read their k3 checkpoint from."""
    from rep3d_nnunet.nnunet.baselines.mednext import UPKERN_ENV

    return UPKERN_ENV


@dataclass(frozen=True)
class Method:
    """How to plan and train one benchmark row.

    Plans come from ``nnUNetv2_plan_experiment -pl planner``, or -- for baselines
    (``derived``) whose networks need a patch divisible by their trainer's ``patch_multiple``
    -- are a copy of ``planner``'s plans with the patch rounded up
    (``rep3d_nnunet.nnunet.baselines.plans``; same preprocessed data). ``init_from``: a method
    whose same-fold ``checkpoint_final.pth`` initialises this one (MedNeXt UpKern, through the
    variable the trainer reads, ``init_env``). ``family``: which planner presets a budget
    picks ("rep3d", "resenc"; anything else keeps its planner).
    """
    name: str
    planner: str                 # nnUNetv2_plan_experiment -pl
    source_plans: str            # the plans ``planner`` writes
    trainer: str                 # full-schedule trainer (nnUNetv2_train -tr)
    tiny_trainer: Optional[str]  # the tiny-schedule variant (tests, cpu: schedules); None if there is none
    description: str
    configuration: str = "3d_fullres"
    derived: bool = False        # train on a copy of source_plans with the patch rounded to patch_multiple
    init_from: Optional[str] = None
    family: str = "other"
    budget: Optional[str] = None

    @property
    def planner_plans(self) -> str:
        """The plans file ``planner`` writes."""
        return self.source_plans

    @property
    def patch_multiple(self) -> Optional[int]:
        """The factor the trainer needs the patch divisible by (derived plans only; read from the trainer class)."""
        return trainer_patch_multiple(self.trainer) if self.derived else None

    @property
    def plans(self) -> str:
        """The plans identifier it trains with (``nnUNetv2_train -p``)."""
        return f"{self.source_plans}_div{self.patch_multiple}" if self.derived else self.source_plans

    @property
    def init_env(self) -> Optional[str]:
        """The environment variable naming the checkpoint ``init_from`` hands over (None without one)."""
        return upkern_env() if self.init_from else None

    def for_budget(self, budget: Optional[str]) -> "Method":
        """This method planned with the ``budget`` preset (M, L, XL); None or a non-nnU-Net method: unchanged."""
        if budget is None:
            return self
        if budget not in BUDGETS:
            raise MethodError(f"budget {budget!r} is not one of {', '.join(BUDGETS)}")
        if self.family not in ("rep3d", "resenc"):
            return dataclasses.replace(self, budget=budget)
        from rep3d_nnunet.nnunet.planner import PRESETS

        ours, our_plans, resenc, resenc_plans = PRESETS[budget]
        planner, plans = (ours, our_plans) if self.family == "rep3d" else (resenc, resenc_plans)
        return dataclasses.replace(self, planner=planner, source_plans=plans, budget=budget)

    def trainer_for(self, schedule: str) -> str:
        """The trainer name for ``schedule``: 'full' (1000 epochs), 'tiny', or '<N>epochs'."""
        if schedule == "full":
            return self.trainer
        check_schedule(schedule)
        if schedule == "tiny" or schedule.startswith(SCHEDULE_PREFIX):
            if self.tiny_trainer is None:
                raise MethodError(f"method {self.name!r} has no tiny-schedule trainer (needed by {schedule!r})")
            return self.tiny_trainer
        return f"{self.trainer}_{int(schedule[:-len('epochs')])}epochs"


_STOCK = "ExperimentPlanner"
_REP3D = ("nnUNetPlannerRep3D", "nnUNetRep3DPlans")
_RESENC_M = ("nnUNetPlannerResEncM", "nnUNetResEncUNetMPlans")
_RESENC_L = ("nnUNetPlannerResEncL", "nnUNetResEncUNetLPlans")


def _rep3d(name: str, trainer: str, description: str) -> Method:
    return Method(name, *_REP3D, trainer, f"{trainer}_tiny", description, family="rep3d")


def _build_registry() -> Dict[str, Method]:
    methods = [
        Method("nnunet", _STOCK, "nnUNetPlans", "nnUNetTrainer", "nnUNetTrainer_tiny",
               "nnU-Net (plain 3D U-Net, the papers' '3D U-Net' row)"),
        Method("resenc_m", *_RESENC_M, "nnUNetTrainer", "nnUNetTrainer_tiny", "nnU-Net ResEnc M (8 GB preset)",
               family="resenc"),
        Method("resenc_l", *_RESENC_L, "nnUNetTrainer", "nnUNetTrainer_tiny", "nnU-Net ResEnc L (24 GB preset)",
               family="resenc"),
        _rep3d("rep3d", "nnUNetTrainerRep3D", "Rep3D (LRBM mask, 21^3, AdamW: the paper's recipe)"),
        _rep3d("rep3d_sgd", "nnUNetTrainerRep3D_SGD", "Rep3D (LRBM) with nnU-Net's SGD recipe"),
        _rep3d("rep3d_fixed_prior", "nnUNetTrainerRep3DFixedPrior", "ablation: fixed distance prior mask"),
        _rep3d("rep3d_plain_lk", "nnUNetTrainerRep3DPlainLK", "ablation: plain 21^3 kernel, no mask"),
        _rep3d("rep3d_csla", "nnUNetTrainerRep3DCSLA", "ablation: CSLA structural re-param (21^3 + 3^3)"),
        _rep3d("uxnet", "nnUNetTrainerUXNet", "3D UX-Net blocks (7^3), no mask"),
        _rep3d("uxnet_lrbm", "nnUNetTrainerUXNetLRBM", "3D UX-Net blocks + LRBM mask"),
    ]
    # MONAI baselines: nnUNetPlans with the patch rounded up to what the network accepts
    # (the factor is the trainer class's patch_multiple)
    def baseline(name: str, trainer: str, description: str, **kw) -> Method:
        return Method(name, _STOCK, "nnUNetPlans", trainer, f"{trainer}_tiny", description, derived=True, **kw)

    for size in "SBML":
        for k in (3, 5):
            trainer = f"nnUNetTrainerMedNeXt{size}_k{k}"
            methods.append(baseline(f"mednext_{size.lower()}_k{k}", trainer,
                                    f"MedNeXt {size}, kernel {k} (MONAI network, official recipe)"))
        trainer = f"nnUNetTrainerMedNeXt{size}_k5_UpKern"
        methods.append(baseline(f"mednext_{size.lower()}_k5_upkern", trainer,
                                f"MedNeXt {size}, kernel 5, UpKern-initialised from mednext_{size.lower()}_k3",
                                init_from=f"mednext_{size.lower()}_k3"))
    methods += [baseline("swinunetr", "nnUNetTrainerSwinUNETR", "SwinUNETR (MONAI)"),
                baseline("unetr", "nnUNetTrainerUNETR", "UNETR (MONAI)"),
                baseline("segresnet", "nnUNetTrainerSegResNet", "SegResNet (MONAI)")]
    return {m.name: m for m in methods}


METHODS: Dict[str, Method] = _build_registry()


def get_methods(names: Iterable[str], budget: Optional[str] = None) -> List[Method]:
    """Look up method names (order kept, duplicates refused); unknown names list what exists.

    ``budget`` (M, L, XL): the nnU-Net-family methods use that planner preset (``Method.for_budget``);
    two methods that become the same run (e.g. resenc_m and resenc_l) are refused.
    """
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
    methods = [METHODS[n].for_budget(budget) for n in names]
    runs: Dict[tuple, str] = {}
    for m in methods:
        key = (m.trainer, m.source_plans, m.derived)
        if key in runs:
            raise MethodError(f"with --budget {budget}, methods {runs[key]} and {m.name} are the same run "
                              f"({m.trainer} on {m.plans}); keep one of them")
        runs[key] = m.name
    return methods
