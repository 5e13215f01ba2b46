"""Which prior an estimate rests on: recipe kind, model, GPU count, and what the basis says."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from planner.estimate.prior_scan import scan
from planner.estimate.estimators import PriorRun, RunQuery, job_time, training_time

REAL_LORA = Path(__file__).parent / "fixtures" / "logs" / "real" / "slurm-90001.out"  # a real tiny-model LoRA run
TINY_PARAMS = 90432
P = "INFO:torchtune.utils._logging:"


def full_finetune_1b_log() -> str:
    """A Llama-3.2-1B full fine-tune on one GPU, as torchtune 0.6.1 logs it."""
    text = (f"{P}Running FullFinetuneRecipeSingleDevice with resolved config:\n\n"
            "output_dir: /scratch/u/full-1b\nmodel:\n  _component_: torchtune.models.llama3_2.llama3_2_1b\n"
            "tokenizer:\n  _component_: torchtune.models.llama3.llama3_tokenizer\n  max_seq_len: 512\n"
            "checkpointer:\n  checkpoint_dir: /models/Llama-3.2-1B-Instruct/\n"
            "dataset:\n  _component_: torchtune.datasets.alpaca_dataset\n  packed: false\n"
            "batch_size: 4\nepochs: 1\ngradient_accumulation_steps: 1\ndevice: cuda\n\n")
    updates = "".join(f"\r1|{n}|Loss: 1.5: {n * 5}%|#| {n}/20 [00:{n * 2:02d}<00:10, 0.50it/s]" for n in range(1, 21))
    return text + updates + f"\n{P}Model checkpoint of size 2.30 GiB saved to /scratch/u/full-1b/epoch_0/model.safetensors\n"


def tiny_query() -> RunQuery:
    return RunQuery(model="tiny-llama-cap", param_count=TINY_PARAMS, batch_size=4, epochs=2, train_samples=960)


@pytest.fixture()
def mixed_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "logs"
    folder.mkdir()
    (folder / "slurm-500.out").write_text(full_finetune_1b_log())
    shutil.copy(REAL_LORA, folder / "slurm-600.out")
    return folder


def test_lora_run_rests_on_the_lora_log_not_the_1b_full_finetune(mixed_folder: Path) -> None:
    priors = scan([mixed_folder]).priors()
    assert sorted(p.kind or "" for p in priors) == ["full", "lora"]
    est = training_time(tiny_query(), priors)
    assert est.details["prior"].endswith("slurm-600.out")
    assert "full fine-tune" not in est.basis and est.confidence != "low"


def test_only_a_full_finetune_says_so_and_confidence_is_low(mixed_folder: Path) -> None:
    (mixed_folder / "slurm-600.out").unlink()
    est = training_time(tiny_query(), scan([mixed_folder]).priors())
    assert est.details["prior"].endswith("slurm-500.out")
    assert "full fine-tune, scaled" in est.basis
    assert "more than 10x: low confidence" in est.basis  # 90k vs 1.2B parameters
    assert est.confidence == "low"


def test_extreme_parameter_scaling_alone_lowers_confidence() -> None:
    prior = PriorRun(name="big", model="lora_llama3_2_3b", kind="lora", batch_size=4, it_per_s=2.0)
    query = RunQuery(model="Llama-3.2-1B", param_count=None, batch_size=4, train_samples=800)
    assert training_time(query, [prior]).confidence == "scaled"  # 3x: scaled, said so
    tiny = RunQuery(model="tiny", param_count=TINY_PARAMS, batch_size=4, train_samples=800)
    est = training_time(tiny, [prior])
    assert est.confidence == "low" and "x3.01e-05 time" in est.basis


def test_gpu_count_counts_in_ranking_and_scaling() -> None:
    one = PriorRun(name="one-gpu", model="lora_llama3_2_1b", kind="lora", batch_size=4, it_per_s=2.0)
    eight = PriorRun(name="eight-gpus", model="lora_llama3_2_1b", kind="lora", batch_size=4, it_per_s=1.5, gpus=8)
    query = RunQuery(model="Llama-3.2-1B", param_count=None, batch_size=4, train_samples=3200, gpus=8)
    est = training_time(query, [one, eight])
    assert est.details["prior"] == "eight-gpus"
    assert est.details["steps_per_epoch"] == 3200 // (4 * 8)
    assert est.figure == pytest.approx(100 / 1.5)
    only_one = training_time(query, [one])
    assert "scaled from 1 to 8 GPU(s)" in only_one.basis
    assert "speed scaled x 4/32 (samples per step)" in only_one.basis
    assert only_one.figure == pytest.approx(100 / (2.0 / 8))


def test_job_time_without_finished_runs_uses_documented_defaults() -> None:
    prior = PriorRun(name="cut", model="lora_llama3_2_1b", kind="lora", batch_size=4, it_per_s=2.0)
    query = RunQuery(model="Llama-3.2-1B", param_count=1_235_814_400, batch_size=4, train_samples=800)
    loop = training_time(query, [prior])
    job = job_time(query, loop, [prior], checkpoint_gib=0.01)
    assert "default 90s + weight loading 15s per billion parameters" in job.basis
    assert job.details["startup_s"] == pytest.approx(90 + 15 * 1.2358144)
    assert job.figure == pytest.approx(loop.figure + job.details["startup_s"] + (2 + 0.1))


def test_job_time_learns_startup_from_other_models_and_swaps_weight_loading() -> None:
    other = PriorRun(name="/e/run3b/slurm-1.out", model="lora_llama3_2_3b", kind="lora", batch_size=4, it_per_s=1.0,
                     epoch_seconds=[100.0], wall_seconds=260.0, checkpoint_save_s=10.0, state="completed")
    query = RunQuery(model="Llama-3.2-1B", param_count=None, batch_size=4, train_samples=400)
    loop = training_time(query, [other])
    job = job_time(query, loop, [other])
    # 260 - 100 - 10 = 150 s start-up, of which 3B x 15 s = 45 s loading: 105 s fixed + 15 s for 1B.
    assert job.details["startup_s"] == pytest.approx(105 + 15)
    assert "median of 1 finished run(s) of other models" in job.basis


def test_finished_long_epochs_time_the_loop_not_the_swinging_bar_rate() -> None:
    # Under load tqdm's moving-average rate swings (0.8 it/s at the end) while the
    # epochs took 40 and 44 s for 50 steps each: the whole-epoch average is what a
    # rerun of the same configuration takes.
    prior = PriorRun(name="/e/r/slurm-1.out", model="lora_llama2", kind="lora", batch_size=8, it_per_s=0.8,
                     steps_per_epoch=50, epoch_seconds=[40.0, 44.0], state="completed")
    query = RunQuery(model="tiny", param_count=None, batch_size=8, epochs=2, train_samples=400)
    est = training_time(query, [prior])
    assert est.figure == pytest.approx(84.0)
    assert "whole epochs, warm-up included" in est.calculation
    short = PriorRun(name="s", model="lora_llama2", kind="lora", batch_size=8, it_per_s=4.0,
                     steps_per_epoch=50, epoch_seconds=[10.0, 11.0], state="completed")
    assert training_time(query, [short]).figure == pytest.approx(2 * 50 / 4.0)  # whole seconds too coarse: the rate


def test_cpu_jobs_default_to_a_short_startup() -> None:
    query = RunQuery(model="tiny", param_count=TINY_PARAMS, batch_size=8, epochs=2, train_samples=400, cpu=True)
    loop = training_time(query, [])
    job = job_time(query, loop, [])
    assert job.details["startup_s"] == pytest.approx(15.0, abs=0.01)
    assert "default 15s (CPU job)" in job.basis
