"""End to end on the shared Hippocampus subset (CPU): `benchmark run` with 3 methods x 2 folds on one CPU
schedule (cpu:1x2,batch2: every method's _tiny trainer with REP3D_CPU_SCHEDULE) through stock nnUNetv2_train,
`benchmark report` (like with like: the guard passes), and a second `run` that does no work."""
import csv
import json
import time
from pathlib import Path

import pytest

from nnunet_helpers import TRAIN_ENV, run_cli

METHODS = ["rep3d", "resenc_m", "mednext_s_k3"]
TRAINERS = {"rep3d": "nnUNetTrainerRep3D_tiny__nnUNetRep3DPlans__3d_fullres",
            "resenc_m": "nnUNetTrainer_tiny__nnUNetResEncUNetMPlans__3d_fullres",
            "mednext_s_k3": "nnUNetTrainerMedNeXtS_k3_tiny__nnUNetPlans_div16__3d_fullres"}


@pytest.mark.slow
def test_benchmark_run_report_and_rerun(registered_env, tmp_path):
    # own results folder: the session's preprocessed data (and its splits) and the registered private
    # nnunetv2 copy are shared, results are not (the venv's nnunetv2 is never registered into)
    env = {**registered_env, **TRAIN_ENV, "nnUNet_results": str(tmp_path / "results")}
    args = ["-d", "4", "-m", *METHODS, "-f", "0", "1", "--schedule", "cpu:1x2,batch2"]
    t0 = time.perf_counter()
    first = run_cli(["rep3d-nnunet", "benchmark", "run", *args, "--device", "cpu", "--np", "2"], env, timeout=1800)
    train_s = time.perf_counter() - t0
    print(f"benchmark run: {train_s:.0f} s for {len(METHODS)} methods x 2 folds")

    dataset = tmp_path / "results" / "Dataset004_Hippocampus"
    pre = Path(env["nnUNet_preprocessed"]) / "Dataset004_Hippocampus"
    splits_sha = json.loads((dataset / "rep3d_benchmark_manifest.json").read_text())["splits_sha256"]
    records = {}
    for method, folder in TRAINERS.items():
        plans = json.loads((dataset / folder / "plans.json").read_text())
        assert plans["configurations"]["3d_fullres"]["data_identifier"] == "nnUNetPlans_3d_fullres"  # ONE preprocessing
        for fold in (0, 1):
            rec = json.loads((dataset / folder / f"fold_{fold}" / "benchmark_job.json").read_text())
            assert rec["status"] == "finished" and rec["epochs"] >= 1 and rec["seconds_per_epoch"] > 0
            assert rec["peak_cpu_rss_mb"] > 100 and rec["wall_time_s"] > 0 and rec["splits_sha256"] == splits_sha
            assert rec["schedule"] == "cpu:1x2,batch2" and rec["epochs"] == 1
            # the trainer itself ran that schedule (nnU-Net's training log names where its schedule came from)
            logs = list((dataset / folder / f"fold_{fold}").glob("training_log_*.txt"))
            assert logs and "REP3D_CPU_SCHEDULE=1x2,batch2" in logs[0].read_text(), method
            records[(method, fold)] = rec
    splits = json.loads((pre / "splits_final.json").read_text())
    for method, folder in TRAINERS.items():  # every method validated on the split's own cases
        summary = json.loads((dataset / folder / "fold_1" / "validation" / "summary.json").read_text())
        cases = {Path(c["reference_file"]).name[:-len(".nii.gz")] for c in summary["metric_per_case"]}
        assert cases == set(splits[1]["val"])

    out = tmp_path / "report"
    report_args = ["rep3d-nnunet", "benchmark", "report", *args, "-o", str(out), "--reference", "rep3d",
                   "--bootstrap", "2000"]
    run_cli(report_args, env)  # one schedule for all: like with like, no override needed
    report = (out / "report.md").read_text()
    assert "Checked equal for every method" in report and "Schedule: `cpu:1x2,batch2`" in report
    assert "rep3d-nnunet benchmark run -d 4" in report  # the command lines that made it
    assert "Wilcoxon" in report
    rows = {r["method"]: r for r in csv.DictReader(open(out / "summary_validation.csv"))}
    assert set(rows) == set(METHODS) and len({r["n_cases"] for r in rows.values()}) == 1
    assert all(0 <= float(r["mean_dice"]) <= 1 for r in rows.values())
    assert rows["rep3d"]["holm_p"] == "" and all(0 < float(rows[m]["holm_p"]) <= 1 for m in METHODS[1:])
    res = {r["method"]: r for r in csv.DictReader(open(out / "resources.csv"))}
    assert all(float(res[m]["params_m"]) > 0 and float(res[m]["gflops"]) > 0 for m in METHODS), res
    assert float(res["rep3d"]["gflops_fft"]) < float(res["rep3d"]["gflops"])  # 21^3 kernels: FFT is cheaper
    assert res["resenc_m"]["gflops_fft"] == res["resenc_m"]["gflops"]         # no large depthwise convs
    assert float(res["rep3d"]["planned_memory_gb"]) > 0 and res["mednext_s_k3"]["planned_memory_gb"] == ""
    # MONAI baseline: the patch of the patch-divisible plans it trained on (written by `plans divisible`,
    # or earlier in the session by the baselines' tests), a multiple of 16 on every axis
    div16 = json.loads((pre / "nnUNetPlans_div16.json").read_text())["configurations"]["3d_fullres"]["patch_size"]
    assert res["mednext_s_k3"]["patch_size"] == "x".join(map(str, div16)) and all(p % 16 == 0 for p in div16)
    assert (out / "boxplot_validation.png").stat().st_size > 5000
    print(report)

    # a second run: every fold is finished, nothing is trained and no record changes
    second = run_cli(["rep3d-nnunet", "benchmark", "run", *args, "--device", "cpu"], env)
    assert "nothing to do: every fold is finished" in second.stdout
    assert "training;" not in second.stdout and "continuing" not in second.stdout
    for (method, fold), rec in records.items():
        again = json.loads((dataset / TRAINERS[method] / f"fold_{fold}" / "benchmark_job.json").read_text())
        assert again == rec
    assert "training;" in first.stdout
