"""Generated bad input for `new`: specs, local settings, datasets, model folders and paths.

Every case must give a one-line error (no traceback), the documented exit code (2 for bad
settings, specs and command-line values; 3 for a model, dataset or disk the plan cannot
use) and leave no experiment folder and no hidden leftover anywhere near it.
"""

from __future__ import annotations

import copy
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import pytest
import yaml

from tests.conftest import EXAMPLE, ROOT, run_cli

SPEC: dict[str, Any] = yaml.safe_load((EXAMPLE / "experiment.yaml").read_text())
SETTINGS_TEXT = (EXAMPLE / "claude.local.md").read_text()
SETTINGS_YAML: dict[str, Any] = {
    **yaml.safe_load(SETTINGS_TEXT.split("```yaml\n")[1].split("```")[0]),
    "experiments_dir": "experiments",  # inside each case's own folder
    "scratch_dir": "experiments",
}
CONFIG_JSON: dict[str, Any] = json.loads((EXAMPLE / "models" / "tiny-llama-cap" / "config.json").read_text())
DATASET: dict[str, Any] = json.loads((EXAMPLE / "data" / "words_5L_80P_500.json").read_text())

BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [" + ", ".join([f"*{chr(97 + i)}"] * 9) + "]\n" for i in range(8)
)
DEEP_FLOW = "[" * 5000 + "]" * 5000
DEEP_BLOCK = "".join(" " * i + f"k{i}:\n" for i in range(300)) + " " * 300 + "v\n"
DEEP_JSON = "[" * 100_000 + "]" * 100_000
NOT_UTF8 = b"name: caf\xe9\nmodels: [x]\n"


UNSET = object()


@dataclass
class Case:
    """One bad input: what to change, and the exit code the user must get."""

    id: str
    code: int
    spec: Any = None  # a dict (dumped as YAML), str or bytes; None keeps the example spec
    settings: Any = None  # the yaml block as a dict, or the whole claude.local.md as str/bytes
    dataset: Any = UNSET  # JSON-able data, or str/bytes for the whole file
    config: Any = UNSET  # config.json: JSON-able, or str/bytes
    args: Callable[[Path], list[str]] = field(default=lambda root: [])
    setup: Callable[[Path], None] = field(default=lambda root: None)
    spec_arg: Callable[[Path], str] | None = None


