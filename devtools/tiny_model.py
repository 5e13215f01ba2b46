"""Build a tiny Llama-2-architecture checkpoint in Hugging Face layout, in seconds.

The tiny model lets the whole pipeline (plan, train, evaluate) run for real on a
laptop or in CI without downloading anything: a random-init decoder of a few hundred
thousand parameters, a SentencePiece tokenizer trained on the task's own text, and
the files torchtune's ``FullModelHFCheckpointer`` (``model_type: LLAMA2``) loads.

A LoRA adapter on a frozen *random* base learns next to nothing, so the builder
first warms the base up with a short full fine-tune on the task's training examples.
LoRA runs on top of it then show measurable accuracy differences between settings.

Layout written to ``out_dir``::

    config.json              architectures: [LlamaForCausalLM]
    model.safetensors        Hugging Face key names (model.layers.N.self_attn.q_proj.weight ...)
    tokenizer.model          SentencePiece model
    tokenizer_config.json    bos/eos/unk tokens
    generation_config.json   bos/eos ids
    tiny_model.json          how it was built (seed, sizes, warm-up loss, timings)

Command line::

    python -m devtools.tiny_model --out DIR --dataset FILE
"""

from __future__ import annotations

import argparse
import io
import json
import random
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

# The chat template the llama2 tokenizer applies by default; the tokenizer must
# know these markers as ordinary text or they fall apart into unknown pieces.
_TEMPLATE_TEXT = ["[INST] <<SYS>>\n\n<</SYS>>\n\n [/INST]", "[INST]", "[/INST]", "<<SYS>>", "<</SYS>>"]
_ALPHABET = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;!?'\"()-_/\n"


@dataclass
class TinyModelInfo:
    """What :func:`build_tiny_model` produced.

    Attributes:
        out_dir: The checkpoint directory.
        num_params: Parameter count of the base model.
        vocab_size: Tokenizer vocabulary size (equals the model's).
        tokenizer_seconds: Time to train the tokenizer.
        warmup_seconds: Time of the warm-up full fine-tune.
        total_seconds: Whole build time.
        warmup_steps: Optimizer steps of the warm-up.
        warmup_loss_first: Mean loss of the first warm-up steps.
        warmup_loss_last: Mean loss of the last warm-up steps.
        config: The ``config.json`` contents.
    """

    out_dir: str
    num_params: int
    vocab_size: int
    tokenizer_seconds: float
    warmup_seconds: float
    total_seconds: float
    warmup_steps: int
    warmup_loss_first: float | None
    warmup_loss_last: float | None
    config: dict[str, Any] = field(default_factory=dict)


def train_tokenizer(
    corpus_texts: Iterable[str], out_path: Path, *, vocab_size: int = 128, seed: int = 0
) -> int:
    """Train a small SentencePiece BPE tokenizer and write it to ``out_path``.

    Args:
        corpus_texts: Text to learn pieces from (the task's inputs and outputs).
        out_path: Where the ``tokenizer.model`` goes.
        vocab_size: Upper bound on the vocabulary; a small corpus may give fewer.
        seed: Unused by BPE training on a full corpus (kept for a stable signature).

    Returns:
        The vocabulary size actually trained.
    """
    import sentencepiece as spm

    # Every character the chat template and the task may use, so encoding never
    # hits <unk> for a capital letter that happens to be rare in the corpus.
    lines = [t for t in corpus_texts if t.strip()]
    lines += _TEMPLATE_TEXT + [" ".join(_ALPHABET)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        vocab_size=vocab_size,
        model_type="bpe",
        character_coverage=1.0,
        hard_vocab_limit=False,
        # unk=0, bos=1, eos=2 as in Llama 2; torchtune sets pad=0 itself.
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        num_threads=1,
        minloglevel=2,
    )
    out_path.write_bytes(buf.getvalue())
    sp = spm.SentencePieceProcessor(model_proto=buf.getvalue())
    return int(sp.get_piece_size())


