"""``benchmark report``: per-case Dice from nnU-Net's outputs -> guarded, paired statistics -> tables and plots.

Reads, per method, ``fold_X/validation/summary.json`` (nnU-Net's cross-validation
evaluation) and optionally a test-set prediction folder; refuses unfair comparisons
(``fairness``); computes mean ± std, bootstrap CI, Wilcoxon vs the reference
method with Holm correction (``stats``); adds the resource table (patch, batch,
planned and measured memory, compute hours, parameters, FLOPs) and, when the measured
peak memory of the methods differs by more than 30%, a notice naming the preset that
would match; writes Markdown, CSV and PNG.
"""
from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import numpy as np

from rep3d_nnunet.benchmark import fairness, stats
from rep3d_nnunet.benchmark.results import (MANIFEST, ResultsError, fold_dir, read_checkpoint_info, read_job_record, read_json,
                                            read_summary)

PerCase = Dict[str, Dict[str, float]]   # case -> class -> Dice


@dataclass
class MethodResults:
    name: str
    folder: Path
    trainer: str
    plans_name: str
    configuration: str
    plans: dict
    dataset_json: dict
    validation: PerCase = field(default_factory=dict)
    test: Optional[PerCase] = None
    run: Optional[fairness.MethodRun] = None
    records: Dict[int, dict] = field(default_factory=dict)   # fold -> job record / checkpoint info


def parse_folder_name(folder: Path) -> Tuple[str, str, str]:
    """``<trainer>__<plans>__<configuration>`` -> its three parts."""
    parts = Path(folder).name.split("__")
    if len(parts) != 3:
        raise ResultsError(f"{folder} is not an nnU-Net model folder (<trainer>__<plans>__<configuration>)")
    return parts[0], parts[1], parts[2]


def load_method(name: str, folder: Path, folds: Sequence[int]) -> MethodResults:
    """Read one method's plans, labels, validation Dice and per-fold records."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ResultsError(f"method {name}: results folder {folder} does not exist (not trained yet?)")
    trainer, plans_name, configuration = parse_folder_name(folder)
    plans, dataset_json = read_json(folder / "plans.json"), read_json(folder / "dataset.json")
    m = MethodResults(name, folder, trainer, plans_name, configuration, plans, dataset_json)
    run = fairness.MethodRun(name, plans, configuration, dataset_json)
    ending = dataset_json.get("file_ending", ".nii.gz")
    for f in folds:
        fd = fold_dir(folder, f)
        summary = fd / "validation" / "summary.json"
        if not summary.is_file():
            raise ResultsError(f"method {name}: {summary} is missing (fold {f} not finished or not validated)")
        per_case = read_summary(summary, ending)
        twice = sorted(set(per_case) & set(m.validation))
        if twice:
            raise ResultsError(f"method {name}: case(s) {twice[:5]} appear in the validation of more than one fold")
        m.validation.update(per_case)
        run.val_cases[f] = set(per_case)
        record = read_job_record(fd) or {}
        if "epochs" not in record and (fd / "checkpoint_final.pth").is_file():
            record = {**record, **read_checkpoint_info(fd / "checkpoint_final.pth")}
        m.records[f] = record
        run.epochs[f] = record.get("epochs")
        run.splits_sha256[f] = record.get("splits_sha256")
        run.schedules[f] = record.get("schedule")
    m.run = run
    return m


def evaluate_test_folder(pred_folder: Path, labels_folder: Optional[Path], method: MethodResults,
                         num_processes: int = 2) -> PerCase:
    """Per-case Dice of test predictions: their ``summary.json``, computed with nnU-Net's evaluator if absent."""
    summary = Path(pred_folder) / "summary.json"
    if not summary.is_file():
        if labels_folder is None:
            raise ResultsError(f"{pred_folder} has no summary.json; pass --test-labels to evaluate it")
        from nnunetv2.evaluation.evaluate_predictions import compute_metrics_on_folder2

        compute_metrics_on_folder2(str(labels_folder), str(pred_folder), str(method.folder / "dataset.json"),
                                   str(method.folder / "plans.json"), str(summary), num_processes=num_processes)
    return read_summary(summary, method.dataset_json.get("file_ending", ".nii.gz"))


