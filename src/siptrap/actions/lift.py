"""The blocks in force as rows, and lifting one everywhere it was pushed: the one code
path of `siptrap blocks list|lift` and of the web API (`/api/v1/blocks`)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .base import ActionFailed
from .blocklist import write_atomically
from .kamailio import KamailioAction
from .nftables import NftablesAction
from .settings import ActionSpec
from .state import forget_block, load_blocks, normal_address, request_lift

LIST_FIELDS = ("src_ip", "step", "category", "since", "expires")
ROW_FIELDS = (*LIST_FIELDS, "alert_id", "count")


@dataclass(frozen=True, slots=True)
class Lifted:
    src_ip: str
    known: bool  # it was in the state file
    errors: tuple[str, ...]  # one per action that could not take it out


def block_rows(data_dir: Path, now: float | None = None) -> list[dict[str, Any]]:
    """The blocks in force, oldest first, each with ROW_FIELDS (what `--json` prints)."""
    return [{k: b.get(k) for k in ROW_FIELDS} for b in load_blocks(data_dir, now)]


def lift_block(data_dir: Path, text: str, specs: Iterable[ActionSpec]) -> Lifted:
    """Forget the block, ask a running honeypot to take it from its ladder, and undo it
    in every action that pushed it. ValueError when `text` is not an address."""
    address = normal_address(text)
    if address is None:
        raise ValueError(f"{text[:60]!r} is not an address")
    known = forget_block(data_dir, address)
    if data_dir.is_dir():
        request_lift(data_dir, address)  # a running honeypot takes it from its ladder too
    errors = []
    for spec in specs:
        try:
            _undo(spec, address, data_dir)
        except (ActionFailed, OSError) as exc:
            errors.append(f"{spec.label}: {exc}")
    return Lifted(address, known, tuple(errors))


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
