"""The cost model: FLOPs per token, padded tokens per step, loop time and peak memory from a model's shape and a device."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from planner.estimate import costmodel
from planner.estimate.costmodel import TokenStats, flops_per_token, loop_cost, peak_memory
from planner.spec.hardware import CPU, DEVICES, device, find_device, gres_devices
from planner.spec.errors import ConfigError
from planner.torchtune.shapes import ModelShape, model_shape_from_config

CONFIGS = Path(__file__).parent / "fixtures" / "configs"


def shape(name: str) -> ModelShape:
    return model_shape_from_config(json.loads((CONFIGS / f"{name}.json").read_text()))


def test_full_fine_tune_flops_follow_the_six_n_rule_and_lora_saves_a_third() -> None:
    """At short context a full fine-tune costs ~6 FLOPs per parameter per token (Kaplan et al.'s 6N);
    LoRA skips the frozen weights' gradients: ~4N."""
    s = shape("Llama-3.1-8B-Instruct")
    non_embedding = s.param_count - s.vocab_size * s.hidden_size  # the input embedding is a lookup, not a product
    full = flops_per_token(s, context=8, kind="full")
    lora = flops_per_token(s, context=8, kind="lora", lora_rank=8)
    assert full.per_token == pytest.approx(6 * non_embedding, rel=0.01)
    assert lora.per_token == pytest.approx(4 * non_embedding, rel=0.02)
    # Attention grows with context; checkpointing repeats the layers' forward.
    assert flops_per_token(s, context=4096, kind="lora", lora_rank=8).per_token > 1.2 * lora.per_token
    ckpt = flops_per_token(s, context=8, kind="lora", lora_rank=8, activation_checkpointing=True)
    assert ckpt.per_token - lora.per_token == pytest.approx(lora.matmul + lora.attention + lora.adapters)


def test_padded_length_is_the_expected_longest_of_a_batch() -> None:
    same = TokenStats((100,) * 50)
    assert same.padded_length(8, None) == pytest.approx(100)
    mixed = TokenStats(tuple(range(1, 101)))
    assert mixed.padded_length(1, None) == pytest.approx(mixed.mean(None))  # a batch of one is not padded
    grows = [mixed.padded_length(b, None) for b in (1, 2, 4, 8, 32)]
    assert grows == sorted(grows) and grows[-1] < 100
    assert mixed.padded_length(4, 50) <= 50  # truncation caps it
    assert mixed.truncated(50) == 50
    est = TokenStats.from_chars([400, 40])
    assert est.lengths == (22, 112) and not est.counted and "4 characters per token" in est.how()


def test_loop_time_is_work_over_sustained_throughput_plus_overhead() -> None:
    s = shape("Llama-3.2-1B-Instruct")
    tokens = TokenStats((512,) * 1000)
    h100, a100 = DEVICES["h100-sxm-80gb"], DEVICES["a100-80gb"]
    kwargs = dict(samples=1000, batch_size=8, epochs=2, max_seq_len=1024, lora_rank=8)
    fast, slow = loop_cost(s, tokens, h100, **kwargs), loop_cost(s, tokens, a100, **kwargs)
    assert fast.steps_per_epoch == 125 and fast.tokens_per_step == 8 * 512
    compute = fast.tokens_per_step * fast.work.per_token / (989e12 * costmodel.DEFAULT_UTILISATION["lora"])
    overhead = costmodel.step_overhead(h100, s.num_layers)
    assert compute > overhead and fast.step_seconds == pytest.approx(compute)  # the GPU runs while the host queues
    assert fast.seconds == pytest.approx(2 * 125 * fast.step_seconds)
    assert slow.step_seconds / fast.step_seconds == pytest.approx(989 / 312)  # compute-bound: the peak decides
    # Short sequences: the host's dispatch bounds the step, whatever the GPU.
    short = TokenStats((20,) * 1000)
    assert loop_cost(s, short, h100, **kwargs).step_seconds == pytest.approx(overhead)
    assert loop_cost(s, short, a100, **kwargs).step_seconds == pytest.approx(overhead)
    # On a CPU the same cores do both: the sum.
    cpu = loop_cost(s, short, CPU, **kwargs, cores=4)
    assert cpu.step_seconds == pytest.approx(
        8 * 20 * cpu.work.per_token / (4 * CPU.fp32_tflops * 1e12 * costmodel.DEFAULT_CPU_UTILISATION)
        + costmodel.step_overhead(CPU, s.num_layers))
    # Gradient accumulation: the same samples in fewer, longer steps.
    accum = loop_cost(s, tokens, h100, **{**kwargs, "batch_size": 4}, gradient_accumulation_steps=2)
    assert accum.steps_per_epoch == 125 and accum.tokens_per_step == fast.tokens_per_step
    # Packed: every row is max_seq_len long and holds several examples.
    packed = loop_cost(s, tokens, h100, **kwargs, packed=True)
    # torchtune does not split an example across rows: each row ends half an example short.
    assert packed.steps_per_epoch == math.ceil(1000 * 512 / (1024 - 512 / 2)) // 8 and packed.tokens_per_step == 8 * 1024
    # The derivation is spelled out for the design log.
    text = "\n".join(fast.lines)
    for part in ("tokens_per_step = 8 x 1 x 512", "FLOPs_per_token", "NVIDIA H100 SXM 80GB bf16 peak 989 TFLOP/s",
                 "steps_per_epoch = 1000/8 = 125"):
        assert part in text, text


def test_cpu_peak_counts_cores() -> None:
    assert CPU.peak_tflops("fp32", cores=4) == pytest.approx(4 * CPU.fp32_tflops)
    assert DEVICES["v100-32gb"].peak_tflops("bf16") == DEVICES["v100-32gb"].fp32_tflops  # no bf16: emulated


def test_peak_memory_parts_scale_as_they_should() -> None:
    s = shape("Llama-3.1-8B-Instruct")
    one = peak_memory(s, batch_size=1, sequence=2048, lora_rank=8)
    two = peak_memory(s, batch_size=2, sequence=2048, lora_rank=8)
    assert one.weights == pytest.approx(s.param_count * 2 / 1024**3)  # bf16
    assert two.weights == one.weights and two.adapters == one.adapters
    assert two.activations == pytest.approx(2 * one.activations) and two.logits == pytest.approx(2 * one.logits)
    ckpt = peak_memory(s, batch_size=2, sequence=2048, lora_rank=8, activation_checkpointing=True)
    assert ckpt.activations < two.activations / 10  # one layer's activations plus each layer's input
    # An 8B LoRA at batch 2 x 2048 with checkpointing fits a 24 GB card, as torchtune's single-device recipe promises.
    assert 17 < ckpt.total < 24
    # A prior's logged peak calibrates the per-example part, the weights stay.
    assert costmodel.calibrated_peak(one, 1, logged=30.0, logged_batch=2, target_batch=4) == pytest.approx(
        one.weights + one.adapters + one.workspace + 2 * (30.0 - (one.weights + one.adapters + one.workspace)))


@pytest.mark.parametrize(("written", "key"), [
    ("h100", "h100-sxm-80gb"), ("NVIDIA H100 80GB HBM3", "h100-sxm-80gb"), ("A100-SXM4-80GB", "a100-80gb"),
    ("NVIDIA A100-SXM4-40GB", "a100-40gb"), ("a100", "a100-80gb"), ("Tesla V100-SXM2-32GB", "v100-32gb"),
    ("NVIDIA GeForce RTX 4090", "rtx-4090"), ("l40s", "l40s"), ("NVIDIA H100 PCIe", "h100-pcie-80gb"), ("cpu", "cpu"),
])
def test_device_names_as_slurm_nvidia_smi_and_people_write_them(written: str, key: str) -> None:
    assert find_device(written).key == key  # type: ignore[union-attr]


def test_bare_family_picks_its_memory_variant_and_unknown_names_are_one_line_errors() -> None:
    assert find_device("a100", 40).key == "a100-40gb"  # type: ignore[union-attr]
    assert find_device("tpu-v5") is None
    with pytest.raises(ConfigError) as err:
        device("tpu-v5", where="devices.gpu")
    assert "devices.gpu: unknown device 'tpu-v5'; use one of" in str(err.value) and "\n" not in str(err.value)


def test_gres_of_scontrol_show_node() -> None:
    text = ("NodeName=g1 Arch=x86_64 CoresPerSocket=16\n   Gres=gpu:a100:4(S:0-1)\n   Partitions=gpu,gpu-long\n\n"
            "NodeName=g2\n   Gres=gpu:h100:8\n   Partitions=h100\n\nNodeName=c1\n   Gres=(null)\n   Partitions=cpu\n\n"
            "NodeName=g3\n   Gres=gpu:2\n   Partitions=untyped\n")
    assert gres_devices(text) == {"gpu": "a100", "gpu-long": "a100", "h100": "h100"}


def _query(device_key: str, **kw: object) -> "RunQuery":
    from planner.estimate.estimators import RunQuery

    s = shape("Llama-3.2-1B-Instruct")
    return RunQuery(model="Llama-3.2-1B-Instruct", param_count=s.param_count, batch_size=4, epochs=2, train_samples=800,
                    max_seq_len=1024, lora_rank=8, device=DEVICES[device_key], shape=s,
                    tokens=TokenStats((300,) * 800), **kw)  # type: ignore[arg-type]


def _prior(device: str, it_per_s: float, name: str = "p/slurm-1.out") -> "PriorRun":
    from planner.estimate.estimators import PriorRun

    return PriorRun(name=name, model="Llama-3.2-1B-Instruct", param_count=shape("Llama-3.2-1B-Instruct").param_count,
                    batch_size=4, gradient_accumulation_steps=1, max_seq_len=1024, packed=False, it_per_s=it_per_s,
                    steps_per_epoch=200, state="completed", lora_rank=8, kind="lora", device=device)


def test_a_prior_on_another_gpu_calibrates_the_model_and_is_never_scaled() -> None:
    from planner.estimate.estimators import training_time

    run = _query("h100-sxm-80gb")
    alone = training_time(run, [])
    assert alone.confidence == "modelled" and "no finished run on a GPU timed this yet" in alone.basis
    # An A100 run of the same model, twice as slow as the model says an A100 would be.
    a100_step = loop_cost(run.shape, run.tokens, DEVICES["a100-80gb"], samples=800, batch_size=4, max_seq_len=1024,
                          lora_rank=8).step_seconds
    on_a100 = training_time(run, [_prior("a100-80gb", 1 / (2 * a100_step))])
    assert on_a100.confidence == "modelled"
    assert on_a100.figure == pytest.approx(2 * alone.figure)  # the model's miss carried over, not the A100's it/s
    assert "calibrated x2: measured / modelled step of 1 finished run(s) of this model on a100-80gb" in on_a100.calculation
    # A run on the plan's own GPU, or a log that says only "cuda", anchors as before.
    for device in ("h100-sxm-80gb", "cuda"):
        anchored = training_time(run, [_prior(device, 5.0)])
        assert anchored.confidence == "measured" and anchored.figure == pytest.approx(2 * 200 / 5.0), device
    # A CPU run of the same model: neither anchor nor calibration.
    cpu = training_time(run, [_prior("cpu", 0.1)])
    assert cpu.figure == pytest.approx(alone.figure)
    assert "1 prior(s) from another device (e.g. p on cpu) are not scaled" in cpu.basis


def test_the_gpu_a_job_ran_on_is_read_from_its_log() -> None:
    from planner.estimate.logparse import parse_log

    text = (Path(__file__).parent / "fixtures" / "logs" / "slurm-1001.out").read_text()
    assert parse_log(text).device == "cuda"  # the config's device: a GPU of unknown type
    assert parse_log("plan-experiment: device NVIDIA A100-SXM4-40GB\n" + text).device == "a100-40gb"
    assert parse_log("plan-experiment: device Some Future GPU\n" + text).device == "cuda"


def test_fit_steps_recovers_dispatch_and_compute_from_runs_at_other_batches() -> None:
    # Runs whose steps are 20 ms of dispatch plus 3x the modelled compute: both scales come back.
    truth = [(0.01, c, 2.0 * 0.01 + 3.0 * c) for c in (0.001, 0.002, 0.004)]
    fit = costmodel.fit_steps(truth, cpu=True)
    assert fit is not None and fit.dispatch_scale == pytest.approx(2.0) and fit.compute_scale == pytest.approx(3.0)
    # One run: one scale for both parts. On a GPU: one scale for the longer part.
    one = costmodel.fit_steps(truth[:1], cpu=True)
    assert one is not None and one.step(0.01, 0.001) == pytest.approx(truth[0][2])
    gpu = costmodel.fit_steps([(0.02, 0.01, 0.03)], cpu=False)
    assert gpu is not None and gpu.step(0.02, 0.05) == pytest.approx(1.5 * 0.05)
    assert costmodel.fit_steps([], cpu=True) is None


def test_a_batch_change_on_the_same_device_goes_through_the_model_not_samples_per_step() -> None:
    """A tiny model on a CPU steps nearly as fast at batch 4 as at 8: scaling it/s by samples per step
    would halve the time of a batch-4 run that in fact takes longer."""
    from planner.estimate.estimators import PriorRun, RunQuery, training_time

    example = Path(__file__).parent.parent / "examples" / "capitalization" / "models" / "tiny-llama-cap" / "config.json"
    s = model_shape_from_config(json.loads(example.read_text()))
    tokens = TokenStats((30,) * 1000)

    def run(batch: int) -> RunQuery:
        return RunQuery(model="tiny", param_count=s.param_count, batch_size=batch, train_samples=20000, max_seq_len=64,
                        lora_rank=8, device=CPU, shape=s, tokens=tokens, cpu=True, dtype="fp32")

    def step_s(batch: int) -> float:  # the machine's truth: 19 ms a step + 0.9 ms an example
        return 0.019 + 0.0009 * batch

    priors = [PriorRun(name=f"b{b}/slurm-1.out", model="tiny", param_count=s.param_count, batch_size=b,
                       gradient_accumulation_steps=1, max_seq_len=64, packed=False, it_per_s=1 / step_s(b),
                       steps_per_epoch=20000 // b, state="completed", lora_rank=8, kind="lora", device="cpu")
              for b in (8, 16)]
    est = training_time(run(4), priors)
    truth = 20000 // 4 * step_s(4)
    assert est.figure == pytest.approx(truth, rel=0.05), est.calculation
    assert "fit over 2 finished run(s) of this model on cpu" in est.calculation and est.confidence == "scaled"
    # The same configuration as a prior keeps the prior's own speed.
    same = training_time(run(8), priors)
    assert same.figure == pytest.approx(20000 // 8 * step_s(8), rel=0.01) and same.confidence == "measured"
