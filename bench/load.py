"""Load test: a real `siptrap run` on 127.0.0.1 driven by SIPp at rising rates.

For each scenario (OPTIONS probes, REGISTER answering a 401 digest challenge, and
INVITE-ACK-BYE calls to an extension that answers) it starts a fresh siptrap with full
recording (events.jsonl and siptrap.db), no per-source rate limit and the console off,
then runs SIPp open loop (`-r RATE -m RATE*SECONDS`, `-nr`: no retransmissions, so one
lost datagram is one failed call) at rising rates. It prints per step the calls that
failed, siptrap's CPU (from /proc/PID/stat) and resident memory, the time siptrap took
to write out its event backlog afterwards, the kernel's UDP drops (RcvbufErrors in
/proc/net/snmp and the socket's own drop counter) and the events siptrap dropped. The
highest rate with no failed call and no dropped event is "held"; a flood at twice that
rate follows. At the end siptrap is stopped and the store checked: every request it
counted must be in SQLite and in the JSON lines.

    .venv/bin/python bench/load.py [--quick] [--scenario options|register|calls]...
        [--seconds 5] [--start-options 1000] [--factor 1.3] [--keep DIR]

Only 127.0.0.1 is used. SIPp is /usr/bin/sipp (Debian sip-tester). siptrap is the
`siptrap` script next to this Python; PYTHONPATH=/other/checkout/src runs another tree.
`--no-analysis` switches the live analysis sink off to separate its cost.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
SCENARIOS_DIR = HERE / "scenarios"
SIPTRAP = Path(sys.executable).parent / "siptrap"
SIPP = shutil.which("sipp") or "/usr/bin/sipp"
HOST = "127.0.0.1"
TICKS = os.sysconf("SC_CLK_TCK")
PAGE = os.sysconf("SC_PAGE_SIZE")

CONFIG = """
[sensor]
name = "bench"
personality = "yealink"

[flood]
per_source_rate = 0

[console]
enabled = false
summary_interval = 1

[recording]
jsonl = true
sqlite = true

[[extensions]]
users = "400"
behaviour = "answer"
answer_after = 0
call_duration = 120

[[extensions]]
users = "500"
password = "bench-secret"
behaviour = "ring"
"""


# For --no-analysis: the live analysis sink (rules on every message) switched off, to
# see what recording alone costs.
NO_ANALYSIS = """
[analysis]
enabled = false
"""


@dataclass(frozen=True, slots=True)
class Scenario:
    """A SIPp scenario and what one of its calls is made of."""

    name: str
    sipp_args: tuple[str, ...]
    transactions: int  # SIP transactions per SIPp call (ACK not counted)
    requests: int  # requests siptrap receives per call
    start: float  # first rate tried (calls/s)


SCENARIOS = {
    "options": Scenario(
        "options", ("-sf", str(SCENARIOS_DIR / "options.xml"), "-s", "400"), 1, 1, 1000
    ),
    "register": Scenario(
        "register", ("-sf", str(SCENARIOS_DIR / "register.xml"), "-s", "500"), 2, 2, 400
    ),
    "calls": Scenario("calls", ("-sn", "uac", "-s", "400"), 2, 3, 100),
}


# -- process and kernel counters ----------------------------------------------------------
def children(pid: int) -> list[int]:
    """The process's child processes (a writer process, say), from /proc."""
    out: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        with contextlib.suppress(OSError):
            out += [int(c) for c in task.read_text().split()]
    return out


