"""RDAP over HTTPS (aiohttp): the network an address is in, its owner, country and AS.

The query goes to the operator's RDAP server (`[recon] rdap_url`, default rdap.org,
which redirects to the registry responsible), never to the address itself. Its
certificate is verified, against the system's CAs or, when `[recon] rdap_ca_file` names a
PEM file, against the CAs of that file only (an RDAP server of your own, a lab)."""

from __future__ import annotations

import functools
import json
import ssl
from typing import Any

MAX_BODY = 256 * 1024
MAX_TEXT = 200


def _text(value: Any) -> str | None:
    return str(value)[:MAX_TEXT] if value not in (None, "") else None


def _entity_names(data: dict[str, Any]) -> list[str]:
    names: list[str] = []
    for entity in data.get("entities") or []:
        if not isinstance(entity, dict):
            continue
        card = entity.get("vcardArray")
        if isinstance(card, list) and len(card) == 2 and isinstance(card[1], list):
            for item in card[1]:
                if isinstance(item, list) and len(item) >= 4 and item[0] == "fn":
                    names.append(str(item[3])[:MAX_TEXT])
        if len(names) >= 4:
            break
    return names


def summarise(data: dict[str, Any]) -> dict[str, Any]:
    """What siptrap keeps of an RDAP IP network object."""
    out: dict[str, Any] = {
        "handle": _text(data.get("handle")),
        "name": _text(data.get("name")),
        "country": _text(data.get("country")),
        "start": _text(data.get("startAddress")),
        "end": _text(data.get("endAddress")),
    }
    cidrs = [
        f"{c.get('v4prefix') or c.get('v6prefix')}/{c.get('length')}"
        for c in data.get("cidr0_cidrs") or []
        if isinstance(c, dict)
    ]
    if cidrs:
        out["cidr"] = cidrs[:4]
    asns = data.get("arin_originas0_originautnums")
    if isinstance(asns, list) and asns:
        out["asn"] = [int(a) for a in asns[:4] if isinstance(a, int)]
    entities = _entity_names(data)
    if entities:
        out["entities"] = entities
    return {k: v for k, v in out.items() if v is not None}


@functools.lru_cache(maxsize=4)  # one context per CA file, made once: loading it is slow
def tls_context(ca_file: str = "") -> ssl.SSLContext:
    """A verifying client context: the system's CAs, or only those of `ca_file`."""
    return ssl.create_default_context(cafile=ca_file or None)


async def lookup(
    base_url: str, address: str, timeout: float, ca_file: str = ""
) -> tuple[str, dict[str, Any]]:
    import aiohttp  # imported when first used: it costs a third of a second at start

    url = base_url + address
    client_timeout = aiohttp.ClientTimeout(total=timeout)
    headers = {"Accept": "application/rdap+json"}
    async with (
        aiohttp.ClientSession(timeout=client_timeout) as session,
        session.get(url, headers=headers, max_redirects=3, ssl=tls_context(ca_file)) as resp,
    ):
        if resp.status != 200:
            return "failed", {"error": f"HTTP {resp.status}", "url": url}
        body = await resp.content.read(MAX_BODY)
    try:
        data = json.loads(body)
    except ValueError:
        return "failed", {"error": "not JSON", "url": url}
    if not isinstance(data, dict):
        return "failed", {"error": "not an RDAP object", "url": url}
    return "ok", summarise(data)