def _changed(base: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A deep copy of ``base`` with ``a__b=value`` set at ``base[a][b]`` (DROP removes it)."""
    data = copy.deepcopy(base)
    for dotted, value in changes.items():
        keys = dotted.split("__")
        node = data
        for k in keys[:-1]:
            node = node.setdefault(k, {})
        if value is DROP:
            node.pop(keys[-1], None)
        else:
            node[keys[-1]] = value
    return data


def with_spec(**changes: Any) -> dict[str, Any]:
    return _changed(SPEC, changes)


def with_settings(**changes: Any) -> dict[str, Any]:
    return _changed(SETTINGS_YAML, changes)


DROP = object()
BAD_NUMBERS: list[Any] = [float("nan"), float("inf"), float("-inf"), "x", True, [], {}, None, -1, 0]
SPEC_CASES: list[Case] = []


def spec_case(id: str, spec: Any, code: int = 2) -> None:
    SPEC_CASES.append(Case(id=f"spec-{id}", code=code, spec=spec))


# Whole-file problems.
spec_case("not-utf8", NOT_UTF8)
spec_case("utf16", "name: x\n".encode("utf-16"))
spec_case("binary", bytes(range(256)))
spec_case("empty", "")
spec_case("only-comment", "# nothing\n")
spec_case("invalid-yaml", "name: [unclosed\n")
spec_case("tab-indent", "name: x\n\tmodels: [a]\n")
spec_case("top-list", "- a\n- b\n")
spec_case("top-scalar", "hello\n")
spec_case("top-null", "null\n")
spec_case("deep-flow", DEEP_FLOW)
spec_case("deep-block", DEEP_BLOCK)
spec_case("deep-in-controls", yaml.safe_dump(SPEC)[:-1] + "\nquestion: " + "[" * 3000 + "]" * 3000 + "\n")
spec_case("alias-bomb", BOMB)
spec_case("alias-bomb-in-factors", "name: x\nmodels: [m]\ndataset: {path: d.json}\n" + BOMB.replace("\n", "\n  ").join(["factors:\n  ", "lora_rank: *i\n"]))
spec_case("python-tag", "name: !!python/object/apply:os.system ['true']\n")
spec_case("duplicate-top-key", yaml.safe_dump(SPEC) + "name: other\n")
spec_case("duplicate-control", "name: x\nmodels: [tiny-llama-cap]\ndataset: {path: words_5L_80P_500.json}\ncontrols: {epochs: 1, epochs: 2}\n")
spec_case("duplicate-factor", "name: x\nmodels: [tiny-llama-cap]\ndataset: {path: words_5L_80P_500.json}\nfactors:\n  lora_rank: [4]\n  lora_rank: [8]\n")
spec_case("duplicate-resources", "name: x\nmodels: [tiny-llama-cap]\ndataset: {path: words_5L_80P_500.json}\nresources: {gpus: 0, gpus: 1}\n")
spec_case("nan-text", yaml.safe_dump(with_spec(controls={"epochs": 1})) .replace("epochs: 1", "learning_rate: .nan"))
spec_case("inf-text-factor", "name: x\nmodels: [tiny-llama-cap]\ndataset: {path: words_5L_80P_500.json}\nfactors: {learning_rate: [1e-4, .inf]}\n")
spec_case("overflow-float", "name: x\nmodels: [tiny-llama-cap]\ndataset: {path: words_5L_80P_500.json}\ncontrols: {learning_rate: 1e999}\n")
spec_case("overflow-float-dot", "name: x\nmodels: [tiny-llama-cap]\ndataset: {path: words_5L_80P_500.json}\ncontrols: {weight_decay: 1.0e999}\n")

# Top-level keys.
for key in ("name", "models", "dataset"):
    spec_case(f"missing-{key}", with_spec(**{key: DROP}))
spec_case("unknown-key", with_spec(modles=["x"]))
for i, bad in enumerate([None, 1, 1.5, True, [], {}, "", "   ", "a/b", ".", "..", "a\nb", "\x00", "x" * 231, "é" * 116, "x" * 5000]):
    spec_case(f"name-{i}", with_spec(name=bad))
for i, bad in enumerate([None, "tiny-llama-cap", [], [1], [None], ["", "x"], ["tiny-llama-cap", "tiny-llama-cap"], ["a\nb"], {"a": 1}]):
    spec_case(f"models-{i}", with_spec(models=bad))
for i, bad in enumerate([None, "words.json", [], {"path": None}, {"path": 1}, {"path": "x", "extra": 1}, {}, {"path": "x", "input_column": 1}]):
    spec_case(f"dataset-{i}", with_spec(dataset=bad))
for i, bad in enumerate([1, True, [], {"a": 1}]):
    spec_case(f"question-{i}", with_spec(question=bad))
for i, bad in enumerate(["yes", 1, 0, None, "true", []]):
    spec_case(f"base-controls-{i}", with_spec(base_model_controls=bad))
for i, bad in enumerate([[], None, "42", [1.5], ["a"], [True], [1, 1], {"seeds": []}, {"seeds": [1, 1]},
                         {"seeds": ["1"]}, {"seeds": [1.0]}, {"seeds": [True]}, {"seeds": None}, {"seeeds": [1]}]):
    spec_case(f"replicates-{i}", with_spec(replicates=bad))

# Every knob, as a control, with every kind of bad value that is bad for it.
KNOB_BAD: dict[str, list[Any]] = {
    "lora_rank": [0, -1, 1.5, "4", True, None, float("nan"), [], {}],
    "lora_alpha": [0, -1, "x", True, float("nan"), float("inf"), [], {}],
    "lora_dropout": [-0.1, 1, 1.5, "x", True, float("nan"), float("inf")],
    "learning_rate": [0, -1e-4, "x", "1e-4x", True, float("nan"), float("inf"), float("-inf"), None, []],
    "batch_size": [0, -1, 1.5, "8", True, float("nan"), None],
    "gradient_accumulation_steps": [0, -1, 2.5, "2", True],
    "epochs": [0, -1, 1.5, "2", True, float("nan"), None],
    "train_samples": [0, -1, 1.5, "10", True],
    "max_seq_len": [0, -1, 1.5, "64", True, None],
    "packed": ["yes", 1, 0, None, "true"],
    "weight_decay": [-0.1, "x", True, float("nan"), float("inf"), None],
    "num_warmup_steps": [-1, 1.5, "5", True, None],
    "max_steps_per_epoch": [0, -1, 1.5, "5", True],
    "system_prompt": [1, None, [], True],
    "prompt": ["no placeholder", 1, None, []],
}
for knob, values in KNOB_BAD.items():
    for i, bad in enumerate(values):
        spec_case(f"control-{knob}-{i}", with_spec(controls={knob: bad}))
for knob in ("learning_rate", "lora_rank", "lora_alpha", "weight_decay", "epochs", "batch_size"):
    spec_case(f"factor-{knob}-nan", with_spec(**{"factors": {knob: [float("nan")]}, "controls": {"epochs": 1}}))
    spec_case(f"factor-{knob}-empty", with_spec(factors={knob: []}))
    spec_case(f"factor-{knob}-scalar", with_spec(factors={knob: 4}))
    spec_case(f"paired-{knob}-inf", with_spec(factors={}, paired={knob: [float("inf"), 1]}))
spec_case("factor-unknown", with_spec(factors={"lora_rnk": [4]}))
spec_case("factor-dup-level", with_spec(factors={"lora_rank": [4, 4]}))
spec_case("factor-and-control", with_spec(factors={"lora_rank": [4]}, controls={"lora_rank": 8}))
spec_case("factors-list", with_spec(factors=[4, 16]))
spec_case("paired-uneven", with_spec(factors={}, paired={"lora_rank": [4, 8], "learning_rate": [1e-4]}))
spec_case("paired-and-factor", with_spec(factors={"lora_rank": [4]}, paired={"lora_rank": [8]}))
spec_case("controls-list", with_spec(controls=[1, 2]))
spec_case("control-unknown", with_spec(controls={"epocs": 2}))

# Evaluation.
for i, bad in enumerate([[True], ["0"], [-1], [], "first", [1.0], [0, "1"], [99], None, {"a": 1}, [False]]):
    spec_case(f"eval-epochs-{i}", with_spec(evaluation__epochs=bad))
TASK = {"name": "capitalization", "script": "tasks/capitalization/eval.py"}
for i, bad in enumerate([{**TASK, "name": "a/b"}, {**TASK, "name": ""}, {**TASK, "name": ".."}, {**TASK, "name": "a\nb"},
                         {**TASK, "name": None}, {"name": "x"}, {**TASK, "limit": 0}, {**TASK, "limit": -1},
                         {**TASK, "limit": "10"}, {**TASK, "max_new_tokens": 0}, {**TASK, "split": 1},
                         {**TASK, "runs": "all"}, {**TASK, "base_model": "yes"}, {**TASK, "extra": 1}, "capitalization",
                         {**TASK, "name": "t" * 300}, {**TASK, "limit": float("nan")}]):
    spec_case(f"task-{i}", with_spec(evaluation__tasks=[bad]))
spec_case("task-dup", with_spec(evaluation__tasks=[TASK, TASK]))
spec_case("tasks-not-list", with_spec(evaluation__tasks=TASK))
spec_case("evaluation-unknown", with_spec(evaluation__epoch="all"))

# Resources.
RES_BAD: dict[str, list[Any]] = {
    "gpus": [-1, "x", 1.5, True, None, float("nan")],
    "nodes": [0, -1, "2", 1.5, True],
    # null is "not given" (claude.local.md then auto decide: docs/spec.md, Time limits), so not bad input.
    "time": ["99:99:99", "", "lots", "0", "1-25:00:00", "00:60:00", "00:00:60", "1:2:3:4", "-1", 30, "02:00:00\n#"],
    "eval_time": ["99:99:99", "", "never", 10],
    "mem": ["lots", "", "-1G", "1.5.5G", "32X", 32, "32G\n#SBATCH --x"],
    "cpus_per_task": [0, -1, "4", 1.5, True],
    "array_parallelism": [0, -1, "4", True],
    "account": [1, [], True],
    "partition": [1, {}],
}
for key, values in RES_BAD.items():
    for i, bad in enumerate(values):
        spec_case(f"resources-{key}-{i}", with_spec(**{f"resources__{key}": bad}))
spec_case("resources-multinode-cpu", with_spec(resources={"gpus": 0, "nodes": 2}))
spec_case("resources-unknown", with_spec(resources={"gpu": 1}))

# Size limits: refused early, before expansion.
spec_case("grid-1M", with_spec(factors={"lora_rank": list(range(1, 101)), "learning_rate": [i * 1e-5 for i in range(1, 101)]},
                              replicates={"seeds": list(range(100))}, controls={"epochs": 1}))
spec_case("epochs-1e9-all", with_spec(controls={"epochs": 1_000_000_000}, evaluation__epochs="all"))
spec_case("epochs-1e9-factor-all", with_spec(factors={"epochs": [1, 1_000_000_000]}, controls={}, evaluation__epochs="all"))
spec_case("seeds-100k", with_spec(replicates={"seeds": list(range(100_000))}))

# Local settings (claude.local.md).
SETTINGS_CASES: list[Case] = []


def settings_case(id: str, settings: Any) -> None:
    SETTINGS_CASES.append(Case(id=f"settings-{id}", code=2, settings=settings))


settings_case("not-utf8", b"# caf\xe9\n" + SETTINGS_TEXT.encode())
settings_case("no-block", "just prose\n")
settings_case("two-blocks", SETTINGS_TEXT + "\n```yaml\na: 1\n```\n")
settings_case("invalid-yaml", "```yaml\nmodels_dir: [\n```\n")
settings_case("list", "```yaml\n- a\n```\n")
settings_case("scalar", "```yaml\nhello\n```\n")
settings_case("empty-block", "```yaml\n```\n")
settings_case("duplicate-key", SETTINGS_TEXT.replace("models_dir: models", "models_dir: models\nmodels_dir: other"))
settings_case("duplicate-nested", SETTINGS_TEXT.replace("  mem: 2G", "  mem: 2G\n  mem: 4G"))
settings_case("deep", "```yaml\n" + DEEP_BLOCK + "```\n")
settings_case("deep-flow", "```yaml\nx: " + "[" * 3000 + "]" * 3000 + "\n```\n")
settings_case("bomb", "```yaml\n" + BOMB + "```\n")
settings_case("python-tag", "```yaml\nmodels_dir: !!python/object/apply:os.system ['true']\n```\n")
for key in ("models_dir", "experiments_dir", "scratch_dir", "datasets_dir"):
    settings_case(f"missing-{key}", with_settings(**{key: DROP}))
    settings_case(f"{key}-int", with_settings(**{key: 1}))
    settings_case(f"{key}-null", with_settings(**{key: None}))
settings_case("unknown-key", with_settings(model_dir="x"))
settings_case("unknown-slurm-key", with_settings(slurm__acount="x"))
for i, bad in enumerate([float("nan"), float("inf"), -1, 0, "x", True, None, "80"]):
    settings_case(f"gpu-memory-{i}", with_settings(gpu_memory_gib=bad))
SLURM_BAD: dict[str, list[Any]] = {
    "time": ["99:99:99", "", "lots", "00:60:00", None, 15, "01:00:00\ntouch x"],
    "eval_time": ["99:99:99", "", "x"],
    "mem": ["lots", "", "-2G", "2GG", 2, "2G\n#"],
    "cpus_per_task": [0, -1, "1", 1.5, True],
    "gpus_per_node": [-1, "1", 1.5, True],
    "array_parallelism": [0, -1, "4", True],
    "account": [1, []],
}
for key, values in SLURM_BAD.items():
    for i, bad in enumerate(values):
        settings_case(f"slurm-{key}-{i}", with_settings(**{f"slurm__{key}": bad}))
settings_case("slurm-list", with_settings(slurm=[1]))
settings_case("environment-str", with_settings(environment="module load x"))
settings_case("environment-setup-str", with_settings(environment={"setup": "module load x"}))
settings_case("environment-setup-ints", with_settings(environment={"setup": [1, 2]}))
settings_case("limits-bad", with_settings(limits={"max_runs": 0}))
settings_case("limits-unknown", with_settings(limits={"max_rns": 10}))

# Datasets: the plan cannot use them (exit 3).
DATASET_CASES: list[Case] = []


def dataset_case(id: str, data: Any) -> None:
    DATASET_CASES.append(Case(id=f"dataset-{id}", code=3, dataset=data))


dataset_case("not-utf8", b'{"train": ["caf\xe9"]}')
dataset_case("empty-file", "")
dataset_case("invalid-json", '{"train": [')
dataset_case("deep-json", DEEP_JSON)
dataset_case("deep-json-in-train", '{"train": ' + "[" * 100_000 + "]" * 100_000 + "}")
dataset_case("list", [1, 2])
dataset_case("null", None)
dataset_case("string", "text")
dataset_case("number", 3)
dataset_case("no-splits", {"data": []})
dataset_case("missing-test", {"train": DATASET["train"], "validation": DATASET["validation"]})
dataset_case("train-not-list", {**DATASET, "train": {"a": 1}})
dataset_case("train-empty", {**DATASET, "train": []})
dataset_case("train-rows-strings", {**DATASET, "train": ["a", "b"]})
dataset_case("train-rows-null", {**DATASET, "train": [None]})
dataset_case("train-missing-column", {**DATASET, "train": [{"input": "a"}]})
dataset_case("train-wrong-columns", {**DATASET, "train": [{"in": "a", "out": "b"}]})
dataset_case("validation-null", {**DATASET, "validation": None})
dataset_case("test-string", {**DATASET, "test": "x"})
dataset_case("nan-literal", '{"train": [NaN], "validation": [], "test": []}')
DATASET_CASES.append(Case(id="dataset-is-folder", code=3, setup=lambda root: (root / "ex" / "data" / "bad.json").mkdir(parents=True)))
DATASET_CASES.append(Case(id="dataset-missing", code=3, spec=with_spec(dataset={"path": "absent.json"})))
DATASET_CASES.append(Case(id="dataset-symlink-loop", code=3, spec=with_spec(dataset={"path": "loop.json"}),
                          setup=lambda root: (root / "ex" / "data" / "loop.json").symlink_to(root / "ex" / "data" / "loop.json")))

# Model folders (config.json and friends): exit 3.
MODEL_CASES: list[Case] = []


def model_case(id: str, config: Any) -> None:
    MODEL_CASES.append(Case(id=f"model-{id}", code=3, config=config))


model_case("config-not-utf8", b'{"architectures": ["Llama\xffForCausalLM"]}')
model_case("config-empty", "")
model_case("config-invalid", "{")
model_case("config-deep", DEEP_JSON)
model_case("config-list", [CONFIG_JSON])
model_case("config-null", None)
model_case("config-string", "llama")
model_case("config-number", 7)
model_case("config-no-arch", {k: v for k, v in CONFIG_JSON.items() if k not in ("architectures", "model_type")})
model_case("config-unknown-arch", {**CONFIG_JSON, "architectures": ["GPT2LMHeadModel"]})
model_case("config-arch-string", {**CONFIG_JSON, "architectures": "LlamaForCausalLM"})
model_case("config-arch-int", {**CONFIG_JSON, "architectures": [1]})
model_case("config-arch-dict", {**CONFIG_JSON, "architectures": {"a": 1}})
for key in ("hidden_size", "num_hidden_layers", "num_attention_heads", "intermediate_size", "vocab_size"):
    for i, bad in enumerate([None, "x", 0, -1, 1.5, True, [], DROP]):
        cfg = {k: v for k, v in CONFIG_JSON.items() if not (bad is DROP and k == key)}
        if bad is not DROP:
            cfg[key] = bad
        model_case(f"config-{key}-{i}", cfg)
for key in ("num_key_value_heads", "head_dim", "max_position_embeddings", "rope_theta", "rms_norm_eps"):
    for i, bad in enumerate(["x", -1, [], {}]):
        model_case(f"config-{key}-{i}", {**CONFIG_JSON, key: bad})
model_case("config-rope-scaling-list", {**CONFIG_JSON, "rope_scaling": [1]})
model_case("config-rope-scaling-str", {**CONFIG_JSON, "rope_scaling": "llama3"})
model_case("config-heads-not-dividing", {**CONFIG_JSON, "num_attention_heads": 7})
MODEL_CASES.append(Case(id="model-missing", code=3, spec=with_spec(models=["no-such-model"])))
MODEL_CASES.append(Case(id="model-no-config", code=3, setup=lambda root: (root / "ex" / "models" / "bad" / "config.json").unlink()))
MODEL_CASES.append(Case(id="model-config-folder", code=3, setup=lambda root: _replace_with_dir(root / "ex" / "models" / "bad" / "config.json")))
MODEL_CASES.append(Case(id="model-no-tokenizer", code=3, setup=lambda root: (root / "ex" / "models" / "bad" / "tokenizer.model").unlink()))
MODEL_CASES.append(Case(id="model-no-weights", code=3, setup=lambda root: (root / "ex" / "models" / "bad" / "model.safetensors").unlink()))
MODEL_CASES.append(Case(id="model-is-file", code=3, spec=with_spec(models=["afile"]),
                        setup=lambda root: (root / "ex" / "models" / "afile").write_text("x")))
MODEL_CASES.append(Case(id="model-symlink-loop", code=3, spec=with_spec(models=["loop"]),
                        setup=lambda root: (root / "ex" / "models" / "loop").symlink_to(root / "ex" / "models" / "loop")))
MODEL_CASES.append(Case(id="model-config-loop", code=3,
                        setup=lambda root: _replace_with_loop(root / "ex" / "models" / "bad" / "config.json")))


def _replace_with_dir(path: Path) -> None:
    path.unlink()
    path.mkdir()


def _replace_with_loop(path: Path) -> None:
    path.unlink()
    path.symlink_to(path)


# Command-line paths.
PATH_CASES: list[Case] = [
    Case(id="out-is-file", code=2, args=lambda root: ["--out", str(root / "afile")], setup=lambda root: (root / "afile").write_text("x")),
    Case(id="out-under-file", code=2, args=lambda root: ["--out", str(root / "afile" / "sub")], setup=lambda root: (root / "afile").write_text("x")),
    Case(id="out-in-proc", code=2, args=lambda root: ["--out", "/proc/plan-experiment-test"]),
    Case(id="out-in-proc-self", code=2, args=lambda root: ["--out", "/proc/self"]),
    Case(id="out-symlink-loop", code=2, args=lambda root: ["--out", str(root / "loop")], setup=lambda root: (root / "loop").symlink_to(root / "loop")),
    Case(id="out-under-symlink-loop", code=2, args=lambda root: ["--out", str(root / "loop" / "x")], setup=lambda root: (root / "loop").symlink_to(root / "loop")),
    Case(id="spec-symlink-loop", code=2, spec_arg=lambda root: str(root / "loop.yaml"), setup=lambda root: (root / "loop.yaml").symlink_to(root / "loop.yaml")),
    Case(id="spec-folder", code=2, spec_arg=lambda root: str(root)),
    Case(id="spec-missing", code=2, spec_arg=lambda root: str(root / "absent.yaml")),
    Case(id="spec-under-file", code=2, spec_arg=lambda root: str(root / "afile" / "x.yaml"), setup=lambda root: (root / "afile").write_text("x")),
    Case(id="local-config-folder", code=2, args=lambda root: ["--local-config", str(root)]),
    Case(id="local-config-loop", code=2, args=lambda root: ["--local-config", str(root / "l.md")], setup=lambda root: (root / "l.md").symlink_to(root / "l.md")),
]


ALL_CASES = SPEC_CASES + SETTINGS_CASES + DATASET_CASES + MODEL_CASES + PATH_CASES


def test_the_suite_is_large() -> None:
    assert len(ALL_CASES) >= 250, len(ALL_CASES)
    assert len({c.id for c in ALL_CASES}) == len(ALL_CASES)


def _write(path: Path, content: Any, as_yaml: bool) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(content, bytes):
        path.write_bytes(content)
    elif isinstance(content, str):
        path.write_text(content, encoding="utf-8")
    elif as_yaml:
        path.write_text(yaml.safe_dump(content, sort_keys=False, allow_unicode=True), encoding="utf-8")
    else:
        path.write_text(json.dumps(content), encoding="utf-8")


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One copy of the example with small stand-ins; each case gets a cheap clone of it."""
    root = tmp_path_factory.mktemp("template")
    ex = root / "ex"
    (ex / "models" / "tiny-llama-cap").mkdir(parents=True)
    for f in (EXAMPLE / "models" / "tiny-llama-cap").iterdir():
        (ex / "models" / "tiny-llama-cap" / f.name).symlink_to(f)
    (ex / "data").mkdir()
    (ex / "data" / "words_5L_80P_500.json").symlink_to(EXAMPLE / "data" / "words_5L_80P_500.json")
    return root


def prepare_case(case: Case, template: Path, root: Path) -> tuple[list[str], Path]:
    ex = root / "ex"
    (ex / "models").mkdir(parents=True)
    (ex / "data").mkdir()
    for f in (template / "ex" / "models" / "tiny-llama-cap").iterdir():
        (ex / "models" / "tiny-llama-cap").mkdir(exist_ok=True)
        (ex / "models" / "tiny-llama-cap" / f.name).symlink_to(f.resolve())
    (ex / "data" / "words_5L_80P_500.json").symlink_to((template / "ex" / "data" / "words_5L_80P_500.json").resolve())
    spec = copy.deepcopy(SPEC) if case.spec is None else case.spec
    if case.config is not UNSET or case.id.startswith("model-config") or case.id in ("model-no-config", "model-no-weights", "model-no-tokenizer"):
        bad = ex / "models" / "bad"
        bad.mkdir()
        (bad / "model.safetensors").write_bytes(b"0" * 16)
        (bad / "tokenizer.model").symlink_to((EXAMPLE / "models" / "tiny-llama-cap" / "tokenizer.model").resolve())
        _write(bad / "config.json", CONFIG_JSON if case.config is UNSET else case.config, as_yaml=False)
        if isinstance(spec, dict):
            spec = {**spec, "models": ["bad"]}
    if case.dataset is not UNSET or case.id == "dataset-is-folder":
        if case.dataset is not UNSET:
            _write(ex / "data" / "bad.json", case.dataset, as_yaml=False)
        if isinstance(spec, dict):
            spec = {**spec, "dataset": {"path": "bad.json"}}
    _write(ex / "experiment.yaml", spec, as_yaml=True)
    if case.settings is None or isinstance(case.settings, dict):
        block = yaml.safe_dump(case.settings if case.settings is not None else SETTINGS_YAML, sort_keys=False)
        settings_text: Any = "# settings\n\n```yaml\n" + block + "```\n"
    else:
        settings_text = case.settings
    _write(ex / "claude.local.md", settings_text, as_yaml=False)
    case.setup(root)
    spec_arg = case.spec_arg(root) if case.spec_arg else str(ex / "experiment.yaml")
    args = ["new", "--spec", spec_arg, "--yes", "--local-config", str(ex / "claude.local.md"), *case.args(root)]
    if "--local-config" in case.args(root):
        args = ["new", "--spec", spec_arg, "--yes", *case.args(root)]
    return args, ex


def listing(root: Path) -> set[str]:
    """Every path below ``root`` (symlinks not followed), hidden ones included."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        for name in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), root))
    return out


def check_result(case: Case, result: Any, before: set[str], root: Path, seconds: float) -> None:
    out = result.stdout + result.stderr
    assert "Traceback" not in out, out[-3000:]
    assert result.exit_code == case.code, f"{case.id}: exit {result.exit_code}, want {case.code}: {out[-2000:]}"
    lines = result.stderr.splitlines()
    assert lines and lines[0].startswith("error: "), out[-2000:]
    assert all(len(line) < 600 for line in lines), f"{case.id}: a message line is {max(map(len, lines))} characters"
    assert listing(root) == before, f"{case.id}: left {sorted(listing(root) - before)[:5]}"
    assert seconds < 60, f"{case.id}: took {seconds:.1f} s"  # refused early, not after expanding (generous: shared machines)


@pytest.mark.parametrize("case", ALL_CASES, ids=lambda c: c.id)
def test_bad_input_is_one_line_with_its_exit_code_and_leaves_nothing(case: Case, template: Path, tmp_path: Path) -> None:
    args, _ = prepare_case(case, template, tmp_path)
    before = listing(tmp_path)
    start = time.monotonic()
    result = run_cli(*args)
    check_result(case, result, before, tmp_path, time.monotonic() - start)


REAL_PROCESS_CASES = ["spec-not-utf8", "spec-alias-bomb", "spec-grid-1M", "settings-deep", "dataset-deep-json",
                      "model-config-list", "out-symlink-loop"]


@pytest.mark.parametrize("case_id", REAL_PROCESS_CASES)
def test_the_same_in_a_real_process(case_id: str, template: Path, tmp_path: Path) -> None:
    case = next(c for c in ALL_CASES if c.id == case_id)
    args, _ = prepare_case(case, template, tmp_path)
    before = listing(tmp_path)
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "planner.cli.main", *args], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, cwd=tmp_path, timeout=120)

    class R:
        exit_code = proc.returncode
        stdout = proc.stdout
        stderr = proc.stderr

    check_result(case, R(), before, tmp_path, time.monotonic() - start)
