"""`siptrap analyze`: the live honeypot's analysis engine, run over captures and raw SIP
message files with the capture's own timestamps.

Which side is the honeypot? A capture shows both directions. The addresses that receive
requests opening a dialog or transaction (no To tag) are servers; their responses are the
honeypot's answers (which users exist, which calls were answered and where media goes),
their in-dialog requests (a BYE ending a call) are the honeypot's own. Every other request
is analysed. RTP packets to a port a server answered a call with are that call's media.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ..analysis.alerts import Alert, final_states
from ..analysis.engine import AnalysisEngine, EngineSettings
from ..analysis.evaluate import Source
from ..analysis.live import alert_event as live_alert_event
from ..analysis.rules import RuleError, RuleSet, load_builtin_rules, load_rules
from ..events.record import Event
from ..fleet.commands import add_store_arguments, analyze_store
from ..sip import ParseError, Request, parse
from .capture import CaptureError, CaptureStats, Datagram, looks_like_sip, open_inputs, probably_sip

MAX_ENDPOINTS = 65536


@dataclass(slots=True)
class AnalyzeResult:
    """The alerts (their final state) and what was read."""

    alerts: list[Alert]
    emissions: int
    messages: int
    datagrams: int
    media_packets: int
    stats: CaptureStats
    commands_not_run: int = 0
    seconds: float = 0.0
    extra: dict[str, int] = field(default_factory=dict)


class _Sides:
    """Which (address, port) pairs are servers (the honeypot) and which are clients."""

    def __init__(self) -> None:
        self.servers: OrderedDict[tuple[str, int], None] = OrderedDict()
        self.clients: OrderedDict[tuple[str, int], None] = OrderedDict()

    @staticmethod
    def _add(table: OrderedDict[tuple[str, int], None], key: tuple[str, int]) -> None:
        table[key] = None
        if len(table) > MAX_ENDPOINTS:
            table.popitem(last=False)

    def request(self, msg: Request, d: Datagram) -> None:
        if not (msg.to_addr and msg.to_addr.tag):
            self._add(self.servers, (d.dst_ip, d.dst_port))
            self._add(self.clients, (d.src_ip, d.src_port))

    def is_server(self, d: Datagram) -> bool:
        return (d.src_ip, d.src_port) in self.servers

    def is_client(self, d: Datagram) -> bool:
        return (d.src_ip, d.src_port) in self.clients


def analyze_datagrams(
    datagrams: Iterable[Datagram], engine: AnalysisEngine
) -> tuple[list[Alert], int, int, int]:
    """Feed datagrams to the engine in order; return every alert emission and counts."""
    sides = _Sides()
    sources = _Sources()
    emitted: list[Alert] = []
    count = media = 0
    last_ts = 0.0
    for d in datagrams:
        count += 1
        last_ts = d.ts
        payload = d.payload
        if d.transport == "udp" and not looks_like_sip(payload):
            if engine.media_packet(d.dst_ip, d.dst_port, d.ts):
                media += 1
            elif probably_sip(d) and payload.strip():
                engine.malformed(payload, sources.of(d), d.ts, "not a SIP message")
            continue
        try:
            msg = parse(payload, stream=d.transport != "udp")
        except ParseError as exc:
            engine.malformed(payload, sources.of(d), d.ts, exc.reason)
            continue
        if isinstance(msg, Request):
            if sides.is_server(d) and msg.to_addr is not None and msg.to_addr.tag:
                engine.own_request(msg, d.ts)
            else:
                sides.request(msg, d)
                engine.request(msg, sources.of(d), d.ts)
        elif not sides.is_client(d):
            engine.response(msg, sources.of(d), d.ts)
        emitted += engine.take()
    engine.finish(last_ts)
    emitted += engine.take()
    return emitted, count, media, engine.messages


class _Sources:
    """The `Source` of a datagram: one object per address pair, the latest kept."""

    def __init__(self) -> None:
        self.known: dict[tuple[str, int, str, str, int], Source] = {}

    def of(self, d: Datagram) -> Source:
        key = (d.src_ip, d.src_port, d.transport, d.dst_ip, d.dst_port)
        found = self.known.get(key)
        if found is None:
            found = Source(*key)
            if len(self.known) >= MAX_ENDPOINTS:
                self.known.clear()
            self.known[key] = found
        return found


def analyze_paths(
    paths: Sequence[str | Path], rules: RuleSet, settings: EngineSettings | None = None
) -> AnalyzeResult:
    """Run the engine over capture and message files (raises CaptureError on bad input)."""
    stats = CaptureStats()
    datagrams = open_inputs(list(paths), stats=stats, accept=None)
    engine = AnalysisEngine(rules, settings)
    emitted, count, media, messages = analyze_datagrams(datagrams, engine)
    finals = [replace(a, closed=True) for a in final_states(emitted)]
    return AnalyzeResult(
        alerts=finals,
        emissions=len(emitted),
        messages=messages,
        datagrams=count,
        media_packets=media,
        stats=stats,
        commands_not_run=engine.commands_not_run,
    )


def alert_event(alert: Alert, sensor: str) -> Event:
    """An alert as the event the live honeypot emits, stamped with the capture's time."""
    return live_alert_event(alert, sensor, alert.last_seen)


