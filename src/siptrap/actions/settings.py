"""The `[[actions]]` entries and the `[policy]` section."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, fields
from typing import Any

from ..analysis.alerts import SEVERITY_ORDER
from ..analysis.system_policy import INTERPRETERS, program_name, refusal
from ..settings import doc

KINDS = ("kamailio", "nftables", "blocklist", "webhook", "program", "svcrash")
STEPS = ("try_later", "forbid", "firewall")
CATEGORIES = ("scan", "enumeration", "bruteforce", "flood", "spit", "toll_fraud")
DEFAULT_ALLOW = ("127.0.0.0/8", "::1/128")


class ActionConfigError(ValueError):
    """A bad [[actions]] or [policy] value (config turns it into a ConfigError)."""


@dataclass(frozen=True)
class PolicyConfig:
    ladder: tuple[str, ...] = doc(
        "the steps a persisting source goes through: try_later (503), forbid (403), "
        "firewall (nftables)",
        STEPS,
    )
    step_after: float = doc("seconds an attack must go on after a step before the next", 10.0)
    expire: float = doc("seconds a step holds once the attack stops (then one step down)", 300.0)
    allow: tuple[str, ...] = doc(
        "addresses and networks never blocked (replaces the default, loopback); the "
        "[analysis] proxies are always allowed",
        DEFAULT_ALLOW,
    )
    max_sources: int = doc("sources on the ladder at once (more are not blocked)", 10000)


@dataclass(frozen=True)
class ActionSpec:
    """One [[actions]] entry. Keys not used by its kind keep their defaults."""

    kind: str
    name: str = ""
    categories: tuple[str, ...] = CATEGORIES
    min_severity: str = "low"
    dry_run: bool = False
    timeout: float = 5.0
    retries: int = 2
    max_per_minute: int = 600
    queue_size: int = 1000
    # kamailio
    rpc: str = ""
    htable: str = "siptrap"
    # nftables
    nft: str = "nft"
    family: str = "inet"
    table: str = "siptrap"
    set4: str = "blocked4"
    set6: str = "blocked6"
    netns: str = ""
    # blocklist
    path: str = ""
    listen: str = ""
    # webhook
    url: str = ""
    # program
    command: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        return self.name or self.kind


_TUPLE_KEYS = {"categories", "command"}


def action_specs(entries: Any) -> tuple[ActionSpec, ...]:
    """[[actions]] tables -> specs; raises ActionConfigError naming the bad entry."""
    if not isinstance(entries, list | tuple):
        raise ActionConfigError("actions: a list of tables ([[actions]])")
    known = {f.name: f for f in fields(ActionSpec)}
    out = []
    for i, entry in enumerate(entries):
        where = f"actions[{i}]"
        if not isinstance(entry, dict):
            raise ActionConfigError(f"{where}: a table ([[actions]])")
        kwargs: dict[str, Any] = {}
        for key, value in entry.items():
            if key not in known:
                raise ActionConfigError(f"{where}: unknown key {key!r}")
            kwargs[key] = _value(where, key, value, known[key].default)
        if kwargs.get("kind") not in KINDS:
            raise ActionConfigError(f"{where}.kind: one of {', '.join(KINDS)}")
        spec = ActionSpec(**kwargs)
        _check(where, spec)
        out.append(spec)
    return tuple(out)


def _value(where: str, key: str, value: Any, default: Any) -> Any:
    if key in _TUPLE_KEYS:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise ActionConfigError(f"{where}.{key}: a list of strings")
        return tuple(value)
    if isinstance(default, bool):
        if not isinstance(value, bool):
            raise ActionConfigError(f"{where}.{key}: true or false")
    elif isinstance(default, int | float) and key != "kind":
        if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
            raise ActionConfigError(f"{where}.{key}: a non-negative number")
        return type(default)(value)
    elif not isinstance(value, str):
        raise ActionConfigError(f"{where}.{key}: a string")
    return value


def _check(where: str, spec: ActionSpec) -> None:
    if spec.min_severity not in SEVERITY_ORDER:
        raise ActionConfigError(f"{where}.min_severity: one of {', '.join(SEVERITY_ORDER)}")
    if spec.kind == "kamailio" and not spec.rpc.startswith(("unix:", "http://", "https://")):
        raise ActionConfigError(f"{where}.rpc: unix:/path/kamailio_rpc.sock or http(s)://...")
    if spec.kind == "webhook" and not spec.url.startswith(("http://", "https://")):
        raise ActionConfigError(f"{where}.url: an http:// or https:// address")
    if spec.kind == "program" and not spec.command:
        raise ActionConfigError(f"{where}.command: the program and its arguments, a list")
    why = program_refusal(spec.command) if spec.kind == "program" else None
    if why:
        raise ActionConfigError(f"{where}.command: {why}")


def program_refusal(command: tuple[str, ...] | list[str]) -> str | None:
    """Why a `program` command may not run (None: it may): the rules' `system` policy
    (no shell or interpreter given code, no program that runs its operands), and an
    interpreter's script may not be a {value}."""
    why = refusal(command, expanded=True)
    if why:
        return why.replace("system program", "program", 1)
    if program_name(command[0]) in INTERPRETERS and re.search(r"\{[a-z_]+\}", command[1]):
        return f"program {command[0]!r}: the script it runs must be fixed text"
    return None


def check_policy(policy: PolicyConfig) -> None:
    if not policy.ladder or any(step not in STEPS for step in policy.ladder):
        raise ActionConfigError(f"policy.ladder: steps among {', '.join(STEPS)}")
    if len(set(policy.ladder)) != len(policy.ladder):
        raise ActionConfigError("policy.ladder: each step once")
    for item in policy.allow:
        try:
            ipaddress.ip_network(item.strip(), strict=False)
        except ValueError:
            raise ActionConfigError(
                f"policy.allow: {item!r} is not an address or a network"
            ) from None
