#!/usr/bin/env bash
# README's test command: set-up on a fresh machine (venv + pinned install), then pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -m "not slow"`.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/setup_env.sh
python -m pytest "$@"