def hf_config(
    *,
    vocab_size: int,
    hidden_size: int,
    num_layers: int,
    num_heads: int,
    num_kv_heads: int,
    intermediate_size: int,
    max_position_embeddings: int,
) -> dict[str, Any]:
    """Return a Hugging Face ``config.json`` for a Llama-2-architecture model.

    Args:
        vocab_size: Vocabulary size.
        hidden_size: Embedding dimension.
        num_layers: Decoder layers.
        num_heads: Attention heads.
        num_kv_heads: Key/value heads (grouped-query attention when fewer than heads).
        intermediate_size: MLP hidden dimension.
        max_position_embeddings: Longest sequence.

    Returns:
        The config as a dict.
    """
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": vocab_size,
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_layers,
        "num_attention_heads": num_heads,
        "num_key_value_heads": num_kv_heads,
        "head_dim": hidden_size // num_heads,
        "max_position_embeddings": max_position_embeddings,
        "rms_norm_eps": 1e-5,
        # torchtune's llama2 builder hard-codes RoPE base 10000.
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "hidden_act": "silu",
        "tie_word_embeddings": False,
        "attention_bias": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }


def _encode_examples(tokenizer: Any, examples: Sequence[dict[str, str]], max_seq_len: int) -> list[tuple[list[int], list[int]]]:
    """Tokenize input/output records exactly like torchtune's ``instruct_dataset``.

    Returns pairs of (tokens, labels) with prompt positions set to the ignore index.
    """
    from torchtune.data import CROSS_ENTROPY_IGNORE_IDX, InputOutputToMessages

    to_messages = InputOutputToMessages(train_on_input=False)
    encoded = []
    for ex in examples:
        sample = tokenizer(to_messages({"input": ex["input"], "output": ex["output"]}))
        tokens = sample["tokens"][:max_seq_len]
        mask = sample["mask"][:max_seq_len]
        labels = [CROSS_ENTROPY_IGNORE_IDX if m else t for t, m in zip(tokens, mask)]
        encoded.append((tokens, labels))
    return encoded


