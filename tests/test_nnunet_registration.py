"""Registration: idempotent, reversible, never touching a file we did not write, and never able to break
nnU-Net's own lookups (fake trees for the file handling; a private nnunetv2 copy for nnU-Net's lookups)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
import warnings
from pathlib import Path

import pytest

from rep3d_nnunet.cli import main
from rep3d_nnunet.nnunet import registration as R
from rep3d_nnunet.nnunet import shim

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def fake_tree(tmp_path, monkeypatch):
    paths = {"trainers": tmp_path / "training" / "nnUNetTrainer" / "rep3d_nnunet_trainers.py",
             "planners": tmp_path / "experiment_planning" / "rep3d_nnunet_planners.py"}
    for p in paths.values():
        p.parent.mkdir(parents=True)
    monkeypatch.setattr(R, "shim_paths", lambda: paths)
    return paths


@pytest.fixture(autouse=True)
def _forget_user_modules():
    """User modules are imported by file name: a name imported by an earlier test would shadow this test's file."""
    names = ("mod_trainera", "mod_trainerb", "mod_other", "broken")
    for n in names:
        sys.modules.pop(n, None)
    yield
    for n in names:
        sys.modules.pop(n, None)


def _record(shim_path: Path) -> dict:
    return json.loads(R.record_path(shim_path).read_text())


def test_register_is_idempotent_and_unregister_reverses_it(fake_tree, tmp_path, capsys):
    assert main(["register"]) == 0
    assert all(p.read_text().startswith(R.MARKER) for p in fake_tree.values())
    # the trainer shim answers for our trainers (recorded in its JSON, not written into the shim), no user folders
    record = _record(fake_tree["trainers"])
    assert record["classes"]["nnUNetTrainerRep3D"]["module"].startswith("rep3d_nnunet.nnunet.trainers")
    text = fake_tree["trainers"].read_text()
    assert "user_trainer_dirs" not in record and "import rep3d_nnunet" not in text and "from rep3d" not in text
    assert {"nnUNetPlannerRep3D", "nnUNetPlannerRep3DL"} <= set(_record(fake_tree["planners"])["classes"])
    stamps = {k: p.stat().st_mtime_ns for k, p in fake_tree.items()}
    capsys.readouterr()

    assert main(["register"]) == 0
    assert "already registered; nothing changed" in capsys.readouterr().out
    assert {k: p.stat().st_mtime_ns for k, p in fake_tree.items()} == stamps

    pyc = fake_tree["trainers"].parent / "__pycache__" / "rep3d_nnunet_trainers.cpython-311.pyc"
    pyc.parent.mkdir()
    pyc.write_bytes(b"x")
    assert main(["unregister"]) == 0
    assert not any(p.exists() or R.record_path(p).exists() for p in fake_tree.values()) and not pyc.exists()
    assert main(["unregister"]) == 1
    assert "nothing to unregister" in capsys.readouterr().err


