#!/usr/bin/env bash
# README command 2: the test suite. Tests marked `slurm` need a cluster
# (`bash scripts/slurm-cluster.sh start`); without one they are skipped, except under CI.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/dev-env.sh
exec .venv/bin/python -m pytest "$@"
