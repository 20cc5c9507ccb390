"""Make nnU-Net's stock commands find our trainers and planner: ``rep3d-nnunet register`` / ``unregister``.

Mechanism: two small re-export modules ("shims") written into the installed nnunetv2
package, each marked as ours on its first line:

- ``nnunetv2/training/nnUNetTrainer/rep3d_nnunet_trainers.py`` re-exports every
  trainer of ``rep3d_nnunet.nnunet.trainers`` plus the trainers found in the user
  folders given to ``register --user-trainers``;
- ``nnunetv2/experiment_planning/rep3d_nnunet_planners.py`` re-exports the planner.

Why not ``nnUNet_extTrainer`` alone: nnU-Net searches that path only after its own
tree, and walking its own tree imports ``primus`` (-> timm -> torchvision), which
raises on CPU-only torch builds before the external path is reached; planners have
no external hook at all. A top-level module of the searched folder is imported before
any subpackage, so the shims work on every install. Registration never touches a file
without our marker, is idempotent, and ``unregister`` removes exactly what it wrote.
"""
from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Optional, Sequence

MARKER = "# rep3d-nnunet registration shim"
# modules whose trainers the shim re-exports (star import: each defines __all__); those not installed are skipped
TRAINER_MODULES = ("rep3d_nnunet.nnunet.trainers", "rep3d_nnunet.nnunet.baselines")
_DIRS_PREFIX = "USER_TRAINER_DIRS = "


class RegistrationError(RuntimeError):
    """Registration cannot proceed; nothing was written."""


def shim_paths() -> Dict[str, Path]:
    """Where the two shims live in the installed nnunetv2 package."""
    import nnunetv2

    root = Path(nnunetv2.__file__).resolve().parent
    return {"trainers": root / "training" / "nnUNetTrainer" / "rep3d_nnunet_trainers.py",
            "planners": root / "experiment_planning" / "rep3d_nnunet_planners.py"}


def _trainer_shim(user_dirs: Sequence[str]) -> str:
    return (f"{MARKER}: written by `rep3d-nnunet register`, removed by `rep3d-nnunet unregister`. Do not edit.\n"
            "# nnU-Net's trainer search imports the top-level modules of this folder before its subpackages,\n"
            "# so the trainers exported here are found even where a subpackage fails to import.\n"
            + "".join(f"from {m} import *  # noqa: F401,F403\n" for m in TRAINER_MODULES
                      if importlib.util.find_spec(m) is not None) +
            "from rep3d_nnunet.nnunet.registration import load_user_trainers as _load_user_trainers\n"
            f"{_DIRS_PREFIX}{list(user_dirs)!r}\n"
            "globals().update(_load_user_trainers(USER_TRAINER_DIRS))\n")


def _planner_shim() -> str:
    return (f"{MARKER}: written by `rep3d-nnunet register`, removed by `rep3d-nnunet unregister`. Do not edit.\n"
            "from rep3d_nnunet.nnunet.planner import nnUNetPlannerRep3D  # noqa: F401\n")


def _is_ours(path: Path) -> bool:
    try:
        return path.read_text().startswith(MARKER)
    except OSError:
        return False


def registered_user_dirs() -> List[str]:
    """The user trainer folders named in the current trainer shim ([] if not registered)."""
    path = shim_paths()["trainers"]
    if not _is_ours(path):
        return []
    for line in path.read_text().splitlines():
        if line.startswith(_DIRS_PREFIX):
            return list(ast.literal_eval(line[len(_DIRS_PREFIX):]))
    return []


@dataclass
class RegistrationResult:
    written: List[Path]
    unchanged: List[Path]
    user_dirs: List[str]