def own_cpu(pid: int) -> float:
    """User + system CPU time of one process (all its threads), from /proc/PID/stat."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


def cpu_seconds(pid: int) -> float:
    """CPU time of a process and of its live child processes (their work is its work)."""
    return own_cpu(pid) + sum(own_cpu(child) for child in children(pid))


def own_rss(pid: int) -> float:
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except OSError:
        return 0.0
    return pages * PAGE / 2**20


def rss_mib(pid: int) -> float:
    """Resident memory of a process and its child processes in MiB, from /proc/PID/statm."""
    return own_rss(pid) + sum(own_rss(child) for child in children(pid))


def udp_snmp() -> dict[str, int]:
    """The kernel's UDP counters (InDatagrams, RcvbufErrors...) from /proc/net/snmp."""
    rows = [line.split() for line in Path("/proc/net/snmp").read_text().splitlines()]
    udp = [row for row in rows if row and row[0] == "Udp:"]
    return dict(zip(udp[0][1:], map(int, udp[1][1:]), strict=True))


def socket_drops(port: int) -> int | None:
    """The drop counter of the UDP socket bound to 127.0.0.1:port (/proc/net/udp)."""
    want = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        parts = line.split()
        if parts[1] == want:
            return int(parts[-1])
    return None


def granted_rcvbuf(port: int) -> int | None:
    """The receive buffer the kernel gave siptrap's socket (ss -m: skmem rb)."""
    ss = shutil.which("ss")
    if ss is None:
        return None
    out = subprocess.run(
        [ss, "-uamnH", "sport", "=", f":{port}"], capture_output=True, text=True, check=False
    ).stdout
    match = re.search(r"\brb(\d+)", out)
    return int(match.group(1)) if match else None


def probe_rcvbuf(requested: int = 8 * 1024 * 1024) -> int:
    """What the kernel grants a UDP socket asking for `requested` bytes (SO_RCVBUF)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, requested)
        return int(sock.getsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF))


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


# -- siptrap ------------------------------------------------------------------------------
class Honeypot:
    """A `siptrap run` process on udp:127.0.0.1:PORT with its own data directory."""

    def __init__(self, workdir: Path, extra_config: str = "", source: Path | None = None) -> None:
        self.workdir = workdir
        self.source = source  # another checkout's src/ to run (PYTHONPATH), or this one
        self.streams: dict[str, int] = {}  # "tcp"/"tls" -> port, listened on as well
        self.data = workdir / "data"
        self.port = free_udp_port()
        self.config = workdir / "siptrap.toml"
        self.config.write_text(CONFIG + extra_config)
        self.proc: subprocess.Popen[bytes] | None = None
        self.stopped: dict[str, Any] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    @property
    def events_path(self) -> Path:
        return self.data / "events.jsonl"

    def start(self) -> None:
        args = [str(SIPTRAP), "run", "--config", str(self.config), "--data-dir", str(self.data)]
        args += ["--listen", f"udp:{HOST}:{self.port}", "--quiet"]
        for transport, port in self.streams.items():
            args += ["--listen", f"{transport}:{HOST}:{port}"]
        log = (self.workdir / "siptrap.log").open("wb")
        env = dict(os.environ)
        if self.source is not None:
            env["PYTHONPATH"] = str(self.source)
        self.proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.time() + 30
        while time.time() < deadline:
            if self.events_path.exists() and "sensor.started" in self.events_path.read_text():
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        raise RuntimeError(f"siptrap did not start: {(self.workdir / 'siptrap.log').read_text()}")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_idle(self, limit: float = 120.0) -> float:
        """Seconds until siptrap's CPU falls under 10 % of a core (its backlog written)."""
        start = time.time()
        last = cpu_seconds(self.pid)
        while time.time() - start < limit:
            time.sleep(0.5)
            now = cpu_seconds(self.pid)
            if now - last < 0.05:
                return max(0.0, time.time() - start - 0.5)
            last = now
        return time.time() - start

    def last_stats(self) -> dict[str, Any]:
        """The latest sensor.stats event siptrap has written."""
        with self.events_path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(0, f.tell() - 256 * 1024))
            tail = f.read().decode("utf-8", "replace").splitlines()
        for line in reversed(tail):
            if '"sensor.stats"' in line:
                with contextlib.suppress(ValueError):
                    return dict(json.loads(line))
        return {}

    def answers_options(self) -> bool:
        """Whether siptrap still answers a plain OPTIONS (after a flood)."""
        request = (
            f"OPTIONS sip:400@{HOST}:{self.port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {HOST}:9;branch=z9hG4bK-alive{time.time_ns()}\r\n"
            f"From: <sip:bench@{HOST}>;tag=alive\r\nTo: <sip:400@{HOST}>\r\n"
            f"Call-ID: alive-{time.time_ns()}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n"
        ).encode()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind((HOST, 0))
            sock.settimeout(2.0)
            for _ in range(3):
                sock.sendto(request, (HOST, self.port))
                with contextlib.suppress(TimeoutError):
                    data = sock.recv(65535)
                    return data.startswith(b"SIP/2.0 200")
        return False

    def stop(self) -> int:
        """SIGTERM, wait for the clean stop (which writes out every queue)."""
        if self.proc is None:
            return 0
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            code = self.proc.wait(timeout=300)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            code = self.proc.wait()
        for line in reversed(self.events_path.read_text(errors="replace").splitlines()[-50:]):
            if '"sensor.stopped"' in line:
                self.stopped = json.loads(line)
                break
        return code

    def recorded(self) -> dict[str, int]:
        """Requests siptrap stored: in SQLite (events, messages) and in the JSON lines."""
        conn = sqlite3.connect(f"file:{self.data / 'siptrap.db'}?mode=ro", uri=True)
        try:

            def one(sql: str) -> int:
                return int(conn.execute(sql).fetchone()[0])

            counts = {
                "sqlite_events": one("select count(*) from events"),
                "sqlite_requests": one(
                    "select count(*) from events where event = 'sip.request.received'"
                ),
                "sqlite_messages": one("select count(*) from messages"),
            }
        finally:
            conn.close()
        jsonl_events = jsonl_requests = 0
        with self.events_path.open("rb") as f:
            for line in f:
                jsonl_events += 1
                if b'"event":"sip.request.received"' in line.replace(b'": "', b'":"'):
                    jsonl_requests += 1
        counts["jsonl_events"] = jsonl_events
        counts["jsonl_requests"] = jsonl_requests
        return counts


