"""Estimates: seed 002's worked example, scaling rules, fallbacks, Slurm time."""

from __future__ import annotations

import random
import statistics
from pathlib import Path

import pytest

from planner.estimate.estimators import (
    Estimate,
    PriorPool,
    PriorRun,
    RunQuery,
    batch_size,
    disk,
    eval_time,
    fallback_batch_size,
    fallback_checkpoint_gib,
    fallback_eval_time,
    fallback_training_time,
    job_time,
    gpu_hours,
    model_key,
    rank_priors,
    training_time,
)
from planner.estimate.logparse import parse_log, parse_log_bytes
from planner.spec.units import format_duration, slurm_time

FIXTURES = Path(__file__).parent / "fixtures" / "logs"

# A prior log as seed 002 describes it: same model, batch size 4, 4.34 it/s after warm-up.
SEED_PRIOR_LOG = (
    "INFO:torchtune.utils._logging:Running LoRAFinetuneRecipeSingleDevice with resolved config:\n\n"
    "batch_size: 4\nepochs: 1\ngradient_accumulation_steps: 1\n"
    "model:\n  _component_: torchtune.models.llama3_2.lora_llama3_2_1b\n"
    "INFO:torchtune.utils._logging:Model is initialized with precision torch.bfloat16.\n"
    + "".join(
        f"\r1|{n}|Loss: {2.0 - n / 100}: {n}%|█| {n}/100 [00:{n // 5:02d}<00:10, "
        f"{1.20 if n < 3 else 4.34:.2f}it/s]"
        for n in range(1, 101)
    )
    + "\n"
)


def seed_query(**kw: object) -> RunQuery:
    base = dict(model="Llama-3.2-1B-Instruct", param_count=None, batch_size=4, epochs=2, train_samples=8000)
    base.update(kw)
    return RunQuery(**base)  # type: ignore[arg-type]


def test_seed_002_calculate_time_example() -> None:
    prior = parse_log(SEED_PRIOR_LOG, "ck-out-happy-narwhal/slurm-12345.out")
    assert prior.steady_it_per_s == pytest.approx(4.34)
    est = training_time(seed_query(), [prior])
    assert est.details["steps_per_epoch"] == 2000
    assert est.details["seconds_per_epoch"] == pytest.approx(2000 / 4.34)  # 461 s
    assert est.figure == pytest.approx(2 * 2000 / 4.34)
    assert "steps_per_epoch = 8000/4 = 2000, time_per_epoch = 2000/4.34 ≈ 461s ≈ 8min" in est.calculation
    assert "≈ 16min" in est.calculation
    assert est.human() == "~16 min"
    assert est.unit == "s" and est.confidence == "measured"
    assert "slurm-12345.out" in est.basis and "it/s" in est.basis


def test_steps_follow_torchtune_floor_and_grad_accum_and_cap() -> None:
    assert seed_query(train_samples=8003).steps_per_epoch() == 2000  # drop_last=True
    assert seed_query(gradient_accumulation_steps=3).steps_per_epoch() == 666
    assert seed_query(max_steps_per_epoch=50).steps_per_epoch() == 50


def test_effective_batch_scaling() -> None:
    prior = PriorRun(name="p", model="lora_llama3_2_1b", batch_size=4, it_per_s=4.0, state="completed")
    est = training_time(seed_query(batch_size=8), [prior])
    # Twice the samples per step -> half the steps at half the speed: same time.
    assert est.details["steps_per_epoch"] == 1000
    assert est.figure == pytest.approx(2 * 2000 / 4.0)
    assert est.confidence == "scaled"
    assert "x 4/8" in est.calculation


def test_cross_size_scaling_by_parameters_says_so() -> None:
    prior = PriorRun(name="p1b", model="torchtune.models.llama3_2.lora_llama3_2_1b", batch_size=4, it_per_s=4.0)
    est = training_time(seed_query(model="Llama-3.2-3B-Instruct"), [prior])
    assert est.figure == pytest.approx(3 * 2 * 2000 / 4.0)
    assert est.confidence == "scaled"
    assert "parameter count" in est.basis


