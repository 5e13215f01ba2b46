"""Which device a plan's jobs will run on: the one rule, from the settings and what Slurm says.

Pure. In order: a CPU job (``gpus: 0`` or ``slurm.cpu_only``) runs on CPU cores; a
partition named under ``devices:`` in claude.local.md has that device; else the GPU type
``scontrol show node`` reports for the partition's nodes (``Gres=gpu:a100:4``, read by
:func:`planner.spec.hardware.gres_devices`; the edge that runs scontrol is
:func:`planner.jobs.slurm_query.plan_device`); else the default GPU is assumed, and the
choice says so and how to name the right one. The memory the estimates size against is
``gpu_memory_gib`` where the user set it, else the device's own.
"""

from __future__ import annotations

from dataclasses import dataclass

from planner.spec import hardware
from planner.spec.hardware import Device
from planner.spec.localconfig import LocalSettings

_SETTINGS_FILE = "claude.local.md"


@dataclass(frozen=True)
class DeviceChoice:
    """The device estimates assume for a plan's jobs, and why.

    Attributes:
        device: the table's entry (:data:`planner.spec.hardware.DEVICES`).
        memory_gib: memory of one device the estimates size against (for a CPU job: 0, the
            job's ``--mem`` being the limit).
        source: one sentence for the design log and the summary: where the choice came from.
        assumed: True when nobody named the device (the default GPU).
    """

    device: Device
    memory_gib: float
    source: str
    assumed: bool


def _memory(settings: LocalSettings, device: Device) -> float:
    """``gpu_memory_gib`` when the user wrote it, else the device's own memory."""
    return settings.gpu_memory_gib if "gpu_memory_gib" in settings.model_fields_set else device.memory_gib


def _names(partition: str) -> list[str]:
    """The partition as written, then each of a comma list (Slurm runs the job in whichever starts it first)."""
    parts = [p for p in partition.split(",") if p]
    return [partition] + [p for p in parts if p != partition]


def choose_device(settings: LocalSettings, partition: str | None, gpus: int,
                  gres: dict[str, str] | None = None) -> DeviceChoice:
    """The device of a job asking for ``gpus`` GPUs per node on ``partition``.

    Args:
        settings: the local settings (``devices``, ``gpu_memory_gib``, ``slurm``).
        partition: the spec's ``resources.partition``; None falls back on ``slurm.partition``.
        gpus: GPUs per node the job asks for (0: a CPU job).
        gres: partition -> GPU type name, from :func:`planner.spec.hardware.gres_devices`
            (None or empty: Slurm was not asked or said nothing).

    For a comma list of partitions the first one named (in ``devices``, then in ``gres``)
    decides. Without any partition, a cluster whose nodes all report one GPU type has that one.
    """
    if gpus == 0 or settings.slurm.cpu_only:
        why = "slurm.cpu_only: true in claude.local.md" if settings.slurm.cpu_only else "gpus: 0"
        return DeviceChoice(hardware.CPU, 0.0, f"CPU job ({why}): the estimates count CPU cores", assumed=False)
    partition = partition or settings.slurm.partition
    names = _names(partition) if partition else []
    memory = settings.gpu_memory_gib
    for name in names:
        written = settings.devices.get(name)
        if written is not None:
            named = hardware.device(written, memory, where=f"devices.{name}")
            return DeviceChoice(named, _memory(settings, named),
                                f"partition {name}: {named.key} (devices.{name}: {written} in {_SETTINGS_FILE})",
                                assumed=False)
    gres = gres or {}
    unknown: list[str] = []
    for name in names:
        typed = gres.get(name)
        if typed is None:
            continue
        found = hardware.find_device(typed, memory)
        if found is not None and not found.cpu:
            return DeviceChoice(found, _memory(settings, found),
                                f"partition {name}: {found.key} (read from scontrol show node (Gres=gpu:{typed}))",
                                assumed=False)
        unknown.append(f"Gres=gpu:{typed} of partition {name} is not a known device")
    if not names and gres:
        kinds = [hardware.find_device(t, memory) for t in gres.values()]
        only = kinds[0]
        if only is not None and not only.cpu and all(k == only for k in kinds):
            shown = ", ".join(sorted({f"gpu:{t}" for t in gres.values()}))
            return DeviceChoice(only, _memory(settings, only),
                                f"the default partition: {only.key} (the only GPU type scontrol show node "
                                f"reports, Gres={shown})", assumed=False)
    default = hardware.DEVICES[hardware.DEFAULT_GPU]
    where = f"partition {partition}" if partition else "the default partition"
    said = f" ({'; '.join(unknown)})" if unknown else ""
    key = partition.split(",")[0] if partition else "<partition>"
    return DeviceChoice(
        default, settings.gpu_memory_gib,
        f"{where}: {default.key} assumed, as no device is named for it{said}; name the partition's GPU "
        f"under devices: in {_SETTINGS_FILE} (e.g. devices: {{{key}: h100}})",
        assumed=True)
