"""The `siptrap` command and its subcommands.

Each command family that is not one of the core commands below lives in a module of this
package exposing `add_parser(sub)`, and is registered by one line in `FAMILIES`.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from .. import __version__
from ..config import Config, load_config, render
from ..outputs.jsontext import print_json
from ..settings import ConfigError
from ..sip import ParseError, parse
from ..sip.describe import describe
from . import blocks, fleet, report, status, web
from .analyze import add_analyze_parser
from .rules import add_rules_parser


def cmd_parse(args: argparse.Namespace) -> int:
    """Print the parsed form of each message file (`-` reads stdin)."""
    for name in args.files:
        try:
            data = sys.stdin.buffer.read() if name == "-" else Path(name).read_bytes()
        except OSError as exc:
            print(f"siptrap parse: {name}: {exc.strerror}", file=sys.stderr)
            if args.json:
                print_json({"file": name, "error": f"cannot read: {exc.strerror}"})
            continue
        print_parsed(name, data, args.json)
    return 0


def print_parsed(name: str, data: bytes, as_json: bool) -> None:
    try:
        msg = parse(data)
    except ParseError as exc:
        if as_json:
            print_json({"file": name, "error": exc.reason, "size": len(data)})
        else:
            print(f"== {name}: not a SIP message: {exc.reason}")
        return
    form = describe(msg)
    if as_json:
        print_json({"file": name, **form})
        return
    print(f"== {name}: {form['kind']}")
    for key, value in form.items():
        if key not in ("kind", "headers"):
            print(f"  {key}: {value}")
    print("  headers:")
    for hname, hvalue in form["headers"]:
        print(f"    {hname}: {hvalue}")


def cmd_run(args: argparse.Namespace) -> int:
    """Run the honeypot until Ctrl-C or SIGTERM."""
    import asyncio
    import logging

    from ..app import install_uvloop, run_honeypot

    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    from ..analysis.live import rules_in_force
    from ..analysis.rules import RuleError
    from ..startup import StartupError
    from ..web.settings import WebError, parse_web

    try:
        config = _load(args)
        rules_in_force(config.analysis.rules)
        web = parse_web(args.web, args.web_token) if getattr(args, "web", None) else None
    except WebError as exc:
        print(f"siptrap: {exc}", file=sys.stderr)
        return 2
    except ConfigError as exc:
        print(f"siptrap: configuration error: {exc}", file=sys.stderr)
        return 2
    except RuleError as exc:
        print(f"siptrap: rule error: {exc}", file=sys.stderr)
        return 2
    install_uvloop()
    try:
        asyncio.run(run_honeypot(config, web))
    except StartupError as exc:  # a data directory it cannot use, or no socket open
        print(f"siptrap: {exc}", file=sys.stderr)
        return 2
    return 0


def _load(args: argparse.Namespace) -> Config:
    overrides: dict[str, object] = {}
    if getattr(args, "listen", None):
        overrides["listen"] = tuple(args.listen)
    if getattr(args, "data_dir", None):
        overrides["data_dir"] = args.data_dir
    if getattr(args, "personality", None):
        overrides["personality"] = args.personality
    config = load_config(args.config, **overrides)
    if getattr(args, "quiet", False):
        config = replace(config, console=replace(config.console, enabled=False))
    return config


def cmd_config_show(args: argparse.Namespace) -> int:
    """Print the effective configuration as commented TOML."""
    try:
        config = _load(args)
    except ConfigError as exc:
        print(f"siptrap: configuration error: {exc}", file=sys.stderr)
        return 2
    print(render(config), end="")
    return 0


def cmd_export_hashes(args: argparse.Namespace) -> int:
    """Write captured MD5 digest responses in hashcat mode 11400 format."""
    from ..startup import StartupError, check_database, open_output
    from ..store.hashes import export_hashes
    from ..store.sqlite import StoreError

    db = Path(args.data_dir) / "siptrap.db"
    if not db.exists():
        print(f"siptrap export-hashes: no database at {db}", file=sys.stderr)
        return 2
    try:
        check_database(db)
        lines = list(export_hashes(db))
        out = open_output(args.output) if args.output and args.output != "-" else sys.stdout
    except (StartupError, StoreError) as exc:
        print(f"siptrap export-hashes: {exc}", file=sys.stderr)
        return 2
    try:
        for line in lines:
            out.write(line + "\n")
    finally:
        if out is not sys.stdout:
            out.close()
    return 0


_DATA_DIR_HELP = "data directory (default ./siptrap-data)"


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--data-dir", metavar="DIR", help=_DATA_DIR_HELP)
    p.add_argument(
        "--listen",
        action="append",
        metavar="SPEC",
        help="udp:ADDR:PORT, tcp:ADDR:PORT, tls:ADDR:PORT or ADDR:PORT (UDP+TCP); repeatable",
    )
    p.add_argument("--personality", help="asterisk, freepbx, cisco, yealink, polycom, or your own")


# Command families in modules of their own, each `add_parser(sub)`; one line per family.
FAMILIES: tuple[Callable[[Any], None], ...] = (
    blocks.add_parser,  # issue 11: siptrap blocks list|lift
    status.add_parser,  # issue 11: siptrap status
    web.add_parser,  # issue 13: siptrap web, siptrap ctl
    report.add_parser,  # issue 13: siptrap report
    fleet.add_parser,  # db upgrade, collect, export (issue 12)
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="siptrap", description="A SIP/VoIP honeypot.")
    parser.add_argument("--version", action="version", version=f"siptrap {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_parse = sub.add_parser("parse", help="print the parsed form of SIP message files")
    p_parse.add_argument("files", nargs="+", metavar="FILE", help="message file, - for stdin")
    p_parse.add_argument("--json", action="store_true", help="one JSON object per file")
    p_parse.set_defaults(func=cmd_parse)

    p_run = sub.add_parser("run", help="run the honeypot")
    _common(p_run)
    p_run.add_argument("--quiet", action="store_true", help="no console lines")
    p_run.add_argument("--web", metavar="ADDR:PORT", help="serve the dashboard, API and /metrics")
    p_run.add_argument(
        "--web-token",
        metavar="TOKEN",
        default=os.environ.get("SIPTRAP_WEB_TOKEN", ""),
        help="admin token (default $SIPTRAP_WEB_TOKEN); required off loopback",
    )
    p_run.set_defaults(func=cmd_run)

    p_config = sub.add_parser("config", help="configuration commands")
    config_sub = p_config.add_subparsers(dest="config_command", metavar="SUBCOMMAND")
    p_show = config_sub.add_parser("show", help="print the effective configuration, commented")
    _common(p_show)
    p_show.set_defaults(func=cmd_config_show)

    p_hashes = sub.add_parser("export-hashes", help="captured digests for hashcat (mode 11400)")
    p_hashes.add_argument(
        "--data-dir", default="./siptrap-data", metavar="DIR", help=_DATA_DIR_HELP
    )
    p_hashes.add_argument("-o", "--output", metavar="FILE", help="output file (default stdout)")
    p_hashes.set_defaults(func=cmd_export_hashes)

    add_rules_parser(sub)
    add_analyze_parser(sub)
    for add_parser in FAMILIES:
        add_parser(sub)
    for command_parser in sub.choices.values():
        # `siptrap config` (no SUBCOMMAND) prints config's help, not the top level's.
        command_parser.set_defaults(usage_of=command_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        getattr(args, "usage_of", parser).print_help()
        return 2
    try:
        result: int = args.func(args)
    except BrokenPipeError:
        # `siptrap status --json | head`: the reader left; no traceback for that.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return result


if __name__ == "__main__":
    sys.exit(main())
