"""The one error family of the SIP core."""

from __future__ import annotations


class SipError(Exception):
    """Base class of every error the SIP core raises on purpose."""


class ParseError(SipError):
    """The input is not a SIP message at all (no start line that can be read).

    `offset` is where reading stopped; `status` is the response a server could send if it
    can address one (400), or None where a real server stays silent.
    """

    def __init__(self, reason: str, offset: int = 0, status: int | None = 400) -> None:
        super().__init__(reason)
        self.reason = reason
        self.offset = offset
        self.status = status


class StateError(SipError):
    """An event arrived that the current transaction or dialog state does not allow."""

    def __init__(self, machine: str, state: str, event: str) -> None:
        super().__init__(f"{machine}: event {event!r} not allowed in state {state!r}")
        self.machine = machine
        self.state = state
        self.event = event
