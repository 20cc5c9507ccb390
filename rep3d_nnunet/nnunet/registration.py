"""Make nnU-Net's stock commands find our trainers and planners: ``rep3d-nnunet register`` / ``unregister``.

``register`` writes two copies of ``rep3d_nnunet/nnunet/shim.py`` into the installed
nnunetv2 package, each marked as ours on its first line, and beside each a JSON record
(``written_by: rep3d-nnunet register``) naming the classes it answers for:

- ``nnunetv2/training/nnUNetTrainer/rep3d_nnunet_trainers.py`` + ``.json``: our trainers
  and the trainers found in the user folders given to ``register --user-trainers``
  (the folders are listed there too);
- ``nnunetv2/experiment_planning/rep3d_nnunet_planners.py`` + ``.json``: our planners.

The shims import nothing until nnU-Net asks for a listed name, then only the module
defining it; a missing or broken rep3d_nnunet (``pip uninstall`` without ``unregister``)
or user module makes the name "not here", never an import error (see ``shim.py``).

Why shims and not ``nnUNet_extTrainer`` alone: nnU-Net searches that path only after its
own tree, and walking its own tree imports ``primus`` (-> timm -> torchvision), which
raises on CPU-only torch builds before the external path is reached; planners have no
external hook at all. A top-level module of the searched folder is imported before any
subpackage, so the shims work on every install. Where the stock search does work,
``register --use-ext-trainer`` leaves user folders to ``nnUNet_extTrainer`` and prints
the line to export. Registration never touches a file it did not write, is idempotent,
and ``unregister`` removes exactly what it wrote.
"""
from __future__ import annotations

import importlib
import inspect
import json
import os
import pkgutil
import subprocess
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

MARKER = "# rep3d-nnunet registration shim"
WRITTEN_BY = "rep3d-nnunet register"
RECORD_VERSION = 1
# our packages whose classes the shims answer for; a module whose optional dependency is missing is skipped
OUR_PACKAGE = "rep3d_nnunet.nnunet"
_SHIM_SOURCE = Path(__file__).with_name("shim.py")


class RegistrationError(RuntimeError):
    """Registration cannot proceed; nothing was written."""


def shim_paths() -> Dict[str, Path]:
    """Where the two shims live in the installed nnunetv2 package (their records: same name, ``.json``)."""
    import nnunetv2

    root = Path(nnunetv2.__file__).resolve().parent
    return {"trainers": root / "training" / "nnUNetTrainer" / "rep3d_nnunet_trainers.py",
            "planners": root / "experiment_planning" / "rep3d_nnunet_planners.py"}


def record_path(shim: Path) -> Path:
    """The JSON record beside a shim."""
    return shim.with_suffix(".json")


def shim_text() -> str:
    """The text written into nnunetv2: our marker, then ``shim.py`` unchanged."""
    return (f"{MARKER}: written by `rep3d-nnunet register`, removed by `rep3d-nnunet unregister`. Do not edit.\n"
            + _SHIM_SOURCE.read_text())


def _is_ours(path: Path) -> bool:
    try:
        return path.read_text().startswith(MARKER)
    except OSError:
        return False


def _read_record(path: Path) -> Optional[dict]:
    """A record we wrote, or None (absent, unreadable, or somebody else's file)."""
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) and record.get("written_by") == WRITTEN_BY else None


def _record_text(classes: Dict[str, dict], user_dirs: Sequence[str] = ()) -> str:
    record = {"written_by": WRITTEN_BY, "version": RECORD_VERSION, "classes": classes}
    if user_dirs:
        record["user_trainer_dirs"] = list(user_dirs)
    return json.dumps(record, indent=1, sort_keys=True) + "\n"


def registered_user_dirs() -> List[str]:
    """The user trainer folders in the current trainer record ([] if not registered)."""
    shim = shim_paths()["trainers"]
    record = _read_record(record_path(shim))
    if record is None and _is_ours(shim):
        return _legacy_user_dirs(shim)
    return list((record or {}).get("user_trainer_dirs", []))


def _legacy_user_dirs(shim: Path) -> List[str]:
    """The folders of a shim written by rep3d-nnunet <= 0.1 (a ``USER_TRAINER_DIRS = [...]`` line), so that
    registering again after an upgrade keeps them."""
    import ast

    for line in shim.read_text().splitlines():
        if line.startswith("USER_TRAINER_DIRS = "):
            try:
                return [str(d) for d in ast.literal_eval(line.split("=", 1)[1].strip())]
            except (ValueError, SyntaxError):
                return []
    return []


