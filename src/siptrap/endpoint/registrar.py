"""Registrations: bindings of extensions to contacts, kept until they expire (bounded).
Their expiries are in a deadline queue, so the run loop can sleep until the next one."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from ..bounded import DeadlineQueue


@dataclass(slots=True)
class Binding:
    username: str
    contact: str
    expires_at: float
    src: str  # "transport:ip:port" the registration came from
    call_id: str


class Registrar:
    def __init__(self, max_bindings: int) -> None:
        self.max_bindings = max(1, max_bindings)
        self._bindings: OrderedDict[tuple[str, str], Binding] = OrderedDict()
        self.evictions = 0
        self._due: DeadlineQueue[tuple[str, str]] = DeadlineQueue()

    def __len__(self) -> int:
        return len(self._bindings)

    def bind(self, binding: Binding) -> None:
        key = (binding.username, binding.contact)
        self._bindings.pop(key, None)
        if len(self._bindings) >= self.max_bindings:
            old, _ = self._bindings.popitem(last=False)
            self._due.cancel(old)
            self.evictions += 1
        self._bindings[key] = binding
        self._due.set(key, binding.expires_at)

    def remove(self, username: str, contact: str | None) -> list[Binding]:
        """Remove one binding, or every binding of the user when contact is None (`*`)."""
        keys = [k for k in self._bindings if k[0] == username and contact in (None, k[1])]
        for key in keys:
            self._due.cancel(key)
        return [self._bindings.pop(k) for k in keys]

    def of(self, username: str, now: float) -> list[Binding]:
        return [b for (u, _), b in self._bindings.items() if u == username and b.expires_at > now]

    def expire(self, now: float) -> list[Binding]:
        """The bindings whose expiry has come, removed (earliest first)."""
        return [self._bindings.pop(k) for k in self._due.pop_due(now) if k in self._bindings]

    def next_deadline(self) -> float | None:
        """When the next binding expires (None: none is held)."""
        return self._due.next_deadline()
