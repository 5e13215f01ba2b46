"""torchtune's ``lora_finetune_distributed`` recipe on CPU processes (the gloo backend).

The 0.6.1 recipe runs on CPU processes but for three calls, and this module runs that
same recipe with exactly those three changed (the single-device recipe already guards the
same calls with ``device.type != "cpu"``):

- ``recipe_main`` calls ``init_process_group("cuda:nccl,cpu:gloo")``; a CPU build of
  torch has no NCCL, so every rank dies with "Distributed package doesn't have NCCL
  built in". Here the process group is created on gloo alone.
- ``_setup_model`` logs memory stats on rank 0 unconditionally, and
  ``training.get_memory_stats`` raises "Logging memory stats is not supported on CPU
  devices". Here that one report is skipped on CPU (the recipe already turns its
  per-step peak-memory logging off on CPU itself).
- ``train`` starts with ``training.cleanup_before_training()``, which empties the device
  cache; ``torch.cpu`` has no ``empty_cache``. Here it only collects garbage on CPU. Plans whose processes are CPU processes (``device: cpu`` in local settings)
launch it in place of the built-in name::

    tune run --nproc_per_node 2 planner.torchtune.gloo_recipe --config finetune.yaml

``tune run`` starts a dotted name with ``python -m`` under torchrun, so this runs on the
compute node from the same installation that runs the job. Everything else (FSDP2
sharding, the sampler, checkpoints, log lines) is torchtune's own code.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

#: The torchtune recipe this module runs (a file beside the torchtune package).
UPSTREAM = "lora_finetune_distributed"


def _init_gloo(backend: str | None = None, **kwargs: Any) -> None:
    """``init_process_group`` with gloo only, whatever backend string the recipe names."""
    import torch.distributed as dist

    dist.init_process_group("gloo", **kwargs)


def load_upstream() -> ModuleType:
    """Load torchtune's recipe file as a module, as ``tune run`` finds it.

    torchtune installs its recipes as files in a ``recipes`` folder beside the package
    whose ``__init__`` refuses imports, so the file is loaded by path.
    """
    import torchtune

    path = Path(torchtune.__file__).parent.parent / "recipes" / f"{UPSTREAM}.py"
    spec = importlib.util.spec_from_file_location(UPSTREAM, path)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"torchtune's recipe {path} is missing; reinstall torchtune 0.6.1")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _skip_cpu_memory_stats(training: ModuleType) -> None:
    """Make the after-init memory report a no-op on CPU; CUDA devices report as before."""
    get_stats, log_stats = getattr(training, "get_memory_stats"), getattr(training, "log_memory_stats")

    def get_memory_stats(device: Any, *args: Any, **kwargs: Any) -> Any:
        return None if device.type == "cpu" else get_stats(device, *args, **kwargs)

    def log_memory_stats(stats: Any, *args: Any, **kwargs: Any) -> None:
        if stats is not None:
            log_stats(stats, *args, **kwargs)

    setattr(training, "get_memory_stats", get_memory_stats)
    setattr(training, "log_memory_stats", log_memory_stats)


def _cpu_cleanup(training: ModuleType) -> None:
    """``cleanup_before_training`` without the device-cache calls a CPU has no cache for."""
    import gc

    from torchtune.utils import get_torch_device_namespace

    cleanup = getattr(training, "cleanup_before_training")

    def cleanup_before_training() -> None:
        if hasattr(get_torch_device_namespace(), "empty_cache"):
            cleanup()
        else:
            gc.collect()

    setattr(training, "cleanup_before_training", cleanup_before_training)


def rank_line(env: dict[str, str], host: str) -> str:
    """The line each process writes first, so the log shows every rank and its host."""
    return (f"plan-experiment: rank {env.get('RANK', '0')} of {env.get('WORLD_SIZE', '1')} "
            f"(local rank {env.get('LOCAL_RANK', '0')}) on {host}")


def main() -> Any:
    """Run the upstream recipe's entry point (it parses ``--config`` and overrides itself)."""
    # One write: with PYTHONUNBUFFERED print would write the newline separately, and
    # processes on other nodes appending to the same log could land in between.
    sys.stdout.write(rank_line(dict(os.environ), socket.gethostname()) + "\n")
    sys.stdout.flush()
    upstream = load_upstream()
    # The recipe looks these names up in its own module globals at call time; this
    # process runs nothing but the recipe, so the change stays inside it.
    setattr(upstream, "init_process_group", _init_gloo)
    _skip_cpu_memory_stats(getattr(upstream, "training"))
    _cpu_cleanup(getattr(upstream, "training"))
    return getattr(upstream, "recipe_main")()


if __name__ == "__main__":
    sys.exit(main())
