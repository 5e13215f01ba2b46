"""Log parser: every torchtune log format, and logs that are cut, mixed or garbage."""

from __future__ import annotations

import os
import random
import time
from pathlib import Path

import pytest

from planner.estimate.log_reading import FULL_READ_MAX, read_log
from planner.estimate.prior_scan import find_logs, scan
from planner.estimate.estimators import PriorRun
from planner.estimate.logparse import STATES, LogRecord, parse_log, parse_log_bytes

FIXTURES = Path(__file__).parent / "fixtures" / "logs"
REAL = FIXTURES / "real"
REPO = Path(__file__).parent.parent


def load(name: str) -> LogRecord:
    return parse_log_bytes((FIXTURES / name).read_bytes(), name)


def test_completed_061_it_per_s_two_epochs() -> None:
    r = load("slurm-1001.out")
    assert r.recipe == "LoRAFinetuneRecipeSingleDevice"
    assert r.model_component == "torchtune.models.llama3_2.lora_llama3_2_1b"
    assert (r.batch_size, r.gradient_accumulation_steps, r.epochs) == (4, 1, 2)
    assert r.max_seq_len == 512 and r.packed is False
    assert (r.dataset_source, r.dataset_data_files, r.dataset_split) == (
        "json", "/data/words_8L_80P_10000.json", "train")
    assert r.output_dir == "/scratch/user/ck-out-happy-narwhal"
    assert r.steps_per_epoch == 40 and r.total_steps == 80
    assert r.epochs_finished == 2
    assert r.steady_it_per_s == pytest.approx(4.34)
    assert r.peak_memory_gib == {"alloc": 2.85, "reserved": 3.10, "active": 2.90}
    kinds = [(c.kind, c.epoch) for c in r.checkpoints]
    assert ("model", 0) in kinds and ("adapter", 1) in kinds
    assert r.checkpoint_gib_per_epoch() == pytest.approx(2.30 + 0.04 + 0.04)
    assert r.checkpoint_save_s == [12.34, 12.34]
    assert r.state == "completed" and r.problems == []
    assert r.loss and r.loss[-1][0] == 80


def test_full_config_parses_with_yaml_on_demand() -> None:
    r = load("slurm-1001.out")
    assert r.config is not None
    assert r.config["batch_size"] == 4
    assert r.config["model"]["lora_attn_modules"] == ["q_proj", "v_proj", "output_proj"]


def test_s_per_it_nightly_memory_sci_loss_packed() -> None:
    r = load("slurm-1002.out")
    assert r.steady_it_per_s == pytest.approx(1 / 2.22, rel=1e-3)  # "2.22s/it"
    assert r.peak_memory_gib == {"active": 7.40, "alloc": 7.10, "reserved": 8.00}
    assert r.packed is True and r.max_steps_per_epoch == 30 and r.gradient_accumulation_steps == 4
    assert all(0 < loss < 1e-4 for _, loss in r.loss)  # 6.05e-06-style values
    assert [c.kind for c in r.checkpoints] == ["adapter", "adapter"]
    assert r.state == "completed"


def test_warmup_updates_are_left_out_of_the_steady_rate() -> None:
    r = load("slurm-1011.out")
    assert min(r.speed_samples) < 1.0  # warm-up updates (0.90 it/s) were read
    assert r.steady_it_per_s == pytest.approx(3.0)  # ... but not used


def test_oom() -> None:
    r = load("slurm-1003.out")
    assert r.oom and r.state == "oom"
    assert r.error and "OutOfMemoryError" in r.error


def test_traceback_without_oom_is_failed() -> None:
    r = load("slurm-1004.out")
    assert r.state == "failed" and not r.oom
    assert r.error.startswith("FileNotFoundError")


def test_cut_mid_update() -> None:
    r = load("slurm-1005.out")
    assert r.state == "truncated"
    assert r.total_steps == 120 and r.steps_per_epoch == 200
    assert r.steady_it_per_s == pytest.approx(5.0)
    assert any("newline" in p for p in r.problems)


