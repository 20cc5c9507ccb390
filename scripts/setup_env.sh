# Sourced by scripts/test.sh and scripts/demo.sh: create or reuse a virtual
# environment (REP3D_VENV, default .venv) and install this package into it with
# torch pinned through constraints.txt. Re-installs only when setup.py or the
# constraints changed. pip's output goes to $VENV/install.log.
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
    echo "[setup] installing rep3d-nnunet and its dependencies into $VENV (torch pinned by constraints.txt;"
    echo "[setup] a few minutes the first time; log: $VENV/install.log)"
    if ! { python -m pip install --upgrade pip && python -m pip install -c constraints.txt -e ".[test]"; } \
            > "$VENV/install.log" 2>&1; then
        grep -v "^WARNING: Location" "$VENV/install.log" | tail -30
        echo "[setup] installation failed; full log in $VENV/install.log" >&2
        return 1 2>/dev/null || exit 1
    fi
    echo "$want" > "$stamp"
    echo "[setup] done"
fi
