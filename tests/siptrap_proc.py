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
import urllib.error
import urllib.request
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


def http(url: str, body: Any = None, token: str | None = None) -> tuple[int, dict[str, str], bytes]:
    """GET `url` (POST `body` as JSON when given), with a bearer `token` when given:
    (status, headers, body), whatever the status."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(url, data=data, method="POST" if data else "GET")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=20) as reply:
            return reply.status, dict(reply.headers), reply.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


class Siptrap:
    """`siptrap run` on 127.0.0.1:PORT (UDP and TCP) and PORT+1 (TLS); with `web_token`,
    its dashboard too (`--web` on 127.0.0.1:`web_port`, that admin token)."""

    def __init__(
        self,
        data_dir: Path,
        config: str = "",
        extra_args: list[str] | None = None,
        web_token: str | None = None,
    ):
        self.data_dir = data_dir
        self.port = free_port()
        self.web_port = free_port(socket.SOCK_STREAM) if web_token else 0
        web = ["--web", f"127.0.0.1:{self.web_port}", "--web-token", web_token] if web_token else []
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
            *web,
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

    def url(self, path: str) -> str:
        """A URL of the dashboard started with `web_token`."""
        return f"http://127.0.0.1:{self.web_port}{path}"

    def ctl(self, *words: str) -> tuple[int, Any, str]:
        """`siptrap ctl WORDS` on this data directory: (exit code, its JSON, stderr)."""
        result = subprocess.run(
            [str(BIN), "ctl", "--data-dir", str(self.data_dir), *words],
            capture_output=True,
            timeout=30,
            check=False,
        )
        out = result.stdout.decode()
        return result.returncode, json.loads(out) if out.strip() else None, result.stderr.decode()


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