def test_stdout_logger_wandb_and_old_gb_memory() -> None:
    r = load("slurm-1006.out")
    assert r.tokens_per_second_median == pytest.approx(3072.0)
    assert len(r.tokens_per_second) == 16  # 20 Step lines, thinned to a bounded series
    assert r.wandb["tokens_per_second_per_gpu"] == pytest.approx(186.75)
    assert r.wandb["global_step"] == 20
    # 3.50 GB (10^9 bytes) is 3.26 GiB
    assert r.peak_memory_gib["reserved"] == pytest.approx(3.5e9 / 2**30)
    # 3.00 GB is 2.79 GiB; the W&B summary's 2.85 is larger and the maximum is kept.
    assert r.peak_memory_gib["alloc"] == pytest.approx(2.85)
    assert r.state == "completed"


def test_wandb_summary_alone_gives_tokens_per_second() -> None:
    text = "wandb: Run summary:\nwandb: tokens_per_second_per_gpu 186.75\nwandb: global_step 2000\n"
    r = parse_log(text)
    assert r.tokens_per_second_median == pytest.approx(186.75)
    assert r.total_steps == 2000


def test_disklogger_lines_with_grad_norm() -> None:
    text = (
        "Step 1 | loss:2.5 lr:3e-05 tokens_per_second_per_gpu:100.0 grad_norm:1.2 \n"
        "Step 2 | loss:6.05e-06 lr:3e-05 tokens_per_second_per_gpu:200.0 grad_norm:1.1 \n"
        "Step 3 | loss:1.0 lr:3e-05 tokens_per_second_per_gpu:210.0 peak_memory_alloc:5.5 \n"
    )
    r = parse_log(text)
    assert r.loss == [(1, 2.5), (2, 6.05e-06), (3, 1.0)]
    assert r.tokens_per_second_median == pytest.approx(205.0)  # first step left out
    assert r.peak_memory_gib["alloc"] == 5.5


@pytest.mark.parametrize("name", ["slurm-1007.out", "slurm-1008.out"])
def test_garbage_and_empty_give_partial_records(name: str) -> None:
    r = load(name)
    assert r.state == "unknown"
    assert r.problems
    assert not r.has_training_data


def test_long_bar_is_sampled_not_fully_parsed() -> None:
    r = load("slurm-1009.out")
    assert r.steps_per_epoch == 3000 and r.total_steps == 3000
    assert len(r.speed_samples) <= 16
    assert r.steady_it_per_s == pytest.approx(12.5)
    assert r.epoch_elapsed_s == [240.0]


def test_slurm_time_limit() -> None:
    r = load("slurm-1010.out")
    assert r.state == "truncated"
    assert r.epochs_finished == 1 and r.epochs_started == 2 and r.total_steps == 93
    assert any("TIME LIMIT" in p for p in r.problems)


def test_bars_without_carriage_returns() -> None:
    r = load("slurm-1011.out")
    assert r.steps_per_epoch == 25 and r.total_steps == 25
    assert r.steady_it_per_s == pytest.approx(3.0)
    assert r.state == "completed"


def test_str_and_bytes_entry_points_agree() -> None:
    data = (FIXTURES / "slurm-1001.out").read_bytes()
    a = parse_log(data.decode("utf-8"))
    b = parse_log_bytes(data)
    assert a.to_dict() == b.to_dict()


def test_record_roundtrip() -> None:
    r = load("slurm-1001.out")
    assert LogRecord.from_dict(r.to_dict()) == r


def test_interleaved_stdout_inside_config_dump() -> None:
    text = (
        "INFO:torchtune.utils._logging:Running LoRAFinetuneRecipeSingleDevice with resolved config:\n\n"
        "batch_size: 4\nepochs: 3\nmodel:\n  _component_: torchtune.models.llama3_2.lora_llama3_2_1b\n"
        "Writing logs to /tmp/x/log.txt\n"
        "tokenizer:\n  max_seq_len: 256\n"
    )
    r = parse_log(text)
    assert r.batch_size == 4 and r.epochs == 3
    assert r.model_component.endswith("lora_llama3_2_1b")


