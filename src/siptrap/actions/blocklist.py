"""The `blocklist` action: the blocked sources as a plain-text file (one address a line,
atomically rewritten) and a JSON file, and both served over HTTP (`GET /blocklist.txt`,
`GET /blocklist.json`) when `listen = "ADDR:PORT"` is set, for other proxies and firewalls
to pull."""

from __future__ import annotations

import json
import os
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from .base import Job
from .settings import ActionSpec


def write_atomically(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


class BlocklistAction:
    def __init__(self, spec: ActionSpec, data_dir: Path) -> None:
        self.spec = spec
        self.path = Path(spec.path) if spec.path else data_dir / "blocklist.txt"
        self.json_path = self.path.with_suffix(".json")
        self.entries: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.server: ThreadingHTTPServer | None = None
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._write()
        if spec.listen:
            self._serve(spec.listen)

    def apply(self, job: Job) -> tuple[str, str] | None:
        change = job.change
        with self.lock:
            if change.step is None:
                self.entries.pop(change.src_ip, None)
                what = "removed"
            else:
                entry = self.entries.setdefault(
                    change.src_ip,
                    {"src_ip": change.src_ip, "first_seen": job.facts.get("first_seen")},
                )
                entry.update(
                    step=change.step,
                    category=change.category,
                    last_seen=job.facts.get("last_seen"),
                    count=job.facts.get("count", 1),
                    expires=change.expires,
                )
                what = "listed"
            self._write()
        return ("write", f"{change.src_ip} {what} in {self.path}")

    def text(self) -> str:
        return "".join(f"{ip}\n" for ip in sorted(self.entries))

    def as_json(self) -> str:
        return json.dumps([self.entries[ip] for ip in sorted(self.entries)], indent=1)

    def _write(self) -> None:
        write_atomically(self.path, self.text())
        write_atomically(self.json_path, self.as_json() + "\n")

    def _serve(self, listen: str) -> None:
        host, _, port = listen.rpartition(":")
        action = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with action.lock:
                    if self.path == "/blocklist.txt":
                        body, ctype = action.text(), "text/plain; charset=utf-8"
                    elif self.path == "/blocklist.json":
                        body, ctype = action.as_json(), "application/json"
                    else:
                        self.send_error(404)
                        return
                data = body.encode()
                self.send_response(200)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer((host.strip("[]"), int(port)), Handler)
        thread = threading.Thread(target=self.server.serve_forever, name="blocklist-http")
        thread.daemon = True
        thread.start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1]) if self.server else 0

    def close(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