def warm_up(
    model: Any,
    tokenizer: Any,
    examples: Sequence[dict[str, str]],
    *,
    steps: int,
    batch_size: int = 32,
    lr: float = 3e-3,
    max_seq_len: int = 256,
    seed: int = 0,
) -> tuple[float | None, float | None]:
    """Full fine-tune ``model`` in place on input/output examples for ``steps`` steps.

    Args:
        model: A torchtune ``TransformerDecoder``.
        tokenizer: The matching torchtune tokenizer (its prompt template is used).
        examples: ``{"input", "output"}`` records.
        steps: Optimizer steps.
        batch_size: Examples per step.
        lr: Peak learning rate (linear decay to 10%).
        max_seq_len: Truncation length.
        seed: Shuffling seed.

    Returns:
        Mean loss over the first and over the last ten steps (None when no steps ran).
    """
    import torch
    import torch.nn.functional as F
    from torchtune.data import CROSS_ENTROPY_IGNORE_IDX

    if steps <= 0 or not examples:
        return None, None
    encoded = _encode_examples(tokenizer, examples, max_seq_len)
    rng = random.Random(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0 - 0.9 * s / max(1, steps))
    pad_id = tokenizer.pad_id
    losses: list[float] = []
    order: list[int] = []
    model.train()
    for _ in range(steps):
        if len(order) < batch_size:
            fresh = list(range(len(encoded)))
            rng.shuffle(fresh)
            order += fresh
        batch = [encoded[i] for i in order[:batch_size]]
        del order[:batch_size]
        width = max(len(t) for t, _ in batch)
        tokens = torch.full((len(batch), width), pad_id, dtype=torch.long)
        labels = torch.full((len(batch), width), CROSS_ENTROPY_IGNORE_IDX, dtype=torch.long)
        for row, (t, lab) in enumerate(batch):
            tokens[row, : len(t)] = torch.tensor(t)
            labels[row, : len(lab)] = torch.tensor(lab)
        logits = model(tokens)
        # Predict token i+1 from position i, as torchtune's recipes do.
        loss = F.cross_entropy(
            logits[:, :-1].reshape(-1, logits.size(-1)),
            labels[:, 1:].reshape(-1),
            ignore_index=CROSS_ENTROPY_IGNORE_IDX,
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
    model.eval()
    head, tail = losses[:10], losses[-10:]
    return sum(head) / len(head), sum(tail) / len(tail)


def build_tiny_model(
    out_dir: str | Path,
    *,
    corpus_texts: Iterable[str],
    warmup_examples: Sequence[dict[str, str]] = (),
    seed: int = 0,
    vocab_size: int = 128,
    hidden_size: int = 64,
    num_layers: int = 2,
    num_heads: int = 4,
    num_kv_heads: int = 2,
    intermediate_size: int = 128,
    max_position_embeddings: int = 256,
    warmup_steps: int = 150,
    warmup_batch_size: int = 32,
    warmup_lr: float = 3e-3,
) -> TinyModelInfo:
    """Write a tiny Llama-2-architecture checkpoint in Hugging Face layout.

    Args:
        out_dir: Directory to create (or fill). Must not be where training output goes.
        corpus_texts: Text the SentencePiece tokenizer is trained on; pass the task's
            inputs and outputs so its pieces fit the task.
        warmup_examples: ``{"input", "output"}`` records for the warm-up full fine-tune
            (usually the train split). Empty: no warm-up, a purely random base.
        seed: Seed for weights, tokenizer and warm-up order.
        vocab_size: Upper bound of the tokenizer vocabulary.
        hidden_size: Embedding dimension.
        num_layers: Decoder layers.
        num_heads: Attention heads.
        num_kv_heads: Key/value heads.
        intermediate_size: MLP hidden dimension.
        max_position_embeddings: Longest sequence the model supports.
        warmup_steps: Optimizer steps of the warm-up. The default leaves the base
            part-trained (about 0.17 exact match on 8-letter capitalization): 100
            steps give a base that LoRA cannot move off 0, 300 one that has already
            learned most of the task.
        warmup_batch_size: Examples per warm-up step.
        warmup_lr: Peak warm-up learning rate.

    Returns:
        A :class:`TinyModelInfo` describing what was written.
    """
    import torch
    from safetensors.torch import save_file
    from torchtune.models.convert_weights import tune_to_hf
    from torchtune.models.llama2 import llama2, llama2_tokenizer

    started = time.perf_counter()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)

    t0 = time.perf_counter()
    actual_vocab = train_tokenizer(corpus_texts, out / "tokenizer.model", vocab_size=vocab_size, seed=seed)
    tokenizer_seconds = time.perf_counter() - t0

    config = hf_config(
        vocab_size=actual_vocab,
        hidden_size=hidden_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        intermediate_size=intermediate_size,
        max_position_embeddings=max_position_embeddings,
    )
    torch.manual_seed(seed)
    model = llama2(
        vocab_size=actual_vocab,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        embed_dim=hidden_size,
        max_seq_len=max_position_embeddings,
        intermediate_dim=intermediate_size,
        norm_eps=config["rms_norm_eps"],
    )
    # Default inits give logits far too peaked for a 64-wide model; small normal
    # weights make the first steps of the warm-up well behaved.
    for name, p in model.named_parameters():
        if p.dim() > 1:
            torch.nn.init.normal_(p, std=0.02)

    # The same tokenizer (and default Llama-2 chat template) the recipes use.
    tokenizer = llama2_tokenizer(str(out / "tokenizer.model"), max_seq_len=max_position_embeddings)
    t0 = time.perf_counter()
    # One thread: ops this small gain nothing from more, and on a busy machine
    # OpenMP threads contending for cores made the warm-up over ten times slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        loss_first, loss_last = warm_up(
            model,
            tokenizer,
            list(warmup_examples),
            steps=warmup_steps if warmup_examples else 0,
            batch_size=warmup_batch_size,
            lr=warmup_lr,
            max_seq_len=max_position_embeddings,
            seed=seed,
        )
    finally:
        torch.set_num_threads(threads)
    warmup_seconds = time.perf_counter() - t0

    state = {k: v.detach().contiguous().clone() for k, v in model.state_dict().items()}
    hf_state = tune_to_hf(state, num_heads=num_heads, num_kv_heads=num_kv_heads, dim=hidden_size)
    save_file(hf_state, str(out / "model.safetensors"), metadata={"format": "pt"})

    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    (out / "generation_config.json").write_text(
        json.dumps({"bos_token_id": 1, "eos_token_id": 2, "do_sample": False}, indent=2) + "\n"
    )
    (out / "tokenizer_config.json").write_text(
        json.dumps(
            {
                "tokenizer_class": "LlamaTokenizer",
                "bos_token": "<s>",
                "eos_token": "</s>",
                "unk_token": "<unk>",
                "add_bos_token": True,
                "add_eos_token": False,
                "model_max_length": max_position_embeddings,
            },
            indent=2,
        )
        + "\n"
    )
    num_params = sum(p.numel() for p in model.parameters())
    info = TinyModelInfo(
        out_dir=str(out),
        num_params=num_params,
        vocab_size=actual_vocab,
        tokenizer_seconds=round(tokenizer_seconds, 3),
        warmup_seconds=round(warmup_seconds, 3),
        total_seconds=round(time.perf_counter() - started, 3),
        warmup_steps=warmup_steps if warmup_examples else 0,
        warmup_loss_first=loss_first,
        warmup_loss_last=loss_last,
        config=config,
    )
    provenance = asdict(info)
    provenance.update(seed=seed, warmup_batch_size=warmup_batch_size, warmup_lr=warmup_lr)
    (out / "tiny_model.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return info


def corpus_from_dataset(data: dict[str, list[dict[str, str]]]) -> list[str]:
    """Return every input and output string of a three-split task dataset.

    Args:
        data: ``{"train": [...], "validation": [...], "test": [...]}``.

    Returns:
        The strings, split by split, input before output.
    """
    texts: list[str] = []
    for records in data.values():
        for rec in records:
            texts.extend(str(v) for v in rec.values())
    return texts


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point: build a tiny model for a task dataset.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description="Build a tiny Llama-2-architecture model in HF layout.")
    parser.add_argument("--out", required=True, help="checkpoint directory to write")
    parser.add_argument("--dataset", required=True, help="task JSON with train/validation/test splits")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--warmup-steps", type=int, default=150)
    parser.add_argument("--warmup-samples", type=int, default=None, help="cap on train records used to warm up")
    parser.add_argument("--hidden-size", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--vocab-size", type=int, default=128)
    args = parser.parse_args(argv)

    data = json.loads(Path(args.dataset).read_text(encoding="utf-8"))
    train = data.get("train") or []
    if args.warmup_samples is not None:
        train = train[: args.warmup_samples]
    info = build_tiny_model(
        args.out,
        corpus_texts=corpus_from_dataset(data),
        warmup_examples=train,
        seed=args.seed,
        vocab_size=args.vocab_size,
        hidden_size=args.hidden_size,
        num_layers=args.layers,
        warmup_steps=args.warmup_steps,
    )
    print(
        f"wrote {info.out_dir}: {info.num_params} parameters, vocab {info.vocab_size}, "
        f"warm-up {info.warmup_steps} steps loss {info.warmup_loss_first} -> {info.warmup_loss_last} "
        f"({info.warmup_seconds:.1f} s), total {info.total_seconds:.1f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