def test_fuzz_never_raises() -> None:
    rnd = random.Random(0)
    base = (FIXTURES / "slurm-1001.out").read_bytes()
    for _ in range(300):
        data = bytearray(base)
        for _ in range(rnd.randrange(1, 40)):
            op = rnd.randrange(3)
            i = rnd.randrange(len(data))
            if op == 0:
                data[i] = rnd.randrange(256)
            elif op == 1:
                del data[i : i + rnd.randrange(200)]
            else:
                data[i:i] = bytes(rnd.randrange(256) for _ in range(rnd.randrange(20)))
        cut = bytes(data[: rnd.randrange(len(data) + 1)])
        r = parse_log_bytes(cut)
        assert r.state in STATES
        assert not any(p.startswith("parser error") for p in r.problems), r.problems


# --------------------------------------------------------------------------- scanning


def test_scan_reports_garbage_and_caches(tmp_path: Path) -> None:
    for f in FIXTURES.glob("slurm-*.out"):
        d = tmp_path / "exp" / f.stem
        d.mkdir(parents=True)
        (d / f.name).write_bytes(f.read_bytes())
    (tmp_path / "exp" / "not-a-log.txt").write_text("x")
    cache = tmp_path / "cache.pkl"
    first = scan([tmp_path / "exp", tmp_path / "missing"], cache)
    assert first.parsed == 11 and first.cached == 0
    skipped = {Path(p).name: why for p, why in first.skipped}
    assert set(skipped) == {"slurm-1007.out", "slurm-1008.out"}
    assert "empty" in skipped["slurm-1008.out"]
    assert len(first.records) == 9
    assert len(first.usable()) == 8  # slurm-1004 failed before training: no figures
    assert sorted(p.name for p in first.priors()) == sorted(r.path for r in first.usable())

    second = scan([tmp_path / "exp"], cache)
    assert second.parsed == 0 and second.cached == 11
    assert {k: v.to_dict(with_config=False) for k, v in second.records.items()} == {
        k: v.to_dict(with_config=False) for k, v in first.records.items()
    }

    # Change one file: only it is parsed again.
    changed = tmp_path / "exp" / "slurm-1005" / "slurm-1005.out"
    changed.write_bytes(changed.read_bytes() + b"\n")
    os.utime(changed, ns=(1, 1))
    third = scan([tmp_path / "exp"], cache)
    assert third.parsed == 1 and third.cached == 10


def test_sparse_read_of_a_large_log_agrees_with_a_full_read() -> None:
    path = FIXTURES / "slurm-1009.out"
    assert path.stat().st_size > FULL_READ_MAX
    sparse = read_log(str(path))
    assert len(sparse) < path.stat().st_size * 0.7
    a, b = parse_log_bytes(sparse), parse_log_bytes(path.read_bytes())
    for name in ("recipe", "batch_size", "epochs", "steps_per_epoch", "total_steps", "epochs_finished",
                 "steady_it_per_s", "peak_memory_gib", "checkpoints", "state"):
        assert getattr(a, name) == getattr(b, name), name


def test_cache_deltas_and_removed_files(tmp_path: Path) -> None:
    src = (FIXTURES / "slurm-1001.out").read_bytes()
    for i in range(8):
        (tmp_path / f"slurm-{i}.out").write_bytes(src)
    cache = tmp_path / ".cache.pkl"
    assert scan([tmp_path], cache).parsed == 8
    size_full = cache.stat().st_size
    (tmp_path / "slurm-3.out").write_bytes(src + b"\n")
    (tmp_path / "slurm-5.out").unlink()
    res = scan([tmp_path], cache)
    assert (res.parsed, res.cached, len(res.records)) == (1, 6, 7)
    assert cache.stat().st_size < size_full * 1.5  # a delta frame was appended, not a rewrite
    again = scan([tmp_path], cache)
    assert (again.parsed, again.cached, len(again.records)) == (0, 7, 7)
    assert all(r.config_text is None for r in again.records.values())
    # A new log in a known folder (and in a new subfolder) is found.
    (tmp_path / "slurm-9.out").write_bytes(src)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "slurm-10.out").write_bytes(src)
    new = scan([tmp_path], cache)
    assert (new.parsed, new.cached, len(new.records)) == (2, 7, 9)