# -- SIPp ---------------------------------------------------------------------------------
@dataclass(slots=True)
class SippResult:
    calls: int = 0
    successful: int = 0
    failed: int = 0
    rate: float = 0.0  # calls/s SIPp actually started (its CallRate(C))
    cpu: float = 0.0  # SIPp's CPU seconds
    wall: float = 0.0
    code: int = 0


def run_sipp(scenario: Scenario, port: int, rate: float, seconds: float, cwd: Path) -> SippResult:
    count = max(1, round(rate * seconds))
    stat = cwd / f"{scenario.name}-{int(rate)}-{time.time_ns()}.csv"
    args = [
        SIPP,
        f"{HOST}:{port}",
        "-i",
        HOST,
        "-p",
        str(free_udp_port()),
        "-nostdin",
        "-nr",
        "-r",
        f"{rate:g}",
        "-m",
        str(count),
        "-l",
        str(count),
        "-recv_timeout",
        "2000",
        "-timeout",
        f"{int(seconds * 3 + 20)}s",
        "-max_recv_loops",
        "10000",
        "-trace_stat",
        "-stf",
        str(stat),
        "-fd",
        "1",
        *scenario.sipp_args,
    ]
    before, start = children_cpu(), time.time()
    done = subprocess.run(
        args, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, check=False
    )
    result = SippResult(cpu=children_cpu() - before, wall=time.time() - start, code=done.returncode)
    rows = [line.split(";") for line in stat.read_text().splitlines() if line.strip()]
    if len(rows) >= 2:
        last = dict(zip(rows[0], rows[-1], strict=False))
        result.calls = int(last.get("OutgoingCall(C)", 0))
        result.successful = int(last.get("SuccessfulCall(C)", 0))
        result.failed = int(last.get("FailedCall(C)", 0))
        result.rate = float(last.get("CallRate(C)", 0))
    # Calls SIPp never finished (still open at its timeout) count as failed too.
    result.failed = max(result.failed, count - result.successful)
    return result


