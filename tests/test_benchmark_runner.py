"""The runner without training: preparation on a hand-made preprocessed dataset, resumability, the GPU
executor and the SLURM path (submitit's local executor and a fake ``sbatch``), with a fake
``nnUNetv2_train`` that writes what nnU-Net writes (fast)."""
import json
import os
import stat
import sys
import textwrap

import pytest

from rep3d_nnunet.benchmark import runner
from rep3d_nnunet.benchmark.cli import main as benchmark_main
from rep3d_nnunet.benchmark.methods import METHODS, get_methods
from rep3d_nnunet.benchmark.results import JOB_RECORD

FAKE_TRAIN = textwrap.dedent(f"""\
    #!{sys.executable}
    # stands in for nnUNetv2_train: writes nnU-Net's checkpoint and validation summary
    import json, os, sys, time
    from pathlib import Path
    import torch
    dataset, config, fold = sys.argv[1:4]
    tr, pl = sys.argv[sys.argv.index("-tr") + 1], sys.argv[sys.argv.index("-p") + 1]
    out = Path(os.environ["nnUNet_results"]) / dataset / f"{{tr}}__{{pl}}__{{config}}" / f"fold_{{fold}}"
    out.mkdir(parents=True, exist_ok=True)
    with open(Path(os.environ["FAKE_CALLS"]), "a") as f:
        f.write(json.dumps({{"argv": sys.argv[1:], "gpu": os.environ.get("CUDA_VISIBLE_DEVICES"),
                            "upkern": os.environ.get("MEDNEXT_UPKERN_CHECKPOINT"),
                            "cpu_schedule": os.environ.get("REP3D_CPU_SCHEDULE")}}) + "\\n")
    log = {{"epoch_start_timestamps": [0.0, 10.0, 20.0], "epoch_end_timestamps": [2.0, 12.0, 22.0]}}
    ckpt = {{"current_epoch": 3, "logging": log, "trainer_name": tr}}
    if os.environ.get("FAKE_INTERRUPT") and "--c" not in sys.argv:
        torch.save(ckpt, out / "checkpoint_latest.pth")
        sys.exit(1)   # "killed" mid-training
    torch.save(ckpt, out / "checkpoint_final.pth")
    (out / "validation").mkdir(exist_ok=True)
    (out / "validation" / "summary.json").write_text(json.dumps({{"metric_per_case": []}}))
""")


