"""The one home for our nnU-Net plumbing: paths, dataset names, console scripts, checkpoints, trainer
lookup and the predictor's network. The benchmark, the demo and the analysis call these functions
and nothing of nnU-Net's glue directly, so each fact about nnU-Net is written once.

Top-level imports stay light (no torch, no nnunetv2): the trainers import this module for their
environment check, and the CLI imports it for its error types.
"""
from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import pkgutil
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union

NNUNET_VARS = ("nnUNet_raw", "nnUNet_preprocessed", "nnUNet_results")
# nnU-Net's experiment planner calls torch.set_num_threads(nnUNet_n_proc_DA), which raises for 0
PLANNING_SCRIPTS = ("nnUNetv2_plan_and_preprocess", "nnUNetv2_plan_experiment")
REGISTER_HINT = "rep3d-nnunet register --user-trainers DIR"


class NnUNetEnvironmentError(RuntimeError):
    """A required nnU-Net path variable is unset or points nowhere, or a dataset cannot be found."""


class ConsoleScriptError(RuntimeError):
    """A console script is missing or exited non-zero; the message holds the command and its output's tail."""


class CheckpointError(RuntimeError):
    """A checkpoint file cannot be read, or lacks what its reader needs."""


class TrainerNotFoundError(LookupError):
    """No trainer class of that name in our package, the registered user folders or nnunetv2."""


class PlanError(RuntimeError):
    """Our planner cannot run as asked (unknown planner, no fingerprint yet)."""


# ---------------------------------------------------------------- environment paths and datasets

def check_nnunet_environment(*names: str) -> None:
    """Raise ``NnUNetEnvironmentError`` naming every variable among ``names`` that is unset."""
    missing = [n for n in names if not os.environ.get(n)]
    if missing:
        raise NnUNetEnvironmentError(
            f"environment variable(s) {', '.join(missing)} not set: nnU-Net needs nnUNet_raw, nnUNet_preprocessed "
            "and nnUNet_results to point at folders (see nnU-Net's documentation/setting_up_paths.md)")


def nnunet_paths(*required: str) -> Dict[str, Path]:
    """The nnU-Net folders set in the environment *now*, as paths; ``required`` ones must be set."""
    check_nnunet_environment(*required)
    return {v: Path(os.environ[v]) for v in NNUNET_VARS if os.environ.get(v)}


def dataset_name(dataset: Union[str, int]) -> str:
    """``DatasetXXX_Name`` for an id or a name, searched in the nnU-Net folders named by the environment now.

    nnunetv2.paths reads the variables once at import, which a long-lived process or a
    test may have changed since, so the folders are listed here instead.
    """
    dataset = str(dataset)
    if dataset.startswith("Dataset"):
        return dataset
    try:
        prefix = f"Dataset{int(dataset):03d}_"
    except ValueError:
        raise NnUNetEnvironmentError(f"dataset {dataset!r} is neither an id nor a DatasetXXX_Name") from None
    found = sorted({p.name for root in nnunet_paths().values() if root.is_dir()
                    for p in root.iterdir() if p.name.startswith(prefix) and p.is_dir()})
    if len(found) != 1:
        raise NnUNetEnvironmentError(
            f"dataset {dataset!r}: {'no' if not found else 'more than one'} folder {prefix}* in "
            f"nnUNet_raw / nnUNet_preprocessed / nnUNet_results {found or ''}")
    return found[0]


def dataset_id(dataset: Union[str, int]) -> int:
    """The numeric id of a dataset id or name (``Dataset004_Hippocampus`` -> 4)."""
    m = re.match(r"Dataset(\d{3})_", dataset_name(dataset))
    if not m:
        raise NnUNetEnvironmentError(f"{dataset!r} is not a dataset name like Dataset004_Name")
    return int(m.group(1))


