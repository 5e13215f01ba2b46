"""Which device a plan's jobs get: the settings, then what scontrol says, else an assumption that says so."""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any

import pytest

from planner.jobs.slurm_query import partition_gpu_types, plan_device
from planner.spec import hardware
from planner.spec.device_choice import choose_device
from planner.spec.localconfig import LocalSettings
from planner.spec.spec import ExperimentSpec
from tests.conftest import EXAMPLE, load_yaml, run_cli

DIRS = {"models_dir": "/m", "experiments_dir": "/e", "scratch_dir": "/s", "datasets_dir": "/d"}

SCONTROL_SHOW_NODE = """\
NodeName=gpu-001 Arch=x86_64 CoresPerSocket=32
   Gres=gpu:a100:4(S:0-1)
   Partitions=gpu,all

NodeName=gpu-101 Arch=x86_64 CoresPerSocket=32
   Gres=gpu:h100:8
   Partitions=gpu-h100

NodeName=odd-001 Arch=x86_64
   Gres=gpu:mystery9000:2
   Partitions=odd

NodeName=cpu-001 Arch=x86_64
   Gres=(null)
   Partitions=cpu,all
"""


def settings(**data: Any) -> LocalSettings:
    """Settings validated as claude.local.md's are, so the keys given count as written."""
    return LocalSettings.model_validate({**DIRS, **data})


def spec(**resources: Any) -> ExperimentSpec:
    data = load_yaml(EXAMPLE / "experiment.yaml")
    data["resources"] = {"time": "auto", **resources}
    return ExperimentSpec.model_validate(data)


def test_a_cpu_job_runs_on_cpu_cores() -> None:
    for chosen in (choose_device(settings(devices={"gpu": "h100"}), "gpu", 0, {"gpu": "a100"}),
                   choose_device(settings(slurm={"cpu_only": True}), "gpu", 4)):
        assert chosen.device is hardware.CPU and chosen.memory_gib == 0 and not chosen.assumed
        assert chosen.source.startswith("CPU job")
    assert "slurm.cpu_only" in choose_device(settings(slurm={"cpu_only": True}), None, 2).source


def test_a_partition_named_in_the_settings_has_that_device() -> None:
    chosen = choose_device(settings(devices={"gpu": "h100", "big": "a100-40gb"}), "gpu", 1, {"gpu": "a100"})
    assert chosen.device.key == "h100-sxm-80gb" and chosen.memory_gib == 80 and not chosen.assumed
    assert chosen.source == "partition gpu: h100-sxm-80gb (devices.gpu: h100 in claude.local.md)"
    # The spec's partition first, then slurm.partition.
    both = settings(devices={"gpu": "h100", "big": "a100-40gb"}, slurm={"partition": "big"})
    assert choose_device(both, None, 1).device.key == "a100-40gb"
    assert choose_device(both, None, 1).memory_gib == 40
    assert choose_device(both, "gpu", 1).device.key == "h100-sxm-80gb"


def test_a_written_gpu_memory_wins_over_the_devices_own() -> None:
    chosen = choose_device(settings(devices={"gpu": "h200"}, gpu_memory_gib=70.0), "gpu", 1)
    assert chosen.device.key == "h200" and chosen.memory_gib == 70
    assert choose_device(settings(devices={"gpu": "h200"}), "gpu", 1).memory_gib == 141
    # A bare family name takes the variant nearest the written memory.
    assert choose_device(settings(devices={"gpu": "a100"}, gpu_memory_gib=40.0), "gpu", 1).device.key == "a100-40gb"


def test_slurms_gres_names_the_gpu_of_a_partition_the_settings_do_not() -> None:
    gres = hardware.gres_devices(SCONTROL_SHOW_NODE)
    chosen = choose_device(settings(), "gpu-h100", 8, gres)
    assert chosen.device.key == "h100-sxm-80gb" and chosen.memory_gib == 80 and not chosen.assumed
    assert chosen.source == "partition gpu-h100: h100-sxm-80gb (read from scontrol show node (Gres=gpu:h100))"
    # A bare a100 from Gres: the variant nearest gpu_memory_gib.
    assert choose_device(settings(), "gpu", 1, gres).device.key == "a100-80gb"
    assert choose_device(settings(gpu_memory_gib=40.0), "gpu", 1, gres).device.key == "a100-40gb"


def test_an_unknown_gres_type_or_no_word_from_slurm_assumes_the_default_and_says_how_to_fix_it() -> None:
    gres = hardware.gres_devices(SCONTROL_SHOW_NODE)
    for chosen in (choose_device(settings(), "odd", 2, gres), choose_device(settings(), "nowhere", 1, gres),
                   choose_device(settings(), "gpu", 1)):
        assert chosen.assumed and chosen.device is hardware.DEVICES[hardware.DEFAULT_GPU]
        assert chosen.memory_gib == 80
        assert "assumed" in chosen.source and "name the partition's GPU under devices: in claude.local.md" in chosen.source
    odd = choose_device(settings(gpu_memory_gib=24.0), "odd", 2, gres)
    assert "Gres=gpu:mystery9000 of partition odd is not a known device" in odd.source and odd.memory_gib == 24
    assert "the default partition" in choose_device(settings(), None, 1).source


