"""The PostgreSQL fleet store's tables, derived from the SQLite schema, and its migrations.

Every table of `store.schema` appears in PostgreSQL with a `sensor` column, so a table
another part of siptrap adds to the SQLite store appears here too: `derive_table` turns
each CREATE TABLE statement into its PostgreSQL form (INTEGER -> BIGINT, REAL -> DOUBLE
PRECISION, BLOB -> BYTEA; an INTEGER PRIMARY KEY becomes an identity; a TEXT primary key
or a UNIQUE constraint gains `sensor` in front, since every sensor has its own).

`upgrade` applies the numbered migrations not yet applied (recorded in
`siptrap_migrations`), then creates whatever table, column or index the current schema has
and the database lacks, all in one transaction under an advisory lock: running it twice,
or from two collectors at once, is safe. A database migrated by a newer siptrap is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from .postgres_rows import MERGE_DEFECTS_FUNCTION
from .schema import INDEXES, TABLES


class PostgresSchemaError(Exception):
    """The database cannot be used by this siptrap (newer schema, unreadable DDL)."""


@dataclass(frozen=True, slots=True)
class Column:
    name: str
    definition: str  # the PostgreSQL type and clauses, without the name


@dataclass(frozen=True, slots=True)
class Table:
    name: str
    columns: tuple[Column, ...]
    constraints: tuple[str, ...]

    def create(self) -> str:
        body = [f"{c.name} {c.definition}" for c in self.columns] + list(self.constraints)
        inner = ",\n    ".join(body)
        return f"CREATE TABLE IF NOT EXISTS {self.name} (\n    {inner}\n)"


_TYPES = {"INTEGER": "BIGINT", "REAL": "DOUBLE PRECISION", "BLOB": "BYTEA", "TEXT": "TEXT"}
_CREATE = re.compile(r"CREATE TABLE IF NOT EXISTS (\w+)\s*\((.*)\)\s*$", re.S)
_INDEX = re.compile(r"CREATE INDEX IF NOT EXISTS (\w+)\s+ON\s+(\w+)\s*\((.*)\)\s*$", re.S)
SENSOR_COLUMN = Column("sensor", "TEXT NOT NULL DEFAULT ''")
# What the fleet store adds to `events`: which spool of which sensor, and its position
# there; (sensor, spool, seq) is what makes a republished event a duplicate.
EVENT_EXTRA = (Column("spool", "TEXT NOT NULL DEFAULT ''"), Column("seq", "BIGINT"))
EVENT_UNIQUE = "UNIQUE (sensor, spool, seq)"
# Indexes for the questions a fleet is asked, beyond those the SQLite store has.
FLEET_INDEXES = (
    "CREATE INDEX IF NOT EXISTS events_sensor_ts ON events (sensor, ts_epoch)",
    "CREATE INDEX IF NOT EXISTS messages_user_agent ON messages (user_agent, ts_epoch)",
    "CREATE INDEX IF NOT EXISTS messages_method ON messages (method, ts_epoch)",
    "CREATE INDEX IF NOT EXISTS calls_called_number ON calls (called_number)",
    "CREATE INDEX IF NOT EXISTS credentials_username ON credentials (username)",
    "CREATE INDEX IF NOT EXISTS sources_src_ip ON sources (src_ip)",
)


# Migration 2: indexes for the cross-sensor queries of `siptrap analyze --store` and
# `siptrap export` (fleet.correlate, fleet.export; bench/bench_fleet_queries.py), so that
# they read an index instead of every row of their table. (Indexes for the other queries
# were measured there and left out: they gained nothing, and every index costs writes.)
QUERY_INDEXES = (
    # fleet.tool, export user-agents: what each source's User-Agent was, at which sensor
    # (an index-only scan instead of reading every message with its bytes)
    "CREATE INDEX IF NOT EXISTS messages_in_user_agent ON messages"
    " (user_agent, sensor, ts_epoch) INCLUDE (src_ip)"
    " WHERE direction = 'in' AND user_agent IS NOT NULL",
)


def _split(body: str) -> list[str]:
    """The comma-separated items of a CREATE TABLE body, commas inside () and '' kept."""
    items: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for char in body:
        if char == "'":
            quoted = not quoted
        elif not quoted and char == "(":
            depth += 1
        elif not quoted and char == ")":
            depth -= 1
        if char == "," and depth == 0 and not quoted:
            items.append("".join(current).strip())
            current = []
        else:
            current.append(char)
    items.append("".join(current).strip())
    return [item for item in items if item]


def _constraint(item: str) -> str:
    """A table constraint with `sensor` put first in its column list."""
    keyword, _, rest = item.partition("(")
    return f"{keyword.strip()} (sensor, {rest.strip()}"


def derive_table(statement: str) -> Table:
    """The PostgreSQL form of one SQLite CREATE TABLE statement of store.schema."""
    found = _CREATE.search(statement.strip())
    if found is None:
        raise PostgresSchemaError(f"not a CREATE TABLE statement: {statement.strip()[:60]!r}")
    name, body = found.group(1), found.group(2)
    columns: list[Column] = []
    constraints: list[str] = []
    for item in _split(body):
        upper = item.upper()
        if upper.startswith(("UNIQUE", "PRIMARY KEY")):
            constraints.append(_constraint(item))
            continue
        column, _, rest = item.partition(" ")
        sql_type, _, clauses = rest.strip().partition(" ")
        pg_type = _TYPES.get(sql_type.upper())
        if pg_type is None:
            raise PostgresSchemaError(f"{name}.{column}: no PostgreSQL type for {sql_type!r}")
        clauses = clauses.strip()
        if column == "sensor":
            columns.append(SENSOR_COLUMN)
            continue
        if "PRIMARY KEY" in clauses.upper():
            if pg_type == "BIGINT":
                columns.append(
                    Column(column, "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY")
                )
                continue
            clauses = re.sub(r"PRIMARY KEY", "NOT NULL", clauses, flags=re.I)
            constraints.append(f"PRIMARY KEY (sensor, {column})")
        if re.search(r"\bUNIQUE\b", clauses, re.I):
            clauses = re.sub(r"\s*\bUNIQUE\b", "", clauses, flags=re.I)
            constraints.append(f"UNIQUE (sensor, {column})")
        columns.append(Column(column, f"{pg_type} {clauses}".strip()))
    if not any(c.name == "sensor" for c in columns):
        columns.insert(1, SENSOR_COLUMN)
    if name == "events":
        columns.extend(EVENT_EXTRA)
        constraints.append(EVENT_UNIQUE)
    return Table(name, tuple(columns), tuple(constraints))


def derived_tables() -> tuple[Table, ...]:
    return tuple(derive_table(statement) for statement in TABLES)


def derived_indexes() -> tuple[str, ...]:
    """The SQLite store's indexes (their syntax is PostgreSQL's too) and the fleet's."""
    for statement in INDEXES:
        if _INDEX.search(statement.strip()) is None:
            raise PostgresSchemaError(f"not a CREATE INDEX statement: {statement[:60]!r}")
    return (*INDEXES, *FLEET_INDEXES)