def preprocessed_dataset_folder(dataset: Union[str, int]) -> Path:
    """``$nnUNet_preprocessed/DatasetXXX_Name`` for a dataset id or name; raises if it does not exist."""
    check_nnunet_environment("nnUNet_preprocessed")
    name = dataset_name(dataset)
    folder = Path(os.environ["nnUNet_preprocessed"]) / name
    if not folder.is_dir():
        raise NnUNetEnvironmentError(f"{folder} does not exist: run nnUNetv2_plan_and_preprocess for {name} first")
    return folder


# ---------------------------------------------------------------- console scripts

def console_script(name: str, required: bool = True) -> str:
    """The path of a console script of this Python's environment (no need to activate it), else PATH's;
    when it is in neither: an error, or (``required=False``) the bare name."""
    local = Path(sys.executable).parent / name
    if local.exists():
        return str(local)
    found = shutil.which(name)
    if found is None:
        if not required:
            return name
        raise ConsoleScriptError(f"{name} not found: install nnunetv2 and rep3d-nnunet into this environment "
                                 f"({Path(sys.executable).parent})")
    return found


def script_environment(args: Sequence[str], env: Optional[Mapping[str, str]] = None) -> Dict[str, str]:
    """The environment a console script runs with: ``env`` (default: ours) passed through unchanged,
    ``nnUNet_n_proc_DA`` included, except that a planning script never sees ``nnUNet_n_proc_DA=0``
    (nnU-Net's planner hands that value to ``torch.set_num_threads``, which rejects 0)."""
    out = dict(os.environ if env is None else env)
    if Path(args[0]).name in PLANNING_SCRIPTS and out.get("nnUNet_n_proc_DA", "").strip() == "0":
        del out["nnUNet_n_proc_DA"]
    return out


def run_console_script(args: Sequence[str], env: Optional[Mapping[str, str]] = None, *, what: Optional[str] = None,
                       stream: bool = False, log: Optional[Callable[[str], None]] = print,
                       tail_chars: int = 3000) -> str:
    """Run an nnU-Net (or our) console script by name; return its output (``''`` when streamed).

    ``args[0]`` is a script name (``nnUNetv2_train``) or a path; a name is resolved in this
    Python's environment first. Output is captured (or streamed live with ``stream``); a
    non-zero exit raises ``ConsoleScriptError`` with the command and the output's tail.
    """
    exe = args[0] if os.sep in args[0] else console_script(args[0])
    cmd = [exe, *map(str, args[1:])]
    if log is not None:
        log(f"{what + ': ' if what else '$ '}{' '.join(map(str, args))}")
    run_env = script_environment(args, env)
    if stream:
        proc = subprocess.run(cmd, env=run_env)
        out = ""
    else:
        proc = subprocess.run(cmd, env=run_env, capture_output=True, text=True)
        out = proc.stdout + proc.stderr
    if proc.returncode != 0:
        tail = f":\n{out[-tail_chars:]}" if out else " (output above)"
        raise ConsoleScriptError(f"{what or Path(args[0]).name} failed ({' '.join(map(str, args))}, "
                                 f"exit {proc.returncode}){tail}")
    return out


# ---------------------------------------------------------------- checkpoints

TRAINER_CHECKPOINT_KEYS = ("network_weights", "optimizer_state", "current_epoch", "init_args", "trainer_name")


def read_checkpoint(path: Union[str, Path], required: Sequence[str] = (), device: Any = "cpu") -> dict:
    """``torch.load`` a checkpoint, or raise ``CheckpointError`` if it is unreadable or lacks ``required`` keys.

    ``weights_only`` is off: nnU-Net checkpoints hold a ``torch.device`` and plain Python
    objects. Read only checkpoints you trust (as nnU-Net itself does).
    """
    import torch

    try:
        checkpoint = torch.load(path, map_location=device, weights_only=False)
    except Exception as e:  # truncated zip, wrong file, pickle error: all mean "not a usable checkpoint"
        raise CheckpointError(f"cannot read checkpoint {path}: {type(e).__name__}: {e}. The file is truncated "
                              "or not an nnU-Net checkpoint; nothing was changed. Restore it or use another "
                              "checkpoint of this fold (checkpoint_best.pth / checkpoint_latest.pth).") from e
    missing = [k for k in required if not isinstance(checkpoint, dict) or k not in checkpoint]
    if missing:
        raise CheckpointError(f"checkpoint {path} lacks {missing}: not a checkpoint written by an nnU-Net trainer")
    return checkpoint