@dataclass
class SetStatistics:
    """Statistics of one evaluation set (validation or test) over all methods."""
    name: str
    per_case_mean: Dict[str, Dict[str, float]]            # method -> case -> mean Dice over classes
    per_class_mean: Dict[str, Dict[str, float]]           # method -> class -> mean Dice over cases
    summaries: Dict[str, stats.MethodSummary]
    tests: Dict[str, Tuple[stats.PairedTest, float]]      # other method -> (test, Holm p)
    dropped: List[str]                                    # cases without any finite class Dice


def set_statistics(name: str, per_method: Mapping[str, PerCase], reference: str, n_resamples: int, seed: int
                   ) -> SetStatistics:
    """Per-case means (pairing checked), summaries and Holm-corrected Wilcoxon tests vs ``reference``."""
    means, dropped = {}, set()
    for method, per_case in per_method.items():
        means[method], d = stats.per_case_mean(per_case)
        dropped |= set(d)
    for method in means:  # a case without any finite Dice in one method is left out of every method (pairing)
        for case in dropped:
            means[method].pop(case, None)
    cases = {m: set(v) for m, v in means.items()}
    ref_cases = cases[reference]
    for method, c in cases.items():
        if c != ref_cases:
            stats.paired_arrays(means[reference], means[method], reference, method)  # raises, naming the cases
    per_class = {m: {k: float(np.nanmean([pc[k] for pc in per_case.values() if k in pc]))
                     for k in sorted({k for pc in per_case.values() for k in pc}, key=_class_key)}
                 for m, per_case in per_method.items()}
    summaries = {m: stats.summarise(v, n_resamples=n_resamples, seed=seed) for m, v in means.items()}
    tests = stats.compare_to_reference(means, reference) if len(means) > 1 else {}
    return SetStatistics(name, means, per_class, summaries, tests, sorted(dropped))


def _class_key(k: str):
    try:
        return (0, int(k))
    except ValueError:
        return (1, k)


MEMORY_NOTICE_RATIO = 1.3  # measured peaks further apart than this are not "equal memory"


def planned_memory(m: MethodResults, preset: str = "M") -> Dict[str, Optional[float]]:
    """The plan's batch, its network's memory estimate per sample and the GB it is sized for (``preset``'s line).

    The estimate is nnU-Net's planner unit (``compute_conv_feature_map_size`` of the training-form network,
    with the trainer's Rep3D variant applied), so ResEnc and Rep3D plans read on one scale; networks
    without an estimate (MONAI baselines) get None.
    """
    config = fairness.resolved_configuration(m.plans, m.configuration)
    out: Dict[str, Optional[float]] = {"batch_size": config.get("batch_size"), "estimate": None, "planned_gb": None}
    arch = config.get("architecture") or {}
    if not arch.get("arch_kwargs") or _is_baseline(m.trainer):
        return out  # baselines build their own network: the plans' U-Net block is not what they train
    try:
        import torch
        from nnunetv2.utilities.get_network_from_plans import get_network_from_plans

        from rep3d_nnunet.nnunet import trainers
        from rep3d_nnunet.nnunet.architecture import NETWORK_CLASS_NAME, apply_variant
        from rep3d_nnunet.nnunet.planner import planned_memory_gb

        kwargs = dict(arch["arch_kwargs"])
        # the Rep3D trainers own the variant (mask, block) the plans' geometry is built as
        variant = getattr(getattr(trainers, m.trainer, None), "variant", None)
        if variant is not None and arch["network_class_name"] == NETWORK_CLASS_NAME:
            kwargs = apply_variant(kwargs, variant)
        n_in = len(m.dataset_json.get("channel_names", m.dataset_json.get("modality", {"0": ""})))
        with torch.device("meta"):  # the estimate needs the modules, not their weights
            net = get_network_from_plans(arch["network_class_name"], kwargs, arch.get("_kw_requires_import", ()),
                                         n_in, len(m.dataset_json["labels"]), allow_init=False,
                                         deep_supervision=True)
        if hasattr(net, "compute_conv_feature_map_size"):
            out["estimate"] = float(net.compute_conv_feature_map_size(config["patch_size"]))
            out["planned_gb"] = planned_memory_gb(out["estimate"], int(config["batch_size"]), preset)
    except Exception:  # not an nnU-Net-style architecture block: no estimate, a blank column
        pass
    return out


