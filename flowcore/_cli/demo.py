"""``flowcore demo``: run the insurance-claim demo of a source checkout, as its own process."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from flowcore._cli.errors import CliError

__all__ = ["DEMO_COMMAND_ENV", "demo_command", "find_demo", "own_command"]


def find_demo() -> Path | None:
    """examples/claim_demo.py of the source tree flowcore runs from, or of the current
    directory; None when neither has one (an installed package ships no examples)."""
    import flowcore

    for root in (Path(flowcore.__file__).resolve().parent.parent, Path.cwd()):
        demo = root / "examples" / "claim_demo.py"
        if demo.is_file():
            return demo
    return None


def demo_command(args: list[str]) -> int:
    demo = find_demo()
    if demo is None:
        raise CliError(
            "the demo is a script of flowcore's source repository (examples/claim_demo.py), "
            "not part of the installed package: run `make demo` in a checkout, or "
            "`flowcore demo` from its root"
        )
    # A process of its own, as `python examples/claim_demo.py` would be: the demo starts a
    # second process itself, to show a claim outliving the first one. It tells how to continue
    # a claim with the command the user typed, which works where they are.
    env = {**os.environ, DEMO_COMMAND_ENV: f"{own_command()} demo"}
    return subprocess.run([sys.executable, str(demo), *args], check=False, env=env).returncode


DEMO_COMMAND_ENV = "FLOWCORE_DEMO_COMMAND"
"""How the demo (examples/claim_demo.py) learns the command that started it."""


def own_command() -> str:
    """This command as the user can type it again in the current directory: ``flowcore`` when
    that name finds it on PATH, else its path; ``PYTHON -m flowcore`` when run as a module."""
    started = os.path.abspath(sys.argv[0]) if sys.argv and sys.argv[0] else ""
    if os.path.splitext(os.path.basename(started))[0] != "flowcore":
        return f"{_typed_command(sys.executable)} -m flowcore"  # or main() called from code
    return _typed_command(started)


def _typed_command(path: str) -> str:
    """The program at ``path`` as typed here: its name if PATH finds it under that name, else
    its path, relative below the current directory, else absolute; quoted for a shell."""
    path = os.path.abspath(path)
    name = os.path.basename(path)
    found = shutil.which(name)
    if found is not None and os.path.abspath(found) == path:
        return name
    try:
        relative = os.path.relpath(path)
    except ValueError:  # on another drive
        relative = os.pardir
    if not relative.startswith(os.pardir):
        path = relative if os.sep in relative else os.path.join(os.curdir, relative)
    return shlex.quote(path)
