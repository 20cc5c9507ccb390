"""``benchmark run``: one dataset, ONE data identifier, ONE splits file, the (method x fold) matrix.

Preparation (plans, preprocessing, ``splits_final.json``) happens once, before any
training, through nnU-Net's own console scripts and its own split function. Every
job is one stock ``nnUNetv2_train`` call; where it runs is an executor's business:
sequentially, one job per GPU of this machine, or a SLURM job array via submitit.
Jobs decide for themselves (from the files on disk) whether to skip, continue with
``--c`` or start, so a re-run, a resubmission or a preempted array task all do the
right thing.
"""
from __future__ import annotations

import hashlib
import json
import os
import queue
import shutil
import socket
import subprocess
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence

from rep3d_nnunet.benchmark import fairness
from rep3d_nnunet.benchmark.methods import Method, check_schedule, schedule_env
from rep3d_nnunet.benchmark.results import (JOB_RECORD, MANIFEST, fold_dir, fold_finished, fold_started, model_folder,
                                            read_checkpoint_info, read_json)
from rep3d_nnunet.nnunet import adapter

NNUNET_VARS = adapter.NNUNET_VARS


class BenchmarkError(RuntimeError):
    """The benchmark cannot run as asked; nothing further was started."""


def _bin(name: str) -> str:
    """A console script of this Python's environment (so the venv need not be activated), else PATH's."""
    return adapter.console_script(name, required=False)


def _check_env() -> Dict[str, Path]:
    try:
        return adapter.nnunet_paths("nnUNet_preprocessed", "nnUNet_results")
    except adapter.NnUNetEnvironmentError as e:
        raise BenchmarkError(str(e)) from None


def dataset_name(dataset: str) -> str:
    """``DatasetXXX_Name`` for an id or name (``adapter.dataset_name``: the folders named by the environment now)."""
    try:
        return adapter.dataset_name(dataset)
    except adapter.NnUNetEnvironmentError as e:
        raise BenchmarkError(str(e)) from None


def _run_tool(args: Sequence[str], what: str) -> None:
    try:
        adapter.run_console_script(args, what=what, log=lambda line: print(f"[benchmark] {line}", flush=True))
    except adapter.ConsoleScriptError as e:
        raise BenchmarkError(str(e)) from None


# ---------------------------------------------------------------- class lookup (pre-flight)

def check_trainer_findable(trainer: str) -> None:
    """Fail now, not after hours of other jobs, if ``nnUNetv2_train -tr trainer`` cannot find it."""
    try:
        adapter.nnunet_finds_trainer(trainer)
    except adapter.TrainerNotFoundError as e:
        raise BenchmarkError(f"nnUNetv2_train cannot find trainer {trainer!r}: {e}") from None


def check_planner_findable(planner: str) -> None:
    """Fail before planning if ``nnUNetv2_plan_experiment -pl planner`` cannot find it."""
    try:
        adapter.nnunet_finds_planner(planner)
    except adapter.TrainerNotFoundError as e:
        raise BenchmarkError(f"nnUNetv2_plan_experiment cannot find planner {planner!r}: {e}") from None


# ---------------------------------------------------------------- preparation

@dataclass
class Prepared:
    dataset: str
    configuration: str
    data_identifier: str
    splits_sha256: str
    n_splits: int


def splits_sha256(path: Path) -> str:
    """Hash of the splits' content (canonical JSON), not of the file's bytes/formatting."""
    return hashlib.sha256(json.dumps(read_json(path), sort_keys=True).encode()).hexdigest()


def _case_identifiers(data_folder: Path) -> List[str]:
    from nnunetv2.training.dataloading.nnunet_dataset import infer_dataset_class

    return sorted(infer_dataset_class(str(data_folder)).get_identifiers(str(data_folder)))


