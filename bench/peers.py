"""siptrap against its peers under one SIPp client: qeeqbox `honeypots` and OpenCanary.

Installs `honeypots` and `opencanary` from PyPI (pip as configured) into throwaway
virtual environments under /tmp/siptrap-peers/ (kept between runs), then runs UDP SIP
servers on 127.0.0.1:

- qeeqbox's SIP server in the foreground (`server_main()`: its `run_server(process=True)`
  kills whatever holds the port), logging JSON to its standard output (a file);
- OpenCanary's SIP module (`twistd -n -y opencanary.tac`, only `sip` enabled, logging to
  a file); it never answers, so it "holds" a rate when it logged every request SIPp sent;
- siptrap as shipped and as bench/load.py runs it: JSON lines + SQLite + live analysis;
- with `--old SRC`, siptrap from another checkout's src/ too (PYTHONPATH), the same way:
  before and after a change in one run (`git archive 7e4300a src | tar -x -C /tmp/old_c`,
  then `--old /tmp/old_c/src`).

Every measurement runs the same SIPp OPTIONS client (`scenarios/options.xml`, `-nr`,
open loop) against each system in turn, round after round (interleaved: the machine's
load drifts). It prints:

- CPU µs per OPTIONS at `--cpu-rate` (utime + stime deltas from /proc/PID/stat, child
  processes included, the backlog included, over the requests SIPp sent), the median of
  the rounds, and each system's ratio to `honeypots`;
- the held rate: the highest of `--rates` with 0 failed calls in each of `--rounds`
  rounds AND SIPp reaching at least 95 % of the rate asked (OpenCanary: every request
  logged instead of 0 failed);
- a flood at 3 times each system's capacity (its held rate or, where none held, one
  core's worth at its CPU per message) for `--flood-seconds` (bench/flood.py's sender:
  one socket, every reply timed): the reply delay (median, 99th percentile), the share of
  requests answered within 200 ms, and resident memory before the flood, at its peak,
  and `--settle` seconds after it.

    .venv/bin/python bench/peers.py [--quick] [--rates 500,1000,2000,4000,8000]
        [--rounds 3] [--seconds 5] [--cpu-rate 1000] [--flood-seconds 10]
        [--only siptrap,honeypots,opencanary] [--old /tmp/old_c/src]

`--quick` (a few minutes): rates 1000,2000,4000, 2 s steps, a 5 s flood. Only 127.0.0.1
is used.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from flood import flood
from load import (
    HOST,
    SCENARIOS,
    Honeypot,
    SippResult,
    cpu_seconds,
    free_udp_port,
    rss_mib,
    run_sipp,
)

CACHE = Path("/tmp/siptrap-peers")
PACKAGES = {"honeypots": "honeypots==0.66", "opencanary": "opencanary==0.9.10"}
OPTIONS = SCENARIOS["options"]
PROMPT = 0.2  # seconds: a reply later than this is no use to the client

HONEYPOTS_MAIN = """
import sys
from honeypots import QSIPServer
# server_main() runs the Twisted reactor in this process: run_server(process=True)
# would first kill whatever holds the port.
QSIPServer(ip=sys.argv[1], port=int(sys.argv[2]), options="").server_main()
"""


def venv(name: str) -> Path:
    """The virtual environment holding `name` (created and installed once)."""
    where = CACHE / name
    python = where / "bin" / "python"
    marker = where / ".installed"
    if not marker.exists():
        subprocess.run([sys.executable, "-m", "venv", "--clear", str(where)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "-q", PACKAGES[name]],
            check=True,
            stdout=subprocess.DEVNULL,
        )
        marker.write_text(PACKAGES[name] + "\n")
    return python


class Server:
    """One SIP server process on udp:127.0.0.1:port."""

    name = ""
    answers = True  # replies to OPTIONS (OpenCanary only logs)

    def __init__(self, workdir: Path) -> None:
        self.workdir = workdir / self.name
        self.workdir.mkdir(parents=True)
        self.port = free_udp_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self) -> None:
        raise NotImplementedError

    def logged(self) -> int:
        """Requests the server has logged so far (for the servers that only log)."""
        return 0

    def shed(self) -> int:
        """Requests the server shed so far (siptrap's door; the others shed nothing)."""
        return 0

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def wait_idle(self, limit: float = 60.0) -> None:
        """Until the server's CPU falls under 10 % of a core (its backlog written)."""
        start, last = time.time(), cpu_seconds(self.pid)
        while time.time() - start < limit:
            time.sleep(0.5)
            now = cpu_seconds(self.pid)
            if now - last < 0.05:
                return
            last = now

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def _spawn(self, args: list[str], ready: Callable[[], bool]) -> None:
        log = (self.workdir / "server.log").open("wb")
        self.proc = subprocess.Popen(args, cwd=self.workdir, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.time() + 60
        while time.time() < deadline and self.proc.poll() is None:
            if ready():
                return
            time.sleep(0.2)
        raise RuntimeError(
            f"{self.name} did not start: {(self.workdir / 'server.log').read_text()}"
        )


def _listening(port: int) -> Callable[[], bool]:
    def ready() -> bool:
        return f":{port:04X} " in Path("/proc/net/udp").read_text()

    return ready


class QeeqboxServer(Server):
    name = "honeypots"

    def start(self) -> None:
        python = venv("honeypots")
        script = self.workdir / "run_sip.py"
        script.write_text(HONEYPOTS_MAIN)
        self._spawn([str(python), str(script), HOST, str(self.port)], _listening(self.port))


class CanaryServer(Server):
    name = "opencanary"
    answers = False

    def start(self) -> None:
        python = venv("opencanary")
        self.log_path = self.workdir / "canary.log"
        config = {
            "device.node_id": "bench",
            "device.listen_addr": HOST,
            "sip.enabled": True,
            "sip.port": self.port,
            "logger": {
                "class": "PyLogger",
                "kwargs": {
                    "formatters": {"plain": {"format": "%(message)s"}},
                    "handlers": {
                        "file": {"class": "logging.FileHandler", "filename": str(self.log_path)}
                    },
                },
            },
        }
        # OpenCanary reads ./opencanary.conf when /etc/opencanaryd/ and ~ have none.
        (self.workdir / "opencanary.conf").write_text(json.dumps(config))
        tac = python.parent / "opencanary.tac"
        twistd = python.parent / "twistd"
        self._spawn([str(twistd), "-n", "-y", str(tac), "--pidfile="], _listening(self.port))

    def logged(self) -> int:
        with contextlib.suppress(FileNotFoundError), self.log_path.open("rb") as f:
            return sum(1 for line in f if b'"logtype": 15001' in line)
        return 0


class SiptrapServer(Server):
    name = "siptrap"
    source: Path | None = None  # another checkout's src/ (the "siptrap-old" system)

    def start(self) -> None:
        self.hp = Honeypot(self.workdir, source=self.source)
        self.port = self.hp.port
        self.hp.start()
        self.proc = self.hp.proc

    def shed(self) -> int:
        return int(self.hp.last_stats().get("shed", 0))

    def stop(self) -> None:
        self.hp.stop()


@dataclass(slots=True)
class Tally:
    """What one system did, over the rounds."""

    cpu_us: list[float] = field(default_factory=list)
    held: dict[float, bool] = field(default_factory=dict)
    notes: dict[float, str] = field(default_factory=dict)
    rss_before: float = 0.0
    rss_peak: float = 0.0
    rss_after: float = 0.0
    flood_rate: float = 0.0
    flood_sent: int = 0
    flood_answered: int = 0
    flood_within: int = 0
    flood_p50: float = 0.0
    flood_p99: float = 0.0


def one_run(server: Server, rate: float, seconds: float, cwd: Path) -> tuple[SippResult, float]:
    """SIPp at `rate` against the server: (SIPp's result, the server's CPU µs per request)."""
    logged_before, cpu_before = server.logged(), cpu_seconds(server.pid)
    sipp = run_sipp(OPTIONS, server.port, rate, seconds, cwd)
    server.wait_idle()
    cpu = cpu_seconds(server.pid) - cpu_before
    if not server.answers:  # every request logged counts as handled
        sipp.failed = max(0, sipp.calls - (server.logged() - logged_before))
    return sipp, cpu / max(1, sipp.calls) * 1e6


def held(sipp: SippResult, rate: float, answers: bool = True) -> bool:
    """0 failed and SIPp kept 95 % of the rate. A server that never answers makes SIPp
    wait out every call, so its rate is not SIPp's to judge: every request logged."""
    kept = sipp.rate >= 0.95 * rate or not answers
    return sipp.failed == 0 and sipp.calls > 0 and kept


def measure(servers: list[Server], args: argparse.Namespace, cwd: Path) -> dict[str, Tally]:
    tallies = {s.name: Tally() for s in servers}
    for round_ in range(args.rounds):
        for server in servers:  # the same rate for all, one after the other
            _, per = one_run(server, args.cpu_rate, args.seconds, cwd)
            tallies[server.name].cpu_us.append(per)
            print(f"round {round_ + 1} cpu {server.name}: {per:,.0f} µs/OPTIONS", flush=True)
    for rate in args.rates:
        for round_ in range(args.rounds):
            for server in servers:
                t = tallies[server.name]
                if any(not ok for r, ok in t.held.items() if r <= rate):
                    continue  # failed at this rate or a lower one already
                shed_before = server.shed()
                sipp, _ = one_run(server, rate, args.seconds, cwd)
                t.held[rate] = held(sipp, rate, server.answers)
                t.notes[rate] = f"failed {sipp.failed}, SIPp {sipp.rate:,.0f}/s"
                if server.shed() > shed_before:
                    t.notes[rate] += f", shed at the door {server.shed() - shed_before}"
                print(f"round {round_ + 1} {server.name} {rate:,.0f}/s: {t.notes[rate]}")
    return tallies


def held_rate(t: Tally) -> float:
    best = 0.0
    for rate in sorted(t.held):
        if not t.held[rate]:
            break
        best = rate
    return best


class PeakRss(threading.Thread):
    """The highest resident memory of a server while it runs."""

    def __init__(self, server: Server) -> None:
        super().__init__()
        self.server = server
        self.peak = rss_mib(server.pid)
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set() and self.server.alive():
            self.peak = max(self.peak, rss_mib(self.server.pid))
            time.sleep(0.2)


def percentile(values: list[float], share: float) -> float:
    return values[min(len(values) - 1, int(len(values) * share))] if values else 0.0


def floods(servers: list[Server], tallies: dict[str, Tally], args: argparse.Namespace) -> None:
    for server in servers:
        t = tallies[server.name]
        # Capacity: the strict held rate; where none held, one core's worth at the
        # system's CPU per message (what it could answer with a core to itself).
        base = held_rate(t) or round(1e6 / statistics.median(t.cpu_us), -2)
        t.flood_rate = 3 * base
        logged_before = server.logged()
        t.rss_before = rss_mib(server.pid)
        watcher = PeakRss(server)
        watcher.start()
        sent, replied = flood(server.port, t.flood_rate, args.flood_seconds)
        server.wait_idle()
        watcher.stop.set()
        watcher.join()
        t.rss_peak = watcher.peak
        time.sleep(args.settle)
        t.rss_after = rss_mib(server.pid)
        t.flood_sent = len(sent)
        if server.answers:
            delays = sorted(replied[c] - sent[c] for c in replied if c in sent)
            t.flood_answered = len(delays)
            t.flood_within = sum(d <= PROMPT for d in delays)
            t.flood_p50, t.flood_p99 = percentile(delays, 0.5), percentile(delays, 0.99)
        else:  # logged, not answered: no delay to measure
            t.flood_answered = server.logged() - logged_before
        print(f"flood {server.name} {t.flood_rate:,.0f}/s done", flush=True)


def report(tallies: dict[str, Tally], args: argparse.Namespace) -> None:
    reference = statistics.median(tallies["honeypots"].cpu_us) if "honeypots" in tallies else 0.0
    print()
    print(
        f"date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; load average"
        f" {' '.join(f'{x:.2f}' for x in os.getloadavg())}; nproc {os.cpu_count()}"
    )
    print(
        f"| system | CPU µs/OPTIONS at {args.cpu_rate:,.0f}/s (median; rounds) | vs honeypots"
        " | held rate (strict) | flood at 3x capacity | reply delay p50 / p99"
        f" | requests answered within {PROMPT * 1000:.0f} ms | RSS before / peak / after |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, t in tallies.items():
        cpu = statistics.median(t.cpu_us)
        ratio = f"{cpu / reference:.2f}" if reference else "-"
        rounds = " / ".join(f"{x:,.0f}" for x in t.cpu_us)
        flood_cell = f"{t.flood_rate:,.0f}/s, {t.flood_sent:,} sent"
        if name == "opencanary":
            delays = "never replies"
            prompt = f"- ({t.flood_answered / max(1, t.flood_sent):.0%} logged)"
        else:
            delays = f"{t.flood_p50 * 1000:,.0f} / {t.flood_p99 * 1000:,.0f} ms"
            prompt = f"{t.flood_within / max(1, t.flood_sent):.0%} (of {t.flood_answered:,})"
        rss = f"{t.rss_before:.0f} / {t.rss_peak:.0f} / {t.rss_after:.0f} MiB"
        print(
            f"| {name} | {cpu:,.0f} ({rounds}) | {ratio} | {held_rate(t):,.0f}/s"
            f" | {flood_cell} | {delays} | {prompt} | {rss} |"
        )
    for name, t in tallies.items():
        steps = "; ".join(
            f"{r:,.0f}: {'held' if t.held[r] else 'NOT'} ({t.notes[r]})" for r in t.held
        )
        print(f"{name}: {steps}")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few minutes: see the docstring")
    parser.add_argument("--rates", default="500,1000,2000,4000,8000")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--cpu-rate", type=float, default=1000.0)
    parser.add_argument("--flood-seconds", type=float, default=10.0)
    parser.add_argument("--settle", type=float, default=5.0)
    parser.add_argument("--only", default="honeypots,opencanary,siptrap")
    parser.add_argument("--old", type=Path, help="another checkout's src/: siptrap-old")
    args = parser.parse_args()
    if args.quick:
        args.rates, args.seconds, args.flood_seconds = "1000,2000,4000", 2.0, 5.0
        args.settle = min(args.settle, 3.0)
    args.rates = [float(r) for r in args.rates.split(",")]
    return args


def main() -> None:
    args = parse_args()
    kinds: dict[str, type[Server]] = {
        "honeypots": QeeqboxServer,
        "opencanary": CanaryServer,
        "siptrap": SiptrapServer,
    }
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())}", flush=True)
    with tempfile.TemporaryDirectory(prefix="siptrap-peers-") as tmp:
        servers = [kinds[name](Path(tmp)) for name in args.only.split(",")]
        if args.old is not None:
            old = type("OldSiptrap", (SiptrapServer,), {"name": "siptrap-old"})
            old.source = args.old.resolve()
            servers.append(old(Path(tmp)))
        try:
            for server in servers:
                server.start()
            time.sleep(2.0)
            tallies = measure(servers, args, Path(tmp))
            floods(servers, tallies, args)
        finally:
            for server in servers:
                server.stop()
    report(tallies, args)


if __name__ == "__main__":
    main()
