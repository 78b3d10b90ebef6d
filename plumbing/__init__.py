"""CLI plumbing shared by every laneloop command: atomic files, one-line errors, signals, progress.

The conventions of DESIGN.md in one place, so every entry point behaves the same:

- a file is written whole or not at all (`atomic_output`): readers see the old file or the
  new one, and a killed run leaves at most a temporary file beside the target;
- an expected failure is one line on stderr, ``error: <what> (<what to do>)``, exit 1;
  Ctrl-C and ``kill`` (SIGTERM) end with a line saying what was kept, exit 130 (`run_cli`);
- long work shows a tqdm bar on stderr, only when stderr is a terminal (`progress_bar`);
- a frame size is written ``HxW``, height first, the same way in every command (`parse_size`).

It imports neither torch nor any laneloop package, so the world (`sim`) may use it too.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import signal
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

#: Exit codes of every CLI.
EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


# ----------------------------------------------------------------------------- atomic files


@contextmanager
def atomic_output(path: str | os.PathLike[str], fsync: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside `path`; when the block ends normally it replaces `path`.

    The temporary file is in the same folder (so `os.replace` is atomic), named
    ``.<name>.<random>.tmp`` so leftovers of a killed run are easy to spot; on any exception,
    Ctrl-C included, it is removed and `path` is untouched. `fsync` flushes the data to disk
    before the rename, for files a crash must not leave empty (checkpoints, journals).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(name)
    try:
        yield tmp
        if fsync:
            fd = os.open(tmp, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, fsync: bool = False) -> Path:
    """`data` to `path`, whole or not at all (`atomic_output`)."""
    with atomic_output(path, fsync=fsync) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str, fsync: bool = False) -> Path:
    """UTF-8 `text` to `path`, whole or not at all (`atomic_output`)."""
    return atomic_write_bytes(path, text.encode("utf-8"), fsync=fsync)


def atomic_write_json(path: str | os.PathLike[str], data: Any, fsync: bool = False) -> Path:
    """Strict JSON (no NaN: convert first) to `path`, indented, whole or not at all."""
    return atomic_write_text(path, json.dumps(data, indent=2, allow_nan=False) + "\n", fsync=fsync)


# ----------------------------------------------------------------------------- errors and signals


def fail(message: str, code: int = EXIT_ERROR) -> int:
    """Print the one-line error and return the exit code."""
    print(f"error: {message}", file=sys.stderr)
    return code


def raise_interrupt(signum: int, frame: object) -> None:
    """A signal handler that unwinds like Ctrl-C."""
    raise KeyboardInterrupt(signal.Signals(signum).name)


class SigtermAsInterrupt:
    """SIGTERM raises KeyboardInterrupt from `install()` to `restore()` (not a block: a backend
    holds it from reset to close), unless the application handles SIGTERM itself."""

    def __init__(self) -> None:
        self._previous: Any = None
        self._installed = False

    def install(self) -> None:
        if self._installed or threading.current_thread() is not threading.main_thread():
            return
        previous = signal.getsignal(signal.SIGTERM)
        if previous not in (signal.SIG_DFL, None):
            return
        signal.signal(signal.SIGTERM, raise_interrupt)
        self._previous, self._installed = previous, True

    def restore(self) -> None:
        if self._installed and threading.current_thread() is threading.main_thread():
            signal.signal(signal.SIGTERM, self._previous)
            self._installed = False


class StopRequest:
    """SIGINT/SIGTERM set a flag a loop checks once per step (it ends cleanly, its outputs whole);
    a second SIGINT raises KeyboardInterrupt. Handlers are installed on the main thread only."""

    def __init__(self) -> None:
        self.reason: str | None = None
        self._old: dict[int, Any] = {}

    def _handle(self, signum: int, frame: object) -> None:
        if self.reason is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.reason = "interrupted"

    @contextmanager
    def installed(self) -> Iterator[StopRequest]:
        if threading.current_thread() is not threading.main_thread():
            yield self
            return
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        try:
            yield self
        finally:
            for sig, old in self._old.items():
                signal.signal(sig, old)


@contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT/SIGTERM back while cleanup runs (a half-done cleanup can leave a CARLA server
    frozen in synchronous mode); raise KeyboardInterrupt after the block if one came."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.getsignal(s) for s in sigs}
    for s in sigs:
        signal.signal(s, lambda signum, frame: caught.append(signum))
    try:
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)
    if caught:
        raise KeyboardInterrupt(f"{signal.Signals(caught[0]).name} during cleanup")


@contextmanager
def interrupt_on_signals() -> Iterator[None]:
    """Inside the block SIGTERM raises KeyboardInterrupt, and so does SIGINT even in a process
    started in the background (which inherits SIGINT ignored): `kill` and Ctrl-C unwind the
    same way, through the callers' cleanup. Outside the main thread it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    saved = {
        signal.SIGTERM: signal.signal(signal.SIGTERM, raise_interrupt),
        signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
    }
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