def ensure_splits(preprocessed: Path, data_folder: Path, folds: Sequence[int]) -> Path:
    """Write nnU-Net's own 5-fold split if there is none; verify it against the preprocessed cases.

    Same function, seed and sorted identifiers as ``nnUNetTrainer.do_split``, so the
    file is what nnU-Net would write itself -- but written once, before any job, so
    parallel jobs never race to create it.
    """
    from nnunetv2.utilities.crossval_split import generate_crossval_split

    path = preprocessed / "splits_final.json"
    cases = _case_identifiers(data_folder)
    if not path.is_file():
        splits = generate_crossval_split(cases, seed=12345, n_splits=5)
        path.write_text(json.dumps(splits, indent=4))
        print(f"[benchmark] wrote {path} (nnU-Net's 5-fold split, seed 12345)", flush=True)
    splits = read_json(path)
    if not isinstance(splits, list) or not splits:
        raise BenchmarkError(f"{path} is not a list of folds")
    too_high = [f for f in folds if f >= len(splits)]
    if too_high:
        raise BenchmarkError(f"{path} defines {len(splits)} folds; fold(s) {too_high} do not exist "
                             "(nnU-Net would silently use a random 80:20 split instead)")
    known = set(cases)
    for i, s in enumerate(splits):
        overlap = set(s["train"]) & set(s["val"])
        unknown = (set(s["train"]) | set(s["val"])) - known
        if overlap:
            raise BenchmarkError(f"{path} fold {i}: cases in both train and val: {sorted(overlap)[:5]}")
        if unknown:
            raise BenchmarkError(f"{path} fold {i}: cases not in {data_folder}: {sorted(unknown)[:5]}")
    return path


def prepare(dataset: str, methods: Sequence[Method], folds: Sequence[int], num_processes: int = 4,
            allow_unfair: Sequence[str] = ()) -> Prepared:
    """Fingerprint, every method's plans, one preprocessing, one splits file; refuse mixed preprocessing."""
    paths = _check_env()
    name = dataset_name(dataset)
    dataset = str(int(name[len("Dataset"):len("Dataset") + 3]))  # nnU-Net's planning scripts take ids only
    configurations = {m.configuration for m in methods}
    if len(configurations) != 1:
        raise BenchmarkError(f"methods use different configurations {sorted(configurations)}; benchmark one at a time")
    configuration = configurations.pop()
    pre = paths["nnUNet_preprocessed"] / name
    if not (pre / "dataset_fingerprint.json").is_file():
        _run_tool([_bin("nnUNetv2_extract_fingerprint"), "-d", dataset, "-np", str(num_processes)], "fingerprint")
    planned = set()
    for m in methods:
        if (pre / f"{m.plans}.json").is_file():
            continue
        if not (pre / f"{m.planner_plans}.json").is_file() and m.planner_plans not in planned:
            check_planner_findable(m.planner)
            _run_tool([_bin("nnUNetv2_plan_experiment"), "-d", dataset, "-pl", m.planner], f"plans for {m.name}")
            planned.add(m.planner_plans)
        if m.derived:  # same plans, patch rounded up to what the network accepts; same preprocessed data
            _run_tool([_bin("rep3d-nnunet"), "plans", "divisible", "-d", dataset, "--multiple",
                       str(m.patch_multiple), "--source-plans", m.source_plans, "--plans-name", m.plans],
                      f"patch-divisible plans for {m.name}")
        if not (pre / f"{m.plans}.json").is_file():
            raise BenchmarkError(f"planning did not write {pre / (m.plans + '.json')} (method {m.name})")

    # one data identifier and identical preprocessing for every method, checked on the plans
    runs = []
    for m in methods:
        plans = read_json(pre / f"{m.plans}.json")
        runs.append(fairness.MethodRun(m.name, plans, configuration, {}))
    fairness.enforce(fairness.check_preprocessing(runs), allow_unfair)
    ids = {r.method: fairness.preprocessing_signature(r.plans, configuration)["data_identifier"] for r in runs}
    if len(set(ids.values())) > 1:  # even with the override: one run shares one preprocessed folder
        raise BenchmarkError(f"methods need different preprocessed data: {ids}")
    data_identifier = next(iter(ids.values()))

    data_folder = pre / data_identifier
    n_cases = len(read_json(pre / "dataset_fingerprint.json").get("shapes_after_crop", []))
    have = len(list(data_folder.glob("*.pkl"))) if data_folder.is_dir() else 0
    if have != n_cases:
        _run_tool([_bin("nnUNetv2_preprocess"), "-d", dataset, "-plans_name", methods[0].plans, "-c", configuration,
                   "-np", str(num_processes)], f"preprocessing ({data_identifier}, {n_cases} cases)")
    splits = ensure_splits(pre, data_folder, folds)
    sha = splits_sha256(splits)

    # the manifest pins the splits: finished folds must never be mixed with folds of another split
    manifest_path = paths["nnUNet_results"] / name / MANIFEST
    manifest = read_json(manifest_path) if manifest_path.is_file() else {}
    if manifest.get("splits_sha256", sha) != sha:
        raise BenchmarkError(f"{splits} changed since earlier benchmark jobs were run (recorded in {manifest_path}); "
                             "their folds used other splits. Restore the file or move the old results away.")
    manifest.update({"dataset": name, "configuration": configuration, "data_identifier": data_identifier,
                     "splits_sha256": sha, "splits_file": str(splits)})
    manifest.setdefault("methods", {}).update({m.name: {**asdict(m), "plans": m.plans} for m in methods})
    manifest_path.parent.mkdir(parents=True, exist_ok=True)
    manifest_path.write_text(json.dumps(manifest, indent=2))
    return Prepared(name, configuration, data_identifier, sha, len(read_json(splits)))


