import json
from pathlib import Path

import pytest


@pytest.mark.slow
def test_shared_preprocessing_fixture(hippocampus_preprocessed):
    env, raw = hippocampus_preprocessed
    pre = Path(env["nnUNet_preprocessed"]) / "Dataset004_Hippocampus"
    plans = json.loads((pre / "nnUNetPlans.json").read_text())
    assert "3d_fullres" in plans["configurations"]
    assert len(list((pre / "nnUNetPlans_3d_fullres").glob("*.b2nd"))) >= 12
