"""Log formats seen in other people's torchtune logs: one test per format.

The fixtures are built here, line by line, as torchtune (0.1 to nightly), its launchers
(torchx, torchrun) and the platforms logs travel through (Windows, post-processing)
write them; ``ordinary_log`` is the plain 0.6.1 single-device log every variant is
compared with.
"""

from __future__ import annotations

import re

import pytest

from planner.estimate.logparse import LogRecord, parse_log

P = "INFO:torchtune.utils._logging:"
OUT = "/scratch/u/run-a"


def config(*, recipe: str = "LoRAFinetuneRecipeSingleDevice", component: str = "torchtune.models.llama3_2.lora_llama3_2_1b",
           seq_under: str = "tokenizer", extra: str = "") -> str:
    """The resolved-config dump; ``seq_under`` says which section holds max_seq_len."""
    tok_seq = "  max_seq_len: 512\n" if seq_under == "tokenizer" else ""
    ds_seq = "  max_seq_len: 512\n" if seq_under == "dataset" else ""
    return (
        f"{P}Running {recipe} with resolved config:\n\n"
        f"output_dir: {OUT}\n"
        "model:\n"
        f"  _component_: {component}\n"
        "  lora_rank: 8\n"
        "tokenizer:\n"
        "  _component_: torchtune.models.llama3.llama3_tokenizer\n"
        "  path: /models/Llama-3.2-1B-Instruct/original/tokenizer.model\n"
        f"{tok_seq}"
        "checkpointer:\n"
        "  _component_: torchtune.training.FullModelHFCheckpointer\n"
        "  checkpoint_dir: /models/Llama-3.2-1B-Instruct/\n"
        "dataset:\n"
        "  _component_: torchtune.datasets.alpaca_dataset\n"
        "  packed: false\n"
        f"{ds_seq}"
        "batch_size: 4\n"
        "epochs: 2\n"
        "gradient_accumulation_steps: 1\n"
        "max_steps_per_epoch: null\n"
        f"{extra}"
        "device: cuda\n\n"
    )


def bar_updates(epoch: int, steps: int = 20, rate: float = 4.0) -> list[str]:
    """One tqdm update per optimizer step of an epoch, as torchtune describes them."""
    out = [f"  0%|          | 0/{steps} [00:00<?, ?it/s]"]
    for n in range(1, steps + 1):
        gs = (epoch - 1) * steps + n
        pct = n * 100 // steps
        left = (steps - n) / rate
        out.append(f"{epoch}|{gs}|Loss: {2.5 - gs * 0.01:.4f}: {pct:3d}%|##        | {n}/{steps} "
                   f"[00:{int(n / rate):02d}<00:{int(left):02d}, {rate:.2f}it/s]")
    return out


def saves(epoch: int) -> str:
    return (f"{P}Model checkpoint of size 2.30 GiB saved to {OUT}/epoch_{epoch}/model-00001-of-00001.safetensors\n"
            f"{P}Adapter checkpoint of size 0.04 GiB saved to {OUT}/epoch_{epoch}/adapter_model.pt\n"
            f"{P}Checkpoint saved in 12.00 seconds.\n")


def ordinary_log(*, reprint: bool = False, per_line: bool = False) -> str:
    """A two-epoch 0.6.1 LoRA log: config, memory, ``\\r`` bars, saves after each epoch.

    Args:
        reprint: add the finished bar torchtune prints again after each save (its
            elapsed includes the 12 s save).
        per_line: one bar update per line instead of ``\\r``-joined updates.
    """
    text = config()
    text += (f"{P}Memory stats after model init:\n\tGPU peak memory allocation: 2.85 GiB\n"
             "\tGPU peak memory reserved: 3.10 GiB\n\tGPU peak memory active: 2.90 GiB\n")
    for epoch in (1, 2):
        ups = bar_updates(epoch)
        text += "\n".join(ups) + "\n" if per_line else "".join("\r" + u for u in ups) + "\n"
        text += saves(epoch - 1)
        if reprint:
            last = ups[-1].replace("[00:05<00:00, 4.00it/s]", "[00:17<00:00, 1.15it/s]")
            text += ("" if per_line else "\r") + last + "\n"
    return text


def record(text: str) -> LogRecord:
    return parse_log(text, "slurm-1.out")


def same(a: LogRecord, b: LogRecord) -> None:
    da, db = a.to_dict(), b.to_dict()
    assert da == db


def test_ordinary_log_reads_config_speed_saves_and_completes() -> None:
    r = record(ordinary_log())
    assert (r.batch_size, r.epochs, r.max_seq_len, r.packed) == (4, 2, 512, False)
    assert r.steps_per_epoch == 20 and r.epochs_finished == 2
    assert r.steady_it_per_s == pytest.approx(4.0)
    assert r.epoch_elapsed_s == [5.0, 5.0]
    assert r.state == "completed" and r.problems == []
    assert r.finetune_kind == "lora" and r.world_size is None


def test_torchx_prefixed_lines_parse_to_the_same_record() -> None:
    plain = ordinary_log()
    prefixed = "".join("[trainer0|0]:" + line for line in plain.splitlines(keepends=True))
    r = record(prefixed)
    assert r.batch_size == 4 and r.max_seq_len == 512
    same(r, record(plain))


def test_rank_prefixed_exception_line_is_the_error() -> None:
    text = ordinary_log().split("\r2|")[0] + "\n"  # cut in epoch 2
    text += ("[rank0]: Traceback (most recent call last):\n"
             '[rank0]:   File "recipes/lora_finetune_distributed.py", line 912, in recipe_main\n'
             "[rank0]:     recipe.train()\n"
             "[rank0]: RuntimeError: NCCL communicator was aborted on rank 0.\n")
    r = record(text)
    assert r.error == "RuntimeError: NCCL communicator was aborted on rank 0."
    assert r.state == "failed"