def test_same_model_prior_preferred_over_closer_config() -> None:
    same = PriorRun(name="same", model="lora_llama3_2_1b", batch_size=16, it_per_s=1.0, state="completed")
    other = PriorRun(name="other", model="lora_llama3_2_3b", batch_size=4, it_per_s=9.0, state="completed")
    ranked = rank_priors(seed_query(), [other, same])
    assert ranked[0][2].name == "same"
    assert training_time(seed_query(), [other, same]).details["prior"] == "same"


def test_a_pool_of_many_priors_picks_what_ranking_each_prior_would() -> None:
    """Grouping priors by configuration changes the cost, not the choice (ties go to the first)."""
    rnd = random.Random(3)
    models = ["lora_llama3_2_1b", "lora_llama3_2_3b", "Qwen2.5-0.5B", "mystery", None]
    priors = [
        PriorRun(name=f"p{i}", model=rnd.choice(models), batch_size=rnd.choice([None, 1, 4, 8]),
                 gradient_accumulation_steps=rnd.choice([None, 1, 2]), max_seq_len=rnd.choice([None, 512, 2048]),
                 packed=rnd.choice([None, False, True]), it_per_s=rnd.choice([None, 2.0, 4.0]),
                 tokens_per_s=rnd.choice([None, None, 900.0]), state=rnd.choice(["completed", "completed", "oom"]))
        for i in range(400)
    ]
    pool = PriorPool(priors)
    assert len(pool) == len(priors) and pool.with_speed == sum(1 for p in priors if p.it_per_s or p.tokens_per_s)
    for query in (seed_query(), seed_query(batch_size=8, max_seq_len=512), seed_query(model="Qwen2.5-0.5B"),
                  seed_query(model="Llama-3.1-8B", packed=True)):
        # Reference: each prior ranked on its own, then a stable sort of all of them.
        alone = [rank_priors(query, [p])[0] for p in priors]
        reference = sorted(alone, key=lambda t: (t[0], t[1]))
        assert [p.name for _, _, p in pool.ranked(query)] == [p.name for _, _, p in reference]
        first_fast = next(p for _, _, p in reference if p.it_per_s or p.tokens_per_s)
        est = training_time(query, pool)
        assert est.details["prior"] == first_fast.name == training_time(query, priors).details["prior"]
        assert f"; {pool.with_speed - 1} other prior(s) ranked lower" in est.basis


def test_tokens_per_second_path_when_tokens_per_sample_known() -> None:
    prior = PriorRun(name="t", model="lora_llama3_2_1b", batch_size=4, it_per_s=4.0, tokens_per_s=2000.0)
    est = training_time(seed_query(tokens_per_sample=100.0), [prior])
    assert est.figure == pytest.approx(2 * 8000 * 100 / 2000.0)
    assert "tok/s" in est.calculation


def test_overhead_from_prior_wall_time_and_saves() -> None:
    prior = PriorRun(
        name="w", model="lora_llama3_2_1b", batch_size=4, it_per_s=4.0,
        epoch_seconds=[100.0], wall_seconds=190.0, checkpoint_save_s=30.0, state="completed",
    )
    loop = training_time(seed_query(), [prior])
    assert loop.figure == pytest.approx(2 * 500)  # train_seconds is the loop alone
    job = job_time(seed_query(), loop, [prior])
    # start-up 190 - 100 - 30 = 60 s once; saves 30 s per epoch
    assert (job.details["startup_s"], job.details["saves_s"]) == (pytest.approx(60), pytest.approx(2 * 30))
    assert job.figure == pytest.approx(2 * 500 + 120)
    assert "median of 1 finished run(s) of this model (w)" in job.basis


def test_no_priors_falls_back_to_seed_ranges() -> None:
    est = training_time(seed_query(), [])
    assert est.confidence == "preliminary"
    assert (est.low, est.high) == (2 * 30 * 60, 2 * 60 * 60)
    assert "Preliminary" in est.basis


