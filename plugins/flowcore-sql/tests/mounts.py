"""Real file systems for SQLite's tests: a read-only view of a directory. It is a mount, which
needs root: a test that cannot mount is skipped, saying why.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

__all__ = ["read_only_view"]


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
