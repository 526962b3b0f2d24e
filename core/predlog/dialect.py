"""What differs between the engines the log runs on, and nothing else: how to connect, the
parameter style, how to sample rows evenly, how to lock, and which errors mean "the database is
unavailable" (raised as ``LogUnavailableError``: the service answers 503 with ``Retry-After``).
A row the database refuses for its content raises the engine's own error, so a group commit can
isolate it. Every table's code (core/predlog/*.py) is written once, against ``Tables``."""

from __future__ import annotations

import contextlib
import functools
import math
import os
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from core.errors import LogUnavailableError
from core.predlog.schema import ADDED_COLUMNS, SCHEMA, backfill_hours, statements


class Dialect(ABC):
    """One engine's connections and SQL differences."""

    #: A non-negative integer per row, spread evenly, for ``sample``.
    sample_key: str
    #: What a SELECT inside a write transaction adds to lock the rows it reads.
    for_update: str

    @abstractmethod
    def unavailable(self) -> contextlib.AbstractContextManager[None]:
        """The engine's own failures as LogUnavailableError; a row's content errors pass."""

    @abstractmethod
    def write(self) -> contextlib.AbstractContextManager[Any]:
        """One committed transaction; yields a cursor. Rolled back if the block raises."""

    @abstractmethod
    def read(self) -> contextlib.AbstractContextManager[Any]:
        """A cursor that sees committed rows and holds up no writer."""

    def sql(self, statement: str) -> str:
        """The statement (written with ``?`` placeholders) in this engine's parameter style."""
        return statement

    def lock_table(self, cursor: Any, table: str) -> None:  # noqa: B027 - SQLite: nothing to do
        """Serialise read-decide-write transactions on ``table``."""

    @abstractmethod
    def check_writable(self) -> None:
        """Raise LogUnavailableError unless a write could start now."""

    @abstractmethod
    def close(self) -> None: ...


