"""A service's SQLite database: one writer connection, owned by the service alone.

Handlers are synchronous functions that run on the connection's own thread, inside a transaction
the runtime opens for a whole fetched batch. Running the batch as one call on that thread, rather
than one await per statement, is what keeps a service near the broker's own speed.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

T = TypeVar("T")

RUNTIME_SCHEMA = [
    """
    CREATE TABLE sinew_inbox (
        key TEXT PRIMARY KEY,
        stream TEXT NOT NULL,
        stream_seq INTEGER NOT NULL,
        subject TEXT NOT NULL,
        outcome TEXT NOT NULL,
        handled_at TEXT NOT NULL
    ) WITHOUT ROWID;
    CREATE TABLE sinew_outbox (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        event_id TEXT NOT NULL UNIQUE,
        subject TEXT NOT NULL,
        headers TEXT NOT NULL,
        payload BLOB NOT NULL,
        created_at TEXT NOT NULL,
        published_at TEXT,
        stream_seq INTEGER
    );
    CREATE INDEX sinew_outbox_unpublished ON sinew_outbox(seq) WHERE published_at IS NULL;
    CREATE TABLE sinew_dead_letters (
        id TEXT PRIMARY KEY,
        inbox_key TEXT NOT NULL,
        subject TEXT NOT NULL,
        stream TEXT NOT NULL,
        stream_seq INTEGER NOT NULL,
        contract TEXT NOT NULL,
        cause TEXT NOT NULL,
        reason TEXT NOT NULL,
        deliveries INTEGER NOT NULL,
        headers TEXT NOT NULL,
        payload BLOB NOT NULL,
        recorded_at TEXT NOT NULL,
        status TEXT NOT NULL DEFAULT 'open',
        replayed_at TEXT,
        replayed_by TEXT,
        replay_reason TEXT
    );
    CREATE INDEX sinew_dead_letters_status ON sinew_dead_letters(status, cause);
    """,
    # Redelivered messages are attempted one by one, each attempt noted first: a message that
    # keeps taking the process down is caught by its count.
    """
    CREATE TABLE sinew_suspects (
        stream TEXT NOT NULL,
        stream_seq INTEGER NOT NULL,
        attempts INTEGER NOT NULL,
        PRIMARY KEY (stream, stream_seq)
    ) WITHOUT ROWID;
    """,
    # Running totals an operator asks for after restarts (a Prometheus counter starts again at 0).
    """
    CREATE TABLE sinew_counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    ) WITHOUT ROWID;
    """,
    # Messages handled, counted as they are (counting the inbox would scan all of it, and the
    # inbox forgets keys past their retention).
    """
    INSERT OR IGNORE INTO sinew_counters SELECT 'messages_handled', count(*) FROM sinew_inbox;
    DELETE FROM sinew_counters WHERE name='inbox_pruned';
    """,
]


def _prepare(conn: sqlite3.Connection) -> None:
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed transaction survives power loss; NORMAL may lose it (see BRIEF pitfalls).
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=5000")


class Store:
    def __init__(self, path: Path, migrations: Sequence[str] = ()) -> None:
        self.path = path
        self._migrations = {"runtime": RUNTIME_SCHEMA, "service": list(migrations)}
        self._db: aiosqlite.Connection | None = None

    async def open(self) -> Store:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # isolation_level=None: the runtime says BEGIN and COMMIT itself, so a batch is exactly
        # one transaction and nothing commits behind its back.
        self._db = await aiosqlite.connect(self.path, isolation_level=None)
        await self.run(_prepare)
        await self.run(self._migrate)
        return self

    async def close(self) -> None:
        if self._db is not None:
            await self._db.close()
            self._db = None

    async def __aenter__(self) -> Store:
        return await self.open()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _migrate(self, conn: sqlite3.Connection) -> None:
        conn.execute(
            "CREATE TABLE IF NOT EXISTS sinew_schema (component TEXT PRIMARY KEY, version INT)"
        )
        for component, steps in self._migrations.items():
            row = conn.execute(
                "SELECT version FROM sinew_schema WHERE component=?", (component,)
            ).fetchone()
            applied = row[0] if row else 0
            for version, script in enumerate(steps[applied:], start=applied + 1):
                try:
                    conn.executescript(
                        f"BEGIN IMMEDIATE; {script};"
                        f"INSERT OR REPLACE INTO sinew_schema VALUES ('{component}', {version});"
                        "COMMIT;"
                    )
                except BaseException:
                    if conn.in_transaction:
                        conn.execute("ROLLBACK")
                    raise

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(conn, *args) on the database thread, with the connection as first argument."""
        if self._db is None:
            raise RuntimeError(f"store {self.path} is not open")
        db = self._db
        # aiosqlite's queue of work for its thread is the one way to run a whole batch there in
        # one call; the version is pinned in pyproject.toml.
        return await db._execute(lambda: fn(db._conn, *args))

    async def transact(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn(conn, *args) in one IMMEDIATE transaction, committed if fn returns."""
        return await self.run(_in_transaction, fn, *args)

    async def fetch_all(self, sql: str, params: Sequence[Any] = ()) -> list[sqlite3.Row]:
        return await self.run(lambda conn: conn.execute(sql, params).fetchall())

    async def fetch_one(self, sql: str, params: Sequence[Any] = ()) -> sqlite3.Row | None:
        return await self.run(lambda conn: conn.execute(sql, params).fetchone())


def _in_transaction(conn: sqlite3.Connection, fn: Callable[..., T], *args: Any) -> T:
    conn.execute("BEGIN IMMEDIATE")
    try:
        result = fn(conn, *args)
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
    return result


def page_of(
    conn: sqlite3.Connection,
    *,
    select: str,
    source: str,
    where: dict[str, Any],
    order_by: str,
    limit: int,
    offset: int,
) -> tuple[list[sqlite3.Row], int]:
    """One page of a list endpoint's rows, and how many rows there are in all.

    `where` maps a condition written in code (e.g. "supplier_id=?") to its value, which is bound
    to every `?` in the condition; a None, False or empty value leaves the condition out, so an
    optional filter is just its value and a condition with no `?` is switched on by True."""
    conditions = {c: v for c, v in where.items() if v is not None and v is not False and v != ""}
    clause = f" WHERE {' AND '.join(conditions)}" if conditions else ""
    params = [value for condition, value in conditions.items() for _ in range(condition.count("?"))]
    total = conn.execute(f"SELECT count(*) FROM {source}{clause}", params).fetchone()[0]
    rows = conn.execute(
        f"SELECT {select} FROM {source}{clause} ORDER BY {order_by} LIMIT ? OFFSET ?",
        [*params, limit, offset],
    ).fetchall()
    return rows, total
