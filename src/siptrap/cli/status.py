"""`siptrap status`: each upstream registration (registered, expires in, last error) and
the sources blocked, from what the running honeypot writes in its data directory."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

from ..actions.state import load_blocks
from ..config import load_config
from ..settings import ConfigError


def upstream_status(data_dir: Any) -> list[dict[str, Any]]:
    try:
        state = json.loads((data_dir / "upstream.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    regs = state.get("registrations", []) if isinstance(state, dict) else []
    now = time.time()
    for reg in regs:
        expires_at = reg.get("expires_at")
        reg["expires_in"] = round(expires_at - now) if expires_at else None
        if reg.get("expires_in") is not None and reg["expires_in"] <= 0:
            reg["registered"] = False
    return [r for r in regs if isinstance(r, dict)]


def cmd_status(args: argparse.Namespace) -> int:
    overrides = {"data_dir": args.data_dir} if args.data_dir else {}
    try:
        config = load_config(args.config, **overrides)
    except ConfigError as exc:
        print(f"siptrap: configuration error: {exc}", file=sys.stderr)
        return 2
    regs = upstream_status(config.data_path)
    blocks = load_blocks(config.data_path)
    if args.json:
        print(json.dumps({"upstream": regs, "blocks": len(blocks)}, indent=1))
        return 0
    if not config.upstream:
        print("upstream: none configured")
    elif not regs:
        print("upstream: no registration yet (is siptrap running?)")
    for reg in regs:
        state = "registered" if reg.get("registered") else reg.get("state", "?")
        expiry = f", expires in {reg['expires_in']}s" if reg.get("registered") else ""
        error = f", last error: {reg['last_error']}" if reg.get("last_error") else ""
        print(f"upstream {reg.get('registrar')} {reg.get('user')}: {state}{expiry}{error}")
    print(f"blocks: {len(blocks)} source(s) on the policy ladder")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("status", help="upstream registrations and blocks of the honeypot")
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--data-dir", metavar="DIR", help="data directory (default ./siptrap-data)")
    p.add_argument("--json", action="store_true", help="one JSON object")
    p.set_defaults(func=cmd_status)