# ---------------------------------------------------------------- jobs

@dataclass
class Job:
    method: str
    dataset: str            # dataset name (DatasetXXX_Name)
    configuration: str
    fold: int
    trainer: str
    plans: str
    device: str = "cuda"    # nnUNetv2_train -device
    splits_sha256: Optional[str] = None
    data_identifier: Optional[str] = None
    env: Dict[str, str] = field(default_factory=dict)   # nnU-Net paths etc., pinned at submission
    train_args: List[str] = field(default_factory=list)  # extra nnUNetv2_train arguments (e.g. --npz)
    executable: str = "nnUNetv2_train"
    init_env: Optional[str] = None          # variable naming the checkpoint this job starts from (UpKern)
    init_checkpoint: Optional[str] = None   # another job's checkpoint_final.pth (same fold): run after it
    schedule: str = "full"                  # as given to `benchmark run --schedule` (recorded; cpu: sets env)
    budget: Optional[str] = None            # the planner preset (M, L, XL) its plans come from, if any

    @property
    def name(self) -> str:
        return f"{self.method}/fold_{self.fold}"

    def schedule_conflict(self) -> Optional[str]:
        """Why this fold's folder cannot be used for ``schedule`` (it holds another schedule's run), or None.

        The ``_tiny`` trainer writes one folder whatever ``REP3D_CPU_SCHEDULE`` says, so the recorded
        schedule, not the folder name, tells a finished 20x10 run from a 2x2 one.
        """
        record_path = self.output_folder() / JOB_RECORD
        if self.state() == "new" or not record_path.is_file():
            return None
        recorded = read_json(record_path).get("schedule", "full")
        if recorded != self.schedule:
            return (f"{self.name}: {self.output_folder()} holds a run with schedule {recorded!r}, not {self.schedule!r}; "
                    "move that folder away (or run with the same schedule)")
        return None

    def output_folder(self) -> Path:
        return fold_dir(model_folder(self.dataset, self.trainer, self.plans, self.configuration,
                                     self.env.get("nnUNet_results")), self.fold)

    def state(self) -> str:
        """'finished' (skip), 'resume' (``--c``) or 'new'."""
        out = self.output_folder()
        return "finished" if fold_finished(out) else "resume" if fold_started(out) else "new"

    def command(self) -> List[str]:
        cmd = [_bin(self.executable), self.dataset, self.configuration, str(self.fold), "-tr", self.trainer,
               "-p", self.plans, "-device", self.device, *self.train_args]
        return cmd + ["--c"] if self.state() == "resume" else cmd


def make_jobs(prepared: Prepared, methods: Sequence[Method], folds: Sequence[int], schedule: str, device: str,
              train_args: Sequence[str] = ()) -> List[Job]:
    env = {v: os.environ[v] for v in NNUNET_VARS if os.environ.get(v)}
    by_name = {m.name: m for m in methods}
    jobs = []
    for m in methods:
        for f in folds:
            job = Job(m.name, prepared.dataset, prepared.configuration, f, m.trainer_for(schedule), m.plans, device,
                      prepared.splits_sha256, prepared.data_identifier, {**env, **schedule_env(schedule)},
                      list(train_args), schedule=schedule, budget=m.budget)
            if m.init_from:
                src = by_name[m.init_from]
                job.init_env = m.init_env
                job.init_checkpoint = str(fold_dir(model_folder(prepared.dataset, src.trainer_for(schedule), src.plans,
                                                                src.configuration, env.get("nnUNet_results")), f)
                                          / "checkpoint_final.pth")
            jobs.append(job)
    return jobs


