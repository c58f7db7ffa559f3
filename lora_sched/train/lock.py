"""One run per output folder: an exclusive lock on ``output_dir/.lora-sched.lock`` for the whole run.

The lock is an OS file lock (``flock`` on POSIX, ``msvcrt.locking`` on Windows), so the OS
releases it when the holder exits in any way, a kill -9 included: a stale lock file never blocks
a later run. The file records who holds it (pid, host, start time, command), for the error a
second run gets.
"""

from __future__ import annotations

import json
import os
import socket
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from lora_sched.errors import ConfigError, problem, raw

LOCK_NAME = ".lora-sched.lock"


class OutputLock:
    """``with OutputLock(output_dir):`` holds the folder's lock (creating the folder) or raises ConfigError."""

    def __init__(self, output_dir: Path) -> None:
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / LOCK_NAME
        self._fd: int | None = None

    def __enter__(self) -> OutputLock:
        try:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise ConfigError(
                problem(
                    "output_dir",
                    "a folder this user can create and write",
                    str(self.output_dir),
                    f"{exc.filename or self.output_dir}: {exc.strerror or exc}; choose another output_dir",
                )
            ) from None
        if not _try_lock(fd):
            holder = _read_holder(fd)
            os.close(fd)
            raise ConfigError(
                problem(
                    "output_dir",
                    "a folder no other run is writing to",
                    raw(f"{self.output_dir}, in use by {holder}"),
                    "wait for that run to finish (or stop it), or choose another output_dir",
                )
            )
        self._fd = fd
        _write_holder(fd)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is not None:
            _unlock(self._fd)
            os.close(self._fd)
            self._fd = None


def _holder_record() -> dict[str, Any]:
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(sys.argv)[:500],
    }


def _write_holder(fd: int) -> None:
    os.ftruncate(fd, 0)
    os.lseek(fd, 0, os.SEEK_SET)
    os.write(fd, json.dumps(_holder_record()).encode())


def _read_holder(fd: int) -> str:
    try:
        os.lseek(fd, 0, 0)
        record = json.loads(os.read(fd, 4096).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        record = {}
    if not isinstance(record, dict) or "pid" not in record:
        return "another lora-sched run (it has not recorded itself yet)"
    return (
        f"pid {record.get('pid')} on {record.get('host')}, started {record.get('started')} "
        f"({record.get('command') or 'lora-sched train'})"
    )


if os.name == "nt":  # pragma: no cover - exercised on Windows only
    import msvcrt

    _LOCKED_BYTE = 1 << 20  # Windows locks are mandatory: lock a byte past the holder record, so it stays readable

    def _try_lock(fd: int) -> bool:
        try:
            os.lseek(fd, _LOCKED_BYTE, os.SEEK_SET)
            msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        os.lseek(fd, _LOCKED_BYTE, os.SEEK_SET)
        msvcrt.locking(fd, msvcrt.LK_UNLCK, 1)

else:
    import fcntl

    def _try_lock(fd: int) -> bool:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            return False
        return True

    def _unlock(fd: int) -> None:
        fcntl.flock(fd, fcntl.LOCK_UN)
