"""Parse torchtune training logs (``slurm-*.out``) into structured records.

Pure: text in, :class:`LogRecord` out. No file access happens here; the adapter
``planner.estimate.prior_scan`` reads files and hands their bytes to
:func:`parse_log_bytes`; :func:`parse_log` takes text.

The parser accepts every format torchtune 0.6.1 and its neighbours write:

* the config dump ``Running <RecipeClass> with resolved config:`` followed by YAML;
* tqdm progress bars ``{epoch}|{global_step}|Loss: {loss}: {pct}%|{bar}| {n}/{total}
  [{elapsed}<{remaining}, {rate}]`` where rate is ``X.XXit/s`` or ``X.XXs/it``. tqdm
  rewrites the bar with ``\\r``, so one physical line holds many updates;
* memory blocks (``GPU peak memory allocation|alloc|reserved|active: X GiB``, old ``GB``);
* checkpoint lines ``Model|Adapter|Recipe checkpoint of size X GiB saved to PATH``;
* DiskLogger / StdoutLogger lines ``Step N | loss:X lr:Y tokens_per_second_per_gpu:Z``;
* Weights & Biases summary lines ``wandb: tokens_per_second_per_gpu 186.75``;
* out-of-memory markers and Python tracebacks;
* the GPU a job ran on: ``plan-experiment: device NVIDIA H100 80GB HBM3`` (written by
  ``train.sh`` from ``nvidia-smi``), as a key of the device table;
* the world size of multi-process jobs: ``plan-experiment: world size N`` (written by
  ``train.sh``) and ``plan-experiment: rank R of N`` (one per process), besides the
  config's ``world_size`` and the launcher's rank prefixes.

Speed matters: the planner scans thousands of logs and the bar text dominates their
size (one update per optimizer step, ~100 bytes each). So the parser works on bytes
(decoding megabytes of bar glyphs costs more than parsing them), jumps from one
carriage return to the next with ``bytes.find`` (memchr), parses every update of short
bar lines but only a few evenly spaced probes plus the last update of long ones (the
last carries the epoch's n/total, elapsed time and global step), and runs the few
rare-line regexes only over the small remainder that is *not* bar updates, decoded
with ``errors="replace"``. The dozen config keys estimates need are read with plain
``str.find``; the whole dump is parsed with ``yaml.safe_load`` only when
:attr:`LogRecord.config` is asked for. Everything is best effort: a truncated,
interleaved or garbage log yields a partial record with ``problems`` filled in, never
an exception.
"""

from __future__ import annotations

import math
import re
from typing import Any

import yaml

from planner.spec.hardware import find_device
from planner.estimate.logconfig import extract_config
from planner.estimate.logrecord import (
    BAR_SAMPLES_PER_LINE,
    GIB,
    MAX_SERIES,
    STATES,
    YAML_LOADER,
    BarSample,
    CheckpointSave,
    LogRecord,
    to_float,
)

__all__ = ["BAR_SAMPLES_PER_LINE", "MAX_SERIES", "STATES", "YAML_LOADER", "BarSample", "CheckpointSave", "LogRecord", "parse_log", "parse_log_bytes"]

