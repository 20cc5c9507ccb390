import os

import pytest
import torch

# Two CI cores: keep intra-op threads bounded and results deterministic.
torch.set_num_threads(min(2, os.cpu_count() or 1))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


@pytest.fixture(scope="session")
def hippocampus_preprocessed(tmp_path_factory):
    """A 12-case Hippocampus subset (+3 held-out cases in imagesTs/labelsTs), planned and
    preprocessed once per session with stock ``nnUNetv2_plan_and_preprocess`` (3d_fullres).

    Returns ``(env, raw_folder)``: ``env`` carries nnUNet_raw/preprocessed/results for
    console scripts; set ``TRAIN_ENV`` on top of it for training.
    """
    from nnunet_helpers import make_hippocampus_subset, nnunet_env, run_cli

    root = tmp_path_factory.mktemp("nnunet")
    env = nnunet_env(root)
    raw = make_hippocampus_subset(root / "nnUNet_raw", n_train=12, n_test=3)
    run_cli(["nnUNetv2_plan_and_preprocess", "-d", "4", "-c", "3d_fullres", "-np", "2", "--verify_dataset_integrity"],
            env)
    return env, raw


@pytest.fixture(scope="session")
def registered_env(hippocampus_preprocessed, tmp_path_factory):
    """The shared preprocessed subset + a private copy of nnunetv2 (first on PYTHONPATH) with our classes
    registered in it: one copy and one `register` for every end-to-end test (the venv is never modified).

    One export/validation worker (``nnUNet_def_n_proc=1``): every spawned worker re-imports torch and
    nnunetv2 (seconds each) and the CI machine has 2 cores.
    """
    from nnunet_helpers import private_nnunetv2, run_cli

    env0, _ = hippocampus_preprocessed
    env = dict(env0, PYTHONPATH=str(private_nnunetv2(tmp_path_factory.mktemp("nnunetv2_copy"))),
               nnUNet_def_n_proc="1")
    run_cli(["rep3d-nnunet", "register"], env)
    return env


@pytest.fixture(scope="session")
def rep3d_env(registered_env):
    """``registered_env`` + Rep3D, smoke and ResEnc M plans (shared by the nnU-Net and analysis end-to-end tests)."""
    from nnunet_helpers import SMOKE_PLANS, SMOKE_TEMPLATE, run_cli

    env = registered_env
    run_cli(["nnUNetv2_plan_experiment", "-d", "4", "-pl", "nnUNetPlannerRep3D"], env)
    run_cli(["nnUNetv2_plan_experiment", "-d", "4", "-pl", "nnUNetPlannerResEncM"], env)
    run_cli(["rep3d-nnunet", "plans", "merge-template", "-d", "4", "-t", str(SMOKE_TEMPLATE),
             "--plans-name", SMOKE_PLANS], env)
    return env
