#!/usr/bin/env bash
# Train run tiny-llama-cap_rank4 of experiment cap_5L_lora_comparison_demo.
# Written by plan-experiment <version>. Run by hand on a node with:  bash train.sh
set -uo pipefail

JOB_DIR=<tmp>/experiments/cap_5L_lora_comparison_demo/tiny-llama-cap_rank4
cd "$JOB_DIR" || { echo "plan-experiment: cannot enter $JOB_DIR" >&2; exit 1; }

# Job id for file names: array task ids as ARRAYID_TASK, like sacct prints them.
if [ -n "${SLURM_ARRAY_JOB_ID:-}" ]; then
  JOB_ID="${SLURM_ARRAY_JOB_ID}_${SLURM_ARRAY_TASK_ID}"
else
  JOB_ID="${SLURM_JOB_ID:-${PLAN_EXPERIMENT_JOB_ID:-manual-$$}}"
fi
LOG="$JOB_DIR/slurm-${JOB_ID}.out"
# UTC with milliseconds: estimates learn start-up overhead from these times.
utc_now() { date -u +%Y-%m-%dT%H:%M:%S.%3NZ; }
STARTED="$(utc_now)"

# job-state.json is the job's own record of itself: status falls back on it when the
# scheduler cannot be asked, and the local executor reads it instead of sacct.
write_state() {
  local tmp="$JOB_DIR/.job-state.json.$$"
  printf '{"state": "%s", "job_id": "%s", "started": "%s", "ended": "%s", "exit_code": %s, "host": "%s"}\n' \
    "$1" "$JOB_ID" "$STARTED" "$2" "$3" "$(hostname -s 2>/dev/null || echo unknown)" > "$tmp" && mv -f "$tmp" "$JOB_DIR/job-state.json"
}
write_state RUNNING "" null
trap 'write_state FAILED "$(utc_now)" 143; exit 143' TERM INT

# Environment setup from claude.local.md (verbatim).
if ! command -v tune >/dev/null 2>&1; then
  export PATH=<python-bin>:"$PATH"
fi
export HF_DATASETS_OFFLINE=1
export HF_HUB_OFFLINE=1
export PYTHONUNBUFFERED=1

# Values go to printf as separate arguments: a quoted name is never inside another string.
printf 'plan-experiment: training %s (job %s) on %s\n' tiny-llama-cap_rank4 "$JOB_ID" "$(hostname)" | tee -a "$LOG"
tune run lora_finetune_single_device --config <tmp>/experiments/cap_5L_lora_comparison_demo/tiny-llama-cap_rank4/finetune.yaml 2>&1 | tee -a "$LOG"
RC=${PIPESTATUS[0]}
ENDED="$(utc_now)"
if [ "$RC" -eq 0 ]; then write_state COMPLETED "$ENDED" 0; else write_state FAILED "$ENDED" "$RC"; fi
exit "$RC"
