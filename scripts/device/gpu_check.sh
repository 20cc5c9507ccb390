#!/usr/bin/env bash
# The prepared GPU check of issue #12 (run on the device machine from the repo root; see docs/performance.md).
#   call 1: carry .whl/a   -> `bash scripts/device/gpu_check.sh install`
#   call 2: carry .whl/b   -> `bash scripts/device/gpu_check.sh install all`
# Steps (each under its own time limit, results in $OUT):
#   bench    scripts/bench_train_step.py at 128^3 batch 2: Rep3D vs ResEnc M, eager/compiled x fp32/AMP
#   profile  scripts/profile_train_step.py: torch.profiler of one Rep3D iteration (AMP), top kernels
#   nnunet   stock nnUNetv2_plan_and_preprocess / plan_experiment / train (compiled, AMP) / predict on a
#            synthetic dataset sized for a ~128^3 patch, Rep3D and ResEnc M, s/iteration and peak memory
#   pytest   the GPU tests (-m gpu)
# On CPU, `REP3D_GPU_CHECK_CPU=1 bash scripts/device/gpu_check.sh all` runs the same steps at toy sizes.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT="${OUT:-$PWD/work_dirs/gpu_check_out}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
cpu="${REP3D_GPU_CHECK_CPU:-0}"
if [ "$cpu" = 1 ]; then dev=cpu; patch="32 32 32"; stages=4; shape="40 40 40"; else dev=cuda; patch="128 128 128"; stages=6; shape="160 160 160"; fi

step_install() {
    if ls .whl/*/*.whl >/dev/null 2>&1; then
        "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target .site .whl/*/*.whl
    fi
}
env_setup() {
    if [ -d .site ]; then export PYTHONPATH="$PWD/.site:$PWD${PYTHONPATH:+:$PYTHONPATH}"; export PATH="$PWD/.site/bin:$PATH"; fi
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
}
step_bench() {
    timeout 240 "$PY" scripts/bench_train_step.py --device "$dev" --patch $patch --batch 2 --stages "$stages" \
        --modes eager-fp32,eager-amp,compiled-amp --out "$OUT/train_step.txt" 2>&1 | tee "$OUT/bench.log"
}
step_profile() {
    timeout 120 "$PY" scripts/profile_train_step.py --device "$dev" --patch $patch --batch 2 --stages "$stages" \
        --out "$OUT/profile.txt" 2>&1 | tee "$OUT/profile.log"
}
step_nnunet() {
    local w="$PWD/work_dirs/gpu_nnunet"; rm -rf "$w"; mkdir -p "$w"
    export nnUNet_raw="$w/raw" nnUNet_preprocessed="$w/pre" nnUNet_results="$w/res" nnUNet_def_n_proc=4
    "$PY" - "$w/raw" $shape <<'PY'
import sys
from pathlib import Path
from rep3d_nnunet.demo.synthetic import write_synthetic_dataset
write_synthetic_dataset(Path(sys.argv[1]), 991, "GPUCheck", n_train=8, n_test=2, shape=[int(s) for s in sys.argv[2:5]])
PY
    mkdir -p "$w/trainers"
    cat > "$w/trainers/gpu_bench_trainers.py" <<'PY'
from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
from rep3d_nnunet.nnunet.trainers import nnUNetTrainerRep3D


class _Short:
    """3 epochs x 40 iterations; nnU-Net logs each epoch's time (the first one includes compilation)."""
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.num_epochs, self.num_iterations_per_epoch, self.num_val_iterations_per_epoch = 3, 40, 5

    def on_epoch_end(self):
        import torch
        if torch.cuda.is_available():
            self.print_to_log_file(f"peak GPU memory allocated: {torch.cuda.max_memory_allocated() / 2**30:.2f} GiB")
        super().on_epoch_end()


class nnUNetTrainerRep3D_gpucheck(_Short, nnUNetTrainerRep3D):
    pass


class nnUNetTrainer_gpucheck(_Short, nnUNetTrainer):
    pass
PY
    rep3d-nnunet register --user-trainers "$w/trainers"
    nnUNetv2_plan_and_preprocess -d 991 -c 3d_fullres -np 4 >"$OUT/nnunet_plan.log" 2>&1
    nnUNetv2_plan_experiment -d 991 -pl nnUNetPlannerRep3D >>"$OUT/nnunet_plan.log" 2>&1
    nnUNetv2_plan_experiment -d 991 -pl nnUNetPlannerResEncM >>"$OUT/nnunet_plan.log" 2>&1
    for spec in "nnUNetTrainerRep3D_gpucheck nnUNetRep3DPlans" "nnUNetTrainer_gpucheck nnUNetResEncUNetMPlans"; do
        set -- $spec
        timeout 300 nnUNetv2_train 991 3d_fullres 0 -tr "$1" -p "$2" -device "$dev" >"$OUT/train_$1.log" 2>&1
        echo "$1 exit $?"
        grep -E "Epoch time|Using torch.compile|Pseudo dice|peak GPU|patch_size|batch_size" "$OUT/train_$1.log" | head -20
    done
    timeout 120 nnUNetv2_predict -i "$w/raw/Dataset991_GPUCheck/imagesTs" -o "$w/pred" -d 991 -c 3d_fullres \
        -tr nnUNetTrainerRep3D_gpucheck -p nnUNetRep3DPlans -f 0 -device "$dev" >"$OUT/predict.log" 2>&1
    echo "predict exit $?"
}
step_pytest() {
    timeout 180 "$PY" -m pytest -m gpu -q -p no:cacheprovider tests 2>&1 | tail -15 | tee "$OUT/pytest_gpu.log"
}
for s in "$@"; do
    case "$s" in
        install) step_install ;;
        all) env_setup; step_bench; step_profile; step_nnunet; step_pytest ;;
        bench|profile|nnunet|pytest) env_setup; "step_$s" ;;
        *) echo "unknown step $s (install|bench|profile|nnunet|pytest|all)"; exit 2 ;;
    esac
done
