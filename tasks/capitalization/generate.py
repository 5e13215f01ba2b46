"""Generate a capitalization dataset: lowercase word in, capitalized word out.

The output is one JSON file with three splits, the layout every task in this folder
uses and the planner's recipes read (``field: train`` / ``validation`` / ``test``)::

    {"train": [{"input": "parodize", "output": "Parodize"}, ...],
     "validation": [...],
     "test": [...]}

Words are built offline from a seeded random generator out of consonant-vowel
syllables, so they look word-like (which keeps tokenizers honest) and the same
arguments always give the same file. A real word list can be used instead with
``--words-file`` (one word per line).

Examples:
    python tasks/capitalization/generate.py --word-length 8 --train-pct 80 \
        --count 10000 --out words_8L_80P_10000.json
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

_ONSETS = (
    "b c d f g h j k l m n p r s t v w z "
    "bl br ch cl cr dr fl fr gl gr pl pr sc sh sk sl sm sn sp st sw th tr"
).split()
_VOWELS = "a e i o u a e i o ai ea ie oo ou".split()
_CODAS = ["", "", "", "n", "r", "s", "t", "l", "m", "nd", "st", "ck"]


def default_filename(word_length: int, train_pct: int, count: int) -> str:
    """Return the conventional file name, e.g. ``words_8L_80P_10000.json``.

    Args:
        word_length: Letters per word.
        train_pct: Percentage of words in the train split.
        count: Total number of words.

    Returns:
        The file name (no directory).
    """
    return f"words_{word_length}L_{train_pct}P_{count}.json"


def _pseudo_word(rng: random.Random, length: int) -> str:
    """Build one lowercase word of exactly ``length`` letters from syllables."""
    parts: list[str] = []
    while sum(map(len, parts)) < length:
        parts.append(rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS))
    return "".join(parts)[:length]


def make_words(
    count: int, word_length: int, *, seed: int = 0, pool: list[str] | None = None
) -> list[str]:
    """Return ``count`` distinct lowercase words of ``word_length`` letters.

    Args:
        count: How many words.
        word_length: Letters per word (at least 1).
        seed: Seed of the random generator; equal seeds give equal lists.
        pool: Optional real words to draw from instead of generating pseudo-words.

    Returns:
        The words, in random order.

    Raises:
        ValueError: If the arguments are out of range or the pool is too small.
    """
    if word_length < 1:
        raise ValueError(f"word length must be at least 1, got {word_length}")
    if count < 1:
        raise ValueError(f"count must be at least 1, got {count}")
    rng = random.Random(seed)
    if pool is not None:
        candidates = sorted(
            {w.strip().lower() for w in pool if len(w.strip()) == word_length and w.strip().isalpha()}
        )
        if len(candidates) < count:
            raise ValueError(
                f"word list has {len(candidates)} distinct {word_length}-letter words, "
                f"{count} requested"
            )
        return rng.sample(candidates, count)

    words: set[str] = set()
    ordered: list[str] = []
    # Bound the attempts: short lengths have few distinct pseudo-words.
    for _ in range(count * 200):
        word = _pseudo_word(rng, word_length)
        if word not in words:
            words.add(word)
            ordered.append(word)
            if len(ordered) == count:
                return ordered
    raise ValueError(
        f"could only make {len(ordered)} distinct {word_length}-letter words, {count} requested"
    )


def split_counts(count: int, train_pct: float) -> tuple[int, int, int]:
    """Split ``count`` into train / validation / test sizes.

    The train split gets ``train_pct`` percent; validation and test share the rest
    equally (test gets the odd one).

    Args:
        count: Total number of examples.
        train_pct: Percentage for the train split, in (0, 100].

    Returns:
        ``(n_train, n_validation, n_test)``.
    """
    if not 0 < train_pct <= 100:
        raise ValueError(f"train percentage must be in (0, 100], got {train_pct}")
    n_train = int(round(count * train_pct / 100))
    rest = count - n_train
    n_val = rest // 2
    return n_train, n_val, rest - n_val


def build_dataset(
    *,
    word_length: int,
    train_pct: float,
    count: int,
    seed: int = 0,
    pool: list[str] | None = None,
) -> dict[str, list[dict[str, str]]]:
    """Build the three-split capitalization dataset.

    Args:
        word_length: Letters per word.
        train_pct: Percentage of examples in the train split.
        count: Total number of examples.
        seed: Random seed.
        pool: Optional real word list.

    Returns:
        ``{"train": [...], "validation": [...], "test": [...]}`` of
        ``{"input": word, "output": Word}`` records.
    """
    words = make_words(count, word_length, seed=seed, pool=pool)
    n_train, n_val, _ = split_counts(count, train_pct)
    records = [{"input": w, "output": w[:1].upper() + w[1:]} for w in words]
    return {
        "train": records[:n_train],
        "validation": records[n_train : n_train + n_val],
        "test": records[n_train + n_val :],
    }


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point.

    Args:
        argv: Arguments (defaults to ``sys.argv[1:]``).

    Returns:
        The exit status.
    """
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--word-length", type=int, default=8)
    parser.add_argument("--train-pct", type=float, default=80)
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--out",
        default=None,
        help="output file or directory (default: words_<L>L_<P>P_<N>.json here)",
    )
    parser.add_argument("--words-file", default=None, help="optional word list, one per line")
    args = parser.parse_args(argv)

    pool = None
    if args.words_file:
        pool = Path(args.words_file).read_text(encoding="utf-8").splitlines()
    try:
        data = build_dataset(
            word_length=args.word_length,
            train_pct=args.train_pct,
            count=args.count,
            seed=args.seed,
            pool=pool,
        )
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2

    name = default_filename(args.word_length, int(args.train_pct), args.count)
    out = Path(args.out) if args.out else Path(name)
    if out.is_dir():
        out = out / name
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
    sizes = ", ".join(f"{k}={len(v)}" for k, v in data.items())
    print(f"wrote {out} ({sizes})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