def _state(started: str, ended: str) -> str:
    return (f'{{"state": "COMPLETED", "job_id": "5", "started": "{started}", "ended": "{ended}", '
            '"exit_code": 0, "host": "n1"}')


def _replace(path: Path, text: str) -> None:
    """Write beside, then rename: how jobs write job-state.json."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


def _backdate(*folders: Path, ago: float) -> None:
    """Date folders ``ago`` seconds back: changes made before this scan, not during it."""
    t = int((time.time() - ago) * 1e9)
    for f in folders:
        os.utime(f, ns=(t, t))


def test_priors_carry_their_run_folder(tmp_path: Path) -> None:
    """A run planned by us: wall time, checkpoint size, model and eval times come from its folder."""
    model = tmp_path / "models" / "tiny-llama-cap"
    model.mkdir(parents=True)
    (model / "config.json").write_text((REPO / "examples/capitalization/models/tiny-llama-cap/config.json").read_text())
    run = tmp_path / "exp" / "run_a"
    (run / "epoch_0").mkdir(parents=True)
    (run / "epoch_0" / "adapter_model.pt").write_bytes(b"x" * 1024 * 1024)
    log = (FIXTURES / "slurm-1001.out").read_bytes()
    (run / "slurm-5.out").write_bytes(log.replace(b"/models/Llama-3.2-1B-Instruct/", f"{model}/".encode()))
    (run / "finetune.yaml").write_text("checkpointer:\n  checkpoint_dir: /elsewhere/Other-Model\n")
    (run / "logs").mkdir()  # torchtune's metric logs: not searched in a run folder we planned
    (run / "logs" / "slurm-99.out").write_text("Step 1 | loss:1.0\n")
    # A log cut before its config dump: the model folder comes from finetune.yaml.
    headless = tmp_path / "exp" / "run_b"
    headless.mkdir()
    (headless / "slurm-7.out").write_bytes(log.replace(b" with resolved config:", b""))
    (headless / "finetune.yaml").write_text(f"checkpointer:\n  checkpoint_dir: {model}\n")
    (run / "job-state.json").write_text(_state("2025-10-22T14:00:00.250Z", "2025-10-22T14:01:30.250Z"))
    plain = tmp_path / "elsewhere" / "slurm-6.out"  # a log with no run folder around it
    plain.parent.mkdir()
    plain.write_bytes((FIXTURES / "slurm-1001.out").read_bytes())
    _backdate(*[p for p in tmp_path.rglob("*") if p.is_dir()], ago=3600)
    cache = tmp_path / "cache.pkl"

    priors = {Path(p.name).parent.name: p for p in scan([tmp_path], cache).priors()}
    bare, ours, cut = priors["elsewhere"], priors["run_a"], priors["run_b"]
    assert cut.model == "tiny-llama-cap" and cut.param_count == ours.param_count
    assert bare.wall_seconds is None and bare.checkpoint_gib_per_epoch == pytest.approx(2.38)  # from the log's lines
    assert bare.model == "torchtune.models.llama3_2.lora_llama3_2_1b" and bare.param_count is None
    assert ours.wall_seconds == 90.0
    assert ours.checkpoint_gib_per_epoch == pytest.approx(1 / 1024)
    assert ours.model == "tiny-llama-cap" and ours.param_count and ours.param_count < 1e6
    assert ours.it_per_s == pytest.approx(4.34) and ours.batch_size == 4 and ours.eval_seconds == []

    def rescan() -> tuple[tuple[int, int], PriorRun]:
        res = scan([tmp_path], cache)
        assert not any("/eval/" in path or "/logs/" in path for path, _ in res.skipped)
        [prior] = [p for p in res.priors() if "run_a" in p.name]
        return (res.parsed, res.cached), prior

    # Facts are cached with the log: a rescan opens nothing when nothing changed ...
    assert rescan()[0] == (0, 3)
    # ... and sees a rewritten job-state.json, an evaluation that finished, and one
    # that was run again, all without the log having changed.
    _replace(run / "job-state.json", _state("2025-10-22T14:00:00.250Z", "2025-10-22T14:02:00.250Z"))
    _backdate(run, ago=3000)
    counts, ours = rescan()
    assert counts == (1, 2) and ours.wall_seconds == 120.0 and ours.eval_seconds == []
    ev = run / "eval" / "capitalization_epoch0"
    ev.mkdir(parents=True)
    (ev / "slurm-8.out").write_text("accuracy: 0.61\n")  # the evaluation's own log: no prior run
    _replace(ev / "job-state.json", _state("2025-10-22T14:03:00Z", ""))  # running
    _backdate(ev, ev.parent, run, ago=2000)
    counts, ours = rescan()
    assert counts == (1, 2) and ours.eval_seconds == []
    assert rescan()[0] == (0, 3)  # waiting for the evaluation is not a change
    _replace(ev / "job-state.json", _state("2025-10-22T14:03:00Z", "2025-10-22T14:03:45Z"))
    _backdate(ev, ago=1000)  # only the evaluation's own folder moved
    counts, ours = rescan()
    assert counts == (1, 2) and ours.eval_seconds == [45.0]
    ev1 = run / "eval" / "capitalization_epoch1"  # a later evaluation of the same run
    ev1.mkdir()
    _replace(ev1 / "job-state.json", _state("2025-10-22T14:05:00Z", "2025-10-22T14:06:00Z"))
    _backdate(ev1, ev1.parent, ago=500)
    counts, ours = rescan()
    assert counts == (1, 2) and ours.eval_seconds == [45.0, 60.0]
    assert rescan()[0] == (0, 3)


def test_a_folder_changed_within_one_clock_tick_is_listed_again(tmp_path: Path) -> None:
    """Filesystem clocks are coarse: a log added in the same tick leaves the folder's mtime as it was."""
    src = (FIXTURES / "slurm-1001.out").read_bytes()
    (tmp_path / "slurm-1.out").write_bytes(src)
    cache = tmp_path / "cache.pkl"
    mtime = tmp_path.stat().st_mtime_ns
    assert scan([tmp_path], cache).parsed == 1
    (tmp_path / "slurm-2.out").write_bytes(src)
    os.utime(tmp_path, ns=(mtime, mtime))  # as if the clock had not ticked since the last scan
    res = scan([tmp_path], cache)
    assert (res.parsed, res.cached) == (1, 1)