def waves(jobs: Sequence[Job]) -> List[List[Job]]:
    """Jobs that start from another job's checkpoint run in a second wave, after every first-wave job."""
    first = [j for j in jobs if not j.init_checkpoint]
    second = [j for j in jobs if j.init_checkpoint]
    return [w for w in (first, second) if w]


class _GpuMemoryPoller:
    """Peak device memory (MiB) of the GPUs this job may see, polled with nvidia-smi every ``interval`` s.

    Device-level (includes any other process on those GPUs): one job per GPU makes it the job's peak.
    """

    def __init__(self, visible: Optional[str], enabled: bool = True, interval: float = 2.0):
        self.visible = [v.strip() for v in visible.split(",")] if visible else None
        self.interval, self.peak = interval, None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self.available = enabled and shutil.which("nvidia-smi") is not None

    def _sample(self) -> Optional[float]:
        try:
            out = subprocess.run(["nvidia-smi", "--query-gpu=index,uuid,memory.used", "--format=csv,noheader,nounits"],
                                 capture_output=True, text=True, timeout=20).stdout
        except (OSError, subprocess.SubprocessError):
            return None
        total = 0.0
        for line in out.strip().splitlines():
            index, uuid, used = [p.strip() for p in line.split(",")]
            if self.visible is None or index in self.visible or uuid in self.visible:
                total += float(used)
        return total

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            value = self._sample()
            if value is not None:
                self.peak = value if self.peak is None else max(self.peak, value)

    def __enter__(self) -> "_GpuMemoryPoller":
        if self.available:
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self.available:
            self._thread.join(timeout=30)


def run_job(job: Job, extra_env: Optional[Dict[str, str]] = None, quiet: bool = False) -> dict:
    """Run (or skip, or continue) one fold with stock ``nnUNetv2_train``; write and return its record.

    The record (``fold_X/benchmark_job.json``) accumulates attempts, so an interrupted
    and continued fold reports its total wall time.
    """
    out = job.output_folder()
    state = job.state()
    record_path = out / JOB_RECORD
    previous = read_json(record_path) if record_path.is_file() else {}
    conflict = job.schedule_conflict()
    if conflict:
        raise BenchmarkError(conflict)
    if state == "finished" and previous.get("status") == "finished":
        if not quiet:
            print(f"[benchmark] {job.name}: finished earlier, skipped", flush=True)
        return previous
    cmd = job.command()
    env = {**os.environ, **job.env, **(extra_env or {})}
    if job.init_checkpoint:
        if not Path(job.init_checkpoint).is_file():
            raise BenchmarkError(f"{job.name} starts from {job.init_checkpoint}, which does not exist yet "
                                 "(its method must finish this fold first)")
        env[job.init_env] = job.init_checkpoint
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "benchmark_train.log"
    attempts = list(previous.get("attempts", []))
    attempt = {"command": cmd, "state_before": state, "host": socket.gethostname(),
               "CUDA_VISIBLE_DEVICES": env.get("CUDA_VISIBLE_DEVICES"), "started": time.time()}
    if state != "finished":
        if not quiet:
            print(f"[benchmark] {job.name}: {'continuing (--c)' if state == 'resume' else 'training'}; "
                  f"log {log_path}", flush=True)
        with open(log_path, "a") as log, _GpuMemoryPoller(env.get("CUDA_VISIBLE_DEVICES"),
                                                          enabled=job.device == "cuda") as gpu:
            log.write(f"\n=== {time.ctime()} {' '.join(cmd)}\n")
            log.flush()
            t0 = time.perf_counter()
            proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
            # wait4 gives this child's own rusage (its peak RSS, or its largest reaped worker's)
            _, status, usage = os.wait4(proc.pid, 0)
            proc.returncode = os.waitstatus_to_exitcode(status)
            wall = time.perf_counter() - t0
        attempt.update(wall_time_s=wall, returncode=proc.returncode, peak_cpu_rss_mb=usage.ru_maxrss / 1024.0,
                       peak_gpu_memory_mb=gpu.peak if job.device == "cuda" else None)
    else:  # finished by nnU-Net outside the runner (or before records existed): just record it
        attempt.update(wall_time_s=0.0, returncode=0, peak_cpu_rss_mb=None, peak_gpu_memory_mb=None)
    attempts.append(attempt)
    finished = fold_finished(out)
    record = {"method": job.method, "dataset": job.dataset, "configuration": job.configuration, "fold": job.fold,
              "trainer": job.trainer, "plans": job.plans, "device": job.device, "splits_sha256": job.splits_sha256,
              "data_identifier": job.data_identifier, "status": "finished" if finished else "failed",
              "schedule": job.schedule, "budget": job.budget,
              "attempts": attempts, "wall_time_s": sum(a["wall_time_s"] for a in attempts),
              "peak_cpu_rss_mb": _max(a.get("peak_cpu_rss_mb") for a in attempts),
              "peak_gpu_memory_mb": _max(a.get("peak_gpu_memory_mb") for a in attempts),
              "gpu_name": _gpu_name(env) if job.device == "cuda" else None}
    if finished:
        record.update(read_checkpoint_info(out / "checkpoint_final.pth"))
    record_path.write_text(json.dumps(record, indent=2))
    if not finished:
        tail = log_path.read_text()[-3000:] if log_path.is_file() else ""
        raise BenchmarkError(f"{job.name}: nnUNetv2_train exited {attempt['returncode']} without finishing "
                             f"(log {log_path}):\n{tail}")
    if not quiet:
        print(f"[benchmark] {job.name}: done in {attempt['wall_time_s']:.0f} s "
              f"({record.get('epochs')} epochs, {record.get('seconds_per_epoch') or float('nan'):.1f} s/epoch)",
              flush=True)
    return record