def _column_addition(table: Table, column: Column) -> str:
    """ALTER TABLE adding a column the table lacks (constraints left to the table)."""
    definition = column.definition.replace(" PRIMARY KEY", "")
    if "NOT NULL" in definition and "DEFAULT" not in definition:
        definition = definition.replace(" NOT NULL", "")
    return f"ALTER TABLE {table.name} ADD COLUMN IF NOT EXISTS {column.name} {definition}"


def sync_statements() -> list[str]:
    """What brings any older database up to the current tables: create the missing
    tables, add the missing columns, create the missing indexes (all idempotent)."""
    statements: list[str] = []
    for table in derived_tables():
        statements.append(table.create())
        statements.extend(_column_addition(table, column) for column in table.columns)
    statements.extend(derived_indexes())
    statements.append(MERGE_DEFECTS_FUNCTION)
    return statements


Connection = Any  # a psycopg.Connection (psycopg is imported where it is used)
Migration = tuple[int, str, Callable[[], Sequence[str]]]

# Numbered steps for what the additive sync cannot do (renames, data changes). A new
# table or column needs no migration: sync_statements adds it.
MIGRATIONS: tuple[Migration, ...] = (
    (1, "the fleet store's tables", sync_statements),
    (2, "indexes for the cross-sensor queries", lambda: QUERY_INDEXES),
)
LATEST = max(version for version, _, _ in MIGRATIONS)
LOCK_KEY = 0x5174_7261  # pg_advisory_xact_lock key: one upgrade at a time


def applied_versions(conn: Connection) -> set[int]:
    conn.execute(
        "CREATE TABLE IF NOT EXISTS siptrap_migrations ("
        " version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
        " applied_at TIMESTAMPTZ NOT NULL DEFAULT now())"
    )
    return {row[0] for row in conn.execute("SELECT version FROM siptrap_migrations")}


def upgrade(conn: Connection) -> list[int]:
    """Bring the database to the current schema; return the migrations applied now."""
    applied_now: list[int] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (LOCK_KEY,))
        done = applied_versions(conn)
        newer = [version for version in done if version > LATEST]
        if newer:
            raise PostgresSchemaError(
                f"the database has migration {max(newer)}, newer than this siptrap's "
                f"({LATEST}): run a newer siptrap"
            )
        for version, name, statements in MIGRATIONS:
            if version in done:
                continue
            for statement in statements():
                conn.execute(statement)
            conn.execute(
                "INSERT INTO siptrap_migrations (version, name) VALUES (%s, %s)", (version, name)
            )
            applied_now.append(version)
        for statement in sync_statements():
            conn.execute(statement)
    return applied_now