def test_new_logs_in_a_shared_folder_do_not_invalidate_the_others(tmp_path: Path) -> None:
    """sbatch's default: every slurm-*.out in the submit folder; one more must not reparse all."""
    src = (FIXTURES / "slurm-1001.out").read_bytes()
    for i in range(5):
        (tmp_path / f"slurm-{i}.out").write_bytes(src)
    _backdate(tmp_path, ago=3600)
    cache = tmp_path / "cache.pkl"
    assert scan([tmp_path], cache).parsed == 5
    (tmp_path / "slurm-5.out").write_bytes(src)
    res = scan([tmp_path], cache)
    assert (res.parsed, res.cached) == (1, 5)


def test_a_shared_cache_keeps_logs_of_folders_not_scanned(tmp_path: Path) -> None:
    """One cache serves every experiment of a user; scanning one must not forget another's logs."""
    src = (FIXTURES / "slurm-1001.out").read_bytes()
    for exp in ("a", "b"):
        (tmp_path / exp).mkdir()
        (tmp_path / exp / "slurm-1.out").write_bytes(src)
    cache = tmp_path / "cache.pkl"
    assert scan([tmp_path / "a"], cache).parsed == 1
    assert scan([tmp_path / "b"], cache).parsed == 1
    assert scan([tmp_path / "a"], cache).parsed == 0  # still cached
    (tmp_path / "a" / "slurm-1.out").unlink()
    assert len(scan([tmp_path / "a"], cache).records) == 0  # gone from a ...
    res = scan([tmp_path / "a", tmp_path / "b"], cache)
    assert (res.parsed, res.cached, len(res.records)) == (0, 1, 1)  # ... b still cached


