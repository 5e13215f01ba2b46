"""Accelerators: the one table of devices the cost model knows, and how names people write find them.

Pure. Figures are the vendors' data-sheet peaks for dense matrix maths (no structured
sparsity), per device: bf16/fp16 on tensor cores (fp32 accumulate on the GeForce and
workstation cards, as PyTorch runs them), fp32 without TF32, memory and its bandwidth. A
name as Slurm's Gres (``gpu:a100:4``), ``nvidia-smi`` / ``torch.cuda.get_device_name``
(``NVIDIA H100 80GB HBM3``) or a person (``H100``, ``a100-80gb``) writes it resolves to one
entry; an unknown name is a one-line error listing the known ones.

The CPU entry is per core: a job's CPU peak is ``cpus_per_task`` x that. CPU runs are
dominated by overheads the peak does not see, which is why utilisation is learned per
device from the user's own runs (:mod:`planner.estimate.costmodel`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from planner.spec.errors import ConfigError


@dataclass(frozen=True)
class Device:
    """One accelerator kind.

    Attributes:
        key: the table's name for it (``h100-sxm-80gb``), what settings and logs record.
        label: how people call it (``NVIDIA H100 SXM 80GB``).
        bf16_tflops: peak dense bf16 TFLOP/s (None: no bf16 support, e.g. V100, T4).
        fp16_tflops: peak dense fp16 TFLOP/s.
        fp32_tflops: peak fp32 TFLOP/s (no TF32).
        memory_gib: device memory in GiB (what ``nvidia-smi`` calls 80GB is 80 GiB here,
            as torch reports it: close enough for sizing with headroom).
        bandwidth_gbs: memory bandwidth, GB/s.
        cpu: the CPU entry (figures per core; memory is the job's ``--mem``).
    """

    key: str
    label: str
    bf16_tflops: float | None
    fp16_tflops: float
    fp32_tflops: float
    memory_gib: float
    bandwidth_gbs: float
    cpu: bool = False

    def peak_tflops(self, dtype: str, cores: int = 1) -> float:
        """Peak dense TFLOP/s for a training dtype (``bf16``, ``fp16``, ``fp32``).

        bf16 on a device without it runs emulated at roughly fp32 speed, so fp32's peak
        stands in. CPU figures are multiplied by ``cores``.
        """
        if dtype == "bf16":
            peak = self.bf16_tflops if self.bf16_tflops is not None else self.fp32_tflops
        elif dtype == "fp16":
            peak = self.fp16_tflops
        else:
            peak = self.fp32_tflops
        return peak * (max(cores, 1) if self.cpu else 1)


def _d(key: str, label: str, bf16: float | None, fp16: float, fp32: float, mem: float, bw: float, *aliases: str) -> tuple[Device, tuple[str, ...]]:
    return Device(key, label, bf16, fp16, fp32, mem, bw), aliases


# Vendor data sheets (dense; sparsity figures halved where only those are printed).
_TABLE: tuple[tuple[Device, tuple[str, ...]], ...] = (
    _d("b200", "NVIDIA B200", 2250, 2250, 80, 180, 8000, "b200"),
    _d("h200", "NVIDIA H200 141GB", 989, 989, 67, 141, 4800, "h200", "h200-141gb", "gh200"),
    _d("h100-sxm-80gb", "NVIDIA H100 SXM 80GB", 989, 989, 67, 80, 3350,
       "h100", "h100-sxm", "h100-80gb", "h100-sxm5-80gb", "h100-80gb-hbm3", "h100-sxm-80gb"),
    _d("h100-nvl-94gb", "NVIDIA H100 NVL 94GB", 835, 835, 60, 94, 3900, "h100-nvl", "h100-nvl-94gb"),
    _d("h100-pcie-80gb", "NVIDIA H100 PCIe 80GB", 756, 756, 51, 80, 2000, "h100-pcie", "h100-pcie-80gb"),
    _d("a100-80gb", "NVIDIA A100 80GB", 312, 312, 19.5, 80, 2039,
       "a100", "a100-80gb", "a100-sxm4-80gb", "a100-sxm-80gb", "a100-pcie-80gb", "a100-80g", "a100_80gb"),
    _d("a100-40gb", "NVIDIA A100 40GB", 312, 312, 19.5, 40, 1555,
       "a100-40gb", "a100-sxm4-40gb", "a100-pcie-40gb", "a100-40g"),
    _d("l40s", "NVIDIA L40S", 362, 362, 91.6, 48, 864, "l40s"),
    _d("l40", "NVIDIA L40", 181, 181, 90.5, 48, 864, "l40"),
    _d("l4", "NVIDIA L4", 121, 121, 30.3, 24, 300, "l4"),
    _d("a40", "NVIDIA A40", 150, 150, 37.4, 48, 696, "a40"),
    _d("a10", "NVIDIA A10", 125, 125, 31.2, 24, 600, "a10", "a10g"),
    _d("rtx-6000-ada", "NVIDIA RTX 6000 Ada", 364, 364, 91.1, 48, 960, "rtx-6000-ada", "rtx6000ada", "6000-ada"),
    _d("rtx-a6000", "NVIDIA RTX A6000", 155, 155, 38.7, 48, 768, "rtx-a6000", "a6000", "rtxa6000"),
    _d("rtx-a5000", "NVIDIA RTX A5000", 111, 111, 27.8, 24, 768, "rtx-a5000", "a5000", "rtxa5000"),
    _d("rtx-4090", "NVIDIA GeForce RTX 4090", 165, 165, 82.6, 24, 1008, "rtx-4090", "4090", "geforce-rtx-4090"),
    _d("rtx-3090", "NVIDIA GeForce RTX 3090", 71, 71, 35.6, 24, 936, "rtx-3090", "3090", "geforce-rtx-3090"),
    _d("v100-32gb", "NVIDIA V100 32GB", None, 125, 15.7, 32, 900, "v100", "v100-32gb", "v100-sxm2-32gb", "v100s"),
    _d("v100-16gb", "NVIDIA V100 16GB", None, 125, 15.7, 16, 900, "v100-16gb", "v100-sxm2-16gb"),
    _d("t4", "NVIDIA T4", None, 65, 8.1, 16, 320, "t4"),
    _d("mi300x", "AMD Instinct MI300X", 1307, 1307, 163.4, 192, 5300, "mi300x"),
    _d("mi250x", "AMD Instinct MI250X", 383, 383, 47.9, 128, 3277, "mi250x", "mi250"),
    _d("mi210", "AMD Instinct MI210", 181, 181, 22.6, 64, 1638, "mi210"),
)

#: A CPU core: ~32 fp32 FLOPs per cycle (two AVX2 FMA units) at ~2 GHz; no fast bf16.
CPU = Device("cpu", "CPU", None, 0.064, 0.064, 0.0, 20.0, cpu=True)

#: Every device by key, the CPU included; the one table.
DEVICES: dict[str, Device] = {d.key: d for d, _ in _TABLE} | {CPU.key: CPU}

#: Written names (normalised) -> key.
_ALIASES: dict[str, str] = {}
for _dev, _names in _TABLE:
    for _name in (_dev.key, *_names):
        _ALIASES[_name.replace("-", "").replace("_", "")] = _dev.key
_ALIASES["cpu"] = CPU.key

#: The device estimates assume for a GPU partition nobody described: the most common
#: data-centre GPU of academic clusters. The plan says so, and says how to name the right one.
DEFAULT_GPU = "a100-80gb"


def _normalise(name: str) -> str:
    text = name.strip().lower()
    text = re.sub(r"^(nvidia|amd|tesla|instinct)[\s_-]+", "", text)
    text = re.sub(r"\b(nvidia|tesla|geforce|instinct)\b", "", text)
    return re.sub(r"[\s_\-]+", "", text)


def _by_memory(key: str, memory_gib: float | None) -> str:
    """A bare family name (``a100``, ``v100``) picks its memory variant when the memory is known."""
    if memory_gib is None:
        return key
    siblings = [d for d in DEVICES.values() if d.key.split("-")[0] == key.split("-")[0] and not d.cpu]
    if len(siblings) < 2:
        return key
    return min(siblings, key=lambda d: abs(d.memory_gib - memory_gib)).key


def find_device(name: str, memory_gib: float | None = None) -> Device | None:
    """The table's device for a written name, or None when it is not in the table.

    Accepts keys, labels, Gres type names and what ``nvidia-smi`` prints; for a bare
    family (``a100``) ``memory_gib`` picks the 40 or 80 GB variant.
    """
    if not isinstance(name, str) or not name.strip() or len(name) > 200:
        return None
    norm = _normalise(name)
    if norm in _ALIASES:
        key = _ALIASES[norm]
        bare = norm in ("a100", "v100")
        return DEVICES[_by_memory(key, memory_gib) if bare else key]
    # What nvidia-smi prints carries more words: "A100-SXM4-80GB", "H100 80GB HBM3".
    best: tuple[int, str] | None = None
    for alias, key in _ALIASES.items():
        if len(alias) >= 2 and alias in norm and (best is None or len(alias) > best[0]):
            best = (len(alias), key)
    if best is None:
        return None
    key = best[1]
    mem = re.search(r"(\d+)gb", norm)
    if mem and key.split("-")[0] in ("a100", "v100"):
        key = _by_memory(key, float(mem.group(1)))
    return DEVICES[key]


def device(name: str, memory_gib: float | None = None, *, where: str = "devices") -> Device:
    """:func:`find_device`, or a one-line :class:`ConfigError` naming the value and the known devices."""
    found = find_device(name, memory_gib)
    if found is None:
        shown = name if len(name) <= 60 else name[:57] + "..."
        raise ConfigError(f"{where}: unknown device {shown!r}; use one of {', '.join(DEVICES)}")
    return found


_GRES_RE = re.compile(r"gpu:([A-Za-z][\w.\-]*):\d+")


def gres_devices(scontrol_text: str) -> dict[str, str]:
    """Partition -> GPU type name, from ``scontrol show node`` output (``Gres=gpu:a100:4``).

    A node in several partitions names each; the first typed GPU of a partition's nodes
    wins. Nodes without a typed GPU Gres (``gpu:4``) say nothing.
    """
    found: dict[str, str] = {}
    for block in re.split(r"\n\s*\n", scontrol_text):
        gres = re.search(r"\bGres=(\S+)", block)
        parts = re.search(r"\bPartitions=(\S+)", block)
        if not gres or not parts:
            continue
        typed = _GRES_RE.search(gres.group(1))
        if not typed:
            continue
        for partition in parts.group(1).split(","):
            found.setdefault(partition, typed.group(1))
    return found
