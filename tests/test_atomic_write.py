"""The atomic writer every output goes through (LoRA, CSV, TOML, PNG): permissions like any other
tool's new file (0o666 less the umask), an existing file's mode kept, never a half-written file."""

from __future__ import annotations

import os
import stat
import sys

import pytest

from lora_sched.config.writer import atomic_write_bytes, atomic_write_text, current_umask

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="POSIX permission bits")


@pytest.fixture
def umask():
    """Set a umask for the test, restore the previous one after."""
    previous = os.umask(0o022)
    os.umask(previous)
    yield lambda mask: os.umask(mask)
    os.umask(previous)


def mode(path) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o002, 0o664), (0o077, 0o600)])
def test_new_files_honour_the_umask(tmp_path, umask, mask, expected):
    umask(mask)
    assert current_umask() == mask
    atomic_write_text(tmp_path / "a.toml", "x = 1\n")
    atomic_write_bytes(tmp_path / "b.safetensors", b"\0" * 10)
    assert mode(tmp_path / "a.toml") == mode(tmp_path / "b.safetensors") == expected


def test_an_existing_file_keeps_its_mode_and_is_replaced_whole(tmp_path, umask):
    umask(0o022)
    target = tmp_path / "log.csv"
    target.write_text("old\n")
    os.chmod(target, 0o640)
    atomic_write_text(target, "new\n")
    assert target.read_text() == "new\n" and mode(target) == 0o640


def test_a_failed_write_leaves_the_old_file_and_no_temporary(tmp_path, monkeypatch):
    target = tmp_path / "lora.safetensors"
    target.write_bytes(b"old")

    def broken_fsync(fd):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", broken_fsync)
    with pytest.raises(OSError, match="No space left"):
        atomic_write_bytes(target, b"new" * 1000)
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["lora.safetensors"]
