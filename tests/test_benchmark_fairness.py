"""The unfair-comparison guard and the report on hand-made nnU-Net-like folders (fast, no training)."""
import copy
import csv
import json

import pytest

from benchmark_fakes import CASES, DATASET_JSON, PLANS, SPLITS, dice_table, make_model_folder
from rep3d_nnunet.benchmark import fairness
from rep3d_nnunet.benchmark.report import benchmark_report
from rep3d_nnunet.benchmark.results import ResultsError
from rep3d_nnunet.benchmark.stats import StatisticsError


def _report(tmp_path, folders, **kw):
    return benchmark_report(folders, [0, 1], tmp_path / "report", cost="none", n_resamples=500, **kw)


@pytest.fixture
def fair_pair(tmp_path):
    res = tmp_path / "results"
    return {"rep3d": make_model_folder(res, "nnUNetTrainerRep3D", "nnUNetRep3DPlans", dice_table(1, 0.03)),
            "resenc_m": make_model_folder(res, "nnUNetTrainer", "nnUNetResEncUNetMPlans", dice_table(2))}


def test_fair_comparison_writes_tables_and_plot(tmp_path, fair_pair):
    report = _report(tmp_path, fair_pair)
    text = report.read_text()
    assert "Checked equal for every method" in text and "OVERRIDE" not in text
    out = report.parent
    rows = {r["method"]: r for r in csv.DictReader(open(out / "summary_validation.csv"))}
    assert set(rows) == {"rep3d", "resenc_m"} and rows["rep3d"]["n_cases"] == "20"
    assert float(rows["resenc_m"]["holm_p"]) <= 1.0 and rows["rep3d"]["holm_p"] == ""
    assert (out / "boxplot_validation.png").stat().st_size > 1000
    per_case = list(csv.DictReader(open(out / "per_case_validation.csv")))
    assert len(per_case) == 2 * 20 * 3  # methods x cases x (2 classes + mean)
    res = {r["method"]: r for r in csv.DictReader(open(out / "resources.csv"))}
    assert float(res["rep3d"]["seconds_per_epoch"]) == 100.0 and res["rep3d"]["epochs"] == "1000"


def _expect_refusal(tmp_path, folders, kind, *fragments):
    with pytest.raises(fairness.UnfairComparisonError) as e:
        _report(tmp_path, folders)
    msg = str(e.value)
    assert f"[{kind}]" in msg and f"--allow-unfair {kind}" in msg
    for f in fragments:
        assert f in msg, msg
    # the explicit override reports anyway and states the difference at the top
    report = _report(tmp_path, folders, allow_unfair=[kind]).read_text()
    assert "OVERRIDE: this comparison is NOT fair" in report and f"[{kind}]" in report


def test_refuses_different_splits(tmp_path):
    res = tmp_path / "results"
    other = {0: CASES[0:9] + [CASES[10]], 1: [CASES[9]] + CASES[11:20]}   # one case swapped between folds
    folders = {"rep3d": make_model_folder(res, "nnUNetTrainerRep3D", "nnUNetRep3DPlans"),
               "mednext": make_model_folder(res, "nnUNetTrainerMedNeXtS_k3", splits=other)}
    _expect_refusal(tmp_path, folders, "splits", "fold 0", "hippocampus_010", "hippocampus_011")


def test_refuses_different_recorded_splits_file(tmp_path):
    res = tmp_path / "results"
    folders = {"rep3d": make_model_folder(res, "nnUNetTrainerRep3D", "nnUNetRep3DPlans"),
               "nnunet": make_model_folder(res, "nnUNetTrainer", splits_sha256="def456")}
    _expect_refusal(tmp_path, folders, "splits", "splits_final.json")


@pytest.mark.parametrize("key,value", [("spacing", [1.5, 1.0, 1.0]), ("data_identifier", "nnUNetPlans_other"),
                                       ("normalization_schemes", ["CTNormalization"])])
