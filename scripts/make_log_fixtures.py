"""Record real torchtune training logs on CPU for the log-parser tests.

Builds the tiny Llama-2-architecture model (devtools.tiny_model), writes a
small capitalization dataset, and runs the real ``tune run lora_finetune_single_device``
with the project's recipe under a few configurations. stdout and stderr go to one
``slurm-<n>.out`` file each, as ``train.sh`` writes them under Slurm, so the progress
bar's ``\\r`` updates, the config dump and the checkpoint lines are exactly what
torchtune prints. Machine-specific paths are replaced by neutral placeholders.

Needs the train extra (torch, torchtune, torchao, sentencepiece). Run from the
repository root:

    python scripts/make_log_fixtures.py [--out tests/fixtures/logs/real]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RECIPE = REPO / "recipes" / "llama2_custom_lora_single_device.yaml"

# (job id, overrides): batch size, grad accumulation, epochs, cap on steps, packing.
RUNS: list[tuple[int, dict[str, object]]] = [
    (90001, {"batch_size": 4, "epochs": 2}),
    (90002, {"batch_size": 2, "gradient_accumulation_steps": 2, "epochs": 1}),
    (90003, {"batch_size": 8, "epochs": 3, "max_steps_per_epoch": 5}),
    (90004, {"batch_size": 4, "epochs": 1, "dataset.packed": True, "tokenizer.max_seq_len": 64}),
]


def make_dataset(path: Path, n_train: int = 96, seed: int = 0) -> dict[str, list[dict[str, str]]]:
    """A capitalization task: input word, output the word in capitals."""
    rnd = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"

    def word() -> str:
        return "".join(rnd.choice(letters) for _ in range(rnd.randrange(4, 9)))

    data = {
        split: [{"input": w, "output": w.upper()} for w in (word() for _ in range(n))]
        for split, n in (("train", n_train), ("validation", 16), ("test", 16))
    }
    path.write_text(json.dumps(data), encoding="utf-8")
    return data


def scrub(text: str, replacements: list[tuple[str, str]]) -> str:
    """Replace machine-specific paths so committed logs do not depend on where they ran."""
    for old, new in replacements:
        if old:
            text = text.replace(old, new)
    return text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "tests" / "fixtures" / "logs" / "real")
    parser.add_argument("--keep", action="store_true", help="keep the scratch folder")
    args = parser.parse_args(argv)

    sys.path.insert(0, str(REPO))
    from devtools.tiny_model import build_tiny_model, corpus_from_dataset

    tune = shutil.which("tune") or str(Path(sys.executable).with_name("tune"))
    scratch = Path(tempfile.mkdtemp(prefix="tt-fixtures-"))
    placeholder = "/scratch/user/tt-fixtures"
    replacements = [
        (str(scratch), placeholder),
        (sysconfig.get_paths()["purelib"], "/opt/venv/lib/site-packages"),
        (sys.prefix, "/opt/venv"),
        (str(REPO), "/repo"),
        (str(Path.home()), "/home/user"),
    ]
    try:
        data_path = scratch / "capitalization.json"
        data = make_dataset(data_path)
        model_dir = scratch / "tiny-llama"
        t0 = time.perf_counter()
        info = build_tiny_model(
            model_dir, corpus_texts=corpus_from_dataset(data), warmup_examples=data["train"], warmup_steps=20
        )
        print(f"tiny model: {info.num_params} parameters, vocab {info.vocab_size} ({time.perf_counter() - t0:.1f} s)")
        args.out.mkdir(parents=True, exist_ok=True)
        for job_id, overrides in RUNS:
            run_dir = scratch / f"run_{job_id}"
            settings: dict[str, object] = {
                "output_dir": str(run_dir),
                "checkpointer.checkpoint_dir": str(model_dir),
                "tokenizer.path": str(model_dir / "tokenizer.model"),
                "model.vocab_size": info.vocab_size,
                "dataset.data_files": str(data_path),
                "device": "cpu",
                "dtype": "fp32",
                "optimizer.fused": False,
                "seed": 0,
                **overrides,
            }
            argv_run = [tune, "run", "lora_finetune_single_device", "--config", str(RECIPE)]
            argv_run += [f"{k}={v}" for k, v in settings.items()]
            env = {**os.environ, "PYTHONUNBUFFERED": "1", "TQDM_DISABLE": ""}
            t1 = time.perf_counter()
            # One file for both streams, like train.sh's `2>&1 | tee`.
            proc = subprocess.run(argv_run, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=scratch)
            text = proc.stdout.decode("utf-8", "replace")
            status = "ok" if proc.returncode == 0 else f"exit {proc.returncode}"
            print(f"slurm-{job_id}.out: {status} in {time.perf_counter() - t1:.1f} s")
            if proc.returncode != 0:
                print(text[-3000:], file=sys.stderr)
                return 1
            (args.out / f"slurm-{job_id}.out").write_text(scrub(text, replacements), encoding="utf-8")
        manifest = {
            "generator": "scripts/make_log_fixtures.py",
            "tiny_model_params": info.num_params,
            "runs": {f"slurm-{j}.out": o for j, o in RUNS},
        }
        (args.out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n", encoding="utf-8")
    finally:
        if not args.keep:
            shutil.rmtree(scratch, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