def state_dict_of(checkpoint: Mapping[str, Any]) -> Dict[str, Any]:
    """The network weights of an nnU-Net checkpoint, a {'state_dict': ...} file, or a bare state dict."""
    for key in ("network_weights", "state_dict", "model"):
        if isinstance(checkpoint.get(key), dict):
            return checkpoint[key]
    return dict(checkpoint)


# ---------------------------------------------------------------- trainer classes

def _trainer_in_module(module: Any, name: str, base: type) -> Optional[type]:
    cls = getattr(module, name, None)
    return cls if inspect.isclass(cls) and issubclass(cls, base) else None


def _our_trainer(name: str, base: type) -> Optional[type]:
    """A trainer of rep3d_nnunet.nnunet (any submodule; one whose optional dependency is missing is skipped)."""
    try:
        ours = importlib.import_module("rep3d_nnunet.nnunet")
    except ImportError:
        return None
    for module_name in ("rep3d_nnunet.nnunet.trainers", "rep3d_nnunet.nnunet.baselines"):
        try:
            found = _trainer_in_module(importlib.import_module(module_name), name, base)
        except ImportError:
            found = None
        if found is not None:
            return found
    for info in pkgutil.walk_packages(ours.__path__, ours.__name__ + "."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional dependency of one module must not hide the others' trainers
            continue
        found = _trainer_in_module(module, name, base)
        if found is not None:
            return found
    return None


def _nnunet_trainer(name: str, base: type) -> Tuple[Optional[type], List[str]]:
    """nnU-Net's own trainers and ``nnUNet_extTrainer`` folders, searched with nnU-Net's own function,
    one subpackage at a time: a subpackage whose import fails (``primus`` -> torchvision on CPU-only
    torch) is skipped and reported instead of ending the search."""
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    root = os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer")
    skipped: List[str] = []
    for info in pkgutil.iter_modules([root]):  # top-level modules first, as nnU-Net does (our shim among them)
        if info.ispkg:
            continue
        try:
            found = _trainer_in_module(importlib.import_module(f"nnunetv2.training.nnUNetTrainer.{info.name}"),
                                       name, base)
        except Exception as e:  # noqa: BLE001 -- a broken module must not end the search
            skipped.append(f"nnunetv2.training.nnUNetTrainer.{info.name} ({type(e).__name__})")
            continue
        if found is not None:
            return found, skipped
    for info in pkgutil.iter_modules([root]):
        if not info.ispkg:
            continue
        package = f"nnunetv2.training.nnUNetTrainer.{info.name}"
        try:
            found = recursive_find_python_class(os.path.join(root, info.name), name, package,
                                                nnunetv2.__path__[0])
        except Exception as e:  # noqa: BLE001
            skipped.append(f"{package} ({type(e).__name__})")  # e.g. primus -> torchvision on CPU-only torch
            continue
        if found is not None and issubclass(found, base):
            return found, skipped
    for folder in filter(None, os.environ.get("nnUNet_extTrainer", "").split(os.pathsep)):
        if not os.path.isdir(folder):
            continue
        try:
            found = recursive_find_python_class(folder, name, None, base_folder=folder,
                                                cleanup_imports_from_base_folder=True)
        except Exception as e:  # noqa: BLE001
            skipped.append(f"nnUNet_extTrainer folder {folder} ({type(e).__name__})")
            continue
        if found is not None and issubclass(found, base):
            return found, skipped
    return None, skipped


def find_trainer_class(name: str) -> type:
    """The trainer class called ``name``, looked up where it is cheapest and most likely first:

    nnUNetTrainer itself; our package (``rep3d_nnunet.nnunet``); the user trainer folders
    recorded by ``rep3d-nnunet register --user-trainers``; then nnU-Net's own trainers and
    ``nnUNet_extTrainer``, one subpackage at a time (so a stock subpackage that cannot be
    imported here does not hide the rest). Raises ``TrainerNotFoundError`` naming the
    registration command when the class is nowhere.
    """
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    if name == nnUNetTrainer.__name__:
        return nnUNetTrainer
    found = _our_trainer(name, nnUNetTrainer)
    if found is not None:
        return found
    from rep3d_nnunet.nnunet import registration

    user_dirs = registration.registered_user_dirs()
    found = registration.find_user_trainer(name)
    if found is not None:
        return found
    found, skipped = _nnunet_trainer(name, nnUNetTrainer)
    if found is not None:
        return found
    note = f" (not searched, their import fails here: {', '.join(skipped)})" if skipped else ""
    raise TrainerNotFoundError(
        f"trainer class {name!r} not found: not in rep3d_nnunet, not in the registered user trainer folders "
        f"({', '.join(user_dirs) or 'none'}), not in nnunetv2's trainers{note}. If it is your own trainer, "
        f"register the folder holding its module: `{REGISTER_HINT}`.")


def nnunet_finds_trainer(name: str) -> type:
    """The class ``nnUNetv2_train -tr NAME`` / ``nnUNetv2_predict`` would get: nnU-Net's own lookup, run here.

    For pre-flight checks of stock commands. Its failures (not found, or a stock module
    that cannot be imported on this install) become ``TrainerNotFoundError`` with the fix.
    """
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name

    try:
        cls = recursive_find_trainer_class_by_name(name)
    except Exception as e:  # noqa: BLE001 -- e.g. torchvision's "operator torchvision::nms does not exist"
        first = str(e).splitlines()[0] if str(e) else ""
        raise TrainerNotFoundError(f"nnU-Net's own lookup cannot find trainer {name!r} ({type(e).__name__}: "
                                   f"{first}). Run `rep3d-nnunet register` (our trainers; add --user-trainers DIR "
                                   "for yours) and check the name.") from None
    if cls is None:
        raise TrainerNotFoundError(f"nnU-Net's own lookup cannot find trainer {name!r}; run `{REGISTER_HINT}`")
    return cls


def nnunet_finds_planner(name: str) -> type:
    """The class ``nnUNetv2_plan_experiment -pl NAME`` would get (nnU-Net's own search of experiment_planning)."""
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class

    try:
        cls = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "experiment_planning"), name,
                                          "nnunetv2.experiment_planning")
    except Exception as e:  # noqa: BLE001
        cls, why = None, f"{type(e).__name__}: {e}"
    else:
        why = "not found"
    if cls is None:
        raise TrainerNotFoundError(f"nnU-Net's own lookup cannot find planner {name!r} ({why}); run "
                                   "`rep3d-nnunet register`, or plan with `rep3d-nnunet plan -pl NAME` (no "
                                   "registration needed)")
    return cls


