"""`siptrap blocks list|lift ADDR`: the sources on the policy ladder (issue 11)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..actions.lift import block_rows, lift_block
from ..actions.state import normal_address
from ..config import Config, load_config
from ..settings import ConfigError
from ..web.control import SOCKET_NAME, send_command


def _config(args: argparse.Namespace) -> Config:
    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    return load_config(args.config, **overrides)


def cmd_list(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"siptrap: configuration error: {exc}", file=sys.stderr)
        return 2
    blocks = block_rows(config.data_path)
    if args.json:
        print(json.dumps(blocks, indent=1))
        return 0
    if not blocks:
        print("no source is blocked")
    now = time.time()
    for b in blocks:
        left = float(b.get("expires", now)) - now
        print(f"{b.get('src_ip')}  {b.get('step')}  {b.get('category')}  expires in {left:.0f}s")
    return 0


def cmd_lift(args: argparse.Namespace) -> int:
    if normal_address(args.address) is None:
        print(f"siptrap blocks lift: {args.address!r} is not an address", file=sys.stderr)
        return 2
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"siptrap: configuration error: {exc}", file=sys.stderr)
        return 2
    answer = _lift_by_the_honeypot(config, args.address)
    if answer is None:  # no honeypot runs on the data directory: lift here
        lifted = lift_block(config.data_path, args.address, config.actions)
        answer = {"src_ip": lifted.src_ip, "lifted": lifted.known, "errors": lifted.errors}
    errors = [str(e) for e in answer.get("errors") or ()]
    for error in errors:
        print(f"siptrap blocks lift: {error}", file=sys.stderr)
    address = answer.get("src_ip")
    print(
        f"{address}: lifted"
        if answer.get("lifted")
        else f"{address}: was not blocked (lifted anyway)"
    )
    return 1 if errors else 0


def _lift_by_the_honeypot(config: Config, address: str) -> dict[str, Any] | None:
    """The lift done by the honeypot running on the data directory (with its own
    `[[actions]]`, recorded as `sensor.control`), or None when none answers there."""
    path = config.data_path / SOCKET_NAME
    try:
        reply = send_command(path, ["blocks", "lift", address], via="siptrap blocks lift")
    except (FileNotFoundError, ConnectionRefusedError):
        return None
    except (OSError, ValueError) as exc:  # a honeypot there that did not answer
        return {"src_ip": address, "lifted": False, "errors": [f"control socket: {exc}"]}
    if not reply.get("ok"):
        return {"src_ip": address, "lifted": False, "errors": [str(reply.get("error"))]}
    result: dict[str, Any] = reply.get("result") or {}
    return result


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (default ./siptrap-data)")


def add_parser(sub: Any) -> None:
    p = sub.add_parser("blocks", help="sources blocked by the policy ladder: list, lift")
    blocks_sub = p.add_subparsers(dest="blocks_command", metavar="SUBCOMMAND")
    p_list = blocks_sub.add_parser("list", help="one line per source: its step and expiry")
    _common(p_list)
    p_list.add_argument("--json", action="store_true", help="a JSON list of objects")
    p_list.set_defaults(func=cmd_list)
    p_lift = blocks_sub.add_parser("lift", help="lift a block everywhere it was pushed")
    _common(p_lift)
    p_lift.add_argument("address", metavar="ADDR")
    p_lift.set_defaults(func=cmd_lift)