def run_cli(
    body: Callable[[], int],
    *,
    expected: tuple[type[BaseException], ...],
    debug: bool = False,
    interrupted: str | Callable[[], str] = "interrupted",
    hint: Callable[[BaseException], str] | None = None,
) -> int:
    """Run a CLI's body with the conventions above; returns the exit code.

    `expected`: the exception types whose message is the one line (their messages say what
    to do); anything else is reported as unexpected, one line too. `debug` re-raises for a
    traceback. `interrupted`: the line for Ctrl-C / SIGTERM (a callable, to say what was
    kept at that moment). `hint(exc)` may add a suffix to the line (e.g. how to resume).
    """
    try:
        with interrupt_on_signals():
            return body()
    except KeyboardInterrupt:
        print(interrupted() if callable(interrupted) else interrupted, file=sys.stderr)
        return EXIT_INTERRUPTED
    except expected as exc:
        if debug:
            raise
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        return fail(message + (hint(exc) if hint else ""))
    except Exception as exc:  # unexpected: still one line unless --debug
        if debug:
            raise
        return fail(f"unexpected {type(exc).__name__}: {exc} (rerun with --debug for a traceback)")


# ----------------------------------------------------------------------------- progress


def progress_bar(total: int | None, desc: str, enabled: bool = True, unit: str = "frame", **kwargs: Any) -> Any:
    """A tqdm bar on stderr, or None when disabled or stderr is not a terminal (logs stay clean)."""
    if not enabled or not sys.stderr.isatty():
        return None
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit=unit, file=sys.stderr, dynamic_ncols=True, **kwargs)


# ----------------------------------------------------------------------------- argument types


def parse_size(text: str, minimum: int = 1) -> tuple[int, int]:
    """'160x320' (height x width) -> (160, 320); ValueError saying how to write it otherwise.

    Height first, as numpy shapes and `--size` everywhere; `minimum` bounds each side.
    """
    h, sep, w = text.lower().partition("x")
    if not sep or not (h.isdecimal() and w.isdecimal()) or min(int(h), int(w)) < minimum:
        raise ValueError(f"bad size {text!r} (write height x width, each >= {minimum}, e.g. 160x320)")
    return int(h), int(w)


def size_type(minimum: int = 1) -> Callable[[str], tuple[int, int]]:
    """`parse_size` as an argparse ``type=``: a bad size is a usage error with its message (exit 2)."""

    def parse(text: str) -> tuple[int, int]:
        try:
            return parse_size(text, minimum)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None

    return parse


def file_digest(path: str | os.PathLike[str]) -> str:
    """First 16 hex digits of a file's SHA-256: how a checkpoint names the file it was made from."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


__all__ = [
    "StopRequest",
    "EXIT_ERROR",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "SigtermAsInterrupt",
    "atomic_output",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "fail",
    "file_digest",
    "interrupt_on_signals",
    "parse_size",
    "progress_bar",
    "raise_interrupt",
    "run_cli",
    "signals_deferred",
    "size_type",
]