def _is_baseline(trainer: str) -> bool:
    try:
        from rep3d_nnunet.nnunet.baselines import BASELINE_TRAINERS
    except Exception:  # MONAI missing: no baseline can have been trained here
        return False
    return trainer in BASELINE_TRAINERS


def resource_row(m: MethodResults, cost: str, cache: Dict[str, dict], preset: str = "M") -> dict:
    """Plan (patch, batch, planned GB), measured costs and network cost (``cost``: full|params|none)."""
    key = f"{m.trainer}__{m.plans_name}__{m.configuration}"
    want_flops = cost == "full"
    if cost != "none" and (key not in cache or (want_flops and cache[key].get("gflops") is None)):
        from rep3d_nnunet.benchmark.resources import network_cost

        try:
            cache[key] = network_cost(m.trainer, m.plans, m.dataset_json, m.configuration, want_flops)
        except Exception as e:  # a cost we cannot compute is a blank column, not a lost report
            cache[key] = {"error": f"{type(e).__name__}: {e}"}
    net = cache.get(key, {}) if cost != "none" else {}
    recs = list(m.records.values())
    spe = [r["seconds_per_epoch"] for r in recs if r.get("seconds_per_epoch") is not None]
    gpu = [r["peak_gpu_memory_mb"] for r in recs if r.get("peak_gpu_memory_mb") is not None]
    cpu = [r["peak_cpu_rss_mb"] for r in recs if r.get("peak_cpu_rss_mb") is not None]
    wall = [r["wall_time_s"] for r in recs if r.get("wall_time_s")]
    gpu_wall = [r["wall_time_s"] for r in recs if r.get("wall_time_s") and r.get("device", "cuda") == "cuda"]
    epochs = sorted({r["epochs"] for r in recs if r.get("epochs") is not None})
    schedules = sorted({r["schedule"] for r in recs if r.get("schedule")})
    patch = fairness.resolved_configuration(m.plans, m.configuration).get("patch_size")
    plan = planned_memory(m, preset)
    return {"params_m": net.get("params_m"), "gflops": net.get("gflops") if want_flops else None,
            "gflops_fft": net.get("gflops_fft") if want_flops else None,
            "patch_size": patch, "batch_size": plan["batch_size"], "memory_estimate": plan["estimate"],
            "planned_memory_gb": plan["planned_gb"], "cost_error": net.get("error"),
            "seconds_per_epoch": float(np.mean(spe)) if spe else None,
            "peak_gpu_memory_mb": max(gpu) if gpu else None, "peak_cpu_rss_mb": max(cpu) if cpu else None,
            "train_hours_total": sum(wall) / 3600 if wall else None,
            "gpu_hours": sum(gpu_wall) / 3600 if gpu_wall else None,
            "epochs": "/".join(map(str, epochs)) or None, "schedule": "/".join(schedules) or None,
            "gpu": next((r.get("gpu_name") for r in recs if r.get("gpu_name")), None)}


