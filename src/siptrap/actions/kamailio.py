"""The `kamailio` action: the source's step into a Kamailio htable over JSON-RPC.

The value says what the proxy does (the shipped examples/kamailio/kamailio.cfg): 1 answers
the source 503 with Retry-After, 2 answers 403. Each entry carries the step's expiry, so a
block ends in Kamailio even if siptrap is gone. The RPC is Kamailio's `jsonrpcs`, over its
unix datagram socket (`unix:/run/kamailio/kamailio_rpc.sock`) or HTTP (`http://...`).
"""

from __future__ import annotations

import itertools
import json
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from typing import Any

from .base import ActionFailed, Job, seconds_left
from .settings import ActionSpec

HTABLE_VALUE = {"try_later": 1, "forbid": 2, "firewall": 2}
MAX_REPLY = 65536


class JsonRpc:
    """A JSON-RPC 2.0 client for Kamailio's jsonrpcs module."""

    def __init__(self, address: str, timeout: float) -> None:
        self.address = address
        self.timeout = timeout
        self._ids = itertools.count(1)

    def call(self, method: str, *params: Any) -> Any:
        request = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 0}
        request["id"] = next(self._ids)
        body = json.dumps(request).encode()
        if self.address.startswith("unix:"):
            raw = self._datagram(self.address[5:], body)
        else:
            raw = self._http(body)
        try:
            reply = json.loads(raw)
        except ValueError as exc:
            raise ActionFailed(f"{method}: reply is not JSON") from exc
        if not isinstance(reply, dict):
            raise ActionFailed(f"{method}: reply is not a JSON-RPC object")
        if reply.get("error"):
            error = reply["error"]
            text = error.get("message") if isinstance(error, dict) else error
            raise ActionFailed(f"{method}: {text}")
        return reply.get("result")

    def _datagram(self, path: str, body: bytes) -> bytes:
        # Kamailio answers to the sender's address: the client binds a path of its own.
        folder = tempfile.mkdtemp(prefix="siptrap-rpc-")
        own = os.path.join(folder, "c.sock")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.bind(own)
                sock.settimeout(self.timeout)
                sock.sendto(body, path)
                return sock.recv(MAX_REPLY)
        except TimeoutError as exc:
            raise ActionFailed(f"no answer from {path} in {self.timeout:g}s") from exc
        finally:
            for leftover in (own, folder):
                try:
                    os.remove(leftover) if leftover == own else os.rmdir(leftover)
                except OSError:
                    pass

    def _http(self, body: bytes) -> bytes:
        """The reply's body. Kamailio's jsonrpcs answers a JSON-RPC error with the error's
        code as the HTTP status (404 for a key not found): that body is the reply too."""
        request = urllib.request.Request(  # noqa: S310 (the operator's configured URL)
            self.address, data=body, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as reply:  # noqa: S310
                data: bytes = reply.read(MAX_REPLY)
                return data
        except urllib.error.HTTPError as exc:
            with exc:
                error_body: bytes = exc.read(MAX_REPLY)
            if "json" not in (exc.headers.get("Content-Type") or "") or not error_body:
                raise ActionFailed(f"{self.address}: HTTP {exc.code} {exc.reason}") from exc
            return error_body


class KamailioAction:
    def __init__(self, spec: ActionSpec) -> None:
        self.spec = spec
        self.rpc = JsonRpc(spec.rpc, spec.timeout)

    def apply(self, job: Job) -> tuple[str, str] | None:
        change = job.change
        table = self.spec.htable
        if change.step is None:
            self.remove(change.src_ip)
            return ("htable.delete", f"{table}[{change.src_ip}] removed")
        value = HTABLE_VALUE[change.step]
        expire = seconds_left(change, time.time())
        self.rpc.call("htable.setxi", table, change.src_ip, value, expire)
        return ("htable.setxi", f"{table}[{change.src_ip}] = {value} for {expire}s")

    def remove(self, src_ip: str) -> None:
        try:
            self.rpc.call("htable.delete", self.spec.htable, src_ip)
        except ActionFailed as exc:
            if "not found" not in str(exc).lower():
                raise

    def close(self) -> None:
        pass
