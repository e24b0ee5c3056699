"""A real VoIP domain on loopback for the tests: Kamailio with examples/kamailio/kamailio.cfg
(the very file shipped) in a temporary RUNDIR, on a loopback address and a free port."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "examples" / "kamailio" / "kamailio.cfg"
KAMAILIO = "/usr/sbin/kamailio"


def free_udp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def free_tcp_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Kamailio:
    """`kamailio -f examples/kamailio/kamailio.cfg -DD -E -A ...` exactly as documented."""

    def __init__(
        self,
        rundir: Path,
        honeypot: str,
        host: str = "127.0.0.5",
        password: str = "secret",
        *,
        tcp: bool = False,
        tls: tuple[Path, Path] | None = None,
        http: bool = False,
    ) -> None:
        """`tcp`: a TCP listen too (-A TCP_LISTEN); `tls`: (cert, key) of a TLS listen
        (-A WITH_TLS); `http`: JSON-RPC over HTTP on loopback (-A WITH_HTTP)."""
        self.rundir = rundir
        self.host = host
        self.port = free_udp_port(host)
        self.tcp_port = free_tcp_port(host) if tcp else None
        self.tls = tls
        self.tls_port = free_tcp_port(host) if tls else None
        self.http_port = free_tcp_port("127.0.0.1") if http else None
        self.honeypot = honeypot
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None
        self.log = rundir / "kamailio.log"

    @property
    def args(self) -> list[str]:
        return [
            KAMAILIO,
            "-f",
            str(CONFIG),
            "-DD",
            "-E",
            "-A",
            f"LISTEN=udp:{self.host}:{self.port}",
            "-A",
            f'HONEYPOT="{self.honeypot}"',
            "-A",
            f'RUNDIR="{self.rundir}"',
            "-A",
            f'REG_PASSWORD="{self.password}"',
            *self.optional_args,
        ]

    @property
    def optional_args(self) -> list[str]:
        out = []
        if self.tcp_port is not None:
            out += ["-A", f"TCP_LISTEN=tcp:{self.host}:{self.tcp_port}"]
        if self.tls is not None:
            cert, key = self.tls
            out += ["-A", "WITH_TLS", "-A", f"TLS_LISTEN=tls:{self.host}:{self.tls_port}"]
            out += ["-A", f'TLS_CERT="{cert}"', "-A", f'TLS_KEY="{key}"']
        if self.http_port is not None:
            out += ["-A", "WITH_HTTP", "-A", f"HTTP_PORT={self.http_port}"]
        return out

    @property
    def http_rpc(self) -> str:
        return f"http://127.0.0.1:{self.http_port}/RPC"

    @property
    def rpc_socket(self) -> Path:
        return self.rundir / "kamailio_rpc.sock"

    @property
    def ctl(self) -> str:
        return f"unix:{self.rundir}/kamailio_ctl"

    def start(self) -> Kamailio:
        self.rundir.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(self.args, stdout=log, stderr=log, cwd=ROOT)
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.proc.poll() is not None:
                break
            if self.rpc_socket.exists() and (self.rundir / "kamailio_ctl").exists():
                try:
                    self.rpc("core.version")
                    return self
                except OSError:
                    pass
            time.sleep(0.1)
        self.stop()
        raise RuntimeError(f"kamailio did not start:\n{self.log.read_text(errors='replace')}")

    def stop(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    def rpc(self, method: str, *params: Any) -> Any:
        """One JSON-RPC call over the jsonrpcs datagram socket."""
        folder = tempfile.mkdtemp(prefix="kamrpc-")
        own = os.path.join(folder, "c")
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.bind(own)
                sock.settimeout(3)
                body = {"jsonrpc": "2.0", "method": method, "params": list(params), "id": 1}
                sock.sendto(json.dumps(body).encode(), str(self.rpc_socket))
                reply = json.loads(sock.recv(65536))
        finally:
            os.remove(own) if os.path.exists(own) else None
            os.rmdir(folder)
        return reply.get("result", reply.get("error"))

    def htable(self) -> dict[str, int]:
        result = self.rpc("htable.dump", "siptrap")
        out: dict[str, int] = {}
        for slot in result if isinstance(result, list) else []:
            for item in slot.get("slot", []):
                out[item["name"]] = item["value"]
        return out

    def registered(self) -> set[str]:
        """The AoRs in Kamailio's location table (`kamcmd ul.dump`)."""
        return set(re.findall(r"AoR: (\S+)", self.kamcmd("ul.dump")))

    def kamcmd(self, *args: str) -> str:
        done = subprocess.run(
            ["kamcmd", "-s", self.ctl, *args], capture_output=True, timeout=10, check=False
        )
        return (done.stdout + done.stderr).decode(errors="replace")


