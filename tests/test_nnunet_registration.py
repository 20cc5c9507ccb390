"""Registration shims: idempotent, reversible, never touching a file we did not write (against a fake nnunetv2 tree)."""
from __future__ import annotations

import pytest

from rep3d_nnunet.cli import main
from rep3d_nnunet.nnunet import registration as R


@pytest.fixture
def fake_tree(tmp_path, monkeypatch):
    paths = {"trainers": tmp_path / "training" / "nnUNetTrainer" / "rep3d_nnunet_trainers.py",
             "planners": tmp_path / "experiment_planning" / "rep3d_nnunet_planners.py"}
    for p in paths.values():
        p.parent.mkdir(parents=True)
    monkeypatch.setattr(R, "shim_paths", lambda: paths)
    return paths


def test_register_is_idempotent_and_unregister_reverses_it(fake_tree, tmp_path, capsys):
    assert main(["register"]) == 0
    assert all(p.read_text().startswith(R.MARKER) for p in fake_tree.values())
    text = fake_tree["trainers"].read_text()
    assert "from rep3d_nnunet.nnunet.trainers import *" in text and "USER_TRAINER_DIRS = []" in text
    stamps = {k: p.stat().st_mtime_ns for k, p in fake_tree.items()}
    capsys.readouterr()

    assert main(["register"]) == 0
    assert "already registered; nothing changed" in capsys.readouterr().out
    assert {k: p.stat().st_mtime_ns for k, p in fake_tree.items()} == stamps

    pyc = fake_tree["trainers"].parent / "__pycache__" / "rep3d_nnunet_trainers.cpython-311.pyc"
    pyc.parent.mkdir()
    pyc.write_bytes(b"x")
    assert main(["unregister"]) == 0
    assert not any(p.exists() for p in fake_tree.values()) and not pyc.exists()
    assert main(["unregister"]) == 1
    assert "nothing to unregister" in capsys.readouterr().err


def test_user_folders_accumulate_and_are_loaded(fake_tree, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for folder, name in ((a, "TrainerA"), (b, "TrainerB")):
        folder.mkdir()
        (folder / f"mod_{name.lower()}.py").write_text(
            "from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer\n"
            f"class {name}(nnUNetTrainer):\n    pass\n")
    (a / "broken.py").write_text("raise ImportError('user bug')\n")
    (b / "json.py").write_text("class Shadowed:\n    pass\n")  # name taken by the standard library
    R.register([str(a)])
    R.register([str(b), str(a)])
    assert R.registered_user_dirs() == [str(a), str(b)]
    with pytest.warns(UserWarning) as caught:
        found = R.load_user_trainers(R.registered_user_dirs())
    messages = " ".join(str(w.message) for w in caught)
    assert "broken.py: ImportError: user bug" in messages and "'json' is already taken" in messages
    assert set(found) == {"TrainerA", "TrainerB"}


def test_foreign_files_and_bad_folders_are_refused(fake_tree, tmp_path, capsys):
    fake_tree["planners"].write_text("# somebody else's module\n")
    assert main(["register"]) == 1
    assert "not written by rep3d-nnunet; refusing" in capsys.readouterr().err
    assert not fake_tree["trainers"].exists()  # checked everything before writing anything
    assert fake_tree["planners"].read_text() == "# somebody else's module\n"
    assert main(["unregister"]) == 1 and fake_tree["planners"].exists()
    fake_tree["planners"].unlink()
    assert main(["register", "--user-trainers", str(tmp_path / "missing")]) == 1
    assert "does not exist" in capsys.readouterr().err and not fake_tree["trainers"].exists()


def test_status_reports_each_shim(fake_tree, capsys):
    assert main(["status"]) == 0
    assert capsys.readouterr().out.count("absent") == 2
    R.register()
    assert main(["status"]) == 0
    assert capsys.readouterr().out.count("registered (") == 2
