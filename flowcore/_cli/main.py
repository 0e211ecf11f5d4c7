"""The ``flowcore`` command: the parser, the dispatch, and one line per failure.

    flowcore --version
    flowcore demo [ARGS...]
    flowcore plugins [--all] [--hook NAME]
    flowcore sessions list|show|delete|cleanup --storage URL [--import MODULE]...
    flowcore sessions migrate --graph MODULE:ATTR --storage URL [--dry-run]
    flowcore graph MODULE:ATTR [--format mermaid|text]
    flowcore db migrate [URL] [--import MODULE]...

A failure the user can fix (a bad URL, an unknown id, a database that does not answer) exits
with status 1 and one line on stderr that says what is wrong and what to do; a bad command line
exits with status 2. Anything else is a bug, reported in one line with exit status 1 too. None
prints a traceback (unless FLOWCORE_TRACEBACK=1 asks for one, for a bug report).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import sys
import traceback
from collections.abc import Sequence
from typing import NoReturn

from flowcore import _extensions
from flowcore._cli.db import db_migrate_command
from flowcore._cli.demo import demo_command
from flowcore._cli.errors import CliError
from flowcore._cli.graph import graph_as_text, import_user_module, load_graph
from flowcore._cli.plugins import plugins_command
from flowcore._cli.sessions import cleanup_command, delete_command, list_command, show_command
from flowcore._cli.sessions_migrate import sessions_migrate_command
from flowcore._errors import GraphError
from flowcore._hooks import HOOK_NAMES

__all__ = ["main"]

STORAGE_ENV = "FLOWCORE_STORAGE"
"""The environment variable ``--storage`` (and ``db migrate``'s URL) defaults to."""

_HOOKS = sorted(HOOK_NAMES)


class _Parser(argparse.ArgumentParser):
    """Reports a bad command line in one line, without the usage block."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def version_text() -> str:
    """What ``flowcore --version`` prints: the version and which hot path is active."""
    import flowcore

    if flowcore.COMPILED:
        core = "compiled core: active"
    elif _extensions.NO_EXTENSIONS:
        core = "compiled core: off (FLOWCORE_NO_EXTENSIONS is set), running pure Python"
    else:
        core = "compiled core: not built, running pure Python"
    python = f"{platform.python_implementation()} {platform.python_version()}"
    return f"flowcore {flowcore.__version__} ({python}), {core}"


class _VersionAction(argparse.Action):
    def __init__(self, option_strings: Sequence[str], dest: str, **kwargs: object) -> None:
        super().__init__(option_strings, dest, nargs=0, help="print the version and exit")

    def __call__(self, parser: argparse.ArgumentParser, *args: object) -> NoReturn:
        print(version_text())
        parser.exit(0)


def _parser() -> _Parser:
    parser = _Parser(
        prog="flowcore",
        description="flowcore's command line: inspect stored sessions, graphs and plugins.",
    )
    parser.add_argument("--version", action=_VersionAction)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    demo = commands.add_parser(
        "demo",
        help="run the insurance-claim demo (in a source checkout)",
        description="Run examples/claim_demo.py, the insurance-claim demo of flowcore's source "
        "repository, with the arguments given (e.g. --interactive). The demo is not part of "
        "the installed package: this works in a checkout or next to its examples/ directory.",
    )
    demo.add_argument("args", nargs="*", metavar="ARG", help="passed on to the demo")

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

    _add_sessions(commands)

    graph = commands.add_parser(
        "graph",
        help="draw a graph as a Mermaid chart or as text",
        description="Import MODULE and draw ATTR: a Graph, a GraphBuilder, or a function "
        "that returns one (called with no arguments). The current directory is on the "
        "import path.",
    )
    graph.add_argument("target", metavar="MODULE:ATTR", help="e.g. examples.claim_demo:build_graph")
    graph.add_argument(
        "--format",
        choices=("mermaid", "text"),
        default="mermaid",
        help="Mermaid flowchart (default) or an indented list of tasks and edges",
    )

    db = commands.add_parser("db", help="manage a database backend's schema")
    db_commands = db.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    migrate = db_commands.add_parser(
        "migrate",
        help="apply the migrations the database lacks",
        description="Create or upgrade the tables of a storage backend that has migrations "
        "(e.g. flowcore-sql's sqlite:// and postgresql://).",
    )
    migrate.add_argument(
        "url",
        metavar="URL",
        nargs="?",
        default=os.environ.get(STORAGE_ENV) or None,
        help=f"e.g. sqlite:///sessions.db (default: ${STORAGE_ENV})",
    )
    _import_option(migrate)
    return parser


def _add_sessions(commands: argparse._SubParsersAction[_Parser]) -> None:
    sessions = commands.add_parser(
        "sessions", help="list, show, delete, migrate or clean up sessions"
    )
    actions = sessions.add_subparsers(dest="sessions_command", metavar="COMMAND", required=True)

    def storage_option(command: argparse.ArgumentParser) -> None:
        command.add_argument(
            "--storage",
            metavar="URL",
            default=os.environ.get(STORAGE_ENV) or None,
            help=f"where the sessions are, e.g. sqlite:///sessions.db (default: ${STORAGE_ENV})",
        )
        _import_option(command)

    listing = actions.add_parser(
        "list", help="print the ids of the stored sessions, one a line, sorted"
    )
    storage_option(listing)
    listing.add_argument("--limit", type=_count, metavar="N", help="at most N ids")
    listing.add_argument("--after", metavar="ID", help="only the ids after ID (for paging)")
    listing.add_argument(
        "--due",
        action="store_true",
        help="only the sessions whose wait for a time (NextAction.WaitUntil) is over, by the "
        "storage's clock, earliest first",
    )
    listing.add_argument("--json", action="store_true", help="print a JSON list instead")

    show = actions.add_parser(
        "show", help="print one session, its context and chat history decoded, as JSON"
    )
    storage_option(show)
    show.add_argument("session_id", metavar="ID")

    delete = actions.add_parser("delete", help="delete sessions")
    storage_option(delete)
    delete.add_argument("session_ids", metavar="ID", nargs="+")

    migrate = actions.add_parser(
        "migrate",
        help="bring every stored session up to a graph's version",
        description="Load every stored session of the graph (and those of no graph), apply "
        "the graph's migrations and save each with compare-and-set: one stepped meanwhile is "
        "loaded again, never overwritten. Sessions already at the version are only read, so "
        "an interrupted run is resumed by running it again. Exit status 1 if any failed.",
    )
    storage_option(migrate)
    migrate.add_argument(
        "--graph",
        required=True,
        metavar="MODULE:ATTR",
        help="the graph, as for `flowcore graph`, e.g. myapp.flows:claims",
    )
    migrate.add_argument(
        "--dry-run",
        action="store_true",
        help="run the migrations without saving, and report what would fail",
    )
    migrate.add_argument(
        "--batch", type=_count, default=100, metavar="N", help="sessions at a time (100)"
    )

    cleanup = actions.add_parser(
        "cleanup", help="delete the expired sessions (backends with expiry, e.g. flowcore-sql)"
    )
    storage_option(cleanup)
    cleanup.add_argument(
        "--batch", type=_count, default=1000, metavar="N", help="rows per transaction (1000)"
    )


def _import_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="import MODULE first (repeatable): the application's module that registers its "
        "codec types (flowcore.codec.register_type) or plugins (flowcore.register_plugin)",
    )


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be 1 or more, got {value}")
    return value


def _storage_url(parser: _Parser, url: str | None) -> str:
    if not url:
        parser.error(f"--storage URL is required (or set {STORAGE_ENV})")
    return url


def _run(parser: _Parser, args: argparse.Namespace) -> int:
    for module_name in getattr(args, "imports", ()):
        import_user_module(module_name)
    if args.command == "plugins":
        if args.hook is not None and args.hook not in _HOOKS:
            parser.error(f"unknown hook '{args.hook}'; the hooks are: {', '.join(_HOOKS)}")
        return plugins_command(args.all, args.hook)
    if args.command == "graph":
        graph = load_graph(args.target)
        print(graph.to_mermaid() if args.format == "mermaid" else graph_as_text(graph), end="")
        return 0
    if args.command == "db":
        if not args.url:
            parser.error(f"db migrate: URL is required (or set {STORAGE_ENV})")
        return asyncio.run(db_migrate_command(args.url))
    url = _storage_url(parser, args.storage)
    if args.sessions_command == "list":
        if args.due and args.after is not None:
            parser.error(
                "sessions list: --after pages through the sorted ids; --due lists the due "
                "sessions earliest first, to take with --limit N"
            )
        return asyncio.run(
            list_command(url, limit=args.limit, after=args.after, as_json=args.json, due=args.due)
        )
    if args.sessions_command == "show":
        return asyncio.run(show_command(url, args.session_id))
    if args.sessions_command == "delete":
        return asyncio.run(delete_command(url, args.session_ids))
    if args.sessions_command == "migrate":
        graph = load_graph(args.graph)
        return asyncio.run(
            sessions_migrate_command(url, graph, dry_run=args.dry_run, batch=args.batch)
        )
    return asyncio.run(cleanup_command(url, batch=args.batch))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line ``argv`` (default ``sys.argv[1:]``); returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = _parser()
    try:
        if argv[:1] == ["demo"]:
            # Everything after `demo` is the demo's, options and --help included.
            return demo_command(argv[1:])
        return _run(parser, parser.parse_args(argv))
    except CliError as exc:
        print(f"flowcore: {_one_line(str(exc))}", file=sys.stderr)
    except GraphError as exc:  # StorageError for a bad URL or a database that does not answer
        print(f"flowcore: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
    except BrokenPipeError:
        # The reader had enough (`flowcore sessions list | head`): not a failure to report.
        # Python would flush stdout again at exit, and fail again: point it at nothing.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except OSError as exc:
        print(f"flowcore: {_one_line(str(exc))}", file=sys.stderr)
    except KeyboardInterrupt:
        print("flowcore: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, in flowcore or in a plugin: still one line
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            traceback.print_exception(exc)
        print(f"flowcore: {unexpected_error(exc)}", file=sys.stderr)
    return 1


TRACEBACK_ENV = "FLOWCORE_TRACEBACK"
"""Set to 1 to print the traceback of an unexpected error as well, for a bug report."""

_MESSAGE_LIMIT = 500
"""How many characters of an unexpected exception's text the one line quotes."""


def unexpected_error(exc: BaseException) -> str:
    """The one line for an exception no command expects: its type and text, and what to do."""
    text = _one_line(str(exc))
    if len(text) > _MESSAGE_LIMIT:
        text = f"{text[:_MESSAGE_LIMIT]}… ({len(text):,} characters)"
    return (
        f"unexpected {type(exc).__name__}{': ' if text else ''}{text}; this is a bug in "
        "flowcore or in a plugin: please report it with the command you ran (set "
        f"{TRACEBACK_ENV}=1 to print the traceback too)"
    )