@pytest.fixture
def fake_env(tmp_path, monkeypatch):
    """nnU-Net folders with a hand-made preprocessed Dataset004 (12 cases) and the fake trainer script."""
    for v in runner.NNUNET_VARS:
        (tmp_path / v).mkdir()
        monkeypatch.setenv(v, str(tmp_path / v))
    pre = tmp_path / "nnUNet_preprocessed" / "Dataset004_Hippocampus"
    data = pre / "nnUNetPlans_3d_fullres"
    data.mkdir(parents=True)
    cases = [f"hippocampus_{i:03d}" for i in range(12)]
    for c in cases:
        (data / f"{c}.pkl").write_bytes(b"")
        (data / f"{c}.b2nd").write_bytes(b"")
        (data / f"{c}_seg.b2nd").write_bytes(b"")
    (pre / "dataset_fingerprint.json").write_text(json.dumps({"shapes_after_crop": [[1, 1, 1]] * 12}))
    config = {"data_identifier": "nnUNetPlans_3d_fullres", "preprocessor_name": "DefaultPreprocessor",
              "spacing": [1, 1, 1], "normalization_schemes": ["ZScoreNormalization"], "patch_size": [40, 56, 40]}
    for plans in ("nnUNetPlans", "nnUNetRep3DPlans", "nnUNetResEncUNetMPlans", "nnUNetRep3DLPlans",
                  "nnUNetResEncUNetLPlans"):
        (pre / f"{plans}.json").write_text(json.dumps({"plans_name": plans, "transpose_forward": [0, 1, 2],
                                                       "configurations": {"3d_fullres": config}}))
    fake = tmp_path / "fake_nnUNetv2_train"
    fake.write_text(FAKE_TRAIN)
    fake.chmod(fake.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("FAKE_CALLS", str(tmp_path / "calls.jsonl"))
    return tmp_path, fake, cases


def _calls(tmp_path):
    path = tmp_path / "calls.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _jobs(fake, names=("rep3d", "resenc_m"), folds=(0, 1), schedule="tiny", budget=None):
    methods = get_methods(names, budget)
    prepared = runner.prepare("4", methods, folds, num_processes=1)
    jobs = runner.make_jobs(prepared, methods, folds, schedule, "cpu")
    for j in jobs:
        j.executable = str(fake)
    return prepared, jobs


def test_prepare_writes_nnunets_split_once_and_pins_it(fake_env):
    tmp_path, fake, cases = fake_env
    prepared, _ = _jobs(fake)
    splits_file = tmp_path / "nnUNet_preprocessed" / "Dataset004_Hippocampus" / "splits_final.json"
    splits = json.loads(splits_file.read_text())
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    assert splits == generate_crossval_split(sorted(cases), seed=12345, n_splits=5)  # what nnU-Net would write
    assert prepared.data_identifier == "nnUNetPlans_3d_fullres" and prepared.n_splits == 5
    manifest = json.loads((tmp_path / "nnUNet_results" / "Dataset004_Hippocampus" / runner.MANIFEST).read_text())
    assert manifest["splits_sha256"] == prepared.splits_sha256
    # a changed split after jobs were run is refused (finished folds used the old one)
    splits[0], splits[1] = splits[1], splits[0]
    splits_file.write_text(json.dumps(splits))
    with pytest.raises(runner.BenchmarkError, match="changed since earlier benchmark jobs"):
        runner.prepare("4", get_methods(["rep3d"]), [0], num_processes=1)


def test_prepare_refuses_fold_outside_the_split_and_mixed_preprocessing(fake_env):
    tmp_path, fake, _ = fake_env
    with pytest.raises(runner.BenchmarkError, match=r"fold\(s\) \[7\] do not exist"):
        runner.prepare("4", get_methods(["rep3d"]), [0, 7], num_processes=1)
    pre = tmp_path / "nnUNet_preprocessed" / "Dataset004_Hippocampus"
    plans = json.loads((pre / "nnUNetResEncUNetMPlans.json").read_text())
    plans["configurations"]["3d_fullres"]["spacing"] = [2, 2, 2]
    (pre / "nnUNetResEncUNetMPlans.json").write_text(json.dumps(plans))
    from rep3d_nnunet.benchmark.fairness import UnfairComparisonError

    with pytest.raises(UnfairComparisonError, match="'spacing'"):
        runner.prepare("4", get_methods(["rep3d", "resenc_m"]), [0], num_processes=1)


def test_sequential_run_is_resumable_and_records_attempts(fake_env, monkeypatch):
    tmp_path, fake, _ = fake_env
    _, jobs = _jobs(fake, ("rep3d",), (0,))
    job = jobs[0]
    monkeypatch.setenv("FAKE_INTERRUPT", "1")
    with pytest.raises(runner.BenchmarkError, match="exited 1 without finishing"):
        runner.run_sequential(jobs)
    assert job.state() == "resume" and job.command()[-1] == "--c"
    monkeypatch.delenv("FAKE_INTERRUPT")
    record = runner.run_sequential(jobs)[0]
    assert [c["argv"][-1] for c in _calls(tmp_path)] == ["cpu", "--c"]   # fresh, then continued with --c
    assert record["status"] == "finished" and len(record["attempts"]) == 2
    assert record["epochs"] == 3 and record["seconds_per_epoch"] == pytest.approx(2.0)
    assert record["wall_time_s"] == pytest.approx(sum(a["wall_time_s"] for a in record["attempts"]))
    assert record["peak_cpu_rss_mb"] > 10 and record["splits_sha256"] == job.splits_sha256
    assert json.loads((job.output_folder() / JOB_RECORD).read_text()) == record
    runner.run_sequential(jobs)   # finished: nothing runs
    assert len(_calls(tmp_path)) == 2


def test_gpu_executor_runs_one_job_per_gpu(fake_env):
    tmp_path, fake, _ = fake_env
    _, jobs = _jobs(fake, ("rep3d", "resenc_m"), (0,))
    records = runner.run_on_gpus(jobs, ["0", "1"])
    calls = _calls(tmp_path)
    assert len(records) == 2 and len(calls) == 2   # each job ran once
    assert {c["gpu"] for c in calls} <= {"0", "1"}
    assert {r["attempts"][0]["CUDA_VISIBLE_DEVICES"] for r in records} <= {"0", "1"}
    assert sorted((r["method"], r["fold"]) for r in records) == [("rep3d", 0), ("resenc_m", 0)]


def test_submitit_local_executor_runs_the_array_and_requeues(fake_env):
    pytest.importorskip("submitit")
    tmp_path, fake, _ = fake_env
    _, jobs = _jobs(fake, ("rep3d",), (0, 1))
    handles = runner.submit_slurm(jobs, tmp_path / "submitit", cluster="local", parameters={"timeout_min": 5})
    records = [h.result() for h in handles]
    assert [r["status"] for r in records] == ["finished", "finished"] and {r["fold"] for r in records} == {0, 1}
    # the requeue hook resubmits the same job (which then finds its checkpoint and uses --c)
    again = runner.SubmititTrainJob(jobs[0]).checkpoint()
    assert again.function.job == jobs[0]


FAKE_SBATCH = textwrap.dedent("""\
    #!/bin/sh
    cp "$1" "$FAKE_SBATCH_DIR/$(basename "$1")"
    echo "Submitted batch job 4242"
""")


def test_slurm_submission_through_the_cli_writes_an_array_script(fake_env, monkeypatch, capsys):
    """The whole `benchmark run --slurm` path with a fake ``sbatch``: prepares, then submits one array."""
    pytest.importorskip("submitit")
    tmp_path, fake, _ = fake_env
    # the pre-flight asks nnU-Net's own lookup (true nnUNetv2_train behaviour), which needs `register` in this
    # venv; nothing is trained here, so the test does not depend on the venv's registration state
    monkeypatch.setattr(runner, "check_trainer_findable", lambda trainer: None)
    bindir = tmp_path / "bin"
    bindir.mkdir()
    (bindir / "sbatch").write_text(FAKE_SBATCH)
    (bindir / "sbatch").chmod(0o755)
    (bindir / "srun").write_text("#!/bin/sh\nexit 1\n")   # submitit only checks that srun exists
    (bindir / "srun").chmod(0o755)
    (tmp_path / "scripts").mkdir()
    monkeypatch.setenv("FAKE_SBATCH_DIR", str(tmp_path / "scripts"))
    monkeypatch.setenv("PATH", f"{bindir}{os.pathsep}{os.environ['PATH']}")
    rc = benchmark_main(["benchmark", "run", "-d", "4", "-m", "rep3d", "resenc_m", "-f", "0", "1", "2",
                         "--schedule", "tiny", "--slurm", "--slurm-partition", "gpu", "--slurm-hours", "2",
                         "--slurm-array-parallelism", "2", "--slurm-setup", "source /opt/venv/bin/activate",
                         "--slurm-param", "slurm_account=lab", "--submitit-cluster", "slurm", "--np", "1"])
    assert rc == 0
    out = capsys.readouterr().out
    assert out.count("submitted ") == 6 and "4242_0" in out
    scripts = list((tmp_path / "scripts").iterdir())
    assert len(scripts) == 1   # one sbatch call: a job array, not six jobs
    text = scripts[0].read_text()
    for line in ("#SBATCH --array=0-5%2", "#SBATCH --partition=gpu", "#SBATCH --time=120", "#SBATCH --gpus-per-node=1",
                 "#SBATCH --account=lab", "source /opt/venv/bin/activate"):
        assert line in text, text
    assert _calls(tmp_path) == []   # nothing trained on the submitting machine


def test_unknown_method_and_schedule_are_clear(fake_env, capsys):
    assert benchmark_main(["benchmark", "run", "-d", "4", "-m", "rep3d", "nnformer", "--device", "cpu"]) == 1
    assert "unknown benchmark method(s) ['nnformer']" in capsys.readouterr().err
    with pytest.raises(Exception, match="is not one of: full"):
        METHODS["rep3d"].trainer_for("forever")
    with pytest.raises(Exception, match="<epochs>x<iterations>,batch<N>"):
        METHODS["rep3d"].trainer_for("cpu:20x10")
    assert benchmark_main(["benchmark", "run", "-d", "4", "-m", "rep3d", "--schedule", "cpu:0x1,batch2"]) == 1
    assert "epochs must be at least 1" in capsys.readouterr().err
    assert METHODS["rep3d"].trainer_for("250epochs") == "nnUNetTrainerRep3D_250epochs"
    assert METHODS["resenc_m"].trainer_for("full") == "nnUNetTrainer"


def test_registry_trainers_exist_where_they_are_committed():
    """Every Rep3D/stock trainer the registry names is one nnUNetv2_train can find (after registration)."""
    from rep3d_nnunet.nnunet import trainers

    for m in METHODS.values():
        if m.plans == "nnUNetRep3DPlans":
            for schedule in ("full", "tiny", "250epochs"):
                assert hasattr(trainers, m.trainer_for(schedule)), m.trainer_for(schedule)
    assert hasattr(trainers, "nnUNetTrainer_tiny")


def test_upkern_method_runs_after_its_source_with_the_checkpoint_in_its_environment(fake_env):
    tmp_path, fake, _ = fake_env
    pre = tmp_path / "nnUNet_preprocessed" / "Dataset004_Hippocampus"
    (pre / "nnUNetPlans_div16.json").write_text((pre / "nnUNetPlans.json").read_text())
    from rep3d_nnunet.benchmark.methods import MethodError

    with pytest.raises(MethodError, match="add mednext_s_k3"):
        get_methods(["mednext_s_k5_upkern"])
    _, jobs = _jobs(fake, ("mednext_s_k5_upkern", "mednext_s_k3"), (0,))
    assert [[j.method for j in w] for w in runner.waves(jobs)] == [["mednext_s_k3"], ["mednext_s_k5_upkern"]]
    upkern = runner.waves(jobs)[1][0]
    with pytest.raises(runner.BenchmarkError, match="does not exist yet"):
        runner.run_job(upkern)
    for wave in runner.waves(jobs):
        runner.run_sequential(wave)
    assert upkern.init_checkpoint == str(jobs[1].output_folder() / "checkpoint_final.pth")
    calls = _calls(tmp_path)
    assert [c["argv"][4] for c in calls] == ["nnUNetTrainerMedNeXtS_k3_tiny", "nnUNetTrainerMedNeXtS_k5_UpKern_tiny"]
    assert calls[0]["upkern"] is None and calls[1]["upkern"] == upkern.init_checkpoint


def test_registry_baselines_match_the_committed_baseline_trainers():
    """Issue 7: swinunetr/unetr/segresnet and MedNeXt names resolve to the baseline trainers, and each
    method's plans round the patch to a multiple the trainer accepts."""
    from rep3d_nnunet.nnunet.baselines import BASELINE_TRAINERS

    baselines = [m for m in METHODS.values() if m.derived]
    assert {"swinunetr", "unetr", "segresnet", "mednext_s_k3", "mednext_l_k5_upkern"} <= {m.name for m in baselines}
    for m in baselines:
        for schedule in ("full", "tiny"):
            assert m.trainer_for(schedule) in BASELINE_TRAINERS, m.trainer_for(schedule)
        assert m.patch_multiple % BASELINE_TRAINERS[m.trainer].patch_multiple == 0, m.name
        assert m.plans == f"nnUNetPlans_div{m.patch_multiple}"


def test_cpu_schedule_runs_every_methods_tiny_trainer_with_the_same_schedule_and_records_it(fake_env):
    tmp_path, fake, _ = fake_env
    _, jobs = _jobs(fake, ("rep3d", "resenc_m"), (0,), schedule="cpu:3x4,batch2")
    assert [j.trainer for j in jobs] == ["nnUNetTrainerRep3D_tiny", "nnUNetTrainer_tiny"]
    records = runner.run_sequential(jobs)
    calls = _calls(tmp_path)
    assert [c["cpu_schedule"] for c in calls] == ["3x4,batch2", "3x4,batch2"]  # identical for every method
    assert [r["schedule"] for r in records] == ["cpu:3x4,batch2"] * 2


def test_a_folder_of_another_schedule_is_refused_not_skipped(fake_env):
    tmp_path, fake, _ = fake_env
    _, jobs = _jobs(fake, ("rep3d",), (0,), schedule="cpu:1x2,batch2")
    runner.run_sequential(jobs)
    # the same _tiny folder, now asked for a longer schedule: skipping it would report the short run
    _, longer = _jobs(fake, ("rep3d",), (0,), schedule="cpu:5x2,batch2")
    assert "holds a run with schedule 'cpu:1x2,batch2'" in longer[0].schedule_conflict()
    with pytest.raises(runner.BenchmarkError, match="move that folder away"):
        runner.run_sequential(longer)
    assert len(_calls(tmp_path)) == 1
    _, same = _jobs(fake, ("rep3d",), (0,), schedule="cpu:1x2,batch2")
    assert same[0].schedule_conflict() is None


def test_budget_moves_the_nnunet_family_to_the_matching_presets(fake_env):
    tmp_path, fake, _ = fake_env
    methods = {m.name: m for m in get_methods(["rep3d", "resenc_m", "mednext_s_k3", "nnunet"], "L")}
    assert (methods["rep3d"].planner, methods["rep3d"].plans) == ("nnUNetPlannerRep3DL", "nnUNetRep3DLPlans")
    assert (methods["resenc_m"].planner, methods["resenc_m"].plans) == ("nnUNetPlannerResEncL",
                                                                        "nnUNetResEncUNetLPlans")
    assert methods["mednext_s_k3"].plans == "nnUNetPlans_div16" and methods["nnunet"].plans == "nnUNetPlans"
    assert get_methods(["rep3d"], None)[0].plans == "nnUNetRep3DPlans"  # no budget: the historical plans
    from rep3d_nnunet.benchmark.methods import MethodError

    with pytest.raises(MethodError, match="are the same run"):
        get_methods(["resenc_m", "resenc_l"], "M")
    with pytest.raises(MethodError, match="budget 'XXL'"):
        METHODS["rep3d"].for_budget("XXL")
    _, jobs = _jobs(fake, ("rep3d", "resenc_m"), (0,), budget="L")
    assert [j.plans for j in jobs] == ["nnUNetRep3DLPlans", "nnUNetResEncUNetLPlans"]
    records = runner.run_sequential(jobs)
    assert [r["budget"] for r in records] == ["L", "L"]


def test_registry_reads_patch_multiples_and_the_upkern_variable_from_the_trainers():
    from rep3d_nnunet.nnunet.baselines import BASELINE_TRAINERS
    from rep3d_nnunet.nnunet.baselines.mednext import UPKERN_ENV

    for name in ("swinunetr", "unetr", "segresnet", "mednext_s_k3"):
        m = METHODS[name]
        assert m.patch_multiple == BASELINE_TRAINERS[m.trainer].patch_multiple
    assert METHODS["mednext_s_k5_upkern"].init_env == UPKERN_ENV and METHODS["mednext_s_k3"].init_env is None