def _max(values) -> Optional[float]:
    v = [x for x in values if x is not None]
    return max(v) if v else None


def _gpu_name(env: Dict[str, str]) -> Optional[str]:
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=20, env=env).stdout.strip().splitlines()
    except (OSError, subprocess.SubprocessError):
        return None
    return out[0] if out else None


# ---------------------------------------------------------------- executors

def run_sequential(jobs: Sequence[Job]) -> List[dict]:
    """One job after the other; stops at the first failure (later jobs would likely fail alike)."""
    return [run_job(j) for j in jobs]


def run_on_gpus(jobs: Sequence[Job], gpus: Sequence[str]) -> List[dict]:
    """One job per GPU at a time (``CUDA_VISIBLE_DEVICES``), each GPU pulling the next job when free.

    A failing job does not stop the others; failures are raised together at the end.
    """
    todo: "queue.Queue[Job]" = queue.Queue()
    for j in jobs:
        todo.put(j)
    records: List[dict] = []
    failures: List[str] = []
    lock = threading.Lock()

    def worker(gpu: str) -> None:
        while True:
            try:
                job = todo.get_nowait()
            except queue.Empty:
                return
            try:
                rec = run_job(job, {"CUDA_VISIBLE_DEVICES": gpu})
                with lock:
                    records.append(rec)
            except Exception as e:  # keep the other GPUs busy; report everything at the end
                with lock:
                    failures.append(f"{job.name} (GPU {gpu}): {e}")

    threads = [threading.Thread(target=worker, args=(g,)) for g in gpus]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if failures:
        raise BenchmarkError(f"{len(failures)} job(s) failed:\n" + "\n".join(failures))
    return records


class SubmititTrainJob:
    """A submitit-checkpointable wrapper around ``run_job``.

    On timeout or preemption submitit calls ``checkpoint`` and requeues the same job;
    the job then finds nnU-Net's checkpoint on disk and continues with ``--c``.
    """

    def __init__(self, job: Job):
        self.job = job

    def __call__(self) -> dict:
        return run_job(self.job)

    def checkpoint(self, *args, **kwargs):
        import submitit

        return submitit.helpers.DelayedSubmission(SubmititTrainJob(self.job))


