"""Write an experiment folder atomically: a temporary sibling folder, then one rename.

A failure at any point leaves either the old folder or nothing, never a half-written
experiment. ``--force`` keeps the replaced folder as a backup beside it rather than
deleting checkpoints and hand-written notes.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import socket
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from planner.spec.errors import ConfigError, ExperimentExistsError, OutputError


def ensure_absent(target: Path, force: bool) -> None:
    """Fail early, before any work, when the experiment exists and ``force`` is off."""
    if os.path.lexists(target) and not force:
        raise ExperimentExistsError(
            f"experiment folder already exists: {target}; choose another name, or pass --force "
            "to replace it (the old folder is kept as a backup beside it)"
        )


def check_output_root(root: Path, label: str) -> None:
    """Refuse an output folder that is a file, lies under one, loops, or cannot take a new folder.

    ``label`` names where the folder came from (``--out`` or ``experiments_dir``). The
    probe folder made to test writing is removed at once.

    Raises:
        ConfigError: naming the folder, the reason and the fix.
    """
    probe = root
    while True:
        try:
            info = os.stat(probe)
            break
        except (FileNotFoundError, NotADirectoryError):
            if probe == probe.parent:
                raise ConfigError(f"{label} {root}: no existing folder above it; give a folder you can write to") from None
            probe = probe.parent
        except OSError as exc:
            raise ConfigError(f"{label} {root}: {exc.strerror} at {probe}; give a folder you can write to") from None
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{label} {root}: {probe} is a file, not a folder; give a folder you can write to")
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".plan-experiment-probe.", dir=probe))
    except OSError as exc:
        raise ConfigError(f"{label} {root}: cannot create folders in {probe} ({exc.strerror}); give a folder you can write to") from None


def filesystem_limits(root: Path) -> tuple[int, int]:
    """Longest folder name and longest path on the filesystem holding ``root`` (255, 4096 if unknown)."""
    probe = root
    while not os.path.isdir(probe) and probe != probe.parent:
        probe = probe.parent
    try:
        return int(os.pathconf(probe, "PC_NAME_MAX")), int(os.pathconf(probe, "PC_PATH_MAX"))
    except (OSError, ValueError):
        return 255, 4096


# ---------------------------------------------------------------- temporary folders
# A folder being written is named ``.<name>.pe-<host>-<pid>-<start>.<random>.partial``, so
# that a later run can tell, from the name alone (nothing to write first, no window), that
# it is ours and whether its writer is gone: same host, and no process with that id and
# start time. Anything else that merely looks similar is left alone.
_PARTIAL = re.compile(r"^\..*\.pe-([0-9a-f]{8})-(\d+)-(\d+)\.[^.]+\.partial$", re.DOTALL)


def _host_tag() -> str:
    return hashlib.sha256(socket.gethostname().encode()).hexdigest()[:8]


def _start_ticks(pid: int) -> int | None:
    """A process's start time in clock ticks since boot (Linux), None if there is no such process."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return None
    except OSError:
        return 0
    # The command name (field 2) may hold spaces and parentheses: split after its last ')'.
    return int(text.rsplit(")", 1)[1].split()[19])


def _alive(pid: int, start: int) -> bool:
    if Path("/proc/self/stat").exists():
        ticks = _start_ticks(pid)
        return ticks is not None and (start == 0 or ticks == start)
    try:  # no /proc: the pid alone
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _partial_prefix(target: Path) -> str:
    # Short enough that the temporary name fits wherever the final name fits.
    name = target.name.encode()[:100].decode(errors="ignore").replace("\n", "_")
    pid = os.getpid()
    return f".{name}.pe-{_host_tag()}-{pid}-{_start_ticks(pid) or 0}."


