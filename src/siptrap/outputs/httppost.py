"""One JSON POST to an operator's URL: the webhook output and the webhook action both send
through `post_json`, so there is one place that builds the request, bounds the reply read
and says which failures are worth another try.

The URL is the operator's configuration (checked there: http or https), never attacker
data; attacker values only ever travel inside the JSON body, as JSON strings.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})
MAX_REPLY = 65536  # bytes of an answer read (and thrown away)
# ASCII: attacker text kept undecoded (surrogate escapes) cannot make the encoding fail.
_ENCODER = json.JSONEncoder(ensure_ascii=True, default=str)


class PostFailed(Exception):
    """The POST did not succeed; `retry` says whether trying again may help (no
    connection, a timeout, 408/425/429/5xx) or not (any other HTTP error)."""

    def __init__(self, reason: str, retry: bool, status: int | None = None) -> None:
        super().__init__(reason)
        self.retry = retry
        self.status = status


def encode(body: Any) -> bytes:
    """JSON bytes, every non-ASCII character escaped (values JSON does not know, such as
    datetimes, as their str())."""
    return _ENCODER.encode(body).encode("ascii")


def post_json(url: str, data: bytes, timeout: float) -> int:
    """POST `data` (JSON bytes) to `url`; the HTTP status of a 2xx/3xx answer. Raises
    PostFailed with the reason otherwise."""
    request = urllib.request.Request(  # noqa: S310 (the URL is checked: http or https)
        url,
        data=data,
        method="POST",
        headers={"Content-Type": "application/json", "User-Agent": "siptrap"},
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            answer.read(MAX_REPLY)
            return int(answer.status)
    except urllib.error.HTTPError as exc:
        raise PostFailed(f"HTTP {exc.code}", exc.code in RETRY_STATUSES, exc.code) from exc
    except urllib.error.URLError as exc:  # refused, unknown host, TLS
        raise PostFailed(str(exc.reason), True) from exc
    except (OSError, ValueError) as exc:  # timeouts, resets, a bad URL
        raise PostFailed(str(exc) or type(exc).__name__, True) from exc
