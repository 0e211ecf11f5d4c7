"""The ``flowcore`` command (and ``python -m flowcore``): :func:`main` runs a command line.

One module per concern: ``main`` parses and dispatches and turns failures into one line,
``sessions`` and ``sessions_migrate`` serve ``flowcore sessions ...`` and ``flowcore db``,
``graph`` serves ``flowcore graph``.
"""

from __future__ import annotations

from flowcore._cli.main import main

__all__ = ["main"]
