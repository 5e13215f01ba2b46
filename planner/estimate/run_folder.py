"""What the files around a training log say about its run.

A run planned by this tool keeps, beside its ``slurm-*.out``: ``job-state.json`` (the
job's start and end, so its wall time), ``finetune.yaml`` (whose checkpoint folder names
the model and holds its ``config.json``, so its size), ``epoch_N/`` folders (what a
checkpoint really occupies) and ``eval/<task>_epochN/job-state.json`` (how long each
evaluation took). Logs from elsewhere have none of these, and cost nothing extra.

The prior-run scan reads these once per run and caches the result with the log (see
:mod:`planner.estimate.prior_scan`), so an estimate over 10,000 prior runs does not
reopen 40,000 files every time.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import NamedTuple

import yaml

from planner.estimate.logparse import YAML_LOADER
from planner.torchtune.recipes import RecipeError, model_shape_from_config
from planner.folder.job_state import JobStateFile
from planner.spec.errors import ConfigError

#: Bits for what a folder listing saw beside a log (kept with the cached listing, so
#: a run without them costs no failed open() per scan).
JOB_STATE, FINETUNE, EPOCH0, EVAL = 1, 2, 4, 8
FILE_FLAGS = {"job-state.json": JOB_STATE, "finetune.yaml": FINETUNE}
DIR_FLAGS = {"epoch_0": EPOCH0, "eval": EVAL}


class RunFacts(NamedTuple):
    """What the run folder says; None (or empty) where it says nothing.

    Attributes:
        model: the model folder's name (from finetune.yaml's checkpoint_dir).
        param_count: parameters, from that folder's config.json.
        wall_seconds: the job's wall time, from job-state.json.
        epoch_gib: size of the ``epoch_0`` folder, in GiB.
        eval_seconds: wall times of the run's finished evaluations.
        evals_pending: some evaluation folder has no finished job yet (its time may
            still come).
    """

    model: str | None = None
    param_count: int | None = None
    wall_seconds: float | None = None
    epoch_gib: float | None = None
    eval_seconds: tuple[float, ...] = ()
    evals_pending: bool = False


def _read_small(path: Path | str) -> bytes:
    # A raw descriptor: open() builds three objects per file, a measurable share of
    # reading thousands of small job-state files.
    fd = os.open(path, os.O_RDONLY)
    try:
        return os.read(fd, 1 << 20)
    finally:
        os.close(fd)


def job_wall_seconds(state_file: Path | str) -> float | None:
    """Wall time of a finished job from the ``job-state.json`` that train.sh writes.

    Returns:
        ``ended - started`` in seconds, or None when the file is missing, unreadable,
        or the job has not ended.
    """
    try:
        state = JobStateFile.from_json(_read_small(state_file), str(state_file))
    except (OSError, ConfigError):
        return None
    return state.wall_seconds()


def folder_gib(folder: Path | str) -> float | None:
    """Total size of the files in a folder tree, in GiB (None when it does not exist)."""
    total = 0
    stack = [str(folder)]
    found = False
    while stack:
        try:
            it = os.scandir(stack.pop())
        except OSError:
            continue
        found = True
        with it:
            for entry in it:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        stack.append(entry.path)
                    elif entry.is_file(follow_symlinks=False):
                        total += entry.stat().st_size
                except OSError:
                    continue
    return total / 1024**3 if found else None


def model_of(checkpoint_dir: str | None, finetune_yaml: Path | str | None = None,
             shapes: dict[str, int | None] | None = None) -> tuple[str | None, int | None]:
    """Model folder name and parameter count of a run planned by us.

    Args:
        checkpoint_dir: the base model's folder, from the config dump in the log.
        finetune_yaml: the run's torchtune config, read for the folder when the log
            did not say (cut before its config dump).
        shapes: config.json path -> parameter count, shared across runs of one scan
            (a sweep's runs share a handful of models).
    """
    if not checkpoint_dir:
        if finetune_yaml is None:
            return None, None
        try:
            with open(finetune_yaml, encoding="utf-8") as fh:
                cfg = yaml.load(fh, Loader=YAML_LOADER)
            checkpoint_dir = str(cfg["checkpointer"]["checkpoint_dir"])
        except (OSError, yaml.YAMLError, KeyError, TypeError):
            return None, None
    ckpt = Path(checkpoint_dir)
    config_json = str(ckpt / "config.json")
    if shapes is not None and config_json in shapes:
        return ckpt.name, shapes[config_json]
    try:
        params: int | None = model_shape_from_config(json.loads(_read_small(config_json))).param_count
    except (OSError, ValueError, KeyError, TypeError, RecipeError):
        params = None
    if shapes is not None:
        shapes[config_json] = params
    return ckpt.name, params


def run_facts(run_dir: str, flags: int, checkpoint_dir: str | None = None,
              shapes: dict[str, int | None] | None = None) -> RunFacts:
    """Read what the run folder holds, opening only what its listing showed.

    Args:
        run_dir: the folder holding the log.
        flags: which of ``job-state.json``, ``finetune.yaml``, ``epoch_0/`` and
            ``eval/`` the folder listing saw (:data:`FILE_FLAGS`, :data:`DIR_FLAGS`).
        checkpoint_dir: the base model's folder as the log's config dump names it.
        shapes: memo for :func:`model_of`.
    """
    if not flags:
        return RunFacts()
    sep = os.sep
    model = params = wall = gib = None
    evals: list[float] = []
    pending = False
    if flags & FINETUNE:
        model, params = model_of(checkpoint_dir, run_dir + sep + "finetune.yaml", shapes)
    if flags & JOB_STATE:
        wall = job_wall_seconds(run_dir + sep + "job-state.json")
    if flags & EPOCH0:
        gib = folder_gib(run_dir + sep + "epoch_0") or None
    if flags & EVAL:
        try:
            names = sorted(e.name for e in os.scandir(run_dir + sep + "eval") if e.is_dir(follow_symlinks=False))
        except OSError:
            names = []
        for name in names:
            s = job_wall_seconds(sep.join((run_dir, "eval", name, "job-state.json")))
            if s is not None:
                evals.append(s)
            else:
                pending = True
    return RunFacts(model, params, wall, gib, tuple(evals), pending)
