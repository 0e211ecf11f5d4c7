"""The ``flowcore`` command (and ``python -m flowcore``): :func:`main` runs a command line.

``main`` parses the command line, dispatches, and turns a failure into one line; each command
lives in the module named for it (``sessions``, ``sessions_migrate``, ``db``, ``graph``,
``plugins``, ``demo``); ``errors`` holds :class:`CliError`, the failure a user can fix.
"""

from __future__ import annotations

from flowcore._cli.main import main

__all__ = ["main"]