# -- one step -----------------------------------------------------------------------------
@dataclass(slots=True)
class Step:
    rate: float
    sipp: SippResult
    cpu_load: float  # siptrap's CPU seconds while SIPp ran
    cpu_total: float  # including writing out the backlog afterwards
    drain: float  # seconds of backlog after SIPp finished
    rss: float
    rcvbuf_errors: int
    socket_drops: int
    dropped_events: int
    shed: int
    alive: bool = True
    max_backlog: float = 1.0
    seconds: float = 5.0  # how long SIPp was asked to send

    @property
    def clean(self) -> bool:
        """No failed call, no event dropped, and the recording kept up: what was queued
        was written within max_backlog seconds of the end (a backlog that only a 5 s
        step hides would overflow the queues under sustained load)."""
        return (
            self.alive
            and self.sipp.failed == 0
            and self.dropped_events == 0
            and self.drain <= self.max_backlog
        )

    def row(self, scenario: Scenario) -> str:
        busy = self.cpu_load / self.sipp.wall * 100 if self.sipp.wall else 0.0
        per_call = self.cpu_total / self.sipp.successful * 1e6 if self.sipp.successful else 0.0
        per_tx = per_call / scenario.transactions
        return (
            f"{self.rate:>8,.0f}{self.sipp.rate:>9,.0f}{self.sipp.calls:>8}{self.sipp.failed:>7}"
            f"{busy:>7.0f}%{per_tx:>9.0f}{self.drain:>7.1f}{self.rss:>8.1f}"
            f"{self.rcvbuf_errors:>8}{self.socket_drops:>7}{self.dropped_events:>8}{self.shed:>6}"
            f"{self.sipp.cpu / self.sipp.wall * 100 if self.sipp.wall else 0:>7.0f}%"
            f"{'' if self.clean else '  FAIL'}"
        )


HEADER = (
    f"{'rate':>8}{'sipp/s':>9}{'calls':>8}{'failed':>7}{'cpu':>8}{'µs/tx':>9}{'drain':>7}"
    f"{'rss MiB':>8}{'rcvbuf':>8}{'sockdr':>7}{'evdrop':>8}{'shed':>6}{'sipp':>8}"
)


def run_step(
    hp: Honeypot,
    scenario: Scenario,
    rate: float,
    seconds: float,
    cwd: Path,
    max_backlog: float = 1.0,
) -> Step:
    stats_before = hp.last_stats()
    snmp_before, drops_before = udp_snmp(), socket_drops(hp.port) or 0
    cpu_before = cpu_seconds(hp.pid)
    sipp = run_sipp(scenario, hp.port, rate, seconds, cwd)
    alive = hp.alive()
    cpu_load = cpu_seconds(hp.pid) - cpu_before if alive else 0.0
    drain = hp.wait_idle() if alive else 0.0
    cpu_total = cpu_seconds(hp.pid) - cpu_before if alive else 0.0
    if alive:
        time.sleep(1.2)  # one more sensor.stats after the backlog
    stats = hp.last_stats() if alive else {}
    return Step(
        rate=rate,
        sipp=sipp,
        cpu_load=cpu_load,
        cpu_total=cpu_total,
        drain=drain,
        rss=rss_mib(hp.pid) if alive else 0.0,
        rcvbuf_errors=udp_snmp()["RcvbufErrors"] - snmp_before["RcvbufErrors"],
        socket_drops=(socket_drops(hp.port) or 0) - drops_before,
        dropped_events=stats.get("dropped_events", 0) - stats_before.get("dropped_events", 0),
        shed=stats.get("shed", 0) - stats_before.get("shed", 0),
        alive=alive,
        max_backlog=max_backlog,
        seconds=seconds,
    )