def find_user_trainer(name: str) -> Optional[type]:
    """A trainer class of a registered user folder, imported as the shim imports it; None if not registered."""
    from rep3d_nnunet.nnunet import shim

    record = record_path(shim_paths()["trainers"])
    entry = shim._classes(str(record)).get(name)
    if not isinstance(entry, dict) or not entry.get("folder"):
        return None
    try:
        return shim.resolve(name, str(record))
    except AttributeError:
        return None


# ---------------------------------------------------------------- what the shims answer for

def _classes_of_package(base: type, package: str = OUR_PACKAGE) -> Dict[str, dict]:
    """``{class name: {"module": defining module}}`` for every subclass of ``base`` defined in ``package``."""
    found: Dict[str, dict] = {}
    root = importlib.import_module(package)
    for info in pkgutil.walk_packages(root.__path__, root.__name__ + "."):
        try:
            module = importlib.import_module(info.name)
        except ImportError:  # an optional dependency (e.g. MONAI) of one module must not hide the others
            continue
        for name, obj in vars(module).items():
            if inspect.isclass(obj) and issubclass(obj, base) and obj is not base \
                    and obj.__module__ == module.__name__ and not name.startswith("_"):
                found[name] = {"module": module.__name__}
    return found


def our_trainers() -> Dict[str, dict]:
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    return _classes_of_package(nnUNetTrainer)


def our_planners() -> Dict[str, dict]:
    from nnunetv2.experiment_planning.experiment_planners.default_experiment_planner import ExperimentPlanner

    return _classes_of_package(ExperimentPlanner)


def load_user_trainers(folders: Sequence[str]) -> Dict[str, type]:
    """Import every top-level module of each folder; return its nnU-Net trainer classes by name.

    Run by ``register`` to record which module defines which class. A module that fails
    to import is skipped with a warning (one broken user file does not hide the others).
    Each folder is on ``sys.path`` only while its modules are imported.
    """
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer

    found: Dict[str, type] = {}
    for folder in folders:
        if not os.path.isdir(folder):
            warnings.warn(f"rep3d-nnunet: registered user trainer folder {folder} no longer exists; "
                          "run `rep3d-nnunet register` again without it")
            continue
        added = folder not in sys.path
        if added:
            sys.path.append(folder)  # appended: user modules never shadow installed packages
        try:
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
        finally:
            if added and folder in sys.path:
                sys.path.remove(folder)
    return found


def _user_trainer_entries(folders: Sequence[str]) -> Dict[str, dict]:
    entries = {}
    for name, cls in load_user_trainers(folders).items():
        folder = str(Path(inspect.getfile(cls)).resolve().parent)
        entries[name] = {"module": cls.__module__, "folder": folder}
    return entries


# ---------------------------------------------------------------- nnU-Net's own external search

