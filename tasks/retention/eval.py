"""Evaluate a model on the retention task: exact match of generated words.

Usage::

    python tasks/retention/eval.py --config eval_config.yaml

Scoring is the capitalization task's (exact match, case kept, surrounding whitespace
ignored), run on the retention set the config names; ``results.json`` and
``predictions.jsonl`` are written the same way. See ``tasks/capitalization/eval.py``.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType


def _capitalization_eval() -> ModuleType:
    # The sibling task's scoring and generation; tasks are folders, not a package.
    path = Path(__file__).resolve().parent.parent / "capitalization" / "eval.py"
    spec = importlib.util.spec_from_file_location("capitalization_eval", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


if __name__ == "__main__":
    sys.exit(_capitalization_eval().main())