# One tqdm update, on bytes. The description (epoch|global_step|Loss: x) is absent on
# the very first print of a bar (0%, ?it/s). Loss is whatever Python printed for a
# float: 2.0845, 6.05e-06, nan, inf. The bar glyphs are multi-byte UTF-8 but never
# contain the bytes | \r \n, so [^|\r\n]* skips them without decoding.
_BAR_RE = re.compile(
    rb"(?:(\d+)\|(\d+)\|Loss: ([^:|\r\n]*): *)?"
    rb"(\d+)%\|[^|\r\n]*\| *(\d+)/(\d+) "
    rb"\[((?:\d+d )?[\d:]+)<(?:[\d:]+|\?)?, *(?:([\d.]+)(it/s|s/it)|\?it/s)\]"
)
# A description before a bare bar, once launcher prefixes ("[rank0]: ", "[trainer0|0]:") are
# left aside: letters then a colon right before the percentage.
_FOREIGN_BAR_RE = re.compile(rb"[A-Za-z][A-Za-z ]*[A-Za-z]: *$")
# Patterns open with a literal so the regex engine can skip ahead with a fast prefix
# search instead of trying every position (what a leading \w+ or (A|B) would cost).
_MEM_RE = re.compile(r"peak memory (allocation|alloc|reserved|active): *([\d.]+) *(GiB|GB|MiB|MB)?")
# ``Model checkpoint of size 2.30 GiB saved to PATH`` (0.5+), ``... of size 2.47 GB saved to
# PATH`` (<= 0.4) and ``Model checkpoint saved to PATH`` (newer, no size).
_CKPT_RE = re.compile(
    r"(Model|Adapter|Recipe|model|adapter|recipe) checkpoint (?:of size ([\d.]+) *(GiB|GB|MiB|MB) )?saved to (\S+)"
)
_EPOCH_DIR_RE = re.compile(r"epoch_(\d+)")
# torchtune <= 0.4 puts the epoch in the file name: hf_model_0001_9.pt, adapter_9.pt.
_EPOCH_FILE_RE = re.compile(r"_(\d+)\.(?:pt|bin|safetensors)$")
# Launchers prefix each line with the rank that wrote it: torchx ``[trainer0|0]:``,
# torchrun --tee ``[default0]:``, torch's error printing ``[rank0]: ``.
_LAUNCHER_RE = re.compile(rb"(?:(?<=\n)|^)\[(?:rank\d+\]: ?|[A-Za-z_]+\d+(?:\|\d+)?\]:)")
_CKPT_SAVED_RE = re.compile(r"Checkpoint saved in ([\d.]+) seconds")
_STEP_RE = re.compile(r"Step (\d+) \| ([^\n\r]*)")
_KV_RE = re.compile(r"(\w+):(\S+)")
_WANDB_RE = re.compile(
    r"wandb: +(\w+) +([-+]?(?:[\d.]+(?:[eE][-+]?\d+)?|nan|inf))[ \t]*$", re.M
)
_TRACEBACK = "Traceback (most recent call last):"
_WORLD_RE = re.compile(r"plan-experiment: (?:world size|rank \d+ of) (\d+)")
_RSS_RE = re.compile(r"plan-experiment: peak memory \(RSS\) ([\d.]+) GiB")
_DEVICE_RE = re.compile(r"plan-experiment: device ([^\n\r]{1,120})")
_EXC_LINE_RE = re.compile(r"\n(\w+(?:\.\w+)*(?:Error|Exception|Interrupt)\b.*)")
_SLURM_CANCEL_RE = re.compile(r"\*\*\* (?:JOB|STEP) [\d.]+ ON \S+ CANCELLED AT \S+(.*?)\*\*\*")

_UNIT_TO_GIB = {None: 1.0, "GiB": 1.0, "GB": 1e9 / GIB, "MiB": 1 / 1024, "MB": 1e6 / GIB}

# --------------------------------------------------------------------------- helpers


def _bounded(seq: list[Any], limit: int = MAX_SERIES) -> list[Any]:
    """Thin a list to at most ``limit`` items, keeping first and last."""
    if len(seq) <= limit:
        return seq
    step = (len(seq) - 1) / (limit - 1)
    return [seq[round(i * step)] for i in range(limit)]


def _parse_bar(data: bytes, pos: int, end: int) -> tuple[BarSample | None, int]:
    """Parse the first bar update in ``data[pos:end]``.

    Returns:
        The sample (None when there is none) and the offset just past its closing
        ``]`` (``pos`` when there is none): text glued after it is a log line written
        without a preceding newline.
    """
    m = _BAR_RE.search(data, pos, end)
    if m is None:
        return None, pos
    ep, gs, loss, _pct, n, total, elapsed, rate, unit = m.groups()
    if ep is None and _FOREIGN_BAR_RE.search(data, pos, m.start()):
        # Another bar's update (torchtune's "Packing dataset: 40%|...| 8000/20000 [..., 3194it/s]"):
        # its rate counts examples packed, not training steps.
        return None, pos
    it_s = None
    if rate is not None:
        try:
            it_s = float(rate)
        except ValueError:
            it_s = None
        if it_s is not None and unit == b"s/it":
            it_s = 1.0 / it_s if it_s > 0 else None
    sample = BarSample(
        int(ep) if ep else None, int(gs) if gs else None, loss, int(n), int(total), elapsed, it_s
    )
    return sample, m.end()


