"""The `nftables` action: the firewall step, as an element of an nftables set with a timeout.

Debian's `nft` is run with an argument vector (never a shell); the address is checked as
an address before it is written. At the first use the action creates its table (`inet
siptrap`), the sets `blocked4`/`blocked6` (with timeouts) and an input chain that drops
their members, unless the table exists already (an operator's own rules are left alone).
`netns` runs nft inside a named network namespace (`ip netns exec`).
"""

from __future__ import annotations

import ipaddress
import subprocess
import time

from .base import ActionFailed, Job, seconds_left
from .settings import ActionSpec


class NftablesAction:
    def __init__(self, spec: ActionSpec) -> None:
        self.spec = spec
        self._ready = False

    def _argv(self, *args: str) -> list[str]:
        prefix = ["ip", "netns", "exec", self.spec.netns] if self.spec.netns else []
        return [*prefix, self.spec.nft, *args]

    def _run(self, *args: str, stdin: str | None = None) -> str:
        try:
            done = subprocess.run(
                self._argv(*args),
                input=stdin,
                capture_output=True,
                text=True,
                timeout=self.spec.timeout,
                check=False,
            )
        except subprocess.TimeoutExpired as exc:
            raise ActionFailed(f"nft did not finish in {self.spec.timeout:g}s") from exc
        except OSError as exc:
            raise ActionFailed(f"nft could not run: {exc.strerror}") from exc
        if done.returncode != 0:
            raise ActionFailed(f"nft {args[0]} failed: {done.stderr.strip()[:500]}")
        return done.stdout

    def setup(self) -> None:
        s = self.spec
        try:
            self._run("list", "table", s.family, s.table)
        except ActionFailed:
            script = (
                f"table {s.family} {s.table} {{\n"
                f"  set {s.set4} {{ type ipv4_addr; flags timeout; }}\n"
                f"  set {s.set6} {{ type ipv6_addr; flags timeout; }}\n"
                "  chain input {\n"
                "    type filter hook input priority -10; policy accept;\n"
                f"    ip saddr @{s.set4} drop\n"
                f"    ip6 saddr @{s.set6} drop\n"
                "  }\n"
                "}\n"
            )
            self._run("-f", "-", stdin=script)
        self._ready = True

    def _set_for(self, src_ip: str) -> tuple[str, str]:
        try:
            address = ipaddress.ip_address(src_ip)
        except ValueError as exc:
            raise ActionFailed(f"not an address: {src_ip[:64]!r}") from exc
        name = self.spec.set4 if address.version == 4 else self.spec.set6
        return name, str(address)

    def apply(self, job: Job) -> tuple[str, str] | None:
        change = job.change
        if change.step != "firewall" and change.previous != "firewall":
            return None  # only the firewall step is this action's
        if not self._ready:
            self.setup()
        name, address = self._set_for(change.src_ip)
        s = self.spec
        if change.step == "firewall":
            if change.reason == "refreshed":  # `add` keeps an element's old timeout
                self.remove(change.src_ip)
            timeout = seconds_left(change, time.time())
            element = f"{{ {address} timeout {timeout}s }}"
            self._run("add", "element", s.family, s.table, name, element)
            return ("add element", f"{address} in {s.family} {s.table} {name} for {timeout}s")
        self.remove(change.src_ip)
        return ("delete element", f"{address} out of {s.family} {s.table} {name}")

    def remove(self, src_ip: str) -> None:
        name, address = self._set_for(src_ip)
        s = self.spec
        try:
            self._run("delete", "element", s.family, s.table, name, f"{{ {address} }}")
        except ActionFailed as exc:
            text = str(exc).lower()
            if "no such file" not in text and "does not exist" not in text:
                raise

    def close(self) -> None:
        pass
