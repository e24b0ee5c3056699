"""name-addr and addr-spec values: From, To, Contact, Route, Record-Route, Refer-To..."""

from __future__ import annotations

from dataclasses import dataclass, field

from .headers import TOKEN_CHARS, Params, format_params, get_param, parse_params, quote
from .uri import Uri, parse_uri


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

    def with_tag(self, tag: str) -> Address:
        params = tuple(p for p in self.params if p[0] != "tag") + (("tag", tag),)
        addr = Address(self.display, self.uri, params)
        if self.text:
            return Address(self.display, self.uri, params, f"{self.text};tag={tag}")
        return Address(self.display, self.uri, params, addr.format())


def make_address(uri: Uri, display: str | None = None, params: Params = ()) -> Address:
    addr = Address(display, uri, params)
    return Address(display, uri, params, addr.format())


def parse_address(text: str) -> Address:
    """Parse one name-addr or addr-spec. Never raises; problems go into `defects`."""
    text = text.strip()
    defects: list[str] = []
    if text == "*":
        return Address(None, Uri(scheme="", opaque="*", text="*"), (), text, (), True)
    display: str | None = None
    rest = text
    if text.startswith('"'):
        end = _closing_quote(text)
        if end == -1:
            defects.append("unterminated_quote")
            display = _unescape(text[1:].split("<", 1)[0])
            rest = "<" + text.split("<", 1)[1] if "<" in text else ""
        else:
            display = _unescape(text[1:end])
            rest = text[end + 1 :]
    lt = rest.find("<")
    if lt != -1:
        if display is None:
            raw_display = rest[:lt].strip()
            if raw_display:
                display = raw_display
                if not all(ch in TOKEN_CHARS or ch in " \t" for ch in raw_display):
                    defects.append("bad_display_name")
        gt = rest.find(">", lt)
        if gt == -1:
            defects.append("unbalanced_brackets")
            uri_text, ptext = rest[lt + 1 :], ""
        else:
            uri_text, ptext = rest[lt + 1 : gt], rest[gt + 1 :]
        if uri_text != uri_text.strip():
            defects.append("whitespace_in_uri")
    else:
        if display is not None or ">" in rest:
            defects.append("unbalanced_brackets")
        uri_text, _, ptext = rest.partition(";")
        if "?" in uri_text or "," in uri_text:
            defects.append("addr_spec_with_params")
        ptext = ";" + ptext if ptext else ""
    uri = parse_uri(uri_text)
    defects.extend(d for d in uri.defects if d != "bad_request_uri")
    if uri.scheme == "" or (uri.is_sip and not uri.host):
        defects.append("bad_address")
    params: Params = ()
    ptext = ptext.strip()
    if ptext:
        if not ptext.startswith(";"):
            defects.append("bad_address")
        params, empty = parse_params(ptext.lstrip(";"))
        if empty:
            defects.append("empty_param")
    return Address(display, uri, params, text, tuple(dict.fromkeys(defects)))


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


def _unescape(inner: str) -> str:
    if "\\" not in inner:
        return inner
    out: list[str] = []
    escaped = False
    for ch in inner:
        if escaped:
            out.append(ch)
            escaped = False
        elif ch == "\\":
            escaped = True
        else:
            out.append(ch)
    return "".join(out)
