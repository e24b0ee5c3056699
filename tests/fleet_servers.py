"""Throwaway PostgreSQL 15 clusters and JetStream nats-servers for the fleet tests.

Each lives in a fresh temporary directory on a free loopback port and is stopped (and
its directory removed) when the context ends. PostgreSQL refuses to run as root, so as
root the cluster is run as the `postgres` user (runuser).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import require_tool

PG_BIN = Path("/usr/lib/postgresql/15/bin")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_tool(name: str) -> str:
    path = PG_BIN / name
    if not path.exists():
        require_tool(f"pg15-{name}")  # skips, or fails under SIPTRAP_REQUIRE_TOOLS=1
    return str(path)


@dataclass
class Postgres:
    """A running cluster: `url` connects as the cluster's superuser to database siptrap."""

    directory: Path
    port: int
    user: str

    @property
    def url(self) -> str:
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/siptrap"

    def database(self, name: str) -> str:
        """A new empty database; its URL."""
        argv = [_pg_tool("createdb"), "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user]
        subprocess.run([*argv, name], check=True, capture_output=True, timeout=30)
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{name}"

    def _as_owner(self, argv: list[str]) -> list[str]:
        return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv

    def ctl(self, *args: str) -> None:
        argv = [_pg_tool("pg_ctl"), "-D", str(self.directory / "data"), "-w", "-t", "60", *args]
        subprocess.run(self._as_owner(argv), check=True, capture_output=True, timeout=90)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.directory} -c listen_addresses=127.0.0.1 -c fsync=off"
        self.ctl("-o", options, "-l", str(self.directory / "log"), "start")

    def stop(self) -> None:
        self.ctl("-m", "fast", "stop")


@contextlib.contextmanager
def postgres_server() -> Iterator[Postgres]:
    initdb = _pg_tool("initdb")
    if os.geteuid() == 0:
        require_tool("runuser")
    directory = Path(tempfile.mkdtemp(prefix="siptrap-pg-"))
    user = "postgres" if os.geteuid() == 0 else os.environ.get("USER", "siptrap")
    pg = Postgres(directory, free_port(), user)
    try:
        if os.geteuid() == 0:
            shutil.chown(directory, "postgres", "postgres")
        subprocess.run(
            pg._as_owner(
                [initdb, "-D", str(directory / "data"), "-U", user, "-A", "trust", "-E", "UTF8"]
            ),
            check=True,
            capture_output=True,
            timeout=120,
        )
        pg.start()
        createdb = _pg_tool("createdb")
        subprocess.run(
            [createdb, "-h", "127.0.0.1", "-p", str(pg.port), "-U", user, "siptrap"],
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield pg
    finally:
        with contextlib.suppress(subprocess.SubprocessError, OSError):
            pg.stop()
        shutil.rmtree(directory, ignore_errors=True)


@dataclass
class Nats:
    port: int
    process: subprocess.Popen[bytes]

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"


@contextlib.contextmanager
def store_url(given: str | None) -> Iterator[str]:
    """`given` when there is one, else the URL of a throwaway cluster started here (for
    the benchmarks' `--store`)."""
    if given:
        yield given
        return
    with postgres_server() as pg:
        yield pg.url


@contextlib.contextmanager
def nats_server() -> Iterator[Nats]:
    binary = require_tool("nats-server")
    directory = Path(tempfile.mkdtemp(prefix="siptrap-nats-"))
    port = free_port()
    argv = [binary, "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", str(directory)]
    process = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
                break
            if time.monotonic() > deadline or process.poll() is not None:
                pytest.fail("nats-server did not start")
            time.sleep(0.05)
        yield Nats(port, process)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(directory, ignore_errors=True)