def memory_notice(resources: Mapping[str, dict], budget: Optional[str] = None) -> List[str]:
    """Markdown lines warning that measured peak memory differs by more than 30% ([] when it does not).

    Compares device peaks (GPU) when every method has one, else the processes' peak RSS (a rougher
    proxy: it includes the Python process and data loading). Names the ResEnc preset whose target
    matches the largest method's memory, relative to the budget the methods were planned with.
    """
    from rep3d_nnunet.nnunet.planner import PRESET_TARGET_GB, preset_for_memory

    for column, what in (("peak_gpu_memory_mb", "GPU memory (nvidia-smi)"),
                         ("peak_cpu_rss_mb", "CPU memory (process RSS, a rough proxy)")):
        peaks = {n: r.get(column) for n, r in resources.items()}
        if len(peaks) > 1 and all(v for v in peaks.values()):
            break
    else:
        return []
    low = min(peaks, key=peaks.get)
    high = max(peaks, key=peaks.get)
    ratio = peaks[high] / peaks[low]
    if ratio <= MEMORY_NOTICE_RATIO:
        return []
    base = budget or "M"
    target = PRESET_TARGET_GB[base] * ratio
    preset = preset_for_memory(target)
    over = ", ".join(f"{n} {peaks[n]:.0f} MiB (x{peaks[n] / peaks[low]:.2f})" for n in sorted(peaks, key=peaks.get)
                     if peaks[n] / peaks[low] > MEMORY_NOTICE_RATIO)
    return ["> **Notice: not at equal memory.** Measured peak " + what + f" differs by more than "
            f"{MEMORY_NOTICE_RATIO - 1:.0%}: {over}, against {low} {peaks[low]:.0f} MiB. {high} uses the memory of "
            f"a {target:.0f} GB plan at the {base} budget ({PRESET_TARGET_GB[base]} GB x {ratio:.2f}), which "
            f"ResEnc's **{preset}** preset ({PRESET_TARGET_GB[preset]} GB) matches"
            + (f": compare {high} with ResEnc {preset} (`benchmark run --budget {preset}` for the nnU-Net "
               f"family), or re-plan {high} with `-gpu_memory_target {PRESET_TARGET_GB[base] / ratio:.1f}` "
               "(nnU-Net-family methods; baselines follow nnUNetPlans)."
               if preset != base else
               f" as well (the gap is within one preset): re-plan {high} with `-gpu_memory_target "
               f"{PRESET_TARGET_GB[base] / ratio:.1f}` to compare at equal memory.")
            + " This is a notice, not a refusal: the results below are reported as run.", ""]


