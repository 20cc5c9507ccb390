"""The planner's memory estimate against measured training memory (CPU tensor tracker, small patch)."""
import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "measure_memory.py"


@pytest.fixture(scope="module")
def mm():
    spec = importlib.util.spec_from_file_location("measure_memory", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_tracker_counts_live_storage_once_and_frees_it(mm):
    tracker = mm.LiveTensorMemory()
    with tracker:
        a = torch.zeros(1000)            # 4000 bytes
        view = a[:10]                    # same storage: not counted again
        b = torch.ones(250, dtype=torch.float64)  # 2000 bytes
        assert tracker.current == 6000 and tracker.peak == 6000
        del a, view
        c = torch.zeros(100)             # 400 bytes, after a is gone
    assert tracker.current == 2400 and tracker.peak == 6000
    del b, c


def test_estimate_ratio_tracks_measured_ratio_on_a_small_patch(mm):
    """Rep3D / ResEnc M: the estimates' ratio is within 15% of the measured peaks' ratio (one training step)."""
    patch = [32, 32, 32]
    resenc, patch, _ = mm.resenc_m_architecture(patch)
    resenc = mm.narrowed(resenc, 8)   # 4..40 channels: seconds on a CPU, same ratios (linear in channels)
    ours = mm.method_architecture("rep3d", resenc, patch)
    measured = {name: mm.step_peak_bytes(name, arch, patch, batch=2, device="cpu")["peak_bytes"]
                for name, arch in (("resenc_m", resenc), ("rep3d", ours))}
    estimated = {name: mm.estimate(arch, patch) for name, arch in (("resenc_m", resenc), ("rep3d", ours))}
    assert all(v > 0 for v in (*measured.values(), *estimated.values()))
    est_ratio = estimated["rep3d"] / estimated["resenc_m"]
    measured_ratio = measured["rep3d"] / measured["resenc_m"]
    assert abs(est_ratio / measured_ratio - 1) < 0.15, (est_ratio, measured_ratio)
    # and the estimate is on nnU-Net's scale: ResEnc's measured peak is a few bytes... per estimated element
    bytes_per_element = measured["resenc_m"] / (2 * estimated["resenc_m"])
    assert 4 < bytes_per_element < 20, bytes_per_element


def test_markers_keep_the_rest_of_the_page(mm, tmp_path):
    page = tmp_path / "memory.md"
    page.write_text(f"# intro\n{mm.BEGIN}\nold\n{mm.END}\nafter\n")
    mm.write_between_markers(str(page), "| new |\n")
    assert page.read_text() == f"# intro\n{mm.BEGIN}\n| new |\n{mm.END}\nafter\n"
    other = tmp_path / "notes.md"
    other.write_text("user text\n")
    with pytest.raises(SystemExit, match="without the markers"):
        mm.write_between_markers(str(other), "x")
    assert other.read_text() == "user text\n"
