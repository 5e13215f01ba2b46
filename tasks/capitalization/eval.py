"""Evaluate a model on the capitalization task: exact match of generated words.

Usage::

    python tasks/capitalization/eval.py --config eval_config.yaml

The config (rendered by ``planner.torchtune.recipes.eval_config``) names the model
builder, the base checkpoint, the tokenizer node used in training, the adapter
folder (``epoch_N``; null for a base-model control), the dataset split, the prompt
and system prompt. The model is greedy-decoded with torchtune's generation
utilities, formatted exactly as in training, and ``results.json`` is written
into the evaluation folder (``results_path``), with every prediction in
``predictions.jsonl`` beside it. Exit status is non-zero on any failure, and no
``results.json`` is written then.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

RESULTS_FILE = "results.json"
PREDICTIONS_FILE = "predictions.jsonl"


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).astimezone().isoformat(timespec="seconds")


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def normalize(text: str) -> str:
    """Normalize a generation for comparison: surrounding whitespace only.

    Case is the point of the task, so it is kept.
    """
    return text.strip()


def load_examples(cfg: dict[str, Any]) -> list[dict[str, str]]:
    """Read the evaluated split, mapped to ``input``/``output`` and cut to ``limit``."""
    data = json.loads(Path(cfg["dataset_path"]).read_text(encoding="utf-8"))
    split = cfg.get("split", "test")
    if split not in data:
        raise KeyError(f"{cfg['dataset_path']} has no split {split!r} (has {sorted(data)})")
    cmap = cfg.get("column_map") or {"input": "input", "output": "output"}
    rows = [{"input": str(r[cmap["input"]]), "output": str(r[cmap["output"]])} for r in data[split]]
    limit = cfg.get("limit")
    return rows[: int(limit)] if limit is not None else rows


def build_model(cfg: Any, device: Any, dtype: Any) -> tuple[Any, str]:
    """Instantiate the model, load base weights and (optionally) the LoRA adapter.

    Returns:
        The model in eval mode and the path of the weights that define it (the
        adapter file, or the base checkpoint directory for a control).
    """
    import torch
    from torchtune import config as tt_config
    from torchtune import training

    with training.set_default_dtype(dtype), device:
        model = tt_config.instantiate(cfg.model)
    checkpointer = tt_config.instantiate(cfg.checkpointer)
    base_sd = checkpointer.load_checkpoint()[training.MODEL_KEY]
    adapter_dir = cfg.get("adapter_dir")
    if adapter_dir is None:
        model.load_state_dict(base_sd, strict=True)
        weights = str(cfg.checkpointer.checkpoint_dir)
    else:
        missing, unexpected = model.load_state_dict(base_sd, strict=False)
        if unexpected:
            raise RuntimeError(f"base checkpoint has keys the model lacks: {unexpected[:5]}")
        adapter_path = Path(adapter_dir) / cfg.get("adapter_file", "adapter_model.pt")
        adapter_sd = torch.load(adapter_path, map_location="cpu", weights_only=True)
        # Every parameter the base did not provide must come from the adapter, and
        # nothing else: a mismatch means the wrong adapter or builder.
        if set(missing) != set(adapter_sd):
            raise RuntimeError(
                f"adapter {adapter_path} does not fit the model: "
                f"missing {sorted(set(missing) - set(adapter_sd))[:5]}, "
                f"extra {sorted(set(adapter_sd) - set(missing))[:5]}"
            )
        model.load_state_dict(adapter_sd, strict=False)
        weights = str(adapter_path)
    model.to(device=device, dtype=dtype)
    model.eval()
    return model, weights


def prompt_tokens(tokenizer: Any, text: str, system_prompt: str) -> list[int]:
    """Tokenize one input the way training did, ending where the answer starts.

    Messages are built like torchtune's ``instruct_dataset`` (optional system
    message, the user's input) plus an empty assistant turn, then tokenized in
    inference mode as torchtune's generate recipe does, so the tokenizer's chat
    template and the run's prompt template apply exactly as in training.
    """
    from torchtune.data import Message

    messages = []
    if system_prompt:
        messages.append(Message(role="system", content=system_prompt, masked=True))
    messages.append(Message(role="user", content=text, masked=True))
    messages.append(Message(role="assistant", content=""))
    return tokenizer({"messages": messages}, inference=True)["tokens"]


def generate_batch(model: Any, tokenizer: Any, prompts: list[list[int]], *, max_new_tokens: int, device: Any, dtype: Any) -> list[str]:
    """Greedy-decode a batch of left-padded prompts; return decoded answers."""
    import torch
    from torchtune.generation import generate
    from torchtune.modules.common_utils import local_kv_cache

    pad_id = tokenizer.pad_id
    width = max(len(p) for p in prompts)
    batch = torch.full((len(prompts), width), pad_id, dtype=torch.long)
    for row, p in enumerate(prompts):
        batch[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
    batch = batch.to(device)
    stop = list(getattr(tokenizer, "stop_tokens", [tokenizer.eos_id]))
    with torch.inference_mode(), local_kv_cache(
        model, batch_size=len(prompts), device=device, dtype=dtype, decoder_max_seq_len=width + max_new_tokens
    ):
        out, _ = generate(
            model, batch, max_generated_tokens=max_new_tokens, pad_id=pad_id,
            temperature=0.0, top_k=None, stop_tokens=stop,
        )
    answers = []
    for row in out[:, width:].tolist():
        ids = []
        for t in row:
            if t in stop:
                break
            ids.append(t)
        answers.append(tokenizer.decode(ids))
    return answers


def evaluate(cfg_path: Path) -> dict[str, Any]:
    """Run the evaluation described by ``cfg_path`` and write its results.

    Returns:
        The results dict written to ``results.json``.
    """
    import torch
    from omegaconf import OmegaConf
    from torchtune import config as tt_config
    from torchtune import training

    started, t0 = _now(), time.perf_counter()
    cfg = OmegaConf.load(cfg_path)
    plain = OmegaConf.to_container(cfg, resolve=True)
    torch.manual_seed(int(plain.get("seed") or 0))
    device = torch.device(plain.get("device") or "cuda")
    dtype = {"bf16": torch.bfloat16, "fp32": torch.float32}[plain.get("dtype") or "bf16"]
    if device.type == "cpu":
        dtype = torch.float32

    examples = load_examples(plain)
    tokenizer = tt_config.instantiate(cfg.tokenizer)
    model, weights = build_model(cfg, device, dtype)

    system_prompt = plain.get("system_prompt") or ""
    batch_size = int(plain.get("batch_size") or 32)
    max_new = int(plain.get("max_new_tokens") or 32)
    predictions: list[str] = []
    # Sort by prompt length so batches need little padding; restore order after.
    encoded = [prompt_tokens(tokenizer, ex["input"], system_prompt) for ex in examples]
    order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
    by_index: dict[int, str] = {}
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        answers = generate_batch(model, tokenizer, [encoded[i] for i in idx], max_new_tokens=max_new, device=device, dtype=dtype)
        by_index.update(zip(idx, answers))
    predictions = [by_index[i] for i in range(len(examples))]

    records = []
    correct = 0
    for ex, pred in zip(examples, predictions):
        ok = normalize(pred) == normalize(ex["output"])
        correct += ok
        records.append({"input": ex["input"], "target": ex["output"], "prediction": pred, "correct": ok})
    n = len(records)
    accuracy = correct / n if n else 0.0

    results_path = Path(plain["results_path"])
    results_path.parent.mkdir(parents=True, exist_ok=True)
    adapter_dir = plain.get("adapter_dir")
    results = {
        "task": plain.get("task", "capitalization"),
        "run": plain.get("run"),
        "epoch": plain.get("epoch"),
        "model": plain.get("model_name"),
        "checkpoint": weights,
        "adapter_sha256": _sha256(Path(weights)) if adapter_dir is not None else None,
        "split": plain.get("split", "test"),
        "n": n,
        "n_correct": correct,
        "exact_match": accuracy,
        "accuracy": accuracy,
        "metrics": {"exact_match": accuracy},
        "system_prompt": system_prompt,
        "prompt": plain.get("prompt"),
        "max_new_tokens": max_new,
        "device": str(device),
        "examples": records[:10],
        "started": started,
        "finished": _now(),
        "duration_s": round(time.perf_counter() - t0, 3),
    }
    with (results_path.parent / PREDICTIONS_FILE).open("w", encoding="utf-8") as fh:
        for rec in records:
            fh.write(json.dumps(rec) + "\n")
    # Write-then-rename: a results.json that exists is always complete.
    tmp = results_path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
    os.replace(tmp, results_path)
    return results


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        0 on success, 1 on failure.
    """
    parser = argparse.ArgumentParser(description="Capitalization exact-match evaluation.")
    parser.add_argument("--config", required=True, type=Path, help="eval_config.yaml")
    args = parser.parse_args(argv)
    try:
        res = evaluate(args.config)
    except Exception as exc:  # noqa: BLE001 - any failure must give a non-zero exit
        import traceback

        traceback.print_exc()
        print(f"evaluation failed: {exc}", file=sys.stderr)
        return 1
    print(
        f"{res['task']} run={res['run']} epoch={res['epoch']}: exact_match={res['exact_match']:.4f} "
        f"({res['n_correct']}/{res['n']}) in {res['duration_s']:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
