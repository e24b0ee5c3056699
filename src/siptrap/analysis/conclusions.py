"""An alert's conclusions as they are shown: true together, and short.

One message alert gathers the conclusions of many messages (every call of one source,
tool and category), so it may hold one line per call ("Direct attack: 1001 ...",
"Direct attack: 1002 ...") and lines that are each true of some calls but read as a
contradiction together ("ACK received" and "no ACK is received"). `summarise` turns them
into what is true of the whole alert: one line per kind of conclusion with the count and
the first values, "for some calls" where the calls differ, and no "waiting for
correlation results" once the alert is closed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

NO_ACK = "no ACK is received"
ACK = "ACK received"
NO_MEDIA = "no Media is received"
WAITING = "waiting for correlation results"
NOT_SPOOFED = "Not spoofed: "
NO_SIGN = "No sign of spoofing"
FIRST = 5  # values a summary line names

# (pattern with one group: the value; the summary for several values: count, first ones)
_FAMILIES: tuple[tuple[re.Pattern[str], str], ...] = (
    (
        re.compile(
            r"^Direct attack: (.+) is not one of the honeypot's extensions and the "
            r"message came directly, not through the domain's proxy$",
            re.S,
        ),
        "Direct attack: {n} users or numbers that are not the honeypot's extensions, sent "
        "directly, not through the domain's proxy ({first})",
    ),
    (
        re.compile(
            r"^Dial-plan fault: (.+) is not one of the honeypot's extensions, yet the "
            r"domain's proxy routed it here$",
            re.S,
        ),
        "Dial-plan fault: the domain's proxy routed {n} users or numbers that are not the "
        "honeypot's extensions here ({first})",
    ),
    (
        re.compile(r"^Extension (.+) is one of the honeypot's extensions$", re.S),
        "{n} of the honeypot's extensions called ({first})",
    ),
    (
        re.compile(r"^Not checked: whether (.+) is one of the honeypot's extensions$", re.S),
        "Not checked: whether {n} users or numbers are the honeypot's extensions ({first})",
    ),
    (
        re.compile(r"^Media received \((\d+) RTP packets\)$"),
        "Media received (RTP packets per call: {first})",
    ),
)
EXTENSION, NOT_CHECKED, MEDIA = 2, 3, len(_FAMILIES) - 1


def _first(values: list[str]) -> str:
    shown = ", ".join(values[:FIRST])
    return shown + (", ..." if len(values) > FIRST else "")


def _family(text: str) -> tuple[int, str] | None:
    for n, (pattern, _summary) in enumerate(_FAMILIES):
        found = pattern.match(text)
        if found is not None:
            return n, found.group(1)
    return None


def summarise(conclusions: Iterable[str], closed: bool = False) -> tuple[str, ...]:
    """The conclusions of one alert as they should read (see the module docstring)."""
    items = list(dict.fromkeys(conclusions))
    present = set(items)
    members: dict[int, list[str]] = {}
    lines: list[str | int] = []  # a family stands where its first member was
    for text in items:
        family = _family(text)
        if family is None:
            lines.append(text)
            continue
        n, value = family
        if n not in members:
            members[n] = []
            lines.append(n)
        members[n].append(value)
    some_media = MEDIA in members
    # the same user an extension at the hosts that answered, unknown at the others (a
    # sweep of several hosts): said once, of the hosts that answered
    both = set(members.get(EXTENSION, ())) & set(members.get(NOT_CHECKED, ()))
    if both:
        members[NOT_CHECKED] = [v for v in members[NOT_CHECKED] if v not in both]
        items = [t for t in items if _family(t) not in {(NOT_CHECKED, v) for v in both}]
        if not members[NOT_CHECKED]:
            del members[NOT_CHECKED]
            lines = [x for x in lines if x != NOT_CHECKED]
    out: list[str] = []
    for line in lines:
        if isinstance(line, int):
            values = members[line]
            if len(values) == 1:
                text = next(t for t in items if _family(t) == (line, values[0]))
            else:
                text = _FAMILIES[line][1].format(n=len(values), first=_first(values))
            if line == EXTENSION and both:
                text += " (at the hosts that answered; the others did not answer)"
            if line == MEDIA and NO_MEDIA in present:
                text += "; no media in the others"
            out.append(text)
        elif line == NO_ACK and ACK in present:
            continue
        elif line == ACK and NO_ACK in present:
            out.append("ACK received for some of these calls, not for the others")
        elif line == NO_MEDIA and some_media:
            continue
        elif line.startswith(NO_SIGN) and any(c.startswith(NOT_SPOOFED) for c in present):
            continue
        elif line == WAITING and closed:
            continue
        else:
            out.append(line)
    return tuple(out)
