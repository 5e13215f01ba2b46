"""Process-level helpers shared by the workflows: the garbage collector, CPUs, forked workers."""

from __future__ import annotations

import gc
import os
import pickle
import signal
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Generic, TypeVar

T = TypeVar("T")
U = TypeVar("U")


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for a burst of allocation.

    Planning 10,000 runs or analysing 10,000 evaluations allocates millions of small,
    acyclic objects (rows, dicts, strings); the collector then runs hundreds of times
    over a growing heap and finds nothing to free: a quarter of ``analyze``'s time
    (benchmarks/analyze_scale.py). Reference counting still frees everything at once;
    the collector resumes, as it was, on the way out.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def usable_cpus() -> int:
    """CPUs this process may run on (a login node's cgroup or ``taskset`` may allow fewer than the machine has)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def can_fork(workers: int) -> bool:
    """Whether work can go to ``workers`` processes here: two or more, on a system that forks."""
    return hasattr(os, "fork") and workers >= 2


def _parent_death_signal() -> Callable[[], None]:
    """A call that has the kernel kill the calling process when its parent dies (Linux); elsewhere it does nothing."""
    global _PDEATHSIG
    if _PDEATHSIG is None:
        try:
            import ctypes

            prctl = ctypes.CDLL(None, use_errno=True).prctl
            _PDEATHSIG = lambda: prctl(1, signal.SIGKILL)  # noqa: E731 - PR_SET_PDEATHSIG is 1
        except (OSError, AttributeError):  # not Linux, or no C library to ask
            _PDEATHSIG = lambda: None  # noqa: E731
    return _PDEATHSIG


_PDEATHSIG: Callable[[], None] | None = None


class ChildDied(RuntimeError):
    """A forked child ended without sending a result (killed, or out of memory)."""


#: Bytes of a message's length prefix in a child's pipe.
_FRAME = 8

#: What a child's pipe may hold unread (Linux's default ceiling for unprivileged processes): a child
#: sending an early stage does not wait for the parent, still busy with its own share, to read it.
_PIPE_BYTES = 1 << 20


def _pickled(ok: bool, value: object) -> bytes:
    try:
        return pickle.dumps((ok, value), protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:  # noqa: BLE001 - a value or an exception that cannot be pickled
        return pickle.dumps((False, RuntimeError(f"{type(exc).__name__}: {exc}")))


class Forked(Generic[T]):
    """``fn()`` running in a forked child; :meth:`result` waits for its value, pickled back through a pipe.

    The child inherits everything by ``fork`` (nothing is pickled on the way in) and leaves
    by ``os._exit``, so it runs no exit handler and flushes none of the parent's buffers.
    An exception it raises is raised again by :meth:`result`; :meth:`close` (also on
    leaving a ``with`` block) kills a child still running and reaps it, so none is left
    behind when the parent fails first.

    With ``stages=True``, ``fn()`` returns an iterator and each value it yields is sent as
    soon as it is made; each :meth:`result` call returns the next one. The parent can then
    work on an early stage while the child computes the next.
    """

    def __init__(self, fn: Callable[[], object], stages: bool = False) -> None:
        read_end, write_end = os.pipe()
        try:
            import fcntl

            fcntl.fcntl(write_end, 1031, _PIPE_BYTES)  # F_SETPIPE_SZ (Linux)
        except (ImportError, OSError):  # elsewhere, or above this system's limit: the default buffer
            pass
        parent = os.getpid()
        die_with_parent = _parent_death_signal()
        pid = os.fork()
        if pid == 0:  # the child
            os.close(read_end)
            code = 0
            try:
                # A child writing files must not outlive a parent killed with -9: the next
                # `new` removes what that parent left, and must not race a writer.
                die_with_parent()
                if os.getppid() != parent:
                    code = 1
                    return
                with open(write_end, "wb", buffering=0) as pipe:

                    def send(ok: bool, value: object) -> None:
                        payload = _pickled(ok, value)
                        pipe.write(len(payload).to_bytes(_FRAME, "little") + payload)

                    try:
                        if stages:
                            for value in fn():  # type: ignore[attr-defined]
                                send(True, value)
                        else:
                            send(True, fn())
                    except BaseException as exc:  # noqa: BLE001 - every failure goes back to the parent
                        code = 1
                        send(False, exc)
            finally:
                os._exit(code)
        os.close(write_end)
        self._pid: int | None = pid
        self._stages = stages
        self._pipe = open(read_end, "rb")  # noqa: SIM115 - closed by close()

    def result(self) -> T:
        """The child's (next) value, waiting for it; its exception is raised here.

        Raises:
            ChildDied: the child ended without that value (killed, out of memory).
        """
        if self._pid is None:
            raise ChildDied("forked worker already ended")
        # A buffered pipe's read(n) waits for n bytes, or the end of the pipe when the child died.
        head = self._pipe.read(_FRAME)
        payload = self._pipe.read(int.from_bytes(head, "little")) if len(head) == _FRAME else b""
        if not payload:
            status = self._reap(kill=True)
            raise ChildDied(f"forked worker ended without a result (wait status {status})")
        ok, value = pickle.loads(payload)
        if not ok:
            self._reap(kill=True)
            raise value
        if not self._stages:
            self._reap(kill=False)  # its one value sent, the child is leaving
        return value  # type: ignore[no-any-return]

    def _reap(self, kill: bool) -> int | None:
        self._pipe.close()
        if self._pid is None:
            return None
        if kill:
            try:
                os.kill(self._pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _, status = os.waitpid(self._pid, 0)
        self._pid = None
        return status

    def close(self) -> None:
        """Kill the child if it still runs, and reap it."""
        self._reap(kill=True)

    def __enter__(self) -> "Forked[T]":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def in_children(calls: Sequence[Callable[[], T]], meanwhile: Callable[[], U]) -> tuple[U, list[T]]:
    """Run each of ``calls`` in a forked child while ``meanwhile()`` runs here; their results, in order.

    A child that dies without a result (killed, out of memory) has its call run here
    instead; an exception a call raises is raised here. No child outlives this function.
    """
    children: list[Forked[T]] = [Forked(call) for call in calls]
    try:
        here = meanwhile()
        results = []
        for call, child in zip(calls, children):
            try:
                results.append(child.result())
            except ChildDied:
                results.append(call())
        return here, results
    finally:
        for child in children:
            child.close()