def _bar_line(data: bytes, start: int, end: int, first: int, samples: list[BarSample],
              rest: list[bytes]) -> None:
    """Handle one physical line ``data[start:end]`` whose first ``\\r`` is at ``first``."""
    if first > start:
        rest.append(data[start:first])
    # Lines with few updates: parse them all. Long lines: a few evenly spaced probes
    # past the warm-up (each snaps to the next '\r') and the last update, which holds
    # the epoch's final n/total, elapsed time and global step. memchr-backed finds
    # keep the walk cheap however long the line is.
    starts = [first]
    p = first
    for _ in range(BAR_SAMPLES_PER_LINE + 2):
        p = data.find(b"\r", p + 1, end)
        if p < 0:
            break
        starts.append(p)
    else:
        span = end - first
        starts = []
        for k in range(1, BAR_SAMPLES_PER_LINE + 1):
            p = data.find(b"\r", first + span * k // (BAR_SAMPLES_PER_LINE + 1), end)
            if p >= 0 and (not starts or p > starts[-1]):
                starts.append(p)
        for p in starts:
            sample, _ = _parse_bar(data, p + 1, data.find(b"\r", p + 1, end))
            if sample is not None:
                samples.append(sample)
        last = data.rfind(b"\r", first, end)
        sample, stop = _parse_bar(data, last + 1, end)
        if sample is None:
            # The last update was cut mid-write: use the one before it.
            prev = data.rfind(b"\r", first, last)
            if prev > (starts[-1] if starts else first):
                before, _ = _parse_bar(data, prev + 1, last)
                if before is not None:
                    samples.append(before)
            if data[last + 1 : end].strip():
                rest.append(data[last + 1 : end])
        else:
            samples.append(sample)
            if stop < end:
                rest.append(data[stop:end])
        return
    for p in starts:
        seg_end = data.find(b"\r", p + 1, end)
        if seg_end < 0:
            seg_end = end
        sample, stop = _parse_bar(data, p + 1, seg_end)
        if sample is not None:
            samples.append(sample)
        if seg_end == end:
            if sample is None:
                if data[p + 1 : end].strip():
                    rest.append(data[p + 1 : end])  # not a bar (cut, or other \r output)
            elif stop < end:
                rest.append(data[stop:end])


def _normalise(data: bytes) -> tuple[bytes, int]:
    """Undo what the way a log was written adds: CRLF line ends and launcher prefixes.

    A log copied off Windows ends every line with ``\\r\\n``, which would read as a
    bar update per line; torchx/torchrun prefix every line with its rank, which hides
    config keys and exception lines. Both are undone here so such a copy parses to
    the record of the plain log. Costs one ``in`` test each when absent.

    Returns:
        The plain bytes and how many distinct launcher prefixes were seen (ranks).
    """
    if b"\r\n" in data:
        data = data.replace(b"\r\n", b"\n")
    if b"]:" not in data or _LAUNCHER_RE.search(data) is None:
        return data, 0
    ranks = {m.group(0).rstrip() for m in _LAUNCHER_RE.finditer(data)}
    return _LAUNCHER_RE.sub(b"", data), len(ranks)


def _split_bars(data: bytes) -> tuple[list[BarSample], bytes]:
    """Pull bar updates out of the log.

    Returns:
        The sampled updates in log order and the remaining non-bar bytes, in which
        the rare lines (checkpoints, memory, Step lines ...) are searched.
    """
    samples: list[BarSample] = []
    if b"\r" not in data:
        # Bars written without carriage returns (e.g. a log post-processed into one
        # update per line). Rare, so a simple full pass is fine.
        if b"it/s]" not in data and b"s/it]" not in data:
            return samples, data
        rest: list[bytes] = []
        for line in data.split(b"\n"):
            if b"it]" in line or b"it/s]" in line:
                sample, stop = _parse_bar(line, 0, len(line))
                if sample is not None:
                    samples.append(sample)
                    rest.append(line[stop:])
                    continue
            rest.append(line)
        if len(samples) > MAX_SERIES * 4:
            samples = _bounded(_drop_reprints(samples), MAX_SERIES * 4)
        return samples, b"\n".join(rest)

    # Jump from one '\r' to the next instead of walking every line: the text between
    # two bar lines (config dump, log lines) goes to the remainder as one slice.
    rest = []
    size = len(data)
    pos = 0  # start of text not yet assigned
    cr = data.find(b"\r")
    while cr >= 0:
        line_start = data.rfind(b"\n", pos, cr) + 1 or pos
        if line_start < pos:
            line_start = pos
        end = data.find(b"\n", cr)
        if end < 0:
            end = size
        if line_start > pos:
            rest.append(data[pos : line_start - 1] if data[line_start - 1 : line_start] == b"\n" else data[pos:line_start])
        _bar_line(data, line_start, end, cr, samples, rest)
        pos = end + 1
        cr = data.find(b"\r", pos) if pos < size else -1
    if pos < size:
        rest.append(data[pos:])
    return samples, b"\n".join(rest)


def _median(values: list[float]) -> float:
    """Median without statistics' overhead (called once per log)."""
    v = sorted(values)
    mid = len(v) // 2
    return v[mid] if len(v) % 2 else (v[mid - 1] + v[mid]) / 2


def _drop_reprints(samples: list[BarSample]) -> list[BarSample]:
    """Leave out the finished bar torchtune prints again after each checkpoint save.

    Its elapsed time (and so its rate) includes the save: it is neither a speed sample
    nor the epoch's training time. The first update that reached the total stands.
    """
    done: set[int] = set()
    kept = []
    for s in samples:
        if s.epoch is not None and s.total and s.n >= s.total:
            if s.epoch in done:
                continue
            done.add(s.epoch)
        kept.append(s)
    return kept


def _summarise_bars(samples: list[BarSample], rec: LogRecord) -> None:
    samples = _drop_reprints(samples)
    if not samples:
        return
    # The bar total is constant across epochs; take the most common one.
    counts: dict[int, int] = {}
    steps = None
    for s in samples:
        if s.total > 0:
            counts[s.total] = counts.get(s.total, 0) + 1
        if s.global_step is not None and (steps is None or s.global_step > steps):
            steps = s.global_step
    if counts:
        rec.steps_per_epoch = max(counts, key=counts.__getitem__)
    rec.total_steps = steps
    # Last seen update per epoch: epoch-less updates (the bare first print) belong to
    # the epoch after the last described one.
    last_by_epoch: dict[int, BarSample] = {}
    current = 0
    for s in samples:
        ep = s.epoch if s.epoch is not None else current + 1 if s.n == 0 else current
        if s.epoch is not None:
            current = s.epoch
        if ep <= 0:
            continue
        prev = last_by_epoch.get(ep)
        if prev is None or s.n >= prev.n:
            last_by_epoch[ep] = s
    if last_by_epoch:
        rec.epochs_started = max(last_by_epoch)
        # Epochs run in order, so the last one decides: earlier epochs finished even
        # when their updates were not sampled (or not read, for huge logs).
        last = last_by_epoch[rec.epochs_started]
        rec.epochs_finished = rec.epochs_started - (0 if last.total and last.n >= last.total else 1)
        rec.epoch_elapsed_s = [
            last_by_epoch[e].elapsed_s or 0.0 for e in sorted(last_by_epoch) if last_by_epoch[e].n > 0
        ]
        if rec.total_steps is None and rec.steps_per_epoch:
            rec.total_steps = sum(s.n for s in last_by_epoch.values())
    rates = [s.it_per_s for s in samples if s.it_per_s]
    rec.speed_samples = _bounded(rates)
    # Warm-up: the first steps include compilation, cache warm-up and the first
    # checkpoint-free data loading, and tqdm's rate is a moving average, so updates in
    # the first 10% of an epoch (at least 2 steps) are left out of the steady rate.
    steady = [s.it_per_s for s in samples if s.it_per_s and s.n > max(2, s.total // 10)]
    if steady:
        rec.steady_it_per_s = _median(steady)
    elif rates:
        rec.steady_it_per_s = _median(rates)
        rec.problems.append("speed only from warm-up updates; steady rate may be low")
    losses = []
    for s in _bounded([s for s in samples if s.global_step is not None and s.loss_raw]):
        loss = s.loss
        if loss is not None and math.isfinite(loss):
            losses.append((s.global_step, loss))
    rec.loss = losses


def _extract_rare(text: str, rec: LogRecord) -> None:
    """Lines that occur a few times per log: memory, checkpoints, Step, W&B, errors."""
    if "plan-experiment: " in text:
        sizes = [int(n) for n in _WORLD_RE.findall(text)]
        if sizes and max(sizes) > 1:
            rec.world_size = max(rec.world_size or 1, *sizes)
        rss = [float(x) for x in _RSS_RE.findall(text)]
        if rss:
            rec.peak_rss_gib = max(rss)
        named = _DEVICE_RE.search(text)
        if named is not None:
            # The GPU the job ran on (train.sh prints nvidia-smi's name): a table key where the
            # table knows it, else the config's ``device: cuda`` stays (a GPU of unknown type).
            found = find_device(named.group(1))
            if found is not None:
                rec.device = found.key
    if "peak memory" in text:
        for m in _MEM_RE.finditer(text):
            key = "alloc" if m.group(1).startswith("alloc") else m.group(1)
            val = to_float(m.group(2))
            if val is None:
                continue
            val *= _UNIT_TO_GIB.get(m.group(3), 1.0)
            rec.peak_memory_gib[key] = max(val, rec.peak_memory_gib.get(key, 0.0))
    if "checkpoint of size" in text or "checkpoint saved to" in text:
        for m in _CKPT_RE.finditer(text):
            size = to_float(m.group(2))
            path = m.group(4)
            ep = _EPOCH_DIR_RE.search(path) or _EPOCH_FILE_RE.search(path)
            rec.checkpoints.append(
                CheckpointSave(m.group(1).lower(), None if size is None else size * _UNIT_TO_GIB.get(m.group(3), 1.0),
                               path, int(ep.group(1)) if ep else None)
            )
    if "Checkpoint saved in" in text:
        rec.checkpoint_save_s = [float(x) for x in _CKPT_SAVED_RE.findall(text) if to_float(x) is not None]
    if "Step " in text:
        step_losses: list[tuple[int, float]] = []
        tps: list[float] = []
        for m in _STEP_RE.finditer(text):
            step = int(m.group(1))
            for k, v in _KV_RE.findall(m.group(2)):
                f = to_float(v)
                if f is None:
                    continue
                if k == "loss" and math.isfinite(f):
                    step_losses.append((step, f))
                elif k == "tokens_per_second_per_gpu":
                    tps.append(f)
                elif k.startswith("peak_memory_"):
                    key = k[len("peak_memory_") :]
                    rec.peak_memory_gib[key] = max(f, rec.peak_memory_gib.get(key, 0.0))
        if tps:
            rec.tokens_per_second = _bounded(tps)
            # The first logged step includes warm-up; leave it out when there are more.
            rec.tokens_per_second_median = _median(tps[1:] if len(tps) > 2 else tps)
        if step_losses and not rec.loss:
            rec.loss = _bounded(step_losses)
    if "wandb:" in text:
        for k, v in _WANDB_RE.findall(text):
            f = to_float(v)
            if f is not None:
                rec.wandb[k] = f
        w = rec.wandb.get("tokens_per_second_per_gpu")
        if w is not None and not rec.tokens_per_second:
            rec.tokens_per_second = [w]
            rec.tokens_per_second_median = w
        for src, key in (("peak_memory_alloc", "alloc"), ("peak_memory_reserved", "reserved"),
                         ("peak_memory_active", "active")):
            if src in rec.wandb:
                rec.peak_memory_gib[key] = max(rec.wandb[src], rec.peak_memory_gib.get(key, 0.0))
        if rec.total_steps is None and "global_step" in rec.wandb:
            rec.total_steps = int(rec.wandb["global_step"])
    # "of memory" covers "CUDA out of memory" and "Out of memory"; "OfMemory" covers
    # torch.OutOfMemoryError and torch.cuda.OutOfMemoryError.
    if "OfMemory" in text or "of memory" in text or "OF_MEMORY" in text:
        rec.oom = True
    tb = text.rfind(_TRACEBACK)
    if tb >= 0:
        excs = _EXC_LINE_RE.findall(text, tb)
        rec.error = excs[-1].strip()[:300] if excs else "Traceback (exception line missing)"
    if "CANCELLED AT" in text:
        cancel = _SLURM_CANCEL_RE.search(text)
        if cancel:
            why = cancel.group(1).strip() or "cancelled"
            rec.problems.append(f"Slurm cancelled the job {why}".strip())
            if rec.error is None and "TIME LIMIT" not in why:
                rec.error = f"Slurm: CANCELLED {why}".strip()


def _decide_state(rec: LogRecord) -> None:
    if rec.oom:
        rec.state = "oom"
        return
    if rec.error is not None and not rec.error.startswith("Slurm"):
        rec.state = "failed"
        return
    if not (rec.recipe or rec.speed_samples or rec.steps_per_epoch or rec.checkpoints):
        rec.state = "unknown"
        return
    target = rec.epochs or rec.epochs_started or None
    trained = bool(target) and rec.epochs_finished >= (target or 0)
    saved_epochs = {c.epoch for c in rec.checkpoints if c.kind != "recipe"}
    if target and saved_epochs:
        saved = (target - 1) in saved_epochs
    else:
        saved = len(rec.checkpoint_save_s) >= (target or 1) if rec.checkpoint_save_s else bool(saved_epochs)
    if trained and saved:
        rec.state = "completed"
        return
    if rec.error is not None:  # Slurm cancellation
        rec.state = "failed"
        return
    rec.state = "truncated"
    if trained and not saved:
        rec.problems.append("training finished but the final checkpoint save was not logged")
    elif target:
        rec.problems.append(
            f"log ends after {rec.epochs_finished} of {target} epoch(s)"
            + (f" (step {rec.total_steps})" if rec.total_steps else "")
        )


def parse_log(text: str, path: str | None = None) -> LogRecord:
    """Parse one torchtune training log given as text.

    Args:
        text: the whole log.
        path: where it came from; stored on the record for reporting only.

    Returns:
        A :class:`LogRecord`. Never raises on bad input: what could not be read is
        described in ``record.problems``.
    """
    return parse_log_bytes(text.encode("utf-8", "replace"), path)


def parse_log_bytes(data: bytes, path: str | None = None) -> LogRecord:
    """Parse one torchtune training log given as raw bytes (the fast path).

    Only the non-bar remainder and the sampled bar updates are decoded (UTF-8 with
    ``errors="replace"``), so binary garbage cannot raise.

    Args:
        data: the file's bytes.
        path: where it came from; stored on the record for reporting only.

    Returns:
        A :class:`LogRecord`; see :func:`parse_log`.
    """
    rec = LogRecord(path=path)
    if not data:
        rec.problems.append("empty log")
        return rec
    try:
        binary = b"\x00" in data
        if binary:
            data = data.replace(b"\x00", b"")
        data, ranks = _normalise(data)
        samples, rest_b = _split_bars(data)
        rest = rest_b.decode("utf-8", "replace")
        if not binary and rest.count("\ufffd") > 16:
            binary = True
        if binary:
            rec.problems.append("log contains binary data; parsed what was readable")
        extract_config(rest, rec)
        if ranks > 1:
            rec.world_size = max(rec.world_size or 1, ranks)
        _summarise_bars(samples, rec)
        if not samples and (b"it/s]" in data or b"s/it]" in data):
            rec.problems.append("progress bars present but none could be read; no speed from this log")
        _extract_rare(rest, rec)
        if not data.endswith(b"\n"):
            rec.problems.append("log does not end with a newline (cut mid-write or still running)")
        _decide_state(rec)
    except Exception as exc:  # noqa: BLE001 - a parser bug must not stop a 10,000-log scan
        rec.problems.append(f"parser error: {type(exc).__name__}: {exc}")
        rec.state = "unknown"
    return rec