def test_two_ranks_prefixes_give_the_world_size() -> None:
    plain = ordinary_log()
    lines = plain.splitlines(keepends=True)
    text = "".join("[default0]:" + line for line in lines) + "[default1]:" + f"{P}Dataset and Sampler are initialized.\n"
    r = record(text)
    assert r.world_size == 2
    assert r.steady_it_per_s == pytest.approx(4.0)


def test_world_size_from_the_config() -> None:
    r = record(config(recipe="LoRAFinetuneRecipeDistributed", extra="world_size: 8\n") + "".join("\r" + u for u in bar_updates(1)) + "\n")
    assert r.world_size == 8


def test_crlf_log_parses_to_the_same_record_bars_included() -> None:
    plain = ordinary_log()
    r = record(plain.replace("\n", "\r\n"))
    assert r.steady_it_per_s == pytest.approx(4.0)
    same(r, record(plain))


def test_one_update_per_line_bars_with_crlf() -> None:
    per_line = ordinary_log(per_line=True)
    r = record(per_line.replace("\n", "\r\n"))
    assert r.steady_it_per_s == pytest.approx(4.0)
    assert r.epochs_finished == 2 and r.total_steps == 40
    assert r.epoch_elapsed_s == [5.0, 5.0]
    assert r.state == "completed"


def test_torchtune_04_checkpoint_names_with_gb_sizes() -> None:
    text = ordinary_log()
    text = re.sub(r"Model checkpoint of size 2\.30 GiB saved to \S+/epoch_(\d)/\S+",
                  lambda m: f"Model checkpoint of size 2.47 GB saved to {OUT}/hf_model_0001_{m.group(1)}.pt", text)
    text = re.sub(r"Adapter checkpoint of size 0\.04 GiB saved to \S+/epoch_(\d)/\S+",
                  lambda m: f"Adapter checkpoint of size 0.04 GB saved to {OUT}/adapter_{m.group(1)}.pt", text)
    r = record(text)
    assert sorted({c.epoch for c in r.checkpoints}) == [0, 1]
    # One epoch's files, in GiB (10^9 bytes each GB), not both epochs summed.
    assert r.checkpoint_gib_per_epoch() == pytest.approx((2.47 + 0.04) * 1e9 / 1024**3)
    assert r.state == "completed"


def test_checkpoint_saved_without_a_size_counts_as_a_save() -> None:
    text = re.sub(r"Model checkpoint of size 2\.30 GiB saved to (\S+)/epoch_(\d)/\S+\n", r"Model checkpoint saved to \1/epoch_\2\n",
                  ordinary_log())
    text = re.sub(r".*Adapter checkpoint.*\n", "", text).replace(f"{P}Checkpoint saved in 12.00 seconds.\n", "")
    r = record(text)
    assert [(c.kind, c.epoch, c.size_gib) for c in r.checkpoints] == [("model", 0, None), ("model", 1, None)]
    assert r.checkpoint_gib_per_epoch() is None
    assert r.state == "completed" and r.problems == []


def test_torchtune_01_max_seq_len_under_dataset() -> None:
    text = ordinary_log().replace(config(), config(seq_under="dataset"))
    assert "tokenizer:\n  _component_: torchtune.models.llama3.llama3_tokenizer\n  path: /models/Llama-3.2-1B-Instruct/original/tokenizer.model\ncheckpointer" in text
    r = record(text)
    assert r.max_seq_len == 512
    plain = record(ordinary_log())
    assert {**r.to_dict(), "config_text": None} == {**plain.to_dict(), "config_text": None}


def test_bar_reprinted_after_a_save_is_not_speed_or_epoch_time() -> None:
    r = record(ordinary_log(reprint=True))
    assert r.steady_it_per_s == pytest.approx(4.0)
    assert r.epoch_elapsed_s == [5.0, 5.0]  # not the 17 s the re-print shows
    assert 1.15 not in r.speed_samples
    assert r.state == "completed"


def test_step_lines_give_tokens_per_second_and_loss() -> None:
    text = config() + "".join(
        f"Step {i} | loss:{2.5 - i * 0.1:.4f} lr:0.0003 tokens_per_second_per_gpu:{180 + i} grad_norm:1.2\n"
        for i in range(1, 6)
    )
    r = record(text)
    assert r.tokens_per_second_median == pytest.approx(183.5)  # first step (warm-up) left out
    assert r.loss[-1] == (5, pytest.approx(2.0))


def test_gb_sizes_in_memory_and_checkpoint_lines() -> None:
    text = ordinary_log().replace("allocation: 2.85 GiB", "allocation: 3.00 GB").replace("2.30 GiB", "2.00 GB")
    r = record(text)
    assert r.peak_memory_gib["alloc"] == pytest.approx(3.0e9 / 1024**3)
    assert r.checkpoint_gib_per_epoch() == pytest.approx(2.0e9 / 1024**3 + 0.04)


def test_bars_that_cannot_be_read_are_noted() -> None:
    # A bar format the parser does not know (rate without the bracket layout).
    text = config() + "".join(f"\rEpoch 1: {n}/20 at 4.00it/s]" for n in range(1, 21)) + "\n"
    r = record(text)
    assert r.steady_it_per_s is None
    assert any("progress bars present but none could be read" in p for p in r.problems)


def test_full_finetune_kind() -> None:
    r = record(config(recipe="FullFinetuneRecipeDistributed", component="torchtune.models.llama3_2.llama3_2_1b"))
    assert r.finetune_kind == "full"
