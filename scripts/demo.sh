#!/usr/bin/env bash
# README's main-job command: set-up on a fresh machine, then the demo
# (plan -> train -> predict -> evaluate with nnU-Net's stock commands, and a PNG).
# Arguments go to the demo, e.g. `bash scripts/demo.sh --raw ../shared/data/Dataset004_Hippocampus`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
rep3d-nnunet demo "$@"