def submit_slurm(jobs: Sequence[Job], folder: Path, cluster: Optional[str] = None,
                 parameters: Optional[Dict[str, object]] = None) -> list:
    """Submit the jobs as one SLURM job array through submitit; return submitit's job objects.

    ``cluster``: None/'slurm' for SLURM, 'local' or 'debug' for submitit's local
    executors (tests, or a machine without SLURM). ``parameters`` go to
    ``executor.update_parameters`` (e.g. timeout_min, slurm_partition, gpus_per_node).
    """
    try:
        import submitit
    except ImportError as e:
        raise BenchmarkError("the SLURM path needs submitit: pip install submitit "
                             "(or pip install 'rep3d-nnunet[benchmark]')") from e
    executor = submitit.AutoExecutor(folder=str(folder), cluster=cluster)
    defaults: Dict[str, object] = {"name": "rep3d-benchmark", "timeout_min": 24 * 60}
    if executor.cluster == "slurm":
        defaults.update(gpus_per_node=1, tasks_per_node=1, cpus_per_task=8, slurm_array_parallelism=len(jobs) or 1)
    defaults.update(parameters or {})
    executor.update_parameters(**defaults)
    with executor.batch():
        handles = [executor.submit(SubmititTrainJob(j)) for j in jobs]
    return handles


def describe(jobs: Sequence[Job]) -> List[str]:
    """One line per job: its state and the exact command it would run."""
    return [f"{j.name:28s} {j.state():8s} " + ("(skip)" if j.state() == "finished" else " ".join(j.command()))
            for j in jobs]


def benchmark_run(dataset: str, methods: Sequence[Method], folds: Sequence[int], schedule: str = "full",
                  device: str = "cuda", gpus: Sequence[str] = (), slurm: Optional[Dict[str, object]] = None,
                  slurm_cluster: Optional[str] = None, dry_run: bool = False, num_processes: int = 4,
                  train_args: Sequence[str] = (), allow_unfair: Sequence[str] = (),
                  log: Callable[[str], None] = print, command: Optional[str] = None) -> List[Job]:
    """Prepare once, then run (or submit) the matrix. Returns the jobs (with their final states).

    ``schedule``: see ``methods.SCHEDULE_HELP``; ``cpu:EXI,batchN`` runs every method's ``_tiny`` trainer with
    ``REP3D_CPU_SCHEDULE`` set, identically for all. Methods come with their budget applied (``get_methods``).
    """
    check_schedule(schedule)
    trainers = {m.trainer_for(schedule) for m in methods}
    for t in sorted(trainers):  # every trainer must be findable before anything is trained
        check_trainer_findable(t)
    prepared = prepare(dataset, methods, folds, num_processes, allow_unfair)
    jobs = make_jobs(prepared, methods, folds, schedule, device, train_args)
    conflicts = [c for c in (j.schedule_conflict() for j in jobs) if c]
    if conflicts:  # before anything is trained
        raise BenchmarkError("\n".join(conflicts))
    if command:  # the report quotes the exact command lines that produced its results
        manifest_path = Path(os.environ["nnUNet_results"]) / prepared.dataset / MANIFEST
        manifest = read_json(manifest_path)
        if command not in manifest.setdefault("run_commands", []):
            manifest["run_commands"].append(command)
        manifest_path.write_text(json.dumps(manifest, indent=2))
    log(f"[benchmark] {prepared.dataset} {prepared.configuration}: data {prepared.data_identifier}, splits "
        f"sha256 {prepared.splits_sha256[:12]}, {len(jobs)} job(s)")
    for line in describe(jobs):
        log("  " + line)
    todo = [j for j in jobs if j.state() != "finished"]
    # folds finished by nnU-Net before the runner saw them still get a record
    for j in jobs:
        if j.state() == "finished" and not (j.output_folder() / JOB_RECORD).is_file():
            run_job(j, quiet=True)
    if dry_run or not todo:
        log("[benchmark] nothing to do: every fold is finished" if not todo else "[benchmark] dry run: nothing started")
        return jobs
    if slurm is not None:
        folder = Path(os.environ["nnUNet_results"]) / prepared.dataset / "rep3d_benchmark_slurm"
        previous = None
        for wave in waves(todo):
            params = dict(slurm)
            if previous:  # a second wave starts when the whole first array has succeeded
                if (slurm_cluster or "slurm") == "slurm":
                    params["slurm_dependency"] = f"afterok:{previous[0].job_id.split('_')[0]}"
                else:
                    [h.result() for h in previous]
            previous = submit_slurm(wave, folder, slurm_cluster, params)
            for j, h in zip(wave, previous):
                log(f"[benchmark] submitted {j.name} as job {h.job_id}")
        log(f"[benchmark] submitit logs in {folder}; run the same command again to see what is left")
    else:
        for wave in waves(todo):
            run_on_gpus(wave, gpus) if gpus else run_sequential(wave)
    return jobs
