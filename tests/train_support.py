"""Helpers for tests that train and evaluate for real on CPU (``@pytest.mark.train``).

Import from test modules (``from train_support import ...``); pytest puts this folder
on ``sys.path`` for them. The tiny model and its dataset are built once per test
session (a few seconds) and shared by every module through :func:`tiny_env`.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parent.parent
RECIPES = REPO / "recipes"
TASK_DIR = REPO / "tasks" / "capitalization"

SKIP_MESSAGE = (
    "torchtune is not importable: install the train extra "
    "(pip install torch, then pip install -e '.[train]')"
)

#: Settings that keep a CPU run to seconds. Tests add their own on top.
CPU_SETTINGS: dict[str, Any] = {
    "lora_rank": 8,
    "learning_rate": 1e-2,
    "batch_size": 8,
    "epochs": 1,
    "max_seq_len": 64,
    "num_warmup_steps": 0,
    "seed": 0,
    "device": "cpu",
    "dtype": "fp32",
}


def _under_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in {"true", "1"}


def torchtune_available() -> bool:
    """Return whether torch, torchtune (with its torchao) and sentencepiece import."""
    try:
        import sentencepiece  # noqa: F401
        import torchtune  # noqa: F401
        from torchtune import training  # noqa: F401  (imports torchao)
    except Exception:  # noqa: BLE001 - any import failure means "not usable"
        return False
    return True


def require_torchtune() -> None:
    """Skip the calling test when torchtune is not usable; fail instead under CI.

    CI installs the train extra, so a missing torchtune there is a broken setup and
    a silent skip would let every training test pass without running.
    """
    if torchtune_available():
        return
    if _under_ci():
        pytest.fail(f"{SKIP_MESSAGE} (CI=true: training tests are required)", pytrace=False)
    pytest.skip(SKIP_MESSAGE)


@dataclass(frozen=True)
class TinyEnv:
    """A tiny model and a capitalization dataset, built once per session.

    Attributes:
        root: Session folder holding everything below.
        model_dir: Hugging Face layout checkpoint of the tiny model.
        dataset_path: Capitalization JSON (train/validation/test).
        data: The dataset, parsed.
        build_info: What the builder reported (timings, warm-up loss).
    """

    root: Path
    model_dir: Path
    dataset_path: Path
    data: dict[str, list[dict[str, str]]]
    build_info: dict[str, Any]


_ENV: TinyEnv | None = None


def load_task_module(name: str) -> ModuleType:
    """Import ``tasks/capitalization/<name>.py`` by path (tasks are not a package)."""
    path = TASK_DIR / f"{name}.py"
    spec = importlib.util.spec_from_file_location(f"capitalization_{name}", path)
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def tiny_env(tmp_path_factory: pytest.TempPathFactory) -> TinyEnv:
    """Build (once per session) the tiny model and a 200-word dataset.

    Args:
        tmp_path_factory: pytest's session temp factory.

    Returns:
        The shared :class:`TinyEnv`.
    """
    global _ENV
    require_torchtune()
    if _ENV is not None:
        return _ENV
    from dataclasses import asdict

    from devtools.tiny_model import build_tiny_model, corpus_from_dataset

    root = tmp_path_factory.mktemp("tiny_env")
    generate = load_task_module("generate")
    data = generate.build_dataset(word_length=8, train_pct=80, count=200, seed=0)
    dataset_path = root / "words_8L_80P_200.json"
    dataset_path.write_text(json.dumps(data))
    info = build_tiny_model(
        root / "tiny-llama",
        corpus_texts=corpus_from_dataset(data),
        warmup_examples=data["train"],
        seed=0,
    )
    _ENV = TinyEnv(root=root, model_dir=root / "tiny-llama", dataset_path=dataset_path, data=data,
                   build_info=asdict(info))
    return _ENV


def render_run(env: TinyEnv, run_dir: Path, *, gpus: int = 1, nodes: int = 1, **settings: Any) -> Path:
    """Write ``run_dir/finetune.yaml`` for the tiny model, as the planner would.

    Args:
        env: The tiny environment.
        run_dir: The run folder (created).
        gpus: GPUs per node.
        nodes: Nodes.
        **settings: Run settings on top of :data:`CPU_SETTINGS`.

    Returns:
        The config path.
    """
    from planner.torchtune import recipes

    config = json.loads((env.model_dir / "config.json").read_text())
    shape = recipes.model_shape_from_config(config)
    files = sorted(os.listdir(env.model_dir))
    recipe = RECIPES / recipes.recipe_file_for(shape, gpus, nodes)
    cfg = recipes.finetune_config(
        recipe_text=recipe.read_text(),
        shape=shape,
        model_dir=str(env.model_dir),
        checkpoint_files=recipes.checkpoint_files(files),
        tokenizer_path=recipes.tokenizer_path(shape, str(env.model_dir), files),
        run_dir=str(run_dir),
        dataset_path=str(env.dataset_path),
        settings={**CPU_SETTINGS, **settings},
        gpus=gpus,
        nodes=nodes,
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "finetune.yaml"
    path.write_text(recipes.dump_config(cfg))
    return path


def tune_executable() -> str:
    """Return the ``tune`` next to this interpreter (the venv's), else the one on PATH."""
    beside = Path(sys.executable).with_name("tune")
    if beside.exists():
        return str(beside)
    found = shutil.which("tune")
    assert found, "torchtune's `tune` command is not on PATH"
    return found


def _child_env() -> dict[str, str]:
    """Environment for training/eval subprocesses: one OpenMP thread.

    The tiny model's ops are too small to gain from threads, and on a shared CI
    runner contending OpenMP threads slow a run down many times over.
    """
    return {**os.environ, "OMP_NUM_THREADS": "1"}


def train(config_path: Path, *, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    """Run the run's ``tune run`` command (from ``training_argv``) in a subprocess.

    Args:
        config_path: The run's ``finetune.yaml``.
        timeout: Seconds before the test fails.

    Returns:
        The completed process (stdout and stderr merged into ``stdout``).
    """
    from planner.torchtune.recipes import training_argv

    argv = training_argv(str(config_path), 1, 1)
    argv[0] = tune_executable()
    return _run_child(argv, config_path.parent, timeout, "training")


def _run_child(argv: list[str], cwd: Path, timeout: float, what: str) -> subprocess.CompletedProcess[str]:
    """Run a training or eval subprocess; fail with the tail of its output."""
    proc = subprocess.run(argv, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          timeout=timeout, check=False, env=_child_env())
    assert proc.returncode == 0, f"{what} failed ({proc.returncode}):\n{proc.stdout[-4000:]}"
    return proc


def render_eval(
    env: TinyEnv,
    run_dir: Path,
    *,
    epoch: int | None,
    name: str | None = None,
    limit: int | None = None,
    max_new_tokens: int = 16,
) -> Path:
    """Write ``run_dir/eval/<name>/eval_config.yaml`` for an epoch (or the base model).

    Args:
        env: The tiny environment.
        run_dir: The run folder holding ``finetune.yaml`` and ``epoch_N``.
        epoch: Epoch to evaluate; None evaluates the base model alone.
        name: Evaluation folder name (default ``capitalization[_epoch<N>]``).
        limit: Evaluate only the first N test examples.
        max_new_tokens: Generation budget.

    Returns:
        The config path.
    """
    from planner.torchtune import recipes

    ft = yaml.safe_load((run_dir / "finetune.yaml").read_text())
    name = name or ("capitalization" if epoch is None else f"capitalization_epoch{epoch}")
    out = run_dir / "eval" / name
    out.mkdir(parents=True, exist_ok=True)
    tok = ft["tokenizer"]
    cfg = recipes.eval_config(
        task="capitalization",
        run=run_dir.name,
        epoch=epoch,
        finetune_cfg=ft,
        adapter_dir=None if epoch is None else str(run_dir / f"epoch_{epoch}"),
        dataset_path=str(env.dataset_path),
        system_prompt=ft["dataset"].get("new_system_prompt") or "",
        prompt=tok.get("prompt"),
        results_path=str(out / "results.json"),
        max_new_tokens=max_new_tokens,
        limit=limit,
        device="cpu",
    )
    path = out / "eval_config.yaml"
    path.write_text(recipes.dump_config(cfg))
    return path


def run_eval(config_path: Path, *, in_process: bool = False, timeout: float = 300) -> dict[str, Any]:
    """Run ``tasks/capitalization/eval.py --config``; return results.json.

    Args:
        config_path: The evaluation's ``eval_config.yaml``.
        in_process: Call the script's ``main`` here instead of in a subprocess,
            which saves the seconds of importing torch again.
        timeout: Seconds before the test fails (subprocess only).

    Returns:
        The parsed ``results.json``.
    """
    if in_process:
        import torch

        torch.set_num_threads(1)  # as in _child_env; this is the test process
        status = load_task_module("eval").main(["--config", str(config_path)])
        assert status == 0, f"eval of {config_path} failed"
        return json.loads((config_path.parent / "results.json").read_text())
    _run_child([sys.executable, str(TASK_DIR / "eval.py"), "--config", str(config_path)], config_path.parent,
               timeout, "eval")
    return json.loads((config_path.parent / "results.json").read_text())
