"""`siptrap blocks list|lift ADDR`: the sources on the policy ladder (issue 11)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ..actions.base import ActionFailed
from ..actions.blocklist import write_atomically
from ..actions.kamailio import KamailioAction
from ..actions.nftables import NftablesAction
from ..actions.settings import ActionSpec
from ..actions.state import forget_block, load_blocks, normal_address, request_lift
from ..config import Config, load_config
from ..settings import ConfigError

LIST_FIELDS = ("src_ip", "step", "category", "since", "expires")


def _config(args: argparse.Namespace) -> Config:
    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    return load_config(args.config, **overrides)


def cmd_list(args: argparse.Namespace) -> int:
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"siptrap: configuration error: {exc}", file=sys.stderr)
        return 2
    blocks = load_blocks(config.data_path)
    if args.json:
        out = [{k: b.get(k) for k in (*LIST_FIELDS, "alert_id", "count")} for b in blocks]
        print(json.dumps(out, indent=1))
        return 0
    if not blocks:
        print("no source is blocked")
    now = time.time()
    for b in blocks:
        left = float(b.get("expires", now)) - now
        print(f"{b.get('src_ip')}  {b.get('step')}  {b.get('category')}  expires in {left:.0f}s")
    return 0


def cmd_lift(args: argparse.Namespace) -> int:
    address = normal_address(args.address)
    if address is None:
        print(f"siptrap blocks lift: {args.address!r} is not an address", file=sys.stderr)
        return 2
    try:
        config = _config(args)
    except ConfigError as exc:
        print(f"siptrap: configuration error: {exc}", file=sys.stderr)
        return 2
    data = config.data_path
    known = forget_block(data, address)
    if data.is_dir():
        request_lift(data, address)  # a running honeypot takes it from its ladder too
    failed = 0
    for spec in config.actions:
        try:
            _undo(spec, address, data)
        except (ActionFailed, OSError) as exc:
            failed += 1
            print(f"siptrap blocks lift: {spec.label}: {exc}", file=sys.stderr)
    print(f"{address}: lifted" if known else f"{address}: was not blocked (lifted anyway)")
    return 1 if failed else 0


def _undo(spec: ActionSpec, address: str, data: Path) -> None:
    """Take the address out of wherever this action pushed it (without a honeypot)."""
    if spec.dry_run:
        return
    if spec.kind == "kamailio":
        KamailioAction(spec).remove(address)
    elif spec.kind == "nftables":
        NftablesAction(spec).remove(address)
    elif spec.kind == "blocklist":
        path = Path(spec.path) if spec.path else data / "blocklist.txt"
        _drop_from_blocklist(path, address)


def _drop_from_blocklist(path: Path, address: str) -> None:
    if path.exists():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip() != address]
        write_atomically(path, "".join(f"{ln}\n" for ln in lines))
    json_path = path.with_suffix(".json")
    if json_path.exists():
        try:
            entries: list[dict[str, Any]] = json.loads(json_path.read_text())
        except ValueError:
            return
        kept = [e for e in entries if isinstance(e, dict) and e.get("src_ip") != address]
        write_atomically(json_path, json.dumps(kept, indent=1) + "\n")


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