def test_refuses_different_preprocessing(tmp_path, key, value):
    plans = copy.deepcopy(PLANS)
    plans["configurations"]["3d_fullres"][key] = value
    res = tmp_path / "results"
    folders = {"rep3d": make_model_folder(res, "nnUNetTrainerRep3D", "nnUNetRep3DPlans"),
               "resenc_m": make_model_folder(res, "nnUNetTrainer", "nnUNetResEncUNetMPlans", plans=plans)}
    _expect_refusal(tmp_path, folders, "preprocessing", repr(key))


def test_preprocessing_follows_configuration_inheritance(tmp_path):
    plans = copy.deepcopy(PLANS)
    base = plans["configurations"]["3d_fullres"]
    plans["configurations"] = {"3d_base": {**base, "spacing": [2.0, 2.0, 2.0]},
                               "3d_fullres": {"inherits_from": "3d_base", "patch_size": [32, 32, 32]}}
    sig = fairness.preprocessing_signature(plans, "3d_fullres")
    assert sig["spacing"] == [2.0, 2.0, 2.0] and sig["data_identifier"] == "nnUNetPlans_3d_fullres"


def test_refuses_different_label_sets(tmp_path):
    labels = {**DATASET_JSON, "labels": {"background": 0, "hippocampus": 1}}
    res = tmp_path / "results"
    folders = {"rep3d": make_model_folder(res, "nnUNetTrainerRep3D", "nnUNetRep3DPlans"),
               "nnunet": make_model_folder(res, "nnUNetTrainer", dataset_json=labels)}
    _expect_refusal(tmp_path, folders, "labels", "'labels'")


def test_refuses_different_epoch_counts(tmp_path):
    res = tmp_path / "results"
    folders = {"rep3d": make_model_folder(res, "nnUNetTrainerRep3D", "nnUNetRep3DPlans", epochs=1000),
               "mednext": make_model_folder(res, "nnUNetTrainerMedNeXtS_k3", epochs=250)}
    _expect_refusal(tmp_path, folders, "epochs", "rep3d fold 0: 1000", "mednext fold 0: 250")


def test_refuses_different_folds(tmp_path):
    res = tmp_path / "results"
    folders = {"rep3d": make_model_folder(res, "nnUNetTrainerRep3D", "nnUNetRep3DPlans"),
               "nnunet": make_model_folder(res, "nnUNetTrainer", splits={0: SPLITS[0]})}
    with pytest.raises(ResultsError, match=r"fold_1/validation/summary.json is missing"):
        _report(tmp_path, folders)


def test_missing_case_in_one_method_is_a_clear_error(tmp_path):
    res = tmp_path / "results"
    dice = dice_table(3)
    del dice[CASES[4]]
    folders = {"rep3d": make_model_folder(res, "nnUNetTrainerRep3D", "nnUNetRep3DPlans"),
               "nnunet": make_model_folder(res, "nnUNetTrainer", dice=dice)}
    # the split check already sees the fold's case sets differ ...
    with pytest.raises(fairness.UnfairComparisonError, match="hippocampus_005"):
        _report(tmp_path, folders)
    # ... and even with that override, the paired statistics refuse to drop the case silently
    with pytest.raises(StatisticsError, match="nnunet is missing 1 case.*hippocampus_005"):
        _report(tmp_path, folders, allow_unfair=["splits"])


def test_enforce_rejects_unknown_override():
    with pytest.raises(ValueError, match="unknown override"):
        fairness.enforce([], ["patch"])


def test_test_set_summaries_are_reported(tmp_path, fair_pair):
    preds = {}
    for name, seed in (("rep3d", 5), ("resenc_m", 6)):
        d = tmp_path / f"test_{name}"
        d.mkdir()
        per_case = [{"metrics": {k: {"Dice": v} for k, v in classes.items()}, "reference_file": f"/gt/{c}.nii.gz",
                     "prediction_file": str(d / f"{c}.nii.gz")} for c, classes in list(dice_table(seed).items())[:6]]
        (d / "summary.json").write_text(json.dumps({"metric_per_case": per_case}))
        preds[name] = d
    report = _report(tmp_path, fair_pair, test_predictions=preds)
    assert "### test" in report.read_text()
    rows = list(csv.DictReader(open(report.parent / "summary_test.csv")))
    assert [r["n_cases"] for r in rows] == ["6", "6"]
    assert (report.parent / "boxplot_test.png").is_file()


