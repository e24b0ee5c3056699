"""What the running honeypot's ladder holds, for `siptrap blocks list|lift`.

The action sink rewrites `DATA/blocks.json` (atomically) at every change; `blocks lift`
appends the address to `DATA/blocks.lift`, which the running sink takes within a fraction
of a second (and the command also undoes the pushed blocks itself, so a lift works when
siptrap is not running).
"""

from __future__ import annotations

import ipaddress
import json
import os
import time
from pathlib import Path
from typing import Any

from .blocklist import write_atomically

STATE_FILE = "blocks.json"
LIFT_FILE = "blocks.lift"
MAX_LIFTS = 1000


def save_state(data_dir: Path, blocks: list[dict[str, Any]]) -> None:
    state = {"updated": time.time(), "pid": os.getpid(), "blocks": blocks}
    write_atomically(data_dir / STATE_FILE, json.dumps(state, indent=1) + "\n")


def load_blocks(data_dir: Path, now: float | None = None) -> list[dict[str, Any]]:
    """The blocks in force (expired ones left out), oldest first."""
    try:
        state = json.loads((data_dir / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    now = time.time() if now is None else now
    blocks = state.get("blocks", []) if isinstance(state, dict) else []
    return [b for b in blocks if isinstance(b, dict) and float(b.get("expires", 0)) > now]


def forget_block(data_dir: Path, address: str) -> bool:
    """Drop one address from the state file; True when it was there."""
    blocks = load_blocks(data_dir)
    kept = [b for b in blocks if b.get("src_ip") != address]
    if len(kept) != len(blocks):
        save_state(data_dir, kept)
    return len(kept) != len(blocks)


def request_lift(data_dir: Path, address: str) -> None:
    with open(data_dir / LIFT_FILE, "a", encoding="utf-8") as out:
        out.write(address + "\n")


def take_lifts(data_dir: Path) -> list[str]:
    """Addresses asked to be lifted since the last call (the file is consumed)."""
    path = data_dir / LIFT_FILE
    taken = path.with_name(f".{LIFT_FILE}.taking")
    try:
        os.replace(path, taken)
    except OSError:
        return []
    try:
        lines = taken.read_text(encoding="utf-8", errors="replace").splitlines()[:MAX_LIFTS]
    finally:
        taken.unlink(missing_ok=True)
    return [a for a in (normal_address(line) for line in lines) if a is not None]


def normal_address(text: str) -> str | None:
    try:
        return str(ipaddress.ip_address(text.strip().strip("[]")))
    except ValueError:
        return None
