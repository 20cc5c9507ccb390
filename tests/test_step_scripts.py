"""The GPU measurement scripts of issue #12 (bench_train_step.py, profile_train_step.py) on tiny CPU shapes.

On the GPU they run the same code at 128^3 (scripts/device/gpu_check.sh); here they must run, write
their report with command, machine and date, and give ResEnc M the ratio 1 against itself.
"""
import importlib.util
from pathlib import Path

import pytest

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"


def _load(name: str):
    spec = importlib.util.spec_from_file_location(name, SCRIPTS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


GEOMETRY = ["--patch", "16", "16", "16", "--stages", "3", "--batch", "1"]
TINY = GEOMETRY + ["--runs", "1"]


def test_bench_train_step_writes_side_by_side_ratios(tmp_path):
    out = tmp_path / "train_step_cpu.txt"
    _load("bench_train_step").main(TINY + ["--modes", "eager-fp32,eager-amp", "--networks", "ResEnc M,Rep3D (LRBM)",
                                           "--out", str(out)])
    lines = out.read_text().splitlines()
    assert lines[0].startswith("# python scripts/bench_train_step.py") and "UTC" in lines[1] and "torch" in lines[1]
    rows = [line.split() for line in lines if line.startswith(("ResEnc", "Rep3D"))]
    assert len(rows) == 4  # 2 networks x 2 modes
    resenc = [r for r in rows if r[0] == "ResEnc"]
    assert all(float(r[5]) == pytest.approx(1.0) for r in resenc)  # columns: name(2 words) mode params s/iter ratio
    rep3d = [r for r in rows if r[0] == "Rep3D"]
    assert all(float(r[6]) > 0 for r in rep3d)


def test_bench_train_step_rejects_unknown_mode():
    with pytest.raises(SystemExit, match="unknown"):
        _load("bench_train_step").main(TINY + ["--modes", "eager-fp16"])


def test_profile_train_step_reports_top_ops(tmp_path):
    out = tmp_path / "profile.txt"
    _load("profile_train_step").main(GEOMETRY + ["--iters", "1", "--rows", "5", "--out", str(out)])
    text = out.read_text()
    assert "ms per iteration" in text and "rep3d ops + FFTs" in text
    shares = [float(line.split()[0]) for line in text.splitlines()[5:]]
    assert len(shares) == 5 and all(0 <= s <= 100 for s in shares) and shares == sorted(shares, reverse=True)
