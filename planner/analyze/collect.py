"""Read what an experiment's folders hold for analysis. Reads only; never writes.

An evaluation counts when its ``results.json`` is there, whoever ran it (people run
``eval.sh`` by hand). A run's state comes from the ``job-state.json`` its job wrote,
else from the last status refresh, else from the journal.
"""

from __future__ import annotations

import json
import math
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from planner.folder.experiment import Experiment
from planner.analyze.observe import (
    FAILED, MISSING, PRESENT, EvalObs, Examples, RunObs, configured_steps, parse_metric_log,
)
from planner.spec.errors import ConfigError
from planner.estimate.logparse import YAML_LOADER, parse_log_bytes
from planner.spec.runs import Evaluation, Run
from planner.spec.units import parse_job_time
from planner.spec.states import RETRYABLE_STATES

_LOG_NAME = re.compile(r"^log_(\d+)\.txt$")


def _read(path: Path | str) -> bytes | None:
    # A raw descriptor: thousands of small files, and open() costs three objects each.
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        data = os.read(fd, 1 << 16)
        while chunk := os.read(fd, 1 << 20):
            data += chunk
        return data
    finally:
        os.close(fd)


def _loads(data: bytes) -> Any:
    """``json.loads`` of a file's bytes; UTF-8 without a byte-order mark (the usual case) skips the sniffing."""
    if not data.startswith(b"\xef\xbb\xbf"):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            pass  # UTF-16/32, or not text at all: json.loads tells
        else:
            return json.loads(text)
    return json.loads(data)


def _json_file(path: Path | str) -> Any:
    data = _read(path)
    if data is None:
        return None
    try:
        return _loads(data)
    except ValueError:
        return None


class JobStates:
    """Job states the status command last saw, by unit (journal + status cache)."""

    def __init__(self, exp: Experiment) -> None:
        # A damaged journal is bad input here as for status (one-line error, exit 2).
        latest = exp.read_journal().latest()
        final = exp.read_cache().get("final") or {}
        self.submitted = set(latest)
        self.cached: dict[str, str] = {}
        for unit, (_, task) in latest.items():
            entry = final.get(task.job_id)
            if isinstance(entry, dict) and isinstance(entry.get("state"), str):
                self.cached[unit] = entry["state"]

    def state(self, unit: str, job_state: Any) -> str:
        if isinstance(job_state, dict) and isinstance(job_state.get("state"), str):
            return str(job_state["state"])
        if unit in self.cached:
            return self.cached[unit]
        return "SUBMITTED" if unit in self.submitted else "NOT_SUBMITTED"


def _wall(job_state: Any) -> float | None:
    if not isinstance(job_state, dict):
        return None
    started, ended = parse_job_time(job_state.get("started")), parse_job_time(job_state.get("ended"))
    if started is None or ended is None:
        return None
    return max(0.0, (ended - started).total_seconds())


def newest_metric_log(run_dir: str) -> str | None:
    """The per-step metric log of the run's newest job: ``logs/log_<unix time>.txt`` (retries leave older ones)."""
    logs = os.path.join(run_dir, "logs")
    try:
        found = [(int(m.group(1)), n) for n in os.listdir(logs) if (m := _LOG_NAME.match(n))]
    except OSError:
        return None
    if not found:
        return None
    # The name carries the second the job started; mtime breaks ties within one second.
    return max((os.path.join(logs, n) for _, n in found),
               key=lambda p: (int(_LOG_NAME.match(os.path.basename(p)).group(1)),  # type: ignore[union-attr]
                              os.stat(p).st_mtime_ns))


def newest_training_log(run_dir: str, names: list[str]) -> str | None:
    """The newest ``slurm-*.out`` among a run folder's ``names`` (the training log train.sh tees)."""
    logs = [os.path.join(run_dir, n) for n in names if n.startswith("slurm-") and n.endswith(".out")]
    return max(logs, key=lambda p: (os.stat(p).st_mtime_ns, p)) if logs else None


def _train_count(finetune_yaml: str, cache: dict[str, int | None]) -> int | None:
    """Records in the train field of the dataset a run's finetune.yaml names."""
    text = _read(finetune_yaml)
    if text is None:
        return None
    try:
        cfg = yaml.load(text, Loader=YAML_LOADER)
        ds = cfg["dataset"]
        path, fld = str(ds["data_files"]), str(ds.get("field") or "train")
    except (yaml.YAMLError, KeyError, TypeError):
        return None
    key = f"{path}\0{fld}"
    if key not in cache:
        data = _json_file(path)
        records = data.get(fld) if isinstance(data, dict) else None
        cache[key] = len(records) if isinstance(records, list) else None
    return cache[key]


