"""`siptrap report`: the period's attacks as one HTML file (or Markdown) to mail."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def cmd_report(args: argparse.Namespace) -> int:
    from ..web.queries import QueryError, parse_time
    from ..web.report import html_report, markdown_report

    data_dir = Path(args.data_dir)
    if not (data_dir / "siptrap.db").exists():
        print(f"siptrap report: no database in {data_dir}", file=sys.stderr)
        return 1
    try:
        since = parse_time(args.since, "--since") if args.since else None
        until = parse_time(args.until, "--until") if args.until else None
    except QueryError as exc:
        print(f"siptrap report: {exc}", file=sys.stderr)
        return 2
    render = markdown_report if args.markdown else html_report
    text = render(data_dir, args.sensor, since, until)
    if args.output and args.output != "-":
        Path(args.output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("report", help="a self-contained HTML (or Markdown) report of a period")
    p.add_argument(
        "--data-dir",
        default="./siptrap-data",
        metavar="DIR",
        help="data directory (default ./siptrap-data)",
    )
    p.add_argument("--since", help="ISO 8601 or epoch seconds (default: an hour before --until)")
    p.add_argument("--until", help="ISO 8601 or epoch seconds (default: the newest event)")
    p.add_argument("-o", "--output", metavar="FILE", help="output file (default stdout)")
    p.add_argument("--markdown", action="store_true", help="Markdown instead of HTML")
    p.add_argument("--sensor", default="siptrap", help="sensor name in the title")
    p.set_defaults(func=cmd_report)
