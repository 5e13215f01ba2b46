"""The config dump at the top of a torchtune log: the dozen keys estimates need, read fast.

Pure. ``Running <RecipeClass> with resolved config:`` is followed by the run's YAML; the
keys estimates need are read with ``str.find`` and the whole dump is parsed only on demand.
"""

from __future__ import annotations

import re
from typing import Any

import yaml

from planner.estimate.logrecord import YAML_LOADER, LogRecord

HEADER_RE = re.compile(r"Running (\w+) with resolved config:")


def to_int(v: Any) -> int | None:
    if isinstance(v, bool) or v is None:
        return None
    if isinstance(v, int):
        return v
    try:
        return int(str(v))
    except ValueError:
        return None


def _scalar(raw: str | None) -> Any:
    """A YAML scalar as OmegaConf writes it, without a YAML parser (hot path)."""
    if raw is None:
        return None
    v = raw.strip()
    if not v or v in ("null", "~", "Null", "NULL"):
        return None
    if v[0] in "'\"" and v[-1:] == v[0] and len(v) > 1:
        return v[1:-1]
    low = v.lower()
    if low in ("true", "false"):
        return low == "true"
    if v[0] in "[{":
        try:
            return yaml.load(v, Loader=YAML_LOADER)
        except yaml.YAMLError:
            return v
    if v.isdigit():
        return int(v)
    # Only try numbers when it can be one: raising ValueError costs microseconds.
    if v[0] in "-+.0123456789" and len(v) < 40:
        try:
            return int(v)
        except ValueError:
            pass
        try:
            return float(v)
        except ValueError:
            return v
    return v


# The dump ends at the first line that is neither indented, a list item, a comment,
# blank, nor a top-level ``key:`` (a log line, a warning, a bar). Patterns here are
# anchored on "\n" rather than ``^`` with re.M: a literal first character lets the
# regex engine skip ahead, which makes them several times faster.
_CONFIG_END_RE = re.compile(r"\n(?=[^ \t\-#\n])(?![A-Za-z_][\w.\-]*:(?: |\n|$))")


_SECTION_END_RE = re.compile(r"\n[^ \t\-#\n]")


_TOP_ATTR = {k: k for k in ("batch_size", "gradient_accumulation_steps", "epochs",
                            "max_steps_per_epoch", "output_dir", "world_size", "nproc_per_node", "device")}


_SECTION_FINDS = {
    "model": (("_component_", "model_component"), ("lora_rank", "lora_rank")),
    "tokenizer": (("max_seq_len", "max_seq_len"),),
    "checkpointer": (("checkpoint_dir", "checkpoint_dir"),),
    "dataset": (("packed", "packed"), ("source", "dataset_source"), ("data_files", "dataset_data_files"),
                ("split", "dataset_split"), ("max_seq_len", "dataset_max_seq_len")),
}


# Search strings built once: "\nbatch_size:" for top-level keys, "\n  packed:" inside
# the section that starts at "\ndataset:\n".
_TOP_NEEDLES = tuple((f"\n{k}:", k) for k in _TOP_ATTR)


_SECTION_NEEDLES = tuple(
    (f"\n{name}:\n", tuple((f"\n  {key}:", attr) for key, attr in keys))
    for name, keys in _SECTION_FINDS.items()
)


_INT_FIELDS = {"batch_size", "gradient_accumulation_steps", "epochs", "max_steps_per_epoch",
               "lora_rank", "max_seq_len", "dataset_max_seq_len", "world_size", "nproc_per_node"}


_STR_FIELDS = {"model_component", "dataset_source", "dataset_split", "output_dir", "checkpoint_dir", "device"}


_BLOCK_ITEM_RE = re.compile(r"\n {2,}- (.*)")


def _line_value(block: str, pos: int) -> Any:
    """The scalar after ``key:`` at ``pos`` up to the end of the line (None if empty)."""
    end = block.find("\n", pos)
    return _scalar(block[pos : end if end >= 0 else len(block)])


def extract_config(text: str, rec: LogRecord) -> None:
    """Find the config dump; keep its text and fill the fields estimates need.

    The dump is ``OmegaConf.to_yaml`` output: two-space indentation, one key per line.
    ``str.find`` reads the dozen keys estimates need (a YAML parser costs
    ~0.4 ms a log, more than everything else together); :attr:`LogRecord.config`
    parses the whole dump with ``yaml.safe_load`` on demand.
    """
    at = text.find(" with resolved config:")
    if at < 0:
        return
    m = HEADER_RE.search(text, max(0, at - 120), at + 23)
    if m is None:
        return
    rec.recipe = m.group(1)
    start = text.find("\n", m.end())
    if start < 0:
        rec.problems.append("config dump header present but no config followed (log cut)")
        return
    # Work on "\n" + dump so every key line, the first included, follows a newline.
    end_m = _CONFIG_END_RE.search(text, start + 1)
    block = text[start : end_m.start() if end_m else len(text)] + "\n"
    rec.config_text = block.strip("\n") + "\n"
    # Plain str.find per wanted key: a dozen C-level searches beat a regex pass plus
    # Python work per matched line (the dump has ~20 ``_component_`` lines alone).
    found: dict[str, Any] = {}
    for needle, key in _TOP_NEEDLES:
        at = block.find(needle)
        if at >= 0:
            found[key] = _line_value(block, at + len(needle))
    for header, keys in _SECTION_NEEDLES:
        at = block.find(header)
        if at < 0:
            continue
        body = at + len(header)
        se = _SECTION_END_RE.search(block, body)
        end = se.start() + 1 if se else len(block)
        for needle, attr in keys:
            k = block.find(needle, body - 1, end)
            if k < 0:
                continue
            vpos = k + len(needle)
            raw = _line_value(block, vpos)
            if raw is None and attr == "dataset_data_files":
                items = []  # block list: the "- item" lines that follow
                ipos = block.find("\n", vpos)
                while (im := _BLOCK_ITEM_RE.match(block, ipos)) is not None:
                    items.append(_scalar(im.group(1)))
                    ipos = im.end()
                found[attr] = items
            else:
                found[attr] = raw
    for attr, value in found.items():
        if attr in _INT_FIELDS:
            value = to_int(value)
        elif attr == "packed":
            value = value if isinstance(value, bool) else None
        elif attr in _STR_FIELDS:
            value = str(value) if value is not None else None
        if attr == "dataset_max_seq_len":  # torchtune 0.1 kept it in the dataset section
            if rec.max_seq_len is None:
                rec.max_seq_len = value
        elif attr in ("world_size", "nproc_per_node"):
            if value and value > 1:
                rec.world_size = max(rec.world_size or 1, value)
        else:
            setattr(rec, attr, value)
    if not found:
        rec.problems.append("config dump present but none of the expected keys were read")