# ---------------------------------------------------------------- planning with our planners

def our_planner(name: str) -> type:
    """The planner class ``name`` of ``rep3d_nnunet.nnunet.planner``; ``PlanError`` listing ours otherwise."""
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    from rep3d_nnunet.nnunet import planner as planners

    ours = {n: c for n, c in vars(planners).items()
            if inspect.isclass(c) and issubclass(c, ExperimentPlanner) and c.__module__ == planners.__name__}
    if name not in ours:
        raise PlanError(f"unknown planner {name!r}; ours: {', '.join(sorted(ours))} (nnU-Net's own planners: "
                        "nnUNetv2_plan_experiment -pl NAME)")
    return ours[name]


def plan_experiment(dataset: Union[str, int], planner: str = "nnUNetPlannerRep3D",
                    gpu_memory_target_in_gb: Optional[float] = None, plans_name: Optional[str] = None,
                    preprocessor_name: str = "DefaultPreprocessor") -> Path:
    """Plan ``dataset`` with our planner class through nnU-Net's ``plan_experiment_dataset`` (the function behind
    ``nnUNetv2_plan_experiment``), the class passed directly: no registration involved. Returns the plans file."""
    cls = our_planner(planner)
    folder = preprocessed_dataset_folder(dataset)
    if not (folder / "dataset_fingerprint.json").is_file():
        raise PlanError(f"{folder / 'dataset_fingerprint.json'} does not exist: run "
                        f"nnUNetv2_plan_and_preprocess -d {dataset} -c 3d_fullres first")
    from nnunetv2.experiment_planning.plan_and_preprocess_api import plan_experiment_dataset

    n_proc_da = os.environ.get("nnUNet_n_proc_DA")
    if (n_proc_da or "").strip() == "0":  # the planner hands it to torch.set_num_threads, which rejects 0
        del os.environ["nnUNet_n_proc_DA"]
    try:
        _, plans_identifier = plan_experiment_dataset(dataset_id(dataset), cls, gpu_memory_target_in_gb,
                                                      preprocessor_name, None, plans_name)
    finally:
        if n_proc_da is not None:
            os.environ["nnUNet_n_proc_DA"] = n_proc_da
    return folder / f"{plans_identifier}.json"


