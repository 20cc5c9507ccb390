# Sourced by scripts/test.sh and scripts/demo.sh: create or reuse a virtual
# environment (REP3D_VENV, default .venv) and install this package into it with
# torch pinned through constraints.txt. Re-installs only when setup.py or the
# constraints changed.
VENV="${REP3D_VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
    echo "[setup] creating virtual environment $VENV"
    python3 -m venv "$VENV"
fi
# shellcheck disable=SC1091
source "$VENV/bin/activate"
stamp="$VENV/.rep3d-install-stamp"
want="$(cat setup.py constraints.txt | sha1sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    echo "[setup] installing rep3d-nnunet and its dependencies (torch pinned by constraints.txt; a few minutes the first time)"
    python -m pip install -q --upgrade pip
    python -m pip install -q -c constraints.txt -e ".[test]"
    echo "$want" > "$stamp"
fi
