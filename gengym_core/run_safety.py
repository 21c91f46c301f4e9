"""Run safety for every ``gengym`` command: one run per output folder, files written whole.

A command that writes a folder goes through the pieces here, so that a
killed run, a second run started by mistake or a full disk never costs the
user a finished result:

* :func:`output_lock` -- a lock file that says which process owns an output
  folder (pid, host, command line, start time). A second run into the folder
  stops with one line naming the holder; a lock left by a process that died
  is taken over with a message. It is held through ``flock``, which the
  kernel drops when its process ends however it ends, so a stale lock never
  needs guessing; the file's text only names the holder.
* :func:`atomic_write_text` and :func:`replace_folder` -- a file or a whole
  folder is written beside its place, synced and renamed into it: at any
  instant the place holds the old version or the new one, complete.
* :func:`changed_settings` -- which saved settings a resumed run changes
  (the experiment runner and the trainers refuse those that would mix
  results); :func:`earlier_run_message` -- the refusal to start a new run
  over an earlier one.
* :class:`CommandError` and :func:`storage_error_message` -- the one line
  the ``gengym`` dispatcher prints, with exit status 2, for what the user
  must change, and for a write that the file system refused (read-only,
  disk full, a file where a folder belongs), whichever command and library
  hit it.

Only the standard library is imported: ``gengym play`` uses this on the
base install.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import shlex
import shutil
import socket
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

#: Name of the lock file inside a run's output folder.
LOCK_NAME = "gengym.lock"
#: Suffix of the lock file beside a folder that is replaced whole (datasets, evaluations).
LOCK_SUFFIX = ".lock"

#: errno values meaning the file system refused a write where the command was told to write.
STORAGE_ERRNOS: dict[int, str] = {
    errno.ENOSPC: "no space left on the disk",
    errno.EDQUOT: "disk quota exceeded",
    errno.EFBIG: "file too large for the file system",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "operation not permitted",
    errno.ENOTDIR: "a file stands where a folder is needed",
    errno.EISDIR: "a folder stands where a file is needed",
    errno.EEXIST: "a file already stands there",
    errno.ENAMETOOLONG: "the file name is too long",
}

#: Folders this process locked, newest last: where a write failure without a
#: path (a library's own error) most likely happened.
_locked_folders: list[Path] = []


class CommandError(Exception):
    """A command cannot do what it was asked; ``gengym`` prints the message as one line and exits with 2.

    Raise it (or a subclass, such as the trainers' ``ConfigError``) for what
    the user must change: settings, paths, a folder another run holds.
    """


class FolderInUseError(CommandError):
    """Another live process holds the output folder's lock."""


def is_main_process() -> bool:
    """Whether this is the launcher's rank 0 (or a process started without a launcher)."""
    return os.environ.get("RANK", "0") == "0"


def describe_process() -> dict[str, Any]:
    """What a lock file says about its holder: pid, host, command line and start time."""
    argv = list(sys.argv) or [sys.executable]
    if Path(argv[0]).name in ("gengym", "cli.py"):  # the console script, or ``python -m gengym_core.cli``
        argv[0] = "gengym"
    command = shlex.join(argv)
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command[:300],
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
    }


def _holder_text(holder: Mapping[str, Any]) -> str:
    """``pid 12 on host h (gengym sft ...), since 2025-01-01 10:00:00`` from a lock file's text."""
    if not holder:
        return "an unknown process (the lock file names none)"
    command = str(holder.get("command", "?")).replace("\n", " ")
    if len(command) > 120:
        command = command[:117] + "..."
    return f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} ({command}), since {holder.get('started', '?')}"


def _read_holder(fd: int) -> dict[str, Any]:
    os.lseek(fd, 0, os.SEEK_SET)
    data = b""
    while chunk := os.read(fd, 65536):
        data += chunk
    try:
        holder = json.loads(data.decode("utf-8", "replace"))
    except ValueError:
        return {}
    return holder if isinstance(holder, dict) else {}