@pytest.mark.parametrize(
    "size,low_min,high_min",
    [("1B", 30, 60), (3_000_000_000, 60, 120), ("Llama-3.1-8B-Instruct", 180, 300), ("7B+", 180, 300)],
)
def test_fallback_training_time_table(size: object, low_min: int, high_min: int) -> None:
    est = fallback_training_time(size, 1)  # type: ignore[arg-type]
    assert (est.low, est.high, est.figure) == (low_min * 60, high_min * 60, high_min * 60)


def test_fallback_checkpoint_mentions_adapter_only() -> None:
    est = fallback_checkpoint_gib("3B", 2)
    assert (est.low, est.high) == (12, 14)
    assert "adapter-only" in est.basis
    assert fallback_checkpoint_gib("7B", 1, adapter_only=False).high == 20
    assert fallback_checkpoint_gib("1B", 3, adapter_gib=0.02).figure == pytest.approx(0.06)


def test_fallback_batch_size_table() -> None:
    assert (fallback_batch_size(80, "1B", packed=False).low, fallback_batch_size(80, "1B", packed=False).high) == (4, 8)
    assert fallback_batch_size(80, "3B", packed=False).high == 4
    assert (fallback_batch_size(40, "1B", packed=False).low, fallback_batch_size(40, "1B", packed=False).high) == (2, 4)
    assert fallback_batch_size(40, "3B", packed=False).figure == 2
    assert fallback_batch_size(80, "3B", packed=True).figure == 2


def test_batch_size_from_memory_headroom() -> None:
    est = batch_size(80, 20, 4, packed=False)
    # headroom 4, 4 x 4 x 0.7 = 11.2 -> 8
    assert est.figure == 8
    assert "headroom = 80/20 = 4.00" in est.calculation
    packed = batch_size(80, 20, 4, packed=True, prior_packed=False)
    assert packed.figure == 2  # 11.2 / 4 = 2.8 -> 2
    assert batch_size(40, 39, 1, packed=False).figure == 1


def test_eval_time_and_gpu_hours() -> None:
    fb = fallback_eval_time(6)
    assert (fb.low, fb.high) == (360, 1800) and fb.confidence == "preliminary"
    measured = eval_time(4, [100, 120, 140])
    assert measured.figure == 480 and measured.confidence == "measured"
    train = Estimate(figure=3600, unit="s", basis="", confidence="measured", calculation="")
    gh = gpu_hours([train, train, measured], gpus=[2, 2, 1])
    assert gh.figure == pytest.approx(4 + 480 / 3600)
    assert gh.confidence == "measured"
    assert gpu_hours([train, fb]).confidence == "preliminary"


def test_disk_from_prior_checkpoint_lines() -> None:
    prior = parse_log_bytes((FIXTURES / "slurm-1002.out").read_bytes(), "p")  # 3B, 2 x 0.04 GiB adapters
    est = disk(4, 2, [prior], model="Llama-3.2-3B-Instruct", free_gib=1.0)
    assert est.figure == pytest.approx(4 * 2 * 0.08 * 1.2)
    assert est.confidence == "measured" and est.details["fits"] is True
    too_big = disk(4, 2, [], model="Llama-3.2-3B-Instruct", free_gib=10.0)
    assert too_big.confidence == "preliminary" and too_big.details["fits"] is False


@pytest.mark.parametrize(
    "seconds,margin,expected",
    [
        (922, 0.5, "00:25:00"),
        (100, 0.5, "00:15:00"),
        (2 * 3600, 0.5, "03:00:00"),
        (5 * 3600, 0.5, "07:30:00"),
        (30 * 3600, 0.5, "1-21:00:00"),
        (3000, 0.0, "00:50:00"),
    ],
)
def test_slurm_time(seconds: float, margin: float, expected: str) -> None:
    assert slurm_time(seconds, margin=margin) == expected


