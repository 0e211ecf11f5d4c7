"""Real file systems for SQLite's tests: a small disk that fills up, a read-only view of a
directory. Both are mounts, which need root: a test that cannot mount is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["fill", "read_only_view", "small_disk"]


def _mount(*args: str) -> None:
    done = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount here (needs root and mount rights): {done.stderr.strip()}")


def _unmount(target: Path) -> None:
    """Unmount ``target``, waiting a little for files still closing; lazily as a last resort."""
    for _ in range(50):
        if subprocess.run(["umount", str(target)], capture_output=True, check=False).returncode:
            time.sleep(0.1)
        else:
            return
    subprocess.run(["umount", "--lazy", str(target)], capture_output=True, check=False)


@contextlib.contextmanager
def small_disk(target: Path, size: str) -> Iterator[Path]:
    """A file system of ``size`` (e.g. "2m") mounted on ``target`` (tmpfs, size-limited)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small disk needs root")
    target.mkdir(parents=True, exist_ok=True)
    _mount("-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(target))
    try:
        yield target
    finally:
        _unmount(target)


@contextlib.contextmanager
def read_only_view(source: Path, target: Path) -> Iterator[Path]:
    """``source`` seen read-only at ``target`` (a read-only bind mount: root cannot write
    there either)."""
    if os.geteuid() != 0:
        pytest.skip("a read-only bind mount needs root")
    target.mkdir(parents=True, exist_ok=True)
    _mount("--bind", str(source), str(target))
    try:
        _mount("-o", "remount,bind,ro", str(target))
        yield target
    finally:
        _unmount(target)


def fill(directory: Path) -> Path:
    """Fill the disk holding ``directory`` with one file; the file, to remove it later."""
    filler = directory / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT)
    try:
        block = b"\0" * 4096
        with contextlib.suppress(OSError):  # ENOSPC: full
            while True:
                os.write(descriptor, block)
    finally:
        os.close(descriptor)
    return filler
