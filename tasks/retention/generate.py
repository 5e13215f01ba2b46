"""Write the retention task's fixed evaluation set: short words to capitalize.

The shipped fine-tune trains on 5-letter words. This set holds 4-letter pseudo-words
(made by the capitalization generator with their own seed, so none is a training
word), which the warmed-up base model gets partly right and a 5-letter fine-tune has
no reason to improve: a drop against the base model is forgetting.

Only a ``test`` split is filled; ``train`` and ``validation`` are empty, so the file
keeps the three-split layout every task uses.

Examples:
    python tasks/retention/generate.py --out examples/capitalization/data/retention/
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

FILENAME = "retention_4L_50.json"


def _capitalization_generator() -> ModuleType:
    # The sibling task's generator makes the words; tasks are folders, not a package.
    path = Path(__file__).resolve().parent.parent / "capitalization" / "generate.py"
    spec = importlib.util.spec_from_file_location("capitalization_generate", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build(count: int = 50, word_length: int = 4, seed: int = 11) -> dict[str, list[dict[str, str]]]:
    """The dataset: ``count`` distinct words of ``word_length`` letters in the test split."""
    words = _capitalization_generator().make_words(count, word_length, seed=seed)
    return {"train": [], "validation": [], "test": [{"input": w, "output": w.capitalize()} for w in words]}


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point; returns the exit status."""
    parser = argparse.ArgumentParser(description="Write the retention task's evaluation set.")
    parser.add_argument("--out", required=True, type=Path, help="folder (or .json file) to write")
    parser.add_argument("--count", type=int, default=50)
    parser.add_argument("--word-length", type=int, default=4)
    parser.add_argument("--seed", type=int, default=11)
    args = parser.parse_args(argv)
    out = args.out if args.out.suffix == ".json" else args.out / FILENAME
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(build(args.count, args.word_length, args.seed), indent=1) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
