#!/usr/bin/env bash
# README command 1: the demo experiment end to end (Slurm where it is installed, local
# processes where there is none). Extra arguments go to `plan-experiment demo`.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/dev-env.sh
exec .venv/bin/plan-experiment demo "$@"
