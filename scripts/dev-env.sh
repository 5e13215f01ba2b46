#!/usr/bin/env bash
# Create or update the project's virtual environment (.venv) with the train and test extras.
# Idempotent: reinstalls only when pyproject.toml changed. torch is installed first, on its
# own, so that the train extra never pulls a different torch build.
#   PYTHON=python3.11 bash scripts/dev-env.sh
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="${TORCH_SPEC:-torch==2.13.0}"
VENV=.venv
stamp="$VENV/.plan-experiment-installed"
want="$(sha1sum pyproject.toml | cut -d' ' -f1) $TORCH_SPEC"
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/plan-experiment" ]; then
  exit 0
fi
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q "$TORCH_SPEC"
"$VENV/bin/python" -m pip install -q -e ".[train,test]"
echo "$want" > "$stamp"
