"""What the engine works out about one request before rules run: the tool that sent it,
whether it is spoofed, whether it targets one of the honeypot's extensions and came
through the domain's proxy or directly, and the number it dials.

Each becomes a rule variable (`%Tool`, `%Spoofed`, `%Extension`, `%Route`, `%Number`,
`%NumberKind`, `%NumberCountry`, `%DialPrefix`, `%Registered`), so rule files can use them,
and feeds the INVITE decision tree (`decision`).
"""

from __future__ import annotations

import dataclasses
import ipaddress
import re
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from ..bounded import BoundedLRU
from .evaluate import Source, target_of
from .fields import Message
from .fingerprints import Catalogue, Match
from .registrations import Registrations
from .spoofing import SpoofCheck, check_spoofing
from .tollfraud import NumberInfo, classify_number

# Known clients that are SIP servers (PBXs, proxies): they qualify the phones registered
# with them by sending OPTIONS to each (%Server).
SERVERS = frozenset({"Asterisk", "FreeSWITCH", "Kamailio", "OpenSIPS"})
# Tools that operators use as much as attackers: naming one is not an alert by itself.
DUAL_USE = frozenset({"sipsak", "SIPp", "Nmap"})
MAX_SHAPE = 4096  # messages longer than this are identified without the cache
# digit runs, and hex runs (tags, nonces, digests) of 6 or more (the lookahead only
# skips, faster, the places where neither can start)
_VARYING = re.compile(rb"(?=[0-9a-fA-F])(?:[0-9a-fA-F]{6,}|[0-9]+)")
MAX_LINES = 4096  # line shapes remembered (lines of MAX_LINE bytes at most)
MAX_LINE = 256
Network = ipaddress.IPv4Network | ipaddress.IPv6Network


class ToolCache:
    """`identify` with a bounded cache keyed by the message's shape.

    The shape is the raw message with every run of digits, and every run of six or more
    hex digits, replaced by a mark, and the message's length; so the messages of one tool
    run (SIPp's numbered tags and Call-IDs, SIPVicious's hex tags, a flood's counters,
    digests) are identified once. Messages of one length that differ only in such values
    are taken to come from the same tool: the catalogue's signatures look at those values'
    formats, which rarely differ within one tool's run. A cache, not a proof: `size`
    bounds it.

    A run never spans a line end (CR and LF are not digits), so the shape is worked out
    line by line, and the shapes of recent lines are remembered: most lines of a tool's
    messages (User-Agent, Max-Forwards...) come again byte for byte."""

    def __init__(self, catalogue: Catalogue, size: int = 4096, lines: int = MAX_LINES) -> None:
        self.catalogue = catalogue
        self._cache: BoundedLRU[tuple[tuple[bytes, ...], int], list[Match]] = BoundedLRU(size)
        self._lines: dict[bytes, bytes] = {}  # line -> shape, at most max_lines
        self.max_lines = lines
        self.hits = 0
        self.misses = 0

    def bounds(self) -> dict[str, tuple[int, int]]:
        """(entries, limit) of each table."""
        return {
            "shapes": (len(self._cache), self._cache.limit),
            "lines": (len(self._lines), self.max_lines),
        }

    def __call__(self, msg: Message) -> list[Match]:
        raw = msg.raw
        if len(raw) > MAX_SHAPE:
            return self.catalogue.identify(msg)
        key = (self.shape(raw), len(raw))
        found = self._cache.get(key)
        if found is not None:
            self.hits += 1
            return found
        self.misses += 1
        found = self.catalogue.identify(msg)
        self._cache.put(key, found)
        return found

    def shape(self, raw: bytes) -> tuple[bytes, ...]:
        """The raw message's lines with their varying runs replaced by a mark."""
        get = self._lines.get
        # an empty line (the one ending the headers, an empty body) is its own shape
        shaped = [get(line) or (line and self._line_shape(line)) for line in raw.split(b"\r\n")]
        return tuple(shaped)

    def _line_shape(self, line: bytes) -> bytes:
        """A line not seen lately: its shape, remembered if the line is short (the table
        is a plain dict on the hot path, bounded here: the oldest line goes first)."""
        shape = _VARYING.sub(b"#", line)
        if len(line) <= MAX_LINE and shape:
            lines = self._lines
            if len(lines) >= self.max_lines:
                del lines[next(iter(lines))]
            lines[line] = shape
        return shape


class Directory:
    """Which users are the honeypot's extensions. The configured plan decides when there is
    one; without it (offline), the honeypot's answers to unauthenticated requests do, host
    by host (a capture may hold several hosts, not all of them honeypots): a 404 for a user
    it does not host, a 180 or 200 for one it does."""

    def __init__(self, extensions: Iterable[str] | None, size: int = 65536) -> None:
        self.configured = frozenset(extensions) if extensions is not None else None
        self.learned: OrderedDict[tuple[str, str], bool] = OrderedDict()
        self.size = size

    def learn(self, user: str, exists: bool, host: str = "") -> None:
        if not user or self.configured is not None:
            return
        key = (host, user)
        self.learned[key] = exists
        self.learned.move_to_end(key)
        if len(self.learned) > self.size:
            self.learned.popitem(last=False)

    def status(self, user: str, host: str = "") -> str:
        """ "yes", "no", or "unknown" (`host`: the address the request was sent to)."""
        if not user:
            return "unknown"
        if self.configured is not None:
            return "yes" if user in self.configured else "no"
        found = self.learned.get((host, user))
        if found is None:
            return "unknown"
        return "yes" if found else "no"


