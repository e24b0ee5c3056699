"""Behaviour modes: which active checks the honeypot runs, and on which hosts.

The Artemisa paper (section III.E) defines two primitive modes, *passive* (nothing is
sent that could unveil the honeypot) and *active* (every check), and lets the
administrator define "customized modes" with rules. In siptrap a rule file declares a
mode as a section of type `Mode`::

    [lookups]
    type = Mode
    checks = dns, rdap, geoip, os
    targets = source, contact, via, sdp, from, record-route
    description = Lookups only: nothing is sent to the attacker's hosts

- `checks`: the checks the mode runs (`dns`, `rdap`, `geoip`, `sip_probe`, `port`,
  `route`, `os`), separated by commas, or `all`; required;
- `targets`: the hosts they run on, by where the INVITE names them: `source` (the address
  the message came from), `contact`, `via` (the top Via), `sdp` (the SDP `c=` and `o=`
  lines), `from`, `record-route`; or `all` (the default);
- `description`: free text.

The section's name is the mode's name (`[sensor] mode = "lookups"`, `siptrap ctl mode
lookups`); `passive` and `active` cannot be redefined, and a name is defined once in a
rule set. The guards apply in every mode: a mode chooses among the checks the guards
allow, it never lifts one.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .reconnaissance import Probe

CHECKS = ("dns", "rdap", "geoip", "sip_probe", "port", "route", "os")
TARGETS = ("source", "contact", "via", "sdp", "from", "record-route")
PRIMITIVE_MODES = ("passive", "active")
MODE_KEYS = frozenset({"checks", "targets"})
# where `reconnaissance.plan` says a host is named -> the target word of a mode
ROLE_TARGETS = {
    "source": "source",
    "Contact": "contact",
    "top Via": "via",
    "SDP connection (c=)": "sdp",
    "SDP origin (o=)": "sdp",
    "From": "from",
    "Record-Route": "record-route",
}
MODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,39}")


@dataclass(frozen=True, slots=True)
class Mode:
    """A behaviour mode: the checks it runs and the hosts it runs them on."""

    name: str
    checks: frozenset[str]
    targets: frozenset[str] = frozenset(TARGETS)
    description: str = ""
    source: str = ""  # where it is defined: a rule file, "[recon] modes" or "built-in"
    line: int = 0

    @property
    def sends(self) -> bool:
        """Whether the mode runs any check at all (passive runs none)."""
        return bool(self.checks and self.targets)

    def skips(self, probe: Probe) -> str | None:
        """Why this mode does not run `probe`, or None when it does."""
        if probe.check not in self.checks:
            return f"not a check of mode {self.name}"
        target = ROLE_TARGETS.get(probe.role, probe.role)
        if target not in self.targets:
            return f"the {probe.role} is not a target of mode {self.name}"
        return None

    @property
    def check_list(self) -> tuple[str, ...]:
        return tuple(c for c in CHECKS if c in self.checks)

    @property
    def target_list(self) -> tuple[str, ...]:
        return tuple(t for t in TARGETS if t in self.targets)


PASSIVE = Mode("passive", frozenset(), frozenset(), "sends nothing but replies", "built-in")
ACTIVE = Mode("active", frozenset(CHECKS), frozenset(TARGETS), "every check", "built-in")


class ModeError(ValueError):
    """A mode section that cannot be used; `rules` turns it into a RuleError."""


def _words(text: str, known: tuple[str, ...], key: str) -> frozenset[str]:
    items = [w.strip().strip("\"'").lower() for w in text.split(",") if w.strip()]
    if items == ["all"]:
        return frozenset(known)
    unknown = [w for w in items if w not in known]
    if unknown:
        raise ModeError(f"unknown {key[:-1]} {unknown[0]!r} (known: all, {', '.join(known)})")
    if not items:
        raise ModeError(f"{key} names none")
    return frozenset(items)


def build_mode(
    name: str, values: dict[str, str], description: str = "", source: str = "", line: int = 0
) -> Mode:
    """A mode from a `type = Mode` section's values (`checks`, `targets`)."""
    if not MODE_NAME.fullmatch(name):
        raise ModeError(f"a mode's name is a word of letters, digits, '_', '-', not {name!r}")
    if name.lower() in PRIMITIVE_MODES:
        raise ModeError(f"mode {name!r} is built in and cannot be redefined")
    if "checks" not in values:
        raise ModeError("a Mode needs a 'checks' key (the checks it runs, or all)")
    checks = _words(values["checks"], CHECKS, "checks")
    targets = _words(values.get("targets", "all"), TARGETS, "targets")
    return Mode(name, checks, targets, description, source, line)


def legacy_mode(item: str) -> Mode:
    """A mode of `[recon] modes` ("NAME=check,check": every target)."""
    name, _sep, checks = item.partition("=")
    found = frozenset(c.strip() for c in checks.split(",") if c.strip())
    return Mode(name.strip(), found, frozenset(TARGETS), "", "[recon] modes")


def mode_table(legacy: tuple[str, ...], defined: tuple[Mode, ...]) -> dict[str, Mode]:
    """Every mode by name: the primitive ones, `[recon] modes`, then the rule files'.
    Raises ModeError when a name is defined twice."""
    table = {PASSIVE.name: PASSIVE, ACTIVE.name: ACTIVE}
    for mode in (*(legacy_mode(item) for item in legacy), *defined):
        first = table.get(mode.name)
        if first is not None:
            where = f"{first.source}:{first.line}" if first.line else first.source
            raise ModeError(f"mode {mode.name!r} is defined twice (first in {where})")
        table[mode.name] = mode
    return table
