"""The `webhook` action: each change of a source's step as a JSON POST.

The POST is the webhook output's own (`outputs.httppost.post_json`); retries with backoff
are the worker's (`retries`), each attempt has `timeout` seconds. The body is JSON
(attacker values are JSON strings, never anything else)."""

from __future__ import annotations

from ..outputs.httppost import PostFailed, encode, post_json
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
        try:
            status = post_json(self.spec.url, encode(body), self.spec.timeout)
        except PostFailed as exc:
            raise ActionFailed(f"POST {self.spec.url}: {exc}") from exc
        return ("POST", f"{self.spec.url} answered {status}")

    def close(self) -> None:
        pass