def _pid_alive(pid: Any) -> bool:
    """Whether a process with this pid runs on this host (or cannot be told apart from one)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class OutputLock:
    """An exclusive lock on an output folder, held through a lock file.

    Args:
        lock_file: Path of the lock file.
        folder: The folder it guards (named in messages).
        log: Where the take-over of a stale lock is reported.
    """

    def __init__(self, lock_file: Path, folder: Path, *, log: Callable[[str], None] | None = None) -> None:
        self.lock_file = Path(lock_file)
        self.folder = Path(folder)
        self.log = log or (lambda message: print(message, file=sys.stderr))
        self._fd: int | None = None
        self._created: list[Path] = []

    def acquire(self) -> None:
        """Take the lock, or raise :class:`FolderInUseError` naming the holder.

        Raises:
            FolderInUseError: A live process holds it.
            CommandError: The folder is a file.
            OSError: The lock file cannot be written (read-only, disk full).
        """
        if self.folder.exists() and not self.folder.is_dir():
            raise CommandError(f"{self.folder} is a file, not a folder; give a folder for the output")
        self._created = _make_folders(self.lock_file.parent)
        try:
            previous = self._take()
        except BaseException:
            self._remove_created_folders()
            raise
        _locked_folders.append(self.folder)
        if previous.get("pid") not in (None, os.getpid()):
            self.log(
                f"gengym: took over the lock of {self.folder}: its holder, {_holder_text(previous)}, "
                "is no longer running"
            )

    def _take(self) -> dict[str, Any]:
        """Open, lock and fill in the lock file; return what the previous holder wrote in it."""
        while True:
            fd = os.open(self.lock_file, os.O_RDWR | os.O_CREAT, 0o644)
            held = False
            try:
                if not self._flock(fd):
                    raise FolderInUseError(
                        f"{self.folder} is in use by another run: {_holder_text(_read_holder(fd))}. Wait for it "
                        f"to finish or choose another output folder (if that process is gone, delete {self.lock_file})"
                    )
                if not _same_file(fd, self.lock_file):  # its holder removed it as we opened it: start over
                    os.close(fd)
                    continue
                held = True
                previous = _read_holder(fd)
                self._write(fd)
            except BaseException:
                if held:  # ours, but unwritable (a full disk): leave no lock file behind
                    with contextlib.suppress(OSError):
                        self.lock_file.unlink()
                os.close(fd)
                raise
            self._fd = fd
            return previous

    def _flock(self, fd: int) -> bool:
        """Whether this process got the ``flock`` (on a file system without locks: its pid check)."""
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False
        except OSError as err:
            if err.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
                raise
        # No flock here (some network file systems): trust the holder's pid on this host.
        holder = _read_holder(fd)
        if not holder or holder.get("pid") == os.getpid():
            return True
        return holder.get("host") == socket.gethostname() and not _pid_alive(holder.get("pid"))

    def _write(self, fd: int) -> None:
        data = (json.dumps(describe_process()) + "\n").encode()
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, data)
        os.fsync(fd)

    def release(self) -> None:
        """Remove the lock file and drop the lock (nothing when not held)."""
        if self._fd is None:
            return
        with contextlib.suppress(OSError):
            if _same_file(self._fd, self.lock_file):
                self.lock_file.unlink()
        os.close(self._fd)
        self._fd = None
        self._remove_created_folders()

    def _remove_created_folders(self) -> None:
        """A run that wrote nothing leaves no empty folders behind."""
        for folder in reversed(self._created):
            with contextlib.suppress(OSError):
                folder.rmdir()
        self._created = []

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release()


def _make_folders(folder: Path) -> list[Path]:
    """``mkdir -p folder``; return the folders it created, outermost first."""
    missing = []
    current = folder
    while not current.exists() and current != current.parent:
        missing.append(current)
        current = current.parent
    folder.mkdir(parents=True, exist_ok=True)
    return list(reversed(missing))


def _same_file(fd: int, path: Path) -> bool:
    try:
        on_disk = os.stat(path)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (held.st_dev, held.st_ino) == (on_disk.st_dev, on_disk.st_ino)


@contextlib.contextmanager
def output_lock(folder: str | Path, *, beside: bool = False) -> Iterator[None]:
    """Hold ``folder`` for this run: its lock file inside it, or beside it with ``beside``.

    ``beside`` is for folders that are replaced whole (:func:`replace_folder`):
    the lock ``NAME.lock`` sits next to ``NAME`` and survives the swap. Under
    a multi-process launcher only the main process locks; the others write
    nothing of their own there.

    Raises:
        FolderInUseError: A live process holds the folder (the message names it).
        CommandError: ``folder`` is a file.
        OSError: The lock cannot be written (read-only folder, full disk).
    """
    folder = Path(folder)
    if not is_main_process():
        yield
        return
    if beside:
        whole = Path(os.path.abspath(folder))  # "." has no name to put a suffix on
        lock_file = whole.with_name(whole.name + LOCK_SUFFIX)
    else:
        lock_file = folder / LOCK_NAME
    with OutputLock(lock_file, folder):
        yield


# -- writing whole --------------------------------------------------------------


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (where the platform allows)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_write_text(path: str | Path, text: str) -> None:
    """Write ``text`` to ``path`` whole: beside it, synced, then renamed over it.

    A reader (or a run killed meanwhile) sees the old file or the new one,
    never a torn one.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        with open(tmp, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_folder(path.parent)


def replace_folder(path: str | Path, build: Callable[[Path], Any]) -> Path:
    """Build a folder beside ``path`` with ``build(tmp)``, then put it in ``path``'s place.

    ``path`` holds the old folder until the new one is complete; then the old
    one is moved aside, the new one renamed in and the old one removed. A run
    killed at any point leaves ``path`` complete (old or new) or, between the
    two renames, absent with both versions beside it (``NAME.tmp`` new,
    ``NAME.old`` old; the next call puts the old one back first). Leftovers
    of a killed run are removed first; callers hold :func:`output_lock`
    (``beside=True``), so no other run writes them.
    """
    path = Path(os.path.abspath(path))
    tmp = path.with_name(path.name + ".tmp")
    old = path.with_name(path.name + ".old")
    if old.exists() and not path.exists():  # killed between the renames: the old version goes back first
        old.rename(path)
    _remove(tmp)
    _remove(old)
    build(tmp)
    return move_into_place(tmp, path)


def move_into_place(new: Path, path: Path) -> Path:
    """Rename the complete folder ``new`` to ``path``, replacing what is there (see :func:`replace_folder`)."""
    old = path.with_name(path.name + ".old")
    _remove(old)
    if path.exists() or path.is_symlink():
        path.rename(old)
    new.rename(path)
    _fsync_folder(path.parent)
    _remove(old)
    return path


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def folder_is_empty(folder: Path) -> bool:
    """Whether ``folder`` is absent or an empty folder (a file is not empty)."""
    return not folder.exists() or (folder.is_dir() and not any(folder.iterdir()))


# -- resuming and refusing --------------------------------------------------------


def changed_settings(current: Mapping[str, Any], previous: Mapping[str, Any], *, free: Iterable[str] = ()) -> list[str]:
    """Names of the settings whose value in ``current`` differs from ``previous``.

    Settings in ``free`` may change; a setting ``previous`` does not have (a
    file written before it existed) is not compared. Values are compared as
    JSON would store them (tuples as lists).
    """
    current = json.loads(json.dumps(dict(current)))
    free = set(free)
    return [
        key for key, value in current.items() if key not in free and key in previous and previous[key] != value
    ]


def changed_settings_message(
    output_dir: str | Path,
    settings_file: str | Path,
    previous: Mapping[str, Any],
    current: Mapping[str, Any],
    changed: Iterable[str],
    *,
    overwrite: bool,
) -> str:
    """The refusal to resume the run in ``output_dir`` with ``changed`` settings, old and new values named."""
    listed = ", ".join(f"{key} {previous[key]!r} -> {current[key]!r}" for key in changed)
    elsewhere = "another output_dir, or --overwrite" if overwrite else "another output_dir"
    return (
        f"cannot resume the run in {output_dir}: settings changed since it began ({listed}); restore them "
        f"(they are in {settings_file}), or start a new run ({elsewhere})"
    )


def earlier_run_message(output_dir: str | Path, found: str, *, overwrite: bool) -> str:
    """The refusal to start a new run in ``output_dir``, which holds ``found`` of an earlier one."""
    replace = "pass --overwrite to replace it, " if overwrite else ""
    return (
        f"output_dir {output_dir} holds an earlier run ({found}): pass --resume to continue it, {replace}"
        "or choose another output_dir"
    )


# -- reporting what the file system refused ------------------------------------------


def _exception_chain(err: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        yield current
        current = current.__cause__ or current.__context__


def _free_space_note() -> str:
    """Free space of the folder this process locked last (``""`` when none)."""
    for folder in reversed(_locked_folders):
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(folder).free
            if free < 1 << 20:
                return f"; the disk of {folder} is full ({free} bytes free)"
            return f"; {free / 2**20:.0f} MiB free at {folder}"
    return ""


def storage_error_message(err: BaseException) -> str | None:
    """One line for an error that means the file system refused a write, or ``None`` for anything else.

    Recognised: an ``OSError`` with one of :data:`STORAGE_ERRNOS` (anywhere in
    the exception's chain), an I/O error that a Rust library (safetensors)
    reports as ``(os error N)``, and torch's failed checkpoint writes, which
    carry no errno (the free space where the run writes is added).
    """
    for cause in _exception_chain(err):
        if isinstance(cause, OSError) and cause.errno in STORAGE_ERRNOS:
            where = cause.filename if cause.filename is not None else "the output"
            return f"cannot write {where}: {STORAGE_ERRNOS[cause.errno]} ({cause.strerror or os.strerror(cause.errno)})"
        text = str(cause)
        match = re.search(r"\(os error (\d+)\)", text)
        if match and int(match.group(1)) in STORAGE_ERRNOS:
            code = int(match.group(1))
            where = f"under {_locked_folders[-1]}" if _locked_folders else "the output"
            return f"cannot write {where}: {STORAGE_ERRNOS[code]} ({os.strerror(code)})"
        if isinstance(cause, RuntimeError) and ("PytorchStreamWriter" in text or "inline_container.cc" in text):
            first = text.strip().splitlines()[0] if text.strip() else "no detail"
            return f"writing a torch file failed ({first}){_free_space_note()}"
    return None