# ---------------------------------------------------------------- the predictor's network

def network_io(plans: Union[dict, Any], dataset_json: dict, configuration: str) -> Tuple[Any, Any, int, int]:
    """``(plans_manager, configuration_manager, num_input_channels, num_output_channels)`` as the predictor
    derives them from plans (a dict or a PlansManager) and dataset.json."""
    from nnunetv2.utilities.label_handling.label_handling import determine_num_input_channels
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    pm = plans if isinstance(plans, PlansManager) else PlansManager(plans)
    cm = pm.get_configuration(configuration)
    return pm, cm, determine_num_input_channels(pm, cm, dataset_json), \
        pm.get_label_manager(dataset_json).num_segmentation_heads


def build_network(trainer_class: type, plans_manager: Any, configuration_manager: Any, num_input_channels: int,
                  num_output_channels: int, *, form: str = "deploy", deep_supervision: bool = False):
    """The trainer's network: ``form='deploy'`` is what nnU-Net's predictor builds, ``'training'`` what
    the trainer trains (Rep3D masks and generators present). Other trainers have one form.

    ``rep3d_nnunet.nnunet.forms`` owns the forms; this is its entry for our tools.
    """
    from rep3d_nnunet.nnunet import forms

    return forms.build_network(trainer_class, plans_manager, configuration_manager, num_input_channels,
                               num_output_channels, form=form, deep_supervision=deep_supervision)


def load_weights(network: Any, state_dict: Mapping[str, Any]) -> None:
    """Load a checkpoint's weights into ``network`` (training-form weights fold into a deploy network)."""
    from rep3d_nnunet.nnunet import forms

    forms.load_weights(network, state_dict)


def build_predictor_network(trainer: Union[str, type], plans: Union[dict, Any], dataset_json: dict,
                            configuration: str, *, form: str = "deploy", device: Optional[str] = None):
    """The network of ``trainer`` for ``plans``/``configuration`` as ``nnUNetv2_predict`` builds it
    (deep supervision off); ``device`` (e.g. ``'meta'``) is the default device while building."""
    import torch

    cls = find_trainer_class(trainer) if isinstance(trainer, str) else trainer
    pm, cm, n_in, n_out = network_io(plans, dataset_json, configuration)
    with torch.device(device) if device else contextlib.nullcontext():
        return build_network(cls, pm, cm, n_in, n_out, form=form, deep_supervision=False)