def test_format_duration_rounds_up() -> None:
    assert format_duration(461) == "8 min"
    assert format_duration(45) == "45 s"
    assert format_duration(2 * 3600 + 1) == "2 h 1 min"


@pytest.mark.parametrize(
    "name,key",
    [
        ("Llama-3.2-1B-Instruct", ("llama3.2", 1.0)),
        ("torchtune.models.llama3_2.lora_llama3_2_3b", ("llama3.2", 3.0)),
        ("Qwen2.5-0.5B-Instruct", ("qwen2.5", 0.5)),
        ("torchtune.models.qwen2_5.lora_qwen2_5_1_5b_instruct", ("qwen2.5", 1.5)),
        ("lora_llama2_7b", ("llama2", 7.0)),
        ("Meta-Llama-3.1-8B", ("llama3.1", 8.0)),
    ],
)
def test_model_key(name: str, key: tuple[str, float]) -> None:
    assert model_key(name) == key


def test_run_query_from_settings() -> None:
    settings = {"batch_size": 4, "gradient_accumulation_steps": 2, "epochs": 3, "train_samples": None,
                "max_seq_len": 512, "packed": True, "lora_rank": 8}
    q = RunQuery.from_settings("Llama-3.2-1B-Instruct", 1_230_000_000, settings, 9000)
    assert (q.train_samples, q.batch_size, q.gradient_accumulation_steps, q.epochs, q.packed) == (9000, 4, 2, 3, True)
    capped = RunQuery.from_settings("m", None, {**settings, "train_samples": 20000}, 9000)
    assert capped.train_samples == 9000


REAL = FIXTURES / "real" / "slurm-90001.out"


@pytest.mark.skipif(not REAL.exists(), reason="no real torchtune logs recorded (scripts/make_log_fixtures.py)")
def test_estimate_from_a_real_torchtune_log() -> None:
    prior = parse_log_bytes(REAL.read_bytes(), str(REAL))
    query = RunQuery(model="tiny-llama", param_count=None, batch_size=prior.batch_size or 4,
                     epochs=2, train_samples=960)
    est = training_time(query, [prior])
    steps = 960 // query.batch_size
    assert est.details["steps_per_epoch"] == steps
    assert est.figure == pytest.approx(2 * steps / prior.steady_it_per_s)  # the loop alone
    # The job adds start-up and one save per epoch.
    assert prior.checkpoint_save_s and statistics.median(prior.checkpoint_save_s) > 0
    job = job_time(query, est, [prior])
    assert job.figure == pytest.approx(est.figure + job.details["startup_s"] + job.details["saves_s"])
    # "tiny-llama" names no size, so the prior cannot be confirmed as the same model.
    assert est.confidence == "scaled"


def test_the_same_job_run_before_gives_its_wall_time() -> None:
    """A finished prior of this very job (same configuration, steps and epochs) is the
    prediction itself: its wall time held what the parts model can only estimate."""
    query = seed_query()
    steps = query.steps_per_epoch()
    twin = PriorRun(name="exp/runs/cap_rank4/slurm-7.out", model="lora_llama3_2_1b", batch_size=4, it_per_s=4.0,
                    steps_per_epoch=steps, epoch_seconds=[400.0, 410.0], wall_seconds=1500.0, state="completed")
    shorter = PriorRun(name="other", model="lora_llama3_2_1b", batch_size=4, it_per_s=4.0, steps_per_epoch=steps // 2,
                       epoch_seconds=[200.0, 205.0], wall_seconds=700.0, state="completed")
    loop = training_time(query, [twin, shorter])
    job = job_time(query, loop, [twin, shorter])
    assert job.figure == pytest.approx(1500.0)
    assert "same job run before (cap_rank4 1500s)" in job.basis
    assert job.details["startup_s"] + job.details["loop_s"] + job.details["saves_s"] == pytest.approx(1500.0)
    # Only the half-size run: no twin, so the parts model answers.
    alone = job_time(query, training_time(query, [shorter]), [shorter])
    assert "same job" not in alone.basis and alone.figure != pytest.approx(700.0)