def _user_folders(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, name in ((a, "TrainerA"), (b, "TrainerB")):
        folder.mkdir()
        (folder / f"mod_{name.lower()}.py").write_text(
            "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n"
            f"class {name}(nnUNetTrainer):\n    pass\n")
    (a / "broken.py").write_text("raise ImportError('user bug')\n")
    (b / "json.py").write_text("class Shadowed:\n    pass\n")  # name taken by the standard library
    return a, b


def test_user_folders_accumulate_and_are_loaded(fake_tree, tmp_path):
    a, b = _user_folders(tmp_path)
    with pytest.warns(UserWarning):
        R.register([str(a)])
        R.register([str(b), str(a)])
    assert R.registered_user_dirs() == [str(a), str(b)]
    with pytest.warns(UserWarning) as caught:
        found = R.load_user_trainers(R.registered_user_dirs())
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.py: ImportError: user bug" in messages and "'json' is already taken" in messages
    assert set(found) == {"TrainerA", "TrainerB"}
    # recorded by module name: the shim imports only the module of the class asked for, not every module
    classes = _record(fake_tree["trainers"])["classes"]
    assert classes["TrainerA"] == {"module": "mod_trainera", "folder": str(a)}
    assert str(a) not in sys.path and str(b) not in sys.path   # register leaves sys.path as it was


def test_shim_imports_only_the_module_asked_for_and_never_raises(fake_tree, tmp_path, monkeypatch):
    a, _ = _user_folders(tmp_path)
    (a / "mod_other.py").write_text("raise RuntimeError('must not be imported by a lookup of TrainerA')\n")
    with pytest.warns(UserWarning):   # register itself reports the two broken modules
        R.register([str(a)])
    record = str(R.record_path(fake_tree["trainers"]))
    for name in ("mod_trainera", "mod_other", "broken"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")   # a lookup of a registered, importable class warns about nothing
        assert shim.resolve("TrainerA", record).__name__ == "TrainerA"
    assert "mod_other" not in sys.modules and "broken" not in sys.modules
    with pytest.raises(AttributeError):   # stock names: not ours, nothing imported
        shim.resolve("nnUNetTrainer_250epochs", record)
    shutil.rmtree(a)   # the user deleted the folder: a warning and "not here", never an exception
    monkeypatch.delitem(sys.modules, "mod_trainera", raising=False)
    with pytest.warns(UserWarning, match="TrainerA is registered but cannot be imported"):
        with pytest.raises(AttributeError):
            shim.resolve("TrainerA", record)


def test_foreign_files_and_bad_folders_are_refused(fake_tree, tmp_path, capsys):
    fake_tree["planners"].write_text("# somebody else's module\n")
    assert main(["register"]) == 1
    assert "not written by rep3d-nnunet; refusing" in capsys.readouterr().err
    assert not fake_tree["trainers"].exists()  # checked everything before writing anything
    assert fake_tree["planners"].read_text() == "# somebody else's module\n"
    assert main(["unregister"]) == 1 and fake_tree["planners"].exists()
    fake_tree["planners"].unlink()
    R.record_path(fake_tree["trainers"]).write_text('{"somebody": "else"}')   # a foreign record too
    assert main(["register"]) == 1
    assert "not written by rep3d-nnunet; refusing" in capsys.readouterr().err
    R.record_path(fake_tree["trainers"]).unlink()
    assert main(["register", "--user-trainers", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err and not fake_tree["trainers"].exists()


def test_use_ext_trainer_leaves_user_folders_to_nnunet_where_its_search_works(fake_tree, tmp_path, monkeypatch,
                                                                              capsys):
    user = tmp_path / "user"
    user.mkdir()
    monkeypatch.setattr(R, "stock_trainer_search_works", lambda: (False, "RuntimeError: torchvision"))
    assert main(["register", "--user-trainers", str(user), "--use-ext-trainer"]) == 1
    assert "nnU-Net's own trainer search fails on this install" in capsys.readouterr().err
    assert not fake_tree["trainers"].exists()
    monkeypatch.setattr(R, "stock_trainer_search_works", lambda: (True, ""))
    assert main(["register", "--user-trainers", str(user), "--use-ext-trainer"]) == 0
    assert f"export nnUNet_extTrainer={user}" in capsys.readouterr().out
    assert R.registered_user_dirs() == []   # not recorded: nnU-Net's own mechanism finds them


def test_the_probe_sees_that_the_stock_search_fails_on_this_cpu_torch():
    """The stock search breaks at primus here (CPU-only torch); if this machine's torchvision matches, it works."""
    works, why = R.stock_trainer_search_works()
    # what primus needs (timm -> torchvision), imported in a fresh process: a failed import is not undone
    torchvision_ok = subprocess.run([sys.executable, "-c", "import torchvision.ops"], capture_output=True,
                                    timeout=300).returncode == 0
    assert works == torchvision_ok and (works or "torchvision" in why), why


def test_an_upgrade_keeps_the_user_folders_of_an_old_shim(fake_tree, tmp_path):
    user = tmp_path / "old"
    user.mkdir()
    fake_tree["trainers"].write_text(f"{R.MARKER}: old format\nUSER_TRAINER_DIRS = [{str(user)!r}]\n")
    assert R.registered_user_dirs() == [str(user)]
    R.register()
    assert _record(fake_tree["trainers"])["user_trainer_dirs"] == [str(user)]


def test_status_reports_each_shim(fake_tree, capsys):
    assert main(["status"]) == 0
    assert capsys.readouterr().out.count("absent") == 2
    R.register()
    assert main(["status"]) == 0
    out = capsys.readouterr().out
    assert out.count("registered (") == 2 and "run `rep3d-nnunet register` again" not in out
    record = R.record_path(fake_tree["trainers"])
    data = json.loads(record.read_text())
    del data["classes"]["nnUNetTrainerRep3D"]   # as written by an older version without that class
    record.write_text(json.dumps(data))
    assert main(["status"]) == 0
    assert "1 of our classes are not (or not so) in the record (e.g. nnUNetTrainerRep3D)" in capsys.readouterr().out


# ---------------------------------------------------------------- on a private nnunetv2 copy

# Run in a subprocess: rep3d_nnunet made unimportable (as after `pip uninstall rep3d-nnunet`) by a meta-path
# finder that refuses it, then nnU-Net's own lookup functions, unchanged.
LOOKUPS = textwrap.dedent("""\
    import importlib.abc, os, sys, warnings
    class _Gone(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "rep3d_nnunet" or name.startswith("rep3d_nnunet."):
                raise ModuleNotFoundError(f"No module named {name!r}", name=name)
    sys.meta_path.insert(0, _Gone())
    import nnunetv2
    from nnunetv2.utilities.find_class_by_name import recursive_find_python_class
    from nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name
    print("nnunetv2 from", nnunetv2.__file__)
    shim = os.path.join(nnunetv2.__path__[0], "training", "nnUNetTrainer", "rep3d_nnunet_trainers.py")
    print("shim present", os.path.isfile(shim))
    planner = recursive_find_python_class(os.path.join(nnunetv2.__path__[0], "experiment_planning"),
                                          "nnUNetPlannerResEncM", "nnunetv2.experiment_planning")
    print("found", planner.__name__)
    for name in sys.argv[1:]:
        print("found", recursive_find_trainer_class_by_name(name).__name__)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        import nnunetv2.training.nnUNetTrainer.rep3d_nnunet_trainers as t
        print("ours", hasattr(t, "nnUNetTrainerRep3D"), "|", " ".join(str(w.message) for w in caught))
    print("rep3d_nnunet imported", any(m.startswith("rep3d_nnunet") for m in sys.modules))
""")


def _nnunet_env(site: Path, **extra) -> dict:
    env = {k: v for k, v in os.environ.items() if k != "nnUNet_extTrainer"}
    env.update({"PYTHONPATH": str(site), **extra})
    return env


def _cli(args, env, cwd=None) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-c", "import sys; from rep3d_nnunet.cli import main; "
                           "sys.exit(main(sys.argv[1:]))", *args], env=env, cwd=cwd, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


@pytest.fixture(scope="module")
def private_site(tmp_path_factory):
    """A private nnunetv2 copy without ``primus``: the one stock trainer subpackage whose import fails on this
    CPU-only torch (timm -> torchvision: ``operator torchvision::nms does not exist``). Without it, nnU-Net's
    trainer search walks its whole tree, as it does on a GPU install with a matching torchvision."""
    from nnunet_helpers import private_nnunetv2

    site = private_nnunetv2(tmp_path_factory.mktemp("nnunetv2_noprimus"))
    shutil.rmtree(site / "nnunetv2" / "training" / "nnUNetTrainer" / "primus")
    return site


def test_nnunet_lookups_survive_removal_of_rep3d_nnunet_and_a_fresh_install_unregisters(private_site, tmp_path):
    """register -> rep3d_nnunet removed (pip-uninstall-like) -> nnU-Net's own lookups find its stock trainers and
    planner (the shims export nothing, silently) -> a fresh install elsewhere unregisters.

    What this proves: with our shims in nnunetv2, nnU-Net's unchanged ``recursive_find_trainer_class_by_name``
    (walking the whole stock tree, primus aside, see ``private_site``) and ``recursive_find_python_class`` on
    experiment_planning find nnUNetTrainer_250epochs, nnUNetTrainerNoMirroring and nnUNetPlannerResEncM in a
    process where any import of rep3d_nnunet fails. The old unguarded shim failed all three there
    (ModuleNotFoundError raised out of nnU-Net's search). The lookups import nothing of ours.
    """
    # an "installed" copy of our package that we can delete, as pip uninstall would
    install = tmp_path / "install"
    shutil.copytree(REPO / "rep3d_nnunet", install / "rep3d_nnunet",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    env_installed = _nnunet_env(private_site, PYTHONPATH=f"{private_site}{os.pathsep}{install}")
    out = _cli(["register"], env_installed, cwd=tmp_path).stdout
    assert "wrote" in out and str(private_site) in out
    trainer_shim = private_site / "nnunetv2" / "training" / "nnUNetTrainer" / "rep3d_nnunet_trainers.py"
    assert trainer_shim.is_file() and R.record_path(trainer_shim).is_file()
    assert str(install) not in trainer_shim.read_text() + R.record_path(trainer_shim).read_text()

    shutil.rmtree(install)   # pip uninstall rep3d-nnunet, without unregister
    proc = subprocess.run([sys.executable, "-c", LOOKUPS, "nnUNetTrainer_250epochs", "nnUNetTrainerNoMirroring"],
                          env=_nnunet_env(private_site), cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = proc.stdout
    assert f"nnunetv2 from {private_site}" in out and "shim present True" in out
    for name in ("nnUNetPlannerResEncM", "nnUNetTrainer_250epochs", "nnUNetTrainerNoMirroring"):
        assert f"found {name}" in out, out
    # asked for one of ours: not found, with a warning naming the fix; never an exception
    assert "ours False | rep3d-nnunet: nnUNetTrainerRep3D is registered but cannot be imported" in out
    assert "rep3d_nnunet imported False" in out

    # a fresh install (the repository's package) finds the files by their marker and removes them all
    out = _cli(["unregister"], _nnunet_env(private_site, PYTHONPATH=f"{private_site}{os.pathsep}{REPO}"),
               cwd=tmp_path).stdout
    assert out.count("removed") == 4
    assert not list((private_site / "nnunetv2").rglob("rep3d_nnunet_*"))


def test_registered_trainers_are_found_by_nnunet_and_planners_need_no_shim(private_site, tmp_path):
    """With our package present: nnU-Net's own lookup finds our trainer and a user trainer through the shim,
    importing only their modules (not the MONAI baselines, not the user folder's other modules); `rep3d-nnunet plan` is checked in the e2e tests."""
    user = tmp_path / "user"
    user.mkdir()
    (user / "my_trainers.py").write_text("from rep3d_nnunet.nnunet.trainers import nnUNetTrainerRep3D\n"
                                         "class nnUNetTrainerMine(nnUNetTrainerRep3D):\n    pass\n")
    (user / "unrelated.py").write_text("X = 1\n")
    env = _nnunet_env(private_site, PYTHONPATH=f"{private_site}{os.pathsep}{REPO}")
    _cli(["register", "--user-trainers", str(user)], env, cwd=tmp_path)
    try:
        code = ("import sys\nfrom nnunetv2.utilities.find_objects import recursive_find_trainer_class_by_name as f\n"
                "for n in sys.argv[1:]: print('found', f(n).__module__, n)\n"
                "print('baselines imported', 'rep3d_nnunet.nnunet.baselines' in sys.modules)\n"
                "print('unrelated imported', 'unrelated' in sys.modules)\nprint('sys.path has user', "
                f"{str(user)!r} in sys.path)\n")
        proc = subprocess.run([sys.executable, "-c", code, "nnUNetTrainerRep3D", "nnUNetTrainerMine"], env=env,
                              cwd=tmp_path, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "found rep3d_nnunet.nnunet.trainers" in proc.stdout and " nnUNetTrainerRep3D\n" in proc.stdout
        assert "found my_trainers nnUNetTrainerMine" in proc.stdout
        assert "baselines imported False" in proc.stdout and "unrelated imported False" in proc.stdout
        assert "sys.path has user True" in proc.stdout   # the folder of the class asked for, and only then
    finally:
        _cli(["unregister"], env, cwd=tmp_path)
