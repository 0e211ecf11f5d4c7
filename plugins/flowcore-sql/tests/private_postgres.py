"""A PostgreSQL server of a test's own: a new cluster in a temporary directory, on a free port.

A test that restarts or stops a server uses one of these, never the shared server other test
runs are using at the same time. initdb and postgres refuse to run as root, so as root they run
as the ``postgres`` user, in a directory it owns.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

__all__ = ["PrivateServer", "private_server", "unavailable"]

_BINARIES = Path("/usr/lib/postgresql")


def _bin_dir() -> Path | None:
    """The newest installed PostgreSQL's binaries (Debian's layout), or None."""
    if not _BINARIES.is_dir():
        return None
    versions = sorted(
        (p for p in _BINARIES.iterdir() if (p / "bin" / "initdb").is_file()),
        key=lambda p: [int(x) for x in p.name.split(".") if x.isdigit()],
    )
    return versions[-1] / "bin" if versions else None


def unavailable() -> str | None:
    """Why a private server cannot be made here, or None when it can."""
    if _bin_dir() is None:
        return f"no PostgreSQL binaries (initdb, pg_ctl) under {_BINARIES}"
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return "running as root, without runuser to run PostgreSQL as the postgres user"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root, and there is no postgres user to run PostgreSQL as"
    return None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class PrivateServer:
    """A running cluster: its URL, and restart()."""

    def __init__(self, directory: Path, port: int) -> None:
        self.directory = directory
        self.port = port
        self.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
        self._data = directory / "data"
        self._bin = _bin_dir()

    def _run(self, program: str, *args: str) -> None:
        assert self._bin is not None
        command = [str(self._bin / program), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
        if done.returncode != 0:
            log = self.directory / "server.log"
            tail = log.read_text(errors="replace")[-2000:] if log.exists() else ""
            raise RuntimeError(f"{program} {' '.join(args)} failed: {done.stderr}{tail}")

    def _pg_ctl(self, action: str, *args: str) -> None:
        options = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -k {self.directory} "
            "-c fsync=off -c full_page_writes=off"
        )
        log = str(self.directory / "server.log")
        self._run("pg_ctl", action, "-D", str(self._data), "-o", options, "-l", log, *args)

    def create(self) -> None:
        self._run("initdb", "-D", str(self._data), "-A", "trust", "-U", "postgres", "--no-sync")
        self._pg_ctl("start", "-w", "-t", "60")

    def restart(self) -> None:
        """Stop the server (its clients' connections break) and start it again."""
        self._pg_ctl("restart", "-w", "-t", "60", "-m", "fast")

    def stop(self) -> None:
        with contextlib.suppress(RuntimeError):
            self._pg_ctl("stop", "-w", "-t", "60", "-m", "immediate")


@contextlib.contextmanager
def private_server() -> Iterator[PrivateServer]:
    """A new server for the duration of the block, removed afterwards with its files."""
    directory = Path(tempfile.mkdtemp(prefix="flowcore-postgres-"))
    if os.geteuid() == 0:
        postgres = pwd.getpwnam("postgres")
        os.chown(directory, postgres.pw_uid, postgres.pw_gid)
    server = PrivateServer(directory, _free_port())
    try:
        server.create()
        yield server
    finally:
        server.stop()
        shutil.rmtree(directory, ignore_errors=True)
