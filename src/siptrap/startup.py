"""Checks before the honeypot starts: a data directory it can write, sockets it can open.

A honeypot that cannot record, or hears nothing, must not look as if it runs. Each problem
is a `StartupError` whose message is one line saying what is wrong and where; the command
line prints it and exits 2 (never a traceback).
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path
from typing import IO

from .store.sqlite import StoreError, check_version

SQLITE_MAGIC = b"SQLite format 3\x00"
# Entries of the data directory that must be directories when they exist.
SUBDIRECTORIES = ("alerts", "tls", "recordings")


class StartupError(Exception):
    """The honeypot cannot start (or a command cannot run): one line says why."""


def check_data_dir(path: Path, *, sqlite: bool = True, jsonl: bool = True) -> None:
    """Create `path` if need be and check that everything siptrap writes there can be
    written; raise StartupError otherwise."""
    _ensure_directory(path)
    if not os.access(path, os.W_OK | os.X_OK):
        raise StartupError(f"data directory {path} is not writable")
    for name in SUBDIRECTORIES:
        entry = path / name
        if entry.exists() and not entry.is_dir():
            raise StartupError(f"{entry} is in the way: it must be a directory")
    if sqlite:
        check_database(path / "siptrap.db", must_exist=False)
    if jsonl:
        _check_appendable(path / "events.jsonl")


def _ensure_directory(path: Path) -> None:
    if path.exists() and not path.is_dir():
        raise StartupError(f"data directory {path} is not a directory")
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StartupError(f"cannot create data directory {path}: {_reason(exc)}") from None


def check_database(db: Path, *, must_exist: bool = True) -> None:
    """`db` is a SQLite database file (or, unless `must_exist`, absent or empty)."""
    if not db.exists():
        if must_exist:
            raise StartupError(f"no siptrap database at {db}")
        return
    if db.is_dir():
        raise StartupError(f"{db} is a directory, not a database")
    try:
        with db.open("rb") as handle:
            head = handle.read(len(SQLITE_MAGIC))
    except OSError as exc:
        raise StartupError(f"cannot read {db}: {_reason(exc)}") from None
    if head and head != SQLITE_MAGIC:
        raise StartupError(f"{db} is not a SQLite database")
    if head:
        _check_siptrap_database(db)
    if not os.access(db, os.W_OK) and not must_exist:
        raise StartupError(f"{db} is not writable")


def _check_siptrap_database(db: Path) -> None:
    """SQLite, but is it siptrap's, and not from a newer siptrap? (Read only.)"""
    try:
        conn = sqlite3.connect(db.resolve().as_uri() + "?mode=ro", uri=True)
    except sqlite3.Error as exc:
        raise StartupError(f"{db} cannot be opened: {exc}") from None
    try:
        check_version(conn, db)
    except StoreError as exc:
        raise StartupError(str(exc)) from None
    finally:
        conn.close()


def _check_appendable(path: Path) -> None:
    if path.is_dir():
        raise StartupError(f"{path} is a directory, not a file")
    try:
        with path.open("ab"):
            pass
    except OSError as exc:
        raise StartupError(f"cannot write {path}: {_reason(exc)}") from None


def open_output(name: str) -> IO[str]:
    """Open a file to write a command's output into, or raise StartupError."""
    try:
        return open(name, "w", encoding="utf-8")
    except OSError as exc:
        raise StartupError(f"cannot write {name}: {_reason(exc)}") from None


def _reason(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__
