"""The unfair-comparison guard: methods must share splits, preprocessing, label set, epochs and schedule.

Each check compares one "signature" per method and returns ``Difference``s naming
what differs; ``enforce`` raises unless every difference's kind was explicitly
allowed (the report then prints the allowed differences).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Mapping, Optional, Set

KINDS = ("splits", "preprocessing", "labels", "epochs", "schedule")

# configuration entries that decide the network's input voxels (not the architecture)
PREPROCESSING_CONFIG_KEYS = ("data_identifier", "preprocessor_name", "spacing", "normalization_schemes",
                             "use_mask_for_norm", "resampling_fn_data", "resampling_fn_data_kwargs",
                             "resampling_fn_seg", "resampling_fn_seg_kwargs")
PREPROCESSING_PLANS_KEYS = ("transpose_forward", "transpose_backward", "foreground_intensity_properties_per_channel",
                            "image_reader_writer")


class UnfairComparisonError(RuntimeError):
    """Methods differ in something a fair comparison must hold equal."""


@dataclass(frozen=True)
class Difference:
    kind: str       # one of KINDS
    message: str    # names the methods and what differs


@dataclass
class MethodRun:
    """What the guard needs to know about one method's results."""
    method: str
    plans: dict
    configuration: str
    dataset_json: dict
    val_cases: Dict[int, Set[str]] = field(default_factory=dict)    # fold -> validation case ids
    epochs: Dict[int, Optional[int]] = field(default_factory=dict)  # fold -> epochs trained
    splits_sha256: Dict[int, Optional[str]] = field(default_factory=dict)  # fold -> recorded splits hash
    schedules: Dict[int, Optional[str]] = field(default_factory=dict)  # fold -> recorded `--schedule`


def preprocessing_signature(plans: dict, configuration: str) -> Dict[str, object]:
    """The preprocessing-relevant entries of a plans file for one configuration (inheritance resolved)."""
    config = resolved_configuration(plans, configuration)
    sig = {k: config.get(k) for k in PREPROCESSING_CONFIG_KEYS}
    sig.update({k: plans.get(k) for k in PREPROCESSING_PLANS_KEYS})
    return sig


def resolved_configuration(plans: dict, configuration: str) -> dict:
    """A configuration with nnU-Net's ``inherits_from`` chain applied (child entries win)."""
    configs, chain, name = plans.get("configurations", {}), [], configuration
    while name is not None:
        if name not in configs or name in chain:
            raise UnfairComparisonError(f"plans {plans.get('plans_name')!r}: configuration {name!r} is missing or "
                                        "inherits from itself")
        chain.append(name)
        name = configs[name].get("inherits_from")
    merged: dict = {}
    for name in reversed(chain):
        merged.update(configs[name])
    return merged


def label_signature(dataset_json: dict) -> Dict[str, object]:
    return {"labels": dataset_json.get("labels"), "regions_class_order": dataset_json.get("regions_class_order")}


def _canon(value: object) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _compare(kind: str, what: str, signatures: Mapping[str, Mapping[str, object]]) -> List[Difference]:
    """One Difference per key whose value is not the same for every method."""
    methods = list(signatures)
    out = []
    keys = sorted({k for s in signatures.values() for k in s})
    for key in keys:
        values = {m: _canon(signatures[m].get(key)) for m in methods}
        if len(set(values.values())) > 1:
            shown = "; ".join(f"{m}: {values[m][:120]}" for m in methods)
            out.append(Difference(kind, f"{what} differ in {key!r} -- {shown}"))
    return out


def check_preprocessing(runs: Iterable[MethodRun]) -> List[Difference]:
    return _compare("preprocessing", "preprocessing (plans)",
                    {r.method: preprocessing_signature(r.plans, r.configuration) for r in runs})


def check_labels(runs: Iterable[MethodRun]) -> List[Difference]:
    return _compare("labels", "label sets (dataset.json)", {r.method: label_signature(r.dataset_json) for r in runs})


def check_splits(runs: Iterable[MethodRun]) -> List[Difference]:
    runs = list(runs)
    out = []
    folds = {r.method: sorted(r.val_cases) for r in runs}
    if len({tuple(f) for f in folds.values()}) > 1:
        out.append(Difference("splits", "methods were evaluated on different folds -- "
                              + "; ".join(f"{m}: {f}" for m, f in folds.items())))
    ref = runs[0]
    for fold in sorted(ref.val_cases):
        for r in runs[1:]:
            if fold not in r.val_cases:
                continue
            a, b = ref.val_cases[fold], r.val_cases[fold]
            if a != b:
                out.append(Difference("splits", f"fold {fold}: validation cases of {ref.method} and {r.method} differ "
                                      f"(only in {ref.method}: {sorted(a - b)[:5]}; only in {r.method}: "
                                      f"{sorted(b - a)[:5]})"))
    hashes = {(r.method, f): h for r in runs for f, h in r.splits_sha256.items() if h}
    if len(set(hashes.values())) > 1:
        out.append(Difference("splits", "the splits_final.json recorded at training differ -- "
                              + "; ".join(f"{m} fold {f}: {h[:12]}" for (m, f), h in sorted(hashes.items()))))
    return out


def check_epochs(runs: Iterable[MethodRun]) -> List[Difference]:
    runs = list(runs)
    per = {f"{r.method} fold {f}": e for r in runs for f, e in sorted(r.epochs.items())}
    unknown = [k for k, e in per.items() if e is None]
    out = []
    if unknown:
        out.append(Difference("epochs", f"epochs trained unknown (no checkpoint_final.pth) for: {', '.join(unknown)}"))
    known = {k: e for k, e in per.items() if e is not None}
    if len(set(known.values())) > 1:
        out.append(Difference("epochs", "methods were trained for different numbers of epochs -- "
                              + "; ".join(f"{k}: {e}" for k, e in known.items())))
    return out


def check_schedules(runs: Iterable[MethodRun]) -> List[Difference]:
    """The recorded ``--schedule`` (e.g. cpu:20x10,batch2: iterations and batch, not only epochs) must match.

    Folds without a record (trained outside the runner) are not compared here; their epochs still are.
    """
    per = {f"{r.method} fold {f}": s for r in runs for f, s in sorted(r.schedules.items()) if s}
    if len(set(per.values())) > 1:
        return [Difference("schedule", "methods were trained on different schedules -- "
                           + "; ".join(f"{k}: {s}" for k, s in per.items()))]
    return []


def check_all(runs: Iterable[MethodRun]) -> List[Difference]:
    runs = list(runs)
    return (check_splits(runs) + check_preprocessing(runs) + check_labels(runs) + check_epochs(runs)
            + check_schedules(runs))


def enforce(differences: Iterable[Difference], allow: Iterable[str] = ()) -> List[Difference]:
    """Raise ``UnfairComparisonError`` for any difference not allowed; return the allowed ones."""
    allow = set(allow)
    bad_kinds = allow - set(KINDS)
    if bad_kinds:
        raise ValueError(f"unknown override(s) {sorted(bad_kinds)}; choose from {KINDS}")
    differences = list(differences)
    refused = [d for d in differences if d.kind not in allow]
    if refused:
        lines = "\n".join(f"  - [{d.kind}] {d.message}" for d in refused)
        kinds = " ".join(sorted({d.kind for d in refused}))
        raise UnfairComparisonError(f"unfair comparison refused:\n{lines}\n"
                                    f"Fix the runs, or pass --allow-unfair {kinds} to report anyway "
                                    "(the report will then state these differences).")
    return differences
