"""The ``flowcore`` command: ``flowcore plugins [--all] [--hook NAME]``."""

from __future__ import annotations

import argparse
import json
import sys
import warnings
from collections.abc import Sequence
from typing import NoReturn

from flowcore import _plugins
from flowcore._errors import PluginWarning
from flowcore._hooks import HookSpecs

__all__ = ["main"]

_HOOKS = sorted(name for name in vars(HookSpecs) if name.startswith("flowcore_"))


class _Parser(argparse.ArgumentParser):
    """Reports a bad command line in one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parser() -> _Parser:
    parser = _Parser(prog="flowcore", description="flowcore's command line.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    plugins = commands.add_parser(
        "plugins",
        help="list the installed plugins, their versions and hooks as JSON",
        description="List the installed plugins (entry-point group 'flowcore'), their "
        "distributions, versions and hooks, and what went wrong loading them, as JSON.",
    )
    plugins.add_argument(
        "--all",
        action="store_true",
        help="also list the built-in plugin and the plugins FLOWCORE_LOAD_PLUGINS leaves out",
    )
    plugins.add_argument(
        "--hook",
        metavar="NAME",
        help=f"only the plugins implementing hook NAME ({', '.join(_HOOKS)})",
    )
    return parser


def _plugins_command(parser: _Parser, show_all: bool, hook: str | None) -> int:
    if hook is not None and hook not in _HOOKS:
        parser.error(f"unknown hook '{hook}'; the hooks are: {', '.join(_HOOKS)}")
    with warnings.catch_warnings():
        # The listing reports each broken plugin in its "errors"; no need to warn as well.
        warnings.simplefilter("ignore", PluginWarning)
        infos = _plugins.plugin_infos()
    listed = [
        {
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "module": info.module,
            "origin": info.origin,
            "status": info.status,
            "hooks": info.hooks,
            "errors": info.errors,
        }
        for info in sorted(infos, key=lambda i: (i.origin != "builtin", i.name))
        if (show_all or (info.origin != "builtin" and info.status != "excluded"))
        and (hook is None or hook in info.hooks)
    ]
    print(json.dumps(listed, indent=2, ensure_ascii=False))
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    parser = _parser()
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    if args.command == "plugins":
        return _plugins_command(parser, args.all, args.hook)
    parser.error(f"unknown command '{args.command}'")  # pragma: no cover (argparse checks)
