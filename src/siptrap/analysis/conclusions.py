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
    members, lines = _grouped(items)
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
            out.append(_family_text(line, members[line], items, bool(both), present))
            continue
        text = _plain_text(line, present, some_media, closed)
        if text is not None:
            out.append(text)
    return tuple(out)


def _grouped(items: list[str]) -> tuple[dict[int, list[str]], list[str | int]]:
    """The members of each family, and the lines in order (a family stands where its
    first member was)."""
    members: dict[int, list[str]] = {}
    lines: list[str | int] = []
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
    return members, lines


def _family_text(
    line: int, values: list[str], items: list[str], both: bool, present: set[str]
) -> str:
    """A family's line: its one member as written, or the family's summary."""
    if len(values) == 1:
        text = next(t for t in items if _family(t) == (line, values[0]))
    else:
        text = _FAMILIES[line][1].format(n=len(values), first=_first(values))
    if line == EXTENSION and both:
        text += " (at the hosts that answered; the others did not answer)"
    if line == MEDIA and NO_MEDIA in present:
        text += "; no media in the others"
    return text


def _plain_text(line: str, present: set[str], some_media: bool, closed: bool) -> str | None:
    """A conclusion that is no family's, as it should read (None: left out)."""
    if line == NO_ACK and ACK in present:
        return None
    if line == ACK and NO_ACK in present:
        return "ACK received for some of these calls, not for the others"
    if line == NO_MEDIA and some_media:
        return None
    if line.startswith(NO_SIGN) and any(c.startswith(NOT_SPOOFED) for c in present):
        return None
    if line == WAITING and closed:
        return None
    return line