# -- one scenario -------------------------------------------------------------------------
@dataclass(slots=True)
class Outcome:
    scenario: Scenario
    steps: list[Step] = field(default_factory=list)
    held: Step | None = None
    flood: Step | None = None
    alive_after_flood: bool = False
    rss_end: float = 0.0
    rcvbuf: int | None = None
    exit_code: int | None = None
    stopped: dict[str, Any] | None = None
    recorded: dict[str, int] = field(default_factory=dict)


def step_up(rate: float, factor: float) -> float:
    return round(rate * factor, -1) if rate >= 100 else round(rate * factor)


def ramp(
    hp: Honeypot, scenario: Scenario, args: argparse.Namespace, workdir: Path, out: Outcome
) -> None:
    """Rising rates from the start rate until a step fails (each failure tried once more,
    the machine being noisy); if the very first rate fails, halve it until one holds."""
    rate = args.start.get(scenario.name, scenario.start)
    going_down = False
    while 1 <= rate <= args.max_rate:
        step = run_step(hp, scenario, rate, args.seconds, workdir, args.max_backlog)
        print(step.row(scenario), flush=True)
        out.steps.append(step)
        if not step.clean and step.alive and not args.quick:
            step = run_step(hp, scenario, rate, args.seconds, workdir, args.max_backlog)
            print(step.row(scenario) + "  (repeat)", flush=True)
            out.steps.append(step)
        if not step.alive:
            return
        if step.clean:
            out.held = step
            if going_down:
                return
            rate = step_up(rate, args.factor)
        elif out.held is not None or args.quick:
            return
        else:
            going_down = True
            rate = round(rate / 2)


def run_scenario(scenario: Scenario, args: argparse.Namespace, workdir: Path) -> Outcome:
    hp = Honeypot(workdir, NO_ANALYSIS if args.no_analysis else "")
    hp.start()
    out = Outcome(scenario, rcvbuf=granted_rcvbuf(hp.port))
    print(
        f"\n== {scenario.name}: siptrap pid {hp.pid} on udp:{HOST}:{hp.port}, "
        f"SO_RCVBUF granted {out.rcvbuf}"
    )
    print(HEADER)
    try:
        ramp(hp, scenario, args, workdir, out)
        if out.held is not None and not args.no_flood:
            print(f"-- flood at twice {out.held.rate:,.0f}/s")
            out.flood = run_step(hp, scenario, out.held.rate * 2, args.seconds, workdir)
            print(out.flood.row(scenario), flush=True)
        out.alive_after_flood = hp.alive() and hp.answers_options()
        out.rss_end = rss_mib(hp.pid) if hp.alive() else 0.0
    finally:
        out.exit_code = hp.stop()
    out.stopped = hp.stopped
    out.recorded = hp.recorded()
    return out


def summary(outcome: Outcome) -> None:
    s = outcome.scenario
    print(f"\n{s.name}:")
    held = outcome.held
    if held is None:
        print("  no rate held without failures")
    else:
        busy = held.cpu_load / held.sipp.wall * 100 if held.sipp.wall else 0.0
        per_tx = held.cpu_total / max(1, held.sipp.successful) / s.transactions * 1e6
        print(
            f"  held {held.rate:,.0f} calls/s = {held.rate * s.transactions:,.0f} transactions/s"
            f" for {held.sipp.wall:.1f} s with 0 failed; siptrap CPU {busy:.0f} % of a core"
            f" while loaded, {per_tx:.0f} µs CPU per transaction including the backlog"
            f" ({held.drain:.1f} s after), RSS {held.rss:.1f} MiB;"
            f" {held.sipp.successful * s.transactions / (held.seconds + held.drain):,.0f}"
            " transactions/s counting the time to write everything out"
        )
    flood = outcome.flood
    if flood is not None:
        print(
            f"  flood {flood.rate:,.0f} calls/s: {flood.sipp.failed} of {flood.sipp.calls} calls"
            f" failed, kernel dropped {flood.rcvbuf_errors} datagrams"
            f" (socket {flood.socket_drops}),"
            f" siptrap shed {flood.shed} requests and dropped {flood.dropped_events} events;"
            f" answering afterwards: {'yes' if outcome.alive_after_flood else 'NO'};"
            f" RSS at the end {outcome.rss_end:.1f} MiB"
        )
    stopped = outcome.stopped or {}
    rec = outcome.recorded
    complete = (
        stopped.get("requests") == rec.get("sqlite_requests") == rec.get("jsonl_requests")
        and stopped.get("dropped_events") == 0
    )
    print(
        f"  stop: exit {outcome.exit_code}, siptrap counted {stopped.get('requests')} requests,"
        f" stored {rec.get('sqlite_requests')} in SQLite and {rec.get('jsonl_requests')} in JSON"
        f" lines ({rec.get('sqlite_events')} events, {rec.get('sqlite_messages')} messages),"
        f" dropped events {stopped.get('dropped_events')}: {'complete' if complete else 'LOSS'}"
    )


