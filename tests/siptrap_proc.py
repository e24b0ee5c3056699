"""Running a real `siptrap run` process for the tests that drive it with real tools."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

BIN = Path(sys.executable).parent / "siptrap"


def free_port(kind: int = socket.SOCK_DGRAM) -> int:
    """A port free for both UDP and TCP on 127.0.0.1 (and the next one, for TLS)."""
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = int(udp.getsockname()[1])
        if port > 65000:
            continue
        try:
            for p in (port, port + 1):
                for k in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
                    with socket.socket(socket.AF_INET, k) as s:
                        s.bind(("127.0.0.1", p))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port")


class Siptrap:
    """`siptrap run` on 127.0.0.1:PORT (UDP and TCP) and PORT+1 (TLS)."""

    def __init__(self, data_dir: Path, config: str = "", extra_args: list[str] | None = None):
        self.data_dir = data_dir
        self.port = free_port()
        self.config_path = data_dir.parent / f"{data_dir.name}.toml"
        self.config_path.write_text(config)
        self.args = [
            str(BIN),
            "run",
            "--config",
            str(self.config_path),
            "--data-dir",
            str(data_dir),
            "--listen",
            f"127.0.0.1:{self.port}",
            "--listen",
            f"tls:127.0.0.1:{self.port + 1}",
            *(extra_args or []),
        ]
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = b""

    def start(self) -> Siptrap:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        deadline = time.time() + 20
        while time.time() < deadline:
            if any(e["event"] == "sensor.started" for e in self.events()):
                return self
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"siptrap did not start: {self.output.decode(errors='replace')}")

    def stop(self) -> int:
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        self.output += out or b""
        code = self.proc.returncode
        self.proc = None
        return code

    def events(self, event_id: str | None = None) -> list[dict[str, Any]]:
        path = self.data_dir / "events.jsonl"
        if not path.exists():
            return []
        out = []
        for line in path.read_text(errors="replace").splitlines():
            if not line.strip():
                continue
            try:
                event = json.loads(line)
            except json.JSONDecodeError:
                continue  # a line being written
            if event_id is None or event["event"] == event_id:
                out.append(event)
        return out

    def wait_for(self, predicate: Any, timeout: float = 10.0) -> list[dict[str, Any]]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            found = [e for e in self.events() if predicate(e)]
            if found:
                return found
            time.sleep(0.1)
        return []

    def db(self) -> sqlite3.Connection:
        return sqlite3.connect(self.data_dir / "siptrap.db")


def run_tool(
    args: list[str],
    timeout: float = 60,
    env: dict[str, str] | None = None,
    cwd: Path | None = None,
) -> str:
    """Run a real tool, bounded in time; return what it printed."""
    result = subprocess.run(
        args,
        capture_output=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        cwd=cwd,
        check=False,
    )
    return (result.stdout + result.stderr).decode(errors="replace")
