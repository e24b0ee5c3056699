"""Registrations: bindings of extensions to contacts, kept until they expire (bounded).
Their expiries are in a deadline queue, so the run loop can sleep until the next one."""

from __future__ import annotations

from dataclasses import dataclass

from ..bounded import BoundedLRU, DeadlineQueue

BindingKey = tuple[str, str]  # (username, contact)


@dataclass(slots=True)
class Binding:
    username: str
    contact: str
    expires_at: float
    src: str  # "transport:ip:port" the registration came from
    call_id: str


class Registrar:
    """At most `max_bindings` bindings; registering a new one when full forgets the one
    least recently registered (counted in `evictions`)."""

    def __init__(self, max_bindings: int) -> None:
        self.max_bindings = max(1, max_bindings)
        self._bindings: BoundedLRU[BindingKey, Binding] = BoundedLRU(self.max_bindings)
        self._expiry: DeadlineQueue[BindingKey] = DeadlineQueue()

    def __len__(self) -> int:
        return len(self._bindings)

    @property
    def evictions(self) -> int:
        return self._bindings.evicted

    def bind(self, binding: Binding) -> None:
        key = (binding.username, binding.contact)
        evicted = self._bindings.put(key, binding)
        if evicted is not None:
            self._expiry.cancel(evicted)
        self._expiry.set(key, binding.expires_at)

    def remove(self, username: str, contact: str | None) -> list[Binding]:
        """Remove one binding, or every binding of the user when contact is None (`*`)."""
        keys = [k for k in self._bindings if k[0] == username and contact in (None, k[1])]
        return [self._pop(k) for k in keys]

    def of(self, username: str, now: float) -> list[Binding]:
        return [b for (u, _), b in self._bindings.items() if u == username and b.expires_at > now]

    def expire(self, now: float) -> list[Binding]:
        """The bindings whose time is up (at or before `now`), removed, earliest first."""
        return [self._pop(k) for k in self._expiry.pop_due(now)]

    def _pop(self, key: BindingKey) -> Binding:
        self._expiry.cancel(key)
        binding = self._bindings.pop(key)
        assert binding is not None  # every armed key is held, and only held keys are asked
        return binding

    def next_deadline(self) -> float | None:
        """When the next binding expires (None: none is held)."""
        return self._expiry.next_deadline()
