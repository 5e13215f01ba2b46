#!/usr/bin/env bash
# Train run tiny-llama-cap_rank4 of experiment cap_5L_lora_comparison_demo.
# Written by plan-experiment <version>. Run by hand on a node with:  bash train.sh
set -uo pipefail
# Slurm's warning ahead of the time limit (--signal=USR2) reaches every process of the job,
# and may come up to a minute early. Only the training supervisor acts on it (train.sh);
# this shell and all it starts ignore it (an ignored signal stays ignored across exec), so
# no warning ends a job: the limit itself does.
trap '' USR2

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
  local tmp="$JOB_DIR/.job-state.json.$$" recovery=""
  # A training run's recovery record (one line of JSON its supervisor writes) travels along.
  if [ -s "$JOB_DIR/recovery.json" ]; then recovery=", \"recovery\": $(head -c 1000000 "$JOB_DIR/recovery.json")"; fi
  printf '{"state": "%s", "job_id": "%s", "started": "%s", "ended": "%s", "exit_code": %s, "host": "%s"%s}\n' \
    "$1" "$JOB_ID" "$STARTED" "$2" "$3" "$(hostname -s 2>/dev/null || echo unknown)" "$recovery" > "$tmp" && mv -f "$tmp" "$JOB_DIR/job-state.json"
}
# As it ends, after its own record is written, the job refreshes the experiment's status
# tables (docs/commands.md, "Refreshes from jobs"). Fixed command, quoted arguments; it
# never changes the job's exit code, and a refresh that cannot run is one line in the log.
refresh_summary() {
  local py=<python> limit=()
  if [ -z "$py" ] || [ ! -x "$py" ]; then py="$(command -v python3 2>/dev/null || true)"; fi
  if [ -z "$py" ]; then
    printf 'plan-experiment: status tables not refreshed: no Python on %s; `plan-experiment status` catches up\n' "$(hostname)" | tee -a "$LOG"
    return 0
  fi
  if command -v timeout >/dev/null 2>&1; then limit=(timeout -k 2 20); fi
  # From / : `python -m` puts its working folder first on the import path.
  (cd / && ${limit[@]+"${limit[@]}"} "$py" -m planner.status.job_refresh <tmp>/experiments/cap_5L_lora_comparison_demo "$JOB_ID" "$@") 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then
    printf 'plan-experiment: status tables not refreshed: the refresh ran past 20 s and was stopped; the next refresh catches up\n' | tee -a "$LOG"
  elif [ "$rc" -ne 0 ]; then
    printf 'plan-experiment: status tables not refreshed: %s could not run the planner (exit %s: is plan-experiment installed for it?); `plan-experiment status` catches up\n' "$py" "$rc" | tee -a "$LOG"
  fi
  return 0
}
write_state RUNNING "" null
# A job that requeued itself (its command left .requeued) is ended by Slurm with TERM: no failure.
# After a signal, a shorter lock wait: Slurm kills the job for good KillWait seconds later.
on_stop() {
  FINISHED=1
  if [ -e "$JOB_DIR/.requeued" ]; then rm -f "$JOB_DIR/.requeued"; write_state REQUEUED "$(utc_now)" 75
  else write_state FAILED "$(utc_now)" 143; fi
  refresh_summary --lock-wait 2
  exit 143
}
trap on_stop TERM INT
# A setup line that ends the script (an `exit`, a failing `module load` under set -e) still
# leaves the script's own exit code: the scheduler only sees that of its launcher.
FINISHED=0
trap 'rc=$?; if [ "$FINISHED" = 0 ] && [ "$rc" -ne 0 ]; then write_state FAILED "$(utc_now)" "$rc"; fi' EXIT

# Environment setup from claude.local.md (verbatim).
if ! command -v tune >/dev/null 2>&1; then
  export PATH=<python-bin>:"$PATH"
fi
export HF_DATASETS_OFFLINE=1
export HF_HUB_OFFLINE=1
export PYTHONUNBUFFERED=1

# Values go to printf as separate arguments: a quoted name is never inside another string.
printf 'plan-experiment: training %s (job %s) on %s\n' tiny-llama-cap_rank4 "$JOB_ID" "$(hostname)" | tee -a "$LOG"
# Estimates read this line: which GPU measured the speed (an A100's is not an H100's).
if command -v nvidia-smi >/dev/null 2>&1; then
    printf 'plan-experiment: device %s\n' "$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | head -n 1)" | tee -a "$LOG"
fi
# Recovery without a person (resources.oom_retries, attempts, resume): the supervisor runs
# the training command, retries a CUDA out-of-memory error with the batch halved and gradient
# accumulation doubled, resumes from the last saved epoch when the job starts again, and
# requeues the job when Slurm's --signal (SIGUSR2) warns of the time limit. The shell, tee
# and the training command ignore that signal; the supervisor handles it.
# The supervisor is part of plan-experiment: when the jobs' python cannot import it, the
# interpreter that planned this run runs it.
SUPERVISOR_PYTHON=python
if ! "$SUPERVISOR_PYTHON" -c 'import planner.jobs.train_supervisor' >/dev/null 2>&1; then
  SUPERVISOR_PYTHON=<python>
fi
"$SUPERVISOR_PYTHON" -m planner.jobs.train_supervisor --run-dir "$JOB_DIR" --job-id "$JOB_ID" \
  --oom-retries 3 --attempts 3 \
  -- tune run lora_finetune_single_device --config <tmp>/experiments/cap_5L_lora_comparison_demo/tiny-llama-cap_rank4/finetune.yaml 2>&1 | tee -a "$LOG"
RC=${PIPESTATUS[0]}
FINISHED=1
ENDED="$(utc_now)"
if [ "$RC" -eq 0 ]; then write_state COMPLETED "$ENDED" 0
# 75: the job requeued itself (it resumes when Slurm starts it again).
elif [ "$RC" -eq 75 ]; then rm -f "$JOB_DIR/.requeued"; write_state REQUEUED "$ENDED" 75
else write_state FAILED "$ENDED" "$RC"; fi
# The record is final: a signal during the refresh must not rewrite it nor change the exit code.
trap 'exit "$RC"' TERM INT
refresh_summary
exit "$RC"
