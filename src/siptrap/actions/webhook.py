"""The `webhook` action: each change of a source's step as a JSON POST.

Retries with backoff are the worker's (`retries`); each attempt has `timeout` seconds.
The body is JSON (attacker values are JSON strings, never anything else)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from .base import ActionFailed, Job
from .program import values_of
from .settings import ActionSpec


class WebhookAction:
    def __init__(self, spec: ActionSpec, sensor: str) -> None:
        self.spec = spec
        self.sensor = sensor

    def apply(self, job: Job) -> tuple[str, str] | None:
        change = job.change
        body = {
            "event": "response.policy.changed",
            "sensor": self.sensor,
            **values_of(job),
            "expires": change.expires,
            "facts": job.facts,
        }
        data = json.dumps(body, default=str).encode()
        request = urllib.request.Request(  # noqa: S310 (the operator's configured URL)
            self.spec.url, data=data, headers={"Content-Type": "application/json"}
        )
        try:
            with urllib.request.urlopen(request, timeout=self.spec.timeout) as reply:  # noqa: S310
                status = reply.status
        except urllib.error.HTTPError as exc:
            raise ActionFailed(f"POST {self.spec.url}: HTTP {exc.code}") from exc
        except (urllib.error.URLError, TimeoutError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ActionFailed(f"POST {self.spec.url}: {reason}") from exc
        return ("POST", f"{self.spec.url} answered {status}")

    def close(self) -> None:
        pass
