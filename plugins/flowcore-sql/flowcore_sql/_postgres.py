"""PostgresSessionStorage: sessions in PostgreSQL, through asyncpg on an async SQLAlchemy engine.

The engine owns the connections (its pool settings are the storage's) and runs the migrations.
A step's load and save take the short road: the statements, built with SQLAlchemy Core, are
compiled once per storage (``_compiled``) and sent straight to the asyncpg connection underneath,
on a connection the storage keeps checked out between statements. Measured on loopback, a pool
checkout and an execute through SQLAlchemy cost more than the statement itself, which would
double a step; this way a step costs little more than the two round trips it needs.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import asyncpg
import sqlalchemy as sa
from asyncpg import exceptions as pg
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine
from sqlalchemy.sql import Executable

from flowcore import StorageError, resolve_storage_options
from flowcore_sql._compiled import CompiledStatement
from flowcore_sql._leases import Leases
from flowcore_sql._migrate import LATEST_VERSION, apply_migrations, schema_version
from flowcore_sql._options import POSTGRES_OPTIONS
from flowcore_sql._statements import STATEMENTS
from flowcore_sql._storage import Row, SqlSessionStorage, root_error
from flowcore_sql._urls import postgres_url

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from flowcore_sql._options import PostgresOptions

__all__ = ["PostgresSessionStorage"]

_MIGRATION_LOCK = 0x666C6F77636F7265  # "flowcore": the advisory lock migrations take


class PostgresSessionStorage(SqlSessionStorage):
    """Sessions in the PostgreSQL database at ``url`` (``postgresql://user:password@host/db``).

    - ``ttl``, ``migrate``: as for every SQL storage (see :class:`SqlSessionStorage`). Expiry
      is judged by the server's clock (``now()``), whatever the clocks of its clients say.
    - ``schema``: the PostgreSQL schema for flowcore's tables (created by the migrations when
      missing); None, the default, uses the connection's search path (usually ``public``).
    - ``pool_size``, ``max_overflow``, ``pool_timeout``, ``pool_recycle``, ``pool_pre_ping``:
      SQLAlchemy's pool settings. At most ``pool_size + max_overflow`` connections are open; a
      step that finds none free waits up to ``pool_timeout`` seconds, then fails.
    - ``connect_timeout``: seconds to wait for a new connection (default 10);
      ``command_timeout``: seconds any one statement may take (default 30; None: no limit). The
      server rolls back a statement that takes longer; a server that stops answering is given
      twice as long, then its connection is closed. So an unreachable or stuck server fails a
      step with StorageError instead of hanging it.
    - ``prepared_statements``: False for a pooler that cannot keep prepared statements
      (PgBouncer in transaction mode): statements are then prepared unnamed, every time, and
      no session setting is sent at connect (``command_timeout`` is then kept by the client).
    - ``engine_options``: more keyword arguments for ``create_async_engine``.

    Options may also be given in the URL's query (``?ttl=3600&pool_size=10``), beside the
    connection's own ``host``, ``port``, ``ssl`` (or libpq's ``sslmode``) and
    ``target_session_attrs``. The URL must name the host and the database.
    """

    _nul_in_text: ClassVar[bool] = False

    _dialect: ClassVar[str] = "postgresql"

    _driver_errors: ClassVar[tuple[type[BaseException], ...]] = (
        SQLAlchemyError,
        asyncpg.PostgresError,
        asyncpg.InterfaceError,
        asyncpg.InternalClientError,  # e.g. a connection caught reading the server's goodbye
        OSError,
        asyncio.TimeoutError,
        TimeoutError,
    )

    def __init__(self, url: str, **options: Unpack[PostgresOptions]) -> None:
        address = postgres_url(url)
        values = resolve_storage_options(
            POSTGRES_OPTIONS, options, address.options, address.shown, connection=address.connection
        )
        super().__init__(address.shown, ttl=values["ttl"], migrate=values["migrate"])
        engine_url = address.engine_url
        schema: str | None = values["schema"]
        pool_size: int = values["pool_size"]
        max_overflow: int = values["max_overflow"]
        pool_timeout: float = values["pool_timeout"]
        pool_recycle: float = values["pool_recycle"]
        connect_timeout: float = values["connect_timeout"]
        command_timeout: float | None = values["command_timeout"]
        prepared_statements: bool = values["prepared_statements"]
        self._engine_url = engine_url
        self._schema = schema
        self._connect_timeout = connect_timeout
        self._prepared_statements = prepared_statements
        self._command_timeout = command_timeout
        server_settings = {"application_name": "flowcore"}
        if command_timeout is not None and prepared_statements:
            # The server stops a statement that runs too long (a lock wait included) and rolls
            # it back, so a step that times out is known not to have been saved. A pooler
            # would refuse this setting; there only the watchdog below keeps the limit.
            server_settings["statement_timeout"] = str(max(1, round(command_timeout * 1000)))
        # The client-side watchdog catches what the server cannot report: a server that no
        # longer answers at all. With the server's own timeout it leaves it time to act first.
        watch_limit = (
            None
            if command_timeout is None
            else command_timeout * (2 if "statement_timeout" in server_settings else 1)
        )
        connect_args: dict[str, Any] = {
            "timeout": connect_timeout,
            "server_settings": server_settings,
        }
        if not prepared_statements:
            connect_args.update(
                statement_cache_size=0,  # asyncpg's own cache: our statements go unnamed
                prepared_statement_cache_size=0,  # SQLAlchemy's cache (migrations)
                prepared_statement_name_func=_unique_statement_name,
            )
        extra = dict(values["engine_options"] or {})
        connect_args.update(extra.pop("connect_args", {}))
        if schema is not None:
            execution_options = dict(extra.pop("execution_options", {}))
            execution_options["schema_translate_map"] = {None: schema}
            extra["execution_options"] = execution_options
        self._engine_options: dict[str, Any] = {
            "pool_size": pool_size,
            "max_overflow": max_overflow,
            "pool_timeout": pool_timeout,
            "pool_recycle": pool_recycle,
            "pool_pre_ping": values["pool_pre_ping"],
            "connect_args": connect_args,
            **extra,
        }
        self._engine: AsyncEngine | None = None
        self._statements: dict[int, CompiledStatement] = {}
        self._leases = Leases(
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=pool_timeout,
            pool_recycle=pool_recycle,
            command_timeout=command_timeout,
            watch_limit=watch_limit,
        )

    @classmethod
    async def connect(cls, url: str, **options: Unpack[PostgresOptions]) -> PostgresSessionStorage:
        """Connect to ``url`` and apply the migrations (unless ``migrate=False``), as graph-flow's
        ``PostgresSessionStorage::connect`` does. Close it with ``await storage.close()``."""
        storage = cls(url, **options)
        await storage.__aenter__()
        return storage

    @property
    def schema(self) -> str | None:
        """The schema of flowcore's tables (None: the search path's)."""
        return self._schema

    @property
    def engine(self) -> AsyncEngine | None:
        """The SQLAlchemy engine, once connected (None before)."""
        return self._engine

    # -- connecting --------------------------------------------------------------------------------

    async def _open(self) -> None:
        try:
            engine = create_async_engine(self._engine_url, **self._engine_options)
        except (TypeError, ValueError) as exc:
            raise StorageError(
                f"Could not open {self._url}: SQLAlchemy refused the engine_options "
                f"({type(exc).__name__}: {exc}); correct or drop them"
            ) from None
        translate: dict[str | None, str] | None = (
            None if self._schema is None else {None: self._schema}
        )
        self._statements = {
            id(statement): CompiledStatement(statement, engine.dialect, translate)
            for statement in STATEMENTS[self._dialect].all
        }
        self._engine = engine
        try:
            await self._leases.open(engine)  # fails now if it cannot connect
        except BaseException:
            self._engine = None
            await engine.dispose()
            raise

    async def _close(self) -> None:
        await self._leases.close()
        assert self._engine is not None
        await self._engine.dispose()

    async def _apply_migrations(self) -> list[int]:
        leases = self._leases
        lease = await leases.acquire()
        connection = lease.connection  # SQLAlchemy's connection over the same asyncpg one
        leases.busy(lease)
        try:
            version = await connection.run_sync(schema_version, self._schema)
            await connection.rollback()
            if version >= LATEST_VERSION:
                applied: list[int] = []  # the usual case: no lock taken
            else:
                async with connection.begin():
                    # Transaction-scoped, so a pooler in transaction mode keeps it:
                    # concurrent starts wait here, then find the migrations applied.
                    lock = sa.select(sa.func.pg_advisory_xact_lock(_MIGRATION_LOCK))
                    await connection.execute(lock)
                    applied = await connection.run_sync(apply_migrations, self._schema)
        except BaseException as exc:
            await leases.failed(lease, exc)
            raise
        leases.done(lease)
        await leases.release(lease)
        return applied

    # -- statements (compiled once, sent straight to asyncpg) --------------------------------------

    async def _first(self, statement: Executable, params: Mapping[str, Any]) -> Row | None:
        prepared = self._statements[id(statement)]
        row: Row | None = prepared.row(
            await self._leases.run(prepared.sql, prepared.args(params), "row")
        )
        return row

    async def _all(self, statement: Executable, params: Mapping[str, Any]) -> list[Row]:
        prepared = self._statements[id(statement)]
        rows = await self._leases.run(prepared.sql, prepared.args(params), "rows")
        return [prepared.row(row) for row in rows]

    async def _rowcount(self, statement: Executable, params: Mapping[str, Any]) -> int:
        prepared = self._statements[id(statement)]
        status: str = await self._leases.run(prepared.sql, prepared.args(params), "status")
        return int(status.rpartition(" ")[2])  # "UPDATE 1", "INSERT 0 1", "DELETE 3"

    # -- messages ----------------------------------------------------------------------------------

    def _connection_lost(self, exc: BaseException) -> bool:
        """True when ``exc`` says the connection broke (so a statement's outcome is unknown)."""
        if isinstance(exc, DBAPIError) and exc.connection_invalidated:
            return True
        root = root_error(exc)
        if isinstance(root, pg.QueryCanceledError):
            return False  # the server cancelled the statement and rolled it back
        return isinstance(
            root,
            (
                OSError,
                asyncio.TimeoutError,
                TimeoutError,
                pg.PostgresConnectionError,
                pg.OperatorInterventionError,  # e.g. the server shutting down
                asyncpg.InterfaceError,
                asyncpg.InternalClientError,
            ),
        )

    def _save_outcome(self, exc: BaseException) -> str | None:
        if self._connection_lost(exc):
            return (
                "The connection broke during the save, which may have been stored all the "
                "same: load the session to see its version"
            )
        if isinstance(root_error(exc), asyncpg.PostgresError):
            return "The server rolled the save back: nothing was stored"
        return None

    def _hint(self, exc: BaseException) -> str | None:
        root = root_error(exc)
        if isinstance(exc, PoolTimeout):
            return (
                f"All {self._leases.capacity} connections (pool_size + max_overflow) stayed in "
                "use: raise them, or pool_timeout"
            )
        if isinstance(root, pg.QueryCanceledError) and self._command_timeout is not None:
            return (
                f"The statement ran longer than command_timeout ({self._command_timeout:g}s), "
                "so the server cancelled it: another transaction may hold the session's row"
            )
        if isinstance(root, pg.UndefinedTableError):
            return "The tables are missing: run `await storage.migrate()`"
        if isinstance(root, pg.UndefinedColumnError):
            return self._outdated_schema()
        if isinstance(root, pg.InvalidCatalogNameError):
            return "Create the database, or correct its name in the URL"
        if isinstance(root, pg.InvalidAuthorizationSpecificationError):
            return "Check the user name and password in the URL"
        if isinstance(root, (pg.InvalidSQLStatementNameError, pg.DuplicatePreparedStatementError)):
            return (
                "Behind a pooler that cannot keep prepared statements (PgBouncer in transaction "
                "mode), open the storage with prepared_statements=False"
            )
        if self._connection_lost(exc):
            return (
                "Check that the PostgreSQL server is running and reachable at this address "
                f"(connect_timeout={self._connect_timeout:g}s)"
            )
        return None


def _unique_statement_name() -> str:
    # SQLAlchemy names its prepared statements; behind a pooler a name must never repeat.
    return f"__asyncpg_{uuid.uuid4()}__"