def test_a_comma_list_of_partitions_takes_the_first_one_named() -> None:
    gres = {"gpu-h100": "h100"}
    assert choose_device(settings(devices={"b": "l40s"}), "a,b", 1, gres).device.key == "l40s"
    assert choose_device(settings(), "a,gpu-h100", 1, gres).device.key == "h100-sxm-80gb"
    nothing = choose_device(settings(), "a,b", 1)
    assert nothing.assumed and "partition a,b: a100-80gb assumed" in nothing.source and "{a: h100}" in nothing.source


def test_without_a_partition_one_gpu_type_across_the_cluster_is_that_one() -> None:
    assert choose_device(settings(), None, 1, {"gpu": "h100", "all": "H100"}).device.key == "h100-sxm-80gb"
    assert choose_device(settings(), None, 1, {"gpu": "h100", "old": "v100"}).assumed


def _fake_scontrol(folder: Path, body: str) -> Path:
    """A scontrol on PATH that runs ``body`` (sh) and records that it was called."""
    folder.mkdir(parents=True, exist_ok=True)
    script = folder / "scontrol"
    script.write_text(f'#!/bin/sh\necho "$@" >> "{folder}/calls"\n{body}\n')
    script.chmod(script.stat().st_mode | stat.S_IXUSR)
    return folder


def test_plan_device_asks_scontrol_for_a_partition_the_settings_do_not_name(tmp_path: Path,
                                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "nodes.txt").write_text(SCONTROL_SHOW_NODE)
    bin_dir = _fake_scontrol(tmp_path / "bin", f'cat "{tmp_path}/nodes.txt"')
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert partition_gpu_types() == {"gpu": "a100", "all": "a100", "gpu-h100": "h100", "odd": "mystery9000"}
    chosen = plan_device(settings(slurm={"partition": "gpu"}), spec(gpus=2, partition="gpu-h100"))
    assert chosen.device.key == "h100-sxm-80gb" and "scontrol show node" in chosen.source
    assert (bin_dir / "calls").read_text() == "show node\nshow node\n"


def test_plan_device_leaves_scontrol_alone_when_the_settings_answer(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = _fake_scontrol(tmp_path / "bin", "exit 0")
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert plan_device(settings(devices={"gpu": "l40s"}), spec(gpus=1, partition="gpu")).device.key == "l40s"
    assert plan_device(settings(), spec(gpus=0, partition="gpu")).device is hardware.CPU
    assert plan_device(settings(slurm={"cpu_only": True}), spec(gpus=2)).device is hardware.CPU
    assert not (bin_dir / "calls").exists()


@pytest.mark.parametrize("body", ["echo 'slurm_load_node error: Unable to contact slurm controller' >&2; exit 1",
                                  "sleep 30", "echo 'no nodes here'"])
def test_a_failing_slow_or_silent_scontrol_says_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, body: str) -> None:
    bin_dir = _fake_scontrol(tmp_path / "bin", body)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    assert partition_gpu_types(timeout_s=0.5) == {}
    chosen = plan_device(settings(), spec(gpus=1, partition="gpu"), timeout_s=0.5)
    assert chosen.assumed and chosen.device.key == hardware.DEFAULT_GPU
    assert (bin_dir / "calls").read_text().count("show node") == 2


def test_without_scontrol_the_default_is_assumed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert partition_gpu_types() == {}
    chosen = plan_device(settings(slurm={"partition": "gpu"}), spec(gpus=1))
    assert chosen.assumed and "partition gpu: a100-80gb assumed" in chosen.source


def test_an_unwritten_gpu_memory_stays_unwritten_in_the_recorded_settings(example: Path) -> None:
    local = example / "claude.local.md"
    local.write_text(local.read_text().replace("gpu_memory_gib: 80\n", "devices: {gpu: a100-40gb}\n"))
    result = run_cli("new", "--spec", str(example / "experiment.yaml"), "--yes", "--local-config", str(local))
    assert result.exit_code == 0, result.stderr
    (folder,) = (example / "experiments").iterdir()
    recorded = load_yaml(folder / "experiment.yaml")["provenance"]["local_settings"]
    assert "gpu_memory_gib" not in recorded and recorded["devices"] == {"gpu": "a100-40gb"}
    # What estimate reads back (the example's nodes have no GPUs: read as if they had).
    again = LocalSettings.model_validate({**recorded, "slurm": {**recorded["slurm"], "cpu_only": False}})
    assert "gpu_memory_gib" not in again.model_fields_set
    assert choose_device(again, "gpu", 1).memory_gib == 40