def stock_trainer_search_works(timeout: float = 300) -> Tuple[bool, str]:
    """Whether nnU-Net's own trainer search walks its whole tree here (it does not on CPU-only torch,
    where ``primus`` -> torchvision raises). Run in a fresh process: a failed torchvision import
    would leave this one half-initialised."""
    probe = ("from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f\n"
             "try:\n    f('rep3d_probe_no_such_trainer')\n"
             "except RuntimeError as e:\n    assert 'Could not find requested nnunet trainer' in str(e), e\n")
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    try:
        proc = subprocess.run([sys.executable, "-c", probe], env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "the probe timed out"
    if proc.returncode == 0:
        return True, ""
    lines = [ln for ln in (proc.stderr or proc.stdout).strip().splitlines() if ln.strip()]
    return False, lines[-1] if lines else f"exit {proc.returncode}"


def ext_trainer_line(folders: Sequence[str]) -> str:
    """The shell line that makes nnU-Net's own search find ``folders``."""
    return f"export nnUNet_extTrainer={os.pathsep.join(folders)}"


# ---------------------------------------------------------------- register / unregister / status

@dataclass
class RegistrationResult:
    written: List[Path]
    unchanged: List[Path]
    user_dirs: List[str]
    classes: Dict[str, int] = field(default_factory=dict)   # per shim: how many class names it answers for
    ext_trainer: Optional[str] = None    # the export line, when user folders are left to nnUNet_extTrainer


def register(user_trainer_dirs: Sequence[str] = (), use_ext_trainer: bool = False) -> RegistrationResult:
    """Write (or update) the shims and their records; add ``user_trainer_dirs`` to the registered folders.

    Idempotent: files already holding the wanted text are left untouched. Raises
    ``RegistrationError`` (writing nothing) if a shim or record path holds a file we did
    not write, a user folder does not exist, nnunetv2's folders are not writable, or
    ``use_ext_trainer`` is asked where nnU-Net's own search fails.
    """
    new_dirs = []
    for d in user_trainer_dirs:
        p = Path(d).expanduser().resolve()
        if not p.is_dir():
            raise RegistrationError(f"user trainer folder {d!r} does not exist or is not a folder")
        new_dirs.append(str(p))
    paths = shim_paths()
    targets = [p for shim in paths.values() for p in (shim, record_path(shim))]
    for path in targets:  # check everything before writing anything
        ours = _is_ours(path) if path.suffix == ".py" else _read_record(path) is not None
        if path.exists() and not ours:
            raise RegistrationError(f"{path} exists and was not written by rep3d-nnunet; refusing to overwrite it. "
                                    "Move it away (or rename it) and run `rep3d-nnunet register` again.")
        if not os.access(path.parent, os.W_OK):
            raise RegistrationError(f"cannot write to {path.parent} (nnunetv2 is installed read-only). Install "
                                    "nnunetv2 and rep3d-nnunet into a virtual environment you own.")
    ext_line = None
    if use_ext_trainer:
        works, why = stock_trainer_search_works()
        if not works:
            raise RegistrationError(f"nnU-Net's own trainer search fails on this install ({why}), so "
                                    "nnUNet_extTrainer cannot reach your folders; register them without "
                                    "--use-ext-trainer")
        ext_line = ext_trainer_line(new_dirs)
        dirs = registered_user_dirs()
    else:
        dirs = registered_user_dirs()
        dirs += [d for d in new_dirs if d not in dirs]
    trainers = {**our_trainers(), **_user_trainer_entries(dirs)}
    wanted = {paths["trainers"]: shim_text(), record_path(paths["trainers"]): _record_text(trainers, dirs),
              paths["planners"]: shim_text(), record_path(paths["planners"]): _record_text(our_planners())}
    written, unchanged = [], []
    for path, text in wanted.items():
        if path.exists() and path.read_text() == text:
            unchanged.append(path)
            continue
        tmp = path.with_name(path.name + ".tmp-rep3d")
        tmp.write_text(text)
        os.replace(tmp, path)  # atomic: nnU-Net never sees a half-written shim
        written.append(path)
    classes = {"trainers": len(trainers), "planners": len(json.loads(wanted[record_path(paths["planners"])])
                                                           ["classes"])}
    return RegistrationResult(written, unchanged, dirs, classes, ext_line)


def unregister() -> List[Path]:
    """Remove the shims and records written by ``register`` (and the shims' bytecode); return what was removed.

    Works from any install of rep3d-nnunet (it finds its files by their marker, not by a
    path it remembered). Raises ``RegistrationError`` if nothing is registered. Files
    without our marker are never touched.
    """
    removed = []
    for path in shim_paths().values():
        if _is_ours(path):
            path.unlink()
            removed.append(path)
            for pyc in (path.parent / "__pycache__").glob(f"{path.stem}.*.pyc"):
                pyc.unlink()
        record = record_path(path)
        if _read_record(record) is not None:
            record.unlink()
            removed.append(record)
    if not removed:
        raise RegistrationError("nothing to unregister: no file written by `rep3d-nnunet register` was found in "
                                f"{', '.join(str(p.parent) for p in shim_paths().values())}")
    return removed


def status() -> Dict[str, Optional[str]]:
    """For each shim: 'registered (N classes)', 'outdated', 'foreign file' or 'absent'; plus the user folders."""
    out: Dict[str, Optional[str]] = {}
    current = {"trainers": our_trainers, "planners": our_planners}
    for key, path in shim_paths().items():
        record = _read_record(record_path(path))
        if _is_ours(path):
            recorded = (record or {}).get("classes", {})
            # ours now vs what the record lists (a newer rep3d-nnunet may have new classes, or moved them)
            missing = sorted(n for n, e in current[key]().items() if recorded.get(n) != e)
            stale = " -- outdated, run `rep3d-nnunet register` again" if path.read_text() != shim_text() else ""
            if missing:
                stale += (f" -- {len(missing)} of our classes are not (or not so) in the record "
                          f"(e.g. {missing[0]}): run `rep3d-nnunet register` again")
            out[key] = f"registered ({path}, {len(recorded)} classes){stale}"
        else:
            out[key] = f"foreign file ({path})" if path.exists() else f"absent ({path})"
    out["user trainer folders"] = ", ".join(registered_user_dirs()) or "none"
    return out
