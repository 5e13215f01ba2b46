#!/usr/bin/env bash
# Evaluate tiny-llama-cap_rank4/capitalization_epoch1 (task capitalization, epoch 1) of experiment cap_5L_lora_comparison_demo.
# Written by plan-experiment <version>. Run by hand with:  bash eval.sh
set -uo pipefail

JOB_DIR=<tmp>/experiments/cap_5L_lora_comparison_demo/tiny-llama-cap_rank4/eval/capitalization_epoch1
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
  local tmp="$JOB_DIR/.job-state.json.$$" recovery=""
  # A training run's recovery record (one line of JSON its supervisor writes) travels along.
  if [ -s "$JOB_DIR/recovery.json" ]; then recovery=", \"recovery\": $(head -c 1000000 "$JOB_DIR/recovery.json")"; fi
  printf '{"state": "%s", "job_id": "%s", "started": "%s", "ended": "%s", "exit_code": %s, "host": "%s"%s}\n' \
    "$1" "$JOB_ID" "$STARTED" "$2" "$3" "$(hostname -s 2>/dev/null || echo unknown)" "$recovery" > "$tmp" && mv -f "$tmp" "$JOB_DIR/job-state.json"
}
write_state RUNNING "" null
# A job that requeued itself (its command left .requeued) is ended by Slurm with TERM: no failure.
on_stop() {
  if [ -e "$JOB_DIR/.requeued" ]; then rm -f "$JOB_DIR/.requeued"; write_state REQUEUED "$(utc_now)" 75
  else write_state FAILED "$(utc_now)" 143; fi
  exit 143
}
trap on_stop TERM INT

# Environment setup from claude.local.md (verbatim).
if ! command -v tune >/dev/null 2>&1; then
  export PATH=<python-bin>:"$PATH"
fi
export HF_DATASETS_OFFLINE=1
export HF_HUB_OFFLINE=1
export PYTHONUNBUFFERED=1

if [ ! -d <tmp>/experiments/cap_5L_lora_comparison_demo/tiny-llama-cap_rank4/epoch_1 ]; then
  printf 'plan-experiment: no checkpoint at %s: train the run first\n' <tmp>/experiments/cap_5L_lora_comparison_demo/tiny-llama-cap_rank4/epoch_1 | tee -a "$LOG"
  write_state FAILED "$(utc_now)" 2
  exit 2
fi
printf 'plan-experiment: evaluating %s (job %s) on %s\n' tiny-llama-cap_rank4/capitalization_epoch1 "$JOB_ID" "$(hostname)" | tee -a "$LOG"
python <repo>/tasks/capitalization/eval.py --config <tmp>/experiments/cap_5L_lora_comparison_demo/tiny-llama-cap_rank4/eval/capitalization_epoch1/eval_config.yaml 2>&1 | tee -a "$LOG"
RC=${PIPESTATUS[0]}
ENDED="$(utc_now)"
if [ "$RC" -eq 0 ]; then write_state COMPLETED "$ENDED" 0
# 75: the job requeued itself (it resumes when Slurm starts it again).
elif [ "$RC" -eq 75 ]; then rm -f "$JOB_DIR/.requeued"; write_state REQUEUED "$ENDED" 75
else write_state FAILED "$ENDED" "$RC"; fi
exit "$RC"