class SqliteDialect(Dialect):
    """SQLite in WAL mode, every commit fsynced. Thread-safe: writes go through one connection
    under a lock, one committed transaction each (BEGIN IMMEDIATE holds the write lock, so
    nothing more is needed to serialise); reads use a second connection, so a long read never
    holds up a write."""

    sample_key = "rowid"  # insertion order
    for_update = ""

    def __init__(self, path: Path, wait_s: float = 5.0) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # Ticket texts: readable by the owner only, like the store's files (SQLite gives its
        # -wal and -shm files the database file's permissions).
        os.close(os.open(path, os.O_CREAT | os.O_RDWR, 0o600))
        self.path = path
        self.wait_ms = int(wait_s * 1000)
        self._lock = threading.Lock()
        self._read_lock = threading.Lock()
        with self.unavailable():
            self.connection = self._connect(busy_timeout_ms=self.wait_ms)
            self.connection.execute("PRAGMA journal_mode=WAL")
            self.connection.executescript(SCHEMA)
            self._add_columns()
            cursor = self.connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")  # one writer at a time, across processes
            try:
                backfill_hours(cursor)
                cursor.execute("COMMIT")
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            self._reader = self._connect(busy_timeout_ms=self.wait_ms)

    def _connect(self, busy_timeout_ms: int) -> sqlite3.Connection:
        connection = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        connection.execute("PRAGMA synchronous=FULL")
        connection.execute(f"PRAGMA busy_timeout={int(busy_timeout_ms)}")
        return connection

    def _add_columns(self) -> None:
        for table, column, definition in ADDED_COLUMNS:
            existing = {row[1] for row in self.connection.execute(f"PRAGMA table_info({table})")}
            if column not in existing:
                self.connection.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    @contextlib.contextmanager
    def unavailable(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.OperationalError as exc:
            raise LogUnavailableError(f"prediction log unavailable: {exc}") from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[Any]:
        with self._lock, self.unavailable():
            cursor = self.connection.cursor()
            cursor.execute("BEGIN IMMEDIATE")
            try:
                yield cursor
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")

    @contextlib.contextmanager
    def read(self) -> Iterator[Any]:
        with self._read_lock, self.unavailable():
            yield self._reader.cursor()

    def check_writable(self) -> None:
        """A short-lived connection takes the write lock (waiting at most a second) and lets it
        go again."""
        with self.unavailable():
            probe = self._connect(busy_timeout_ms=1000)
            try:
                probe.execute("BEGIN IMMEDIATE")
                probe.execute("ROLLBACK")
            finally:
                probe.close()

    def close(self) -> None:
        with self._lock, self._read_lock:
            self.connection.close()
            self._reader.close()


#: Longest wait between two attempts to reconnect to PostgreSQL. psycopg_pool doubles the wait
#: after every failed attempt without a cap, so the service came back 3 s after a 10 s outage,
#: 33 s after 80 s and 96 s after 151 s: how long it stayed away grew with the outage.
MAX_RECONNECT_DELAY_S = 2.0


@functools.cache
def _capped_pool_class() -> type[Any]:
    from psycopg_pool import ConnectionPool
    from psycopg_pool.base import AttemptWithBackoff

    class CappedAttempt(AttemptWithBackoff):
        def update_delay(self, now: float) -> None:
            super().update_delay(now)
            self.delay = min(self.delay, MAX_RECONNECT_DELAY_S)

    class CappedBackoffPool(ConnectionPool):
        """A pool whose reconnection attempts come at most ``MAX_RECONNECT_DELAY_S`` apart."""

        def _add_connection(self, attempt: Any, growing: bool = False) -> None:
            fresh = attempt or CappedAttempt(timeout=self.reconnect_timeout)
            super()._add_connection(fresh, growing)

    return CappedBackoffPool


class PostgresDialect(Dialect):
    """PostgreSQL (a committed transaction is durable by default), over a small pool whose
    connections are checked before use. While the server is down or restarting, every call
    raises LogUnavailableError within ``timeout_s``; once it is back, new connections replace the
    broken ones by themselves. A server that is down at start-up is waited for, not fatal: the
    schema is created on first contact."""

    sample_key = "(hashtext(request_id) & 2147483647)"
    for_update = " FOR UPDATE"

    def __init__(self, url: str, pool_size: int = 4, timeout_s: float = 5.0) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        self._unavailable: tuple[type[BaseException], ...] = (
            psycopg.OperationalError,
            PoolTimeout,
        )
        self._pool = _capped_pool_class()(
            url,
            min_size=1,
            max_size=pool_size,
            timeout=timeout_s,
            check=ConnectionPool.check_connection,
            kwargs={"connect_timeout": max(1, math.ceil(timeout_s))},
            reconnect_timeout=3600,
            open=False,
            name="tickets-prediction-log",
        )
        self._schema_lock = threading.Lock()
        self._schema_ready = False
        self._pool.open(wait=False)
        with contextlib.suppress(LogUnavailableError):
            self._ensure_schema()

    def _ensure_schema(self) -> None:
        """Create the tables on first contact (and add columns of newer versions)."""
        if self._schema_ready:
            return
        with self._schema_lock, self.unavailable():
            if self._schema_ready:
                return
            with self._pool.connection() as connection:
                # One opener at a time builds the schema (concurrent CREATE ... IF NOT EXISTS
                # can still collide) and backfills the rollup, while writers wait on its lock.
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (SCHEMA_LOCK_KEY,))
                for statement in statements():
                    connection.execute(statement)
                for table, column, definition in ADDED_COLUMNS:
                    connection.execute(
                        f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {column} {definition}"
                    )
                with connection.cursor() as cursor:
                    self.lock_table(cursor, "prediction_hours")
                    backfill_hours(cursor)
            self._schema_ready = True

    @contextlib.contextmanager
    def unavailable(self) -> Iterator[None]:
        try:
            yield
        except self._unavailable as exc:
            raise LogUnavailableError(f"prediction log unavailable: {exc}") from exc

    @contextlib.contextmanager
    def write(self) -> Iterator[Any]:
        """A pooled connection; its block is one transaction, committed on a clean exit."""
        self._ensure_schema()
        with self.unavailable(), self._pool.connection() as connection, connection.cursor() as cur:
            yield cur

    @contextlib.contextmanager
    def read(self) -> Iterator[Any]:
        self._ensure_schema()
        with self.unavailable(), self._pool.connection() as connection, connection.cursor() as cur:
            yield cur

    def sql(self, statement: str) -> str:
        return statement.replace("%", "%%").replace("?", "%s")

    def lock_table(self, cursor: Any, table: str) -> None:
        cursor.execute(f"LOCK TABLE {table} IN SHARE ROW EXCLUSIVE MODE")

    def check_writable(self) -> None:
        with self.read() as cursor:
            cursor.execute("SHOW transaction_read_only")
            if cursor.fetchone()[0] != "off":
                raise LogUnavailableError("prediction log unavailable: the database is read-only")

    def close(self) -> None:
        self._pool.close()


#: The advisory lock that serialises schema setup between processes ("tickets" as an integer).
SCHEMA_LOCK_KEY = int.from_bytes(b"tickets", "big")


class Tables:
    """What each table's code uses: the dialect's transactions and parameter style."""

    dialect: Dialect

    def _write(self) -> contextlib.AbstractContextManager[Any]:
        return self.dialect.write()

    def _read(self) -> contextlib.AbstractContextManager[Any]:
        return self.dialect.read()

    def _sql(self, statement: str) -> str:
        return self.dialect.sql(statement)
