"""`siptrap analyze`: offline analysis of captures and message files, or of the fleet
store (`--store`), with the rules, extensions and proxies of a configuration."""

from __future__ import annotations

import argparse
import sys

from ..analysis.engine import EngineSettings
from ..analysis.rules import RuleError, RuleSet, load_builtin_rules, load_rules
from ..fleet.commands import add_store_arguments, analyze_store
from ..offline.analyze import alert_event, analyze_paths
from ..offline.capture import CaptureError
from ..outputs.jsontext import print_json


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
            print_json(event.to_dict())  # valid UTF-8 whatever bytes a header held
        else:
            print(alert_text(event.fields))
    s = result.stats
    print(
        f"siptrap analyze: {result.messages} SIP messages in {result.datagrams} datagrams "
        f"({result.media_packets} media packets, {result.keepalives} keep-alives) "
        f"from {s.files} file(s); "
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
    passwords: tuple[tuple[str, str], ...] = ()
    if args.config:
        from ..config import load_config

        config = load_config(args.config)
        plan = config.plan
        extensions = frozenset(e.user for e in plan)
        # the passwords let offline tell a cracked password, as the live honeypot does
        passwords = tuple((e.user, e.password) for e in plan if e.password is not None)
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
    return rules, EngineSettings(
        extensions=extensions, proxies=proxies, home_region=home, passwords=passwords
    )


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
