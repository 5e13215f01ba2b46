"""Fault injection for the job scripts: CUDA out-of-memory on a machine without CUDA.

Set ``PLAN_EXPERIMENT_FAULT_OOM_ABOVE_BATCH=K`` in a training job's environment and the
training supervisor runs ``tune run ...`` through this module instead of the ``tune``
executable. The recipe then runs unchanged, in this process, except that a forward pass
over a batch of more than K examples raises ``torch.OutOfMemoryError`` with CUDA's
message, the error torchtune dies of when a GPU runs out of memory. Everything else
(the recipe, the config, the checkpoints) is real.

Run as ``python -m planner.jobs.fault_injection run RECIPE --config FILE [overrides]``.
"""

from __future__ import annotations

import os
import sys
from typing import Any

OOM_ENV = "PLAN_EXPERIMENT_FAULT_OOM_ABOVE_BATCH"


def oom_threshold(environ: dict[str, str] | os._Environ[str]) -> int | None:
    """The batch size above which a forward pass fails, when injection is switched on.

    Raises:
        ValueError: When the variable is set but is not a whole number >= 0.
    """
    raw = environ.get(OOM_ENV, "").strip()
    if not raw:
        return None
    if not raw.isdigit():
        raise ValueError(f"{OOM_ENV}={raw!r}: give a whole number (the largest batch that still fits), e.g. 2")
    return int(raw)


def install_oom_hook(limit: int) -> None:
    """Make every embedding lookup over more than ``limit`` sequences raise CUDA's OOM error."""
    import torch

    def hook(module: torch.nn.Module, args: tuple[Any, ...]) -> None:
        # The token embedding is the first module a decoder's forward calls, with the
        # [batch, sequence] token tensor: the one place that sees the real batch size.
        if not isinstance(module, torch.nn.Embedding) or not args:
            return
        tokens = args[0]
        if isinstance(tokens, torch.Tensor) and tokens.dim() == 2 and tokens.shape[0] > limit:
            raise torch.OutOfMemoryError(
                f"CUDA out of memory. Tried to allocate a batch of {tokens.shape[0]} sequences; "
                f"injected by {OOM_ENV}={limit}"
            )

    torch.nn.modules.module.register_module_forward_pre_hook(hook)


def main(argv: list[str] | None = None) -> int:
    """Install the hook, then run torchtune's ``tune`` command line in this process."""
    args = list(sys.argv[1:] if argv is None else argv)
    limit = oom_threshold(os.environ)
    if limit is not None:
        install_oom_hook(limit)
    from torchtune._cli.tune import main as tune_main

    sys.argv = ["tune", *args]
    result = tune_main()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