def _fmt(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "–"
    if isinstance(x, float):
        return f"{x:.{digits}f}"
    return str(x)


def _p(x: float) -> str:
    return "–" if x is None else (f"{x:.2e}" if x < 1e-3 else f"{x:.4f}")


def write_set_tables(out: Path, s: SetStatistics, per_method: Mapping[str, PerCase], reference: str) -> List[str]:
    """CSV files for one set; returns its Markdown lines."""
    methods = list(s.summaries)
    classes = sorted({k for v in s.per_class_mean.values() for k in v}, key=_class_key)
    rows = []
    for m in methods:
        sm = s.summaries[m]
        test, p_holm = s.tests.get(m, (None, None))
        rows.append({"method": m, "n_cases": sm.n, "mean_dice": sm.mean, "std": sm.std, "ci95_low": sm.ci_low,
                     "ci95_high": sm.ci_high, **{f"dice_class_{k}": s.per_class_mean[m].get(k) for k in classes},
                     "mean_diff_vs_ref": None if test is None else -test.mean_difference,
                     "wilcoxon_p": None if test is None else test.p_value, "holm_p": p_holm})
    _write_csv(out / f"summary_{s.name}.csv", rows)
    long = [{"method": m, "case": c, "class": k, "dice": d} for m, pc in per_method.items()
            for c, classes_ in sorted(pc.items()) for k, d in classes_.items()]
    long += [{"method": m, "case": c, "class": "mean", "dice": d} for m, v in s.per_case_mean.items()
             for c, d in sorted(v.items())]
    _write_csv(out / f"per_case_{s.name}.csv", long)

    md = [f"### {s.name}: per-case mean Dice over classes (n = {rows[0]['n_cases']} cases)", "",
          "| method | mean ± std | 95% bootstrap CI | " + " | ".join(f"class {k}" for k in classes)
          + f" | Δ vs {reference} | Wilcoxon p | Holm p |",
          "|---|---|---|" + "---|" * len(classes) + "---|---|---|"]
    for r in rows:
        md.append(f"| {r['method']}{' (ref)' if r['method'] == reference else ''} | "
                  f"{r['mean_dice']:.4f} ± {_fmt(r['std'])} | [{r['ci95_low']:.4f}, {r['ci95_high']:.4f}] | "
                  + " | ".join(_fmt(r[f"dice_class_{k}"]) for k in classes)
                  + f" | {_fmt(r['mean_diff_vs_ref'])} | {_p(r['wilcoxon_p'])} | {_p(r['holm_p'])} |")
    if s.dropped:
        md += ["", f"{len(s.dropped)} case(s) had no finite Dice in some method (empty reference and prediction) "
                   f"and were left out of every method: {', '.join(s.dropped[:10])}"]
    return md + [""]


def _write_csv(path: Path, rows: List[dict]) -> None:
    if not rows:
        return
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def box_plot(path: Path, s: SetStatistics, per_method: Mapping[str, PerCase]) -> None:
    """Per-case mean Dice per method, then one panel per class."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    methods = list(s.per_case_mean)
    classes = sorted({k for pc in per_method.values() for v in pc.values() for k in v}, key=_class_key)
    panels = [("mean over classes", [list(s.per_case_mean[m].values()) for m in methods])]
    for k in classes:
        panels.append((f"class {k}", [[v[k] for v in per_method[m].values() if k in v and not math.isnan(v[k])]
                                      for m in methods]))
    fig, axes = plt.subplots(1, len(panels), figsize=(1.2 + 0.9 * len(methods) * len(panels), 4), squeeze=False)
    for ax, (title, data) in zip(axes[0], panels):
        ax.boxplot(data, showmeans=True)
        ax.set_xticks(range(1, len(methods) + 1), methods, rotation=45, ha="right")
        ax.set_title(title)
        ax.set_ylim(-0.02, 1.02)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel(f"Dice ({s.name})")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _commands_section(methods, command: Optional[str]) -> List[str]:
    """The ``benchmark run`` command lines recorded in the results' manifest(s), and this report's."""
    runs: List[str] = []
    for m in methods:
        manifest = Path(m.folder).parent / MANIFEST
        if manifest.is_file():
            runs += [c for c in read_json(manifest).get("run_commands", []) if c not in runs]
    lines = runs + ([command] if command else [])
    if not lines:
        return []
    return ["Produced by:", "", "```", *lines, "```", ""]


def benchmark_report(methods: Mapping[str, Path], folds: Sequence[int], out_dir: Path, reference: Optional[str] = None,
                     test_predictions: Optional[Mapping[str, Path]] = None, test_labels: Optional[Path] = None,
                     allow_unfair: Sequence[str] = (), cost: str = "full", n_resamples: int = 10000, seed: int = 0,
                     title: Optional[str] = None, budget: Optional[str] = None, command: Optional[str] = None) -> Path:
    """Write ``report.md``, CSV tables and box plots to ``out_dir``; return the Markdown path.

    ``budget``: the preset (M, L, XL) the methods were planned with (planned memory is read on its
    reference line; the memory notice names presets relative to it). ``command``: the report's own
    command line, quoted with the ``benchmark run`` command lines recorded in the results' manifest.
    """
    if len(methods) < 1:
        raise ResultsError("no methods to report")
    reference = reference or next(iter(methods))
    if reference not in methods:
        raise ResultsError(f"reference method {reference!r} is not among {list(methods)}")
    loaded = {name: load_method(name, folder, folds) for name, folder in methods.items()}
    differences = fairness.check_all([m.run for m in loaded.values()])
    allowed = fairness.enforce(differences, allow_unfair)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sets = {"validation": {n: m.validation for n, m in loaded.items()}}
    if test_predictions:
        missing = [n for n in methods if n not in test_predictions]
        if missing:
            raise ResultsError(f"test predictions given for some methods but not for {missing}")
        for n, m in loaded.items():
            m.test = evaluate_test_folder(Path(test_predictions[n]), test_labels, m)
        sets["test"] = {n: m.test for n, m in loaded.items()}

    cache_path = out_dir / "network_cost_cache.json"
    cache = json.loads(cache_path.read_text()) if cache_path.is_file() else {}
    cache = {k: v for k, v in cache.items() if "error" not in v}  # retry what failed last time
    resources = {n: resource_row(m, cost, cache, budget or "M") for n, m in loaded.items()}
    cache_path.write_text(json.dumps(cache, indent=2))

    schedules = sorted({r["schedule"] for r in resources.values() if r.get("schedule")})
    md = [f"# {title or 'Benchmark report'}", ""]
    md += memory_notice(resources, budget)
    md += [f"Methods: {', '.join(f'{n} (`{m.folder.name}`)' for n, m in loaded.items())}. Folds: {list(folds)}. "
           f"Reference for paired tests: **{reference}**. Budget: {budget or 'none given (each method its own planner)'}"
           f". Schedule: {', '.join(f'`{s}`' for s in schedules) or 'not recorded'}.", ""]
    md += _commands_section(loaded.values(), command)
    md += ["## Fairness", ""]
    if allowed:
        md += ["**OVERRIDE: this comparison is NOT fair.** Differences allowed by `--allow-unfair "
               f"{' '.join(sorted({d.kind for d in allowed}))}`:", ""]
        md += [f"- [{d.kind}] {d.message}" for d in allowed] + [""]
    else:
        md += ["Checked equal for every method: validation cases of every fold (and the recorded "
               "`splits_final.json` hash), preprocessing (data identifier, spacing, normalisation, resampling, "
               "transpose, intensity properties), label set, epochs trained and the recorded schedule.", ""]
    md += ["## Dice", "",
           f"Per case: mean Dice over classes (NaN classes ignored, as nnU-Net does). Mean ± sample std over cases; "
           f"95% percentile bootstrap CI of the mean ({n_resamples} resamples, seed {seed}); two-sided Wilcoxon "
           f"signed-rank test of {reference} vs each method on paired per-case means (scipy; zero differences "
           "dropped), Holm-corrected over the comparisons. Δ = method − reference.", ""]
    for set_name, per_method in sets.items():
        s = set_statistics(set_name, per_method, reference, n_resamples, seed)
        md += write_set_tables(out_dir, s, per_method, reference)
        box_plot(out_dir / f"boxplot_{set_name}.png", s, per_method)
        md += [f"![{set_name} Dice](boxplot_{set_name}.png)", ""]

    md += ["## Resources", "",
           f"Plan: patch and batch of the plans; planned memory = nnU-Net's estimate for the training-form network "
           f"(`compute_conv_feature_map_size`, per sample) x batch, read on ResEnc {budget or 'M'}'s reference line "
           "(what the planner sized the plan for; – where the network has no estimate, e.g. MONAI baselines, whose "
           "patch is nnU-Net's rounded up to the network's multiple). Measured: peak GPU memory (device-level "
           "nvidia-smi polling, one job per GPU) and peak CPU RSS of the training process; compute hours = wall "
           "time summed over folds (GPU-h: jobs run on CUDA). Network: parameters and GFLOPs of the inference "
           "network (as `nnUNetv2_predict` builds it; Rep3D in deploy form) for one patch, FLOPs = 2 x "
           "multiply-adds; **direct** counts every convolution as a direct convolution (torch FlopCounterMode), "
           "**FFT** counts the large depthwise convolutions (kernel > 3) at the cost of the FFT path that runs them "
           "(5 N log2 N per complex transform, halved for real input; input, kernel and inverse transforms plus the "
           "spectral product) and everything else directly.", "",
           "| method | patch | batch | planned GB | peak GPU MiB | peak RSS MiB | epochs | s/epoch | compute h "
           "(all folds) | GPU-h | params (M) | GFLOPs direct | GFLOPs FFT | GPU |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    rows = []
    for n, r in resources.items():
        md.append(f"| {n} | {'×'.join(map(str, r['patch_size'] or [])) or '–'} | {_fmt(r['batch_size'])} | "
                  f"{_fmt(r['planned_memory_gb'], 2)} | {_fmt(r['peak_gpu_memory_mb'], 0)} | "
                  f"{_fmt(r['peak_cpu_rss_mb'], 0)} | {r['epochs'] or '–'} | {_fmt(r['seconds_per_epoch'], 1)} | "
                  f"{_fmt(r['train_hours_total'], 3)} | {_fmt(r['gpu_hours'], 3)} | {_fmt(r['params_m'], 2)} | "
                  f"{_fmt(r['gflops'], 1)} | {_fmt(r['gflops_fft'], 1)} | {r['gpu'] or '–'} |")
        rows.append({"method": n, **{k: v for k, v in r.items() if k != "patch_size"},
                     "patch_size": "x".join(map(str, r["patch_size"] or []))})
    errors = [f"- {n}: {r['cost_error']}" for n, r in resources.items() if r.get("cost_error")]
    if errors:
        md += ["", "Network cost not computed for:"] + errors
    _write_csv(out_dir / "resources.csv", rows)
    report = out_dir / "report.md"
    report.write_text("\n".join(md) + "\n")
    return report