def observe_run(exp: Experiment, run: Run, states: JobStates, predicted: dict[str, float],
                counts: dict[str, int | None]) -> RunObs:
    """What one run's folder says."""
    if run.is_base:
        return RunObs(run=run, state="-")
    # Plain strings, not Path objects: this runs once per run, thousands of times in a big sweep.
    rdir = os.path.join(exp.path, run.name)
    # One listing instead of a failed open per absent file: most folders of a big plan hold few files yet.
    try:
        names = os.listdir(rdir)
    except OSError:
        names = []
    listed = set(names)
    job_state = _json_file(os.path.join(rdir, "job-state.json")) if "job-state.json" in listed else None
    log_config = None
    steps_per_epoch = None
    peak = None
    log_path = newest_training_log(rdir, names)
    if log_path is not None:
        rec = parse_log_bytes(_read(log_path) or b"", log_path)
        if rec.config_text:
            try:
                parsed = yaml.load(rec.config_text, Loader=YAML_LOADER)
                log_config = parsed if isinstance(parsed, dict) else None
            except yaml.YAMLError:
                log_config = None
        steps_per_epoch = rec.steps_per_epoch
        peak = max(rec.peak_memory_gib.values()) if rec.peak_memory_gib else None
    metric_log = newest_metric_log(rdir) if "logs" in listed else None
    loss = parse_metric_log((_read(metric_log) or b"").decode("utf-8", "replace")) if metric_log else []
    return RunObs(
        run=run, state=states.state(run.name, job_state), wall_s=_wall(job_state), predicted_s=predicted.get(run.name),
        configured_steps=configured_steps(
            run.settings, _train_count(os.path.join(rdir, "finetune.yaml"), counts) if "finetune.yaml" in listed else None),
        steps_per_epoch=steps_per_epoch, log_config=log_config, loss=tuple(loss),
        metric_log=os.path.relpath(metric_log, exp.path).replace(os.sep, "/") if metric_log else None,
        peak_memory_gib=peak,
    )


def _examples(path: str) -> Examples | None:
    """predictions.jsonl as per-example records; None when it is absent or not one JSON object per line.

    A bad file is not an error: the evaluation's results.json still counts, and its tests are
    refused with the reason.
    """
    data = _read(path)
    if data is None:
        return None
    lines = [ln for ln in data.decode("utf-8", "replace").splitlines() if ln.strip()]
    try:
        # One parse of the whole file as a JSON array: several times faster than a loads per line.
        records = json.loads("[" + ",".join(lines) + "]")
    except ValueError:
        return None
    if not all(isinstance(rec, dict) for rec in records):
        return None
    n = len(records)
    ids = [str(rec["id"]) for rec in records if rec.get("id") is not None]
    texts = [f"{rec.get('input')}\x1f{rec.get('target')}" for rec in records]
    columns: dict[str, list[float]] = {}
    for key in {k for k, v in records[0].items() if isinstance(v, (bool, int, float)) and k != "id"} if n else ():
        column = []
        for rec in records:
            value = rec.get(key)
            if not isinstance(value, (bool, int, float)) or not math.isfinite(value):
                break
            column.append(float(value))
        else:
            columns[key] = column
    # A field is a per-example metric only when every record has it (the loop above breaks otherwise).
    values = {k: tuple(v) for k, v in columns.items()}
    return Examples(tuple(ids) if len(ids) == n and n else None, tuple(texts), values)


def observe_eval(root: str, ev: Evaluation, split: str, states: JobStates, with_outcomes: bool = True) -> EvalObs:
    """What one evaluation's folder says; a results.json that is not a JSON object is bad input.

    ``with_outcomes`` reads predictions.jsonl too (the paired tests and intervals use it).
    """
    rel = f"{ev.run}/eval/{ev.name}"
    # Plain strings, not Path objects or os.path.join: this runs 10,000 times in a big sweep.
    folder = f"{root}/{rel}"
    path = f"{folder}/results.json"
    data = _read(path)
    if data is not None:
        try:
            results = _loads(data)
        except ValueError as exc:
            raise ConfigError(f"{path}: results.json is not valid JSON ({exc}); rerun the evaluation "
                              "(bash eval.sh in its folder) or move the file away") from None
        if not isinstance(results, dict):
            raise ConfigError(f"{path}: results.json holds a {type(results).__name__}, not an object; rerun the "
                              "evaluation (bash eval.sh in its folder) or move the file away")
        examples = _examples(f"{folder}/predictions.jsonl") if with_outcomes else None
        return EvalObs(ev, split, PRESENT, results, examples, rel)
    state = states.state(ev.key, _json_file(f"{folder}/job-state.json"))
    return EvalObs(ev, split, FAILED if state in RETRYABLE_STATES else MISSING, None, None, rel)


def predicted_seconds(exp: Experiment) -> dict[str, float]:
    """Predicted training seconds by run, from estimates.json (none without it)."""
    estimates = exp.read_estimates()
    return {k: v.train_seconds for k, v in estimates.runs.items()} if estimates else {}


def collect_runs(exp: Experiment, runs: Sequence[Run], states: JobStates, predicted: dict[str, float]) -> list[RunObs]:
    """The given planned runs of ``exp`` (all, or a slice read in another process), as observations."""
    counts: dict[str, int | None] = {}
    return [observe_run(exp, r, states, predicted, counts) for r in runs]


def collect_evals(exp: Experiment, evaluations: Sequence[Evaluation], states: JobStates) -> list[EvalObs]:
    """The given planned evaluations of ``exp`` (all, or a slice read in another process), as observations."""
    splits = {t.name: t.split for t in exp.spec.evaluation.tasks}
    root = str(exp.path)
    return [observe_eval(root, ev, splits.get(ev.task, "test"), states) for ev in evaluations]