def register(user_trainer_dirs: Sequence[str] = ()) -> RegistrationResult:
    """Write (or update) the shims; add ``user_trainer_dirs`` to the registered user folders.

    Idempotent: files already holding the wanted text are left untouched. Raises
    ``RegistrationError`` (writing nothing) if a shim path holds a file we did not write,
    a user folder does not exist, or nnunetv2's folders are not writable.
    """
    new_dirs = []
    for d in user_trainer_dirs:
        p = Path(d).expanduser().resolve()
        if not p.is_dir():
            raise RegistrationError(f"user trainer folder {d!r} does not exist or is not a folder")
        new_dirs.append(str(p))
    dirs = registered_user_dirs()
    dirs += [d for d in new_dirs if d not in dirs]
    wanted = {"trainers": _trainer_shim(dirs), "planners": _planner_shim()}
    paths = shim_paths()
    for key, path in paths.items():  # check everything before writing anything
        if path.exists() and not _is_ours(path):
            raise RegistrationError(f"{path} exists and was not written by rep3d-nnunet; refusing to overwrite it. "
                                    "Move it away (or rename it) and run `rep3d-nnunet register` again.")
        if not os.access(path.parent, os.W_OK):
            raise RegistrationError(f"cannot write to {path.parent} (nnunetv2 is installed read-only). Install "
                                    "nnunetv2 and rep3d-nnunet into a virtual environment you own.")
    written, unchanged = [], []
    for key, path in paths.items():
        if path.exists() and path.read_text() == wanted[key]:
            unchanged.append(path)
            continue
        tmp = path.with_suffix(".tmp-rep3d")
        tmp.write_text(wanted[key])
        os.replace(tmp, path)  # atomic: nnU-Net never sees a half-written shim
        written.append(path)
    return RegistrationResult(written, unchanged, dirs)


def unregister() -> List[Path]:
    """Remove the shims written by ``register`` (and their bytecode); return what was removed.

    Raises ``RegistrationError`` if nothing is registered. Files without our marker are never touched.
    """
    removed = []
    for path in shim_paths().values():
        if _is_ours(path):
            path.unlink()
            removed.append(path)
            for pyc in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
                pyc.unlink()
    if not removed:
        raise RegistrationError("nothing to unregister: no file written by `rep3d-nnunet register` was found in "
                                f"{', '.join(str(p.parent) for p in shim_paths().values())}")
    return removed


def load_user_trainers(folders: Sequence[str]) -> Dict[str, type]:
    """Import every top-level module of each folder; return its nnU-Net trainer classes by name.

    Called by the trainer shim at import. A module that fails to import is skipped with
    a warning (so one broken user file does not hide every other trainer).
    """
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    found: Dict[str, type] = {}
    for folder in folders:
        if not os.path.isdir(folder):
            warnings.warn(f"rep3d-nnunet: registered user trainer folder {folder} no longer exists; "
                          "run `rep3d-nnunet unregister` and register again")
            continue
        if folder not in sys.path:
            sys.path.append(folder)  # appended: user modules never shadow installed packages
        for file in sorted(Path(folder).glob("*.py")):
            if file.name.startswith("_"):
                continue
            try:
                module = importlib.import_module(file.stem)
            except Exception as e:  # any error in user code: report, keep going
                warnings.warn(f"rep3d-nnunet: skipped user trainer module {file}: {type(e).__name__}: {e}")
                continue
            if Path(getattr(module, "__file__", "") or "").resolve() != file.resolve():
                warnings.warn(f"rep3d-nnunet: skipped user trainer module {file}: the name {file.stem!r} is "
                              f"already taken by {getattr(module, '__file__', module)}; rename the file")
                continue
            for name, obj in inspect.getmembers(module, inspect.isclass):
                if issubclass(obj, nnUNetTrainer) and obj.__module__ == module.__name__:
                    found[name] = obj
    return found


def status() -> Dict[str, Optional[str]]:
    """For each shim: 'registered', 'foreign file' or 'absent'; plus the user folders."""
    out: Dict[str, Optional[str]] = {}
    for key, path in shim_paths().items():
        out[key] = f"registered ({path})" if _is_ours(path) else (
            f"foreign file ({path})" if path.exists() else f"absent ({path})")
    out["user trainer folders"] = ", ".join(registered_user_dirs()) or "none"
    return out
