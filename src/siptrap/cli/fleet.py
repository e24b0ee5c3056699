"""`siptrap db upgrade`, `siptrap collect`, `siptrap export` (issue 12: fleets).

`siptrap analyze --store URL` is in fleet.commands (offline.analyze calls it)."""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from typing import Any


def cmd_db_upgrade(args: argparse.Namespace) -> int:
    """Create or migrate the PostgreSQL fleet store (safe to run again)."""
    import psycopg

    from ..store.postgres_schema import LATEST, PostgresSchemaError, upgrade

    try:
        with psycopg.connect(args.store, autocommit=True, connect_timeout=10) as conn:
            applied = upgrade(conn)
    except (psycopg.Error, PostgresSchemaError) as exc:
        print(f"siptrap db upgrade: {str(exc).strip()}", file=sys.stderr)
        return 1
    done = ", ".join(map(str, applied)) if applied else "none (already up to date)"
    print(f"siptrap db upgrade: schema version {LATEST}; migrations applied now: {done}")
    return 0


def cmd_collect(args: argparse.Namespace) -> int:
    """Consume the NATS stream into PostgreSQL until Ctrl-C or SIGTERM."""
    import logging

    from ..events.record import Event
    from ..fleet.collector import Collector, CollectorSettings

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    settings = CollectorSettings(
        args.nats,
        args.stream,
        args.store,
        args.durable,
        args.batch,
        args.ack_wait,
        args.analyze_interval,
        args.analyze_window,
    )
    collector = Collector(settings)

    def print_alert(fields: dict[str, Any]) -> None:
        event = Event("analysis.alert.raised", time.time(), "siptrap-collect", None, fields)
        print(json.dumps(event.to_dict(), ensure_ascii=False, default=str), flush=True)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, collector.stop)
        await collector.run(print_alert)

    asyncio.run(main())
    s = collector.stats
    print(
        f"siptrap collect: {s.received} received, {s.stored} stored, {s.duplicates} "
        f"duplicate(s), {s.invalid} invalid, {s.outages} store outage retries",
        file=sys.stderr,
    )
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    """Write a blocklist, numbers or user agents (plain, CSV, APIBan JSON, STIX 2.1)."""
    from ..fleet.commands import times
    from ..fleet.export import ExportError, export
    from ..fleet.reader import ReaderError, open_reader

    try:
        since, until = times(args)
        reader = open_reader(args.store, args.data_dir)
        try:
            text = export(reader, args.kind, args.format, since, until)
        finally:
            reader.close()
    except (ReaderError, ExportError) as exc:
        print(f"siptrap export: {exc}", file=sys.stderr)
        return 1
    if args.output and args.output != "-":
        with open(args.output, "w", encoding="utf-8") as out:
            out.write(text)
    else:
        sys.stdout.write(text)
    return 0


def add_parser(sub: Any) -> None:
    p_db = sub.add_parser("db", help="the PostgreSQL fleet store")
    db_sub = p_db.add_subparsers(dest="db_command", metavar="SUBCOMMAND")
    p_up = db_sub.add_parser("upgrade", help="create or migrate the fleet store (safe twice)")
    p_up.add_argument("--store", required=True, metavar="URL", help="postgresql://...")
    p_up.set_defaults(func=cmd_db_upgrade)

    p_col = sub.add_parser("collect", help="write the fleet's NATS stream to PostgreSQL")
    p_col.add_argument("--nats", required=True, metavar="URL", help="nats://host:4222")
    p_col.add_argument("--stream", default="siptrap", metavar="NAME", help="JetStream stream")
    p_col.add_argument("--store", required=True, metavar="URL", help="postgresql://...")
    p_col.add_argument("--durable", default="siptrap-collect", help="shared consumer name")
    p_col.add_argument("--batch", type=int, default=500, help="messages per transaction")
    p_col.add_argument(
        "--ack-wait",
        type=float,
        default=30.0,
        help="seconds before an unacked batch is redelivered",
    )
    p_col.add_argument(
        "--analyze-interval",
        type=float,
        default=0.0,
        metavar="S",
        help="live mode: correlate the store every S seconds, print new cross-sensor alerts",
    )
    p_col.add_argument(
        "--analyze-window", type=float, default=3600.0, metavar="S", help="live mode: look back S s"
    )
    p_col.set_defaults(func=cmd_collect)

    p_exp = sub.add_parser("export", help="blocklists and indicators: plain, CSV, APIBan, STIX")
    where = p_exp.add_mutually_exclusive_group()
    where.add_argument("--store", metavar="URL", help="the PostgreSQL fleet store")
    where.add_argument("--data-dir", metavar="DIR", help="one sensor's data directory")
    p_exp.add_argument(
        "--format",
        default="plain",
        choices=("plain", "csv", "apiban", "stix"),
        help="output format",
    )
    p_exp.add_argument(
        "--kind", default="sources", choices=("sources", "numbers", "user-agents"), help="what"
    )
    p_exp.add_argument("--since", metavar="TIME", help="from (ISO 8601, or 24h, 7d ago)")
    p_exp.add_argument("--until", metavar="TIME", help="until (ISO 8601, or 1h ago)")
    p_exp.add_argument("-o", "--output", metavar="FILE", help="output file (default stdout)")
    p_exp.set_defaults(func=cmd_export)
