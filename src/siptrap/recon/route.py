"""The IP route: traceroute run with an argument vector (no shell), numeric output only,
bounded hops and time, killed when the time is up. The target is always an address the
guards passed, never a name from an attacker."""

from __future__ import annotations

import asyncio
import ipaddress
import shutil
from typing import Any

MAX_OUTPUT = 64 * 1024


def argv(program: str, address: str, hops: int) -> list[str]:
    ipaddress.ip_address(address)  # raises on anything but an address
    return [program, "-n", "-q", "1", "-w", "1", "-N", "4", "-m", str(int(hops)), address]


def parse_hops(text: str) -> list[str]:
    hops: list[str] = []
    for line in text.splitlines()[1:]:
        parts = line.split()
        if len(parts) >= 2 and parts[0].isdigit():
            hops.append(parts[1] if parts[1] != "*" else "*")
    return hops


async def trace(
    program: str, address: str, hops: int, timeout: float
) -> tuple[str, dict[str, Any]]:
    path = shutil.which(program or "traceroute")
    if path is None:
        return "skipped", {"reason": f"{program or 'traceroute'} is not installed"}
    proc = await asyncio.create_subprocess_exec(
        *argv(path, address, hops),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        out, _err = await asyncio.wait_for(proc.communicate(), timeout)
    except (TimeoutError, asyncio.CancelledError):
        proc.kill()
        await proc.wait()
        raise
    found = parse_hops(out[:MAX_OUTPUT].decode("ascii", "replace"))
    return "ok", {"hops": found, "reached": bool(found) and found[-1] == address}