def remove_stale_partials(parent: Path) -> list[Path]:
    """Remove temporary folders a killed ``new`` left in ``parent``; return what was removed.

    Only folders named as ours, written on this host by a process that no longer runs.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(parent))
    except OSError:
        return removed
    host = _host_tag()
    for entry in entries:
        match = _PARTIAL.match(entry.name)
        if not match or match.group(1) != host or not entry.is_dir(follow_symlinks=False):
            continue
        pid, start = int(match.group(2)), int(match.group(3))
        if pid == os.getpid() or _alive(pid, start):
            continue
        shutil.rmtree(entry.path, ignore_errors=True)
        if not os.path.lexists(entry.path):
            removed.append(Path(entry.path))
    return removed


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _write_one(folder: str, rel: str, text: str) -> None:
    # Scripts are created executable (by owner and group, as the umask allows) rather than
    # chmod-ed afterwards: one system call instead of three, on tens of thousands of files.
    mode = 0o776 if rel.endswith(".sh") else 0o666
    fd = os.open(f"{folder}/{rel}", os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, mode)
    try:
        # os.write, not a buffered file object: 70,000 small files in a large plan.
        data = memoryview(text.encode("utf-8"))
        while data:
            data = data[os.write(fd, data):]
    finally:
        os.close(fd)


def write_files(folder: Path, files: dict[str, str]) -> None:
    """Write ``files`` (relative path -> text) under ``folder``, each sub-folder made just before its first file.

    In the order given (a run's files together), so that the filesystem keeps each
    folder's files near it: making every folder first and then the files spreads them
    out and doubles the kernel's time (benchmarks/plan_scale.py). Files are created new
    (never through a link someone left in the folder).
    """
    root = str(folder)
    made: set[str] = {""}
    for rel, text in files.items():
        parent = rel.rpartition("/")[0]
        if parent not in made:
            os.makedirs(f"{root}/{parent}", exist_ok=True)
            made.add(parent)
        _write_one(root, rel, text)


@dataclass
class Staged:
    """A new experiment folder being written: the hidden sibling of ``target`` that becomes it."""

    target: Path
    folder: Path
    made_parent: Path | None  # the outermost folder made to hold it (removed again when discarded empty)
    committed: bool = False


def stage(target: Path) -> Staged:
    """Make the hidden temporary folder a new experiment is written into, beside ``target``.

    It gets the permissions the user's umask gives (a group-readable experiment on a shared
    cluster stays group-readable), not the 0700 of a temporary folder. Its name says which
    process writes it, so a later ``new`` removes it if that process was killed.

    Raises:
        OSError: when the folder cannot be made.
    """
    made_parent = None
    for folder in reversed(target.parents):
        if not os.path.lexists(folder):
            made_parent = folder
            break
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_partial_prefix(target), suffix=".partial", dir=target.parent))
    staged = Staged(target, tmp, made_parent)
    try:
        os.chmod(tmp, 0o777 & ~_umask())
    except BaseException:
        discard(staged)
        raise
    return staged


def commit(staged: Staged, force: bool, now: datetime) -> Path | None:
    """Rename the staged folder into place (the one step that makes the experiment exist).

    Returns:
        The backup path of a replaced folder (``force``), or None.

    Raises:
        ExperimentExistsError: when the experiment appeared meanwhile and ``force`` is off.
        OutputError: when the rename fails; the staged folder is removed.
    """
    target = staged.target
    try:
        ensure_absent(target, force)
    except BaseException:
        discard(staged)
        raise
    try:
        (staged.folder / ".plan-experiment").mkdir(exist_ok=True)
        backup = None
        if os.path.lexists(target):
            backup = target.parent / f"{target.name}.replaced-{now:%Y%m%d-%H%M%S}"
            os.rename(target, backup)
        os.rename(staged.folder, target)
    except OSError as exc:
        discard(staged)
        raise output_error(target, exc) from None
    staged.committed = True
    return backup


def discard(staged: Staged) -> None:
    """Remove a staged folder that will not be committed, and the parent folders made for it if left empty."""
    if staged.committed:
        return
    shutil.rmtree(staged.folder, ignore_errors=True)
    if staged.made_parent is not None:
        folder = staged.folder.parent
        while True:
            try:
                os.rmdir(folder)
            except OSError:
                break
            if folder == staged.made_parent:
                break
            folder = folder.parent


def output_error(target: Path, exc: OSError) -> OutputError:
    """The one-line error of a folder that could not be written (a full disk named as such)."""
    reason = "the disk is full" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else exc.strerror
    return OutputError(
        f"cannot write the experiment folder {target}: {reason}; nothing was written. "
        "Free space or choose another folder with --out"
    )


def write_experiment(target: Path, files: dict[str, str], force: bool, now: datetime) -> Path | None:
    """Write ``files`` (relative path -> text) as the folder ``target``: staged, then committed.

    Returns:
        The backup path of a replaced folder, or None.

    Raises:
        OutputError: when the disk is full or the folder cannot be written; nothing is left.
    """
    ensure_absent(target, force)
    with staging(target) as staged:
        write_files(staged.folder, files)
    return commit(staged, force, now)


@contextmanager
def staging(target: Path) -> Iterator[Staged]:
    """:func:`stage` the folder of ``target`` for the block to write into; a failure in the block removes it.

    A block that ends normally keeps it, for :func:`commit`. An ``OSError`` (a full disk)
    becomes the one-line :class:`OutputError`; anything else is raised as it is.
    """
    try:
        staged = stage(target)
    except OSError as exc:
        raise output_error(target, exc) from None
    try:
        yield staged
    except OSError as exc:
        discard(staged)
        raise output_error(target, exc) from None
    except BaseException:
        discard(staged)
        raise


def atomic_write_text(path: Path, text: str, durable: bool = True) -> None:
    """Replace one file atomically (temporary file in the same folder, then rename).

    ``durable`` also flushes it to disk before the rename (journal, summary); caches skip it.
    """
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
            if durable:
                handle.flush()
                os.fsync(handle.fileno())
        if path.exists():
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