@dataclass(frozen=True, slots=True)
class Facts:
    """Everything the engine concluded about one request before its rules ran."""

    tool: Match | None  # the most likely attack tool
    client: Match | None  # the most likely legitimate client (phone, PBX)
    spoof: SpoofCheck | None
    target: str
    extension: str  # yes, no, unknown
    route: str  # proxy, direct, "" (no target)
    number: NumberInfo | None
    registered: bool = False  # from a registrar to a contact registered with it
    # the hash, worked out once: Facts key the engine's memo, and hashing them means
    # hashing the matches, spoofing verdict and number inside
    _hash: int = dataclasses.field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = (self.tool, self.client, self.spoof, self.target, self.extension)
        value = hash((*fields, self.route, self.number, self.registered))
        object.__setattr__(self, "_hash", value)

    def __hash__(self) -> int:
        return self._hash

    @property
    def attack_tool(self) -> str | None:
        return self.tool.tool if self.tool is not None else None

    @property
    def dual_use(self) -> bool:
        tool = self.tool
        return tool is not None and (tool.tool in DUAL_USE or tool.family in DUAL_USE)

    def variables(self) -> dict[str, str]:
        """The rule variables these facts set."""
        number = self.number
        return {
            "Tool": self.tool.tool if self.tool else "",
            "ToolFamily": (self.tool.family or self.tool.tool) if self.tool else "",
            "Spoofed": self.spoof.fact if self.spoof is not None else "",
            "Extension": self.extension,
            "Route": self.route,
            "Number": number.e164 if number else "",
            "NumberKind": number.kind if number else "",
            "NumberCountry": (number.country or number.region) if number else "",
            "DialPrefix": number.prefix if number else "",
            "Purpose": purpose(self),
            "Server": self.client.tool
            if self.client is not None and self.client.tool in SERVERS
            else "",
            "Registered": "yes" if self.registered else "",
        }


# What a tool is for, when its messages alone say which attack is going on.
TOOL_CATEGORIES = {
    "SIPVicious svmap": "scan",
    "SIPVicious svwar": "enumeration",
    "SIPVicious svcrack": "bruteforce",
    "SIPVicious": "scan",
    "inviteflood": "flood",
    "PROTOS c07-sip": "fuzzing",
    "VoIPER": "fuzzing",
    "Sip Send Fun": "fuzzing",
    "SIP Army Knife": "fuzzing",
}
DEFAULT_TOOL_CATEGORY = "scan"


def tool_category(facts: Facts) -> str | None:
    """The category a message's tool alone gives it (none for dual-use tools)."""
    tool = facts.tool
    if tool is None or facts.dual_use:
        return None
    return TOOL_CATEGORIES.get(tool.tool, TOOL_CATEGORIES.get(tool.family, DEFAULT_TOOL_CATEGORY))


def purpose(facts: Facts) -> str:
    """%Purpose: "flood" for a flood tool, "probe" for a tool built to scan, enumerate,
    crack or fuzz (its rate serves that attack), "" for unknown and dual-use tools."""
    category = tool_category(facts)
    if category is None:
        return ""
    return "flood" if category == "flood" else "probe"


MIN_TOOL_CONFIDENCE = 0.5


def parse_networks(items: Iterable[str]) -> tuple[Network, ...]:
    """Addresses or networks (the domain's proxies); raise ValueError on a bad one."""
    return tuple(ipaddress.ip_network(item.strip(), strict=False) for item in items)


class FactFinder:
    """Works out `Facts` for requests, with the honeypot's extensions and proxies."""

    def __init__(
        self,
        identify: Callable[[Message], list[Match]],
        directory: Directory,
        proxies: tuple[Network, ...] = (),
        home_region: str = "",
        registrations: Registrations | None = None,
    ) -> None:
        self.identify = identify
        self.registrations = registrations if registrations is not None else Registrations()
        self.directory = directory
        self.proxies = proxies
        self.home_region = home_region

    def facts(self, msg: Message, source: Source, matches: list[Match] | None = None) -> Facts:
        """The facts of a request (`matches`: the tools the catalogue names for it, when
        the caller has them)."""
        if matches is None:
            matches = self.identify(msg)
        method = (msg.method or "").upper()
        target = target_of(msg)
        spoof = (
            check_spoofing(msg, source.ip) if method in ("INVITE", "OPTIONS", "MESSAGE") else None
        )
        number = None
        if target and method in ("INVITE", "MESSAGE", "REFER", "SUBSCRIBE"):
            number = classify_number(target, self.home_region)
        extension = self.directory.status(target, source.dst_ip) if target else "unknown"
        if number is not None and number.kind and extension != "yes":
            extension = "no"  # an outside line (a costly number) is not an extension
        route = self.route(msg, source) if target else ""
        if method == "REGISTER":
            self.registrations.register(msg, source)
        registered = self.registrations.delivers(msg, source)
        return Facts(
            tool=next(
                (m for m in matches if m.is_attack and m.confidence >= MIN_TOOL_CONFIDENCE), None
            ),
            client=next((m for m in matches if not m.is_attack), None),
            spoof=spoof,
            target=target,
            extension=extension,
            route=route,
            number=number,
            registered=registered,
        )

    def route(self, msg: Message, source: Source) -> str:
        """ "proxy" if the source or a Via hop is one of the domain's proxies, else "direct"."""
        if not self.proxies:
            return "direct"
        hops = [source.ip] + [v.host or "" for v in msg.vias[:8]]
        for hop in hops:
            try:
                address = ipaddress.ip_address(hop.strip("[]"))
            except ValueError:
                continue
            if any(address in net for net in self.proxies):
                return "proxy"
        return "direct"
