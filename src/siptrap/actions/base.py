"""What every action is given and how it answers."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from .policy import Change
from .settings import ActionSpec


@dataclass(frozen=True, slots=True)
class Job:
    """One change of a source's step, with the facts of the attack behind it."""

    change: Change
    facts: dict[str, Any]  # src_ip, src_port, transport, users, user_agent, tool, severity...
    queued: float


class ActionFailed(Exception):
    """An action could not be done; the message is the reason (in response.action.failed)."""


class Enforcer(Protocol):
    """An action kind. `apply` does what the change asks and returns a description of
    what was done, or None when the change asks nothing of this kind; it raises
    ActionFailed (or OSError) when it could not."""

    spec: ActionSpec

    def apply(self, job: Job) -> tuple[str, str] | None: ...

    def close(self) -> None: ...


def seconds_left(change: Change, now: float) -> int:
    """Whole seconds until the change's step expires (at least 1)."""
    if change.expires is None:
        return 1
    return max(1, int(change.expires - now + 0.999))
