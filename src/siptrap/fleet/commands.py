"""`siptrap analyze --store URL`: the fleet's cross-sensor composed alerts, printed as
`siptrap analyze` prints the alerts of captures (text, or one JSON event a line)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any


def times(args: argparse.Namespace) -> tuple[float | None, float | None]:
    from ..fleet.reader import parse_time

    now = time.time()
    return parse_time(args.since, now), parse_time(args.until, now)


def analyze_store(args: argparse.Namespace) -> int:
    """`siptrap analyze --store URL`: the cross-sensor composed alerts of the fleet."""
    from ..events.record import Event
    from ..fleet.correlate import correlate
    from ..fleet.reader import ReaderError, open_reader
    from ..outputs.alerts import alert_text

    try:
        since, until = times(args)
        reader = open_reader(args.store, None)
        try:
            alerts = correlate(reader, since, until, args.min_sensors)
        finally:
            reader.close()
    except ReaderError as exc:
        print(f"siptrap analyze: {exc}", file=sys.stderr)
        return 2
    for fields in alerts:
        if args.json:
            event = Event("analysis.alert.raised", time.time(), args.sensor, None, fields)
            print(json.dumps(event.to_dict(), ensure_ascii=False, default=str))
        else:
            print(alert_text(fields) + _sensor_lines(fields))
    print(f"siptrap analyze: {len(alerts)} cross-sensor alert(s) in the fleet store")
    return 0


def _sensor_lines(fields: dict[str, Any]) -> str:
    from ..outputs.alerts import clean

    lines = [f"Sensors:     {', '.join(clean(s) for s in fields['sensors'])}"]
    for name, seen in fields["per_sensor"].items():
        lines.append(
            f"  {clean(name)}: {seen['count']} from {seen['first_seen']} to {seen['last_seen']}"
        )
    return "\n".join(lines) + "\n"


def add_store_arguments(p: argparse.ArgumentParser) -> None:
    """`--store`, `--since`, `--until`, `--min-sensors` for `siptrap analyze`."""
    p.add_argument("--store", metavar="URL", help="correlate the PostgreSQL fleet store")
    p.add_argument("--since", metavar="TIME", help="with --store: from (ISO 8601, or 24h, 7d ago)")
    p.add_argument("--until", metavar="TIME", help="with --store: until (ISO 8601, or 1h ago)")
    p.add_argument(
        "--min-sensors", type=int, default=2, metavar="N", help="with --store: seen at N sensors"
    )
