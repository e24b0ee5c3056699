"""The network-namespace lab the recon tests share: two namespaces (the honeypot's and the
attacker's network) joined by a veth pair, dnsmasq and the programs of `recon_lab.py` on
the attacker's side, and `siptrap run` on the honeypot's side with tcpdump capturing every
interface there, so a probe to any address would be on the wire."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from conftest import require_tool

HERE = Path(__file__).resolve().parent
SIPTRAP = Path(sys.executable).parent / "siptrap"
RECON_LAB = str(HERE / "recon_lab.py")
Events = list[dict[str, Any]]


def sh(*argv: str) -> None:
    subprocess.run(argv, check=True, capture_output=True, timeout=20)


class NetnsLab:
    """Two namespaces, `hp` and `at`, named after `tag` and this process (so two labs
    never share a name), with what `spawn` started in them."""

    def __init__(self, tmp: Path, tag: str) -> None:
        pid = os.getpid()
        self.tmp = tmp
        self.hp, self.at = f"st{tag}hp{pid}", f"st{tag}at{pid}"
        self.veth = (f"{tag}h{pid}"[:15], f"{tag}a{pid}"[:15])
        self.procs: list[subprocess.Popen[bytes]] = []

    def join(self, hp_addrs: tuple[str, ...], at_addrs: tuple[str, ...], prefix: int) -> None:
        """Make the namespaces and the veth pair, give each side its addresses (IPv6 ones
        without duplicate detection), and route everything the honeypot sends to the
        attacker's side (its first address)."""
        sh("ip", "netns", "add", self.hp)
        sh("ip", "netns", "add", self.at)
        sh("ip", "link", "add", self.veth[0], "type", "veth", "peer", "name", self.veth[1])
        sh("ip", "link", "set", self.veth[0], "netns", self.hp)
        sh("ip", "link", "set", self.veth[1], "netns", self.at)
        ip6 = ":" in at_addrs[0]
        family = ("-6",) if ip6 else ()
        for ns, dev, addrs in (
            (self.hp, self.veth[0], hp_addrs),
            (self.at, self.veth[1], at_addrs),
        ):
            for addr in addrs:
                extra = ("nodad",) if ip6 else ()
                sh("ip", "-n", ns, *family, "addr", "add", f"{addr}/{prefix}", "dev", dev, *extra)
            sh("ip", "-n", ns, "link", "set", dev, "up")
            sh("ip", "-n", ns, "link", "set", "lo", "up")
        sh("ip", "-n", self.hp, *family, "route", "add", "default", "via", at_addrs[0])

    def dnsmasq(self, listen: str, *options: str) -> None:
        """A DNS server for `.test` names on the attacker's side."""
        self.spawn(
            self.at,
            require_tool("dnsmasq"),
            "--keep-in-foreground",
            "--conf-file=/dev/null",
            "--no-resolv",
            "--no-hosts",
            f"--listen-address={listen}",
            "--bind-interfaces",
            f"--pid-file={self.tmp / 'dnsmasq.pid'}",
            "--local=/test/",
            *options,
        )

    def spawn(self, ns: str, *argv: str, **kw: Any) -> subprocess.Popen[bytes]:
        kw.setdefault("stdout", subprocess.DEVNULL)
        kw.setdefault("stderr", subprocess.DEVNULL)
        proc = subprocess.Popen(["ip", "netns", "exec", ns, *argv], **kw)
        self.procs.append(proc)
        return proc

    def run(self, ns: str, *argv: str, timeout: float = 60) -> str:
        done = subprocess.run(
            ["ip", "netns", "exec", ns, *argv], capture_output=True, timeout=timeout, check=False
        )
        return done.stdout.decode(errors="replace") + done.stderr.decode(errors="replace")

    def ua(
        self, local: str, honeypot: str, seconds: float, *calls: dict[str, Any]
    ) -> subprocess.Popen[bytes]:
        """`recon_lab.py ua` on the attacker's side, making `calls` to the honeypot."""
        argv = [sys.executable, RECON_LAB, "ua", local, honeypot, str(seconds)]
        return self.spawn(self.at, *argv, *(json.dumps(c) for c in calls))

    def down(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        for ns in (self.hp, self.at):
            subprocess.run(["ip", "netns", "del", ns], check=False, capture_output=True)


def lab_up(lab: NetnsLab, up: Callable[[], None]) -> Iterator[NetnsLab]:
    """A module fixture's body: skip unless root may make namespaces here, bring the lab
    up with `up()`, and take it down afterwards."""
    require_tool("ip")
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root")
    try:
        up()
    except (subprocess.CalledProcessError, OSError) as exc:
        lab.down()
        pytest.skip(f"network namespaces refused here: {exc}")
    yield lab
    lab.down()


class LabHoneypot:
    """`siptrap run --config` (the text `config`) in the lab's honeypot namespace, with
    tcpdump on every interface there; started when `sensor.started` is written."""

    def __init__(self, lab: NetnsLab, directory: Path, config: str) -> None:
        self.lab = lab
        self.dir = directory
        self.dir.mkdir()
        self.pcap = self.dir / "all.pcap"
        path = self.dir / "siptrap.toml"
        path.write_text(config)
        argv = [require_tool("tcpdump"), "-i", "any", "-n", "-U", "-w", str(self.pcap)]
        self.tcpdump = lab.spawn(lab.hp, *argv, stderr=subprocess.PIPE)
        assert self.tcpdump.stderr is not None
        lines = [self.tcpdump.stderr.readline()]
        while b"listening" not in lines[-1] and lines[-1] and len(lines) < 5:
            lines.append(self.tcpdump.stderr.readline())  # until "listening on any ..."
        assert b"listening" in lines[-1], lines
        self.proc = lab.spawn(
            lab.hp,
            str(SIPTRAP),
            "run",
            "--config",
            str(path),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        self.wait(lambda events: any(e["event"] == "sensor.started" for e in events), 20)

    def events(self) -> Events:
        path = self.dir / "data" / "events.jsonl"
        if not path.exists():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    def wait(self, ready: Callable[[Events], bool], seconds: float) -> Events:
        end = time.time() + seconds
        while time.time() < end:
            events = self.events()
            if ready(events):
                return events
            if self.proc.poll() is not None:
                out = self.proc.stdout.read() if self.proc.stdout else b""
                raise AssertionError(f"siptrap exited: {out.decode(errors='replace')}")
            time.sleep(0.2)
        return self.events()

    def ctl(self, *words: str) -> dict[str, Any]:
        argv = [str(SIPTRAP), "ctl", "--data-dir", str(self.dir / "data"), *words]
        done = subprocess.run(argv, capture_output=True, timeout=20, check=False)
        assert done.returncode == 0, done.stderr
        result: dict[str, Any] = json.loads(done.stdout)
        return result

    def stop(self, capture_filter: str) -> list[tuple[float, str]]:
        """Stop siptrap, then the capture; the packets matching `capture_filter`, as
        (time, tcpdump's line)."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=30)
        time.sleep(0.3)
        self.tcpdump.send_signal(signal.SIGTERM)
        self.tcpdump.wait(timeout=10)
        argv = ["tcpdump", "-n", "-tt", "-r", str(self.pcap), capture_filter]
        out = subprocess.run(argv, capture_output=True, timeout=20)
        packets = []
        for line in out.stdout.decode(errors="replace").splitlines():
            stamp, _sep, rest = line.partition(" ")
            packets.append((float(stamp), rest))
        return packets


def alert_for(events: Events, call_id: str) -> dict[str, Any] | None:
    """The last alert naming `call_id`, or None."""
    found = None
    for e in events:
        if e["event"] == "analysis.alert.raised" and call_id in (e.get("call_ids") or []):
            found = e
    return found
