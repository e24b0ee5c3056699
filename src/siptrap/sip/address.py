"""name-addr and addr-spec values: From, To, Contact, Route, Record-Route, Refer-To..."""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field

from .headers import Params, format_params, get_param, is_token, parse_params, quote, unescape
from .uri import Uri, parse_uri

# Memo of parsed values: bounded (values are attacker data), short values only.
_CACHE_SIZE = 1024
_CACHE_TEXT = 512


@dataclass(frozen=True, slots=True)
class Address:
    """An address with optional display name, its URI and the header's parameters."""

    display: str | None
    uri: Uri
    params: Params = ()
    text: str = ""
    defects: tuple[str, ...] = field(default=(), compare=False)
    wildcard: bool = False

    @property
    def tag(self) -> str | None:
        return get_param(self.params, "tag")

    @property
    def user(self) -> str | None:
        return self.uri.user

    def param(self, name: str) -> str | None:
        return get_param(self.params, name)

    def __str__(self) -> str:
        return self.text or self.format()

    def format(self) -> str:
        if self.wildcard:
            return "*"
        display = f"{quote(self.display)} " if self.display else ""
        return f"{display}<{self.uri}>{format_params(self.params)}"


def make_address(uri: Uri, display: str | None = None, params: Params = ()) -> Address:
    addr = Address(display, uri, params)
    return Address(display, uri, params, addr.format())


# The common shape: optional quoted or token display name, <uri>, then ;params.
_SIMPLE = re.compile(
    r'\s*(?:"([^"\\]*)"\s*|([A-Za-z0-9\-.!%*_+`\'~]+(?:[ \t]+[A-Za-z0-9\-.!%*_+`\'~]+)*)\s*)?'
    r"<([^<>\s]+)>\s*((?:;[^;\"<>,]+)*)\s*"
)


def parse_address(text: str) -> Address:
    """Parse one name-addr or addr-spec. Never raises; problems go into `defects`.

    Results are immutable and a function of the text alone, so the last 1024
    short values are remembered: a message asks for the same value several times (its
    fields, its defect check, its response), and a scan repeats most of them."""
    if len(text) <= _CACHE_TEXT:
        return _parse_address_cached(text)
    return _parse_address(text)


def _parse_address(text: str) -> Address:
    simple = _SIMPLE.fullmatch(text)
    if simple is not None:
        return _simple_address(text.strip(), *simple.groups())
    text = text.strip()
    defects: list[str] = []
    if text == "*":
        return Address(None, Uri(scheme="", opaque="*", text="*"), (), text, (), True)
    display, rest = _leading_quoted(text, defects)
    display, uri_text, ptext = _split_uri(rest, display, defects)
    uri = parse_uri(uri_text)
    defects.extend(d for d in uri.defects if d != "bad_request_uri")
    if uri.scheme == "" or (uri.is_sip and not uri.host):
        defects.append("bad_address")
    params = _address_params(ptext.strip(), defects)
    return Address(display, uri, params, text, tuple(dict.fromkeys(defects)))


def _leading_quoted(text: str, defects: list[str]) -> tuple[str | None, str]:
    """A quoted display name at the start (unescaped) and the text after it."""
    if not text.startswith('"'):
        return None, text
    end = _closing_quote(text)
    if end == -1:
        defects.append("unterminated_quote")
        rest = "<" + text.split("<", 1)[1] if "<" in text else ""
        return unescape(text[1:].split("<", 1)[0]), rest
    return unescape(text[1:end]), text[end + 1 :]


def _split_uri(rest: str, display: str | None, defects: list[str]) -> tuple[str | None, str, str]:
    """(display name, URI text, parameter text) of what follows any quoted name."""
    lt = rest.find("<")
    if lt == -1:
        if display is not None or ">" in rest:
            defects.append("unbalanced_brackets")
        uri_text, _, ptext = rest.partition(";")
        if "?" in uri_text or "," in uri_text:
            defects.append("addr_spec_with_params")
        return display, uri_text, ";" + ptext if ptext else ""
    if display is None:
        raw_display = rest[:lt].strip()
        if raw_display:
            display = raw_display
            if not all(is_token(word) for word in raw_display.split()):
                defects.append("bad_display_name")
    gt = rest.find(">", lt)
    if gt == -1:
        defects.append("unbalanced_brackets")
        uri_text, ptext = rest[lt + 1 :], ""
    else:
        uri_text, ptext = rest[lt + 1 : gt], rest[gt + 1 :]
    if uri_text != uri_text.strip():
        defects.append("whitespace_in_uri")
    return display, uri_text, ptext


def _address_params(ptext: str, defects: list[str]) -> Params:
    if not ptext:
        return ()
    if not ptext.startswith(";"):
        defects.append("bad_address")
    params, empty = parse_params(ptext.lstrip(";"))
    if empty:
        defects.append("empty_param")
    return params


def _simple_address(
    text: str, quoted: str | None, token: str | None, uri_text: str, ptext: str
) -> Address:
    uri = parse_uri(uri_text)
    defects = [d for d in uri.defects if d != "bad_request_uri"]
    if uri.scheme == "" or (uri.is_sip and not uri.host):
        defects.append("bad_address")
    params: Params = ()
    if ptext:
        params, empty = parse_params(ptext.strip()[1:])
        if empty:
            defects.append("empty_param")
    display = quoted if quoted is not None else token
    return Address(display, uri, params, text, tuple(defects))


def _closing_quote(text: str) -> int:
    i = 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i
        i += 1
    return -1


_parse_address_cached = functools.lru_cache(maxsize=_CACHE_SIZE)(_parse_address)