def siptrap_source() -> str:
    """Where the siptrap that runs comes from (PYTHONPATH may name another checkout)."""
    code = "import siptrap, sys; sys.stdout.write(siptrap.__file__)"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    return str(Path(done.stdout).parent) if done.returncode == 0 else "?"


def machine() -> str:
    try:
        import uvloop  # noqa: F401

        loop = "uvloop yes"
    except ImportError:
        loop = "uvloop no"
    return (
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}; nproc {os.cpu_count()}; "
        f"Python {platform.python_version()}; {loop}; "
        f"net.core.rmem_max {Path('/proc/sys/net/core/rmem_max').read_text().strip()}; "
        f"SO_RCVBUF for 8 MiB asked: {probe_rcvbuf()}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="smoke run: two low rates, 2 s")
    parser.add_argument("--scenario", action="append", choices=sorted(SCENARIOS))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--factor", type=float, default=1.3)
    parser.add_argument("--max-rate", type=float, default=40000.0)
    parser.add_argument("--no-flood", action="store_true")
    parser.add_argument(
        "--max-backlog",
        type=float,
        default=1.0,
        metavar="S",
        help="a step holds only if siptrap wrote its backlog within S seconds",
    )
    parser.add_argument(
        "--no-analysis", action="store_true", help="switch the live analysis sink off"
    )
    parser.add_argument("--keep", metavar="DIR", help="keep data directories under DIR")
    for name in SCENARIOS:
        parser.add_argument(f"--start-{name}", type=float, metavar="RATE")
    args = parser.parse_args()
    args.start = {n: getattr(args, f"start_{n}") for n in SCENARIOS if getattr(args, f"start_{n}")}
    if args.quick:
        args.seconds = min(args.seconds, 2.0)
        args.start = {name: 50.0 for name in SCENARIOS} | args.start
        args.factor, args.max_rate = 4.0, 200.0
    names = args.scenario or list(SCENARIOS)
    print(machine())
    print(f"load average before: {os.getloadavg()[0]:.2f}; siptrap from {siptrap_source()}")
    if args.no_analysis:
        print("live analysis switched off ([analysis] enabled = false)")
    print(f"RcvbufErrors before: {udp_snmp()['RcvbufErrors']}")
    base = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="siptrap-load-"))
    outcomes = []
    try:
        for name in names:
            workdir = base / name
            workdir.mkdir(parents=True, exist_ok=True)
            outcomes.append(run_scenario(SCENARIOS[name], args, workdir))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    print(f"\nRcvbufErrors after: {udp_snmp()['RcvbufErrors']}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")
    print(
        "columns: rate asked, rate SIPp reached, calls, failed calls, siptrap CPU while"
        " loaded, CPU µs per transaction incl. backlog, backlog seconds, RSS, kernel"
        " RcvbufErrors, socket drops, events dropped, requests shed, SIPp CPU"
    )
    for outcome in outcomes:
        summary(outcome)


if __name__ == "__main__":
    main()