def test_scan_survives_a_damaged_cache(tmp_path: Path) -> None:
    (tmp_path / "slurm-1.out").write_bytes((FIXTURES / "slurm-1001.out").read_bytes())
    cache = tmp_path / "cache.pkl"
    cache.write_bytes(b"\x80\x05garbage")
    res = scan([tmp_path], cache)
    assert res.parsed == 1 and len(res.records) == 1


def test_find_logs_ignores_other_names(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "slurm-7.out").write_text("x")
    (tmp_path / "a" / "slurm-7.err").write_text("x")
    (tmp_path / "a" / "train.out").write_text("x")
    # sbatch --output=logs/slurm-%j.out is common; checkpoint and hidden folders never hold logs.
    for sub in ("logs", "epoch_0", "epoch_12", "recipe_state", ".hf_datasets_cache", "epoch_best"):
        (tmp_path / "a" / sub).mkdir()
        (tmp_path / "a" / sub / f"slurm-{len(sub)}.out").write_text("x")
    assert [str(Path(f[0]).relative_to(tmp_path)) for f in find_logs([tmp_path])] == [
        "a/epoch_best/slurm-10.out", "a/logs/slurm-4.out", "a/slurm-7.out"]
    # Nested roots do not list a log twice.
    assert len(find_logs([tmp_path, tmp_path / "a", tmp_path])) == 3


# --------------------------------------------------------------------------- real logs


def _real_logs() -> list[Path]:
    return sorted(REAL.glob("**/slurm-*.out")) if REAL.exists() else []


@pytest.mark.skipif(not _real_logs(), reason="no real torchtune logs recorded (scripts/make_log_fixtures.py)")
@pytest.mark.parametrize("path", _real_logs(), ids=lambda p: p.name)
def test_real_torchtune_logs(path: Path) -> None:
    r = parse_log_bytes(path.read_bytes(), str(path))
    assert r.recipe == "LoRAFinetuneRecipeSingleDevice"
    assert r.batch_size and r.epochs
    assert r.steps_per_epoch and r.total_steps == r.steps_per_epoch * r.epochs
    assert r.steady_it_per_s and r.steady_it_per_s > 0
    assert r.epochs_finished == r.epochs
    assert {c.epoch for c in r.checkpoints if c.kind != "recipe"} == set(range(r.epochs))
    assert r.state == "completed", r.problems
    assert r.peak_memory_gib == {}  # nothing is printed on CPU


def test_a_packed_run_s_packing_bar_is_not_its_training_speed() -> None:
    """torchtune packs the dataset behind its own bar, examples packed per second: a 20,000-example
    run packed into 1,267 rows printed 60 such updates before its first step (as its log showed)."""
    real = (Path(__file__).parent / "fixtures" / "logs" / "real" / "slurm-90004.out").read_text()
    head, _, rest = real.partition("Packing dataset")
    packing = "".join(f"\rPacking dataset: {p:3d}%|#         | {p * 200}/20000 [00:0{p // 20}<00:01, {3000 + p}.50it/s]"
                      for p in range(1, 101, 1))
    training = "".join(f"\r1|{n}|Loss: 2.{n % 10}:  {n * 100 // 1267}%|#  | {n}/1267 [00:{n // 40:02d}<00:20, 32.6{n % 10}it/s]"
                       for n in range(0, 1268, 60))
    rec = parse_log(head + packing + "\n" + training + "\n")
    assert rec.steps_per_epoch == 1267
    assert 32 <= rec.steady_it_per_s <= 33, rec.steady_it_per_s