# -- the command ---------------------------------------------------------------------------------
def cmd_analyze(args: argparse.Namespace) -> int:
    """Analyse captures and raw SIP files; print the alerts (text, or one JSON event a line)."""
    from ..outputs.alerts import alert_text

    if args.store:
        return analyze_store(args)
    if not args.files:
        print("siptrap analyze: give FILEs, or --store URL", file=sys.stderr)
        return 2
    try:
        rules, settings = _rules_and_settings(args)
        result = analyze_paths(args.files, rules, settings)
    except RuleError as exc:
        print(f"siptrap analyze: {exc}", file=sys.stderr)
        return 2
    except CaptureError as exc:
        print(f"siptrap analyze: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:  # a configuration problem
        print(f"siptrap analyze: {exc}", file=sys.stderr)
        return 2
    for alert in result.alerts:
        event = alert_event(alert, args.sensor)
        if args.json:
            print(json.dumps(event.to_dict(), ensure_ascii=False, default=str))
        else:
            print(alert_text(event.fields))
    s = result.stats
    print(
        f"siptrap analyze: {result.messages} SIP messages in {result.datagrams} datagrams "
        f"({result.media_packets} media packets) from {s.files} file(s); "
        f"{len(result.alerts)} alert(s); {s.problems} capture problem(s)"
        + (
            f"; {result.commands_not_run} system action(s) not run (offline)"
            if result.commands_not_run
            else ""
        ),
        file=sys.stderr,
    )
    return 0


def _rules_and_settings(args: argparse.Namespace) -> tuple[RuleSet, EngineSettings]:
    extensions: frozenset[str] | None = None
    proxies: tuple[str, ...] = ()
    home = args.home_region or ""
    configured: tuple[str, ...] = ()
    if args.config:
        from ..config import load_config

        config = load_config(args.config)
        extensions = frozenset(e.user for e in config.extension_list())
        proxies = tuple(config.analysis.proxies)
        home = home or config.analysis.home_region
        configured = tuple(config.analysis.rules)
    if args.rules:
        rules = load_rules(args.rules)
    elif configured:
        rules = load_rules(configured)
    else:
        rules = load_builtin_rules()
    if args.proxy:
        proxies = tuple(args.proxy)
    return rules, EngineSettings(extensions=extensions, proxies=proxies, home_region=home)


def add_analyze_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "analyze", help="analyse pcap/pcapng captures and raw SIP files, print the alerts"
    )
    p.add_argument("files", nargs="*", metavar="FILE", help="pcap, pcapng or raw SIP message")
    p.add_argument("--json", action="store_true", help="one analysis.alert.raised event a line")
    p.add_argument(
        "--rules",
        action="append",
        metavar="FILE",
        help="rule file or directory (repeatable); replaces the built-in rules",
    )
    p.add_argument(
        "--config",
        metavar="FILE",
        help="siptrap configuration: the honeypot's extensions, proxies, rules",
    )
    p.add_argument(
        "--proxy", action="append", metavar="ADDR", help="a proxy of the domain (repeatable)"
    )
    p.add_argument("--home-region", metavar="CC", help="the honeypot's country, e.g. GB")
    p.add_argument("--sensor", default="siptrap-analyze", help="sensor name in the events")
    add_store_arguments(p)  # --store URL: the fleet's cross-sensor alerts (issue 12)
    p.set_defaults(func=cmd_analyze)
