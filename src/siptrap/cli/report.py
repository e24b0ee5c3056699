"""`siptrap report`: the period's attacks as one HTML file (or Markdown) to mail."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any


def cmd_report(args: argparse.Namespace) -> int:
    """Exit 2, with a message, for every problem with the data directory (no database,
    not a database, unreadable) or the output file, as for a wrong --since/--until."""
    import sqlite3

    from ..startup import StartupError, check_database, open_output
    from ..web.queries import QueryError, parse_time
    from ..web.report import html_report, markdown_report

    data_dir = Path(args.data_dir)
    try:
        check_database(data_dir / "siptrap.db")
        since = parse_time(args.since, "--since") if args.since else None
        until = parse_time(args.until, "--until") if args.until else None
        render = markdown_report if args.markdown else html_report
        text = render(data_dir, args.sensor, since, until)
        if args.output and args.output != "-":
            with open_output(args.output) as out:
                out.write(text)
        else:
            sys.stdout.write(text)
    except (StartupError, QueryError) as exc:
        print(f"siptrap report: {exc}", file=sys.stderr)
        return 2
    except sqlite3.Error as exc:
        print(f"siptrap report: {data_dir / 'siptrap.db'}: {exc}", file=sys.stderr)
        return 2
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