def test_refuses_different_cpu_schedules_with_the_same_epoch_count(tmp_path):
    res = tmp_path / "results"
    folders = {"rep3d": make_model_folder(res, "nnUNetTrainerRep3D_tiny", "nnUNetRep3DPlans", epochs=2,
                                          schedule="cpu:2x10,batch2"),
               "resenc_m": make_model_folder(res, "nnUNetTrainer_tiny", "nnUNetResEncUNetMPlans", epochs=2,
                                             schedule="cpu:2x50,batch2")}
    _expect_refusal(tmp_path, folders, "schedule", "rep3d fold 0: cpu:2x10,batch2", "resenc_m fold 1: cpu:2x50")


def test_same_cpu_schedule_is_fair_and_stated(tmp_path):
    res = tmp_path / "results"
    folders = {m: make_model_folder(res, tr, plans, dice_table(i), epochs=2, schedule="cpu:2x10,batch2",
                                    device="cpu", peak_gpu_memory_mb=None, peak_cpu_rss_mb=2000.0 + 100 * i)
               for i, (m, tr, plans) in enumerate((("rep3d", "nnUNetTrainerRep3D_tiny", "nnUNetRep3DPlans"),
                                                   ("resenc_m", "nnUNetTrainer_tiny", "nnUNetResEncUNetMPlans")))}
    text = _report(tmp_path, folders).read_text()
    assert "Checked equal for every method" in text and "Schedule: `cpu:2x10,batch2`" in text
    assert "Notice" not in text  # 5% apart: equal memory
    res = {r["method"]: r for r in csv.DictReader(open(tmp_path / "report" / "resources.csv"))}
    assert res["rep3d"]["gpu_hours"] == "" and float(res["rep3d"]["train_hours_total"]) == 2.0  # CPU, not GPU


def test_unequal_measured_memory_opens_the_report_with_a_notice_naming_the_preset(tmp_path):
    res = tmp_path / "results"
    folders = {"rep3d": make_model_folder(res, "nnUNetTrainerRep3D", "nnUNetRep3DPlans", dice_table(1),
                                          peak_gpu_memory_mb=11000.0),
               "resenc_m": make_model_folder(res, "nnUNetTrainer", "nnUNetResEncUNetMPlans", dice_table(2),
                                             peak_gpu_memory_mb=6500.0)}
    text = _report(tmp_path, folders, budget="M").read_text()
    head = text.split("## Fairness")[0]
    assert "Notice: not at equal memory" in head and "rep3d 11000 MiB (x1.69)" in head
    assert "ResEnc's **L** preset" in head and "--budget L" in head and "not a refusal" in head
    assert "## Dice" in text  # reported anyway
    # within 30%: no notice; at the L budget the same gap stays within L's 24 GB -> re-plan advice, no new preset
    folders["resenc_m"] = make_model_folder(tmp_path / "r2", "nnUNetTrainer", "nnUNetResEncUNetMPlans",
                                            dice_table(2), peak_gpu_memory_mb=9000.0)
    assert "Notice" not in _report(tmp_path, folders).read_text().split("## Fairness")[0]


def test_memory_notice_lines():
    from rep3d_nnunet.benchmark.report import memory_notice

    assert memory_notice({"a": {"peak_gpu_memory_mb": 100.0}}) == []  # one method: nothing to compare
    assert memory_notice({"a": {"peak_gpu_memory_mb": 100.0}, "b": {"peak_gpu_memory_mb": None,
                                                                     "peak_cpu_rss_mb": None}}) == []
    cpu = memory_notice({"a": {"peak_gpu_memory_mb": None, "peak_cpu_rss_mb": 1000.0},
                         "b": {"peak_gpu_memory_mb": None, "peak_cpu_rss_mb": 2000.0}}, budget="L")
    assert "CPU memory (process RSS" in cpu[0] and "ResEnc's **XL** preset" in cpu[0]  # 24 GB x 2 -> XL
    same = memory_notice({"a": {"peak_gpu_memory_mb": 1000.0}, "b": {"peak_gpu_memory_mb": 1400.0}}, budget="XL")
    assert "-gpu_memory_target 28.6" in same[0]  # XL is the largest: re-plan the bigger one instead