def sip_request(
    method: str,
    user: str,
    target: tuple[str, int],
    source: str,
    timeout: float = 2.0,
    user_agent: str = "test-phone",
    extra: str = "",
) -> str | None:
    """Send one request from `source` (a loopback address) and return the final status line
    (or None when nothing final came back in time)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((source, 0))
        port = s.getsockname()[1]
        branch = f"z9hG4bK{time.monotonic_ns()}"
        host = f"{target[0]}:{target[1]}"
        msg = (
            f"{method} sip:{user}@{host} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {source}:{port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:tester@{source}>;tag=t{port}\r\n"
            f"To: <sip:{user}@{host}>\r\n"
            f"Call-ID: {branch}@{source}\r\n"
            f"CSeq: 1 {method}\r\n"
            f"Contact: <sip:tester@{source}:{port}>\r\n"
            f"User-Agent: {user_agent}\r\n"
            f"{extra}"
            "Content-Length: 0\r\n\r\n"
        )
        s.sendto(msg.encode(), target)
        s.settimeout(timeout)
        deadline = time.time() + timeout
        while time.time() < deadline:
            try:
                data = s.recv(65536)
            except TimeoutError:
                return None
            line = data.split(b"\r\n", 1)[0].decode(errors="replace")
            parts = line.split(" ")
            if len(parts) > 1 and parts[1].isdigit() and int(parts[1]) >= 200:
                return data.decode(errors="replace")
        return None


class Phone:
    """A minimal UAC on a loopback address that follows Record-Route as RFC 3261 says:
    INVITE, ACK and BYE with the route set, and it answers a BYE that comes to it."""

    def __init__(self, source: str, proxy: tuple[str, int]) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((source, 0))
        self.source = source
        self.port = self.sock.getsockname()[1]
        self.proxy = proxy
        self.received: list[tuple[bytes, tuple[str, int]]] = []

    def close(self) -> None:
        self.sock.close()

    def _send(self, text: str) -> None:
        self.sock.sendto(text.encode(), self.proxy)

    def recv(self, timeout: float) -> tuple[str, tuple[str, int]] | None:
        self.sock.settimeout(timeout)
        try:
            data, addr = self.sock.recvfrom(65536)
        except TimeoutError:
            return None
        self.received.append((data, addr))
        return data.decode(errors="replace"), addr

    def request(self, method: str, uri: str, cseq: int, extra: str = "", to_tag: str = "") -> None:
        host = f"{self.proxy[0]}:{self.proxy[1]}"
        to = f"<sip:{self.user}@{host}>" + (f";tag={to_tag}" if to_tag else "")
        branch = f"z9hG4bK{time.monotonic_ns()}"
        self._send(
            f"{method} {uri} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {self.source}:{self.port};branch={branch};rport\r\n"
            "Max-Forwards: 70\r\n"
            f"From: <sip:phone@{self.source}>;tag=ph{self.port}\r\n"
            f"To: {to}\r\n"
            f"Call-ID: {self.call_id}\r\n"
            f"CSeq: {cseq} {method}\r\n"
            f"Contact: <sip:phone@{self.source}:{self.port}>\r\n"
            f"{extra}"
            "Content-Length: 0\r\n\r\n"
        )

    def invite(self, user: str, timeout: float = 10.0) -> str | None:
        """INVITE through the proxy; the final response's text (ACKed when 2xx)."""
        self.user = user
        self.call_id = f"call-{time.monotonic_ns()}@{self.source}"
        self.request("INVITE", f"sip:{user}@{self.proxy[0]}:{self.proxy[1]}", 1)
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.recv(max(0.1, deadline - time.time()))
            if got is None:
                return None
            text, _ = got
            code = text.split(" ", 2)[1]
            if code.isdigit() and int(code) >= 200:
                if int(code) < 300:
                    self.ack(text)
                return text
        return None

    def ack(self, ok: str) -> None:
        headers = ok.split("\r\n\r\n", 1)[0].split("\r\n")
        self.routes = [
            h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("record-route:")
        ]
        contact = next(
            h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("contact:")
        )
        self.target = contact.strip("<>").split(">")[0]
        self.to_tag = re.search(r"^To:.*;tag=([^;\s]+)", ok, re.M | re.I).group(1)  # type: ignore[union-attr]
        route = "".join(f"Route: {r}\r\n" for r in self.routes)
        self.request("ACK", self.target, 1, route, self.to_tag)

    def answer_bye(self, timeout: float) -> tuple[str, tuple[str, int]] | None:
        """Wait for a BYE (from wherever it comes) and answer it 200."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            got = self.recv(max(0.1, deadline - time.time()))
            if got is None:
                return None
            text, addr = got
            if text.startswith("BYE "):
                head = text.split("\r\n\r\n", 1)[0].split("\r\n")
                keep = [
                    h
                    for h in head[1:]
                    if h.split(":", 1)[0].lower() in ("via", "from", "to", "call-id", "cseq")
                ]
                self.sock.sendto(
                    (
                        "SIP/2.0 200 OK\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n"
                    ).encode(),
                    addr,
                )
                return text, addr
        return None
