"""``run_flowcore``: the ``flowcore`` command, run as a user runs it, for a test to check."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

__all__ = ["run_flowcore"]


def run_flowcore(
    *args: str,
    load_plugins: str | None = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 60.0,
    prefix: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Run ``flowcore *args`` in a process of its own (``python -m flowcore``, this Python) and
    return what it did: ``returncode``, ``stdout`` and ``stderr`` as text.

    ``load_plugins`` sets ``FLOWCORE_LOAD_PLUGINS`` for it (``"sql"``, say: a test process
    that loads no plugins still gets the command a user has); ``env`` adds to this process's
    environment, and wins over ``load_plugins``; ``prefix`` is a command it runs under
    (``["faketime", "+2h"]``, say).
    """
    extra = {} if load_plugins is None else {"FLOWCORE_LOAD_PLUGINS": load_plugins}
    extra.update(env or {})
    return subprocess.run(
        [*prefix, sys.executable, "-m", "flowcore", *args],
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
        timeout=timeout,
        cwd=cwd,
        env={**os.environ, **extra},
    )
