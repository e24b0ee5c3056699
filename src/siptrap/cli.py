"""The `siptrap` command and its subcommands."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from . import __version__
from .sip import ParseError, parse
from .sip.describe import describe


def cmd_parse(args: argparse.Namespace) -> int:
    """Print the parsed form of each message file (`-` reads stdin)."""
    for name in args.files:
        try:
            data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            print(f"siptrap parse: {name}: {exc.strerror}", file=sys.stderr)
            if args.json:
                print(json.dumps({"file": name, "error": f"cannot read: {exc.strerror}"}))
            continue
        print_parsed(name, data, args.json)
    return 0


def print_parsed(name: str, data: bytes, as_json: bool) -> None:
    try:
        msg = parse(data)
    except ParseError as exc:
        if as_json:
            print(json.dumps({"file": name, "error": exc.reason, "size": len(data)}))
        else:
            print(f"== {name}: not a SIP message: {exc.reason}")
        return
    form = describe(msg)
    if as_json:
        print(json.dumps({"file": name, **form}, ensure_ascii=False))
        return
    print(f"== {name}: {form['kind']}")
    for key, value in form.items():
        if key not in ("kind", "headers"):
            print(f"  {key}: {value}")
    print("  headers:")
    for hname, hvalue in form["headers"]:
        print(f"    {hname}: {hvalue}")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siptrap", description="A SIP/VoIP honeypot.")
    parser.add_argument("--version", action="version", version=f"siptrap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_parse = sub.add_parser("parse", help="print the parsed form of SIP message files")
    p_parse.add_argument("files", nargs="+", metavar="FILE", help="message file, - for stdin")
    p_parse.add_argument("--json", action="store_true", help="one JSON object per file")
    p_parse.set_defaults(func=cmd_parse)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
